"""Real ``identity`` processes for tests: commands run to the end, servers kept running."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from socketserver import BaseServer
from typing import IO

import httpx


def run_identity(
    *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "identity.cli", *args],
        env=os.environ | env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Standard outputs that refuse what a command prints, and the reason it gives: a full disk
# (/dev/full), and none at all (None: the command starts with file descriptor 1 closed).
UNWRITABLE_STDOUTS = [("/dev/full", "No space left on device"), (None, "it is closed")]


def run_identity_unwritable(
    *args: str, env: dict[str, str], stdout: str | None
) -> subprocess.CompletedProcess[bytes]:
    """``identity`` with a standard output from ``UNWRITABLE_STDOUTS``."""
    with open(stdout or os.devnull, "wb") as output:
        return subprocess.run(
            [sys.executable, "-m", "identity.cli", *args],
            env=os.environ | env,
            stdin=subprocess.DEVNULL,
            stdout=output if stdout else None,
            stderr=subprocess.PIPE,
            preexec_fn=None if stdout else lambda: os.close(1),
            timeout=60,
            check=False,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving_in_a_thread(server: BaseServer, poll_interval: float = 0.5) -> Iterator[None]:
    """Run ``server`` (a stand-in a test talks to on loopback) on a daemon thread until the
    block ends; then stop it, free its port and wait for the thread."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def printed(self) -> str:
        """What the still running server has printed so far. Read at an offset: seeking
        would move the write position the server shares with this open file."""
        return os.pread(self.log.fileno(), os.fstat(self.log.fileno()).st_size, 0).decode(
            errors="replace"
        )

    def output(self) -> str:
        """Stop the server and return everything it printed."""
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@contextmanager
def identity_server(env: dict[str, str], *extra: str, timeout: float = 60) -> Iterator[Server]:
    """``identity serve`` on a free port, ready when this yields; stopped afterwards."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # A file, not a pipe: nobody reads a pipe while the test runs, and a server whose
    # full pipe blocks its log writes stops answering.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "identity.cli", "serve", "--port", str(port), *extra],
            env=os.environ | {"IDENTITY_ISSUER": base_url} | env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = Server(base_url, process, log)
        try:
            _wait_until_ready(server, timeout)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def _wait_until_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"identity serve exited early:\n{server.output()}")
        try:
            if httpx.get(f"{server.base_url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"identity serve not ready in {timeout}s:\n{server.output()}")
        time.sleep(0.2)
