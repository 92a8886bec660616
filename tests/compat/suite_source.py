"""Fetch Redis 7.0.15's own Tcl test suite from Debian's `redis` source package, once.

The system's apt configuration is never touched: a throw-away deb-src list, lists dir and
cache dir live under the cache dir, and only the upstream tarball (checked against a pinned
SHA-256) is unpacked, so the test set does not move when Debian publishes a new revision.
Standard library only: `.ci/run` prefetches it with the system python before `make test`.

    python3 -m tests.compat.suite_source [--cache-dir DIR] [--mirror URL]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REDIS_VERSION = "7.0.15"
ORIG_TARBALL = f"redis_{REDIS_VERSION}.orig.tar.gz"
# Debian's orig tarball is upstream's release; the same in every 7.0.15-1~deb12uN revision.
ORIG_SHA256 = "4b1dc4ee6d622a09fff9c6777191209750fb5e5a725ef78ea012d6eef4c22982"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
CACHE_ENV = "RAFTCACHE_REDIS_COMPAT_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[2]
_UNPACKED_MARK = ".raftcache-unpacked"

Log = Callable[[str], None]


class FetchError(RuntimeError):
    """The suite could not be fetched or unpacked; the message says why and what to try."""


def default_cache_dir() -> Path:
    """$RAFTCACHE_REDIS_COMPAT_CACHE, else .cache/redis-compat in the repository (ignored)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else REPO_ROOT / ".cache" / "redis-compat"


def system_mirror(apt_etc: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses for `bookworm`, else deb.debian.org."""
    for path in sorted((apt_etc / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields = _deb822(stanza)
            if SUITE in fields.get("suites", "").split():
                uri = fields.get("uris", "").split()
                if uri:
                    return uri[0].rstrip("/")
    lists = [apt_etc / "sources.list", *sorted((apt_etc / "sources.list.d").glob("*.list"))]
    for path in lists:
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            words = [w for w in line.split() if not w.startswith("[") and not w.endswith("]")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1].rstrip("/")
    return DEFAULT_MIRROR


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields


def ensure_suite(
    cache_dir: Path | None = None, mirror: str | None = None, log: Log = print
) -> Path:
    """The unpacked redis-7.0.15 tree under cache_dir, downloading it the first time."""
    cache_dir = (cache_dir or default_cache_dir()).resolve()
    suite = cache_dir / f"redis-{REDIS_VERSION}"
    if (suite / _UNPACKED_MARK).exists():
        return suite
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".fetch.lock"):
        if (suite / _UNPACKED_MARK).exists():  # another run fetched it while we waited
            return suite
        tarball = cache_dir / "download" / ORIG_TARBALL
        if not (tarball.exists() and _sha256(tarball) == ORIG_SHA256):
            tarball = _download(cache_dir, mirror or system_mirror(), log)
        _unpack(tarball, suite, log)
    return suite


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(cache_dir: Path, mirror: str, log: Log) -> Path:
    if shutil.which("apt-get") is None:
        raise FetchError(
            "apt-get is not on PATH: the suite comes from Debian's redis source package. "
            f"Put redis-{REDIS_VERSION}/ (upstream's tarball, unpacked) under {cache_dir} instead."
        )
    if not KEYRING.exists():
        raise FetchError(f"{KEYRING} is missing: apt-get install debian-archive-keyring")
    apt = cache_dir / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    source_list = apt / "sources.list"
    source_list.write_text(f"deb-src [signed-by={KEYRING}] {mirror} {SUITE} main\n")
    options = [
        "-q",
        "-o", f"Dir::Etc::SourceList={source_list}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "Acquire::Retries=3",
    ]  # fmt: skip
    if os.geteuid() == 0:  # our dirs are root's: no need to drop to _apt (it could not write)
        options += ["-o", "APT::Sandbox::User=root"]
    download = cache_dir / "download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir()
    log(f"redis-compat: fetching Debian's redis source package from {mirror} ({SUITE})")
    _apt(["apt-get", *options, "update"], apt, "update the throw-away deb-src index")
    _apt(
        ["apt-get", *options, "source", "--download-only", "redis"],
        download,
        "download the redis source package",
    )
    tarball = download / ORIG_TARBALL
    if not tarball.exists():
        found = sorted(p.name for p in download.iterdir())
        raise FetchError(f"the source package has no {ORIG_TARBALL} (got {found})")
    digest = _sha256(tarball)
    if digest != ORIG_SHA256:
        raise FetchError(f"{tarball} has SHA-256 {digest}, expected {ORIG_SHA256}")
    shutil.rmtree(apt, ignore_errors=True)  # ~20 MB of indexes, needed only for this download
    return tarball


def _apt(argv: list[str], cwd: Path, what: str) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise FetchError(f"could not {what} (apt-get exited {result.returncode}):\n{tail}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpack(tarball: Path, suite: Path, log: Log) -> None:
    log(f"redis-compat: unpacking {tarball.name} into {suite}")
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=suite.parent))
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(staging, filter="data")
        (tree,) = [p for p in staging.iterdir() if p.is_dir()]
        if not (tree / "tests" / "test_helper.tcl").exists():
            raise FetchError(f"{tarball.name} holds no tests/test_helper.tcl")
        (tree / _UNPACKED_MARK).write_text(f"{ORIG_TARBALL} {ORIG_SHA256}\n")
        shutil.rmtree(suite, ignore_errors=True)
        tree.rename(suite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.compat.suite_source")
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default: ${CACHE_ENV}")
    parser.add_argument("--mirror", default=None, help="default: the mirror apt uses here")
    args = parser.parse_args(argv)
    try:
        print(ensure_suite(args.cache_dir, args.mirror))
    except FetchError as exc:
        print(f"redis-compat: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
