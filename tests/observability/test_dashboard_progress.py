"""The dashboard's progress bar: drawn for the progress shapes it knows, never for others."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from async_endpoints import AsyncEndpoints
from async_endpoints._dashboard_views import progress_share
from tests.observability.dashboard_app import Gate
from tests.observability.dashboard_client import client, engine, gate  # the fixtures
from tests.redis.support import eventually

__all__ = ["client", "engine", "gate"]


@pytest.mark.parametrize(
    ("value", "share"),
    [
        ({"done": 2, "of": 5}, 0.4),
        ({"message": "resizing", "done": 3, "total": 4}, 0.75),
        ({"current": 0, "total": 10}, 0.0),
        ({"completed": 7, "of": 7}, 1.0),
        ({"percent": 62.5}, 0.625),
        ({"percent": 100, "done": 1, "of": 4}, 1.0),  # percent, when given, is the share
        ({"done": 10**400, "of": 10**401}, 0.1),  # integers beyond a float's range
        (0.25, 0.25),
        (1.0, 1.0),
    ],
)
def test_a_progress_value_saying_a_share_done_gets_that_share(value: Any, share: float) -> None:
    assert progress_share(value) == pytest.approx(share)


@pytest.mark.parametrize(
    "value",
    [
        3,  # an integer may be a step's number
        True,
        "50%",
        None,
        [1, 4],
        {"done": 1},
        {"done": 1, "of": 0},
        {"done": True, "of": 2},
        {"done": "1", "of": "2"},
        {"done": 5, "of": 4},  # more than all: not a share
        {"done": -1, "of": 4},
        {"percent": 150},
        {"percent": float("nan")},
        {"done": float("inf"), "of": float("inf")},
        {"percent": 10**400},  # too large for a float
        1.5,
        -0.1,
        float("nan"),
    ],
)
def test_a_progress_value_of_another_shape_gets_no_bar(value: Any) -> None:
    assert progress_share(value) is None


async def test_the_running_list_and_the_job_page_draw_a_known_progress_as_a_bar(
    engine: AsyncEndpoints, client: httpx.AsyncClient, gate: Gate
) -> None:
    """A Steps job that reported {"done": 1, "of": 4}: a bar of 25 % beside its JSON on
    the queues page, the running list and its own page; a Report job's progress (no
    share) is JSON text only."""
    stepped = await engine.submit("Steps")
    other = await engine.submit("Report", {"text": "no share"})
    async with engine.running():
        gate.step.put_nowait(None)

        async def both_reported() -> bool:
            jobs = [await engine.get_job(stepped.id), await engine.get_job(other.id)]
            return all(job is not None and job.progress is not None for job in jobs)

        await eventually(both_reported)
        bar = '<svg class="bar progress-bar"'
        for path in ("/dashboard/", "/dashboard/jobs?status=InProgress"):
            page = (await client.get(path)).text
            row = page[page.index(f'data-job="{stepped.id}"') :]
            row = row[: row.index("</tr>")]
            assert bar in row and 'aria-label="25 % done"' in row and 'width="25.00"' in row
            other_row = page[page.index(f'data-job="{other.id}"') :]
            assert bar not in other_row[: other_row.index("</tr>")]
        own = (await client.get(f"/dashboard/jobs/{stepped.id}")).text
        assert 'aria-label="25 % done"' in own
        assert bar not in (await client.get(f"/dashboard/jobs/{other.id}")).text
        for _ in range(2):  # its other steps, then it returns
            gate.step.put_nowait(None)
        gate.open.set()


@pytest.mark.parametrize(
    ("value", "said", "width"),
    [
        ({"done": 29, "of": 100}, "29 % done", "29.00"),
        ({"percent": 57}, "57 % done", "57.00"),
        ({"done": 2, "of": 3}, "66 % done", "66.67"),
        (0.999, "99 % done", "99.90"),  # not done yet: never rounded up to 100
    ],
)
def test_the_bars_label_is_the_whole_percent_done(
    engine: AsyncEndpoints, value: Any, said: str, width: str
) -> None:
    from async_endpoints._dashboard import Dashboard

    macros = Dashboard(engine, lambda request: True, "/dashboard").templates.globals["m"]
    drawn = str(macros.progress_bar(value))
    assert f'aria-label="{said}"' in drawn and f'width="{width}"' in drawn
