# Two commands from a fresh clone: `make demo` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TOOLS := .tools
AZURITE := $(TOOLS)/node_modules/.bin/azurite-blob

.PHONY: install demo test test-compat lint bench clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,connectors]"
	touch $(STAMP)

# Azurite (Azure Blob emulator) for the az:// tests; skipped only where npm is missing.
$(AZURITE):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --prefix $(TOOLS) azurite@3 --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: az:// round-trip tests will be skipped"; fi

# Debian's chromium for the web console's browser tests (Playwright drives it; Playwright's own browser
# download is never used). Installed with apt when /usr/bin/chromium is missing; without apt-get the
# browser tests are skipped and say why, and with apt-get a missing browser fails them.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
		|| { $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; \
	else echo "apt-get not found: the web console's browser tests will be skipped"; fi

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(PY) -m ruff check src tests bench examples

test: $(STAMP) $(AZURITE) chromium lint
	PATH="$(CURDIR)/$(TOOLS)/node_modules/.bin:$$PATH" $(PY) -m pytest -q

# The REST server's tests under each supported pinecone SDK line (7.3.0, latest 9.x, latest 10.x),
# one venv each (.venv-compat-*); see tests/compat/run.sh.
test-compat:
	PYTHON=$(PYTHON) bash tests/compat/run.sh

bench: $(STAMP)
	$(PY) bench/engine.py

clean:
	rm -rf $(VENV) .venv-compat-* $(TOOLS) spruce-data spruce-backups .pytest_cache .ruff_cache
