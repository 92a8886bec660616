"""node/acl.py and node/auth.py without a cluster: rules, checks, identities (issue 14)."""

from __future__ import annotations

import pytest
from raftcache.node import acl, errors
from raftcache.node.acl import READ, WRITE, Acl, AclError, digest
from raftcache.node.auth import (
    AS_USER_KEY,
    AUTHORIZATION_KEY,
    FORWARD_PROOF_KEY,
    Auth,
    basic_header,
    channels_of,
    penalty_s,
    seed_text,
)


def user(*rules: str, name: str = "u") -> acl.User:
    return acl.with_rules(None, name, rules)


def test_the_default_user_may_do_everything_and_skips_the_checks() -> None:
    default = acl.default_user()
    assert default.unrestricted
    assert default.describe() == "user default on nopass ~* &* +@all"
    assert default.check([b"flushall"]) is None
    assert default.check_password(b"anything")


def test_a_new_user_is_off_and_may_do_nothing() -> None:
    u = user()
    assert u.describe() == "user u off resetchannels -@all"
    assert not u.check_password(b"")
    assert u.check([b"get", b"k"]) == acl.noperm_command("get")


def test_reset_clears_everything_and_turns_the_user_off() -> None:
    u = user("on", ">pw", "~*", "&*", "+@all", "reset")
    assert u.describe() == "user u off sanitize-payload resetchannels -@all"
    assert not u.passwords and not u.keys


def test_categories_subtract_and_single_commands_win_in_order() -> None:
    u = user("on", "nopass", "~*", "+@all", "-@dangerous", "+client|id")
    assert u.check([b"get", b"k"]) is None
    assert u.check([b"flushall"]) == acl.noperm_command("flushall")
    assert u.check([b"client", b"kill", b"x"]) == acl.noperm_command("client|kill")
    assert u.check([b"client", b"id"]) is None
    u = acl.with_rules(u, "u", ["-get"])
    assert u.check([b"get", b"k"]) == acl.noperm_command("get")
    assert u.describe().endswith("+@all -@dangerous +client|id -get")


def test_a_container_rule_covers_its_subcommands_and_a_first_arg_rule_one_argument() -> None:
    u = user("on", "nopass", "~*", "+client", "-client|kill", "+select|0")
    assert u.check([b"client", b"list"]) is None
    assert u.check([b"client", b"kill", b"x"]) == acl.noperm_command("client|kill")
    assert u.check([b"select", b"0"]) is None
    assert u.check([b"select", b"1"]) == acl.noperm_command("select")


def test_key_patterns_need_the_right_permission_per_key_spec() -> None:
    u = user("on", "nopass", "%R~r:*", "%W~w:*", "~rw:*", "+@all")
    assert u.keys == [(READ, b"r:*"), (WRITE, b"w:*"), (READ | WRITE, b"rw:*")]
    assert u.check([b"get", b"r:1"]) is None
    assert u.check([b"get", b"w:1"]) == acl.NOPERM_KEY
    assert u.check([b"set", b"w:1", b"v"]) is None  # SET's key spec: OW UPDATE -> write
    assert u.check([b"set", b"r:1", b"v"]) == acl.NOPERM_KEY
    assert u.check([b"copy", b"r:1", b"w:1"]) is None
    assert u.check([b"copy", b"w:1", b"r:1"]) == acl.NOPERM_KEY
    assert u.check([b"incr", b"rw:1"]) is None  # RW ACCESS UPDATE -> read and write
    assert u.check([b"incr", b"r:1"]) == acl.NOPERM_KEY
    assert u.check([b"exists", b"w:1"]) is None  # RO without ACCESS: any matching pattern
    assert u.check([b"ping"]) is None  # no keys


_FAST_RULES = [
    ("on", "nopass", "~app:*", "+@read", "+@write"),
    ("on", "nopass", "~app:*", "~s?ss:*", "+@all", "-flushall"),
    ("on", "nopass", "%R~r:*", "%W~w:*", "~rw:*", "+@all"),
    ("on", "nopass", "%R~x", "~*", "+@all", "-set"),
    ("on", "nopass", "~app:*", "&c", "+get", "+select|0", "+client", "-client|kill", "+publish"),
]
_FAST_CALLS = [
    [b"GET", b"app:1"],
    [b"GET", b"other"],
    [b"get", b"app:2"],
    [b"SET", b"app:1", b"v"],
    [b"SET", b"r:1", b"v"],
    [b"SET", b"w:1", b"v", b"GET"],
    [b"SET", b"rw:1", b"v", b"GET"],
    [b"SET", b"other", b"v"],
    [b"MSET", b"app:1", b"v", b"app:2", b"v"],
    [b"MSET", b"app:1", b"v", b"other", b"v"],
    [b"DEL", b"app:1", b"sess:1", b"other"],
    [b"MGET", b"app:1", b"app:2"],
    [b"MGET", b"app:1", b"x"],
    [b"INCR", b"r:1"],
    [b"INCR", b"rw:1"],
    [b"GET"],  # wrong arity: no key to check
    [b"SELECT", b"0"],
    [b"SELECT", b"1"],
    [b"CLIENT", b"LIST"],
    [b"CLIENT", b"KILL", b"x"],
    [b"PUBLISH", b"c", b"m"],
    [b"PUBLISH", b"d", b"m"],
    [b"FLUSHALL"],
    [b"SORT", b"app:1", b"BY", b"x*"],
]


