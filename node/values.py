"""Typed values (hash, sorted set, list, set, stream): containers with a deterministic size
and digest.

Every container keeps two numbers up to date on each change, so the state machine never
rescans one: `nbytes`, the memory it is accounted for (the same on every replica, see
node/DESIGN.md "Memory accounting"), and `acc`, an order-independent (list: position-
dependent) hash of its content that feeds the state digest.
"""

from __future__ import annotations

import bisect
import collections
import math
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar

from xxhash import xxh3_128_intdigest

_MOD = 1 << 128
_LIST_MOD = (1 << 127) - 1  # a Mersenne prime: positions can go negative (left pushes)
_LIST_BASE = 1_000_003
_LEN = struct.Struct(">I")
_SCORE = struct.Struct(">d")
_HEAD = struct.Struct(">q")


def _h(tag: bytes, *parts: bytes) -> int:
    """A member's 128-bit hash for its container's digest: the tag, then each part after
    its length (XXH3-128: see the xxhash note in pyproject.toml)."""
    pack = _LEN.pack
    out = [tag]
    for part in parts:  # joined once: a stream entry may have a million fields
        out.append(pack(len(part)))
        out.append(part)
    return xxh3_128_intdigest(b"".join(out))


def canonical_score(score: float) -> float:
    """-0.0 and 0.0 order equal but pack differently: keep one of them."""
    return 0.0 if score == 0 else score


def _packed(items: Iterable[bytes]) -> bytes:
    return b"".join(_LEN.pack(len(b)) + b for b in items)


def _unpacked(data: bytes) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        yield bytes(data[pos : pos + n])
        pos += n


class Container:
    TYPE: ClassVar[str]
    TAG: ClassVar[int]
    KEEP_EMPTY: ClassVar[bool] = False  # streams stay when emptied; the others are deleted
    OVERHEAD: ClassVar[int]
    """Accounted bytes per field, member or element on top of its own bytes: CPython's cost
    (object headers, hash table slots, the score) measured with tracemalloc, rounded."""
    nbytes: int
    acc: int

    def __len__(self) -> int:
        raise NotImplementedError

    def encode(self) -> bytes:
        raise NotImplementedError

    def copy(self) -> Container:
        raise NotImplementedError

    def content(self) -> object:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.content() == other.content()

    __hash__ = None  # type: ignore[assignment]  # mutable


class Hash(Container):
    TYPE = "hash"
    TAG = 2
    OVERHEAD = 112  # two bytes objects and a dict slot: 150 B measured for 12 + 20 B

    def __init__(self) -> None:
        self.fields: dict[bytes, bytes] = {}
        self.nbytes = 0
        self.acc = 0

    def __len__(self) -> int:
        return len(self.fields)

    def set(self, field: bytes, value: bytes) -> bool:
        """Set a field; True when it is new."""
        old = self.fields.get(field)
        if old is not None:
            self._account(field, old, -1)
        self.fields[field] = value
        self._account(field, value, 1)
        return old is None

    def delete(self, field: bytes) -> bool:
        old = self.fields.pop(field, None)
        if old is None:
            return False
        self._account(field, old, -1)
        return True

    def _account(self, field: bytes, value: bytes, sign: int) -> None:
        self.nbytes += sign * (len(field) + len(value) + self.OVERHEAD)
        self.acc = (self.acc + sign * _h(b"h", field, value)) % _MOD

    def encode(self) -> bytes:
        return _packed(b for kv in self.fields.items() for b in kv)

    @classmethod
    def decode(cls, data: bytes) -> Hash:
        h = cls()
        it = _unpacked(data)
        for field in it:
            h.set(field, next(it))
        return h

    def content(self) -> object:
        return self.fields

    def copy(self) -> Hash:
        h = Hash()
        h.fields, h.nbytes, h.acc = dict(self.fields), self.nbytes, self.acc
        return h


