"""The README's complete example and its "Start now, take the result later" snippet, run
as written: the snippet's job completes with the example's result."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(heading: str) -> list[str]:
    """The ``python`` code blocks of the README section under ``heading``."""
    section = re.split(r"\n##+ ", README.read_text().split(f"\n{heading}\n", 1)[1])[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


async def test_the_start_now_snippet_completes_on_the_complete_example() -> None:
    """``submit`` then ``wait_for`` on the README's own app give its Completed result."""
    [example] = python_blocks("## A complete example")
    [snippet] = python_blocks("### Start now, take the result later")
    names: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(example, "README.md", "exec"), names)
    body = "async def start_now():\n" + textwrap.indent(snippet, "    ") + "    return job\n"
    exec(compile(body, "README.md", "exec"), names)
    async with names["endpoints"].running():
        job = await names["start_now"]()
    assert job.status.value == "Completed"
    assert job.result == {"processed_data": "acme:X", "character_count": 1}
