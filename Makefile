# sessioncore: `make demo` runs a real call over loopback; `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit peers bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

peers:
	@bash scripts/install-peers.sh

demo: $(STAMP)
	$(PY) scripts/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples bench scripts
	$(VENV)/bin/ruff format --check src tests examples bench scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit tests/integration

test: $(STAMP) peers lint typecheck
	$(VENV)/bin/pytest -q tests

bench: $(STAMP) peers
	$(PY) bench/parser.py
	$(PY) bench/cps.py
	$(PY) bench/media.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
