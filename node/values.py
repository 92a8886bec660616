"""Typed values (hash, sorted set, list, set): containers with deterministic size and digest.

Every container keeps two numbers up to date on each change, so the state machine never
rescans one: `nbytes`, the memory it is accounted for (the same on every replica, see
node/DESIGN.md "Memory accounting"), and `acc`, an order-independent (list: position-
dependent) hash of its content that feeds the state digest.
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import math
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar

_MOD = 1 << 128
_LIST_MOD = (1 << 127) - 1  # a Mersenne prime: positions can go negative (left pushes)
_LIST_BASE = 1_000_003
_LEN = struct.Struct(">I")
_SCORE = struct.Struct(">d")
_HEAD = struct.Struct(">q")


def _h(tag: bytes, *parts: bytes) -> int:
    h = hashlib.blake2b(tag, digest_size=16)
    for part in parts:
        h.update(_LEN.pack(len(part)))
        h.update(part)
    return int.from_bytes(h.digest(), "big")


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


CONTAINERS: dict[int, type[Container]] = {c.TAG: c for c in (Hash, ZSet, List, Set)}
STRING_TAG = 1
TYPE_NAMES = {
    "string": "a string",
    "hash": "a hash",
    "zset": "a sorted set",
    "list": "a list",
    "set": "a set",
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
