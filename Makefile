# The commands a user types: `make run` and `make test`. Everything else is here for them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
# The workflow tier's tests wait part of the time (retries, timeouts, a service starting):
# a third worker on two cores fills what two leave idle.
TEST_WORKERS ?= 3
BIN := $(VENV)/bin
LOCK := requirements.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
#: pip itself is pinned too: it decides how the lock is read.
PIP_VERSION := 26.3
NODE_STAMP := node_modules/.installed-$(shell cat package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)
PYTEST_FLAGS ?=

export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: install lock build run test test-fast lint format rds-ca-bundle synth bench bench-seed bench-ingest bench-transform bench-load bench-workflow bench-history bench-cost clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Exactly the locked versions, each checked against its recorded SHA-256; then the project
# itself, editable, without resolving anything again.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'pip==$(PIP_VERSION)'
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js 22 or newer, with npm, is needed for the CDK CLI"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-* && touch $@

install: $(STAMP) $(NODE_STAMP)  ## create .venv and node_modules if missing or stale, from the locks

lock: $(STAMP)  ## resolve every Python dependency again, newest within pyproject's ranges, into requirements.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--generate-hashes --upgrade --quiet --custom-compile-command 'make lock' -o $(LOCK)

build: $(STAMP)  ## build the Lambda layers into build/layers (pip wheels for Lambda, no Docker)
	$(BIN)/python scripts/build_layers.py

rds-ca-bundle: $(STAMP)  ## fetch Amazon RDS's certificate bundle again and record its SHA-256 (review the diff)
	$(BIN)/python scripts/refresh_rds_ca_bundle.py

run: $(STAMP) build  ## run the product on this machine: the synthesised workflow, in moto
	$(BIN)/totes run

test: install build  ## the core's doctests, then every test tier at once (TEST_WORKERS processes, a file each)
	$(BIN)/python -m pytest -q --doctest-modules layers/core/totes
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests/unit tests/integration tests/workflow tests/infra $(PYTEST_FLAGS)

test-fast: install  ## the tiers without tests marked slow
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_FLAGS)

lint: $(STAMP)  ## ruff, mypy and bandit, as CI runs them
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r layers tools lambdas stacks scripts app.py

format: $(STAMP)  ## rewrite the code in the house style
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

synth: install build  ## synthesise the CloudFormation template into cdk.out/
	npx cdk synth --quiet

bench: bench-seed bench-ingest bench-transform bench-load bench-workflow  ## every benchmark (numbers, not pass/fail)

bench-seed: $(STAMP)  ## seed time and peak memory at scale 1 and 100 (BENCH_ARGS="0.1 1" to change)
	$(BIN)/python bench/seed.py $(BENCH_ARGS)

bench-ingest: $(STAMP)  ## ingest throughput, peak memory and idle cost at scale 100 (BENCH_SCALE=1 to change)
	$(BIN)/python bench/ingest.py $(BENCH_SCALE)

bench-transform: $(STAMP)  ## transform of the sales_order batch at scale 100: time and peak memory
	$(BIN)/python bench/transform.py $(BENCH_SCALE)

bench-load: $(STAMP)  ## load of fact_sales_order at scale 100: first load, same file again, same rows again
	$(BIN)/python bench/load.py

bench-workflow: $(STAMP) build  ## the whole workflow vs a plain COPY: backfill, idle, 1 % changed (BENCH_ARGS="--scale 20 --repeat 3")
	$(BIN)/python bench/workflow.py $(BENCH_ARGS)

bench-history: $(STAMP) build  ## 500 executions with small changes: does the work per execution grow with history? (BENCH_ARGS="--executions 500")
	$(BIN)/python bench/history.py $(BENCH_ARGS)

bench-cost: $(STAMP) build  ## the monthly AWS bill from executions at the client's change rate (BENCH_ARGS="--executions 48")
	$(BIN)/python bench/cost.py $(BENCH_ARGS)

clean:  ## remove build output and local data (keeps .venv)
	rm -rf cdk.out build .pytest_cache .mypy_cache .ruff_cache .hypothesis .totes
