"""The security bench's pieces that need no cluster: the users file, the Basic header, the
measuring order, the medians/spreads, the ratios and verdicts, and the tables."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import pytest
from raftcache.node import acl

from bench import security_section as sec


def _run(protocol: str, op: str, config: str, rep: int, ops: float, **extra: Any) -> dict[str, Any]:
    return {
        "protocol": protocol,
        "op": op,
        "config": config,
        "rep": rep,
        "ops_per_s": ops,
        "latency_ms": {"p50": 1.0 + rep, "p99": 10.0 + rep},
        "leader_cpu_us_per_op": extra.pop("cpu", 100.0),
        "errors": 0,
        "unaccounted_pct": 5.0,
        "load_start": [1.5 + rep, 1.0, 1.0],
        **extra,
    }


# ----------------------------------------------------------------------------- users file


def test_app_user_is_added_with_acl_setuser_and_restricted_to_bench_keys() -> None:
    argv = sec.app_user_argv()
    assert argv[:3] == ["ACL", "SETUSER", "app"]
    users = acl.Acl.parse("user default on nopass ~* &* +@all\nuser app " + " ".join(argv[3:]))
    app = users.users["app"]
    assert not app.unrestricted  # every request of app pays the command and key checks
    assert users.authenticate("app", b"app-pw") is app
    assert users.authenticate("app", b"wrong") is None
    assert app.denial([b"get", b"key:1"], []) is None
    assert app.denial([b"get", b"other:1"], []) is not None
    assert app.denial([b"config", b"get", b"maxmemory"], []) is not None
    assert users.open  # the plain clients (no login) stay the open default user


def test_basic_authorization_header() -> None:
    header = sec.basic_authorization("app", "app-pw")
    scheme, token = header.split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token) == b"app:app-pw"


def test_access_per_configuration() -> None:
    assert sec.access_for("plain", None) == sec.Access()
    assert sec.access_for("users", None) == sec.Access("app", "app-pw")


# ----------------------------------------------------------------------------- order


def test_plan_interleaves_configurations_and_reverses_every_other_rep() -> None:
    cells = sec.plan(2)
    assert len(cells) == 2 * len(sec.PROTOCOLS) * len(sec.OPS) * len(sec.CONFIGS)
    first = [(c.protocol, c.op, c.config) for c in cells[:3]]
    assert first == [("resp", "set", "plain"), ("resp", "set", "users"), ("resp", "set", "tls")]
    rep1 = [c for c in cells if c.rep == 1]
    assert [c.config for c in rep1[:3]] == ["tls", "users", "plain"]
    # SET before GET in every repetition and protocol, so GETs find keys
    for rep in (0, 1):
        for protocol in sec.PROTOCOLS:
            ops = [c.op for c in cells if c.rep == rep and c.protocol == protocol]
            assert ops == ["set"] * 3 + ["get"] * 3
    # every cell is measured once per repetition
    assert len({(c.rep, c.protocol, c.op, c.config) for c in cells}) == len(cells)


def test_over_six_repetitions_every_configuration_takes_every_position_twice() -> None:
    orders = [sec.config_order(rep) for rep in range(6)]
    assert orders[:2] == [["plain", "users", "tls"], ["tls", "users", "plain"]]
    assert len({tuple(o) for o in orders}) == 6  # all six permutations
    for config in sec.CONFIGS:
        assert sorted(o.index(config) for o in orders) == [0, 0, 1, 1, 2, 2]
    # two configurations: alternate
    assert [sec.config_order(r, ("plain", "tls")) for r in range(4)] == [
        ["plain", "tls"], ["tls", "plain"], ["tls", "plain"], ["plain", "tls"],
    ]  # fmt: skip


# ----------------------------------------------------------------------------- math


def test_summarize_medians_spread_and_failed_runs() -> None:
    runs = [
        _run("resp", "set", "plain", 0, 1000.0, cpu=50.0),
        _run("resp", "set", "plain", 1, 1200.0, cpu=70.0),
        _run("resp", "set", "plain", 2, 1100.0, cpu=60.0),
        {"protocol": "resp", "op": "set", "config": "users", "rep": 0, "failed": "x",
         "load_start": []},
        _run("resp", "set", "users", 1, 900.0),
    ]  # fmt: skip
    summary = sec.summarize(runs)
    plain = summary["resp"]["set"]["plain"]
    assert plain["median_ops_per_s"] == 1100.0
    assert (plain["min_ops_per_s"], plain["max_ops_per_s"]) == (1000.0, 1200.0)
    assert math.isclose(plain["spread_pct"], 200 / 1100 * 100)
    assert plain["p50_ms"] == 2.0 and plain["p99_ms"] == 11.0
    assert plain["leader_cpu_us_per_op"] == 60.0
    assert plain["load_start"] == [1.5, 2.5, 3.5]
    users = summary["resp"]["set"]["users"]
    assert (users["runs"], users["failed_runs"], users["median_ops_per_s"]) == (2, 1, 900.0)


def test_ratios_targets_verdicts_and_paired_ratios() -> None:
    runs = []
    for rep, (plain, users, tls) in enumerate([(1000, 960, 700), (1200, 1140, 960)]):
        runs += [
            _run("resp", "get", "plain", rep, plain, cpu=100.0),
            _run("resp", "get", "users", rep, users, cpu=104.0),
            _run("resp", "get", "tls", rep, tls, cpu=130.0),
        ]
    result = {
        (r["protocol"], r["op"], r["config"]): r for r in sec.ratios(sec.summarize(runs), runs)
    }
    users = result[("resp", "get", "users")]
    assert math.isclose(users["ratio"], 1050 / 1100)
    assert users["paired_ratios"] == [0.96, 0.95]
    assert math.isclose(users["paired_median"], 0.955)
    assert (users["target"], users["verdict"]) == (0.95, "PASS")
    assert math.isclose(users["leader_cpu_per_op_ratio"], 1.04)
    tls = result[("resp", "get", "tls")]
    assert math.isclose(tls["ratio"], 830 / 1100)
    assert tls["paired_ratios"] == [0.7, 0.8]
    assert tls["verdict"] == "PASS"  # median 0.75 >= 0.75
    # cells not measured have no number, never a verdict
    missing = result[("grpc", "set", "users")]
    assert math.isnan(missing["ratio"]) and missing["verdict"] == "NO DATA"
    assert missing["paired_ratios"] == [] and math.isnan(missing["paired_median"])
    assert len(result) == len(sec.PROTOCOLS) * len(sec.OPS) * len(sec.TARGETS)


def test_a_miss_is_a_miss() -> None:
    runs = [_run("resp", "set", "plain", 0, 1000.0), _run("resp", "set", "users", 0, 949.0)]
    assert _users_ratio(runs)["verdict"] == "MISS"


def _users_ratio(runs: list[dict[str, Any]]) -> dict[str, Any]:
    (users,) = [r for r in sec.ratios(sec.summarize(runs), runs) if r["config"] == "users"
                and r["protocol"] == "resp" and r["op"] == "set"]  # fmt: skip
    return users


def test_the_verdict_is_on_paired_ratios_not_on_medians_of_runs_minutes_apart() -> None:
    # The host slows from 1000 to 600 ops/s after the plain run of rep 2: every other
    # users run is 1% behind the plain run beside it.
    pairs = [(1000, 990), (1000, 990), (1000, 594), (600, 594), (600, 594)]
    runs = []
    for rep, (plain, users) in enumerate(pairs):
        runs += [_run("resp", "set", "plain", rep, plain), _run("resp", "set", "users", rep, users)]
    users = _users_ratio(runs)
    assert math.isclose(users["ratio"], 0.594)  # medians: 594 against 1000
    assert math.isclose(users["paired_median"], 0.99)
    assert users["verdict"] == "PASS"
    # and a cost paid in every pair is a miss, whatever the medians say
    for plain_run, users_run in zip(runs[::2], runs[1::2], strict=True):
        users_run["ops_per_s"] = plain_run["ops_per_s"] * 0.94
    users = _users_ratio(runs)
    assert math.isclose(users["paired_median"], 0.94) and users["verdict"] == "MISS"


def test_markdown_tables() -> None:
    runs = [
        _run(p, o, c, rep, 1000.0 - 10 * i)
        for rep in (0, 1)
        for p in sec.PROTOCOLS
        for o in sec.OPS
        for i, c in enumerate(sec.CONFIGS)
    ]
    summary = sec.summarize(runs)
    section = {
        "setup": {"clients": 64, "generator_processes": 2, "warmup_s": 1, "seconds": 8, "reps": 2},
        "load_start": {"uptime": "load average: 0.50"},
        "load_end": {"uptime": "load average: 3.00"},
        "summary": summary,
        "ratios": sec.ratios(summary, runs),
        "grpc_checks": {"summary": "present and committed"},
        "probes": {"grpc Get other:probe as app": "PERMISSION_DENIED"},
    }
    text = sec.markdown(section)
    assert "| RESP | SET | plain | 1,000 | 1,000..1,000 | 0.0 |" in text
    row = "| gRPC | GET | tls/plain | 0.980 | 0.980, 0.980 | 0.980 | 1.00 | >= 0.75 | PASS |"
    assert row in text
    assert "| gRPC | GET | users/plain | 0.990 |" in text
    assert "present and committed" in text and "PERMISSION_DENIED" in text
    assert "load average: 3.00" in text


def test_run_registers_the_section_and_its_options() -> None:
    from bench import run

    args = run.build_parser().parse_args(
        ["--only", "security", "--security-seconds", "8", "--security-reps", "3"]
    )
    assert args.only == ["security"]
    assert (args.security_seconds, args.security_reps, args.security_warmup) == (8.0, 3, 1.0)


# ----------------------------------------------------------------------------- h2load (gRPC)

H2LOAD_OUTPUT = """starting benchmark...
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 5.00s, 3120.40 req/s, 509.35KB/s
requests: 15602 total, 15666 started, 15602 done, 15602 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 15602 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 2.49MB (2607843) total, 151.09KB (154715) headers (space savings 96.12%), \
2.19MB (2293494) data
                     min         max         mean         sd        +/- sd
