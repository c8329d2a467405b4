# The two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_data
DEMO_CUSTOMERS ?= 5000
DEMO_SEED ?= 7
DEMO_PORT ?= 3000
# DEMO_PROFILE: default, purchase_only (a transaction log) or subscription (an app's billing)
DEMO_PROFILE ?= default

.PHONY: install demo test lint bench clean services services-stop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9

# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set, every `lifecycle` process would
# otherwise compile pandas, scikit-learn, MLflow... from source: ~6 s of its start (BENCHMARKS)
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lifecycle demo --out $(DEMO_DIR) --customers $(DEMO_CUSTOMERS) --seed $(DEMO_SEED) \
	    --profile $(DEMO_PROFILE)
	$(BIN)/lifecycle features materialize $(DEMO_DIR) --store store/online.sqlite
	$(BIN)/lifecycle serve --data $(DEMO_DIR) --store store/online.sqlite --port $(DEMO_PORT)

# Two workers, a test file each at a time (a file's module fixtures are built once); the
# servers the tests start and the shared Redis/PostgreSQL (tests/services.py) allow it.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/oracle.py

# Redis and PostgreSQL on loopback with throw-away data (installed from Debian when missing);
# prints the redis:// and postgresql:// URLs to use (README "Scaling out").
services:
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

clean:
	rm -rf $(VENV) $(DEMO_DIR) store .pytest_cache
