.PHONY: setup run test test-postgres lint format bench load chaos lock fabric-up fabric-down test-fabric

MINUTES ?= 10

setup:  ## create .venv and install the locked dependencies
	scripts/setup.sh

run:  ## set up and run the platform on its embedded defaults, quietly (logs in the var folder's logs/), ending with a box: portal URL, demo users, mail folder
	scripts/run.sh

test:  ## set up and run the whole test suite (what CI runs)
	scripts/test.sh

test-postgres:  ## the PostgreSQL pass alone (make test runs it after the SQLite pass)
	TEST_DATABASES=postgresql scripts/test.sh

lint:  ## ruff, mypy and the import rules (.importlinter)
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy && .venv/bin/lint-imports --no-cache

format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

bench:  ## run the benchmarks, each against its naive baseline
	.venv/bin/python -m benchmarks.ledger_gate
	.venv/bin/python -m benchmarks.ingest
	.venv/bin/python -m benchmarks.bulk_ingest
	.venv/bin/python -m benchmarks.analysis
	.venv/bin/python -m benchmarks.misuse_detection
	.venv/bin/python -m benchmarks.training

load:  ## load test: the platform as make run starts it, 50 users for 2 minutes (Locust, 127.0.0.1 only)
	scripts/setup.sh
	.venv/bin/python -m benchmarks.load.run

chaos:  ## chaos run (not part of make test): MINUTES (10) of analyses, consents and exports while workers are killed and the ledger locked
	scripts/setup.sh
	.venv/bin/python -m benchmarks.chaos --minutes $(MINUTES)

lock:  ## re-resolve requirements.lock from pyproject.toml
	.venv/bin/uv pip compile pyproject.toml --extra dev --python 3.11 --generate-hashes -q -o requirements.lock

fabric-up:  ## start the native Fabric network on 127.0.0.1 (needs FABRIC_BIN_DIR); writes var/fabric/client.env
	sh network/fabric.sh up

fabric-down:  ## stop it (its ledger stays in var/fabric until removed)
	sh network/fabric.sh down

test-fabric:  ## the conformance suite and an end-to-end analysis on a real Fabric network (needs FABRIC_BIN_DIR)
	.venv/bin/pytest -m fabric tests/ledger tests/chaincode tests/fabric
