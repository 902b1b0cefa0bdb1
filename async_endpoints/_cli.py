"""``python -m async_endpoints worker MODULE:ATTRIBUTE``: a worker process without HTTP."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import logging
import signal
import sys
from collections.abc import Collection, Coroutine, Sequence
from typing import Any

from ._endpoints import AsyncEndpoints
from ._errors import ConfigurationError, JobStoreError, StoreUnavailableError
from ._memory import InMemoryJobStore
from ._store import JobStore
from ._worker import CANCEL_WAIT

logger = logging.getLogger("async_endpoints.worker")
#: The packages whose loggers are the worker's own output.
_OWN_LOGGERS = frozenset({"async_endpoints", "async_endpoints_redis"})
#: The --log-level values (those of the logging module).
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def load_endpoints(target: str) -> AsyncEndpoints:
    """Import ``MODULE:ATTRIBUTE`` and check that it is an `AsyncEndpoints`.

    Raises:
        ConfigurationError: the target is malformed, missing or of another type.
    """
    module_name, attribute = _parts(target)
    module = _imported(module_name)
    found: object = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ConfigurationError(
                f"{module_name} has no attribute {attribute!r}" + _suggested(module, module_name)
            )
        found = getattr(found, part)
    if not isinstance(found, AsyncEndpoints):
        message = f"{target} is a {type(found).__name__}, not AsyncEndpoints"
        suggested = _suggested(module, module_name)  # pointed at the ASGI app, say
        if not suggested and callable(found) and not isinstance(found, type):  # a factory
            suggested = (
                ": the worker takes the AsyncEndpoints object itself, not a function that "
                "makes one (bind it to a module attribute, endpoints = ..., and name that)"
            )
        raise ConfigurationError(message + suggested)
    return found


def _parts(target: str) -> tuple[str, str]:
    """The module name and attribute path of ``MODULE:ATTRIBUTE``.

    Raises:
        ConfigurationError: it is not of that form, or names a file (``main.py:...``).
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        example = f"{module_name or 'main'}:endpoints"
        raise ConfigurationError(f"expected MODULE:ATTRIBUTE (such as {example}), got {target!r}")
    if module_name.endswith(".py"):
        raise ConfigurationError(
            f"{module_name!r} is a file name: name its module, {module_name[:-3]}:{attribute}"
        )
    return module_name, attribute