@pytest.mark.parametrize("rules", _FAST_RULES)
def test_the_remembered_fast_path_refuses_exactly_what_the_full_walk_refuses(
    rules: tuple[str, ...],
) -> None:
    warm = user(*rules)
    for _ in range(3):  # the first pass fills the user's fast plans, the others use them
        for argv in _FAST_CALLS:
            fresh = user(*rules)  # no remembered plans: the full walk
            channels = channels_of(argv)
            assert warm.denial(argv, channels) == fresh.denial(argv, channels), argv
    assert warm._fast  # the common data commands did take the fast path


def test_fast_plans_per_user_are_bounded() -> None:
    u = user("on", "nopass", "~app:*", "+@all")
    for i in range(acl._MAX_FAST + 100):
        spelling = bytes(c ^ 0x20 if (i >> n) & 1 else c for n, c in enumerate(b"hincrbyfloat"))
        u.denial([spelling, b"app:1", b"f", b"1"])
    assert len(u._fast) <= acl._MAX_FAST


def test_channels_match_as_globs_and_psubscribe_patterns_literally() -> None:
    u = user("on", "nopass", "~*", "&news.*", "+@all")
    assert (
        u.check([b"publish", b"news.a", b"m"], channels_of([b"publish", b"news.a", b"m"])) is None
    )
    argv = [b"publish", b"other", b"m"]
    assert u.check(argv, channels_of(argv)) == acl.NOPERM_CHANNEL
    argv = [b"psubscribe", b"news.*"]
    assert u.check(argv, channels_of(argv)) is None
    argv = [b"psubscribe", b"news.a*"]
    assert u.check(argv, channels_of(argv)) == acl.NOPERM_CHANNEL


def test_the_denial_names_what_was_refused() -> None:
    u = user("on", "nopass", "~k:*", "&c", "+get", "+publish")
    assert u.denial([b"set", b"k:1", b"v"]) == ("command", "set")
    assert u.denial([b"get", b"x"]) == ("key", "x")
    argv = [b"publish", b"d", b"m"]
    assert u.denial(argv, channels_of(argv)) == ("channel", "d")
    assert acl.dryrun_text(("key", "x")) == "This user has no permissions to access the 'x' key"


def test_passwords_rotate_and_are_kept_as_digests_only() -> None:
    u = user("on", ">old", ">new")
    assert u.passwords == [digest(b"old"), digest(b"new")]
    assert u.check_password(b"old") and u.check_password(b"new")
    u = acl.with_rules(u, "u", ["<old"])
    assert not u.check_password(b"old") and u.check_password(b"new")
    assert "new" not in u.describe().replace(digest(b"new"), "")
    assert acl.hash_passwords([b">pw", b"<pw", b"~k"]) == [
        "#" + digest(b"pw"),
        "!" + digest(b"pw"),
        "~k",
    ]
    assert not user("off", ">pw").check_password(b"pw")  # disabled


@pytest.mark.parametrize(
    ("rules", "text"),
    [
        (["foo"], "ERR Error in ACL SETUSER modifier 'foo': Syntax error"),
        (["%X~a"], "ERR Error in ACL SETUSER modifier '%X~a': Syntax error"),
        (["+@nope"], "modifier '+@nope': Unknown command or category name in ACL"),
        (["+client|nope"], "modifier '+client|nope': Unknown command or category name in ACL"),
        (["#xyz"], "The password hash must be exactly 64 characters"),
        (["<missing"], "The password you are trying to remove from the user does not exist"),
        (["allkeys", "~a"], "Adding a pattern after the * pattern (or the 'allkeys' flag)"),
        (["allchannels", "&a"], "Adding a pattern after the * pattern (or the 'allchannels' flag)"),
        (["(~x +get)"], "selectors are not supported by raftcache"),
    ],
)
def test_bad_rules_are_refused_and_change_nothing(rules: list[str], text: str) -> None:
    before = user("on", ">pw", "~k:*", "+get")
    described = before.describe()
    with pytest.raises(AclError) as refused:
        acl.with_rules(before, "u", ["+set", *rules])
    assert text in refused.value.text
    assert before.describe() == described  # the original is untouched


