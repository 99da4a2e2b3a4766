# The README's two commands: `make demo` (set up + main job) and `make test` (set up, lint, test suite).
PYTHON ?= python3

.PHONY: setup demo test lint bench
setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup lint
	$(PYTHON) -m pytest -q -p no:cacheprovider

# ruff (lint + format) over the repository, mypy over the package; settings in pyproject.toml.
lint:
	$(PYTHON) -m ruff check graphcraft tests benchmarks scripts
	$(PYTHON) -m ruff format --check graphcraft tests benchmarks scripts
	$(PYTHON) -m mypy

bench: setup
	for b in benchmarks/*.py; do $(PYTHON) $$b || exit 1; done
