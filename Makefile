# Everything a fresh machine needs: `make lab` opens the quick start, `make test` runs the suite.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.xcam-installed
# Torch is installed first, pinned to a build this machine holds on disk; override for other machines.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: setup lab app browser-deps lint test test-heavy bench clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/01_quickstart.ipynb

# App mode: the Explorer alone, served by Voila on http://localhost:8866 (progressive rendering lets
# the first map, drawn after the cell ends, reach the page live).
app: $(STAMP)
	$(VENV)/bin/voila notebooks/app.ipynb --progressive_rendering=True

# The browser tests' system dependency: Debian's Chromium, installed when missing and we are root.
# Never fails: without Chromium the browser tests skip and say why.
browser-deps:
	@if command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
	    || echo "browser-deps: could not install chromium; the browser tests will skip"; \
	else echo "browser-deps: chromium is missing (install it as root: apt-get install chromium); the browser tests will skip"; fi

# Style and types, enforced by `make test` (and so by CI).
lint: $(STAMP)
	$(VENV)/bin/ruff check xcam_widgets tests benchmarks
	$(VENV)/bin/ruff format --check xcam_widgets tests benchmarks
	$(VENV)/bin/mypy xcam_widgets

test: $(STAMP) browser-deps lint
	$(PY) -m pytest

test-heavy: $(STAMP)
	$(PY) -m pytest -m heavy

bench: $(STAMP)
	$(PY) benchmarks/bench_methods.py

clean:
	rm -rf $(VENV) build *.egg-info
