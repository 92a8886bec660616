"""raftcache.client: Python SDK (comes with the SDK issue)."""
