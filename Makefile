# One command runs lint, types and tests: `make test` (CI runs the same).
PYTHON ?= python

.PHONY: test lint types pytest

test: lint types pytest

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

types:
	$(PYTHON) -m mypy

pytest:
	$(PYTHON) -m pytest