def test_user_files_parse_round_trip_and_name_the_bad_line() -> None:
    users = Acl.parse("# c\n\nuser a on >pw ~a:* +@read\nuser default on nopass ~* &* +@all\n")
    assert Acl.parse(users.text()).text() == users.text()
    assert users.open and users.authenticate("a", b"pw") is users.users["a"]
    with pytest.raises(AclError, match="users line 2: user 'a' is defined twice"):
        Acl.parse("user a on\nuser a off", "users")
    with pytest.raises(AclError, match="line 1: should start with user keyword"):
        Acl.parse("a on")
    locked = Acl.parse(f"user default on #{digest(b'x')} ~* &* +@all")
    assert not locked.open


def test_a_requirepass_seed_replaces_the_default_password() -> None:
    seed = seed_text(None, "s3cret")
    assert seed is not None and "s3cret" not in seed
    users = Acl.parse(seed)
    assert users.authenticate("default", b"s3cret") is not None
    assert users.authenticate("default", b"other") is None
    assert seed_text(None, None) is None


def test_genpass_gives_the_bits_asked_for() -> None:
    assert len(acl.genpass()) == 64
    assert len(acl.genpass(5)) == 2
    assert acl.genpass() != acl.genpass()


# -- Auth ------------------------------------------------------------------------------------


class Stored:
    def __init__(self) -> None:
        self.text: bytes | None = None
        self.key: bytes | None = None

    def __call__(self) -> tuple[bytes | None, bytes | None]:
        return self.text, self.key


def test_a_node_enforces_its_seed_until_the_cluster_stores_users() -> None:
    stored = Stored()
    auth = Auth(stored, seed_text(None, "pw"))
    assert not auth.acl().open
    call = auth.bootstrap_call()
    assert call is not None and call[0] == b"raftcache.acl.bootstrap" and len(call[1]) == 32
    stored.text, stored.key = b"user default on nopass ~* &* +@all", b"k" * 32
    assert auth.acl().open  # the replicated users win once stored
    assert auth.bootstrap_call() is None
    assert Auth(Stored()).bootstrap_call() is None  # nothing to seed


def test_identify_takes_basic_credentials_and_refuses_wrong_ones() -> None:
    auth = Auth(Stored(), "user default on nopass ~* &* +@all\nuser a on >pw ~* +@all")
    assert auth.identify([]).name == "default"
    assert auth.identify([(AUTHORIZATION_KEY, basic_header("a", "pw"))]).name == "a"
    with pytest.raises(errors.Unauthenticated, match="invalid username-password pair"):
        auth.identify([(AUTHORIZATION_KEY, basic_header("a", "bad"))])
    with pytest.raises(errors.Unauthenticated):
        auth.identify([(AUTHORIZATION_KEY, "Basic !!!not-base64")])
    assert auth.failures[("grpc", "auth")] == 2
    locked = Auth(Stored(), seed_text(None, "pw"))
    with pytest.raises(errors.Unauthenticated, match="authentication required"):
        locked.identify([])


def test_a_relayed_identity_counts_only_with_the_members_proof() -> None:
    stored = Stored()
    stored.text = (
        f"user default on #{digest(b'pw')} ~* &* +@all\nuser ro on nopass ~* +get".encode()
    )
    stored.key = b"k" * 32
    auth = Auth(stored)
    forged = [(AS_USER_KEY, "default")]
    with pytest.raises(errors.Unauthenticated):
        auth.identify(forged)  # a bare claim gives nothing
    with pytest.raises(errors.Unauthenticated):
        auth.identify([*forged, (FORWARD_PROOF_KEY, "0" * 64)])
    relayed = auth.forward_metadata("ro")
    assert dict(relayed)[AS_USER_KEY] == "ro"
    assert auth.identify(relayed).name == "ro"
    other_cluster = Auth(lambda: (stored.text, b"x" * 32))
    with pytest.raises(errors.Unauthenticated):
        other_cluster.identify(relayed)


def test_auth_failures_wait_longer_and_longer_up_to_a_bound() -> None:
    waits = [penalty_s(n) for n in range(1, 12)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:6] == [0.1, 0.2, 0.4]
    assert max(waits) == 2.0 and waits == sorted(waits)


def test_a_grpc_connection_guessing_passwords_is_answered_slower_and_slower() -> None:
    auth = Auth(Stored(), "user default on nopass ~* &* +@all\nuser a on >pw ~* +@all")
    wrong = [(AUTHORIZATION_KEY, basic_header("a", "guess"))]
    delays = []
    for _ in range(6):
        with pytest.raises(errors.Unauthenticated) as refused:
            auth.identify(wrong, peer="ipv4:10.0.0.9:50001")
        delays.append(refused.value.delay_s)
    assert delays == [0.0, 0.0, 0.0, 0.1, 0.2, 0.4]
    with pytest.raises(errors.Unauthenticated) as other:
        auth.identify(wrong, peer="ipv4:10.0.0.9:50002")  # another connection starts afresh
    assert other.value.delay_s == 0.0
    assert auth.identify([(AUTHORIZATION_KEY, basic_header("a", "pw"))]).name == "a"


