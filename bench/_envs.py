"""The Python environments the libraries run in.

Ours runs from the interpreter running the driver (the repo's ``.venv``). Each peer gets
its own virtual environment under ``bench/.venv-peers/<peer>`` (git-ignored), created with
``python -m venv`` and filled by pip from ``bench/peers/requirements-<peer>.txt``: their
pins conflict (arq wants redis-py < 6, SAQ < 8, taskiq-redis >= 8), and none of them may
leak into our own dependencies. An environment is rebuilt only when its requirements file
changes.

Ours can also run as a *variant*: the same code with extra environment (``ours+3queues``:
three queues, each holding jobs), or the code of another commit (``ours@<rev>``: a
``git archive`` of that commit under ``bench/.venv-peers/``, run by the same interpreter),
so that a change is measured against its baseline in the same run, on the same Redis.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEERS_DIR = BENCH / "peers"
VENVS = BENCH / ".venv-peers"
PEERS = ("arq", "saq", "streaq", "taskiq")


@dataclass(frozen=True)
class Library:
    """One library under test: its name, its interpreter and its worker command.

    ``source`` is the source tree whose ``bench/peers`` (and, for ours, whose packages)
    the processes run; ``env`` is added to their environment. Variants of ours are named
    ``ours@<rev>`` or ``ours+<what>``; ``kind`` is the library itself.
    """

    name: str
    python: Path
    source: Path = BENCH.parent
    env: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def kind(self) -> str:
        """The library this is (a variant of): ``ours``, ``arq``, ``saq``, ..."""
        return self.name.split("@")[0].split("+")[0]

    @property
    def is_variant(self) -> bool:
        """A variant of ours (baseline commit, other settings), not a peer."""
        return self.name != self.kind

    @property
    def peers_dir(self) -> Path:
        """Where its ``<library>_app`` module and the producer live."""
        return self.source / "bench" / "peers"

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
        return commands[self.kind]


def ours() -> Library:
    return Library("ours", Path(sys.executable))


def ours_with(what: str, **env: str) -> Library:
    """Ours, this source tree, with extra environment (``ours+<what>``)."""
    return Library(f"ours+{what}", Path(sys.executable), env=env)


def ours_at(rev: str) -> Library:
    """Ours at commit ``rev`` (``ours@<short rev>``): that commit's tree, exported once to
    ``bench/.venv-peers/ours-<commit>/``, run by this interpreter (the dependencies are
    the same); its own ``bench/peers`` drive it."""
    root = BENCH.parent
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = VENVS / f"ours-{commit}"
    if not (tree / "bench" / "peers").is_dir():
        VENVS.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=VENVS) as scratch:
            archive = Path(scratch) / "tree.tar"
            subprocess.run(["git", "archive", "-o", str(archive), commit], cwd=root, check=True)
            unpacked = Path(scratch) / "tree"
            with tarfile.open(archive) as tar:
                tar.extractall(unpacked, filter="data")
            unpacked.rename(tree)
    return Library(f"ours@{commit[:7]}", Path(sys.executable), source=tree)


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
