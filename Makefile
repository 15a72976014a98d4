# The two commands a newcomer needs: `make demo` and `make test`. Both build their own venv.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip

.PHONY: demo test lint typecheck unit venv dist deb clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: on Debian run 'apt-get install python3-venv'"; exit 1; }
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[collector]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[collector,dev]'
	touch $@ $(VENV)/.installed-demo

venv: $(VENV)/.installed-dev

demo: $(VENV)/.installed-demo
	$(BIN)/vantage demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev
	$(BIN)/pytest tests/unit -q

test: lint typecheck
	$(BIN)/pytest

dist: $(VENV)/.installed-dev
	$(BIN)/python -m build --outdir dist .

# A .deb with a self-contained virtualenv under /opt/vantage (needs dpkg-deb and /usr/bin/python3).
deb:
	packaging/debian/build-deb.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
