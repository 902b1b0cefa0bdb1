"""Starting and stopping the real processes of the multi-process tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Proc:
    """A child process of the test, with its log file for post-mortems."""

    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def wait(self, timeout: float) -> int:
        """The exit status; a process still alive after ``timeout`` seconds is aborted
        (a test app prints its asyncio tasks' stacks on SIGUSR2, faulthandler every
        thread's on SIGABRT, to its log) and the test fails with the end of that log."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR2)  # the test apps print their tasks
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=1)
            self.process.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            tail = self.output()[-20000:]
            raise AssertionError(f"pid {self.pid} still ran after {timeout} s:\n{tail}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _spawn(command: list[str], env: dict[str, str], log: Path, port: int | None = None) -> Proc:
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=out, stderr=out)
    return Proc(process, log, port)


def start_api(
    env: dict[str, str], log_dir: Path, name: str = "api", *, module: str = "tests.apps.redis_app"
) -> Proc:
    """uvicorn serving ``module``'s ``app`` on a free loopback port; waits until up."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", f"{module}:app"]
    command += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
    # Longer than httpx's 5 s keep-alive expiry, so the server never closes a connection
    # the client is about to reuse (a race that surfaces as a ReadError on a busy machine).
    command += ["--timeout-keep-alive", "30"]
    proc = _spawn(command, env, log_dir / f"{name}.log", port)
    deadline = time.monotonic() + 30
    while True:
        assert proc.process.poll() is None, proc.output()
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return proc
        except OSError:
            assert time.monotonic() < deadline, f"{name} never listened\n{proc.output()}"
            time.sleep(0.05)


def start_worker(
    env: dict[str, str],
    log_dir: Path,
    name: str = "worker",
    *,
    module: str = "tests.apps.redis_app",
    args: tuple[str, ...] = (),
) -> Proc:
    """A ``python -m async_endpoints worker`` process for ``module``'s ``endpoints``, with
    ``args`` (``--queues high,default``, say) after the target."""
    command = [sys.executable, "-m", "async_endpoints", "worker", f"{module}:endpoints", *args]
    proc = _spawn(command, env, log_dir / f"{name}.log")
    deadline = time.monotonic() + 30
    while "worker started" not in proc.output():
        assert proc.process.poll() is None, proc.output()
        assert time.monotonic() < deadline, f"{name} never started\n{proc.output()}"
        time.sleep(0.05)
    return proc
