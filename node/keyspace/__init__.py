"""Redis commands over the replicated state: one command table, one module per value type.

The RESP front-end, MULTI/EXEC, Lua's `redis.call` and gRPC's `Exec(call=...)` all dispatch
through `table.COMMANDS`; handlers run inside the state machine's apply (writes) or under
the replica's read lock (reads), so they are pure: no clock, no randomness, no I/O.
"""
