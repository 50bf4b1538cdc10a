"""structlog set-up: readable console lines for people, JSON lines on request."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog


def _process_rank() -> int | None:
    """This process's rank in a run started by torchrun or accelerate launch; None in a single-process run."""
    rank = os.environ.get("RANK")
    return int(rank) if rank is not None and rank.isdigit() and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None


def _add_rank(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    rank = _process_rank()
    if rank is not None:
        event.setdefault("rank", rank)
    return event


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Console lines (or JSON lines) on stderr. In a run of several processes every line names its rank, and the
    processes other than rank 0 log warnings and errors only (they would repeat rank 0's lines)."""
    if (_process_rank() or 0) > 0 and logging.getLevelName(level.upper()) < logging.WARNING:
        level = "warning"
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_rank,
            structlog.processors.TimeStamper(fmt="iso" if fmt == "json" else "%H:%M:%S"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # Resolve sys.stderr at each use, not once: it may be replaced (pytest's capture, notebooks).
        logger_factory=lambda *args: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def ensure_logging() -> None:
    """Configure aligntune's default (console lines on stderr) unless the application configured structlog."""
    if not structlog.is_configured():
        configure_logging()
