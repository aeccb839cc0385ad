"""Logging for every process: JSON lines for log collectors (SKUAI_LOG_FORMAT=json) or readable
text, both carrying the job, batch and delivery ids that a log call passes in `extra`."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = (
    "job_id",
    "job_ids",
    "batch_id",
    "delivery_id",
    "webhook_id",
    "tenant",
    "model_version",
)


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value...` with the context ids appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        return f"{line} {context}" if context else line


def configure_logging(level: str, fmt: str) -> None:
    """Send everything to stderr in the chosen format (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level"},
            )
        )
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
