"""``python -m async_endpoints``: see `async_endpoints._cli`."""

import sys

from ._cli import main

sys.exit(main())
