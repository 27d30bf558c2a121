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

# The official Firebase Auth emulator (firebase-tools from npm, pinned by its package-lock.json),
# in the repository, never global: `npm ci` once per lock change (docs/identity.md).
AUTH_EMULATOR = emulator/auth_emulator
AUTH_STAMP    = $(AUTH_EMULATOR)/node_modules/.installed
$(AUTH_STAMP): $(AUTH_EMULATOR)/package-lock.json
	cd $(AUTH_EMULATOR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(AUTH_STAMP)

install: $(STAMP) $(AUTH_STAMP)

# axe-core for the browser tests' accessibility checks, pinned by its package-lock.json and
# injected into the pages by Playwright (nothing is fetched at test time).
BROWSER_TOOLS = tests/e2e/browser
AXE_STAMP     = $(BROWSER_TOOLS)/node_modules/.installed
$(AXE_STAMP): $(BROWSER_TOOLS)/package-lock.json
	cd $(BROWSER_TOOLS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(AXE_STAMP)

# Debian's headless Chromium for the browser tests (tests/e2e/browser), when we may install it;
# without it those tests are skipped with a reason, nothing else depends on it.
chromium: $(AXE_STAMP)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ; } \
	  || echo "note: chromium is not installed; the browser tests will be skipped" >&2

## Run the whole local system: emulators, functions behind the gateway, demo data.
run: install
	$(BIN)/python -m emulator $(ARGS)

## Run every test (starts its own emulators on free ports): the clock-sensitive suites at two
## fixed Warsaw hours, every other test at the real hour.
# Two pytest workers (pytest-xdist), each with emulators of its own, a whole file at a time (a
# file's gateway and fixtures stay on one worker): most tests wait on I/O, so two workers take
# the suite from about 12 to 6.5 minutes on 2 cores. PARALLEL= runs it in one process.
# The clock-sensitive suites (marker `clock`) run at 00:10 and 23:50 only, not a third time at
# whatever hour it is: two fixed edge hours test more than a random one, and CI stays far
# from its 15 minutes (14 min 58 s when they ran three times). MAIN_TESTS= runs them here too.
PARALLEL ?= -n 2 --dist loadfile
MAIN_TESTS ?= -m "not clock"
test: install $(CHECKOV_STAMP) chromium
	$(BIN)/ruff check .
	CHECKOV_BIN=$(CHECKOV_VENV)/bin/checkov $(BIN)/python -m pytest -q $(PARALLEL) $(MAIN_TESTS) $(ARGS)
	$(MAKE) --no-print-directory test-clock

# The suites whose outcome could depend on the time of day (marker `clock`, tests/conftest.py)
# at other Warsaw hours: the whole stack's clock shifted there (CLOCK_AT, common/clock.py).
# Midnight-ish (the UTC date is still yesterday) and late evening (reminders already due, the
# test crossing midnight). `make test-clock CLOCK_HOURS="00:10 11:00 18:30 23:50"` for all four.
CLOCK_HOURS ?= 00:10 23:50
# The full-day test moves its own stack's clock through a day (booked at the hour it starts,
# the reminder at 18:00, the visit the next day), so it starts at one hour only, the evening
# (a minute of CI per start). FULL_DAY_AT=00:10 starts it there instead.
FULL_DAY_AT ?= 23:50
# Only their files are collected (tests/conftest.py, CLOCK_SENSITIVE), not the whole tree.
test-clock: install
	@paths="$$($(BIN)/python -c 'from tests.conftest import CLOCK_SENSITIVE; print(*CLOCK_SENSITIVE)')"; \
	for at in $(CLOCK_HOURS); do \
	  echo "== clock-sensitive suites at $$at Warsaw time"; \
	  only=""; [ "$$at" = "$(FULL_DAY_AT)" ] || only="--deselect tests/e2e/test_full_day.py::test_a_full_day"; \
	  CLOCK_AT=$$at $(BIN)/python -m pytest -q -m clock -p no:cacheprovider $(PARALLEL) $$only $$paths || exit 1; \
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
	rm -rf $(VENV) $(CHECKOV_VENV) $(AUTH_EMULATOR)/node_modules .local .pytest_cache .ruff_cache

## Benchmarks against the local stack (starts its own emulators): results in bench/results/.
## `make bench` takes about 15 minutes (the peak mix alone is 5), `make bench-quick` under 3.
.PHONY: bench bench-quick bench-opening bench-impact bench-replan bench-tools
bench: install bench-tools
	$(BIN)/python -m bench $(ARGS)

bench-quick: install bench-tools
	$(BIN)/python -m bench --quick $(ARGS)

# A cohort opening with its waiting room: people and scripts through HTTP (about 30 minutes;
# ARGS=--quick: 1,000 arrivals and a one-minute room, about 4). bench/opening.py says what.
bench-opening: install
	$(BIN)/python -m bench.opening $(ARGS)

# An impact dry run at the scale of April 2021: 60,000 affected series over 7,000 points, seeded
# into an emulator of its own (about 10 minutes; ARGS="--points 700 --cases 6000 --valid 2000"
# for a small one). bench/impact.py says what; the figures are in docs/replanning.md.
bench-impact: install
	$(BIN)/python -m bench.impact $(ARGS)

# That dry run, then its re-plan on the first 3,000 cases, with bookings through HTTP all along
# (about 22 minutes; ARGS=--quick: 700 points, 6,000 cases, 1,000 re-planned, about 5).
# bench/replan.py says what; the figures are in docs/benchmarks.md.
bench-replan: install
	$(BIN)/python -m bench.replan $(ARGS)

# The benchmarks' own tools, when we may install them; nothing else depends on them. Debian's
# wrk (C) drives the search load (without it the search scenario says so and measures nothing);
# py-spy (a binary wheel from PyPI, apart from the locked venv, as the lock tools are) profiles
# the gateway (make bench does when it is installed; `--no-profile` skips it).
PY_SPY_VERSION = 0.4.3
BENCH_TOOLS = $(VENV)/bench-tools
bench-tools:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) ; } \
	  || echo "note: wrk is not installed; the search benchmark will be skipped" >&2
	@[ -x $(BENCH_TOOLS)/bin/py-spy ] || $(PYTHON) -m pip install --quiet --upgrade \
	  --target $(BENCH_TOOLS) py-spy==$(PY_SPY_VERSION) \
	  || echo "note: py-spy is not installed; --profile will be skipped" >&2
