"""The committed generated code matches the .proto files, and the names clients use exist."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = PROTO_ROOT / "raftcache" / "v1"
GENERATED_PATTERNS = ["*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py"]
STALE_HINT = "run `make proto` and commit the regenerated files"


def _generated(directory: Path) -> dict[str, bytes]:
    return {
        path.name: path.read_bytes()
        for pattern in GENERATED_PATTERNS
        for path in sorted(directory.glob(pattern))
    }


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    protos = sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE_DIR.glob("*.proto"))
    assert protos, f"no .proto files under {PACKAGE_DIR}"
    # Exactly the `make proto` command, with its output redirected to tmp_path.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"protoc failed:\n{proc.stderr}"
    fresh = _generated(tmp_path / "raftcache" / "v1")
    committed = _generated(PACKAGE_DIR)
    assert fresh, "protoc generated nothing"

    missing = sorted(set(fresh) - set(committed))
    extra = sorted(set(committed) - set(fresh))
    stale = sorted(name for name in set(fresh) & set(committed) if fresh[name] != committed[name])
    problems = []
    if missing:
        problems.append(f"not committed: {', '.join(missing)}")
    if extra:
        problems.append(f"committed but no longer generated (delete them): {', '.join(extra)}")
    if stale:
        problems.append(f"differ from the .proto files: {', '.join(stale)}")
    assert not problems, f"generated code in {PACKAGE_DIR} is stale ({'; '.join(problems)}): " + (
        STALE_HINT
    )


@pytest.mark.parametrize(
    "module", ["cache_pb2", "cache_pb2_grpc", "cluster_pb2", "cluster_pb2_grpc", "command_pb2"]
)
def test_generated_modules_import_under_raftcache_v1(module: str) -> None:
    imported = importlib.import_module(f"raftcache.v1.{module}")
    assert imported.__name__ == f"raftcache.v1.{module}"


def _fields(message: Descriptor) -> dict[str, int]:
    return {field.name: field.number for field in message.fields}


# (module, message) -> fields clients rely on, by name and wire number
CONTRACT = {
    ("cache_pb2", "GetRequest"): {"key": 1, "consistency": 2, "max_staleness_ms": 3},
    ("cache_pb2", "GetResponse"): {"found": 1, "value": 2, "version": 3},
    ("cache_pb2", "SetRequest"): {"key": 1, "value": 2, "ttl_ms": 3},
    ("cluster_pb2", "StatusResponse"): {"leader_client_addr": 5},
}


@pytest.mark.parametrize(
    ("where", "expected"), list(CONTRACT.items()), ids=[message for _, message in CONTRACT]
)
def test_messages_keep_the_fields_clients_use(
    where: tuple[str, str], expected: dict[str, int]
) -> None:
    module_name, message_name = where
    module = importlib.import_module(f"raftcache.v1.{module_name}")
    message = getattr(module, message_name, None)
    assert message is not None, f"raftcache.v1.{module_name}.{message_name} is gone"
    fields = _fields(message.DESCRIPTOR)
    for name, number in expected.items():
        assert name in fields, f"{message_name}.{name} is gone"
        assert fields[name] == number, f"{message_name}.{name} moved from field {number}"


def test_consistency_enum_values() -> None:
    from raftcache.v1 import cache_pb2

    values = {
        v.name: v.number for v in cache_pb2.DESCRIPTOR.enum_types_by_name["Consistency"].values
    }
    assert values == {"LINEARIZABLE": 0, "STALE": 1}
    assert (cache_pb2.LINEARIZABLE, cache_pb2.STALE) == (0, 1)
    assert cache_pb2.GetRequest().consistency == cache_pb2.LINEARIZABLE  # the default


def test_services_have_stubs_and_servicers() -> None:
    from raftcache.v1 import cache_pb2_grpc, cluster_pb2_grpc

    for name in ["CacheStub", "CacheServicer", "add_CacheServicer_to_server"]:
        assert hasattr(cache_pb2_grpc, name), name
    for name in ["ClusterStub", "ClusterServicer", "add_ClusterServicer_to_server"]:
        assert hasattr(cluster_pb2_grpc, name), name
