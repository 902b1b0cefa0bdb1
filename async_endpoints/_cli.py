"""``python -m async_endpoints worker MODULE:ATTRIBUTE``: a worker process without HTTP."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from ._endpoints import AsyncEndpoints
from ._errors import ConfigurationError

logger = logging.getLogger("async_endpoints.worker")


def load_endpoints(target: str) -> AsyncEndpoints:
    """Import ``MODULE:ATTRIBUTE`` and check that it is an `AsyncEndpoints`.

    Raises:
        ConfigurationError: the target is malformed, missing or of another type.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(f"expected MODULE:ATTRIBUTE, got {target!r}")
    module = importlib.import_module(module_name)
    found: object = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ConfigurationError(f"{module_name} has no attribute {attribute!r}")
        found = getattr(found, part)
    if not isinstance(found, AsyncEndpoints):
        raise ConfigurationError(f"{target} is a {type(found).__name__}, not AsyncEndpoints")
    return found


async def run_worker(endpoints: AsyncEndpoints) -> None:
    """Run the app's own lifespan and the worker pool until SIGTERM or SIGINT.

    The first signal stops claiming and lets running handlers finish (up to
    ``shutdown_grace_period``); a second one cancels them at once.
    """
    stop = asyncio.Event()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            logger.warning("second signal: cancelling running handlers")
            main.cancel()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    settings = endpoints.settings
    async with endpoints.app_lifespan(), endpoints.running(workers=True):
        logger.info(
            "worker started: %d handler(s), max_concurrency=%d, store=%s",
            len(endpoints.handlers),
            settings.max_concurrency,
            type(endpoints.store).__name__,
        )
        await stop.wait()
        logger.info("stopping: no new claims; waiting up to %gs", settings.shutdown_grace_period)
    logger.info("worker stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """The command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m async_endpoints")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run the worker pool of MODULE:ATTRIBUTE")
    worker.add_argument("target", metavar="MODULE:ATTRIBUTE", help="the AsyncEndpoints object")
    worker.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        endpoints = load_endpoints(args.target)
    except (ConfigurationError, ImportError) as exc:
        parser.error(str(exc))
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(run_worker(endpoints))
    return 0