class Set(Container):
    TYPE = "set"
    TAG = 5
    OVERHEAD = 72  # a bytes object and a set slot: 88 B measured for 13 B

    def __init__(self) -> None:
        self.members: set[bytes] = set()
        self.nbytes = 0
        self.acc = 0

    def __len__(self) -> int:
        return len(self.members)

    def add(self, member: bytes) -> bool:
        if member in self.members:
            return False
        self.members.add(member)
        self._account(member, 1)
        return True

    def remove(self, member: bytes) -> bool:
        if member not in self.members:
            return False
        self.members.remove(member)
        self._account(member, -1)
        return True

    def _account(self, member: bytes, sign: int) -> None:
        self.nbytes += sign * (len(member) + self.OVERHEAD)
        self.acc = (self.acc + sign * _h(b"s", member)) % _MOD

    def encode(self) -> bytes:
        return _packed(sorted(self.members))

    @classmethod
    def decode(cls, data: bytes) -> Set:
        s = cls()
        for member in _unpacked(data):
            s.add(member)
        return s

    def content(self) -> object:
        return self.members

    def copy(self) -> Set:
        s = Set()
        s.members, s.nbytes, s.acc = set(self.members), self.nbytes, self.acc
        return s


class List(Container):
    """A deque; its hash weighs each element by its absolute position, so order counts."""

    TYPE = "list"
    TAG = 4
    OVERHEAD = 40  # a bytes object and a deque slot: 52 B measured for 11 B

    def __init__(self) -> None:
        self.items: collections.deque[bytes] = collections.deque()
        self.head = 0  # absolute position of items[0]; left pushes make it negative
        self.nbytes = 0
        self.acc = 0

    def __len__(self) -> int:
        return len(self.items)

    def _account(self, item: bytes, position: int, sign: int) -> None:
        self.nbytes += sign * (len(item) + self.OVERHEAD)
        weight = pow(_LIST_BASE, position, _LIST_MOD)
        self.acc = (self.acc + sign * _h(b"l", item) * weight) % _LIST_MOD

    def push(self, item: bytes, right: bool) -> None:
        if right:
            self._account(item, self.head + len(self.items), 1)
            self.items.append(item)
        else:
            self.head -= 1
            self._account(item, self.head, 1)
            self.items.appendleft(item)

    def pop(self, right: bool) -> bytes:
        if right:
            item = self.items.pop()
            self._account(item, self.head + len(self.items), -1)
        else:
            item = self.items.popleft()
            self._account(item, self.head, -1)
            self.head += 1
        return item

    def set(self, index: int, item: bytes) -> None:
        """Replace the element at `index` (0 = head)."""
        position = self.head + index
        self._account(self.items[index], position, -1)
        self.items[index] = item
        self._account(item, position, 1)

    def insert(self, index: int, item: bytes) -> None:
        """Insert before the element at `index` (len: append); the shorter side moves."""
        right = index > len(self.items) // 2
        moved = [self.pop(right) for _ in range(len(self.items) - index if right else index)]
        self.push(item, right)
        for other in reversed(moved):
            self.push(other, right)

    def assign(self, items: Iterable[bytes]) -> None:
        """Replace the whole content; the head position stays."""
        self.items.clear()
        self.nbytes = self.acc = 0
        for item in items:
            self.push(item, right=True)

    def encode(self) -> bytes:
        # The head position is part of the hash (weights are absolute positions), so it
        # travels with the items: a restored list must hash like the original.
        return _HEAD.pack(self.head) + _packed(self.items)

    @classmethod
    def decode(cls, data: bytes) -> List:
        lst = cls()
        (lst.head,) = _HEAD.unpack_from(data)
        for item in _unpacked(data[_HEAD.size :]):
            lst.push(item, right=True)
        return lst

    def content(self) -> object:
        return list(self.items)

    def copy(self) -> List:
        lst = List()
        lst.items, lst.head = collections.deque(self.items), self.head
        lst.nbytes, lst.acc = self.nbytes, self.acc
        return lst


