"""Keyspace notifications (node/keyspace/notify.py): which events each change publishes, as
Redis 7.0 names them, derived identically on every replica while entries are applied."""

from __future__ import annotations

from typing import Any

import pytest
from raftcache.node.keyspace import notify
from raftcache.node.state_machine import Published, StateMachine
from raftcache.v1 import command_pb2

from tests.unit.redis_harness import Redis


def notifying(flags: str) -> Redis:
    r = Redis()
    r("raftcache.notify-keyspace-events", flags)
    published(r)
    return r


def published(r: Redis) -> list[tuple[bytes, bytes]]:
    """The messages published since the last call (both replicas must agree)."""
    mine = [(e.channel, e.message) for e in r.sm.take_events() if type(e) is Published]
    twin = [(e.channel, e.message) for e in r.twin.take_events() if type(e) is Published]
    assert mine == twin, "replicas published different notifications"
    return mine


def events(r: Redis, *args: Any) -> list[str]:
    """`key event` for each keyspace notification the command published."""
    r(*args)
    out = []
    for channel, message in published(r):
        assert channel.startswith(b"__keyspace@0__:"), channel
        out.append(f"{channel[len(b'__keyspace@0__:') :].decode()} {message.decode()}")
    return out


def test_flags_normalize_as_redis_shows_them() -> None:
    assert notify.display(notify.normalize("KA")) == "AK"
    assert notify.display(notify.normalize("EA")) == "AE"
    assert notify.display(notify.normalize("gKE")) == "gKE"
    assert notify.display(notify.normalize("$lshzxeKE")) == "$lshzxeKE"
    assert notify.display(notify.normalize("")) == ""
    # `A` leaves out new-key events; Redis then does not show n although it is on
    assert notify.normalize("AnK") == "g$lshzxetdnK"
    assert notify.display("g$lshzxetdnK") == "AK"
    with pytest.raises(notify.BadFlags, match="Use 'Ag"):
        notify.normalize("KQ")
    with pytest.raises(notify.BadFlags, match="key-miss events"):
        notify.normalize("KEm")


def test_nothing_is_published_while_off_or_without_a_channel_kind() -> None:
    r = Redis()
    r("set", "k", "v")
    assert published(r) == []
    r("raftcache.notify-keyspace-events", "A")  # classes but neither K nor E
    published(r)
    r("set", "k", "v2")
    assert published(r) == []


def test_keyspace_and_keyevent_channels_in_redis_order() -> None:
    r = notifying("KEA")
    r("set", "foo", "bar")
    assert published(r) == [
        (b"__keyspace@0__:foo", b"set"),
        (b"__keyevent@0__:set", b"foo"),
    ]
    r = notifying("EA")
    r.db = 3
    r("lpush", "l", "a")
    assert published(r) == [(b"__keyevent@3__:lpush", b"l")]


def test_classes_mask_events() -> None:
    r = notifying("Kl")
    r("set", "foo", "bar")
    r("lpush", "mylist", "a")
    assert published(r) == [(b"__keyspace@0__:mylist", b"lpush")]


def test_string_and_generic_events() -> None:
    r = notifying("KA")
    assert events(r, "set", "k", "v", "ex", "100") == ["k set", "k expire"]
    assert events(r, "set", "k", "ex") == ["k set"]  # a value "ex" is not the option
    assert events(r, "setex", "k", "100", "v") == ["k set", "k expire"]
    assert events(r, "incr", "n") == ["n incrby"]
    assert events(r, "incrbyfloat", "n", "1.5") == ["n incrbyfloat"]
    assert events(r, "append", "k", "x") == ["k append"]
    assert events(r, "setrange", "k", "0", "y") == ["k setrange"]
    assert events(r, "mset", "a", "1", "b", "2") == ["a set", "b set"]
    assert events(r, "expire", "a", "100") == ["a expire"]
    assert events(r, "persist", "a") == ["a persist"]
    assert events(r, "getex", "a", "ex", "5") == ["a expire"]
    assert events(r, "rename", "a", "c") == ["a rename_from", "c rename_to"]
    assert events(r, "copy", "c", "d") == ["d copy_to"]
    assert events(r, "getdel", "d") == ["d del"]
    assert events(r, "del", "b", "c", "missing") == ["b del", "c del"]
    assert events(r, "expire", "k", "-1") == ["k del"]  # a past deadline deletes
    assert events(r, "set", "k", "v", "nx") == ["k set"]
    assert events(r, "set", "k", "v", "nx") == []  # nothing changed, nothing published
    payload = r("dump", "k")
    assert events(r, "restore", "k", "0", payload, "replace") == ["k restore"]
    assert events(r, "restore", "k", "1", payload, "replace", "absttl") == ["k del"]


