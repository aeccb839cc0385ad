"""A batch's results as CSV or NDJSON, one line at a time (bounded memory), from the jobs' public
shape: the API streams them from Redis, and the result archive (shared/result_archive.py) stores
the same bytes for when Redis no longer has the batch."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from shared.decisions import decision_of

CSV = "text/csv"
NDJSON = "application/x-ndjson"
CSV_COLUMNS = (
    "ref",
    "job_id",
    "status",
    "decision",  # sku, model or unknown for a succeeded job (shared/decisions.py); else blank
    "model",
    "model_confidence",
    "sku",
    "sku_confidence",
    "model_version",
    "error_code",
    "error_message",
)
# Spreadsheets run a cell that starts with one of these as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A text cell a spreadsheet shows as text: a leading formula character gets a `'` first."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(jobs: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """A header, then one row per job (its public shape) with `ref` beside its prediction or
    error."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for job in jobs:
        result, error = job["result"] or {}, job["error"] or {}
        # Every text cell, not just `ref`: labels and error messages can carry client text too.
        row = [
            job["ref"] or "",
            job["id"],
            job["status"],
            decision_of(result) if job["result"] else "",
            result.get("model", {}).get("label", ""),
            result.get("model", {}).get("confidence", ""),
            result.get("sku", {}).get("label", ""),
            result.get("sku", {}).get("confidence", ""),
            job["model_version"] or "",
            error.get("code", ""),
            error.get("message", ""),
        ]
        writer.writerow([csv_cell(value) for value in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def ndjson_lines(jobs: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """One job object (its public shape) per line."""
    for job in jobs:
        yield json.dumps(job) + "\n"