class SortedPairs:
    """(score, member) pairs in order, as a list of sorted runs: O(sqrt n) rank and slicing."""

    LOAD = 512

    def __init__(self) -> None:
        self._runs: list[list[tuple[float, bytes]]] = []
        self._maxes: list[tuple[float, bytes]] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def add(self, item: tuple[float, bytes]) -> None:
        self._len += 1
        if not self._runs:
            self._runs.append([item])
            self._maxes.append(item)
            return
        i = bisect.bisect_left(self._maxes, item)
        if i == len(self._maxes):
            i -= 1
            self._runs[i].append(item)
            self._maxes[i] = item
        else:
            bisect.insort(self._runs[i], item)
        run = self._runs[i]
        if len(run) > 2 * self.LOAD:
            tail = run[self.LOAD :]
            del run[self.LOAD :]
            self._maxes[i] = run[-1]
            self._runs.insert(i + 1, tail)
            self._maxes.insert(i + 1, tail[-1])

    def remove(self, item: tuple[float, bytes]) -> None:
        i = bisect.bisect_left(self._maxes, item)
        run = self._runs[i]
        j = bisect.bisect_left(run, item)
        if run[j] != item:
            raise KeyError(item)
        del run[j]
        self._len -= 1
        if run:
            self._maxes[i] = run[-1]
        else:
            del self._runs[i]
            del self._maxes[i]

    def rank(self, item: tuple[float, bytes]) -> int:
        """How many pairs sort before `item`."""
        i = bisect.bisect_left(self._maxes, item)
        if i == len(self._maxes):
            return self._len
        return sum(map(len, self._runs[:i])) + bisect.bisect_left(self._runs[i], item)

    def slice(self, start: int, stop: int) -> list[tuple[float, bytes]]:
        """Pairs with rank in [start, stop)."""
        out: list[tuple[float, bytes]] = []
        if start >= stop:
            return out
        seen = 0
        for run in self._runs:
            if seen + len(run) <= start:
                seen += len(run)
                continue
            out.extend(run[max(start - seen, 0) : stop - seen])
            seen += len(run)
            if seen >= stop:
                break
        return out

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        for run in self._runs:
            yield from run

    def first_where(self, past: Callable[[tuple[float, bytes]], bool]) -> int:
        """Rank of the first pair where `past` holds (False then True along the order)."""
        seen = 0
        for run, last in zip(self._runs, self._maxes, strict=True):
            if past(last):
                return seen + bisect.bisect_left(run, True, key=past)
            seen += len(run)
        return seen


class ZSet(Container):
    """Members with scores, ordered by (score, member)."""

    TYPE = "zset"
    TAG = 3
    OVERHEAD = 176  # bytes, float, tuple, dict and run slots: 188 B measured for 10 B

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.order = SortedPairs()
        self.nbytes = 0
        self.acc = 0

    def __len__(self) -> int:
        return len(self.scores)

    def set(self, member: bytes, score: float) -> bool:
        """Set a member's score; True when the member is new."""
        score = canonical_score(score)
        old = self.scores.get(member)
        if old is not None:
            if old == score:
                return False
            self._remove(member, old)
        self.scores[member] = score
        self.order.add((score, member))
        self._account(member, score, 1)
        return old is None

    def remove(self, member: bytes) -> bool:
        old = self.scores.get(member)
        if old is None:
            return False
        self._remove(member, old)
        del self.scores[member]
        return True

    def _remove(self, member: bytes, score: float) -> None:
        self.order.remove((score, member))
        self._account(member, score, -1)

    def _account(self, member: bytes, score: float, sign: int) -> None:
        self.nbytes += sign * (len(member) + self.OVERHEAD)
        self.acc = (self.acc + sign * _h(b"z", member, _SCORE.pack(score))) % _MOD

    def bounds_rank(self, value: float, exclusive: bool, upper: bool) -> int:
        """Rank of the first pair past a score bound (lower bound: first pair inside it)."""
        past_equal = exclusive != upper  # lower exclusive or upper inclusive: skip == value
        if past_equal:
            if value == math.inf:
                return len(self.order)
            value = math.nextafter(value, math.inf)
        return self.order.rank((value, b""))

    def encode(self) -> bytes:
        return b"".join(_SCORE.pack(s) + _LEN.pack(len(m)) + m for s, m in self.order)

    @classmethod
    def decode(cls, data: bytes) -> ZSet:
        z = cls()
        pos = 0
        while pos < len(data):
            (score,) = _SCORE.unpack_from(data, pos)
            (n,) = _LEN.unpack_from(data, pos + _SCORE.size)
            pos += _SCORE.size + _LEN.size
            z.set(bytes(data[pos : pos + n]), score)
            pos += n
        return z

    def content(self) -> object:
        return self.scores

    def copy(self) -> ZSet:
        z = ZSet()
        for score, member in self.order:
            z.set(member, score)
        return z