def test_container_events_and_the_del_of_an_emptied_key() -> None:
    r = notifying("KA")
    assert events(r, "rpush", "l", "a", "b", "c") == ["l rpush"]
    assert events(r, "lpop", "l") == ["l lpop"]
    # Redis's order: the push, then the pop (and the del of an emptied source)
    assert events(r, "lmove", "l", "m", "right", "left") == ["m lpush", "l rpop"]
    assert events(r, "rpoplpush", "l", "m") == ["m lpush", "l rpop", "l del"]
    assert events(r, "rpush", "r", "1", "2") == ["r rpush"]
    assert events(r, "lmove", "r", "r", "left", "right") == ["r rpush", "r lpop"]
    assert events(r, "lmpop", "1", "m", "right", "count", "1") == ["m rpop"]
    assert events(r, "hset", "h", "f", "1") == ["h hset"]
    assert events(r, "hincrby", "h", "f", "2") == ["h hincrby"]
    assert events(r, "hdel", "h", "f") == ["h hdel", "h del"]
    assert events(r, "sadd", "s", "a", "b") == ["s sadd"]
    assert events(r, "srem", "s", "x") == []  # not a member: nothing changed
    assert events(r, "smove", "s", "t", "a") == ["s srem", "t sadd"]
    assert events(r, "sinterstore", "u", "s", "t") == []  # empty result, u did not exist
    assert events(r, "sunionstore", "u", "s", "t") == ["u sunionstore"]
    assert events(r, "zadd", "z", "1", "a", "2", "b") == ["z zadd"]
    assert events(r, "zadd", "z", "incr", "5", "a") == ["z zincr"]
    assert events(r, "zadd", "z", "3", "incr") == ["z zadd"]  # a member named incr
    assert events(r, "zincrby", "z", "1", "b") == ["z zincr"]
    assert events(r, "zpopmax", "z") == ["z zpopmax"]
    assert events(r, "zmpop", "1", "z", "min") == ["z zpopmin"]
    assert events(r, "zrem", "z", "incr") == ["z zrem", "z del"]


def test_stream_events_are_named_by_their_handlers() -> None:
    r = notifying("Kt")
    assert events(r, "xgroup", "create", "s", "g", "$", "mkstream") == ["s xgroup-create"]
    assert events(r, "xgroup", "createconsumer", "s", "g", "bob") == ["s xgroup-createconsumer"]
    assert events(r, "xgroup", "createconsumer", "s", "g", "bob") == []  # exists already
    assert events(r, "xadd", "s", "1-1", "f", "v") == ["s xadd"]
    assert events(r, "xadd", "s", "maxlen", "1", "2-1", "f", "v") == ["s xadd", "s xtrim"]
    assert events(r, "xreadgroup", "group", "g", "alice", "streams", "s", ">") == [
        "s xgroup-createconsumer"
    ]
    assert events(r, "xclaim", "s", "g", "mike", "0", "2-1", "force") == ["s xgroup-createconsumer"]
    assert events(r, "xautoclaim", "s", "g", "bob", "0", "0") == []  # bob exists
    assert events(r, "xack", "s", "g", "2-1") == []
    assert events(r, "xgroup", "delconsumer", "s", "g", "lee") == []  # no such consumer
    assert events(r, "xgroup", "delconsumer", "s", "g", "bob") == ["s xgroup-delconsumer"]
    assert events(r, "xgroup", "setid", "s", "g", "0") == ["s xgroup-setid"]
    assert events(r, "xdel", "s", "9-9") == []
    assert events(r, "xdel", "s", "2-1") == ["s xdel"]
    assert events(r, "xsetid", "s", "5-0") == ["s xsetid"]
    assert events(r, "xgroup", "destroy", "s", "g") == ["s xgroup-destroy"]


