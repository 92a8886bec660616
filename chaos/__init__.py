"""raftcache.chaos: local cluster control (and, later, fault injection and checkers)."""
