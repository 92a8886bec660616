"""raftcache benchmark harness: throughput/latency, failover, snapshot stall, leader profile.

Run with `make bench` (or `.venv/bin/python -m bench.run --out bench-results`);
`python -m bench.run --help` lists the options.
"""
