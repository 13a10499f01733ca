# One verb per chore. `make demo` and `make test` each set up their own environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck layers pytest dist bench bench-like bench-rss bench-pg bench-flower clean venv313

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/conveyor demo

lint: $(STAMP)
	$(BIN)/ruff check conveyor tests bench examples
	$(BIN)/ruff format --check conveyor tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck layers pytest

# An sdist and a wheel in $(DIST)/, checked the way PyPI will read them.
DIST ?= dist
dist: $(STAMP)
	rm -rf $(DIST)
	$(BIN)/python -m build --outdir $(DIST) .
	$(BIN)/twine check --strict $(DIST)/*

# The bench's own environment: conveyor from this checkout and the peers from PyPI.
BENCH_ENV ?= bench/.env
BENCH_STAMP := $(BENCH_ENV)/.installed
BENCH_PEERS := 'celery[redis]' 'dramatiq[redis]' huey rq matplotlib procrastinate 'pgqueuer[asyncpg]' \
	httpx 'flower>=2.2,<2.3'

# The Makefile too: a peer added to BENCH_PEERS reaches an environment made before it.
$(BENCH_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(BENCH_ENV)
	$(BENCH_ENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_ENV)/bin/python -m pip install --quiet -e '.[redis,postgres,web]' $(BENCH_PEERS)
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_ENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(conveyor|celery|kombu|dramatiq|huey|rq|redis|hiredis) '
	$(BENCH_ENV)/bin/python -m bench

# Like for like: every system at 8 threads, the same task bodies, against the bare
# ThreadPoolExecutor yardstick; then the worker's instructions per job (callgrind).
bench-like: $(BENCH_STAMP)
	$(BENCH_ENV)/bin/python -m bench.like
	$(BENCH_ENV)/bin/python -m bench.like --instructions

# A conveyor worker's RSS on Redis, 8 threads, after each body of bench.like (issue 15).
bench-rss: $(BENCH_STAMP)
	$(BENCH_ENV)/bin/python -m bench.worker_rss

# PostgreSQL: conveyor, Procrastinate and pgqueuer on one throwaway server (bench/pg.py).
bench-pg: $(BENCH_STAMP)
	$(BENCH_ENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(conveyor|procrastinate|pgqueuer|psycopg) '
	$(BENCH_ENV)/bin/python -m bench.pg

# The dashboard beside Flower 2.2: 100,000 finished tasks each, on one throwaway redis-server.
bench-flower: $(BENCH_STAMP)
	$(BENCH_ENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(conveyor|celery|flower|redis|uvicorn) '
	$(BENCH_ENV)/bin/python -m bench.flower

clean:
	rm -rf $(VENV) .venv313 .mypy_cache .pytest_cache .ruff_cache dist

# Python 3.13 beside the main venv (the stdlib executor suite, Django 6); the tests make it too.
venv313: $(STAMP)
	$(BIN)/python -m tests.py313
