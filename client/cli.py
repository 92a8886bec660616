"""`raftcache`: read, write and inspect a raftcache cluster from the shell.

Commands (global options go before or after the command):
  get KEY                        print the value; `(nil)` and exit 1 when the key is missing
  set KEY VALUE [--ttl S] [--if-absent | --if-present] [--expected-version N]
                                 store a value; prints its new version
  del KEY...                     delete keys; prints how many existed
  incr KEY [DELTA] [--ttl S]     add DELTA (default 1) to a decimal counter; prints the result
  mget KEY...                    print one value per line, in order (`(nil)` when missing)
  mset KEY VALUE [KEY VALUE...] [--ttl S]
                                 store several keys atomically
  status                         one row per node: id, role, term, applied index, lag, address

Global options: --endpoints HOST:PORT[,HOST:PORT...] (default $RAFTCACHE_ENDPOINTS, else
127.0.0.1:6381), --timeout S (default 5), --consistency linearizable|stale and
--max-staleness S (reads), --json (one JSON object per command), --client-id ID.

Values print as UTF-8 text when they decode, else as an escaped bytes literal (b'\\xff');
with --json, "value" is text (undecodable bytes backslash-escaped) and "value_b64" is
added when the value is not UTF-8.

Exit codes:
  0    success
  1    get: the key is missing (also an error of no known class)
  2    bad usage or invalid input (including a malformed endpoint)
  3    a condition failed (--if-absent, --if-present, --expected-version, incr of a
       non-integer); nothing changed
  4    unavailable or overloaded (e.g. nothing listening at the endpoints); nothing applied
  5    outcome unknown: a write may or may not have been applied; re-run the same command
       with the --client-id printed in the message to retry it at most once
  6    too large: the answer would exceed the message limit
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from raftcache.client import Client, NodeStatus, errors

DEFAULT_ENDPOINTS = "127.0.0.1:6381"
ENDPOINTS_ENV = "RAFTCACHE_ENDPOINTS"

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_CONDITION = 3
EXIT_UNAVAILABLE = 4
EXIT_OUTCOME_UNKNOWN = 5
EXIT_TOO_LARGE = 6
EXIT_INTERRUPTED = 130

# Most specific first: the first matching class decides the exit code.
_EXIT_CODES: list[tuple[type[errors.RaftcacheError], int]] = [
    (errors.InvalidInputError, EXIT_USAGE),
    (errors.ConditionFailedError, EXIT_CONDITION),
    (errors.UnavailableError, EXIT_UNAVAILABLE),
    (errors.OverloadedError, EXIT_UNAVAILABLE),
    (errors.OutcomeUnknownError, EXIT_OUTCOME_UNKNOWN),
    (errors.TooLargeError, EXIT_TOO_LARGE),
]

_INT64 = 1 << 63


class UsageError(Exception):
    """Bad command-line input, found after argparse accepted the syntax."""


@dataclass
class Reply:
    """What a command prints: `data` with --json, else `lines`; and its exit code."""

    data: Any
    lines: list[str] = field(default_factory=list)
    code: int = EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors in the same form as every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"raftcache: error: {message} (see '{self.prog} --help')\n")


# -- argument types -----------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a version number, got {text!r}") from None
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"must be 0 .. 2**64-1, got {text!r}")
    return value


def _delta(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not -_INT64 <= value < _INT64:
        raise argparse.ArgumentTypeError(f"must fit in a signed 64-bit integer, got {text!r}")
    return value


def parse_endpoints(text: str) -> list[str]:
    """HOST:PORT[,HOST:PORT...] as a list; UsageError naming the first malformed one."""
    endpoints = [part.strip() for part in text.split(",") if part.strip()]
    if not endpoints:
        raise UsageError("no endpoints given: pass --endpoints HOST:PORT[,HOST:PORT...]")
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        if not host or host in ("[]",) or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(
                f"bad endpoint {endpoint!r}: expected HOST:PORT, e.g. {DEFAULT_ENDPOINTS}"
            )
    return endpoints


def _raw(text: str) -> bytes:
    """A command-line argument as the exact bytes the shell passed."""
    return os.fsencode(text)


# -- output -------------------------------------------------------------------------


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return repr(value)


def _value_json(value: bytes) -> dict[str, Any]:
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {
            "value": value.decode("utf-8", "backslashreplace"),
            "value_b64": base64.b64encode(value).decode("ascii"),
        }


# -- commands -----------------------------------------------------------------------


def _read_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"consistency": args.consistency, "max_staleness": args.max_staleness}


def _get(client: Client, args: argparse.Namespace) -> Reply:
    item = client.get_item(_raw(args.key), **_read_options(args))
    if item is None:
        return Reply({"found": False, "key": args.key}, ["(nil)"], EXIT_NOT_FOUND)
    data = {"found": True, "key": args.key, **_value_json(item.value)}
    data.update(version=item.version, ttl=item.ttl)
    return Reply(data, [_text(item.value)])


def _set(client: Client, args: argparse.Namespace) -> Reply:
    version = client.set(
        _raw(args.key),
        _raw(args.value),
        ttl=args.ttl,
        if_absent=args.if_absent,
        if_present=args.if_present,
        expected_version=args.expected_version,
    )
    return Reply({"ok": True, "key": args.key, "version": version}, [f"OK (version {version})"])


def _del(client: Client, args: argparse.Namespace) -> Reply:
    results = []
    try:
        for key in args.keys:
            results.append({"key": key, "existed": client.delete(_raw(key))})
    except errors.RaftcacheError as exc:
        if results:  # earlier keys are gone; say so rather than hide it
            exc.args = (f"{exc} ({len(results)} of {len(args.keys)} keys deleted before this)",)
        raise
    deleted = sum(1 for r in results if r["existed"])
    return Reply({"deleted": deleted, "results": results}, [str(deleted)])


def _incr(client: Client, args: argparse.Namespace) -> Reply:
    value = client.incr(_raw(args.key), args.delta, ttl=args.ttl)
    return Reply({"key": args.key, "value": value}, [str(value)])


def _mget(client: Client, args: argparse.Namespace) -> Reply:
    values = client.mget([_raw(k) for k in args.keys], **_read_options(args))
    results: list[dict[str, Any]] = []
    for key, value in zip(args.keys, values, strict=True):
        shown = {} if value is None else _value_json(value)
        results.append({"key": key, "found": value is not None, **shown})
    lines = ["(nil)" if v is None else _text(v) for v in values]
    return Reply({"results": results}, lines)


def _mset(client: Client, args: argparse.Namespace) -> Reply:
    pairs = args.pairs
    if len(pairs) % 2:
        raise UsageError(f"mset takes KEY VALUE pairs; {pairs[-1]!r} has no value")
    keys, values = pairs[0::2], pairs[1::2]
    versions = client.mset(
        [(_raw(k), _raw(v)) for k, v in zip(keys, values, strict=True)], ttl=args.ttl
    )
    items = [{"key": k, "version": v} for k, v in zip(keys, versions, strict=True)]
    return Reply({"ok": True, "items": items}, [f"OK ({len(items)} keys)"])


def _lags(nodes: list[NodeStatus]) -> list[int | None]:
    """Leader's commit index minus each node's applied index (None for a node that is down)."""
    leaders = [n for n in nodes if n.role == "leader"]
    leader = max(leaders, key=lambda n: n.term) if leaders else None
    lags: list[int | None] = []
    for n in nodes:
        if n.role == "down":
            lags.append(None)
        elif n is leader:
            lags.append(0)
        else:
            reference = leader.commit_index if leader else n.leader_commit_index
            lags.append(max(0, reference - n.applied_index))
    return lags


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _status(client: Client, args: argparse.Namespace) -> Reply:
    nodes = client.cluster_status()
    if all(n.role == "down" for n in nodes):
        raise errors.UnavailableError(f"no node answered Cluster.Status within {args.timeout} s")
    nodes.sort(key=lambda n: (n.role == "down", n.node_id, n.address))
    lags = _lags(nodes)
    data = [
        {
            "id": n.node_id,
            "role": n.role,
            "term": n.term,
            "applied_index": n.applied_index,
            "commit_index": n.commit_index,
            "lag": lag,
            "keys": n.keys,
            "leader_id": n.leader_id,
            "address": n.address,
        }
        for n, lag in zip(nodes, lags, strict=True)
    ]
    rows = [["ID", "ROLE", "TERM", "APPLIED", "LAG", "ADDRESS"]]
    for n, lag in zip(nodes, lags, strict=True):
        up = n.role != "down"
        numbers = [str(n.term), str(n.applied_index), str(lag)] if up else ["-", "-", "-"]
        rows.append([n.node_id if up else "-", n.role, *numbers, n.address])
    return Reply(data, _table(rows))


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], Reply]] = {
    "get": _get,
    "set": _set,
    "del": _del,
    "incr": _incr,
    "mget": _mget,
    "mset": _mset,
    "status": _status,
}


# -- parser -------------------------------------------------------------------------


def _add_global_options(parser: argparse.ArgumentParser, *, in_command: bool) -> None:
    """The same options on the top parser and on every command, so either place works.

    On commands the defaults are suppressed, so they never overwrite a value given
    before the command name."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if in_command else value

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--endpoints",
        metavar="HOST:PORT[,...]",
        default=default(None),
        help=f"nodes to contact (default: ${ENDPOINTS_ENV}, else {DEFAULT_ENDPOINTS})",
    )
    group.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        default=default(5.0),
        help="deadline for the whole command, retries included (default: 5)",
    )
    group.add_argument(
        "--consistency",
        choices=["linearizable", "stale"],
        default=default("linearizable"),
        help="reads: 'linearizable' (via the leader, default) or 'stale' (any node)",
    )
    group.add_argument(
        "--max-staleness",
        type=_seconds,
        metavar="SECONDS",
        default=default(None),
        help="stale reads: refuse a node further behind the leader than this",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON object per command (status: a list)",
    )
    group.add_argument(
        "--client-id",
        metavar="ID",
        default=default(None),
        help="request id prefix; re-run a write whose outcome was unknown (exit 5) with "
        "the id from its message to apply it at most once. Only for retrying the same "
        "command: a reused id returns the earlier answer",
    )