_ID = struct.Struct(">QQ")
_I64 = struct.Struct(">q")
_GROUP_META = struct.Struct(">QQq")  # last id (ms, seq), entries read (-1: unknown)
_STREAM_META = struct.Struct(">QQQQQ")  # last id, entries added, max deleted id
_NACK = struct.Struct(">qq")  # delivery time, delivery count
_NODE = struct.Struct(">QQI")  # first id of a node, entries ever appended to it
_SEQ_BITS = 64
MAX_ID = (1 << 128) - 1
NODE_MAX_ENTRIES = 100
"""Redis's default stream-node-max-entries: entries are grouped in nodes of 100 as Redis
groups them in listpacks, so approximate trimming (`~`) removes the same whole nodes."""


def id_bytes(sid: int) -> bytes:
    return _ID.pack(sid >> _SEQ_BITS, sid & ((1 << _SEQ_BITS) - 1))


def id_text(sid: int) -> bytes:
    return b"%d-%d" % (sid >> _SEQ_BITS, sid & ((1 << _SEQ_BITS) - 1))


def make_id(ms: int, seq: int) -> int:
    return ms << _SEQ_BITS | seq


def id_ms(sid: int) -> int:
    return sid >> _SEQ_BITS


def _id_of(data: bytes, pos: int = 0) -> int:
    ms, seq = _ID.unpack_from(data, pos)
    return make_id(ms, seq)


class Nack:
    """A pending entry of a consumer group: who has it, since when, how often delivered."""

    __slots__ = ("consumer", "count", "time")

    def __init__(self, consumer: bytes, time: int, count: int) -> None:
        self.consumer = consumer
        self.time = time
        self.count = count


class Consumer:
    __slots__ = ("pel", "seen")

    def __init__(self, seen: int) -> None:
        self.seen = seen
        self.pel: dict[int, Nack] = {}


class Group:
    __slots__ = ("consumers", "entries_read", "last_id", "pel")

    def __init__(self, last_id: int, entries_read: int) -> None:
        self.last_id = last_id
        self.entries_read = entries_read  # -1: unknown (Redis's SCG_INVALID_ENTRIES_READ)
        self.consumers: dict[bytes, Consumer] = {}
        self.pel: dict[int, Nack] = {}


