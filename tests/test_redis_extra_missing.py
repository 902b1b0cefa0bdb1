"""Without the ``redis`` extra, importing the Redis store says how to install it."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_redis_store_without_redis_py_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"  # as if redis-py were not installed
        "import async_endpoints_redis\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1
    assert 'pip install "async-endpoints[redis]"' in run.stderr
