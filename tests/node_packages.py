"""npm packages that tests use, installed from a folder's package-lock.json on first use.

Each folder (tests/interop, tests/a11y) pins its packages in a committed lock file; its
node_modules is not committed. `npm ci` runs when node_modules is missing or older than the
lock, so a fresh checkout (and CI, which installs Node.js and npm: .ci/run) gets them.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest


def tool(name: str, needs: str) -> str:
    """The path of a program on PATH; fails the test with ``needs`` when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: {needs}", pytrace=False)
    return path


def install_locked(folder: Path, needs: str) -> Path:
    """``folder``'s locked packages, reinstalled when the lock moves; returns node_modules.

    One process at a time, under a lock on a file in the folder: pytest-xdist workers that
    reach the folder's tests together would otherwise each run `npm ci`, which first empties
    node_modules, pulling the packages out from under another worker. The one that waited
    finds them installed."""
    modules = folder / "node_modules"
    installed = modules / ".package-lock.json"
    lock = folder / "package-lock.json"
    with (folder / ".npm-install.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
            result = subprocess.run(
                [tool("npm", needs), "ci", "--no-audit", "--no-fund", "--prefix", str(folder)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if result.returncode != 0:
                pytest.fail(f"npm ci in {folder} failed:\n{result.stderr}", pytrace=False)
    return modules
