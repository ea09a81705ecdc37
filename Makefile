# ember: setup, training, tests and benchmarks. Every target runs inside .venv, made by `make setup`.
#
#   make setup       create .venv and install ember with every extra (quick when nothing changed)
#   make train       train the MNIST recipe
#   make test        the fast tests (not marked slow)
#   make test-slow   the slow tests only
#   make bench       ember vs a hand-written loop vs Lightning

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch is pinned in constraints.txt to the CPU build on local disk: without the pin pip would fetch a
# multi-GB CUDA build. Every pip call here passes it.
PIP := $(PY) -m pip
CONSTRAINTS := constraints.txt
EXTRAS := all,dev,bench,serve
# A hung test would otherwise use up CI's whole time; override with `make test PYTEST_ARGS=...`.
PYTEST_ARGS ?= --timeout=900

.PHONY: setup train test test-slow bench

setup: $(VENV)/.stamp

# The stamp is newer than pyproject.toml and constraints.txt once an install from them succeeded, so a
# second `make setup` does nothing. It is touched only after pip succeeds: a failed install is retried.
$(VENV)/.stamp: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c $(CONSTRAINTS) --upgrade pip
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $@

# Tests and benchmarks never reach the network: the MiniLM weights come from a package, W&B runs offline.
test test-slow bench: export HF_HUB_OFFLINE := 1
test test-slow bench: export WANDB_MODE := offline
test test-slow bench: export MLFLOW_DISABLE_TELEMETRY := true

train: setup
	$(PY) -m recipes.mnist.train

# pytest exits 5 when it collects no test; that is reported, not treated as a failure.
test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest collected no test"; [ $$rc -eq 5 ]; }

test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest collected no test"; [ $$rc -eq 5 ]; }

bench: setup
	$(PY) -m benchmarks.run