class Stream(Container):
    """Entries by id (ms << 64 | seq) in id order, plus consumer groups with their pending
    entries. It stays when emptied (a stream, unlike the other types, may be empty). Every
    change goes through a method here, which keeps `nbytes` and the digest parts current;
    ordered views (pending ids, sorted names) are sorted when asked for."""

    TYPE = "stream"
    TAG = 6
    KEEP_EMPTY = True
    OVERHEAD = 136  # per entry: the id int, dict and list slots, the fields tuple
    FIELD_OVERHEAD = 40  # per field or value: a bytes object and its tuple slot
    GROUP_OVERHEAD = 480
    CONSUMER_OVERHEAD = 240
    NACK_OVERHEAD = 200  # the Nack, its id in the group's and the consumer's dicts

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.entries: dict[int, tuple[bytes, ...]] = {}
        self.last_id = 0
        self.entries_added = 0
        self.max_deleted = 0
        self.groups: dict[bytes, Group] = {}
        self.node_starts: list[int] = []  # the first id of each node
        self.node_fills: list[int] = []  # entries ever appended to each node (deleted too)
        self.nbytes = 0
        self._entries_acc = 0
        self._groups_acc = 0
        self._meta: tuple[tuple[int, int, int], int] = ((-1, -1, -1), 0)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def acc(self) -> int:  # type: ignore[override]
        meta = (self.last_id, self.entries_added, self.max_deleted)
        if meta != self._meta[0]:  # hashed once per change, not on every accounting
            packed = _STREAM_META.pack(
                meta[0] >> 64, meta[0] & 0xFFFFFFFFFFFFFFFF, meta[1],
                meta[2] >> 64, meta[2] & 0xFFFFFFFFFFFFFFFF,
            )  # fmt: skip
            self._meta = (meta, _h(b"xm", packed))
        return (self._entries_acc + self._groups_acc + self._meta[1]) % _MOD

    @property
    def first_id(self) -> int:
        return self.ids[0] if self.ids else 0

    # -- entries ---------------------------------------------------------------

    def _entry_account(self, sid: int, fields: tuple[bytes, ...], sign: int) -> None:
        self.nbytes += sign * (self.OVERHEAD + sum(len(f) + self.FIELD_OVERHEAD for f in fields))
        self._entries_acc = (self._entries_acc + sign * _h(b"x", id_bytes(sid), *fields)) % _MOD

    @staticmethod
    def entry_size(fields: Iterable[bytes]) -> int:
        return Stream.OVERHEAD + sum(len(f) + Stream.FIELD_OVERHEAD for f in fields)

    def append(self, sid: int, fields: tuple[bytes, ...]) -> None:
        """Add an entry past the last id (the caller checked sid > last_id)."""
        self.ids.append(sid)
        self.entries[sid] = fields
        self._entry_account(sid, fields, 1)
        self.last_id = sid
        self.entries_added += 1
        if not self.node_fills or self.node_fills[-1] >= NODE_MAX_ENTRIES:
            self.node_starts.append(sid)
            self.node_fills.append(1)
        else:
            self.node_fills[-1] += 1

    def _node_span(self, i: int) -> tuple[int, int]:
        """Positions [lo, hi) in ids of node i's live entries."""
        lo = bisect.bisect_left(self.ids, self.node_starts[i])
        if i + 1 < len(self.node_starts):
            return lo, bisect.bisect_left(self.ids, self.node_starts[i + 1])
        return lo, len(self.ids)

    def _remove_at(self, lo: int, hi: int) -> None:
        for sid in self.ids[lo:hi]:
            self._entry_account(sid, self.entries.pop(sid), -1)
        del self.ids[lo:hi]

    def delete(self, sid: int) -> bool:
        """XDEL one entry; a node left without live entries goes, as Redis frees it."""
        if sid not in self.entries:
            return False
        i = bisect.bisect_right(self.node_starts, sid) - 1
        pos = bisect.bisect_left(self.ids, sid)
        self._remove_at(pos, pos + 1)
        lo, hi = self._node_span(i)
        if lo == hi:
            del self.node_starts[i]
            del self.node_fills[i]
        self.max_deleted = max(self.max_deleted, sid)
        return True

    def trim(self, maxlen: int | None, minid: int, approx: bool, limit: int) -> int:
        """Redis's streamTrim: whole nodes from the head while they may go (MAXLEN: the
        rest keeps at least maxlen; MINID: the node ends below minid), at most `limit`
        entries when limit > 0; then, unless approximate, single entries of the next node."""
        deleted = 0
        while self.ids:
            if maxlen is not None and len(self.ids) <= maxlen:
                break
            lo, hi = self._node_span(0)
            entries = hi - lo
            if limit and deleted + entries > limit:
                break
            if maxlen is not None:
                whole = len(self.ids) - entries >= maxlen
            else:
                whole = self.ids[hi - 1] < minid
            if whole:
                self._remove_at(lo, hi)
                del self.node_starts[0]
                del self.node_fills[0]
                deleted += entries
                continue
            if approx:
                break
            stop = lo
            while stop < hi and (
                len(self.ids) - (stop - lo) > maxlen
                if maxlen is not None
                else self.ids[stop] < minid
            ):
                stop += 1
            self._remove_at(lo, stop)
            deleted += stop - lo
            break
        return deleted

    def range(self, start: int, end: int, count: int = 0, rev: bool = False) -> list[int]:
        """Ids in [start, end] in order (reversed: from end), at most count (0: all)."""
        lo = bisect.bisect_left(self.ids, start)
        hi = bisect.bisect_right(self.ids, end)
        if hi <= lo:
            return []
        if not rev:
            return self.ids[lo : min(hi, lo + count) if count else hi]
        first = max(lo, hi - count) if count else lo
        return self.ids[first:hi][::-1]

    def set_meta(self, last_id: int, entries_added: int, max_deleted: int) -> None:
        """XSETID."""
        self.last_id, self.entries_added, self.max_deleted = last_id, entries_added, max_deleted

    # -- consumer groups -------------------------------------------------------

    def _mix(self, sign: int, *parts: bytes) -> None:
        self._groups_acc = (self._groups_acc + sign * _h(*parts)) % _MOD

    def _group_hash(self, name: bytes, g: Group, sign: int) -> None:
        meta = _GROUP_META.pack(g.last_id >> 64, g.last_id & 0xFFFFFFFFFFFFFFFF, g.entries_read)
        self._mix(sign, b"xg", name, meta)

    def _nack_hash(self, group: bytes, sid: int, n: Nack, sign: int) -> None:
        self._mix(sign, b"xn", group, id_bytes(sid), n.consumer, _NACK.pack(n.time, n.count))

    def _consumer_hash(self, group: bytes, name: bytes, c: Consumer, sign: int) -> None:
        self._mix(sign, b"xc", group, name, _I64.pack(c.seen))

    def add_group(self, name: bytes, last_id: int, entries_read: int) -> Group:
        g = self.groups[name] = Group(last_id, entries_read)
        self._group_hash(name, g, 1)
        self.nbytes += self.GROUP_OVERHEAD + len(name)
        return g

    def drop_group(self, name: bytes) -> None:
        g = self.groups[name]
        for cname in list(g.consumers):
            self.drop_consumer(name, cname)
        self._group_hash(name, g, -1)
        self.nbytes -= self.GROUP_OVERHEAD + len(name)
        del self.groups[name]

    def set_group(self, name: bytes, last_id: int, entries_read: int) -> None:
        g = self.groups[name]
        self._group_hash(name, g, -1)
        g.last_id, g.entries_read = last_id, entries_read
        self._group_hash(name, g, 1)

    def add_consumer(self, group: bytes, name: bytes, seen: int) -> Consumer:
        c = self.groups[group].consumers[name] = Consumer(seen)
        self._consumer_hash(group, name, c, 1)
        self.nbytes += self.CONSUMER_OVERHEAD + len(name)
        return c

    def seen(self, group: bytes, name: bytes, now: int) -> None:
        c = self.groups[group].consumers[name]
        self._consumer_hash(group, name, c, -1)
        c.seen = now
        self._consumer_hash(group, name, c, 1)

    def drop_consumer(self, group: bytes, name: bytes) -> int:
        """Remove a consumer and its pending entries; answers how many it had."""
        g = self.groups[group]
        c = g.consumers[name]
        pending = len(c.pel)
        for sid in list(c.pel):
            self.drop_nack(group, sid)
        self._consumer_hash(group, name, c, -1)
        self.nbytes -= self.CONSUMER_OVERHEAD + len(name)
        del g.consumers[name]
        return pending

    def set_nack(self, group: bytes, sid: int, consumer: bytes, time: int, count: int) -> None:
        """Create or update a pending entry (moving it to `consumer`, which must exist)."""
        g = self.groups[group]
        old = g.pel.get(sid)
        if old is None:
            self.nbytes += self.NACK_OVERHEAD
        else:
            self._nack_hash(group, sid, old, -1)
            del g.consumers[old.consumer].pel[sid]
        n = g.pel[sid] = Nack(consumer, time, count)
        g.consumers[consumer].pel[sid] = n
        self._nack_hash(group, sid, n, 1)

    def drop_nack(self, group: bytes, sid: int) -> bool:
        g = self.groups[group]
        n = g.pel.pop(sid, None)
        if n is None:
            return False
        del g.consumers[n.consumer].pel[sid]
        self._nack_hash(group, sid, n, -1)
        self.nbytes -= self.NACK_OVERHEAD
        return True

    # -- snapshots ---------------------------------------------------------------

    def encode(self) -> bytes:
        meta = _STREAM_META.pack(
            self.last_id >> 64, self.last_id & 0xFFFFFFFFFFFFFFFF, self.entries_added,
            self.max_deleted >> 64, self.max_deleted & 0xFFFFFFFFFFFFFFFF,
        )  # fmt: skip
        entries = _packed(id_bytes(sid) + _packed(self.entries[sid]) for sid in self.ids)
        nodes = b"".join(
            id_bytes(start) + _LEN.pack(fill)
            for start, fill in zip(self.node_starts, self.node_fills, strict=True)
        )
        groups = _packed(self._encode_group(name, g) for name, g in self.groups.items())
        return _packed((meta, entries, nodes, groups))

    @staticmethod
    def _encode_group(name: bytes, g: Group) -> bytes:
        meta = _GROUP_META.pack(g.last_id >> 64, g.last_id & 0xFFFFFFFFFFFFFFFF, g.entries_read)
        consumers = _packed(_I64.pack(c.seen) + cname for cname, c in g.consumers.items())
        pel = _packed(
            id_bytes(sid) + _NACK.pack(n.time, n.count) + n.consumer
            for sid, n in sorted(g.pel.items())
        )
        return _packed((name, meta, consumers, pel))

    @classmethod
    def decode(cls, data: bytes) -> Stream:
        s = cls()
        meta, entries, nodes, groups = _unpacked(data)
        for raw in _unpacked(entries):
            s.append(_id_of(raw), tuple(_unpacked(raw[_ID.size :])))
        s.node_starts = [_id_of(nodes, p) for p in range(0, len(nodes), _NODE.size)]
        s.node_fills = [
            _LEN.unpack_from(nodes, p + _ID.size)[0] for p in range(0, len(nodes), _NODE.size)
        ]
        last_ms, last_seq, added, del_ms, del_seq = _STREAM_META.unpack(meta)
        s.set_meta(make_id(last_ms, last_seq), added, make_id(del_ms, del_seq))
        for raw in _unpacked(groups):
            name, gmeta, consumers, pel = _unpacked(raw)
            ms, seq, read = _GROUP_META.unpack(gmeta)
            s.add_group(name, make_id(ms, seq), read)
            for craw in _unpacked(consumers):
                s.add_consumer(name, craw[_I64.size :], _I64.unpack_from(craw)[0])
            for nraw in _unpacked(pel):
                time, count = _NACK.unpack_from(nraw, _ID.size)
                consumer = nraw[_ID.size + _NACK.size :]
                s.set_nack(name, _id_of(nraw), consumer, time, count)
        return s

    def content(self) -> object:
        groups = {
            name: (
                g.last_id,
                g.entries_read,
                {c: x.seen for c, x in g.consumers.items()},
                {sid: (n.consumer, n.time, n.count) for sid, n in g.pel.items()},
            )
            for name, g in self.groups.items()
        }
        meta = (self.last_id, self.entries_added, self.max_deleted)
        return (self.entries, meta, groups, self.node_starts, self.node_fills)

    def copy(self) -> Stream:
        return Stream.decode(self.encode())


