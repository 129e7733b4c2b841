# physml: `make quick` sets everything up and runs the quick pipeline; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
# The CPU build of torch for local work; a GPU worker image installs its CUDA build instead (infra/).
# PyPI's torch==2.13.0 is the CUDA build (several GB of nvidia-* packages); PyTorch's CPU index offers
# 2.13.0+cpu, which pip prefers (a local version label sorts above the bare version). Where that index is
# unreachable but a CPU wheel is at hand (pip's find-links), pip warns about the index and takes the wheel.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# `make test` runs the suite in this many pytest-xdist processes, each test module whole in one of them (its
# module-scoped fixtures are built once); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: setup quick test bench verify clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" --extra-index-url "$(TORCH_INDEX)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	test -d .dvc || $(BIN)/dvc init --quiet
	touch $@

quick: setup
	$(BIN)/dvc repro
	$(BIN)/physml track

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

# each benchmark's output, with the date, the CPU and torch's version, also goes to reports/benchmarks/<name>.txt
# (committed: the source of the speed numbers the docs quote)
bench: setup
	@$(BIN)/python -c 'import neuralop' 2>/dev/null || [ "$(NEURALOP)" = skip ] || { echo "make bench:" \
	  "neuraloperator cannot be imported, so boon_speed.txt would lose its comparison: PYTHONPATH=/tmp/neuralop" \
	  "make bench (README, Benchmarks, installs it there), or NEURALOP=skip to go without"; exit 1; }
	mkdir -p reports/benchmarks
	set -o pipefail; for name in solvers constraint_update boon_speed; do \
	  { echo "# $$(date -u +%FT%TZ) · $$(lscpu | sed -n 's/^Model name: *//p') · $$(nproc) cores ·" \
	      "torch $$($(BIN)/python -c 'import torch; print(torch.__version__)') · benchmarks/$$name.py"; \
	    $(BIN)/python benchmarks/$$name.py; } | tee reports/benchmarks/$$name.txt.partial \
	  && mv reports/benchmarks/$$name.txt.partial reports/benchmarks/$$name.txt || exit 1; done

verify: setup
	$(BIN)/physml verify

# what the pipeline writes and git does not hold (metrics/ and reports/ are committed results: not removed)
clean:
	rm -rf data models predictions mlruns mlflow.db mlflow.db.lock mlflow.db.promote.lock mlflow.db.log.lock mlartifacts .prefect .physml-flow
