"""The OpenAPI document FastAPI serves for async endpoints and the job-details route."""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints
from tests.wire import JOB_FIELDS


class Address(BaseModel):
    street: str
    city: str


class Priority(StrEnum):
    NORMAL = "normal"
    EXPRESS = "express"


class Shipment(BaseModel):
    reference: str
    weight_kg: float
    destination: Address
    stops: list[Address] = []
    priority: Priority = Priority.NORMAL


class Category(BaseModel):
    label: str
    children: list[Category] = []


@pytest.fixture
async def openapi(http_client_for) -> dict[str, Any]:
    """The /openapi.json of a FastAPI app with body, no-body, recursive and details routes."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/tenants/{tenant}/regions/{region}/shipments", name="Ship")
    async def ship(ctx: AsyncContext[Shipment]) -> None: ...

    @endpoints.map_async_post("/reports/nightly", name="NightlyReport")
    async def nightly(ctx: AsyncContext) -> None: ...

    @endpoints.map_async_post("/categories", name="ImportCategories")
    async def categories(ctx: AsyncContext[Category]) -> None: ...

    endpoints.map_job_details("/jobs/{job_id}")
    async with http_client_for(app) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` anywhere in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, or the component it refers to."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.removeprefix("#/components/schemas/")
    component: dict[str, Any] = document["components"]["schemas"][name]
    return component


def request_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    body = document["paths"][path]["post"]["requestBody"]
    return resolve(document, body["content"]["application/json"]["schema"])


def path_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "path"}


SHIP = "/tenants/{tenant}/regions/{region}/shipments"


async def test_the_async_post_is_listed_with_its_request_body_schema(openapi) -> None:
    """POST path appears with a required JSON body whose schema is the request model's."""
    body = openapi["paths"][SHIP]["post"]["requestBody"]
    schema = request_schema(openapi, SHIP)
    assert body["required"] is True
    assert set(schema["properties"]) == {
        "reference",
        "weight_kg",
        "destination",
        "stops",
        "priority",
    }
    assert set(schema["required"]) == {"reference", "weight_kg", "destination"}
    assert schema["properties"]["weight_kg"]["type"] == "number"


async def test_nested_models_are_inlined_in_the_request_body_schema(openapi) -> None:
    """A nested model's fields appear in place, not behind a #/$defs reference."""
    properties = request_schema(openapi, SHIP)["properties"]
    destination = resolve(openapi, properties["destination"])
    stop = resolve(openapi, properties["stops"]["items"])
    assert set(destination["properties"]) == set(stop["properties"]) == {"street", "city"}
    assert resolve(openapi, properties["priority"])["enum"] == ["normal", "express"]


async def test_no_reference_dangles_anywhere_in_the_document(openapi) -> None:
    """No #/$defs reference survives, and every $ref names an existing component."""
    components = openapi.get("components", {}).get("schemas", {})
    assert "#/$defs" not in json.dumps(openapi) and '"$defs"' not in json.dumps(openapi)
    for ref in refs(openapi):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in components, ref


async def test_the_202_response_schema_is_the_job_json(openapi) -> None:
    """202's schema is JobModel, a component whose properties are the camelCase job fields."""
    responses = openapi["paths"][SHIP]["post"]["responses"]
    schema = responses["202"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/JobModel"}
    job_model = openapi["components"]["schemas"]["JobModel"]
    assert set(job_model["properties"]) == JOB_FIELDS


async def test_the_path_parameters_are_listed(openapi) -> None:
    """Each path parameter of the route is a required path parameter of the operation."""
    operation = openapi["paths"][SHIP]["post"]
    parameters = path_parameters(operation)
    assert set(parameters) == {"tenant", "region"}
    assert len(operation["parameters"]) == 2  # listed once each
    assert all(parameter["required"] is True for parameter in parameters.values())


async def test_a_no_body_endpoint_is_listed_without_a_request_body(openapi) -> None:
    """AsyncContext without a model: the POST has no requestBody, still answers 202."""
    operation = openapi["paths"]["/reports/nightly"]["post"]
    assert "requestBody" not in operation and "202" in operation["responses"]


async def test_a_recursive_model_yields_a_finite_schema_without_dangling_refs(openapi) -> None:
    """A self-referencing request model is documented without a #/$defs reference."""
    schema = request_schema(openapi, "/categories")
    assert set(schema["properties"]) == {"label", "children"}
    assert not [ref for ref in refs(schema) if not ref.startswith("#/components/schemas/")]


async def test_the_job_details_route_is_listed_with_its_job_id_parameter(openapi) -> None:
    """GET /jobs/{job_id} appears with a required job_id path parameter and the job JSON."""
    operation = openapi["paths"]["/jobs/{job_id}"]["get"]
    assert set(path_parameters(operation)) == {"job_id"}
    assert path_parameters(operation)["job_id"]["required"] is True
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert resolve(openapi, schema) == openapi["components"]["schemas"]["JobModel"]
    assert "404" in operation["responses"]
