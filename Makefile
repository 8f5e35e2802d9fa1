# Everything runs from a local .venv that these targets create on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench test-tools dist clean

# The product and the emulators are two distributions; the demo and the tests need both.
$(STAMP): pyproject.toml sandbox/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e './sandbox' -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dgprov demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Tools the tests drive for real: OpenLDAP's slapd (AD tests) and wireguard-tools (`wg pubkey`).
# Installed when missing (needs root and apt).
test-tools:
	@missing=""; \
	{ command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ]; } || missing="$$missing slapd"; \
	command -v wg >/dev/null 2>&1 || missing="$$missing wireguard-tools"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing test tools:$$missing (Debian: sudo apt-get install$$missing)" >&2; exit 1; \
	  fi; \
	fi

# A single-file executable for installers (PyInstaller); rebuilt when the sources change.
DIST := dist/dgprov
SOURCES := $(shell find src -name '*.py') packaging/dgprov_entry.py

dist: $(DIST)

$(DIST): $(STAMP) $(SOURCES)
	$(BIN)/pyinstaller --onefile --name dgprov --clean --noconfirm --log-level WARN \
	  --distpath dist --workpath build/pyinstaller --specpath build \
	  --collect-data dgprov --collect-submodules dgprov \
	  --exclude-module dgprov_sandbox --exclude-module uvicorn --exclude-module starlette \
	  --copy-metadata msal --hidden-import dns.resolver packaging/dgprov_entry.py

test: lint test-tools dist
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/generate_tokens.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
