"""`raftcache`: read, write and inspect a raftcache cluster from the shell.

Commands (global options go before or after the command):
  get KEY                        print the value; `(nil)` and exit 1 when the key is missing
  set KEY VALUE [--ttl S] [--if-absent | --if-present] [--expected-version N]
                                 store a value; prints its new version
  del KEY...                     delete keys atomically (one request); prints how many existed
  incr KEY [DELTA] [--ttl S]     add DELTA (default 1) to a decimal counter; prints the result
  mget KEY...                    print one value per line, in order (`(nil)` when missing)
  mset KEY VALUE [KEY VALUE...] [--ttl S]
                                 store several keys atomically
  status                         one row per node: id, role, term, applied index, lag, address
  hset KEY FIELD VALUE [FIELD VALUE...] | hget KEY FIELD | hgetall KEY | hdel KEY FIELD...
  hincrby KEY FIELD [DELTA] | hlen KEY
  zadd KEY SCORE MEMBER [SCORE MEMBER...] | zincrby KEY DELTA MEMBER | zscore KEY MEMBER
  zrank KEY MEMBER [--reverse] | zrange KEY START STOP [--reverse] [--withscores]
  zrangebyscore KEY MIN MAX [--reverse] [--withscores] [--offset N] [--limit N]
                                 MIN/MAX: a score, (N to exclude N, -inf, +inf
  zrem KEY MEMBER... | zcard KEY | zcount KEY MIN MAX
  lpush|rpush KEY VALUE... | lpop|rpop KEY [COUNT] | lrange KEY START STOP | llen KEY
  sadd|srem KEY MEMBER... | smembers KEY | sismember KEY MEMBER | scard KEY
  expire KEY SECONDS | persist KEY | ttl KEY | type KEY
                                 typed values, as in Redis; a missing value or an empty pop
                                 prints `(nil)` and exits 1; booleans print 1 or 0
  scan [PREFIX] [--count N]      print every key starting with PREFIX, each once
  publish CHANNEL MESSAGE        publish; prints how many subscribers the leader had
  subscribe [CHANNEL...] [--pattern GLOB...] [--count N]
                                 print CHANNEL<TAB>MESSAGE as messages arrive
  watch KEY [--prefix] [--start-revision N] [--count N]
                                 print REVISION<TAB>KIND<TAB>KEY[<TAB>VALUE] per change;
                                 resumes by itself after a break
  acl setuser NAME [RULE...]     create or change a user with Redis ACL rules, e.g.
                                 acl setuser app on '>s3cret' '~app:*' -@all +@read
  acl deluser NAME...            delete users; prints how many existed
  acl list | acl getuser NAME | acl whoami
                                 every user (ACL LIST lines), one user's rules, who you are

Global options: --endpoints HOST:PORT[,HOST:PORT...] (default $RAFTCACHE_ENDPOINTS, else
127.0.0.1:6381), --timeout S (default 5), --consistency linearizable|stale and
--max-staleness S (reads), --json (one JSON object per command), --client-id ID;
TLS: --tls-ca-file FILE, and --tls-cert-file FILE --tls-key-file FILE for mTLS (default
$RAFTCACHE_TLS_CA_FILE, $RAFTCACHE_TLS_CERT_FILE, $RAFTCACHE_TLS_KEY_FILE; any one turns TLS on).
Credentials: --user NAME --password PW (default $RAFTCACHE_USER, $RAFTCACHE_PASSWORD; prefer
the variable for the password, which others can read in the process list).

Values print as UTF-8 text when they decode, else as an escaped bytes literal (b'\\xff');
with --json, "value" is text (undecodable bytes backslash-escaped) and "value_b64" is
added when the value is not UTF-8.

Exit codes:
  0    success
  1    get, hget, zscore, zrank, lpop, rpop, ttl: missing (also an error of no known class)
  2    bad usage or invalid input (including a malformed endpoint)
  3    a condition failed (--if-absent, --if-present, --expected-version, incr of a
       non-integer) or the key holds another type; nothing changed
  4    unavailable, overloaded or over --max-memory (e.g. nothing listening at the
       endpoints); nothing applied. subscribe: the stream broke or fell behind
  5    outcome unknown: a write may or may not have been applied; re-run the same command
       with the --client-id printed in the message to retry it at most once (unless the
       message says the cluster no longer remembers that id: then re-read first)
  6    too large: the request or the answer is over the message size limit
  7    watch: the start revision is no longer retained; re-read, then watch from now
  8    refused: wrong or missing credentials, or the user may not run the command
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

from raftcache.client import (
    Client,
    MemberInfo,
    Membership,
    Message,
    NodeStatus,
    TlsConfig,
    WatchEvent,
    errors,
    ops,
)
from raftcache.node import backup_file

DEFAULT_ENDPOINTS = "127.0.0.1:6381"
ENDPOINTS_ENV = "RAFTCACHE_ENDPOINTS"

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_CONDITION = 3
EXIT_UNAVAILABLE = 4
EXIT_OUTCOME_UNKNOWN = 5
EXIT_TOO_LARGE = 6
EXIT_REVISION_COMPACTED = 7
EXIT_REFUSED = 8
EXIT_INTERRUPTED = 130

# Most specific first: the first matching class decides the exit code.
_EXIT_CODES: list[tuple[type[errors.RaftcacheError], int]] = [
    (errors.InvalidInputError, EXIT_USAGE),
    (errors.ConditionFailedError, EXIT_CONDITION),  # WrongTypeError too
    (errors.NotFoundError, EXIT_NOT_FOUND),
    (errors.UnavailableError, EXIT_UNAVAILABLE),
    (errors.OverloadedError, EXIT_UNAVAILABLE),
    (errors.OutOfMemoryError, EXIT_UNAVAILABLE),
    (errors.SlowConsumerError, EXIT_UNAVAILABLE),
    (errors.OutcomeUnknownError, EXIT_OUTCOME_UNKNOWN),
    (errors.TooLargeError, EXIT_TOO_LARGE),
    (errors.RevisionCompactedError, EXIT_REVISION_COMPACTED),
    (errors.AuthenticationError, EXIT_REFUSED),
    (errors.PermissionDeniedError, EXIT_REFUSED),
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
    streamed: bool = False  # already printed item by item (subscribe, watch)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors in the same form as every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"raftcache: error: {message} (see '{self.prog} --help')\n")

    rules_positional = False
    """`acl setuser` parses `-@all`, `-get` as rules, not options."""

    def _parse_optional(self, arg_string: str) -> Any:
        if arg_string.lower() in _NEGATIVE_WORDS:  # a score bound, not an option
            return None
        rule = arg_string[:1] == "-" and arg_string[:2] != "--" and arg_string != "-h"
        if self.rules_positional and rule:
            return None
        return super()._parse_optional(arg_string)


_NEGATIVE_WORDS = ("-inf", "-infinity", "(-inf", "(-infinity")


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
    # One transaction without compares: every key goes in one replicated command, or none.
    answer = client.txn([], [ops.delete(_raw(key)) for key in args.keys])
    results = [
        {"key": key, "existed": bool(existed)}
        for key, existed in zip(args.keys, answer.results, strict=True)
    ]
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


# -- typed values: one table row per command ------------------------------------------
# Keys, fields, members and values stay str in args (for JSON) and become bytes at the
# call; each row names its positionals, its flags, the SDK call and how to show the result.


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value:
        raise argparse.ArgumentTypeError("NaN is not a score")
    return value


def _bound(text: str) -> tuple[float, bool]:
    """A score bound as Redis writes it: 5, (5 (exclusive), -inf, +inf."""
    exclusive = text.startswith("(")
    return _score(text[1:] if exclusive else text), exclusive


def _count(text: str) -> int:
    value = _delta(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    if len(items) % 2:
        raise UsageError(f"expected {what} pairs; {items[-1]!r} has no partner")
    return list(zip(items[0::2], items[1::2], strict=True))


def _scored_pairs(items: list[str]) -> dict[bytes, float]:
    try:
        return {_raw(m): _score(s) for s, m in _pairs(items, "SCORE MEMBER")}
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"zadd: bad SCORE: {exc}") from None


def _number(value: float) -> str:
    """3 rather than 3.0; 2.5, inf as they are."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _nil(args: argparse.Namespace) -> Reply:
    return Reply({"key": args.key, "found": False}, ["(nil)"], EXIT_NOT_FOUND)


def _show_int(args: argparse.Namespace, value: int) -> Reply:
    return Reply({"key": args.key, "value": value}, [str(value)])


def _show_bool(args: argparse.Namespace, value: bool) -> Reply:
    return Reply({"key": args.key, "value": value}, ["1" if value else "0"])


def _show_bytes(args: argparse.Namespace, value: bytes | None) -> Reply:
    if value is None:
        return _nil(args)
    return Reply({"key": args.key, "found": True, **_value_json(value)}, [_text(value)])


def _show_number(args: argparse.Namespace, value: float | None) -> Reply:
    if value is None:
        return _nil(args)
    return Reply({"key": args.key, "found": True, "value": value}, [_number(value)])


def _show_values(args: argparse.Namespace, values: list[bytes] | set[bytes] | None) -> Reply:
    if values is None:  # lpop/rpop with a COUNT on an empty list answer [] instead
        return _nil(args)
    ordered = sorted(values) if isinstance(values, set) else list(values)
    data = {"key": args.key, "values": [_value_json(v) for v in ordered]}
    return Reply(data, [_text(v) for v in ordered])


def _show_fields(args: argparse.Namespace, fields: dict[bytes, bytes]) -> Reply:
    items = [{"field": _text(f), **_value_json(v)} for f, v in fields.items()]
    return Reply(
        {"key": args.key, "fields": items}, [f"{_text(f)}\t{_text(v)}" for f, v in fields.items()]
    )


def _show_members(args: argparse.Namespace, members: list[Any]) -> Reply:
    if not args.withscores:
        return _show_values(args, members)
    data = [{"member": _text(m), "score": s} for m, s in members]
    return Reply(
        {"key": args.key, "members": data}, [f"{_text(m)}\t{_number(s)}" for m, s in members]
    )


def _show_pop(args: argparse.Namespace, value: Any) -> Reply:
    return _show_values(args, value) if args.count else _show_bytes(args, value)


def _show_ttl(args: argparse.Namespace, value: float | None) -> Reply:
    line = "(no expiry)" if value is None else _number(value)
    return Reply({"key": args.key, "found": True, "ttl": value}, [line])


def _show_type(args: argparse.Namespace, value: str) -> Reply:
    return Reply({"key": args.key, "type": value}, [value])


def _ttl(client: Client, args: argparse.Namespace) -> float | Reply | None:
    try:
        return client.ttl(_raw(args.key), **_read_options(args))
    except errors.NotFoundError:
        return _nil(args)


def _raws(items: list[str]) -> list[bytes]:
    return [_raw(item) for item in items]


def _range_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"reverse": args.reverse, "withscores": args.withscores, **_read_options(args)}


