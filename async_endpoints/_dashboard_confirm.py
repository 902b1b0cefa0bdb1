"""The dashboard's actions that ask first: the question each asks, and when.

With the page's script, the browser asks (``confirm()``) and the form is sent with
``confirmed=1``. Without it the form arrives unconfirmed, and the dashboard answers with
a page asking the same question, whose button sends the same fields again, confirmed:
an action that asks first never acts on one click, script or not.
"""

from __future__ import annotations

from collections.abc import Mapping

#: The field a confirmed form carries (set by the page's script, or by the page asking).
FIELD = "confirmed"

#: The questions, by action (the names the templates pass to their forms).
QUESTIONS = {
    "pause-all": "Pause every queue? No worker starts a job until they are resumed.",
    "requeue-selected": "Queue the selected Failed or Canceled jobs again?",
    "cancel-selected": "Cancel the selected waiting or running jobs? Running ones are stopped.",
    "cancel-batch": "Cancel every unfinished job of this batch and its continuations?",
}


#: The questions of the bulk actions with the number of jobs ticked (the page asking
#: knows it; the browser's ``confirm()`` asks the plain ones).
_COUNTED = {
    "requeue-selected": "Queue the {} selected Failed or Canceled {} again?",
    "cancel-selected": "Cancel the {} selected waiting or running {}? Running ones are stopped.",
}


def question(action: str, fields: Mapping[str, str], picked: int = 0) -> str | None:
    """What ``action`` asks before acting on ``fields`` (None: it acts at once): pause
    asks only when it pauses every queue (no queue given); a bulk action on ``picked``
    ticked jobs says how many, and asks nothing when none is ticked (it only answers
    that none was)."""
    if action == "pause":
        return None if fields.get("queue") else QUESTIONS["pause-all"]
    if action in _COUNTED:
        jobs = "job" if picked == 1 else "jobs"
        return _COUNTED[action].format(picked, jobs) if picked else None
    return QUESTIONS.get(action)


def confirmed(fields: Mapping[str, str]) -> bool:
    """Whether the form says its question was answered yes."""
    return fields.get(FIELD) == "1"
