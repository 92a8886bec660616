"""Lua scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (Redis 7.0), replicated.

A script is one logged call, applied by every replica: it runs inside the state machine,
atomically, against the same state, and so must do the same thing everywhere.

- Every run starts from a state exactly like a fresh Lua 5.1 state (lupa): nothing survives
  from one script to the next (no globals, no cached functions, no garbage), so a replica
  restored from a snapshot runs a script exactly as one that applied the whole log. Booting
  a state costs ~250 us, so each thread reuses one (`_LuaState`): every table a script can
  reach that outlives it is protected (rawset, setmetatable and table.insert/remove/sort
  refuse it; getmetatable never hands out what is behind a proxy), and between runs the
  state is settled (per-run values cleared, a full collection) and kept only if its heap is
  then exactly as large as after its boot; otherwise the next script gets a fresh one.
- No clock but the leader-stamped `db.now` (TIME inside a script); no io, os, package,
  debug, print or bytecode loading; math.random draws from `db.rng()`.
- A budget, identical on every replica: MAX_INSTRUCTIONS Lua instructions (a count hook)
  and MAX_MEMORY bytes of Lua heap (lupa's allocator limit; a fresh state allocates the same
  bytes in the same order everywhere). A script over the budget fails with BUDGET_EXHAUSTED.
- A script that fails (a Lua error, an uncaught redis.call error, the budget) changes
  nothing: its writes are rolled back through the state machine's undo record. Redis keeps
  the writes made before the error; we do not (nothing half-applied). A script that
  *returns* an error reply ({err=...}, redis.error_reply) has succeeded: its writes stay.
- Loaded scripts are entries of an internal database (SCRIPTS_DB, keys `\\x00rcdb\\xff` +
  sha1), so snapshots, digests and followers carry them; no user command can see them, and
  FLUSHALL keeps them (SCRIPT FLUSH drops them), as Redis does.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable
from typing import Any, Final

import structlog
from lupa import lua51
from raftcache.node import acl
from raftcache.node.auth import channels_of
from raftcache.node.keyspace.acl import read_stored
from raftcache.node.keyspace.args import parse_int
from raftcache.node.keyspace.db import DATABASES, DB_PREFIX, RESERVED_KEY, Db
from raftcache.node.keyspace.lua_libs import LuaLibs
from raftcache.node.keyspace.notify import run_command
from raftcache.node.keyspace.reply import (
    NULL_ARRAY,
    OK,
    Bool,
    CommandError,
    Error,
    Map,
    Pairs,
    ReplyT,
    SetReply,
    Status,
)
from raftcache.node.keyspace.table import COMMANDS, command, validate

_log = structlog.get_logger("raftcache.scripting")

SCRIPTS_DB: Final = 0xFF
"""The internal database that holds loaded scripts (outside 0-15: no command reaches it)."""
_SCRIPT_PREFIX: Final = DB_PREFIX + bytes((SCRIPTS_DB,))

MAX_INSTRUCTIONS: Final = 5_000_000
"""Lua VM instructions one script may run: about 0.05-0.1 s of Lua here (more on a loaded
machine). Every replica runs a script on its Raft thread, so the budget stays well under
the 0.3 s election timeout."""
MAX_MEMORY: Final = 64 << 20
"""Bytes of Lua heap one script may allocate at once."""
_HOOK_EVERY: Final = 1000
# Nesting of a returned table (Redis: "reached lua stack limit"): a reply may travel as a
# protobuf (forwarding, gRPC Exec, snapshots of dedup results), which parses 100 levels deep.
_MAX_DEPTH: Final = 40

NOSCRIPT: Final = "NOSCRIPT No matching script. Please use EVAL."
NOT_BUSY: Final = "NOTBUSY No scripts in execution right now."
BUDGET_EXHAUSTED: Final = (
    "ERR script killed by the execution budget: it ran over {what} ({limit}) and changed "
    "nothing; every replica runs a script to completion, so split the work into smaller "
    "scripts"
)
RO_WRITE: Final = "Write commands are not allowed from read-only scripts."
RO_FLAGGED: Final = "ERR Can not execute a script with write flag using *_ro command."
NOT_ALLOWED: Final = "This Redis command is not allowed from script"
UNKNOWN: Final = "Unknown Redis command called from script"
ARITY: Final = "Wrong number of args calling Redis command from script"
BAD_ARG: Final = "Lua redis lib command arguments must be strings or integers"

# Redis's NOSCRIPT flag (blocking, transactions, scripts themselves), and raftcache's own
# internal commands, which scripts must not reach either.
_REFUSED: Final = frozenset(
    b"blpop brpop brpoplpush blmove blmpop bzpopmin bzpopmax bzmpop eval evalsha eval_ro "
    b"evalsha_ro script fcall fcall_ro function multi exec discard watch unwatch subscribe "
    b"psubscribe unsubscribe punsubscribe ssubscribe sunsubscribe monitor wait auth hello "
    b"reset quit cluster".split()
)
_SCRIPT_FLAGS: Final = frozenset(
    ["no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"]
)


def sha1hex(body: bytes) -> bytes:
    return hashlib.sha1(body).hexdigest().encode()


def script_key(sha: bytes) -> bytes:
    """The internal key of a loaded script (sha1 in lower-case hex)."""
    return _SCRIPT_PREFIX + sha.lower()


def loaded(db: Db, sha: bytes) -> bytes | None:
    """The body of a loaded script, or None."""
    if len(sha) != 40:
        return None
    entry = db.sm._live(script_key(sha), db.now)
    return entry[0] if entry is not None and isinstance(entry[0], bytes) else None


def _store(db: Db, body: bytes) -> bytes:
    sha = sha1hex(body)
    key = script_key(sha)
    if db.sm._live(key, db.now) is None:
        db.sm._put(key, body, 0)
    return sha


# -- shebang and compiling ------------------------------------------------------------------


def shebang(body: bytes) -> tuple[frozenset[str] | None, int]:
    """(flags, length of the shebang line) of a script: flags None for a script without a
    shebang (Redis's compatibility mode); CommandError for a bad shebang."""
    if not body.startswith(b"#!"):
        return None, 0
    end = body.find(b"\n")
    if end < 0:
        raise CommandError("ERR Invalid script shebang")
    parts = body[:end].decode("utf-8", "replace").split()
    if parts[0] != "#!lua":
        raise CommandError(f"ERR Unexpected engine in script shebang: {parts[0]}")
    flags: set[str] = set()
    for part in parts[1:]:
        if not part.startswith("flags="):
            raise CommandError(f"ERR Unknown lua shebang option: {part}")
        for flag in filter(None, part[len("flags=") :].split(",")):
            if flag not in _SCRIPT_FLAGS:
                raise CommandError(f"ERR Unexpected flag in script shebang: {flag}")
            flags.add(flag)
    return frozenset(flags), end


_compiled_ok: dict[bytes, None] = {}  # sha1s that compiled (bounded; the front-end's check)


def check_compiles(body: bytes) -> None:
    """Refuse a script with a bad shebang or a syntax error before it is proposed."""
    sha = sha1hex(body)
    if sha in _compiled_ok:
        return
    _, skip = shebang(body)
    lua = lua51.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
    ok, err = lua.execute(_COMPILES, body[skip:])
    if not ok:
        raise CommandError(_compile_error(err))
    if len(_compiled_ok) >= 4096:
        _compiled_ok.clear()
    _compiled_ok[sha] = None


_COMPILES: Final = b"""
local f, err = loadstring(..., "@user_script")
return f ~= nil, err
"""


def _compile_error(err: Any) -> str:
    text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
    return f"ERR Error compiling script (new function): {text}"


# -- the Lua side ---------------------------------------------------------------------------

_BOOT: Final = rb"""
local py_call, py_call_packed, py_sha1hex, py_random, py_seed, py_killed, py_setresp,
      limit, every, py_libs = ...
local G = _G
local collect = collectgarbage
local newproxy = newproxy
local sethook, getinfo = debug.sethook, debug.getinfo
local type, tostring, error, rawget, select = type, tostring, error, rawget, select
local setmetatable, xpcall, loadstring, setfenv = setmetatable, xpcall, loadstring, setfenv
local READONLY = "Attempt to modify a readonly table"

-- Python objects a script may meet (an exception caught by pcall) share lupa's metatable,
-- which the callbacks above use too: getmetatable must not hand it out.
getmetatable(G.python.none).__metatable = false

-- Nothing that reaches files, the OS, modules, finalisers, the hook, other environments or
-- Python (lupa's `python` table).
for _, name in ipairs({"io", "os", "package", "debug", "require", "module", "dofile",
                       "loadfile", "load", "print", "getfenv", "setfenv", "newproxy",
                       "gcinfo", "python"}) do
  G[name] = nil
end

-- The state is reused by the next script (`settle` below), and a script over MAX_MEMORY fails
-- on every replica or on none, so when the collector runs must be the same everywhere. It
-- collects stop-the-world (a step multiplier of 0 makes each step a whole cycle), once the
-- heap has doubled since the last cycle: a point set by the run's own allocations, from a
-- state that `settle` left exactly as a fresh one, not by how far an incremental cycle got.
collect("setstepmul", 0)

local steps = 0
local hook
hook = function()
  steps = steps + 1
  if steps > limit then
    py_killed()
    sethook(hook, "", 1)  -- from now on every instruction fails: pcall cannot swallow it
    error("script killed by the execution budget", 0)
  end
end

-- C functions run no Lua instructions: the ones whose work grows with their input or output
-- are charged one instruction per 16 bytes, so a loop of string.rep cannot escape the budget.
local function charge(bytes)
  steps = steps + bytes / (16 * every)
  if steps > limit then hook() end
end
local s_rep, s_format, t_concat = string.rep, string.format, table.concat
string.rep = function(s, n, ...)
  if type(n) == "number" and n > 0 then charge((tonumber(#tostring(s)) or 0) * n) end
  return s_rep(s, n, ...)
end
for _, name in ipairs({"find", "match", "gmatch", "gsub", "byte", "upper", "lower", "reverse",
                       "sub"}) do
  local f = string[name]
  string[name] = function(s, ...)
    if type(s) == "string" then charge(#s) end
    return f(s, ...)
  end
end
string.format = function(...)
  local r = s_format(...)
  charge(#r)
  return r
end
table.concat = function(...)
  local r = t_concat(...)
  charge(#r)
  return r
end

-- Every table a script can reach that outlives it is protected: read through a proxy whose
-- metatable (what getmetatable shows) hands out the proxy again, never the table behind it,
-- and refused by every raw writer (rawset, setmetatable, table.insert/remove/sort).
local protected = setmetatable({}, {__mode = "k"})
local function refuse() error(READONLY, 2) end
local function view(index)
  local v = setmetatable({}, {__index = {__index = index, __newindex = refuse},
                              __newindex = refuse, __metatable = false})
  protected[v] = true
  return v
end
local function readonly(t)
  local proxy = {}
  setmetatable(proxy, {__index = t, __newindex = refuse, __metatable = view(proxy)})
  protected[proxy] = true
  return proxy
end
local function guarded(f)
  return function(t, ...)
    if protected[t] then error(READONLY, 2) end
    return f(t, ...)
  end
end

local lib = {}
for k, v in pairs(G) do lib[k] = v end

lib.setmetatable = guarded(setmetatable)
lib.rawset = guarded(rawset)
lib.collectgarbage = function(opt, ...)
  if opt == "setstepmul" then return 0 end  -- stays stop-the-world (above)
  return collect(opt, ...)
end
-- KEYS and ARGV are set for each run: their slots exist from the start (a state must
-- look the same before and after a run), holding false between runs.
lib.KEYS, lib.ARGV = false, false

-- tostring of a table or function shows no address: addresses differ between replicas.
-- Numbered from 1 in each run.
local ids, next_id = nil, 0
lib.tostring = function(v)
  local kind = type(v)
  if (kind == "table" or kind == "function" or kind == "thread" or kind == "userdata")
     and not (getmetatable(v) and type(getmetatable(v)) == "table"
              and rawget(getmetatable(v), "__tostring")) then
    if not ids then ids = setmetatable({}, {__mode = "k"}) end
    local id = ids[v]
    if not id then next_id = next_id + 1; id = next_id; ids[v] = id end
    return kind .. ": #" .. id
  end
  return tostring(v)
end

local env
lib.loadstring = function(s, name)
  if type(s) == "string" and s:byte(1) == 27 then
    return nil, "binary chunks are not allowed"
  end
  local f, err = loadstring(s, name)
  if f then setfenv(f, env) end
  return f, err
end

-- Coroutines run on their own Lua thread: give each the budget hook too.
local co_create, co_wrap = coroutine.create, coroutine.wrap
local function hooked(f)
  return function(...) sethook(hook, "", every); return f(...) end
end
local co = {}
for k, v in pairs(coroutine) do co[k] = v end
co.create = function(f) return co_create(hooked(f)) end
co.wrap = function(f) return co_wrap(hooked(f)) end
lib.coroutine = readonly(co)

local m = {}
for k, v in pairs(math) do m[k] = v end
local floor = math.floor
-- Lua 5.1's math.random contract, drawing from the replicated seed (never the C rand()).
m.random = function(...)
  local n, r = select("#", ...), py_random()
  if n == 0 then return r end
  local l, u = 1, ...
  if n == 2 then l, u = ... elseif n > 2 then error("wrong number of arguments", 2) end
  l, u = floor(tonumber(l) or error("bad argument #1 to 'random' (number expected)", 2)),
         floor(tonumber(u) or error("bad argument #2 to 'random' (number expected)", 2))
  if l > u then error("bad argument #" .. n .. " to 'random' (interval is empty)", 2) end
  return floor(r * (u - l + 1)) + l
end
m.randomseed = function(x) py_seed(tonumber(x) or 0) end
lib.math = readonly(m)
lib.string = readonly(string)
local tb = {}
for k, v in pairs(table) do tb[k] = v end
tb.insert, tb.remove, tb.sort = guarded(table.insert), guarded(table.remove), guarded(table.sort)
lib.table = readonly(tb)
-- A string's methods come from the string library: getmetatable("") shows its proxy.
getmetatable("").__metatable = view(lib.string)

local function err_table(msg) return {err = msg} end
local function fail(msg) error({err = msg}, 0) end
local function call(protect, ...)
  if select("#", ...) == 0 then
    local e = err_table("ERR Please specify at least one argument for this redis lib call")
    if protect then return e end
    error(e, 0)
  end
  local ok, reply
  local n = select("#", ...)
  if n > 64 then ok, reply = py_call_packed({...}, n)  -- lupa passes few arguments well
  else ok, reply = py_call(...) end
  if ok or protect then return reply end
  error(reply, 0)
end
local redis = {
  call = function(...) return call(false, ...) end,
  pcall = function(...) return call(true, ...) end,
  sha1hex = function(...)
    if select("#", ...) ~= 1 then fail("ERR wrong number of arguments") end
    local v = ...  -- as Redis's lua_tolstring: a number is hashed as text, other values as ""
    if type(v) == "number" then v = tostring(v) elseif type(v) ~= "string" then v = "" end
    return py_sha1hex(v)
  end,
  error_reply = function(...)
    local s = ...
    if select("#", ...) ~= 1 or type(s) ~= "string" then
      return err_table("ERR wrong number or type of arguments")
    end
    if s:sub(1, 1) ~= "-" then s = "-" .. s end
    local code, msg
    local space = s:find(" ", 1, true)
    if space then code, msg = s:sub(2, space - 1), s:sub(space + 1)
    else code, msg = "ERR", s:sub(2) end
    msg = msg:gsub("[\r\n]+$", "")
    return err_table(code .. " " .. msg)
  end,
  status_reply = function(...)
    local s = ...
    if select("#", ...) ~= 1 or type(s) ~= "string" then
      return err_table("ERR wrong number or type of arguments")
    end
    return {ok = s}
  end,
  log = function(...)
    if select("#", ...) < 2 then fail("ERR redis.log() requires two arguments or more.") end
    if type((...)) ~= "number" then fail("ERR First argument must be a number (log level).") end
  end,
  setresp = function(...)
    local n = ...
    if select("#", ...) ~= 1 then fail("ERR redis.setresp() requires one argument.") end
    if n ~= 2 and n ~= 3 then fail("ERR RESP version must be 2 or 3.") end
    py_setresp(n)
  end,
  set_repl = function(...)
    local n = ...
    if select("#", ...) ~= 1 then fail("ERR redis.set_repl() requires one argument.") end
    if type(n) ~= "number" or n < 0 or n > 3 then
      fail("ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.")
    end
  end,
  replicate_commands = function() return true end,
  breakpoint = function() return false end,
  debug = function() end,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REPL_NONE = 0, REPL_AOF = 1, REPL_SLAVE = 2, REPL_REPLICA = 2, REPL_ALL = 3,
  REDIS_VERSION = "7.0.15", REDIS_VERSION_NUM = 0x0007000f,
}
lib.redis = readonly(redis)

-- cjson, cmsgpack and bit (lua_libs.py): Python returns (ok, results...) or (false, message);
-- the bytes they handle are charged like the string functions written in C.
local function result(ok, cost, ...)
  charge(cost * 16)
  if not ok then error(tostring((...)), 3) end  -- a Lua string, not a Python str object
  local first = ...
  if type(first) == "string" then charge(#first) end
  return ...
end
local function charged(s) if type(s) == "string" then charge(#s) end return s end
local null = newproxy(false)
local cjson = {null = null}
cjson.encode = function(...) return result(py_libs.json_encode(...)) end
cjson.decode = function(s) return result(py_libs.json_decode(charged(s), null)) end
for _, name in ipairs({"encode_max_depth", "decode_max_depth", "encode_invalid_numbers",
                       "decode_invalid_numbers", "encode_keep_buffer",
                       "encode_number_precision", "encode_sparse_array"}) do
  cjson[name] = function(v) return result(py_libs.json_setting(name, v)) end
end
lib.cjson = readonly(cjson)
local cmsgpack = {}
cmsgpack.pack = function(...) return result(py_libs.mp_pack(...)) end
cmsgpack.unpack = function(s) return result(py_libs.mp_unpack(charged(s), 0, 0, false)) end
cmsgpack.unpack_one = function(s, offset)
  return result(py_libs.mp_unpack(charged(s), 1, offset or 0, true))
end
cmsgpack.unpack_limit = function(s, limit, offset)
  return result(py_libs.mp_unpack(charged(s), limit or 0, offset or 0, true))
end
lib.cmsgpack = readonly(cmsgpack)
local bit = {}
for _, name in ipairs({"tobit", "tohex", "bnot", "band", "bor", "bxor", "lshift", "rshift",
                       "arshift", "rol", "ror", "bswap"}) do
  bit[name] = function(...) return result(py_libs.bit(name, ...)) end
end
lib.bit = readonly(bit)

-- Redis 7 functions: a library's body runs once with only `redis.register_function` (and
-- log and the version) in sight; the functions it registers later see the full globals.
local loading, registered = false, nil
local function nonexistent(k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 3)
end
local function reg_fail(msg) error({err = "ERR " .. msg}, 0) end
local FLAGS = {["no-writes"] = true, ["allow-oom"] = true, ["allow-stale"] = true,
               ["no-cluster"] = true, ["allow-cross-slot-keys"] = true}
local function named_args(t)
  local name, desc, fn, flags = nil, nil, nil, {}
  if type(t) ~= "table" then
    reg_fail("calling redis.register_function with a single argument is only applicable to "
             .. "Lua table (representing named arguments).")
  end
  for k, v in pairs(t) do
    if type(k) ~= "string" and type(k) ~= "number" then
      reg_fail("named argument key given to redis.register_function is not a string")
    end
    local key = string.lower(tostring(k))
    if key == "function_name" then
      if type(v) ~= "string" and type(v) ~= "number" then
        reg_fail("function_name argument given to redis.register_function must be a string")
      end
      name = tostring(v)
    elseif key == "description" then
      if type(v) ~= "string" and type(v) ~= "number" then
        reg_fail("description argument given to redis.register_function must be a string")
      end
      desc = tostring(v)
    elseif key == "callback" then
      if type(v) ~= "function" then
        reg_fail("callback argument given to redis.register_function must be a function")
      end
      fn = v
    elseif key == "flags" then
      if type(v) ~= "table" then
        reg_fail("flags argument to redis.register_function must be a table representing "
                 .. "function flags")
      end
      local i = 1
      while v[i] ~= nil do
        local flag = v[i]
        if type(flag) ~= "string" or not FLAGS[string.lower(flag)] then
          reg_fail("unknown flag given")
        end
        flags[#flags + 1] = string.lower(flag)
        i = i + 1
      end
    else
      reg_fail("unknown argument given to redis.register_function")
    end
  end
  if not name then reg_fail("redis.register_function must get a function name argument") end
  if not fn then reg_fail("redis.register_function must get a callback argument") end
  return name, desc, fn, flags
end
local function register_function(...)
  if not loading then
    reg_fail("redis.register_function can only be called on FUNCTION LOAD command")
  end
  local n = select("#", ...)
  if n < 1 or n > 2 then reg_fail("wrong number of arguments to redis.register_function") end
  local name, desc, fn, flags
  if n == 1 then
    name, desc, fn, flags = named_args((...))
  else
    name, fn = ...
    if type(name) ~= "string" and type(name) ~= "number" then
      reg_fail("first argument to redis.register_function must be a string")
    end
    if type(fn) ~= "function" then
      reg_fail("second argument to redis.register_function must be a function")
    end
    name, flags = tostring(name), {}
  end
  if not string.find(name, "^[%w_]+$") then
    reg_fail("Library names can only contain letters, numbers, or underscores(_) and must be "
             .. "at least one character long")
  end
  local lower = string.lower(name)
  if registered.seen[lower] then reg_fail("Function already exists in the library") end
  registered.seen[lower] = true
  registered[#registered + 1] = {name, desc or false, flags, fn}
end
local load_api_fields = {register_function = register_function, log = redis.log,
                         REDIS_VERSION = redis.REDIS_VERSION,
                         REDIS_VERSION_NUM = redis.REDIS_VERSION_NUM}
for _, level in ipairs({"LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING"}) do
  load_api_fields[level] = redis[level]
end
local load_api_meta = {
  __index = function(_, k)
    local v = load_api_fields[k]
    if v == nil then nonexistent(k) end
    return v
  end,
  __newindex = refuse,
  __metatable = false,
}
local load_api = setmetatable({}, load_api_meta)
protected[load_api] = true

-- The globals scripts see: read-only, and reading an undeclared one is an error.
env = {}
local env_meta = {
  __index = function(_, k)
    if loading then
      if k == "redis" then return load_api end
      nonexistent(k)
    end
    if k == "_G" then return env end
    local v = lib[k]
    if v == nil or (v == false and (k == "KEYS" or k == "ARGV")) then
      error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
    end
    return v
  end,
  __newindex = refuse,
}
env_meta.__metatable = view(env_meta.__index)
setmetatable(env, env_meta)
protected[env] = true

-- Redis's error shape: a table {err = "CODE message"}, with the script line it came from
-- (none after `return redis.call(...)`: a tail call into our Lua wrapper drops the frame).
local function handler(e)
  if type(e) ~= "table" then
    local text = tostring(e)  -- a Python exception's text; never an address:
    if type(e) ~= "string" and text:find("^%a+: 0x") then text = lib.tostring(e) end
    e = {err = "ERR " .. text}
  end
  local level = 2
  while true do
    local info = getinfo(level, "Sl")
    if not info then break end
    if (info.source == "@user_script" or info.source == "@user_function")
       and info.currentline > 0 then
      e.source, e.line = info.source, info.currentline
      break
    end
    level = level + 1
  end
  return e
end

local function compile(body)
  local f, err = loadstring(body, "@user_script")
  if not f then return nil, err end
  setfenv(f, env)
  return f, nil
end

local function run(f, keys, argv)
  lib.KEYS, lib.ARGV = keys, argv
  sethook(hook, "", every)
  local ok, result = xpcall(f, handler)
  sethook()
  return ok, result
end

-- A library's body: (true, {{name, description or false, flags, callback}, ...}) or
-- (false, "compile" or "load", error).
local function load_library(body)
  local f, err = loadstring(body, "@user_function")
  if not f then return false, "compile", err end
  setfenv(f, env)
  registered = {seen = {}}
  loading = true
  sethook(hook, "", every)
  local ok, e = pcall(f)
  sethook()
  loading = false
  local regs = registered
  registered = nil
  if not ok then return false, "load", e end
  return true, regs
end

local function call_function(fn, keys, argv)
  sethook(hook, "", every)
  local ok, result = xpcall(function() return fn(keys, argv) end, handler)
  sethook()
  return ok, result
end

-- Between two runs: what a run set is cleared, and the heap collected, so that the next
-- run starts from the state a fresh one has (the caller compares the heap's size). Lua's
-- concatenation buffer grows to the longest concatenation and each collection halves it
-- down to 64 bytes: one 64-byte concatenation after the collection brings it to 64 bytes
-- exactly (a buffer over 128 bytes needs one more settle per doubling).
local pad_a, pad_b = s_rep("p", 32), s_rep("q", 32)
-- The string table doubles when it holds more strings than its size, and a collection
-- halves it while it holds under a quarter: grown once here, it settles at the largest
-- size the boot's strings keep, so a run that interns a few thousand strings leaves it
-- as it found it.
do
  local grow = {}
  for i = 1, 4096 do grow[i] = "\0" .. i end
end
local function settle()
  sethook()
  steps, ids, next_id = 0, nil, 0
  lib.KEYS, lib.ARGV = false, false
  loading, registered = false, nil
  collect("setpause", 200)  -- Lua's default (a script may have changed it)
  collect("collect")  -- also restarts a collector a script stopped
  return pad_a .. pad_b
end

return compile, run, sethook, rawget, load_library, call_function, settle
"""


_BYTECODE: list[bytes] = []


def _boot_bytecode() -> bytes:
    """_BOOT compiled once per process (loading bytecode skips the parser on every run)."""
    if not _BYTECODE:
        lua = lua51.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
        _BYTECODE.append(lua.eval("function(s) return string.dump(loadstring(s)) end")(_BOOT))
    return _BYTECODE[0]


_SCRIPT_DENIED: Final = {
    "command": "The user executing the script can't run this command or subcommand",
    "key": "The user executing the script can't access at least one of the keys mentioned in "
    "the command arguments",
    "channel": "The user executing the script can't publish to the channel mentioned in the "
    "command",
}


def _runs_as(db: Db) -> acl.User | None:
    """The user whose permissions a script's calls are checked against, from the users as
    replicated at this entry (the same on every replica); None when there is nothing to
    check. A user deleted meanwhile may run nothing."""
    if not db.user:
        return None
    text = read_stored(db.sm)[0]
    users = acl.compiled(text.decode("latin-1") if text is not None else acl.DEFAULT_TEXT)
    user = users.users.get(db.user) or acl.new_user(db.user)
    return None if user.unrestricted else user


class _Caller:
    """The script a reused state's Lua callbacks reach (None between runs). The state keeps
    this, not itself, in its callbacks, so that a discarded state is freed at once."""

    __slots__ = ("script",)

    def __init__(self) -> None:
        self.script: _Script | None = None

    def call(self, *args: Any) -> tuple[bool, Any]:
        return self.script.call(*args)  # type: ignore[union-attr]

    def call_packed(self, args: Any, n: int) -> tuple[bool, Any]:
        return self.script.call_packed(args, n)  # type: ignore[union-attr]

    def random(self) -> float:
        return self.script.random()  # type: ignore[union-attr]

    def seed(self, value: int | float) -> None:
        self.script.seed(value)  # type: ignore[union-attr]

    def kill(self) -> None:
        self.script.kill()  # type: ignore[union-attr]

    def setresp(self, n: int) -> None:
        self.script.setresp(n)  # type: ignore[union-attr]


class _LuaState:
    """A booted Lua state, reused by one thread's consecutive scripts (module docstring).

    Booting one costs ~250 us against ~10 us to compile and run a short script. A state is
    reused only when, after `settle` (per-run values cleared, a full collection), its heap
    is exactly as large as right after its boot: every table a script can reach is
    protected, so a script that left anything behind (or grew the string table, the
    registry or a stack) shows in the size, and the next script gets a fresh state."""

    def __init__(self) -> None:
        self.caller = _Caller()
        self.lua = lua51.LuaRuntime(
            encoding=None,
            unpack_returned_tuples=True,
            register_eval=False,
            register_builtins=False,
            max_memory=MAX_MEMORY,
            attribute_filter=_no_attributes,
        )
        self.table_from = self.lua.table_from
        self.libs = LuaLibs(self.table_from)
        boot = self.lua.globals()[b"loadstring"](_boot_bytecode())
        caller = self.caller
        (
            self.compile,
            self.run,
            self.unhook,
            self.rawget,
            self.load_library,
            self.call_function,
            self.settle,
        ) = boot(
            caller.call,
            caller.call_packed,
            sha1hex,
            caller.random,
            caller.seed,
            caller.kill,
            caller.setresp,
            MAX_INSTRUCTIONS // _HOOK_EVERY,
            _HOOK_EVERY,
            self.table_from(self.libs.functions()),
        )
        del boot  # the boot chunk is garbage once run (a reference would keep it alive)
        self.clean_bytes = self._settled_size()

    def _settled_size(self, tries: int = 64, target: int = -1) -> int:
        """The heap's size after settling until it reaches `target` or no longer shrinks
        (each full collection halves an oversized string table or buffer once more), at
        most `tries` times."""
        size = -1
        for _ in range(tries):
            self.settle()
            now = int(self.lua.get_memory_used(total=True))
            if now == target or (size >= 0 and now >= size):
                return now
            size = now
        return size

    def clean(self) -> bool:
        """Settle; whether the state is now as it was after its boot."""
        try:
            return self._settled_size(SETTLE_TRIES, self.clean_bytes) == self.clean_bytes
        except Exception:  # a finaliser that fails: this state is not to be trusted
            _log.warning("a used Lua state failed to settle; booting a new one", exc_info=True)
            return False

    def begin(self, script: _Script) -> None:
        self.caller.script = script
        self.libs.reset()
        self.lua.set_max_memory(self.clean_bytes + MAX_MEMORY, total=True)

    def end(self) -> None:
        self.unhook()  # a C function: runs no Lua instruction (a killed run's hook fails all)
        self.caller.script = None


SETTLE_TRIES: Final = 6
"""Settles, while each shrinks the heap, before a state that is not back to its boot size
is replaced (a long concatenation takes one per two doublings of its length over 128
bytes; five settles cost about what a new state does)."""

_local = threading.local()
_BOOTS = [0]  # states booted in this process (tests check reuse)


def _acquire(script: _Script) -> _LuaState:
    """This thread's clean state for `script` (a fresh one when the last is not clean, or
    is in use: a script never runs inside another, but a fresh state costs only time)."""
    state: _LuaState | None = getattr(_local, "state", None)
    if state is not None and state.caller.script is not None:
        state = _boot()  # in use: a throwaway one
    elif state is None or not state.clean():
        state = _local.state = _boot()
    state.begin(script)
    return state


def _boot() -> _LuaState:
    _BOOTS[0] += 1
    return _LuaState()


class _Script:
    """One run of one script: this thread's Lua state (clean, as a fresh one) and the Db it
    calls commands on. `close` hands the state back."""

    def __init__(self, db: Db, sha: bytes) -> None:
        self.db = db
        self.sha = sha.decode()
        self.resp = 2
        self.killed = False
        self.no_writes = False
        self.bug: BaseException | None = None
        self.user = _runs_as(db)  # None: no checks
        self.rand = db.rng(b"lua")
        self.state = state = _acquire(self)
        self.lua = state.lua
        self.table_from = state.table_from
        self.compile = state.compile
        self.run = state.run
        self.unhook = state.unhook
        self.rawget = state.rawget
        self.load_library = state.load_library
        self.call_function = state.call_function

    def close(self) -> None:
        self.state.end()

    # -- callbacks from Lua (they never raise: a Python error would be a Lua error) ---------

    def kill(self) -> None:
        self.killed = True

    def setresp(self, n: int) -> None:
        self.resp = int(n)

    def random(self) -> float:
        return float(self.rand.random())

    def seed(self, value: int | float) -> None:
        self.rand = random.Random(repr(float(value)))

    def call_packed(self, args: Any, n: int) -> tuple[bool, Any]:
        """redis.call with many arguments, passed as one Lua table {...}."""
        get = self.rawget
        return self.call(*(get(args, i) for i in range(1, int(n) + 1)))

    def call(self, *args: Any) -> tuple[bool, Any]:
        """redis.call/pcall: (True, reply as Lua) or (False, {err=...})."""
        try:
            argv = []
            for arg in args:
                if isinstance(arg, bytes):
                    argv.append(arg)
                elif isinstance(arg, int | float) and not isinstance(arg, bool):
                    argv.append(b"%.17g" % arg)
                else:
                    return False, self._error(BAD_ARG)
            reply = self._command(argv)
            if isinstance(reply, Error):
                return False, self._error(str(reply))
            return True, self.to_lua(reply, 0)
        except BaseException as exc:  # a handler bug: re-raised after the script (loudly)
            if self.bug is None and not _is_lua_memory(exc):
                self.bug = exc
            raise

    def _error(self, text: str) -> Any:
        if not text.startswith(("ERR ", "WRONGTYPE ", "OOM ", "NOSCRIPT ", "BUSY")):
            code = text.split(" ", 1)[0]
            if not code.isupper():
                text = "ERR " + text
        return self.table_from({b"err": text.encode()})

    def _command(self, argv: list[bytes]) -> ReplyT:
        name = argv[0].lower()
        spec = COMMANDS.get(name)
        if name in _REFUSED or (spec is not None and "internal" in spec.flags):
            return Error(f"ERR {NOT_ALLOWED}")
        if name in (b"xread", b"xreadgroup") and any(a.upper() == b"BLOCK" for a in argv):
            return Error(
                f"ERR {name.decode()} command is not allowed with BLOCK option from scripts"
            )
        if name in _SCRIPT_LOCAL:
            return _SCRIPT_LOCAL[name](self, argv)
        if spec is None:
            return Error(f"ERR {UNKNOWN}")
        n = len(argv)
        if (spec.arity > 0 and n != spec.arity) or (spec.arity < 0 and n < -spec.arity):
            return Error(f"ERR {ARITY}")
        if spec.write and not self.db.write:
            return Error(f"ERR {RO_WRITE}")
        if spec.write and self.no_writes:
            return Error(f"ERR {RO_WRITE}")
        if self.user is not None:
            denied = self.user.denial(argv, channels_of(argv))
            if denied is not None:
                return Error(f"ERR {_SCRIPT_DENIED[denied[0]]}")
        try:
            validate(argv)
            return run_command(spec, self.db, argv)
        except CommandError as exc:
            return Error(exc.text)

    # -- conversions -----------------------------------------------------------------------

    def to_lua(self, reply: ReplyT, depth: int) -> Any:
        """A command's reply as redis.call returns it (RESP2 or RESP3 rules)."""
        resp3 = self.resp == 3
        if isinstance(reply, bytes | int) and not isinstance(reply, Bool):
            return reply
        if isinstance(reply, Bool):
            return bool(reply) if resp3 else int(reply)
        if reply is None or reply is NULL_ARRAY:
            return None if resp3 else False
        if isinstance(reply, Status):
            return self.table_from({b"ok": str(reply).encode()})
        if isinstance(reply, Error):
            return self.table_from({b"err": str(reply).encode()})
        if isinstance(reply, float):
            if resp3:
                return self.table_from({b"double": reply})
            return b"%.17g" % reply  # as RESP2 sends a double
        if isinstance(reply, Map):
            if resp3:
                pairs = {
                    self.to_lua(reply[i], depth + 1): self.to_lua(reply[i + 1], depth + 1)
                    for i in range(0, len(reply) - 1, 2)
                }
                return self.table_from({b"map": self.table_from(pairs)})
            return self.table_from([self.to_lua(r, depth + 1) for r in reply])
        if isinstance(reply, SetReply) and resp3:
            members = {self.to_lua(r, depth + 1): True for r in reply}
            return self.table_from({b"set": self.table_from(members)})
        if isinstance(reply, Pairs) and not resp3:
            flat = [self.to_lua(x, depth + 1) for pair in reply for x in pair]
            return self.table_from(flat)
        if isinstance(reply, list):
            return self.table_from([self.to_lua(r, depth + 1) for r in reply])
        return False

    def to_reply(self, value: Any, depth: int = 0) -> ReplyT:
        """A script's Lua result as a Redis reply (Redis's luaReplyToRedisReply)."""
        if depth > _MAX_DEPTH:
            return Error("ERR reached lua stack limit")
        if isinstance(value, bytes):
            return value
        if isinstance(value, bool):
            if self.resp == 3:
                return Bool(value)
            return 1 if value else None
        if isinstance(value, int | float):
            return _truncate(value)
        if lua51.lua_type(value) != "table":
            return None
        get = self.rawget
        err = get(value, b"err")
        if isinstance(err, bytes):
            return Error(err.decode("utf-8", "replace"))
        ok = get(value, b"ok")
        if isinstance(ok, bytes):
            return Status(ok.decode("utf-8", "replace").replace("\r", " ").replace("\n", " "))
        double = get(value, b"double")
        if isinstance(double, int | float) and not isinstance(double, bool):
            return float(double)
        for field, build in ((b"map", Map), (b"set", SetReply)):
            inner = get(value, field)
            if inner is not None and lua51.lua_type(inner) == "table":
                out = build()
                for k, v in inner.items():
                    out.append(self.to_reply(k, depth + 1))
                    if build is Map:
                        out.append(self.to_reply(v, depth + 1))
                return out
        items: list[ReplyT] = []
        i = 1
        while True:
            item = get(value, i)
            if item is None:
                return items
            items.append(self.to_reply(item, depth + 1))
            i += 1

    # -- running ---------------------------------------------------------------------------

    def execute(self, body: bytes, keys: list[bytes], args: list[bytes]) -> tuple[ReplyT, bool]:
        """(reply, failed): failed when the script raised or ran out of budget."""
        flags, skip = shebang(body)
        if flags is not None and "no-writes" in flags:
            self.no_writes = True

        def start() -> tuple[Any, Error | None]:
            fn, err = self.compile(body[skip:])
            if fn is None:
                return None, Error(_compile_error(err))
            return self.run(fn, self.table_from(keys), self.table_from(args)), None

        return self._finish(start)

    def registrations(self, code: bytes) -> list[tuple[bytes, bytes | None, list[str], Any]]:
        """Run a library's body: [(name, description, flags, callback)]; CommandError with
        Redis's FUNCTION LOAD text when it does not compile, fails or registers nothing."""
        try:
            ok, *rest = self.load_library(code)
        except lua51.LuaError as exc:
            self.unhook()
            if self.bug is not None:
                raise self.bug from exc
            raise CommandError(self._load_failure(exc)) from None
        if self.bug is not None:
            raise self.bug
        if not ok:
            stage, err = rest
            if stage == b"compile":
                text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
                raise CommandError(f"ERR Error compiling function: {text}")
            raise CommandError(self._load_failure(err))
        get, regs = self.rawget, rest[0]
        out = []
        for i in range(1, 1 << 30):
            reg = get(regs, i)
            if reg is None:
                break
            flags_t, flags = get(reg, 3), []
            for j in range(1, 1 << 30):
                flag = get(flags_t, j)
                if flag is None:
                    break
                flags.append(flag.decode())
            desc = get(reg, 2)
            out.append((get(reg, 1), desc if isinstance(desc, bytes) else None, flags, get(reg, 4)))
        if not out:
            raise CommandError("ERR No functions registered")
        return out

    def _load_failure(self, err: Any) -> str:
        if self.killed:
            return (
                "ERR FUNCTION LOAD timeout: the library's body ran over the execution budget "
                f"({MAX_INSTRUCTIONS} Lua instructions)"
            )
        if _is_lua_memory(err) or err == b"not enough memory":
            return (
                f"ERR Error registering functions: over the Lua memory budget ({MAX_MEMORY} bytes)"
            )
        msg = self.rawget(err, b"err") if lua51.lua_type(err) == "table" else None
        if isinstance(msg, bytes):
            text = msg.decode("utf-8", "replace")
        else:
            raw = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
            text = "ERR " + raw
        return f"ERR Error registering functions: {text}"

    def execute_function(
        self, code: bytes, name: bytes, keys: list[bytes], args: list[bytes]
    ) -> tuple[ReplyT, bool]:
        """Load a library into this fresh state and call its function `name`."""

        def start() -> tuple[Any, Error | None]:
            try:
                regs = self.registrations(code)
            except CommandError as exc:
                return None, Error(exc.text)
            wanted = name.lower()
            fn = next((r[3] for r in regs if r[0].lower() == wanted), None)
            if fn is None:
                return None, Error("ERR Function not found")
            return self.call_function(fn, self.table_from(keys), self.table_from(args)), None

        return self._finish(start)

    def _finish(self, start: Callable[[], tuple[Any, Error | None]]) -> tuple[ReplyT, bool]:
        try:
            outcome, refused = start()
            if refused is not None:
                return refused, True
            ok, result = outcome
        except lua51.LuaError as exc:  # out of memory, or the budget hit outside xpcall
            self.unhook()
            if self.bug is not None:
                raise self.bug from exc
            if self.killed:
                return _budget("Lua instructions", str(MAX_INSTRUCTIONS)), True
            if isinstance(exc, lua51.LuaMemoryError):
                return _budget("Lua memory", f"{MAX_MEMORY} bytes"), True
            return Error(f"ERR Error running script {self.sha}, {exc!s:.100}"), True
        if self.bug is not None:
            raise self.bug
        if self.killed:
            return _budget("Lua instructions", str(MAX_INSTRUCTIONS)), True
        if not ok:
            return self._failure(result), True
        try:
            return self.to_reply(result), False
        except lua51.LuaMemoryError:
            return _budget("Lua memory", f"{MAX_MEMORY} bytes"), True

    def _failure(self, err: Any) -> Error:
        if err == b"not enough memory" or _is_lua_memory(err):
            return _budget("Lua memory", f"{MAX_MEMORY} bytes")
        if isinstance(err, bytes):  # an error raised in the handler itself
            return Error("ERR " + err.decode("utf-8", "replace"))
        if lua51.lua_type(err) != "table":
            return Error(f"ERR Error running script {self.sha}, {err!s:.100}")
        get = self.rawget
        msg = get(err, b"err")
        text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else "ERR unknown error"
        line, source = get(err, b"line"), get(err, b"source")
        if line is not None and isinstance(source, bytes):
            text += f" script: {self.sha}, on {source.decode()}:{_truncate(line)}."
        return Error(text)


def _no_attributes(obj: Any, name: Any, setting: bool) -> Any:
    raise AttributeError("scripts cannot reach Python objects")


def _is_lua_memory(exc: object) -> bool:
    return isinstance(exc, lua51.LuaMemoryError | MemoryError)


def _budget(what: str, limit: str) -> Error:
    return Error(BUDGET_EXHAUSTED.format(what=what, limit=limit))


def _truncate(n: int | float) -> int:
    """Lua number -> Redis integer, as C's (long long) cast does it (truncation)."""
    if isinstance(n, int):
        return max(-(2**63), min(n, 2**63 - 1))
    if n != n or n in (float("inf"), float("-inf")):
        return -(2**63)
    return max(-(2**63), min(int(n), 2**63 - 1))


# -- commands a script can run that are not table commands -----------------------------------


def _select(run: _Script, argv: list[bytes]) -> ReplyT:
    if len(argv) != 2:
        return Error(f"ERR {ARITY}")
    try:
        n = parse_int(argv[1])
    except CommandError as exc:
        return Error(exc.text)
    if not 0 <= n < DATABASES:
        return Error("ERR DB index is out of range")
    run.db = Db(run.db.sm, n, run.db.now, run.db.write)
    return OK


def _time(run: _Script, argv: list[bytes]) -> ReplyT:
    if len(argv) != 1:
        return Error(f"ERR {ARITY}")
    now = run.db.now  # the leader-stamped cluster time: the same on every replica
    return [str(now // 1000).encode(), str(now % 1000 * 1000).encode()]


def _ping(run: _Script, argv: list[bytes]) -> ReplyT:
    if len(argv) > 2:
        return Error(f"ERR {ARITY}")
    return Status("PONG") if len(argv) == 1 else argv[1]


def _echo(run: _Script, argv: list[bytes]) -> ReplyT:
    return argv[1] if len(argv) == 2 else Error(f"ERR {ARITY}")


_SCRIPT_LOCAL: dict[bytes, Callable[[_Script, list[bytes]], ReplyT]] = {
    b"select": _select,
    b"time": _time,
    b"ping": _ping,
    b"echo": _echo,
}


# -- running a script atomically ------------------------------------------------------------


def _numkeys(argv: list[bytes]) -> int:
    try:
        n = parse_int(argv[2])
    except CommandError:
        raise CommandError("ERR value is not an integer or out of range") from None
    if n > len(argv) - 3:
        raise CommandError("ERR Number of keys can't be greater than number of args")
    if n < 0:
        raise CommandError("ERR Number of keys can't be negative")
    for key in argv[3 : 3 + n]:
        if key.startswith(DB_PREFIX):
            raise CommandError(RESERVED_KEY)
    return n


def _run(db: Db, body: bytes, sha: bytes, argv: list[bytes], read_only: bool) -> ReplyT:
    n = _numkeys(argv)
    flags, _ = shebang(body)
    if read_only and flags is not None and "no-writes" not in flags:
        raise CommandError(RO_FLAGGED)
    keys, args = argv[3 : 3 + n], argv[3 + n :]
    return atomically(db, sha, read_only, lambda script: script.execute(body, keys, args))


def atomically(
    db: Db, name: bytes, no_writes: bool, run: Callable[[_Script], tuple[ReplyT, bool]]
) -> ReplyT:
    """Run a script (EVAL's or a function) in a fresh state; a failed one changes nothing."""
    if not db.write:  # a read: nothing can change, nothing to roll back
        script = _Script(db, name)
        try:
            return run(script)[0]
        finally:
            script.close()
    sm = db.sm
    outer = sm._undo
    undo: dict[bytes, Any] = {}
    revision, events = sm._revision, len(sm._events)
    sm._undo = undo
    try:
        script = _Script(db, name)
        try:
            if no_writes:
                script.no_writes = True
            reply, failed = run(script)
        finally:
            script.close()
    except BaseException:
        sm._undo = outer
        sm._roll_back(undo, revision, events)
        raise
    sm._undo = outer
    if failed:
        sm._roll_back(undo, revision, events)
    elif outer is not None:
        for key, saved in undo.items():
            outer.setdefault(key, saved)
    return reply


def _check_eval(argv: list[bytes]) -> None:
    _numkeys(argv)
    check_compiles(argv[1])


def _check_evalsha(argv: list[bytes]) -> None:
    _numkeys(argv)


@command("eval", -3, "write noscript skip_monitor movablekeys", keys=(0, 0, 0), group="scripting",
         check=_check_eval)  # fmt: skip
def eval_(db: Db, argv: list[bytes]) -> ReplyT:
    body = argv[1]
    check_compiles(body)
    sha = _store(db, body)  # EVAL caches the script for EVALSHA, as Redis does
    return _run(db, body, sha, argv, read_only=False)


@command("eval_ro", -3, "readonly noscript skip_monitor movablekeys", keys=(0, 0, 0),
         group="scripting", check=_check_eval)  # fmt: skip
def eval_ro(db: Db, argv: list[bytes]) -> ReplyT:
    return _run(db, argv[1], sha1hex(argv[1]), argv, read_only=True)


def _evalsha(db: Db, argv: list[bytes], read_only: bool) -> ReplyT:
    body = loaded(db, argv[1])
    if body is None:
        raise CommandError(NOSCRIPT)
    return _run(db, body, argv[1].lower(), argv, read_only)


@command("evalsha", -3, "write noscript skip_monitor movablekeys", keys=(0, 0, 0),
         group="scripting", check=_check_evalsha)  # fmt: skip
def evalsha(db: Db, argv: list[bytes]) -> ReplyT:
    return _evalsha(db, argv, read_only=False)


@command("evalsha_ro", -3, "readonly noscript skip_monitor movablekeys", keys=(0, 0, 0),
         group="scripting", check=_check_evalsha)  # fmt: skip
def evalsha_ro(db: Db, argv: list[bytes]) -> ReplyT:
    return _evalsha(db, argv, read_only=True)


# -- SCRIPT ---------------------------------------------------------------------------------

_SCRIPT_HELP: Final = [
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache (replicated: every node forgets them).",
    "KILL",
    "    Kill the currently executing Lua script (raftcache: scripts run to completion",
    "    within their execution budget, so there is never one to kill).",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Print this help.",
]


def _check_script(argv: list[bytes]) -> None:
    sub = argv[1].lower()
    n = len(argv)
    if sub == b"load" and n == 3:
        check_compiles(argv[2])
    elif sub == b"flush" and n <= 3:
        if n == 3 and argv[2].lower() not in (b"sync", b"async"):
            raise CommandError("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
    elif (sub == b"exists" and n >= 3) or (sub in (b"kill", b"help") and n == 2):
        return
    else:
        name = argv[1].decode("utf-8", "replace")
        raise CommandError(f"ERR unknown subcommand or wrong number of arguments for '{name}'. "
                           "Try SCRIPT HELP.")  # fmt: skip


@command("script", -2, "write noscript", keys=(0, 0, 0), group="scripting", check=_check_script)
def script(db: Db, argv: list[bytes]) -> ReplyT:
    """SCRIPT LOAD/EXISTS/FLUSH/KILL/HELP (logged: LOAD and FLUSH change every replica)."""
    sub = argv[1].lower()
    if sub == b"load":
        return _store(db, argv[2])
    if sub == b"exists":
        return [int(loaded(db, sha) is not None) for sha in argv[2:]]
    if sub == b"flush":
        sm = db.sm
        stored = sm.keys()
        for key in [k for k in stored if k.startswith(_SCRIPT_PREFIX)]:
            sm._drop(key, "delete")
        return OK
    if sub == b"kill":
        raise CommandError(NOT_BUSY)
    return [Status(line) for line in _SCRIPT_HELP]


def cached_scripts(db: Db) -> int:
    """How many scripts are loaded (INFO's number_of_cached_scripts)."""
    return db.sm.db_size(SCRIPTS_DB)
