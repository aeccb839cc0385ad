"""Validating requests with the models of `web.schemas`: a failure is a 400 in the error shape
that names the field and says what is wrong."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from shared.errors import BadRequest

M = TypeVar("M", bound=BaseModel)
UNION_TAGS = {"str", "int", "float", "bool", "dict", "list"}


def validated(model: type[M], data: Any) -> M:
    """`data` as a `model`, or a BadRequest saying what is wrong with it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(describe(exc)) from None


def validated_query(model: type[M]) -> M:
    """The query string as a `model`; a blank parameter means its default."""
    return validated(model, {k: v for k, v in request.args.items() if v != ""})


def describe(exc: ValidationError) -> str:
    """The first problem, e.g. `send 'images[0].url'` or `limit: Input should be ...`."""
    first = exc.errors(include_url=False)[0]
    where = ""
    for part in first["loc"]:
        if isinstance(part, str) and (not part.isidentifier() or part in UNION_TAGS):
            continue  # the member of a union pydantic tried, not a field
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    if first["type"] == "missing":
        return f"send '{where}'"
    return f"{where or 'the body'}: {first['msg']}"
