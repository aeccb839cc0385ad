"""One error hierarchy: every exception web/, worker/, shared/ and training/ raise is a SkuaiError
(shared/errors.py), found by reading the source, so a new `raise ValueError(...)` fails here."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

from shared.errors import InvalidArgument, SkuaiError

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("web", "worker", "shared", "training")
# Raised where only another library's own type works; each says why.
FOREIGN = {
    # urllib3 turns only its own connection errors into requests.ConnectionError, which
    # worker/fetch.py and worker/delivery.py then report as FetchFailed or a failed attempt.
    "NewConnectionError": "shared/url_guard.py",
    # Celery's Retry is how a task asks to run again: control flow, not an error.
    "task.retry": "worker/tasks.py",
    # A module's __getattr__ (PEP 562) says "no such attribute" this way, as Python requires.
    "AttributeError": "worker/celery_app.py",
    # A failpoint (tests only) stands in for a Redis error, which only redis-py's type is.
    "redis.ConnectionError": "worker/tasks.py",
    # Optuna stops a pruned trial only when its callback raises Optuna's own TrialPruned.
    "optuna.TrialPruned": "training/tuning_pruning.py",
}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text())


def _service_error_names() -> set[str]:
    """Names of SkuaiError and of every class in the four packages derived from it."""
    bases: dict[str, set[str]] = {}
    for _, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
    known = {"SkuaiError"}
    while grown := {name for name, of in bases.items() if of & known} - known:
        known |= grown
    return known


def _bound_names(tree: ast.Module) -> set[str]:
    """Names bound to values in the module (`except ... as exc`, assignments, arguments): a
    `raise exc` re-raises an error caught or made earlier, not a class."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _foreign_imports(tree: ast.Module) -> set[str]:
    """Names the module imports from outside the four packages (werkzeug's `NotFound` is not
    ours even where shared/errors.py has a class of that name)."""
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] not in PACKAGES
        for alias in node.names
    }


def _error_factories(tree: ast.Module) -> dict[str, str]:
    """Functions of the module that return an error to raise, by the class they return."""
    return {
        node.name: ast.unparse(node.returns)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.returns is not None
    }


def _raised() -> Iterator[tuple[str, int, str, bool]]:
    """(file, line, what is raised, whether another library's) for every `raise X` and
    `raise X(...)`."""
    for path, tree in _modules():
        bound, factories = _bound_names(tree), _error_factories(tree)
        foreign = _foreign_imports(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = ast.unparse(target)
            if isinstance(node.exc, ast.Call) and name in factories:
                name = factories[name]
            elif isinstance(target, ast.Name) and name in bound and name not in factories:
                continue
            yield path, node.lineno, name, name.split(".")[0] in foreign


def _ours(name: str, service_errors: set[str]) -> bool:
    """`name` (a class, a dotted one, or a union a factory returns) is a SkuaiError."""
    return all(part.strip() in service_errors for part in name.split("|"))


def test_every_raised_error_is_a_skuai_error() -> None:
    service_errors = _service_error_names()
    outside = [
        f"{path}:{line} raises {name}" + (" (another library's)" if foreign else "")
        for path, line, name, foreign in _raised()
        if (foreign or not _ours(name, service_errors)) and FOREIGN.get(name) != path
    ]
    assert not outside, "raise a shared/errors.py class instead:\n" + "\n".join(outside)


def test_the_scan_sees_every_class_of_shared_errors() -> None:
    errors = importlib.import_module("shared.errors")
    declared = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, SkuaiError)
    }
    assert declared <= _service_error_names()
    assert "ValueError" not in _service_error_names()
    assert issubclass(InvalidArgument, ValueError)  # callers catching ValueError keep working
