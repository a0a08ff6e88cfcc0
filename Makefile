# iterable-segment-sync: each target creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# test workers: the suite waits on loopback servers and child processes far more than it computes
TEST_WORKERS ?= 3

.PHONY: install postgres chromium promtool lint test unit demo run bench clean

# the venv has no pip of its own: the system pip puts uv in it, and uv installs the rest (a fresh clone's
# install takes seconds, not a minute). uv, unlike pip, leaves modules uncompiled unless asked; where the
# environment sets PYTHONDONTWRITEBYTECODE, every process would then compile SQLAlchemy, aiohttp and Alembic
# from source at each start (3 s of CPU per `serve` child instead of 1 s): --compile-bytecode, and the
# checkout's own packages compiled before the tests run.
$(BIN)/python:
	$(PYTHON) -m venv --without-pip $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(PYTHON) -m pip --python $(BIN)/python install -q uv

UV := $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python
BYTECODE := $(BIN)/python -m compileall -q sync tests bench

$(VENV)/.deps: pyproject.toml | $(BIN)/uv
	$(UV) '.[test]'
	touch $@

# a normal (non-editable) install of the package, refreshed each time
install: $(VENV)/.deps
	rm -rf build
	$(UV) --no-deps --reinstall .

postgres:
	@bash .ci/ensure-postgres

# Debian's Chromium for the console's browser tests (tests/browser)
chromium:
	@bash .ci/ensure-chromium

# Debian's prometheus package for promtool (tests/unit/test_deploy.py validates deploy/'s alert rules)
promtool:
	@bash .ci/ensure-promtool

# mypy keeps its cache beside uv's, outside the checkout: a fresh clone checks only what changed
MYPY_CACHE ?= $(HOME)/.cache/iterable-segment-sync/mypy

lint: install
	$(BIN)/ruff check sync tests bench
	$(BIN)/mypy --cache-dir $(MYPY_CACHE)

# the parallel pass, then the few tests that disturb what others share (they restart PostgreSQL)
test: install postgres chromium promtool lint
	$(BYTECODE)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not serial"
	$(BIN)/python -m pytest -m serial

# no I/O: what to run after each edit
unit: $(VENV)/.deps
	$(BYTECODE)
	$(BIN)/python -m pytest tests/unit -q

demo: install
	$(BIN)/python -m sync.sandbox.demo

run: install
	$(BIN)/python -m sync serve --config config.example.toml

bench: install postgres
	$(BIN)/python -m bench.run --write

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
