"""The `raftcache` console script: loads the CLI with Ctrl-C already handled.

The CLI and the SDK take ~0.2 s to import (grpc, protobuf); a Ctrl-C meanwhile must end
like one during a command (exit 130, one line), not with a traceback. Only the interpreter's
own start-up comes before this module, which imports nothing itself (os and sys are loaded
by then).

A Ctrl-C during a call leaves the client open (cli._call: closing its loop under the call
only prints asyncio noise). The interpreter's teardown then races grpc's poller thread,
which can abort the process (SIGABRT, "epoll_wait error: Bad file descriptor": once in a
loaded test run) instead of exiting 130. So an interrupted run ends with os._exit.
"""

import os
import sys

INTERRUPTED = 130


def main() -> int:
    try:
        from raftcache.client import cli
    except KeyboardInterrupt:
        print("raftcache: interrupted", file=sys.stderr)
        return INTERRUPTED
    code = cli.main()
    if code == INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