def _imported(module_name: str) -> object:
    """The module ``module_name``, imported.

    Raises:
        ConfigurationError: the module itself (or a package of its path) is missing; a
            module the app's code imports and lacks is the app's error, raised with its
            traceback as any other error of its code.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # (The import system names the module in every one it raises: a nameless one is
        # the app's own.)
        missing = exc.name or ""
        if missing and (module_name + ".").startswith(missing + "."):
            raise ConfigurationError(
                f"no module named {module_name!r} (run the worker from the directory that "
                "holds it, or put it on PYTHONPATH)"
            ) from None
        raise


def _suggested(module: object, module_name: str) -> str:
    """``: the worker takes MODULE:NAME`` for the first `AsyncEndpoints` at the top of
    ``module``; "" when it has none."""
    found = [name for name, value in vars(module).items() if isinstance(value, AsyncEndpoints)]
    return f": the worker takes {module_name}:{found[0]}" if found else ""


class EarlySignals:
    """SIGTERM and SIGINT from the process's start (the app's import) until `run_worker`
    takes them over: the first is kept, and the worker stops as soon as it has started (its
    exit status 0, as for a signal after); a second ends the process at once (status 0:
    nothing was claimed), so that an import that hangs can still be interrupted."""

    def __init__(self) -> None:
        self.received = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.received:
            raise SystemExit(0)
        self.received = True


async def run_worker(
    endpoints: AsyncEndpoints,
    queues: Sequence[str] | None = None,
    *,
    freeze_heap: bool = True,
    early: EarlySignals | None = None,
) -> None:
    """Run the app's own lifespan and the worker pool until SIGTERM or SIGINT.

    The pool serves ``queues``, highest priority first (default: the ``queues`` setting).
    With ``freeze_heap``, what the process holds once the app has started is moved out of
    the garbage collector's sight before the pool starts (`freeze_startup_heap`).

    The first signal stops claiming and lets running handlers finish (up to
    ``shutdown_grace_period``); a second one cancels them at once, and the shutdown goes
    on (jobs given back, then the app's lifespan shutdown). A first signal while the app
    starts lets the startup end and then stops; a signal after it (or any signal once the
    pool has stopped, during the app's shutdown) ends the process without more ado. A
    store that cannot be reached at startup is waited for (a worker started during a
    Redis outage begins once Redis is back), and a signal ends the wait. A signal
    ``early`` kept (one that came while the app was imported) counts as the first.
    """
    stop = asyncio.Event()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    pool_running = False  # from the pool's start to the end of its stop
    grace_cut = False

    def on_signal() -> None:
        nonlocal grace_cut
        if stop.is_set() and pool_running and not grace_cut:  # the second signal
            grace_cut = True
            logger.warning("second signal: cancelling running handlers")
            endpoints.pool.end_grace()
        elif stop.is_set() and main is not None:
            logger.warning("another signal: ending at once")
            main.cancel()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    if early is not None and early.received:
        logger.info("a signal came while the worker was starting: stopping")
        on_signal()
    settings = endpoints.settings
    async with endpoints.app_lifespan() as state:
        endpoints.keep_lifespan_state(state)
        if await _store_reachable(endpoints.store, stop):
            if freeze_heap:
                freeze_startup_heap()
            async with endpoints.running(workers=True, queues=queues):
                pool_running = True
                logger.info(
                    "worker started: %d handler(s), max_concurrency=%d, queues=%s, store=%s",
                    sum(not name.startswith("async_endpoints.") for name in endpoints.handlers),
                    settings.max_concurrency,
                    ",".join(endpoints.pool.queues),
                    type(endpoints.store).__name__,
                )
                await stop.wait()
                logger.info(
                    "stopping: no new claims; waiting up to %gs", settings.shutdown_grace_period
                )
            pool_running = False  # the pool has stopped: the app's shutdown runs next
    logger.info("worker stopped")


def _keep_library_logs() -> None:
    """Enable the library's loggers again if the app's import disabled them: a
    ``logging.config.dictConfig`` leaves every logger it does not name disabled (its
    ``disable_existing_loggers``), and in the worker, which imports the library before the
    app, that is every line of the worker's own (its start, its jobs' failures...)."""
    for name, made in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(made, logging.Logger) and name.split(".")[0] in _OWN_LOGGERS:
            made.disabled = False


def freeze_startup_heap() -> None:
    """Collect once, then freeze (`gc.freeze`) every object the process holds: the
    modules, the app and what its startup built stay for the process's life, and a full
    collection no longer walks them. In a no-op drain from Redis that cut the collector's
    time per job from about 18 to 9 µs (the full collections from 11 to 3 µs). Frozen
    objects are still freed when nothing refers to them; only the cycle collector skips
    them, so one alive now that later ends up in an unreachable cycle is never freed."""
    gc.collect()
    gc.freeze()


class CannotStart(Exception):
    """The worker cannot start for a reason no wait would change (the store refused the
    credentials, say): said in one line, and the process exits with status 1."""


async def _store_reachable(store: JobStore, stop: asyncio.Event) -> bool:
    """Start ``store``, trying again with backoff while it is unavailable; False if stopped.

    Raises:
        CannotStart: the store refused to start (a `JobStoreError` other than
            unavailable, such as refused credentials, or a `ConfigurationError`).
    """
    delay = 0.1
    while not stop.is_set():
        try:
            await store.start()
        except StoreUnavailableError as exc:
            logger.warning("store unavailable, trying again in %.1f s: %s", delay, exc)
        except (JobStoreError, ConfigurationError) as exc:  # trying again won't do
            raise CannotStart(f"the store cannot start: {exc}") from exc
        else:
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
        delay = min(delay * 2, 2.0)
    return False


def _run(main: Coroutine[Any, Any, None], abandoned: Collection[asyncio.Task[Any]] = ()) -> None:
    """Like `asyncio.run`, but never held up at exit by a task that ignores cancellation.

    `asyncio.run` cancels the tasks left at the end and waits for them without a limit; a
    handler that swallows `CancelledError` would keep the process alive after shutdown.
    Here leftovers get `CANCEL_WAIT` seconds (the ``abandoned`` handlers, which had theirs
    already, none), then the loop is closed without them.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(main)
        _cancel_leftovers(loop, abandoned)
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _cancel_leftovers(
    loop: asyncio.AbstractEventLoop, abandoned: Collection[asyncio.Task[Any]]
) -> None:
    leftovers = asyncio.all_tasks(loop)
    for task in leftovers:
        task.cancel()
    waited = leftovers - set(abandoned)
    done: set[asyncio.Task[Any]] = set()
    if waited:
        done, _ = loop.run_until_complete(asyncio.wait(waited, timeout=CANCEL_WAIT))
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            logger.error("task %s failed while stopping", task.get_name(), exc_info=error)
    stuck = len(leftovers - done)
    if stuck:
        logger.error("exiting with %d task(s) that ignore cancellation", stuck)


def _port(text: str) -> int:
    """A TCP port number, 0 (any free port) to 65535 (argparse's ``type``)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """The command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m async_endpoints")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run the worker pool of MODULE:ATTRIBUTE")
    worker.add_argument("target", metavar="MODULE:ATTRIBUTE", help="the AsyncEndpoints object")
    worker.add_argument(
        "--queues",
        metavar="Q1,Q2",
        help="serve only these queues, highest priority first (default: the app's queues)",
    )
    worker.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve this worker's Prometheus metrics on PORT (needs the metrics extra)",
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address the metrics listen on (default 127.0.0.1)",
    )
    worker.add_argument(
        "--no-gc-freeze",
        dest="gc_freeze",
        action="store_false",
        help="leave the objects of the app's startup to the garbage collector (default: "
        "frozen once the app has started, so full collections skip them)",
    )
    worker.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=_LOG_LEVELS,
        metavar="LEVEL",
        help=f"logging level, one of {', '.join(_LOG_LEVELS)} (default INFO)",
    )
    args = parser.parse_args(argv)
    early = EarlySignals()
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        endpoints = load_endpoints(args.target)  # the app's own errors: their traceback
    except ConfigurationError as exc:
        worker.error(str(exc))
    queues = None
    if args.queues is not None:
        try:
            queues = endpoints.serving([name.strip() for name in args.queues.split(",")])
        except (ConfigurationError, ValueError) as exc:
            worker.error(str(exc))
    _keep_library_logs()
    if args.metrics_port is not None:
        try:
            port = endpoints.metrics.serve(args.metrics_port, args.metrics_host)
        except (ConfigurationError, OSError) as exc:
            worker.error(
                f"--metrics-port {args.metrics_port}: {getattr(exc, 'strerror', None) or exc}"
            )
        logger.info("metrics served at http://%s:%d/metrics", args.metrics_host, port)
    if isinstance(endpoints.store, InMemoryJobStore):
        logger.warning(
            "this worker's store is in memory: it runs only the jobs submitted in its own "
            "process, never those of the app's instances; give the app a shared store "
            "(RedisJobStore) for a worker process"
        )
    try:
        _run(
            run_worker(endpoints, queues, freeze_heap=args.gc_freeze, early=early),
            endpoints.pool.attempts.abandoned,
        )
    except CannotStart as exc:
        logger.error("%s", exc)
        return 1
    return 0
