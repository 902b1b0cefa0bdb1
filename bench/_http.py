"""The HTTP scenario: our async POST endpoint vs a bare FastAPI route, under uvicorn.

One uvicorn process (``bench/http_app.py``) per configuration serves both routes; a second
process loads one route at a time on 127.0.0.1 for a bounded time with a bounded number of
keep-alive connections: ``wrk`` when it is on PATH, else ``bench/loadgen.py``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._redis import HOST, free_port

REPO = Path(__file__).resolve().parent.parent
BODY = '{"data":"hello"}'
ROUTES = {"bare": "/bare/process/acme", "ours": "/async/process/acme"}
# (label, store, embedded workers)
CONFIGS = [
    ("in-memory, API-only", "memory", False),
    ("in-memory, embedded workers", "memory", True),
    ("Redis, API-only", "redis", False),
    ("Redis, embedded workers", "redis", True),
]


@dataclass
class Load:
    connections: int
    seconds: float

    @property
    def tool(self) -> str:
        return "wrk" if shutil.which("wrk") else "bench.loadgen"

    def run(self, port: int, path: str) -> dict[str, Any]:
        if self.tool == "wrk":
            return self._wrk(port, path)
        command = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--path", path]
        command += ["--body", BODY, "--connections", str(self.connections)]
        command += ["--seconds", str(self.seconds)]
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=self.seconds + 60
        )
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def _wrk(self, port: int, path: str) -> dict[str, Any]:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(
                f"wrk.method = \"POST\"\nwrk.body = '{BODY}'\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
        seconds = max(1, round(self.seconds))  # wrk takes whole seconds
        command = ["wrk", "-t1", f"-c{self.connections}", f"-d{seconds}s", "--latency"]
        command += ["-s", script.name, f"http://{HOST}:{port}{path}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=self.seconds + 60)
        Path(script.name).unlink()
        return parse_wrk(done.stdout)


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, p50/p99 latency (ms) and non-2xx responses from wrk's report."""

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in", output)
    other = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    if rps is None or requests is None or not percentiles:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return {
        "rps": float(rps.group(1)),
        "p50_ms": ms(percentiles["50"]),
        "p99_ms": ms(percentiles["99"]),
        "requests": int(requests.group(1)),
        "other_status": int(other.group(1)) if other else 0,
        "socket_errors": errors.group(1) if errors else None,
    }


class Uvicorn:
    """``uvicorn bench.http_app:app`` on a free loopback port."""

    def __init__(
        self,
        store: str,
        workers: bool,
        redis_url: str,
        *,
        app: str = "bench.http_app:app",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        env = {
            **_clean_env(),
            "BENCH_STORE": store,
            "BENCH_WORKERS": "1" if workers else "0",
            "BENCH_REDIS_URL": redis_url,
            **(extra_env or {}),
        }
        command = [sys.executable, "-m", "uvicorn", app]
        command += ["--host", HOST, "--port", str(self.port), "--log-level", "warning"]
        command += ["--no-access-log", "--loop", "asyncio"]
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"uvicorn exited:\n{self._log.read()[-3000:].decode()}")
            try:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=1)
                connection.request("GET", "/ready")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("uvicorn did not come up")

    def call(self, method: str, path: str, timeout: float = 10.0) -> Any:
        """The JSON answer of one request to this server."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: {response.status}")
            return json.loads(response.read())
        finally:
            connection.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("BENCH_")}


def http_protocol() -> str:
    """The HTTP implementation uvicorn picks here (``auto``: httptools when installed)."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"
