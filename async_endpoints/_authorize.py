"""Reading the answer of an app's ``authorize`` hook: only ``True`` lets a caller in.

A hook is typed ``-> bool``, but Python would take any truthy value for a yes: a
``JSONResponse(status_code=403)`` returned as a validator returns one, or a string such as
``"no"``, would show the job. So anything but ``True`` is a refusal, and the first answer
that is not a bool is logged (once per hook) so that the mistake is seen.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("async_endpoints")

#: The hooks whose non-bool answer has been logged.
_told: set[str] = set()


def grants(answer: object, hook: str) -> bool:
    """Whether ``answer``, what the hook named ``hook`` returned, lets the caller in:
    only when it is ``True``. A non-bool answer is a refusal, logged the first time."""
    if answer is True:
        return True
    if not isinstance(answer, bool) and hook not in _told:
        _told.add(hook)
        logger.warning(
            "%s returned %s, not a bool: taken as a refusal (only True lets a caller in)",
            hook,
            type(answer).__name__,
        )
    return False
