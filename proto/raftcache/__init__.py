"""raftcache: a Raft-replicated key-value cache cluster."""
