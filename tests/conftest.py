"""Run-wide settings: under `pytest -n N` (pytest-xdist, what `make test` runs), each worker
picks node ports from its own share of free_port's range, so two workers' clusters never race
for one port between its pick and a node binding it."""

from __future__ import annotations

import os

from raftcache.chaos import local_cluster


def pytest_configure() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"... under -n
    if worker.startswith("gw"):
        count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
        ports = local_cluster._LISTEN_PORTS
        share = len(ports) // count
        # A crashed worker's replacement is gw<count>, gw<count + 1>...: it takes the dead
        # one's share (free_port still binds to check a port is free).
        start = ports.start + (int(worker[2:]) % count) * share
        local_cluster._LISTEN_PORTS = range(start, start + share)
