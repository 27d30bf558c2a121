# The two commands of the README, and a few more. Every target installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# checkov pins packaging and hcl2 versions that clash with ours: it gets a venv of its own.
CHECKOV_VENV  ?= .venv-checkov
CHECKOV_STAMP  = $(CHECKOV_VENV)/.installed
CHECKOV_VERSION = 3.3.30

.PHONY: install chromium run test test-clock test-unit lint format clean

# The venv gets requirements-dev.lock: every package pinned with its hashes (pip refuses any
# other file), the runtime lock's pins included. requirements*.txt are the human-edited inputs:
# after editing one, `make lock` re-pins (tests/infra/test_requirements.py fails until then).
$(STAMP): requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	touch $(STAMP)

# uv resolves for every platform from Python 3.11 on (the functions run 3.12) and keeps the
# versions already locked unless a .txt asks for others; the runtime lock is constrained by
# the dev lock, so the functions get exactly the versions the tests ran with.
UV_VERSION = 0.13.9
LOCK_TOOLS = $(VENV)/lock-tools
LOCK_FLAGS = --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command "make lock"
.PHONY: lock
lock:
	$(PYTHON) -m pip install --quiet --upgrade --target $(LOCK_TOOLS) uv==$(UV_VERSION)
	$(LOCK_TOOLS)/bin/uv pip compile $(LOCK_FLAGS) requirements-dev.txt -o requirements-dev.lock
	$(LOCK_TOOLS)/bin/uv pip compile $(LOCK_FLAGS) requirements.txt -c requirements-dev.lock \
	  -o requirements.lock

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

## Run every test (starts its own emulators on free ports), then the clock-sensitive suites
## again at other Warsaw hours.
test: install $(CHECKOV_STAMP) chromium
	$(BIN)/ruff check .
	CHECKOV_BIN=$(CHECKOV_VENV)/bin/checkov $(BIN)/python -m pytest -q $(ARGS)
	$(MAKE) --no-print-directory test-clock

# The suites whose outcome could depend on the time of day (marker `clock`, tests/conftest.py)
# at other Warsaw hours: the whole stack's clock shifted there (CLOCK_AT, common/clock.py).
# Midnight-ish (the UTC date is still yesterday) and late evening (reminders already due, the
# test crossing midnight). `make test-clock CLOCK_HOURS="00:10 11:00 18:30 23:50"` for all four.
CLOCK_HOURS ?= 00:10 23:50
test-clock: install
	@for at in $(CLOCK_HOURS); do \
	  echo "== clock-sensitive suites at $$at Warsaw time"; \
	  CLOCK_AT=$$at $(BIN)/python -m pytest -q -m clock -p no:cacheprovider || exit 1; \
	done

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
