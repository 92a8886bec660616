"""The `raftcache` console script's start-up: a Ctrl-C while it loads exits 130 quietly."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What the installed console script runs (pyproject's [project.scripts]), with a Ctrl-C
# landing while grpc is being imported: the slowest part of start-up (~0.15 s).
_CTRL_C_DURING_GRPC_IMPORT = """
import importlib, sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "grpc":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
module, function = sys.argv[1].split(":")
sys.argv[1:] = ["--endpoints", "127.0.0.1:9", "get", "k"]
sys.exit(getattr(importlib.import_module(module), function)())
"""


def _entry_point() -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry: str = pyproject["project"]["scripts"]["raftcache"]
    return entry


def test_ctrl_c_while_the_cli_loads_exits_130_without_a_traceback() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _CTRL_C_DURING_GRPC_IMPORT, _entry_point()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (run.returncode, run.stderr) == (130, "raftcache: interrupted\n")


def test_importing_the_sdk_package_loads_neither_grpc_nor_protobuf() -> None:
    """So the console script reaches its Ctrl-C handling within a few ms of start-up."""
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, raftcache.client._entry, raftcache.client\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'google')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.stdout.strip() == "[]", run.stderr


def test_every_public_name_of_the_sdk_loads_on_first_use() -> None:
    import raftcache.client as sdk
    from raftcache.client import errors

    for name in sdk.__all__:
        assert getattr(sdk, name) is not None, name
    assert sdk.RequestTooOldError is errors.RequestTooOldError
    assert sorted(sdk.__all__) == sorted(sdk._LAZY)
