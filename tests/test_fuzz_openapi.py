"""Property-based fuzzing of the example app from its own OpenAPI document: no input
yields a 5xx.

Two fuzzers, each bounded so the file runs in seconds:

- schemathesis generates requests from every operation's schemas, valid and invalid ones
  (wrong types, missing fields, odd path parameters);
- hypothesis sends hostile JSON the schemas know nothing about (lone surrogates, non-finite
  numbers, integers of thousands of digits, nesting thousands deep, raw bytes) to every
  POST operation of the same document.

Each runs against its own fresh import of ``example_app.main`` on the in-memory store,
served in-process with its lifespan (and so its workers) running.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.python import asgi

from async_endpoints import InMemoryJobStore

EXAMPLE_APP = Path(__file__).resolve().parents[1] / "example_app" / "main.py"
FUZZ_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def fresh_example_app(name: str) -> ModuleType:
    """A new instance of ``example_app.main`` (its own app, endpoints and in-memory store)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLE_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ):
        os.environ.pop("REDIS_URL", None)
        spec.loader.exec_module(module)
    assert isinstance(module.endpoints.store, InMemoryJobStore)
    return module


# --- schemathesis: requests generated from the schemas ------------------------------------

# Loaded from the app's own document (no request, no lifespan at collection); schemathesis
# starts the app's lifespan on the first call and `stop_schemathesis_apps` ends it.
schemathesis_app = fresh_example_app("example_app_under_schemathesis").app
schema = schemathesis.openapi.from_dict(schemathesis_app.openapi())
schema.app = schemathesis_app


@pytest.fixture(scope="module", autouse=True)
def stop_schemathesis_apps() -> Iterator[None]:
    """Shut down the lifespans schemathesis started (their worker pools drain)."""
    yield
    asgi.shutdown_lifespans()


@schema.parametrize()
@FUZZ_SETTINGS
def test_no_request_generated_from_the_openapi_document_gets_a_5xx(case: Any) -> None:
    """Every operation, fed valid and invalid inputs from its schemas, answers below 500."""
    response = case.call()
    assert response.status_code < 500, (response.status_code, response.text[:500])


# --- hypothesis: hostile JSON the schemas know nothing about ------------------------------


PATHS = fresh_example_app("example_app_paths").app.openapi()["paths"]
POST_TEMPLATES = [path for path, item in PATHS.items() if "post" in item]
BODY_TEMPLATES = [path for path in POST_TEMPLATES if "requestBody" in PATHS[path]["post"]]


@pytest.fixture
async def example_client(http_client_for) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh example app whose lifespan (and workers) are running."""
    module = fresh_example_app("example_app_under_hypothesis")
    async with http_client_for(module.app) as client:
        yield client


def fill_path(template: str, value: str) -> str:
    """``template`` with each ``{parameter}`` replaced by ``value``, percent-encoded."""
    parts = template.split("/")
    filled = [quote(value, safe="") if p.startswith("{") and p.endswith("}") else p for p in parts]
    return "/".join(filled)


# Integers past 4300 digits cannot even be repr()ed by default, which hypothesis needs; they
# are drawn as a placeholder and written out when the body is serialised.
HUGE_INT = re.compile(r'"HUGE-INT-(\d+)"')
ANY_TEXT = st.text(
    st.characters(exclude_categories=()) | st.characters(categories=["Cs"]), max_size=40
)  # lone surrogates drawn often
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=4000, max_value=6000).map(lambda digits: f"HUGE-INT-{digits}")
    | st.floats(allow_nan=True, allow_infinity=True)
    | ANY_TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)
# Close to the example's models (a text field, then anything), so bodies get past parsing.
PLAUSIBLE_OBJECTS = st.fixed_dictionaries(
    {"data": ANY_TEXT},
    optional={"processing_priority": JSON_VALUES, "ip_address": JSON_VALUES},
)


def serialised(value: Any) -> bytes:
    """Python's JSON (NaN and Infinity tokens, "\\ud800" escapes), huge integers written out."""
    text = HUGE_INT.sub(lambda match: "9" * int(match[1]), json.dumps(value))
    return text.encode()


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """JSON-ish bytes: plausible objects with hostile fields, deep nests, raw bytes."""
    kind = draw(st.sampled_from(["object", "object", "value", "deep", "bytes"]))
    if kind == "object":
        return serialised(draw(PLAUSIBLE_OBJECTS | st.dictionaries(ANY_TEXT, JSON_VALUES)))
    if kind == "value":
        return serialised(draw(JSON_VALUES))
    if kind == "deep":
        depth = draw(st.integers(min_value=100, max_value=200_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"data":', "}")]))
        return (opener * depth + "1" + closer * depth).encode()
    return draw(st.binary(max_size=200))


@pytest.mark.parametrize("template", POST_TEMPLATES)
@settings(FUZZ_SETTINGS, suppress_health_check=[*HealthCheck])
@given(body=hostile_bodies(), path_value=st.just("acme") | ANY_TEXT.filter(bool))
async def test_no_hostile_json_body_gets_a_5xx_from_any_post_operation(
    example_client: httpx.AsyncClient, template: str, body: bytes, path_value: str
) -> None:
    """Surrogates, NaN, 5000-digit integers, 200,000-deep nesting, raw bytes: never a 5xx."""
    path = fill_path(template, path_value.encode("utf-8", "replace").decode())
    response = await example_client.post(
        path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code < 500, (path, body[:200], response.status_code, response.text)


# --- hostile bodies, pinned (the first two once broke the example's synchronous route) -------

PINNED = {
    # FastAPI's own routes read JSON with Python's parser, which accepts lone surrogates;
    # submit() then refused the text no worker could read back, and the route answered 500.
    "lone-surrogate": b'{"data": "caf\\udce9"}',
    # 1e999 parses to infinity; FastAPI's default 422 echoed it and could not write it: 500.
    "float-overflow": b'{"data": "x", "processing_priority": 1e999}',
    "int-5000-digits": b'{"data": "x", "processing_priority": ' + b"9" * 5000 + b"}",
    # One past 2**53: no JSON reader keeps it exactly (the synchronous route's job once
    # failed on it as a result, and the route answered 502).
    "int-past-2**53": b'{"data": "x", "processing_priority": 9007199254740993}',
    "nested-100k-deep": b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("template", BODY_TEMPLATES)
@pytest.mark.parametrize("body", PINNED.values(), ids=PINNED.keys())
async def test_pinned_hostile_bodies_get_a_4xx_from_every_operation_taking_a_body(
    example_client: httpx.AsyncClient, template: str, body: bytes
) -> None:
    """A lone surrogate, 1e999, 5000 digits, 100,000-deep nesting: 4xx from every POST."""
    response = await example_client.post(
        fill_path(template, "acme"), content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
