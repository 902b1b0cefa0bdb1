"""Processes of one scenario: the producer (a short-lived process printing JSON) and the
worker process (the library's own CLI), each in the library's environment.

Every process gets ``BENCH_REDIS_URL`` and ``BENCH_CONCURRENCY`` (and the library's own
``env``) and runs in the library's ``bench/peers`` with it on ``PYTHONPATH``, where the
``<library>_app`` modules live.
Worker processes start in a session of their own so that one that ignores SIGTERM is
killed with its children, and only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ._envs import Library


def environment(library: Library, url: str, concurrency: int, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BENCH_")}
    # The source root too: our packages come from that source tree (an editable install's
    # finder may not map every package when run from another directory; a baseline
    # commit's tree must win over the editable install).
    peers = library.peers_dir
    path = [str(peers), str(library.source), env.get("PYTHONPATH", "")]
    env.update(
        BENCH_REDIS_URL=url,
        BENCH_CONCURRENCY=str(concurrency),
        PYTHONPATH=os.pathsep.join(part for part in path if part),
        PYTHONUNBUFFERED="1",
        **library.env,
        **extra,
    )
    return env


def produce(
    library: Library,
    url: str,
    mode: str,
    *args: str,
    timeout: float,
    wrap: list[str] | None = None,
    **extra: str,
) -> Any:
    """Run ``peers/produce.py LIBRARY MODE ARGS`` (after the command prefix ``wrap``, if
    given) and return the JSON it prints."""
    peers = library.peers_dir
    command = [*(wrap or []), str(library.python), str(peers / "produce.py"), library.kind, mode]
    command += args
    done = subprocess.run(
        command,
        cwd=peers,
        env=environment(library, url, 100, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{library.name} producer failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class WorkerProcess:
    """The library's worker process, with the probe reporting on the jobs it started."""

    def __init__(
        self,
        library: Library,
        url: str,
        *,
        concurrency: int,
        expect: int = 0,
        skip: int = 0,
        wrap: list[str] | None = None,
        **extra: str,
    ) -> None:
        self.library = library
        self.report_path = Path(tempfile.mkdtemp(prefix="bench-worker-")) / "report.json"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        env = environment(
            library,
            url,
            concurrency,
            BENCH_EXPECT=str(expect),
            BENCH_SKIP=str(skip),
            BENCH_REPORT=str(self.report_path),
            **extra,
        )
        self.process = subprocess.Popen(
            [*(wrap or []), *library.worker_command(concurrency)],
            cwd=library.peers_dir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def report(self) -> dict[str, Any] | None:
        try:
            report: dict[str, Any] = json.loads(self.report_path.read_text())
        except (OSError, ValueError):
            return None
        return report

    def wait_for_jobs(self, expect: int, timeout: float) -> dict[str, Any]:
        """Wait until the probe reports ``expect`` started jobs; return its report."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.report()
            if report is not None and report["started"] >= expect:
                return report
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.library.name} worker exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.library.name}: {expect} jobs not started in time")
            time.sleep(0.02)

    def stop(self, grace: float = 5.0) -> dict[str, Any] | None:
        """SIGTERM (a graceful stop for every library here); SIGKILL the session after
        ``grace`` seconds (taskiq's worker can take 30 s to stop). Returns the probe's
        latest report."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # children left behind, if any
        report = self.report()
        self._log.close()
        return report

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()[-3000:].decode(errors="replace")
