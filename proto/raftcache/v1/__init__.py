"""raftcache v1 wire contract: generated protobuf and gRPC code."""
