# The README's two commands: `make demo` (set up + main job) and `make test` (set up + test suite).
PYTHON ?= python3

.PHONY: setup demo test bench
setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider

bench: setup
	for b in benchmarks/*.py; do $(PYTHON) $$b || exit 1; done
