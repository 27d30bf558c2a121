# The two commands of the README, and a few more. Every target installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# checkov pins packaging and hcl2 versions that clash with ours: it gets a venv of its own.
CHECKOV_VENV  ?= .venv-checkov
CHECKOV_STAMP  = $(CHECKOV_VENV)/.installed
CHECKOV_VERSION = 3.3.30

.PHONY: install chromium run test test-unit lint format clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $(CHECKOV_STAMP)

install: $(STAMP)

# Debian's headless Chromium for the browser tests (tests/e2e/browser), when we may install it;
# without it those tests are skipped with a reason, nothing else depends on it.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ; } \
	  || echo "note: chromium is not installed; the browser tests will be skipped" >&2

## Run the whole local system: emulators, functions behind the gateway, demo data.
run: install
	$(BIN)/python -m emulator $(ARGS)

## Run every test (starts its own emulators on free ports).
test: install $(CHECKOV_STAMP) chromium
	$(BIN)/ruff check .
	CHECKOV_BIN=$(CHECKOV_VENV)/bin/checkov $(BIN)/python -m pytest -q $(ARGS)

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .local .pytest_cache .ruff_cache

## Benchmarks against the local stack (starts its own emulators): results in bench/results/.
bench: install
	$(BIN)/python -m bench $(ARGS)

bench-quick: install
	$(BIN)/python -m bench --quick $(ARGS)