CONTAINERS: dict[int, type[Container]] = {c.TAG: c for c in (Hash, ZSet, List, Set, Stream)}
STRING_TAG = 1
TYPE_NAMES = {
    "string": "a string",
    "hash": "a hash",
    "zset": "a sorted set",
    "list": "a list",
    "set": "a set",
    "stream": "a stream",
}


def type_name(value: bytes | Container) -> str:
    return "string" if isinstance(value, bytes) else value.TYPE


def value_nbytes(value: bytes | Container) -> int:
    return len(value) if isinstance(value, bytes) else value.nbytes


def value_hash(value: bytes | Container) -> bytes:
    """What the state digest hashes for a value: the bytes, or a container's tag and acc."""
    if isinstance(value, bytes):
        return value
    return bytes([value.TAG]) + value.acc.to_bytes(16, "big") + _LEN.pack(len(value))


def encode_value(value: bytes | Container) -> tuple[int, bytes]:
    if isinstance(value, bytes):
        return STRING_TAG, value
    return value.TAG, value.encode()


def decode_value(tag: int, data: bytes) -> bytes | Container:
    if tag == STRING_TAG:
        return bytes(data)
    cls = CONTAINERS.get(tag)
    if cls is None:
        raise ValueError(f"unknown value type tag {tag} in snapshot")
    return cls.decode(data)  # type: ignore[attr-defined, no-any-return]
