"""AlignTune 0.x's import path for evaluation: `from aligntune.eval.runner import EvalConfig, run_eval`.

The same objects as `aligntune.eval.core`; 0.x option names are translated or refused with what to write instead
(see `aligntune.eval.compat` and docs/evaluation.md).
"""

from __future__ import annotations

from aligntune.eval.core import EvalConfig, EvalResults, run_eval

__all__ = ["EvalConfig", "EvalResults", "run_eval"]