time for request:     2.03ms     78.66ms     20.45ms      6.80ms    77.32%
"""


def test_h2load_summary_is_parsed() -> None:
    counts = sec.parse_h2load(H2LOAD_OUTPUT)
    assert counts == {
        "seconds": 5.0,
        "total": 15602,
        "started": 15666,
        "done": 15602,
        "succeeded": 15602,
        "failed": 0,
        "errored": 0,
        "timeout": 0,
        "data_bytes": 2293494,
    }
    short = H2LOAD_OUTPUT.replace("finished in 5.00s", "finished in 202.26ms")
    assert sec.parse_h2load(short)["seconds"] == 0.20226


def test_h2load_output_without_its_summary_is_an_error() -> None:
    cut = H2LOAD_OUTPUT.replace("traffic:", "trafic:")
    with pytest.raises(ValueError, match="data_bytes"):
        sec.parse_h2load(cut)


def test_h2load_argv_sends_one_grpc_call_with_credentials_and_tls() -> None:
    path, body = sec.h2load_call("get")
    assert path == "/raftcache.v1.Cache/Get"
    request = sec.cache_pb2.GetRequest.FromString(body[5:])
    assert body[:5] == b"\0" + len(body[5:]).to_bytes(4, "big")
    assert request.key == b"key:0000001" and request.consistency == sec.cache_pb2.LINEARIZABLE
    warm = sec.h2load_argv("127.0.0.1:1", path, Path("b"), sec.Access(), seconds=0.5)
    assert warm[-1] == "http://127.0.0.1:1/raftcache.v1.Cache/Get"
    assert warm[warm.index("-D") + 1] == "500ms" and "-n" not in warm
    assert warm[warm.index("-c") + 1] == "4" and warm[warm.index("-m") + 1] == "16"
    assert not any(a.startswith("authorization") for a in warm)
    assert not any(a.startswith("--log-file") for a in warm)
    users = sec.h2load_argv(
        "127.0.0.1:1", path, Path("b"), sec.Access("app", "app-pw"), calls=900, log_file=Path("l")
    )
    assert f"authorization: {sec.basic_authorization('app', 'app-pw')}" in users
    assert users[users.index("-n") + 1] == "900" and "-D" not in users
    assert "--log-file=l" in users
    tls = sec.h2load_argv("127.0.0.1:1", path, Path("b"), sec.Access(ca_pem=b"CA"), calls=1)
    assert tls[-1].startswith("https://")


def test_unserved_sets_are_counted_from_the_revisions_written() -> None:
    def reply(version: int) -> bytes:
        return sec.cache_pb2.SetResponse(version=version).SerializeToString()

    counts = {"succeeded": 100, "data_bytes": 0}
    assert sec.unserved_calls("set", 100, counts, reply(10), reply(111)) == 0
    assert sec.unserved_calls("set", 100, counts, reply(10), reply(101)) == 10
    assert sec.unserved_calls("set", 100, counts, reply(10), reply(11)) == 100
    with pytest.raises(ValueError, match="another writer"):
        sec.unserved_calls("set", 100, counts, reply(10), reply(112))


def test_unserved_gets_are_counted_from_the_reply_bytes() -> None:
    served = sec.cache_pb2.GetResponse(found=True, value=b"v" * 100, version=7).SerializeToString()
    size = 5 + len(served)
    whole = {"succeeded": 10, "data_bytes": 10 * size}
    assert sec.unserved_calls("get", 10, whole, served, served) == 0
    short = {"succeeded": 10, "data_bytes": 7 * size}
    assert sec.unserved_calls("get", 10, short, served, served) == 3
    with pytest.raises(ValueError, match="not replies"):
        sec.unserved_calls("get", 10, {"data_bytes": 7 * size + 1}, served, served)
    with pytest.raises(ValueError, match="of the 10"):
        sec.unserved_calls("get", 10, {"data_bytes": 11 * size}, served, served)
    missing = sec.cache_pb2.GetResponse(found=False).SerializeToString()
    with pytest.raises(ValueError, match="miss the key"):
        sec.unserved_calls("get", 1, {"data_bytes": 5}, missing, missing)
    other = sec.cache_pb2.GetResponse(found=True, value=b"w" * 100, version=8).SerializeToString()
    with pytest.raises(ValueError, match="differ"):
        sec.unserved_calls("get", 1, {"data_bytes": size}, served, other)


def test_h2load_latencies_are_read_from_its_request_log(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("1700000000000000\t200\t1500\n1700000000000100\t200\t2500\n1\t503\t9\n")
    assert sec.h2load_latencies_s(log) == [0.0015, 0.0025]


def test_the_grpc_generator_is_checked() -> None:
    with pytest.raises(ValueError, match="grpc_generator"):
        sec.run(Path("/nonexistent"), Path("/nonexistent"), [], grpc_generator="python")
