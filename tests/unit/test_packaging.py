"""Our own packaging metadata builds without warnings (setuptools turns deprecations into
errors on a date, e.g. the license as a TOML table after 2027-02-18)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A Python warning's "Category: message" line, e.g. SetuptoolsDeprecationWarning; not the
# lower-case "warning: build_py: byte-compiling is disabled" that depends on the environment.
_WARNING = re.compile(r"\b[A-Z]\w*Warning: .*")


def _source_tree(into: Path) -> Path:
    """The files a build reads (pyproject.toml, the readme, every package-dir), copied, so
    the build neither writes into the working tree nor races a concurrent run."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    into.mkdir()
    shutil.copy(ROOT / "pyproject.toml", into)
    shutil.copy(ROOT / pyproject["project"]["readme"], into)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    package_dirs = pyproject["tool"]["setuptools"]["package-dir"].values()
    for directory in sorted({d.split("/")[0] for d in package_dirs}):
        shutil.copytree(ROOT / directory, into / directory, ignore=ignore)
    return into


@pytest.mark.parametrize("hook", ["build_wheel", "build_editable", "build_sdist"])
def test_the_build_backend_warns_about_nothing_in_our_metadata(tmp_path: Path, hook: str) -> None:
    source = _source_tree(tmp_path / "src")
    out = tmp_path / "dist"
    out.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", f"import setuptools.build_meta as b; b.{hook}({str(out)!r})"],
        cwd=source,
        env={**os.environ, "PYTHONWARNINGS": "default"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert list(out.iterdir()), f"{hook} built nothing:\n{output[-4000:]}"
    warnings = _WARNING.findall(output)
    assert not warnings, (
        f"setuptools warned while building ({hook}); fix pyproject.toml before the warning "
        f"becomes an error:\n" + "\n".join(warnings)
    )


def test_every_python_package_directory_is_in_the_wheel() -> None:
    """The wheel (the container image installs it) lists packages by name: a new package
    directory left out imports fine from the editable install here and fails in the image
    (node/memcached did, in a fresh-clone CI run)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    for package, directory in setuptools["package-dir"].items():
        for init in (ROOT / directory).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / directory)
            name = ".".join([package, *relative.parts])
            if "__pycache__" not in relative.parts:
                assert name in listed, f"{name} ({init.parent}) is missing from packages"
