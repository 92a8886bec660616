"""raftcache.node: state machine, proposer, gRPC servicers, server wiring and the node CLI."""
