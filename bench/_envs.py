"""The Python environments the libraries run in.

Ours runs from the interpreter running the driver (the repo's ``.venv``). Each peer gets
its own virtual environment under ``bench/.venv-peers/<peer>`` (git-ignored), created with
``python -m venv`` and filled by pip from ``bench/peers/requirements-<peer>.txt``: their
pins conflict (arq wants redis-py < 6, SAQ < 8, taskiq-redis >= 8), and none of them may
leak into our own dependencies. An environment is rebuilt only when its requirements file
changes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEERS_DIR = BENCH / "peers"
VENVS = BENCH / ".venv-peers"
PEERS = ("arq", "saq", "streaq", "taskiq")


@dataclass(frozen=True)
class Library:
    """One library under test: its name, its interpreter and its worker command."""

    name: str
    python: Path

    @property
    def bin(self) -> Path:
        return self.python.parent

    def worker_command(self, concurrency: int) -> list[str]:
        """The worker process, started the way the library's docs prescribe."""
        commands = {
            "ours": [
                str(self.python),
                *("-m", "async_endpoints", "worker", "ours_app:endpoints"),
                *("--log-level", "WARNING"),
            ],
            "arq": [
                str(self.bin / "arq"),
                "arq_app.WorkerSettings",
                *("--custom-log-dict", "arq_app.LOG_CONFIG"),
            ],
            "saq": [str(self.bin / "saq"), "saq_app.settings", "--quiet"],
            "streaq": [str(self.bin / "streaq"), "run", "streaq_app:worker"],
            "taskiq": [
                str(self.bin / "taskiq"),
                *("worker", "taskiq_app:broker", "--workers", "1"),
                *("--max-async-tasks", str(concurrency), "--log-level", "WARNING"),
            ],
        }
        return commands[self.name]


def ours() -> Library:
    return Library("ours", Path(sys.executable))


def peer(name: str, *, log: bool = True) -> Library:
    """The peer's environment, created or updated first when needed."""
    requirements = PEERS_DIR / f"requirements-{name}.txt"
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".requirements-sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return Library(name, python)
    if log:
        print(f"[env] installing {name} into {venv.relative_to(BENCH.parent)} ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    stamp.write_text(digest)
    return Library(name, python)


def versions(library: Library) -> dict[str, str]:
    """Installed versions of the packages that matter for the comparison."""
    names = ["async-endpoints", "arq", "saq", "streaq", "taskiq", "taskiq-redis"]
    names += ["redis", "hiredis", "coredis"]
    code = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: found[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))\n"
    )
    out = subprocess.run(
        [str(library.python), "-c", code, *names],
        cwd=PEERS_DIR,  # not the repo root, whose egg-info would answer for every venv
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, str] = json.loads(out.stdout)
    return found
