"""Evaluation of preference-tuned models: `from aligntune.eval.core import EvalConfig, run_eval` (or
`aligntune.eval.runner`, AlignTune 0.x's import path).

This package is light to import; models are loaded by `run_eval`.
"""
