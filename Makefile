# raftcache developer entry points. `make test` and `make run` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROTOS := $(wildcard proto/raftcache/v1/*.proto)

.PHONY: run test lint typecheck unit integration proto bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m raftcache.chaos.local_cluster run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy node consensus chaos client
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit tests/consensus

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto \
		--grpc_python_out=proto $(PROTOS)

bench: $(STAMP)
	$(BIN)/python -m bench.run --out bench-results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
