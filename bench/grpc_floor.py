"""The floor of Python gRPC on this machine: raftcache's Cache service whose Set and Get
return at once, served the way a node serves (grpc.aio on uvloop, one process).

`python -m bench.grpc_floor PORT`. The peers section drives it with the same generator and
client counts as etcd and raftcache's raw gRPC rows: no raftcache node can serve unary
calls faster than this server, whatever it does inside them, so its ratio to etcd bounds
what any change to our handlers, proposer or Raft could reach on this machine.
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
import uvloop
from raftcache.v1 import cache_pb2, cache_pb2_grpc

VALUE = b"v" * 100


class FloorCache(cache_pb2_grpc.CacheServicer):
    async def Set(self, request: cache_pb2.SetRequest, context: Any) -> cache_pb2.SetResponse:
        return cache_pb2.SetResponse(version=1)

    async def Get(self, request: cache_pb2.GetRequest, context: Any) -> cache_pb2.GetResponse:
        return cache_pb2.GetResponse(found=True, value=VALUE, version=1)


async def serve(port: int) -> None:
    server = grpc.aio.server()
    cache_pb2_grpc.add_CacheServicer_to_server(FloorCache(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
