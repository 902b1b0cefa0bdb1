"""``python -m async_endpoints worker``: a real worker process and real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from async_endpoints import AsyncContext, AsyncEndpoints, ConfigurationError
from async_endpoints._cli import load_endpoints

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def start_worker(marks: Path, *args: str, seconds: float = 1.0) -> subprocess.Popen[str]:
    env = {**os.environ, "MARKS_DIR": str(marks), "HANDLER_SECONDS": str(seconds)}
    command = [sys.executable, "-m", "async_endpoints", "worker", *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def wait_for_mark(marks: Path, name: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while not (marks / name).exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, f"{name} never appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_worker_drains_running_handlers_on_a_signal_and_exits_zero(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """A signal stops claiming, lets the running handler finish, and exits with status 0."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:endpoints")
    wait_for_mark(tmp_path, "handler-started", worker)
    worker.send_signal(signum)
    assert worker.wait(timeout=30) == 0
    assert (tmp_path / "handler-finished").exists()
    assert (tmp_path / "lifespan-started").exists() and (tmp_path / "lifespan-stopped").exists()


def test_a_second_signal_stops_the_worker_without_waiting(tmp_path: Path) -> None:
    """SIGINT twice: the handler is cancelled at once (not after the 30 s grace period),
    the app's lifespan shutdown still runs (its code after ``yield``), and the worker
    exits 0."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:endpoints", seconds=120)
    wait_for_mark(tmp_path, "handler-started", worker)
    worker.send_signal(signal.SIGINT)
    time.sleep(0.2)
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=20) == 0
    assert not (tmp_path / "handler-finished").exists()
    assert (tmp_path / "lifespan-stopped").exists()


HUNG_SHUTDOWN_APP = """
import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette

from async_endpoints import AsyncEndpoints


@asynccontextmanager
async def lifespan(app):
    Path("started").write_text("")
    yield {}
    Path("stopping").write_text("")
    await asyncio.sleep(60)  # a shutdown that hangs (a pool close that never returns)


app = Starlette(lifespan=lifespan)
endpoints = AsyncEndpoints(app, run_workers=False)


async def noted(ctx):
    return None


endpoints.add_handler(noted)
"""


def test_a_second_signal_during_the_apps_own_shutdown_ends_the_worker(tmp_path: Path) -> None:
    """Once the pool has stopped and the app's lifespan shutdown hangs, the second signal
    ends the process (it has no grace period left to cut short)."""
    worker = start_worker_of(HUNG_SHUTDOWN_APP, tmp_path)
    wait_for_mark(tmp_path, "started", worker)
    time.sleep(0.5)  # the pool starts after the app
    worker.send_signal(signal.SIGINT)
    wait_for_mark_while_exiting(tmp_path, "stopping")
    worker.send_signal(signal.SIGINT)
    try:
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode is not None


def wait_for_mark_while_exiting(marks: Path, name: str) -> None:
    deadline = time.monotonic() + 20
    while not (marks / name).exists():
        assert time.monotonic() < deadline, f"{name} never appeared"
        time.sleep(0.02)


def test_two_signals_at_once_cut_the_grace_short_and_still_run_the_apps_shutdown(
    tmp_path: Path,
) -> None:
    """A terminal's SIGINT and a supervisor's SIGTERM arriving together (both handled
    before the worker wakes up): the second still cuts the grace period short rather than
    ending the process, so the app's lifespan shutdown runs."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:endpoints", seconds=120)
    wait_for_mark(tmp_path, "handler-started", worker)
    os.kill(worker.pid, signal.SIGINT)
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=20) == 0  # not the 30 s grace period
    assert not (tmp_path / "handler-finished").exists()
    assert (tmp_path / "lifespan-stopped").exists()


