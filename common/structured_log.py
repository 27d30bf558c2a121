"""Structured JSON logs that Cloud Logging understands (severity, message, trace).

Never pass a PESEL, a name or a phone number to these functions: log the keyed hash
(`patient_key`) or an appointment id instead.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_trace: ContextVar[str | None] = ContextVar("trace", default=None)
_logger = logging.getLogger("erejestracja")


def set_trace(trace_header: str | None, project_id: str) -> None:
    """Tie the log lines of this request to its trace (X-Cloud-Trace-Context)."""
    if not trace_header:
        _trace.set(None)
        return
    trace_id = trace_header.split("/", 1)[0]
    _trace.set(f"projects/{project_id}/traces/{trace_id}")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        trace = _trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure() -> None:
    """Install the JSON handler once; called from entry points, never at import of a library."""
    if getattr(configure, "_done", False):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter())
    _logger.addHandler(handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False
    configure._done = True  # type: ignore[attr-defined]


def log(severity: str, message: str, **fields: Any) -> None:
    _logger.log(logging.getLevelName(severity), message, extra={"fields": fields})


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)


def exception(message: str, **fields: Any) -> None:
    _logger.exception(message, extra={"fields": fields})
