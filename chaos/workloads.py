"""Client workloads of a chaos run: threads that record every operation in a history.

- registers: get (linearizable), set of a unique value "<process>-<n>", and
  compare-and-set (get_item, then set with expected_version; recorded as a get and a
  "cas" [old, new] whose result is whether it applied) on keys r:0..r:N-1.
- counters: incr by 1 on c:0..c:N-1 (exactly once, by request id).
- sessions: set a fresh key s:<process>-<n> with a long TTL, then read it back.
- redis-registers: GET and SET of a unique value on keys rr:0..N-1 through redis-py
  (RESP2 and RESP3 workers, a random node per command); checked with the registers.
- redis-appends: RPUSH of a unique element and LRANGE 0 -1 on lists rl:<i> through
  redis-py; a few lists are open at a time and one that reaches `list_cap` elements is
  retired for a fresh one, so reads (recorded whole) stay short.
- redis-queue: producers LPUSH a unique element onto one of two queues qu:0, qu:1 and
  consumers BRPOP both (0.5 s timeout) through redis-py, a random node per command;
  recorded as "enqueue" (value = the element) and "dequeue" (value = the element taken,
  None on a timeout); checked for lost, duplicated and phantom elements.
- redis-sets: SADD of a unique element (70%) and SMEMBERS (30%) on sets rs:<i> through
  redis-py (a random node per command); like the lists, a few sets are open at a time and
  one read with `list_cap` members is retired; checked by checkers.check_sets (a grow-only
  set: nothing acked lost, nothing failed or never added present, reads monotonic).
- mc-registers: a cas register over memcached through pymemcache (a random node per
  command): gets, set of a unique value, and gets-then-cas with the token (recorded as a
  get and a "cas" [old, new]: values are unique, so the key's version is unchanged exactly
  when its value still is the one read); checked with the registers.

- ttl-sessions: SET tt:<ttl ms>:<process>-<n> <value> PX <ttl> (TTL 4-8 s) through redis-py
  on a random node, then GET of it about every 0.2 s (a few keys at a time) until a GET
  answers nil, and 3 more GETs over the next ~1.5 s; checked by checkers.check_ttl (an
  expired key never reappears; the observed lifetime stays within the TTL +- the clock
  skew in force, chaos/DESIGN.md "Clock skew").

SDK errors map to outcomes: OutcomeUnknownError -> unknown, UnavailableError /
OverloadedError -> fail, ConditionFailedError on a cas -> ok with result False. Redis
replies map as chaos/resp_client.py says: CLUSTERDOWN / TRYAGAIN or a failed connect ->
fail, UNKNOWN or a connection lost after sending -> unknown, any other error reply ->
unknown and counted as unexpected (a run problem).
A worker whose operation ended unknown continues as a new process id (process +
workers), as in Jepsen: the unknown operation may still be in flight, so that
process never completes, and a process's operations stay sequential.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from raftcache.chaos.history import HistoryWriter, Recorder
from raftcache.client import (
    Client,
    ConditionFailedError,
    Item,
    OutcomeUnknownError,
    OverloadedError,
    UnavailableError,
)

if TYPE_CHECKING:
    from raftcache.chaos.mc_client import McNodes
    from raftcache.chaos.resp_client import RespNodes

GRPC_WORKLOADS = ("registers", "counters", "sessions")
REDIS_WORKLOADS = ("redis-registers", "redis-appends", "redis-queue", "redis-sets")
MEMCACHED_WORKLOADS = ("mc-registers",)
WORKLOADS = GRPC_WORKLOADS + REDIS_WORKLOADS + MEMCACHED_WORKLOADS
# Over the Redis ports too, but in `mix` only when clocks are skewed (parse_workloads(ttl=True)):
# its keys live seconds, so it only tells something when expiry is under attack.
TTL_WORKLOADS = ("ttl-sessions",)
KNOWN_WORKLOADS = WORKLOADS + TTL_WORKLOADS
# Workers beyond one per workload go to these, in turn (the others need only one).
_SCALED = ("registers", "redis-registers", "redis-appends", "mc-registers")
# The key prefix of each workload (before the first ":").
PREFIXES = {
    "r": "registers",
    "c": "counters",
    "s": "sessions",
    "rr": "redis-registers",
    "rl": "redis-appends",
    "mr": "mc-registers",
    "qu": "redis-queue",
    "tt": "ttl-sessions",
    "rs": "redis-sets",
}
QUEUE_KEYS = ("qu:0", "qu:1")
T = TypeVar("T")


def workload_of(key: str) -> str:
    """The workload that wrote or read key (by its prefix)."""
    return PREFIXES.get(key.split(":", 1)[0], "other")


def parse_workloads(
    spec: str, redis: bool = True, memcached: bool = True, ttl: bool = False
) -> tuple[str, ...]:
    """`mix` (every workload whose port the nodes serve; ttl-sessions too if `ttl`), `grpc`,
    `redis`, `memcached`, one workload or a comma-separated list; else ValueError."""
    mix = (
        GRPC_WORKLOADS
        + (REDIS_WORKLOADS if redis else ())
        + (MEMCACHED_WORKLOADS if memcached else ())
        + (TTL_WORKLOADS if redis and ttl else ())
    )
    presets = {
        "mix": mix,
        "grpc": GRPC_WORKLOADS,
        "redis": REDIS_WORKLOADS,
        "memcached": MEMCACHED_WORKLOADS,
    }
    if spec in presets:
        return presets[spec]
    names = tuple(w.strip() for w in spec.split(",") if w.strip())
    if not names or any(w not in KNOWN_WORKLOADS for w in names) or len(set(names)) != len(names):
        raise ValueError(
            f"unknown --workloads {spec!r}; use mix, grpc, redis, memcached, "
            f"{', '.join(KNOWN_WORKLOADS)} "
            "or a comma-separated list of those"
        )
    return names


@dataclass(frozen=True)
class WorkloadConfig:
    """Key spaces, pacing and timeouts of the workers."""

    endpoints: tuple[str, ...]
    workers: int = 9
    register_keys: int = 30
    counter_keys: int = 3
    session_ttl_s: float = 3600.0  # outlives any run, so final reads must still see them
    op_timeout_s: float = 3.0
    think_s: float = 0.02  # pause between two operations of one worker
    seed: int = 0
    workloads: tuple[str, ...] = GRPC_WORKLOADS
    redis_endpoints: tuple[str, ...] = ()  # each node's Redis port, for the redis-* workloads
    redis_register_keys: int = 10
    memcached_endpoints: tuple[str, ...] = ()  # each node's memcached port (mc-* workloads)
    mc_register_keys: int = 10
    open_lists: int = 3  # lists appended to at a time
    list_cap: int = 200  # a list this long is retired for a fresh one
    ttl_range_ms: tuple[int, int] = (4000, 8000)  # ttl-sessions: PX drawn from this range
    ttl_open_keys: int = 4  # ttl-sessions: keys watched at a time per worker
    ttl_confirm_reads: int = 3  # ttl-sessions: GETs after the first nil, ~0.5 s apart
    # The SDK workers share one Client, so their concurrent calls are auto-pipelined into
    # Batch RPCs (the SDK's default); False runs it with auto-pipelining off.
    auto_pipeline: bool = True

    def __post_init__(self) -> None:
        unknown = [w for w in self.workloads if w not in KNOWN_WORKLOADS]
        if unknown or not self.workloads:
            raise ValueError(f"unknown workload(s) {unknown}; known: {', '.join(KNOWN_WORKLOADS)}")
        if self.workers < len(self.workloads):
            raise ValueError(
                f"need at least {len(self.workloads)} workers, one per workload "
                f"({', '.join(self.workloads)}); raise --workers"
            )
        if not self.endpoints:
            raise ValueError("need at least one endpoint")
        if set(self.workloads) & {*REDIS_WORKLOADS, *TTL_WORKLOADS} and not self.redis_endpoints:
            raise ValueError(
                "the redis-* workloads need the nodes' Redis addresses (--redis-endpoints)"
            )
        if set(self.workloads) & set(MEMCACHED_WORKLOADS) and not self.memcached_endpoints:
            raise ValueError(
                "the mc-* workloads need the nodes' memcached addresses (--memcached-endpoints)"
            )

    def register_key_names(self) -> list[str]:
        return [f"r:{i}" for i in range(self.register_keys)]

    def redis_register_key_names(self) -> list[str]:
        return [f"rr:{i}" for i in range(self.redis_register_keys)]

    def mc_register_key_names(self) -> list[str]:
        return [f"mr:{i}" for i in range(self.mc_register_keys)]

    def counter_key_names(self) -> list[str]:
        return [f"c:{i}" for i in range(self.counter_keys)]


class ListKeys:
    """The lists the redis-appends workers share (or, prefix "rs", the sets of redis-sets):
    `open_lists` open at a time; one that reached `cap` elements is retired for the next
    fresh one (thread-safe)."""

    def __init__(self, open_lists: int, cap: int, prefix: str = "rl") -> None:
        self._lock = threading.Lock()
        self._open = list(range(open_lists))
        self._next = open_lists
        self.cap = cap
        self.prefix = prefix

    def pick(self, rng: random.Random) -> str:
        with self._lock:
            return f"{self.prefix}:{rng.choice(self._open)}"

    def grew(self, key: str, length: int) -> None:
        """An append to key answered this length (a read of a set saw this many members)."""
        if length < self.cap:
            return
        index = int(key.removeprefix(f"{self.prefix}:"))
        with self._lock:
            if index in self._open:
                self._open.remove(index)
                self._open.append(self._next)
                self._next += 1

    def used(self) -> list[str]:
        """Every list handed out so far."""
        with self._lock:
            return [f"{self.prefix}:{i}" for i in range(self._next)]


class _Unknown(Exception):
    """The recorded operation ended unknown; the worker must take a new process id."""


def _record(rec: Recorder, call: Callable[[], T], ok: Callable[[T], object]) -> T | None:
    """Run call and record its outcome; raises _Unknown after recording an unknown."""
    try:
        result = call()
    except OutcomeUnknownError:
        rec.unknown()
        raise _Unknown() from None
    except (UnavailableError, OverloadedError):
        rec.fail()
        return None
    ok(result)
    return result


class Worker:
    """One thread running one workload with its own Client."""

    def __init__(
        self,
        index: int,
        workload: str,
        config: WorkloadConfig,
        history: HistoryWriter,
        lists: ListKeys | None = None,
        client: Client | None = None,
        sets: ListKeys | None = None,
    ) -> None:
        """`client`: a Client shared with other workers (closed by stop_workers)."""
        self.workload = workload
        self.config = config
        self.history = history
        self.process = index
        self._n = 0
        self._rng = random.Random(f"{config.seed}-{index}")
        self._stop = threading.Event()
        self.shares_client = client is not None
        self._client = client or Client(list(config.endpoints), timeout=config.op_timeout_s)
        self._resp: RespNodes | None = None
        if workload in REDIS_WORKLOADS + TTL_WORKLOADS:
            from raftcache.chaos.resp_client import RespNodes  # redis-py: the test extra

            self._resp = RespNodes(
                config.redis_endpoints,
                protocol=2 + index % 2,  # half the workers speak RESP2, half RESP3
                timeout_s=config.op_timeout_s,
                rng=self._rng,
            )
        self._memcached: McNodes | None = None
        if workload in MEMCACHED_WORKLOADS:
            from raftcache.chaos.mc_client import McNodes

            self._memcached = McNodes(
                config.memcached_endpoints, timeout_s=config.op_timeout_s, rng=self._rng
            )
        self._lists = lists or ListKeys(config.open_lists, config.list_cap)
        self._sets = sets or ListKeys(config.open_lists, config.list_cap, prefix="rs")
        self._thread = threading.Thread(target=self._run, name=f"{workload}-{index}", daemon=True)
        self.error: BaseException | None = None
        self.session_keys: list[str] = []
        self.unexpected: list[str] = []  # error replies outside the port's contract
        # ttl-sessions: key -> [value, GETs still to send after a nil (None: none seen),
        # monotonic time of the next GET]
        self._ttl_keys: dict[str, list[Any]] = {}

    @property
    def client(self) -> Client:
        return self._client

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if not self.shares_client:
            self._client.close()
        if self._resp is not None:
            self._resp.close()
        if self._memcached is not None:
            self._memcached.close()

    def _run(self) -> None:
        step = _STEPS[self.workload]
        try:
            while not self._stop.is_set():
                try:
                    step(self)
                except _Unknown:
                    self.process += self.config.workers
                self._stop.wait(self.config.think_s)
        except BaseException as exc:  # reported by the runner; never silently lost
            self.error = exc

    def _unique(self) -> str:
        self._n += 1
        return f"{self.process}-{self._n}"

    # -- workloads ----------------------------------------------------------------

    def _registers(self) -> None:
        key = self._rng.choice(self.config.register_key_names())
        roll = self._rng.random()
        if roll < 0.4:
            rec = self.history.begin(self.process, "get", key)
            _record(rec, lambda: _text(self._client.get(key)), rec.ok)
        elif roll < 0.75:
            value = self._unique()
            rec = self.history.begin(self.process, "set", key, value)
            _record(rec, lambda: self._client.set(key, value), lambda _: rec.ok())
        else:
            self._cas(key)

    def _cas(self, key: str) -> None:
        read = self.history.begin(self.process, "get", key)
        item = _record(read, lambda: self._client.get_item(key), lambda i: read.ok(_item_text(i)))
        if item is None:
            return  # absent (or the read failed): nothing to compare against
        old, new = item.value.decode(), self._unique()
        rec = self.history.begin(self.process, "cas", key, [old, new])
        try:
            _record(
                rec,
                lambda: self._client.set(key, new, expected_version=item.version),
                lambda _: rec.ok(True),
            )
        except ConditionFailedError:
            rec.ok(False)

    def _counters(self) -> None:
        key = self._rng.choice(self.config.counter_key_names())
        rec = self.history.begin(self.process, "incr", key, 1)
        _record(rec, lambda: self._client.incr(key, 1), rec.ok)

    def _sessions(self) -> None:
        key, value = f"s:{self._unique()}", self._unique()
        rec = self.history.begin(self.process, "set", key, value)
        ttl = self.config.session_ttl_s
        _record(rec, lambda: self._client.set(key, value, ttl=ttl), lambda _: rec.ok())
        self.session_keys.append(key)
        read = self.history.begin(self.process, "get", key)
        _record(read, lambda: _text(self._client.get(key)), read.ok)

    # -- Redis workloads --------------------------------------------------------------

    def _redis(self, rec: Recorder, *args: str | int) -> tuple[bool, Any]:
        """Run one command on a random node and record a failed or unknown outcome;
        (True, reply) when it succeeded (the caller records it), (False, None) if it failed.
        Raises _Unknown after recording an unknown outcome."""
        from raftcache.chaos.resp_client import RespFailed, RespUnexpected, RespUnknown

        assert self._resp is not None
        try:
            return True, self._resp.call(*args)
        except RespFailed:
            rec.fail()
            return False, None
        except RespUnknown:
            rec.unknown()
            raise _Unknown() from None
        except RespUnexpected as exc:
            self.unexpected.append(str(exc))
            rec.unknown()
            raise _Unknown() from None

    def _unexpected_reply(self, rec: Recorder, command: str, reply: Any) -> NoReturn:
        """A reply of the wrong shape: recorded as unknown and counted as a run problem."""
        self.unexpected.append(f"{command} answered {reply!r}")
        rec.unknown()
        raise _Unknown()

    def _redis_registers(self) -> None:
        key = self._rng.choice(self.config.redis_register_key_names())
        if self._rng.random() < 0.5:
            rec = self.history.begin(self.process, "get", key)
            ok, reply = self._redis(rec, "GET", key)
            if ok and not (reply is None or isinstance(reply, str)):
                self._unexpected_reply(rec, "GET", reply)
            if ok:
                rec.ok(value=reply)
        else:
            value = self._unique()
            rec = self.history.begin(self.process, "set", key, value)
            ok, reply = self._redis(rec, "SET", key, value)
            if ok and reply not in ("OK", True):
                self._unexpected_reply(rec, "SET", reply)
            if ok:
                rec.ok()

    def _redis_appends(self) -> None:
        key = self._lists.pick(self._rng)
        if self._rng.random() < 0.7:
            element = self._unique()
            rec = self.history.begin(self.process, "append", key, element)
            ok, reply = self._redis(rec, "RPUSH", key, element)
            if ok and (isinstance(reply, bool) or not isinstance(reply, int)):
                self._unexpected_reply(rec, "RPUSH", reply)
            if ok:
                rec.ok(reply)
                self._lists.grew(key, reply)
        else:
            rec = self.history.begin(self.process, "read", key)
            ok, reply = self._redis(rec, "LRANGE", key, 0, -1)
            if ok and not isinstance(reply, list):
                self._unexpected_reply(rec, "LRANGE", reply)
            if ok:
                rec.ok(value=list(reply))

    def _redis_sets(self) -> None:
        key = self._sets.pick(self._rng)
        if self._rng.random() < 0.7:
            element = self._unique()
            rec = self.history.begin(self.process, "sadd", key, element)
            ok, reply = self._redis(rec, "SADD", key, element)
            if ok and reply != 1:  # a fresh element: SADD must answer 1
                self._unexpected_reply(rec, "SADD", reply)
            if ok:
                rec.ok(reply)
        else:
            rec = self.history.begin(self.process, "smembers", key)
            ok, reply = self._redis(rec, "SMEMBERS", key)
            if ok and not isinstance(reply, list | set):
                self._unexpected_reply(rec, "SMEMBERS", reply)
            if ok:
                rec.ok(value=sorted(reply))
                self._sets.grew(key, len(reply))

    # -- memcached workloads ----------------------------------------------------------

    def _mc(self, rec: Recorder, method: str, *args: Any) -> tuple[bool, Any]:
        """Like _redis, over memcached: (True, reply), (False, None) when it failed, or
        _Unknown raised after recording an unknown outcome."""
        from raftcache.chaos.mc_client import McFailed, McUnexpected, McUnknown

        assert self._memcached is not None
        try:
            return True, self._memcached.call(method, *args)
        except McFailed:
            rec.fail()
            return False, None
        except McUnknown:
            rec.unknown()
            raise _Unknown() from None
        except McUnexpected as exc:
            self.unexpected.append(str(exc))
            rec.unknown()
            raise _Unknown() from None

    def _mc_gets(self, key: str) -> tuple[bool, str | None, bytes | None]:
        """A recorded gets: (ok, value, cas token)."""
        rec = self.history.begin(self.process, "get", key)
        ok, reply = self._mc(rec, "gets", key)
        if not ok:
            return False, None, None
        value, token = reply if reply is not None else (None, None)
        if value is not None and not isinstance(value, bytes):
            self._unexpected_reply(rec, "gets", reply)
        text = None if value is None else value.decode()
        rec.ok(value=text)
        return True, text, token

    def _mc_registers(self) -> None:
        key = self._rng.choice(self.config.mc_register_key_names())
        roll = self._rng.random()
        if roll < 0.4:
            self._mc_gets(key)
            return
        if roll < 0.7:
            value = self._unique()
            rec = self.history.begin(self.process, "set", key, value)
            ok, reply = self._mc(rec, "set", key, value.encode())
            if ok and reply is not True:
                self._unexpected_reply(rec, "set", reply)
            if ok:
                rec.ok()
            return
        ok, old, token = self._mc_gets(key)
        if not ok or old is None:
            return  # nothing to compare with: the read alone is recorded
        new = self._unique()
        rec = self.history.begin(self.process, "cas", key, [old, new])
        ok, reply = self._mc(rec, "cas", key, new.encode(), token)
        if ok and reply not in (True, False, None):
            self._unexpected_reply(rec, "cas", reply)
        if ok:
            rec.ok(reply is True)  # False: EXISTS; None: NOT_FOUND (deleted meanwhile)

    def _ttl_sessions(self) -> None:
        now = time.monotonic()
        if len(self._ttl_keys) < self.config.ttl_open_keys:
            ttl = self._rng.randint(*self.config.ttl_range_ms)
            key, value = f"tt:{ttl}:{self._unique()}", self._unique()
            rec = self.history.begin(self.process, "set", key, value)
            ok, reply = self._redis(rec, "SET", key, value, "PX", ttl)
            if ok and reply not in ("OK", True):
                self._unexpected_reply(rec, "SET", reply)
            if ok:
                rec.ok()
                self._ttl_keys[key] = [value, None, time.monotonic() + 0.2]
            return
        key, (value, confirms, due) = min(self._ttl_keys.items(), key=lambda kv: kv[1][2])
        if due > now:
            self._stop.wait(due - now)
        rec = self.history.begin(self.process, "get", key)
        ok, reply = self._redis(rec, "GET", key)
        if ok and not (reply is None or isinstance(reply, str)):
            self._unexpected_reply(rec, "GET", reply)
        if not ok:
            self._ttl_keys[key][2] = time.monotonic() + 0.2
            return
        rec.ok(value=reply)
        if reply is None and confirms is None:
            confirms = self.config.ttl_confirm_reads
        if confirms is not None:
            if confirms == 0:
                del self._ttl_keys[key]
                return
            confirms -= 1
        delay = 0.2 if confirms is None else 0.5
        self._ttl_keys[key] = [value, confirms, time.monotonic() + delay]

    def _redis_queue(self) -> None:
        if self._rng.random() < 0.5:
            element = self._unique()
            key = self._rng.choice(QUEUE_KEYS)
            rec = self.history.begin(self.process, "enqueue", key, element)
            ok, reply = self._redis(rec, "LPUSH", key, element)
            if ok and (isinstance(reply, bool) or not isinstance(reply, int)):
                self._unexpected_reply(rec, "LPUSH", reply)
            if ok:
                rec.ok(reply)
            return
        rec = self.history.begin(self.process, "dequeue", QUEUE_KEYS[0])
        ok, reply = self._redis(rec, "BRPOP", *QUEUE_KEYS, "0.5")
        if ok and reply is not None and not (isinstance(reply, list) and len(reply) == 2):
            self._unexpected_reply(rec, "BRPOP", reply)
        if ok:
            rec.ok(None if reply is None else reply[1])


_STEPS: dict[str, Callable[[Worker], None]] = {
    "registers": Worker._registers,
    "counters": Worker._counters,
    "sessions": Worker._sessions,
    "redis-registers": Worker._redis_registers,
    "redis-appends": Worker._redis_appends,
    "mc-registers": Worker._mc_registers,
    "redis-queue": Worker._redis_queue,
    "ttl-sessions": Worker._ttl_sessions,
    "redis-sets": Worker._redis_sets,
}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _item_text(item: Item | None) -> str | None:
    return None if item is None else item.value.decode()


def assign(workers: int, workloads: Sequence[str] = GRPC_WORKLOADS) -> list[str]:
    """Workload of each worker: one per workload, the rest in turn on the register and
    append workloads chosen (counters and sessions need only one)."""
    scaled = [w for w in _SCALED if w in workloads] or list(workloads)
    extra = [scaled[i % len(scaled)] for i in range(workers - len(workloads))]
    return [*workloads, *extra]


def start_workers(
    config: WorkloadConfig,
    history: HistoryWriter,
    lists: ListKeys | None = None,
    sets: ListKeys | None = None,
) -> list[Worker]:
    """Start config.workers workers; the redis-appends ones share `lists`, the redis-sets
    ones `sets`."""
    lists = lists or ListKeys(config.open_lists, config.list_cap)
    sets = sets or ListKeys(config.open_lists, config.list_cap, prefix="rs")
    shared = Client(
        list(config.endpoints), timeout=config.op_timeout_s, auto_pipeline=config.auto_pipeline
    )
    workers = [
        Worker(i, w, config, history, lists, shared, sets)
        for i, w in enumerate(assign(config.workers, config.workloads))
    ]
    for worker in workers:
        worker.start()
    return workers


def stop_workers(workers: Sequence[Worker], timeout: float = 10.0) -> list[str]:
    """Stop and join every worker; returns the errors that ended any of them early."""
    for worker in workers:
        worker.stop()
    errors = []
    for worker in workers:
        worker.join(timeout)
        if worker.error is not None:
            errors.append(f"{worker.workload} worker: {worker.error!r}")
        if worker.unexpected:
            errors.append(
                f"{worker.workload} worker: {len(worker.unexpected)} reply(ies) outside the "
                f"port's contract, first: {worker.unexpected[0]}"
            )
    shared = {id(w.client): w.client for w in workers if w.shares_client}
    for client in shared.values():
        client.close()
    return errors


def pipeline_summary(workers: Sequence[Worker]) -> str:
    """What the SDK workers' shared Client sent: unary RPCs and Batch RPCs."""
    clients = {id(w.client): w.client for w in workers if w.shares_client}
    parts = []
    for client in clients.values():
        if client.pipeline is None:
            parts.append("auto-pipelining off")
            continue
        stats = client.pipeline.stats
        parts.append(
            f"{stats.unary} unary RPCs, {stats.batches} Batch RPCs carrying "
            f"{stats.batched_ops} calls"
        )
    return "; ".join(parts) or "no shared SDK client"
