"""`raftcache-node`: run one node. Flags also read RAFTCACHE_<FLAG> environment variables."""

from __future__ import annotations

import os

# The snapshot writer forks; gRPC's fork handlers would pause its threads around every
# fork. The child never touches gRPC, so they are not needed. Set before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio
import sys
from collections.abc import Sequence

from raftcache.node import log_setup
from raftcache.node.config import ConfigError, load


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load(argv)
        from raftcache.node.tls import load_material

        tls = load_material(config.tls) if config.tls is not None else None
        from raftcache.node.affinity import pin

        pin(config.cpu_affinity)  # before gRPC and pysyncobj start their threads
    except ConfigError as exc:
        print(f"raftcache-node: error: {exc}", file=sys.stderr)
        return 2
    from raftcache.node import rejoin
    from raftcache.node.server import Node

    node = Node(config, tls)
    log_setup.configure(config.log_format, config.log_level, node.log_context)
    # A --join start with no identity record asks whether it is a member already (then it
    # rejoins instead of voting); a StatefulSet pod beyond --replicas then adds itself.
    main_task = rejoin.run(node.run, config)
    try:
        if config.event_loop == "uvloop":
            import uvloop

            uvloop.run(main_task)
        else:
            asyncio.run(main_task)
    except OSError as exc:
        print(f"raftcache-node: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
