"""Two pytest-xdist workers needing a folder's npm packages at once install them once, one
after the other: `npm ci` empties node_modules first, so a second one running alongside
pulled the packages out from under the first worker's tests."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from tests.node_packages import install_locked

# Stands in for npm: notes a run that overlaps another, then installs slowly.
FAKE_NPM = """#!/bin/sh
folder="$5"
if ! mkdir "$folder/running" 2>/dev/null; then echo overlap >> "$folder/log"; fi
echo run >> "$folder/log"
sleep 0.5
mkdir -p "$folder/node_modules"
touch "$folder/node_modules/.package-lock.json"
rmdir "$folder/running" 2>/dev/null
exit 0
"""


def test_two_workers_installing_at_once_run_npm_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM)
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    folder = tmp_path / "packages"
    folder.mkdir()
    (folder / "package-lock.json").write_text("{}")

    workers = [threading.Thread(target=install_locked, args=(folder, "npm")) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert (folder / "log").read_text().split() == ["run"]
    assert (folder / "node_modules" / ".package-lock.json").exists()
