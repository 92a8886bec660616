"""node/resp/redis_meta.py is exactly what its generator makes of Redis 7.0.15's own command
descriptions (src/commands/*.json of the source the compatibility suite fetches)."""

from __future__ import annotations

import pytest
from raftcache.node.resp.redis_meta import META, generate

from tests.compat.suite_source import FetchError, ensure_suite


def test_redis_meta_is_generated_from_redis_source() -> None:
    try:
        suite = ensure_suite()
    except FetchError as exc:
        pytest.fail(f"cannot fetch Redis 7.0.15's source: {exc}")
    assert generate(suite / "src" / "commands") == META
