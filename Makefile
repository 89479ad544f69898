# Everything a fresh machine needs: `make lab` opens the quick start, `make test` runs the suite.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.xcam-installed
# Torch is installed first, pinned to a build this machine holds on disk; override for other machines.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: setup lab test test-heavy bench clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/01_quickstart.ipynb

test: $(STAMP)
	$(PY) -m pytest

test-heavy: $(STAMP)
	$(PY) -m pytest -m heavy

bench: $(STAMP)
	$(PY) benchmarks/bench_methods.py

clean:
	rm -rf $(VENV) build *.egg-info