def _ttl_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--ttl", type=_seconds, metavar="SECONDS", help=f"expire {what} after this long"
    )


_EXIT_HELP = """exit codes:
  0    ok
  1    get: the key is missing
  2    bad usage or invalid input
  3    condition failed; nothing changed
  4    unavailable or overloaded; nothing applied
  5    outcome unknown; retry with the --client-id the message gives
  6    too large
  130  interrupted"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="raftcache",
        description="Read, write and inspect a raftcache cluster.",
        epilog=_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser, in_command=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=description or summary)
        _add_global_options(p, in_command=True)
        return p

    p = command("get", "print a key's value", "Print KEY's value; '(nil)' and exit 1 if missing.")
    p.add_argument("key", metavar="KEY")

    p = command("set", "store a value", "Store VALUE at KEY; prints the key's new version.")
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE")
    _ttl_option(p, "the key")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--if-absent", action="store_true", help="only if KEY does not exist")
    only.add_argument("--if-present", action="store_true", help="only if KEY exists")
    p.add_argument(
        "--expected-version",
        type=_version,
        metavar="N",
        help="compare-and-set: only if KEY's version is N (0: KEY must not exist)",
    )

    p = command("del", "delete keys", "Delete each KEY; prints how many existed.")
    p.add_argument("keys", nargs="+", metavar="KEY")

    p = command(
        "incr",
        "add to a counter",
        "Add DELTA (default 1, may be negative) to the decimal counter at KEY; a missing "
        "key starts at 0. Prints the new value.",
    )
    p.add_argument("key", metavar="KEY")
    p.add_argument("delta", nargs="?", type=_delta, default=1, metavar="DELTA")
    _ttl_option(p, "a counter this creates")

    p = command("mget", "print several values", "Print each KEY's value on its own line.")
    p.add_argument("keys", nargs="+", metavar="KEY")

    p = command("mset", "store several keys atomically", "Store every KEY VALUE pair at once.")
    p.add_argument("pairs", nargs="+", metavar="KEY VALUE")
    _ttl_option(p, "every key")

    command(
        "status",
        "show every node's role and lag",
        "One row per node: id, role, term, applied index, lag behind the leader's commit "
        "index ('-' when the node is down), client address.",
    )
    return parser


# -- entry point --------------------------------------------------------------------


def _message(exc: errors.RaftcacheError, args: argparse.Namespace, endpoints: list[str]) -> str:
    text = str(exc)
    if isinstance(exc, errors.UnavailableError):
        text += (
            f" [endpoints: {','.join(endpoints)}; check that the nodes are running, "
            f"or set --endpoints / ${ENDPOINTS_ENV}]"
        )
    elif isinstance(exc, errors.OverloadedError):
        text += "; nothing was applied: retry later"
    elif isinstance(exc, errors.OutcomeUnknownError):
        client_id = exc.request_id[0] if exc.request_id else args.client_id
        text = (
            f"outcome unknown: {text}. From the shell: run the same command again with "
            f"--client-id {client_id} to retry it safely (applied at most once)"
        )
    return " ".join(text.split())  # one line, whatever the server's details held


def _exit_code(exc: errors.RaftcacheError) -> int:
    return next((code for cls, code in _EXIT_CODES if isinstance(exc, cls)), EXIT_NOT_FOUND)


def _print(reply: Reply, as_json: bool) -> None:
    if as_json:
        print(json.dumps(reply.data))
    else:
        for line in reply.lines:
            print(line)


def _fail(code: int, message: str) -> int:
    print(f"raftcache: error: {message}", file=sys.stderr)
    return code


def _call(client: Client, args: argparse.Namespace) -> Reply:
    """Run the command, then close the client, unless Ctrl-C interrupted a call in flight:
    closing the loop under that call only prints asyncio noise, and the process exits."""
    try:
        reply = COMMANDS[args.command](client, args)
    except KeyboardInterrupt:
        raise
    except BaseException:
        client.close()
        raise
    client.close()
    return reply


def _run(args: argparse.Namespace) -> int:
    endpoints = parse_endpoints(
        args.endpoints or os.environ.get(ENDPOINTS_ENV) or DEFAULT_ENDPOINTS
    )
    if args.max_staleness is not None and args.consistency != "stale":
        raise UsageError("--max-staleness applies to stale reads: add --consistency stale")
    client = Client(endpoints, timeout=args.timeout, client_id=args.client_id)
    try:
        reply = _call(client, args)
    except errors.RaftcacheError as exc:
        return _fail(_exit_code(exc), _message(exc, args, endpoints))
    _print(reply, args.json)
    return reply.code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (see the module docstring)."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, or a usage error already printed
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        return _run(args)
    except UsageError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except KeyboardInterrupt:
        print("raftcache: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
