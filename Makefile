# raftcache developer entry points. `make test` and `make run` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# make test's pytest workers (pytest-xdist, one test file per worker at a time): most of an
# integration test's time is waiting on elections, failovers and timeouts, not CPU.
TEST_WORKERS ?= 2
PROTOS := $(wildcard proto/raftcache/v1/*.proto)

.PHONY: run test bytecode typecheck unit integration proto bench bench-peers chaos chaos-netns chaos-long chaos-clean clean image base-image \
	deploy-test redis-compat memcached-compat

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The project's own bytecode, written once. Where PYTHONDONTWRITEBYTECODE is set (this team's
# machines set it), Python never caches it, so every node process compiled its ~90 modules again
# at start: 0.3 s of CPU each, and the tests start hundreds of nodes. compileall rewrites only
# what changed (the .pyc files are git-ignored).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 proto/raftcache node consensus client chaos bench tests \
		>/dev/null

run: bytecode
	$(BIN)/python -m raftcache.chaos.local_cluster run

test: bytecode
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory typecheck
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# mypy cannot follow setuptools' editable package-dir mapping, so check a symlinked
# raftcache/ tree laid out exactly as the installed package, plus tests/typing: SDK calls
# as users write them (never run; the SDK's signatures must accept them).
TYPECHECK_DIR := build/typecheck
typecheck: $(STAMP)
	rm -rf $(TYPECHECK_DIR) && mkdir -p $(TYPECHECK_DIR)/raftcache
	ln -s $(CURDIR)/proto/raftcache/__init__.py $(TYPECHECK_DIR)/raftcache/__init__.py
	ln -s $(CURDIR)/proto/raftcache/v1 $(TYPECHECK_DIR)/raftcache/v1
	for p in node consensus client chaos; do ln -s $(CURDIR)/$$p $(TYPECHECK_DIR)/raftcache/$$p; done
	ln -s $(CURDIR)/tests/typing $(TYPECHECK_DIR)/sdk_typing
	cd $(TYPECHECK_DIR) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
		-p raftcache.node -p raftcache.consensus -p raftcache.client -p raftcache.chaos \
		-p sdk_typing

unit: bytecode
	$(BIN)/pytest -q tests/unit tests/consensus

integration: bytecode
	$(BIN)/pytest -q tests/integration

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto \
		--grpc_python_out=proto $(PROTOS)

bench: bytecode
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run --out bench-results $(BENCH_ARGS)

# etcd (3 members), raftcache (raw gRPC, SDK, RESP, memcached), Redis (primary + 2 replicas)
# and memcached in one run at 1 and 64 clients: bench-results/peers.{json,md,svg}. Installs
# the Debian packages it needs (root). A few minutes; e.g. BENCH_ARGS='--peers-seconds 10'.
bench-peers: bytecode
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run --out bench-results --only peers $(BENCH_ARGS)

chaos: bytecode
	$(BIN)/raftcache-chaos --duration 300 --out chaos-results

# The same in network-namespace mode (root): partitions cut every port, client and forwarding
# traffic included, plus one-way cuts, bridge flapping and packet loss (chaos/netns.py).
chaos-netns: bytecode
	$(BIN)/raftcache-chaos --net netns --duration 300 --out chaos-results

# 30 minutes of every fault kind in namespace mode (root): kills, pauses, partitions, one-way
# cuts, bridge flaps, loss, clock skew, membership changes (a follower removed, wiped and re-added
# through --join; a 4th member added then one removed) and leader transfers, under the gRPC, RESP
# and memcached workloads with every checker on. The report prints per fault kind the longest
# write gap and the p99 latency under it; chaos-results-long/report.html plots them.
chaos-long: bytecode
	$(BIN)/raftcache-chaos --net netns --nemesis mix --workloads mix --duration 1800 \
		--check-budget 600 --compaction-entries 2000 --out chaos-results-long

# Remove namespaces, veths, bridges and FORWARD rules a killed --net netns run left behind.
chaos-clean: $(STAMP)
	$(BIN)/python -m raftcache.chaos.netns cleanup

# Redis 7.0.15's own test suite (from Debian's redis source package, fetched once into
# .cache/redis-compat) against a 3-node cluster's leader: passed/failed/skipped per unit, every
# failure, a reason per skip (tests/compat/redis-skip.txt), and .cache/redis-compat/summary.json.
# E.g. REDIS_COMPAT_ARGS='--units type/hash,multi --min-pass-rate 90'. About 20-30 minutes.
redis-compat: bytecode
	$(BIN)/python -m tests.compat.redis_suite $(REDIS_COMPAT_ARGS)

# The memcached front-end against the real thing: a byte-for-byte differential check with
# Debian's memcached 1.6 and libmemcached's `memccapable -a` on a 3-node cluster (each skips
# with a reason when its binary is missing: apt-get install -y memcached libmemcached-tools).
memcached-compat: bytecode
	$(BIN)/pytest -q -rs tests/integration/test_memcached_differential.py \
		tests/integration/test_memcached_memccapable.py

# The node image (deploy/Dockerfile) from the files git knows of (no .venv, no data dirs).
# No registry? `make base-image`, then `make image BASE_IMAGE=raftcache-base:bookworm`.
IMAGE ?= raftcache:dev
BASE_IMAGE ?= python:3.11-slim-bookworm
image:
	git ls-files -z --cached --others --exclude-standard \
		| tar --null --ignore-failed-read -T - -c \
		| docker build -f deploy/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) -

# A python3 base image from Debian packages (debootstrap + docker import; needs root).
base-image:
	bash deploy/base/build-debian-base.sh raftcache-base:bookworm

# Manifest tests and the image run as the StatefulSet would (needs a Docker engine).
deploy-test: $(STAMP)
	$(BIN)/pytest -q tests/deploy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