def test_sort_is_checked_on_its_source_its_store_target_and_its_patterns() -> None:
    """SORT's key specs are 'unknown' in Redis's metadata: its keys come from Redis's
    sortGetKeys, and BY/GET patterns (which read other keys) need a read pattern of `*`."""
    app = user("on", "nopass", "~app:*", "+@all")
    assert app.denial([b"sort", b"secret"]) == ("key", "secret")
    assert app.denial([b"sort", b"app:x", b"STORE", b"secret"]) == ("key", "secret")
    assert app.denial([b"sort", b"app:x", b"STORE", b"app:y", b"GET", b"#"]) is None
    assert app.denial([b"sort_ro", b"app:l", b"BY", b"nosort", b"GET", b"*"]) == ("key", "*")
    assert app.denial([b"sort", b"app:l", b"BY", b"app:w_*"]) == ("key", "app:w_*")
    reader = user("on", "nopass", "%R~*", "%W~app:*", "+@all")
    assert reader.denial([b"sort", b"app:l", b"BY", b"w_*", b"GET", b"*->f"]) is None


def test_internal_commands_and_unknown_names() -> None:
    app = user("on", "nopass", "~app:*", "&*", "+@all")
    assert app.denial([b"raftcache.woken", b"BLPOP", b"secret", b"0"]) == (
        "command",
        "raftcache.woken",
    )
    assert app.denial([b"raftcache.unpop", b"LPUSH", b"secret", b"x"]) is not None
    assert app.denial([b"nosuchcommand", b"x"]) is None  # answered as an unknown command
    assert app.denial([b"\xff\xfe", b"x"]) is None  # and never crashes ACL LOG (latin-1)


@pytest.mark.parametrize("rule", ["~a\tallkeys", "~a b", "&x\ny", "+select|a b", ""])
def test_rules_with_whitespace_are_refused(rule: str) -> None:
    """The stored users are space-separated rules: a rule with whitespace would read back
    as other rules (a tab-separated 'allkeys' became allkeys)."""
    with pytest.raises(AclError, match="Syntax error"):
        acl.with_rules(None, "u", [rule])
    for name in ("x\nuser\tevil", "a\tb", "c\x85"):
        with pytest.raises(AclError, match="Usernames can't contain spaces"):
            acl.with_rules(None, name, ["on"])
    assert acl.with_rules(None, "u", ["on", ">pass word"]).check_password(b"pass word")


def test_a_user_change_is_bounded() -> None:
    with pytest.raises(AclError, match="too many rules"):
        acl.with_rules(None, "u", ["on"] * 1025)
    many = acl.with_rules(None, "u", [f"~k{i}:*" for i in range(1000)])
    with pytest.raises(AclError, match="over 1024: use fewer, broader patterns"):
        acl.with_rules(many, "u", [f"&c{i}" for i in range(100)])


def test_channel_commands_are_exactly_the_commands_channels_of_reads() -> None:
    """channels_of reads channels only of CHANNEL_COMMANDS, and a command in it never gets
    a fast plan (whose check skips channels): a command that names channels but is missing
    from the set would escape its channel check. The set is Redis 7.0's: the commands
    whose channels ACL rules check (the unsubscribes are never refused)."""
    redis_checked = {b"publish", b"spublish", b"subscribe", b"ssubscribe", b"psubscribe"}
    assert redis_checked == acl.CHANNEL_COMMANDS
    names = {name.encode() for name in acl.universe().commands} | acl.CHANNEL_COMMANDS
    assert len(names) > 200  # every Redis command the ACL rules know
    naming = {n for n in names if channels_of([n, b"ch", b"other"])}
    assert naming == redis_checked
    assert {n for n in names if channels_of([n.upper(), b"ch"], n)} == redis_checked
    assert {n for n in names if acl.channels_named(n.decode())} == redis_checked


def test_a_rule_applied_after_checks_ran_is_what_later_checks_see() -> None:
    """The fast checks compiled for a user (per command: the key position and its pattern
    matcher) are forgotten when a rule changes that user, as the matchers are."""
    user = acl.with_rules(None, "app", ["on", "nopass", "~a:*", "+get"])
    assert user.denial([b"GET", b"a:1"]) is None  # compiles GET's check for ~a:*
    assert user.denial([b"GET", b"b:1"]) == ("key", "b:1")
    acl.apply_rule(user, "resetkeys")
    acl.apply_rule(user, "~b:*")
    assert user.denial([b"GET", b"b:1"]) is None
    assert user.denial([b"GET", b"a:1"]) == ("key", "a:1")
