# Two commands from a fresh clone: `make demo` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(PY) -m ruff check src tests bench examples

test: $(STAMP) lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/engine.py

clean:
	rm -rf $(VENV) spruce-data spruce-backups .pytest_cache .ruff_cache
