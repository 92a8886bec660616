"""The `raftcache` console script: loads the CLI with Ctrl-C already handled.

The CLI and the SDK take ~0.2 s to import (grpc, protobuf); a Ctrl-C meanwhile must end
like one during a command (exit 130, one line), not with a traceback. Only the interpreter's
own start-up comes before this module, which imports nothing itself.
"""

import sys


def main() -> int:
    try:
        from raftcache.client import cli
    except KeyboardInterrupt:
        print("raftcache: interrupted", file=sys.stderr)
        return 130
    return cli.main()
