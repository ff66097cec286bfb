# Two commands: `make demo` runs the main job, `make test` runs the tests. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

# Python caches its compiled bytecode (in __pycache__, ignored by git) even where the environment
# says not to: every process of the stack, the CLI and the tests would otherwise compile this
# project's modules again (1.1 s of each process's start here).
unexport PYTHONDONTWRITEBYTECODE

setup: $(STAMP)

# Re-installs only when the dependency list or the constraints change; fast when already there.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		$(PYTHON) -m pip install --quiet --user virtualenv && $(PYTHON) -m virtualenv --quiet $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,cluster]'
	@touch $(STAMP)

demo: setup
	$(BIN)/mlops demo

# The suite on TEST_WORKERS processes (pytest-xdist), a test file to a process so a file's
# stack (the cluster, the browser's) starts once, files in the order collected (the long stack
# tests come first); one math thread each, so two processes' OpenMP pools do not fight over
# the cores. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy mlops_core
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy mlops_core

bench: setup
	$(BIN)/python benchmarks/validation.py
	$(BIN)/python benchmarks/drift_speed.py
	$(BIN)/python benchmarks/drift_quality.py

clean:
	rm -rf .mlops .pytest_cache
