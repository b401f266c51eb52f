# Two set-up commands work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Pinned for this machine (its pip is capped at these; they lie on its disk).
# pyproject.toml states ranges for users who bring their own CUDA or CPU build.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow bench clean fashion-mnist

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[dev]' $(TORCH_PINS)
	touch $(STAMP)

setup: $(STAMP)

# Real Fashion-MNIST comes from Debian's dataset-fashion-mnist; installed when possible, skipped otherwise.
FASHION_DIR := /usr/share/datasets/fashion-mnist

fashion-mnist:
	@[ -d $(FASHION_DIR) ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "installing Debian's dataset-fashion-mnist (real Fashion-MNIST) ..." && \
	  apt-get update -qq >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } || \
	  echo "Fashion-MNIST not installed (needs root and apt); the demo runs without it"

demo: $(STAMP) fashion-mnist
	$(VENV)/bin/intrinsics demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/bench_neighbors.py
	$(PY) benchmarks/bench_measure.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/grid_cost.py
	$(PY) benchmarks/bench_executors.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
