# Everything runs from a local .venv that these targets create on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench ldap-server dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dgprov demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The AD tests start a real OpenLDAP slapd; install it when missing (needs root and apt).
ldap-server:
	@command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd >/dev/null; \
	  else \
	    echo "OpenLDAP slapd is missing: install it (Debian: sudo apt-get install slapd) to run the AD tests" >&2; \
	    exit 1; \
	  fi; }

# A single-file executable for installers (PyInstaller); rebuilt when the sources change.
DIST := dist/dgprov
SOURCES := $(shell find src -name '*.py' -o -name '*.json') packaging/dgprov_entry.py

dist: $(DIST)

$(DIST): $(STAMP) $(SOURCES)
	$(BIN)/pyinstaller --onefile --name dgprov --clean --noconfirm --log-level WARN \
	  --distpath dist --workpath build/pyinstaller --specpath build \
	  --collect-data dgprov --collect-submodules dgprov --collect-submodules uvicorn \
	  --copy-metadata msal --hidden-import dns.resolver packaging/dgprov_entry.py

test: lint ldap-server dist
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/generate_tokens.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