SLOW_IMPORT_APP = """
import time
from pathlib import Path

from starlette.applications import Starlette

from async_endpoints import AsyncEndpoints

Path("importing").write_text("")
time.sleep(float(Path("import-seconds").read_text()))  # an app slow to import

app = Starlette()
endpoints = AsyncEndpoints(app, run_workers=False)


async def noted(ctx):
    return None


endpoints.add_handler(noted)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_app_is_imported_stops_the_worker_with_status_zero(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """A supervisor's SIGTERM (or a Ctrl-C) that comes while the worker still imports the
    app is kept: the worker starts, stops at once and exits 0 (it was killed: -15, or a
    KeyboardInterrupt's traceback)."""
    (tmp_path / "import-seconds").write_text("1.5")
    worker = start_worker_of(SLOW_IMPORT_APP, tmp_path)
    wait_for_mark(tmp_path, "importing", worker)
    worker.send_signal(signum)
    assert worker.wait(timeout=30) == 0
    assert worker.stderr is not None
    logged = worker.stderr.read()
    assert "a signal came while the worker was starting: stopping" in logged
    assert "Traceback" not in logged


def test_a_second_signal_while_the_app_is_imported_ends_the_worker_at_once(
    tmp_path: Path,
) -> None:
    """Two signals while the app's import hangs: the process ends then, with status 0,
    rather than after the import."""
    (tmp_path / "import-seconds").write_text("600")
    worker = start_worker_of(SLOW_IMPORT_APP, tmp_path)
    wait_for_mark(tmp_path, "importing", worker)
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    try:
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()


def test_a_bad_target_is_a_usage_error(tmp_path: Path) -> None:
    """A target that is not MODULE:ATTRIBUTE of an AsyncEndpoints exits 2 with a message."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:app")
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 2 and "not AsyncEndpoints" in stderr


@pytest.mark.parametrize("level", ["bogus", "10", ""])
def test_a_log_level_logging_lacks_is_a_usage_error(tmp_path: Path, level: str) -> None:
    """--log-level must name a level of the logging module: anything else exits 2 with a
    usage message naming the choices, not a traceback."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:endpoints", "--log-level", level)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 2
    assert "invalid choice" in stderr and "Traceback" not in stderr


def test_a_log_level_is_read_whatever_its_case(tmp_path: Path) -> None:
    """--log-level debug serves as DEBUG does."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:endpoints", "--log-level", "debug")
    wait_for_mark(tmp_path, "handler-started", worker)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_the_workers_handlers_read_the_state_its_own_lifespan_yielded(tmp_path: Path) -> None:
    """The worker CLI runs the app's lifespan: its handlers' ``ctx.state`` is what that
    lifespan yielded, in the worker process itself."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:endpoints")
    wait_for_mark(tmp_path, "handler-started", worker)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert (tmp_path / "lifespan-state").read_text() == str(worker.pid)


