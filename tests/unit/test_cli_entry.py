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


def test_ctrl_c_is_left_to_the_main_thread_while_it_waits_for_a_call() -> None:
    """The blocking Client's loop thread blocks SIGINT, so the kernel hands Ctrl-C to the main
    thread, whose wait for the call's result it interrupts.
    Without this, 5 of 480 SIGINTs sent 0.2-0.5 s after `raftcache get` started were acted on
    only at the call's deadline or lost (0 of 480 with it)."""
    import asyncio
    import signal

    from raftcache.client import Client

    from tests.unit.test_client_routing import FakeTransport

    async def blocked_here() -> set[signal.Signals]:
        return signal.pthread_sigmask(signal.SIG_BLOCK, [])

    with Client("10.0.0.1:6380", transport=FakeTransport()) as client:
        mask = asyncio.run_coroutine_threadsafe(blocked_here(), client._loop).result(5)
    assert signal.SIGINT in mask
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # main: untouched


def test_the_entry_exits_at_once_with_the_clis_interrupted_code() -> None:
    from raftcache.client import _entry, cli

    # An interrupted run ends with os._exit (grpc's poller can abort the teardown): only
    # for the code the CLI returns on Ctrl-C.
    assert _entry.INTERRUPTED == cli.EXIT_INTERRUPTED == 130