def test_internal_records_publish_nothing_and_move_names_both_databases() -> None:
    r = notifying("KEA")
    r("script", "load", "return 1")
    r("acl", "setuser", "someone", "on")
    assert published(r) == []  # scripts and users live in the nodes' own databases
    r("set", "k", "v")
    published(r)
    r("move", "k", "3")
    assert published(r) == [
        (b"__keyspace@0__:k", b"move_from"),
        (b"__keyevent@0__:move_from", b"k"),
        (b"__keyspace@3__:k", b"move_to"),
        (b"__keyevent@3__:move_to", b"k"),
    ]


def test_new_comes_first_and_with_every_recreated_destination() -> None:
    r = notifying("Knt")
    assert events(r, "xadd", "s", "1-1", "f", "v") == ["s new", "s xadd"]
    r = notifying("Kgn")
    r("set", "a", "1")
    r("set", "b", "2")
    published(r)
    assert events(r, "rename", "a", "b") == ["b new", "a rename_from", "b rename_to"]
    assert events(r, "copy", "b", "c") == ["c new", "c copy_to"]
    assert events(r, "copy", "b", "c", "replace") == ["c new", "c copy_to"]
    r = notifying("KEgn")
    r("set", "k", "v")
    published(r)
    r("move", "k", "3")  # dbAdd in the target publishes new before either move event
    assert [m for _, m in published(r)] == [b"new", b"k", b"move_from", b"k", b"move_to", b"k"]


def test_new_expired_and_evicted_are_named_by_the_change() -> None:
    r = notifying("Enx")
    r("set", "foo", "bar")
    r("set", "foo", "baz")  # a second write of foo is not new
    r("psetex", "bar", "100", "1")
    assert published(r) == [(b"__keyevent@0__:new", b"foo"), (b"__keyevent@0__:new", b"bar")]
    r.advance(200)  # an empty entry sweeps what is due
    assert published(r) == [(b"__keyevent@0__:expired", b"bar")]
    r = notifying("Ee")
    r("set", "foo", "bar")
    for sm in (r.sm, r.twin):
        command = command_pb2.Command(now_ms=r.now_ms)
        command.ops.add().evict.keys.append(b"foo")
        sm.apply(command)
    assert published(r) == [(b"__keyevent@0__:evicted", b"foo")]


def test_writes_outside_redis_commands_publish_set_and_del() -> None:
    r = notifying("KEA")
    for sm in (r.sm, r.twin):
        command = command_pb2.Command(now_ms=r.now_ms)
        command.ops.add().set.key = b"grpc-key"
        command.ops.add().delete.key = b"grpc-key"
        sm.apply(command)
    assert published(r) == [
        (b"__keyspace@0__:grpc-key", b"set"),
        (b"__keyevent@0__:set", b"grpc-key"),
        (b"__keyspace@0__:grpc-key", b"del"),
        (b"__keyevent@0__:del", b"grpc-key"),
    ]


def test_script_calls_publish_once_each() -> None:
    r = notifying("KA")
    script = "redis.call('set', KEYS[1], 'x'); redis.call('lpush', KEYS[2], 'y'); return 1"
    assert events(r, "eval", script, "2", "a", "b") == ["a set", "b lpush"]


def test_the_setting_survives_a_snapshot_and_changes_the_digest() -> None:
    r = notifying("KEl")
    plain = StateMachine()
    assert r.sm.digest() != plain.digest() or r.sm.revision != plain.revision
    restored = StateMachine.restore(r.sm.export_meta(), r.sm.export_items())
    assert restored.notify_flags == r.sm.notify_flags == "lKE"
    assert restored.digest() == r.sm.digest()
    r("raftcache.notify-keyspace-events", "")
    assert not r.sm.notify_on
    assert r("raftcache.notify-keyspace-events", "KQ").startswith("ERR Invalid event class")