@dataclass(frozen=True)
class Typed:
    """One typed-value command: its help, arguments, the SDK call and its printer."""

    summary: str
    arguments: tuple[tuple[str, dict[str, Any]], ...]
    call: Callable[[Client, argparse.Namespace], Any]
    show: Callable[[argparse.Namespace, Any], Reply]


def _a(metavar: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    """A positional named after its metavar (FIELD... -> fields)."""
    dest = metavar.split()[0].lower() + ("s" if kwargs.get("nargs") == "+" else "")
    return dest, {"metavar": metavar, **kwargs}


def _flag(name: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    return name, kwargs


KEY = _a("KEY")
MEMBERS = _a("MEMBER", nargs="+")
VALUES = _a("VALUE", nargs="+")
REVERSE = _flag("--reverse", action="store_true", help="highest score first")
WITHSCORES = _flag("--withscores", action="store_true", help="print MEMBER<TAB>SCORE")
START, STOP = _a("START", type=_delta), _a("STOP", type=_delta)
MIN, MAX = (_a(m, type=_bound, help="a score; (N excludes N; -inf/+inf") for m in ("MIN", "MAX"))
POP_COUNT = _a("COUNT", nargs="?", type=_count, help="pop up to COUNT values (a list)")

TYPED: dict[str, Typed] = {
    "hset": Typed(
        "set hash fields; prints how many are new",
        (KEY, _a("FIELD VALUE", nargs="+")),
        lambda c, a: c.hset(
            _raw(a.key), {_raw(f): _raw(v) for f, v in _pairs(a.fields, "FIELD VALUE")}
        ),
        _show_int,
    ),
    "hget": Typed(
        "print a hash field ('(nil)' and exit 1 if missing)",
        (KEY, _a("FIELD")),
        lambda c, a: c.hget(_raw(a.key), _raw(a.field), **_read_options(a)),
        _show_bytes,
    ),
    "hgetall": Typed(
        "print every field of a hash as FIELD<TAB>VALUE",
        (KEY,),
        lambda c, a: c.hgetall(_raw(a.key), **_read_options(a)),
        _show_fields,
    ),
    "hdel": Typed(
        "delete hash fields; prints how many existed",
        (KEY, _a("FIELD", nargs="+")),
        lambda c, a: c.hdel(_raw(a.key), *_raws(a.fields)),
        _show_int,
    ),
    "hincrby": Typed(
        "add DELTA (default 1) to an integer hash field; prints the result",
        (KEY, _a("FIELD"), _a("DELTA", nargs="?", type=_delta, default=1)),
        lambda c, a: c.hincrby(_raw(a.key), _raw(a.field), a.delta),
        _show_int,
    ),
    "hlen": Typed(
        "print how many fields a hash has",
        (KEY,),
        lambda c, a: c.hlen(_raw(a.key), **_read_options(a)),
        _show_int,
    ),
    "zadd": Typed(
        "add members with scores to a sorted set; prints how many are new",
        (KEY, _a("SCORE MEMBER", nargs="+")),
        lambda c, a: c.zadd(_raw(a.key), _scored_pairs(a.scores)),
        _show_int,
    ),
    "zincrby": Typed(
        "add DELTA to a member's score (Redis order); prints the new score",
        (KEY, _a("DELTA", type=_score), _a("MEMBER")),
        lambda c, a: c.zincrby(_raw(a.key), _raw(a.member), a.delta),
        _show_number,
    ),
    "zscore": Typed(
        "print a member's score ('(nil)' and exit 1 if missing)",
        (KEY, _a("MEMBER")),
        lambda c, a: c.zscore(_raw(a.key), _raw(a.member), **_read_options(a)),
        _show_number,
    ),
    "zrank": Typed(
        "print a member's 0-based rank ('(nil)' and exit 1 if missing)",
        (KEY, _a("MEMBER"), REVERSE),
        lambda c, a: c.zrank(_raw(a.key), _raw(a.member), reverse=a.reverse, **_read_options(a)),
        _show_number,
    ),
    "zrange": Typed(
        "print members ranked START..STOP inclusive (-1 = last)",
        (KEY, START, STOP, REVERSE, WITHSCORES),
        lambda c, a: c.zrange(_raw(a.key), a.start, a.stop, **_range_options(a)),
        _show_members,
    ),
    "zrangebyscore": Typed(
        "print members with MIN <= score <= MAX",
        (
            KEY,
            MIN,
            MAX,
            REVERSE,
            WITHSCORES,
            _flag("--offset", type=_delta, default=0, metavar="N", help="skip N members"),
            _flag("--limit", type=_count, metavar="N", help="print at most N members"),
        ),
        lambda c, a: c.zrangebyscore(
            _raw(a.key),
            a.min[0],
            a.max[0],
            min_exclusive=a.min[1],
            max_exclusive=a.max[1],
            offset=a.offset,
            limit=a.limit,
            **_range_options(a),
        ),
        _show_members,
    ),
    "zrem": Typed(
        "remove members from a sorted set; prints how many existed",
        (KEY, MEMBERS),
        lambda c, a: c.zrem(_raw(a.key), *_raws(a.members)),
        _show_int,
    ),
    "zcard": Typed(
        "print how many members a sorted set has",
        (KEY,),
        lambda c, a: c.zcard(_raw(a.key), **_read_options(a)),
        _show_int,
    ),
    "zcount": Typed(
        "print how many members have MIN <= score <= MAX",
        (KEY, MIN, MAX),
        lambda c, a: c.zcount(
            _raw(a.key),
            a.min[0],
            a.max[0],
            min_exclusive=a.min[1],
            max_exclusive=a.max[1],
            **_read_options(a),
        ),
        _show_int,
    ),
    "lpush": Typed(
        "insert values at a list's head; prints the new length",
        (KEY, VALUES),
        lambda c, a: c.lpush(_raw(a.key), *_raws(a.values)),
        _show_int,
    ),
    "rpush": Typed(
        "append values to a list's tail; prints the new length",
        (KEY, VALUES),
        lambda c, a: c.rpush(_raw(a.key), *_raws(a.values)),
        _show_int,
    ),
    "lpop": Typed(
        "remove and print the head value ('(nil)' and exit 1 if empty)",
        (KEY, POP_COUNT),
        lambda c, a: c.lpop(_raw(a.key), a.count),
        _show_pop,
    ),
    "rpop": Typed(
        "remove and print the tail value ('(nil)' and exit 1 if empty)",
        (KEY, POP_COUNT),
        lambda c, a: c.rpop(_raw(a.key), a.count),
        _show_pop,
    ),
    "lrange": Typed(
        "print list values START..STOP inclusive (-1 = last)",
        (KEY, START, STOP),
        lambda c, a: c.lrange(_raw(a.key), a.start, a.stop, **_read_options(a)),
        _show_values,
    ),
    "llen": Typed(
        "print a list's length",
        (KEY,),
        lambda c, a: c.llen(_raw(a.key), **_read_options(a)),
        _show_int,
    ),
    "sadd": Typed(
        "add members to a set; prints how many are new",
        (KEY, MEMBERS),
        lambda c, a: c.sadd(_raw(a.key), *_raws(a.members)),
        _show_int,
    ),
    "srem": Typed(
        "remove members from a set; prints how many existed",
        (KEY, MEMBERS),
        lambda c, a: c.srem(_raw(a.key), *_raws(a.members)),
        _show_int,
    ),
    "smembers": Typed(
        "print a set's members, sorted",
        (KEY,),
        lambda c, a: c.smembers(_raw(a.key), **_read_options(a)),
        _show_values,
    ),
    "sismember": Typed(
        "print 1 if MEMBER is in the set, else 0",
        (KEY, _a("MEMBER")),
        lambda c, a: c.sismember(_raw(a.key), _raw(a.member), **_read_options(a)),
        _show_bool,
    ),
    "scard": Typed(
        "print how many members a set has",
        (KEY,),
        lambda c, a: c.scard(_raw(a.key), **_read_options(a)),
        _show_int,
    ),
    "expire": Typed(
        "expire a key (any type) after SECONDS; prints 1, or 0 if it does not exist",
        (KEY, _a("SECONDS", type=_seconds)),
        lambda c, a: c.expire(_raw(a.key), a.seconds),
        _show_bool,
    ),
    "persist": Typed(
        "remove a key's expiry; prints 1, or 0 if it had none",
        (KEY,),
        lambda c, a: c.persist(_raw(a.key)),
        _show_bool,
    ),
    "ttl": Typed(
        "print a key's remaining seconds ('(no expiry)'; '(nil)' and exit 1 if missing)",
        (KEY,),
        _ttl,
        _show_ttl,
    ),
    "type": Typed(
        "print a key's type: none, string, hash, zset, list or set",
        (KEY,),
        lambda c, a: c.type(_raw(a.key), **_read_options(a)),
        _show_type,
    ),
}


def _run_typed(client: Client, args: argparse.Namespace) -> Reply:
    row = TYPED[args.command]
    result = row.call(client, args)
    return result if isinstance(result, Reply) else row.show(args, result)


# -- scan, pub/sub, watch ---------------------------------------------------------------


def _scan(client: Client, args: argparse.Namespace) -> Reply:
    keys = list(client.scan_iter(_raw(args.prefix), args.count, **_read_options(args)))
    return Reply({"keys": [_value_json(k)["value"] for k in keys]}, [_text(k) for k in keys])


def _publish(client: Client, args: argparse.Namespace) -> Reply:
    receivers = client.publish(_raw(args.channel), _raw(args.message))
    return Reply({"channel": args.channel, "receivers": receivers}, [str(receivers)])


def _emit(args: argparse.Namespace, data: dict[str, Any], line: str) -> None:
    print(json.dumps(data) if args.json else line, flush=True)


def _stream(args: argparse.Namespace, items: Any, show: Callable[[Any], None]) -> Reply:
    """Print each item as it arrives, until --count items (else until Ctrl-C)."""
    with items:
        for n, item in enumerate(items, 1):
            show(item)
            if n == args.count:
                break
    return Reply(None, streamed=True)


def _subscribe(client: Client, args: argparse.Namespace) -> Reply:
    if not args.channels and not args.pattern:
        raise UsageError("subscribe needs a CHANNEL or a --pattern")
    subscription = client.subscribe(_raws(args.channels), _raws(args.pattern or []))

    def show(m: Message) -> None:
        data = {"channel": _text(m.channel), "pattern": m.pattern and _text(m.pattern)}
        _emit(args, {**data, **_value_json(m.data)}, f"{_text(m.channel)}\t{_text(m.data)}")

    return _stream(args, subscription, show)


def _watch(client: Client, args: argparse.Namespace) -> Reply:
    watch = client.watch(_raw(args.key), prefix=args.prefix, start_revision=args.start_revision)

    def show(e: WatchEvent) -> None:
        data = {"revision": e.revision, "kind": e.kind, "key": _text(e.key), "type": e.type}
        shown = {} if e.value is None else _value_json(e.value)
        line = f"{e.revision}\t{e.kind}\t{_text(e.key)}"
        _emit(args, {**data, **shown}, line if e.value is None else f"{line}\t{_text(e.value)}")

    return _stream(args, watch, show)


def _backup(client: Client, args: argparse.Namespace) -> Reply:
    try:
        info = backup_file.verify(args.file) if args.inspect else client.backup(args.file)
    except backup_file.BackupFormatError as exc:
        raise errors.InvalidInputError(str(exc)) from None
    data = {
        "file": args.file,
        "format": info.format,
        "cluster_id": info.cluster_id,
        "applied_index": info.applied_index,
        "revision": info.revision,
        "cluster_time_ms": info.cluster_time_ms,
        "keys": info.key_count,
        "size": info.size,
        "checksum": f"blake2b-256:{info.checksum} (verified)",
        "taken_from": info.node_id,
        "created_ms": info.created_ms,
    }
    return Reply(data, [f"{k}: {v}" for k, v in data.items()])


def _acl(client: Client, args: argparse.Namespace) -> Reply:
    action, rest = args.action, args.args
    arity = {"setuser": (1, None), "deluser": (1, None), "getuser": (1, 1)}
    least, most = arity.get(action, (0, 0))
    if len(rest) < least or (most is not None and len(rest) > most):
        wants = "no arguments" if most == 0 else "one user name" if most else "user names"
        raise UsageError(f"acl {action} takes {wants} (got {len(rest)} arguments)")
    if action == "setuser":
        client.set_user(rest[0], *rest[1:])
        return Reply({"ok": True}, ["OK"])
    if action == "deluser":
        deleted = client.delete_users(*rest)
        return Reply({"deleted": deleted}, [str(deleted)])
    if action == "list":
        users = client.list_users()
        return Reply({"users": users}, users)
    if action == "whoami":
        name = client.whoami()
        return Reply({"user": name}, [name])
    info = client.get_user(rest[0])
    if info is None:
        return Reply(None, ["(nil)"], EXIT_NOT_FOUND)
    data = {
        "name": info.name,
        "flags": info.flags,
        "passwords": info.passwords,
        "commands": info.commands,
        "keys": info.keys,
        "channels": info.channels,
    }
    lines = [f"{k}: {' '.join(v) if isinstance(v, list) else v}" for k, v in data.items()]
    return Reply(data, lines)


def _membership_reply(m: Membership, head: list[str]) -> Reply:
    data = {
        "leader_id": m.leader_id,
        "commit_index": m.commit_index,
        "pending_change": m.pending_change,
        "read_replicas": m.read_replicas,
        "members": [
            {
                "id": x.node_id,
                "raft_addr": x.raft_addr,
                "client_addr": x.client_addr,
                "role": "leader" if x.is_leader else "voter",
                "state": _member_state(x),
                "match_index": x.match_index,
                "lag_entries": x.lag_entries,
                "lag_seconds": round(x.lag_seconds, 3),
            }
            for x in m.members
        ],
    }
    rows = [["ID", "ROLE", "STATE", "MATCH", "LAG", "RAFT", "CLIENT"]]
    for x in m.members:
        rows.append(
            [
                x.node_id,
                "leader" if x.is_leader else "voter",
                _member_state(x),
                str(x.match_index),
                str(x.lag_entries),
                x.raft_addr,
                x.client_addr or "-",
            ]
        )
    lines = [*head, *_table(rows)]
    if m.pending_change:
        lines.append(f"change in progress (not committed yet): {m.pending_change}")
    if m.read_replicas:
        lines.append(f"read replicas connected to the leader: {m.read_replicas}")
    return Reply(data, lines)


def _member_state(m: MemberInfo) -> str:
    if m.caught_up:
        return "caught-up"
    return "catching-up" if m.responsive else "down"


def _member(client: Client, args: argparse.Namespace) -> Reply:
    action, rest = args.action, args.args
    wants = {"list": 0, "add": 1, "remove": 1, "replace": 2}[action]
    if len(rest) != wants:
        usage = {
            "list": "member list",
            "add": "member add RAFT_HOST:PORT",
            "remove": "member remove ID|RAFT_HOST:PORT",
            "replace": "member replace OLD_ID|RAFT_HOST:PORT NEW_RAFT_HOST:PORT",
        }[action]
        raise UsageError(f"usage: raftcache {usage} (got {len(rest)} arguments)")
    if action == "list":
        return _membership_reply(client.membership(), [])
    if action == "remove":
        m = client.remove_member(rest[0])
        return _membership_reply(m, [f"removed {rest[0]}"])
    if action == "replace":  # remove before add
        client.remove_member(rest[0])
        client.add_member(rest[1], replaces=rest[0])
        added = rest[1]
    else:
        client.add_member(rest[0])
        added = rest[0]
    if args.no_wait:
        return _membership_reply(client.membership(), [f"added {added} (catching up)"])
    client.wait_caught_up(added, timeout=args.catch_up_timeout)
    return _membership_reply(client.membership(), [f"added {added} (caught up)"])


def _leader(client: Client, args: argparse.Namespace) -> Reply:
    leader = client.transfer_leadership(args.target or "", timeout=max(args.timeout, 5.0))
    return Reply({"leader_id": leader}, [f"leader: {leader}"])


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], Reply]] = {
    "acl": _acl,
    "leader": _leader,
    "member": _member,
    "backup": _backup,
    "get": _get,
    "set": _set,
    "del": _del,
    "incr": _incr,
    "mget": _mget,
    "mset": _mset,
    "status": _status,
    **dict.fromkeys(TYPED, _run_typed),
    "scan": _scan,
    "publish": _publish,
    "subscribe": _subscribe,
    "watch": _watch,
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
    group.add_argument(
        "--user",
        metavar="NAME",
        default=default(None),
        help="the user to authenticate as (default $RAFTCACHE_USER; none: the default user)",
    )
    group.add_argument(
        "--password",
        metavar="PASSWORD",
        default=default(None),
        help="its password (default $RAFTCACHE_PASSWORD, which keeps it out of the process "
        "list; alone: the default user's)",
    )
    for name, what in _TLS_OPTIONS.items():
        group.add_argument(
            f"--tls-{name}-file",
            metavar="FILE",
            default=default(None),
            help=f"{what} (default ${_tls_env(name)}; any --tls-* option turns TLS on)",
        )


_TLS_OPTIONS = {
    "ca": "PEM CA bundle that verifies the nodes' certificates",
    "cert": "PEM client certificate, for nodes that require mTLS (with --tls-key-file)",
    "key": "PEM private key of --tls-cert-file",
}


def _tls_env(name: str) -> str:
    return f"RAFTCACHE_TLS_{name.upper()}_FILE"


def _tls(args: argparse.Namespace) -> TlsConfig | None:
    """TLS from --tls-*-file or RAFTCACHE_TLS_*_FILE; None (plaintext) when neither is set."""
    files = {
        name: getattr(args, f"tls_{name}_file", None) or os.environ.get(_tls_env(name)) or None
        for name in _TLS_OPTIONS
    }
    if not any(files.values()):
        return None
    if (files["cert"] is None) != (files["key"] is None):
        raise UsageError("--tls-cert-file and --tls-key-file go together (mTLS); give both")
    return TlsConfig(ca_file=files["ca"], cert_file=files["cert"], key_file=files["key"])


def _ttl_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--ttl", type=_seconds, metavar="SECONDS", help=f"expire {what} after this long"
    )


