"""Evaluation of preference-tuned models: `from aligntune.eval.core import EvalConfig, run_eval`.

This package is light to import; models are loaded by `run_eval`.
"""