def test_load_endpoints_names_what_is_wrong() -> None:
    """Malformed, missing and mistyped targets raise ConfigurationError."""
    assert isinstance(load_endpoints("tests.apps.cli_worker:endpoints"), AsyncEndpoints)
    for target, message in [
        ("tests.apps.cli_worker", r"MODULE:ATTRIBUTE \(such as tests.apps.cli_worker:endpoints\)"),
        # A misspelt attribute, or a file for the module: what to write instead is said.
        (
            "tests.apps.cli_worker:endpoint",
            "no attribute 'endpoint': the worker takes tests.apps.cli_worker:endpoints",
        ),
        ("main.py:endpoints", "'main.py' is a file name: name its module, main:endpoints"),
        # The ASGI app, as uvicorn takes it: the module's AsyncEndpoints is suggested.
        (
            "tests.apps.cli_worker:app",
            "not AsyncEndpoints: the worker takes tests.apps.cli_worker:endpoints",
        ),
        ("tests.apps.no_such_app:endpoints", "no module named 'tests.apps.no_such_app'"),
        ("no_such_package.app:endpoints", "no module named 'no_such_package.app'"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            load_endpoints(target)


def test_queues_serves_the_named_queues(tmp_path: Path) -> None:
    """--queues default: the worker serves that queue (its job runs) and exits 0."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:endpoints", "--queues", "default")
    wait_for_mark(tmp_path, "handler-started", worker)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("queues", "message"),
    [("high", "unknown queue 'high'"), ("default,default", "repeat"), ("", "non-empty")],
)
def test_queues_the_app_lacks_are_a_usage_error(tmp_path: Path, queues: str, message: str) -> None:
    """--queues naming a queue the app's queues setting lacks exits 2 with a message."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:endpoints", "--queues", queues)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 2 and message in stderr


async def test_a_pool_serves_only_its_queues_in_the_order_given() -> None:
    """running(queues=["low", "high"]): "low" first, "high" second, "mid" not at all."""
    engine = AsyncEndpoints(queues=("high", "mid", "low"), max_concurrency=1)
    ran: list[str] = []

    async def note(ctx: AsyncContext[str]) -> None:
        ran.append(ctx.request)

    engine.add_handler(note)
    async with engine.running(workers=False, queues=["low", "high"]):
        for queue in ("high", "mid", "low"):
            await engine.submit("note", queue, queue=queue)
        assert await engine.drain() == 2
    assert ran == ["low", "high"]


def start_worker_of(source: str, tmp_path: Path) -> subprocess.Popen[str]:
    """A worker of ``app_module:endpoints``, the module's code being ``source``."""
    (tmp_path / "app_module.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    command = [sys.executable, "-m", "async_endpoints", "worker", "app_module:endpoints"]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(
    ("failing", "shown"),
    [
        ("int('four')", "ValueError: invalid literal for int()"),
        (
            "import helpers_module_that_is_missing",
            "No module named 'helpers_module_that_is_missing'",
        ),
        ("open('/nonexistent/app-config.json')", "FileNotFoundError"),
        ("raise ModuleNotFoundError('this app needs PyYAML')", "this app needs PyYAML"),
    ],
    ids=["ValueError", "missing dependency", "OSError", "ModuleNotFoundError without a name"],
)
def test_an_error_of_the_apps_own_code_shows_its_traceback(
    tmp_path: Path, failing: str, shown: str
) -> None:
    """The app's module failing as it is imported is the app's error, not a wrong target:
    exit 1 with its traceback (file and line), as uvicorn shows it, not a usage line."""
    worker = start_worker_of(f"{failing}\n", tmp_path)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 1
    assert "Traceback" in stderr and "app_module.py" in stderr and shown in stderr
    assert "usage:" not in stderr


DICT_CONFIGURED_APP = """
import logging.config
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette

from async_endpoints import AsyncEndpoints

logging.config.dictConfig({"version": 1})  # disable_existing_loggers: True, the default


@asynccontextmanager
async def lifespan(app):
    await endpoints.submit("noted")
    yield {}


app = Starlette(lifespan=lifespan)
endpoints = AsyncEndpoints(app, run_workers=False)


async def noted(ctx):
    Path("ran").write_text("")  # the pool runs


endpoints.add_handler(noted)
"""


def test_the_apps_dict_config_does_not_silence_the_workers_own_lines(tmp_path: Path) -> None:
    """An app calling ``logging.config.dictConfig`` as it is imported (which disables the
    loggers it does not name, the library's among them): the worker still says it started
    and stopped, and that its in-memory store serves no other process."""
    worker = start_worker_of(DICT_CONFIGURED_APP, tmp_path)
    wait_for_mark(tmp_path, "ran", worker)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0
    assert "worker started" in stderr and "worker stopped" in stderr
    assert "this worker's store is in memory" in stderr


def test_a_factory_function_as_target_says_the_object_is_wanted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``module:create_app`` (an app factory, as ``uvicorn --factory`` takes): refused,
    saying the worker takes the AsyncEndpoints object itself and how to name one."""
    (tmp_path / "factory_module.py").write_text(
        "from async_endpoints import AsyncEndpoints\n\n"
        "def create_endpoints():\n    return AsyncEndpoints()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError, match="not a function that makes one"):
        load_endpoints("factory_module:create_endpoints")


def test_metrics_port_serves_the_workers_metrics(tmp_path: Path) -> None:
    """--metrics-port: the worker's own Prometheus metrics, counting the attempt it ran."""
    port = free_port()
    worker = start_worker(
        tmp_path, "tests.apps.cli_worker:endpoints", "--metrics-port", str(port), seconds=0.0
    )
    wait_for_mark(tmp_path, "handler-finished", worker)
    deadline = time.monotonic() + 20
    while True:
        text = scrape(port)
        if "async_endpoints_job_attempts_total{name=" in text and "completed" in text:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0
    assert f"metrics served at http://127.0.0.1:{port}/metrics" in stderr


def test_a_metrics_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    """A port another socket holds: exit 2 naming the problem, no worker started."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        worker = start_worker(
            tmp_path, "tests.apps.cli_worker:endpoints", "--metrics-port", str(port)
        )
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 2 and "in use" in stderr.lower()


@pytest.mark.parametrize("port", ["65536", "99999", "-1", "http"])
def test_a_metrics_port_out_of_range_is_a_usage_error(tmp_path: Path, port: str) -> None:
    """A port number outside 0-65535 (or no number): exit 2 naming it, no traceback."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:endpoints", "--metrics-port", port)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 2 and "--metrics-port" in stderr
    assert "Traceback" not in stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


@pytest.mark.parametrize(("flags", "frozen"), [((), True), (("--no-gc-freeze",), False)])
def test_the_startup_heap_is_frozen_unless_asked_not_to(
    tmp_path: Path, flags: tuple[str, ...], frozen: bool
) -> None:
    """By default the objects held once the app has started are frozen (gc.freeze) before
    the first job runs; --no-gc-freeze leaves them to the collector."""
    worker = start_worker(tmp_path, "tests.apps.cli_worker:endpoints", *flags)
    wait_for_mark(tmp_path, "handler-started", worker)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    count = int((tmp_path / "frozen-objects").read_text())
    assert (count > 10_000) is frozen, count


CRON_APP = """
import asyncio
import os
import time
from pathlib import Path

from starlette.applications import Starlette

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints._events import EventKind

marks = Path(os.environ["MARKS_DIR"])
app = Starlette()
endpoints = AsyncEndpoints(app, run_workers=False)


@endpoints.cron("* * * * * *", unique=False)
async def every_second(ctx: AsyncContext) -> None:
    if not (marks / "held").exists():
        (marks / "held").write_text("")
        await asyncio.sleep(3)  # the first cycle's job keeps the grace period going


def noted(event):
    if event.kind is EventKind.SUBMITTED and event.job.name == "every_second":
        with open(marks / "fired", "a") as fired:
            fired.write(f"{time.time()}\\n")


endpoints.events.subscribe(noted)
"""


def test_after_the_first_signal_the_worker_fires_no_more_cron_cycles(tmp_path: Path) -> None:
    """A schedule every second and a running job of it: from the first SIGTERM, while
    that job finishes in the grace period, the worker fires no cycle (the end of its
    `running` block stops the scheduler before the pool waits for its handlers; README
    "Restarts")."""
    (tmp_path / "cron_app.py").write_text(CRON_APP)
    env = {**os.environ, "MARKS_DIR": str(tmp_path), "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "async_endpoints", "worker", "cron_app:endpoints"]
    worker = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    wait_for_mark(tmp_path, "held", worker)
    worker.send_signal(signal.SIGTERM)
    signalled = time.time()
    assert worker.wait(timeout=30) == 0
    fired = [float(line) for line in (tmp_path / "fired").read_text().split()]
    assert fired, "the schedule fired no cycle at all"
    assert [moment for moment in fired if moment > signalled + 0.3] == []