_EXIT_HELP = """exit codes:
  0    ok
  1    missing (get, hget, zscore, zrank, lpop, rpop, ttl)
  2    bad usage or invalid input
  3    condition failed or wrong type; nothing changed
  4    unavailable, overloaded or out of memory; nothing applied
  5    outcome unknown; retry with the --client-id the message gives
  6    too large
  7    watch: the start revision is no longer retained
  8    refused: wrong or missing credentials, or not permitted
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

    p = command(
        "del",
        "delete keys atomically",
        "Delete every KEY in one atomic request; prints how many existed.",
    )
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

    for name, row in TYPED.items():
        p = command(name, row.summary, row.summary[0].upper() + row.summary[1:] + ".")
        for argument, options in row.arguments:
            p.add_argument(argument, **options)

    p = command(
        "backup",
        "take or inspect a backup file",
        "Write a consistent point-in-time copy of the whole cache (a linearizable cut "
        "streamed by the leader) to FILE; with --inspect, check FILE offline and print its "
        "header. Restore with 'raftcache-node --restore-from FILE' on every member of a new "
        "cluster.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--inspect", action="store_true", help="verify FILE's checksum and print its header"
    )

    p = command("scan", "print every key with a prefix", "Print each key starting with PREFIX.")
    p.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    p.add_argument("--count", type=_count, default=100, metavar="N", help="keys per request")

    p = command(
        "publish",
        "publish a message",
        "Publish MESSAGE to its subscribers on every node; prints how many of them are on "
        "the leader (other nodes' subscribers get it too, uncounted).",
    )
    p.add_argument("channel", metavar="CHANNEL")
    p.add_argument("message", metavar="MESSAGE")

    p = command(
        "subscribe",
        "print messages as they are published",
        "Print CHANNEL<TAB>MESSAGE for each message on the channels or --pattern globs, "
        "until --count messages or Ctrl-C. At most once: a broken stream exits 4.",
    )
    p.add_argument("channels", nargs="*", metavar="CHANNEL")
    p.add_argument("--pattern", action="append", metavar="GLOB", help="e.g. 'news.*'")
    p.add_argument("--count", type=_count, metavar="N", help="exit after N messages")

    p = command(
        "watch",
        "print changes to a key or prefix",
        "Print REVISION<TAB>KIND<TAB>KEY[<TAB>VALUE] for each change, resuming by itself "
        "after a break, until --count events or Ctrl-C.",
    )
    p.add_argument("key", metavar="KEY")
    p.add_argument("--prefix", action="store_true", help="every key starting with KEY")
    p.add_argument("--start-revision", type=_version, default=0, metavar="N", help="resume after N")
    p.add_argument("--count", type=_count, metavar="N", help="exit after N events")

    p = command(
        "acl",
        "manage users (Redis ACL rules)",
        "setuser NAME RULE...: create or change a user (rules as Redis's ACL SETUSER: on, off, "
        "'>password', '<password', '~keypattern', '&channel', +@category, -command, ...); "
        "deluser NAME...: delete users; list: every user as an ACL LIST line; getuser NAME: "
        "one user's rules; whoami: the user these credentials are.",
    )
    assert isinstance(p, _Parser)
    p.rules_positional = True
    p.add_argument("action", choices=["setuser", "deluser", "list", "getuser", "whoami"])
    p.add_argument("args", nargs="*", metavar="ARG")

    p = command(
        "member",
        "list, add or remove voters (one change at a time)",
        "list: every voter as the leader sees it (caught-up, catching-up or down, and its "
        "lag). add RAFT_HOST:PORT: add the running node with that --raft address (start it "
        "with --join CURRENT-MEMBERS first) and wait until it caught up. remove "
        "ID|RAFT_HOST:PORT: remove a voter (not the leader: 'leader transfer' first). "
        "replace OLD NEW: remove OLD, then add NEW (remove before add). The leader refuses a "
        "change while another is in progress or when it would lose quorum, and says why "
        "(exit 3); exit 5 when the outcome is unknown: re-run 'member list'.",
    )
    p.add_argument("action", choices=["list", "add", "remove", "replace"])
    p.add_argument("args", nargs="*", metavar="ARG")
    p.add_argument(
        "--no-wait", action="store_true", help="add: return once committed, not caught up"
    )
    p.add_argument(
        "--catch-up-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="add: how long to wait for the new member to catch up (default 120)",
    )

    p = command(
        "leader",
        "move leadership on purpose",
        "transfer [ID|RAFT_HOST:PORT]: hand leadership to that member (it must be up and "
        "caught up), or to the most caught-up follower; prints the new leader.",
    )
    p.add_argument("action", choices=["transfer"])
    p.add_argument("target", nargs="?", metavar="ID")
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
    elif isinstance(exc, errors.OutOfMemoryError):
        text += "; nothing was applied: delete keys, set TTLs or raise --max-memory"
    elif args.command in ("member", "leader"):
        pass  # the node's message says what is known and what to re-read
    elif isinstance(exc, errors.RequestTooOldError):
        text = f"outcome unknown, and a re-run cannot settle it: {text}"
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
    if reply.streamed:
        return
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


def _credentials(args: argparse.Namespace) -> dict[str, Any]:
    """--user and --password as given (the Client reads RAFTCACHE_USER/PASSWORD itself)."""
    given = {"user": args.user, "password": args.password}
    return {name: value for name, value in given.items() if value is not None}


def _run(args: argparse.Namespace) -> int:
    endpoints = parse_endpoints(
        args.endpoints or os.environ.get(ENDPOINTS_ENV) or DEFAULT_ENDPOINTS
    )
    if args.max_staleness is not None and args.consistency != "stale":
        raise UsageError("--max-staleness applies to stale reads: add --consistency stale")
    try:
        client = Client(
            endpoints,
            timeout=args.timeout,
            client_id=args.client_id,
            tls=_tls(args),
            **_credentials(args),
        )
    except ValueError as exc:  # an unreadable TLS file
        raise UsageError(str(exc)) from None
    except errors.InvalidInputError as exc:  # a user name Basic credentials cannot carry
        raise UsageError(str(exc)) from None
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
