"""structlog set-up: readable console lines for people, JSON lines on request."""

from __future__ import annotations

import datetime
import json
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


_JSON_LINES = False

# Progress bars of the libraries aligntune drives; each reads its variable when it draws (or is imported).
_PROGRESS_BAR_SWITCHES = {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
                          "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def json_lines() -> bool:
    """True when logs are JSON lines (`--log-format json`): no progress bars, no free-form output on stderr."""
    return _JSON_LINES


class _JsonLinesHandler(logging.Handler):
    """Standard-library log records (transformers, datasets, accelerate, Python warnings) as JSON lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = {"event": record.getMessage(), "level": record.levelname.lower(), "logger": record.name,
                     "timestamp": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat()}
            rank = _process_rank()
            if rank is not None:
                event["rank"] = rank
            sys.stderr.write(json.dumps(event, default=str) + "\n")
        except Exception:  # noqa: BLE001 - logging must never raise into the caller (logging.Handler's contract)
            self.handleError(record)


def _route_standard_logging_as_json() -> None:
    root = logging.getLogger()
    if not any(isinstance(handler, _JsonLinesHandler) for handler in root.handlers):
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in (sys.stderr,
                                                                                                  sys.stdout):
                root.removeHandler(handler)
        root.addHandler(_JsonLinesHandler())
    if root.level == logging.NOTSET or root.level < logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.captureWarnings(True)  # `warnings.warn(...)` becomes a record of the "py.warnings" logger


def adopt_library_logging() -> None:
    """In JSON-lines mode, once transformers/datasets are imported: their own stderr handlers and progress bars off,
    their records through the JSON handler. Called where aligntune imports them (training, evaluation)."""
    if not _JSON_LINES:
        return
    for name in ("transformers", "datasets"):
        module = sys.modules.get(name)
        if module is None:
            continue
        library_logging = sys.modules.get(f"{name}.utils.logging")
        if library_logging is None:
            continue
        for switch in ("disable_default_handler", "enable_propagation", "disable_progress_bar"):
            if hasattr(library_logging, switch):  # datasets has no default handler of its own
                getattr(library_logging, switch)()


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Console lines (or JSON lines) on stderr. In a run of several processes every line names its rank, and the
    processes other than rank 0 log warnings and errors only (they would repeat rank 0's lines).

    JSON lines (`fmt="json"`) means only JSON lines: progress bars are switched off (through the variables the
    libraries read, so the processes of a distributed launch inherit it), and standard-library logging and Python
    warnings are written as JSON lines too."""
    global _JSON_LINES
    if (_process_rank() or 0) > 0 and logging.getLevelName(level.upper()) < logging.WARNING:
        level = "warning"
    _JSON_LINES = fmt == "json"
    if _JSON_LINES:
        for variable, value in _PROGRESS_BAR_SWITCHES.items():
            os.environ[variable] = value
        _route_standard_logging_as_json()
        adopt_library_logging()
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
