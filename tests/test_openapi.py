"""The OpenAPI document FastAPI serves for async endpoints and the job-details route (and
what a plain Starlette app's SchemaGenerator reads of them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, Literal

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, create_model
from starlette.applications import Starlette
from starlette.schemas import SchemaGenerator

from async_endpoints import AsyncContext, AsyncEndpoints, ConfigurationError
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


class Letters:
    """Another part of the app, with models of its own."""

    class Address(BaseModel):
        po_box: int


@pytest.fixture
async def openapi(http_client_for) -> dict[str, Any]:
    """The /openapi.json of a FastAPI app with body, no-body, recursive and details routes."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/tenants/{tenant}/regions/{region}/shipments", name="Ship")
    async def ship(ctx: AsyncContext[Shipment]) -> None: ...

    @endpoints.map_async_post("/reports/nightly", name="NightlyReport")
    async def nightly(ctx: AsyncContext) -> None:
        """Build the nightly report.

        It covers the day before, in UTC."""

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


async def test_an_operation_is_summarised_from_its_name_in_words_and_described_by_its_docstring(
    openapi,
) -> None:
    """ "NightlyReport" reads "Nightly Report" (not FastAPI's "Nightlyreport"), and the
    handler's docstring is the operation's description; a handler without one has none."""
    nightly = openapi["paths"]["/reports/nightly"]["post"]
    assert nightly["summary"] == "Nightly Report"
    assert (
        nightly["description"] == "Build the nightly report.\n\nIt covers the day before, in UTC."
    )
    categories = openapi["paths"]["/categories"]["post"]
    assert categories["summary"] == "Import Categories" and "description" not in categories


async def test_a_request_model_and_the_models_it_nests_are_named_components(openapi) -> None:
    """The body refers to the model by its name (generated clients get a named type), and
    the models it nests are components too, referred to from it."""
    body = openapi["paths"][SHIP]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Shipment"}
    properties = request_schema(openapi, SHIP)["properties"]
    assert properties["destination"] == {"$ref": "#/components/schemas/Address"}
    assert properties["stops"]["items"] == {"$ref": "#/components/schemas/Address"}
    destination = resolve(openapi, properties["destination"])
    assert set(destination["properties"]) == {"street", "city"}
    assert resolve(openapi, properties["priority"])["enum"] == ["normal", "express"]


async def test_no_reference_dangles_anywhere_in_the_document(openapi) -> None:
    """No #/$defs reference survives, and every $ref names an existing component."""
    components = openapi.get("components", {}).get("schemas", {})
    assert "#/$defs" not in json.dumps(openapi) and '"$defs"' not in json.dumps(openapi)
    for ref in refs(openapi):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in components, ref


async def test_the_202_response_schema_is_the_job_json(openapi) -> None:
    """202's schema is a component whose properties are the camelCase job fields."""
    responses = openapi["paths"][SHIP]["post"]["responses"]
    schema = responses["202"]["content"]["application/json"]["schema"]
    assert set(resolve(openapi, schema)["properties"]) == JOB_FIELDS
    job_model = openapi["components"]["schemas"]["JobModel"]
    assert set(job_model["properties"]) == JOB_FIELDS


class Quote(BaseModel):
    price: float
    currency: str


async def test_result_is_typed_by_the_handler_return_annotation(http_client_for) -> None:
    """The 202 and the 200 (Prefer: wait) of an endpoint whose handler returns a Quote
    show ``result`` as a Quote (or null); an unannotated handler's result is open."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/quotes", name="Quote")
    async def quote(ctx: AsyncContext) -> Quote: ...

    @endpoints.map_async_post("/anything", name="Anything")
    async def anything(ctx: AsyncContext):  # type: ignore[no-untyped-def]
        ...

    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    responses = document["paths"]["/quotes"]["post"]["responses"]
    for code in ("202", "200"):
        model = resolve(document, responses[code]["content"]["application/json"]["schema"])
        assert set(model["properties"]) == JOB_FIELDS
        result = model["properties"]["result"]
        assert {"$ref": "#/components/schemas/Quote"} in result["anyOf"]
        assert {"type": "null"} in result["anyOf"]
    open_schema = document["paths"]["/anything"]["post"]["responses"]["202"]
    schema = open_schema["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/JobModel"}


async def test_the_submission_headers_are_documented(openapi) -> None:
    """X-Async-Request-Id, Idempotency-Key and Prefer appear as optional header parameters."""
    operation = openapi["paths"][SHIP]["post"]
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    assert set(headers) == {"X-Async-Request-Id", "Idempotency-Key", "Prefer"}
    assert not any(header["required"] for header in headers.values())


async def test_put_patch_and_delete_endpoints_are_listed(http_client_for) -> None:
    """map_async_put/patch/delete appear under their method with a 202 job answer."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_put("/items/{item}", name="ReplaceItem")
    async def replace(ctx: AsyncContext[Address]) -> None: ...

    @endpoints.map_async_patch("/items/{item}", name="PatchItem")
    async def patch(ctx: AsyncContext[Address]) -> None: ...

    @endpoints.map_async_delete("/items/{item}", name="DeleteItem")
    async def delete(ctx: AsyncContext) -> None: ...

    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    item = document["paths"]["/items/{item}"]
    assert set(item) == {"put", "patch", "delete"}
    assert "requestBody" in item["put"] and "requestBody" not in item["delete"]
    assert {item[m]["operationId"] for m in item} == {
        "ReplaceItem_put",
        "PatchItem_patch",
        "DeleteItem_delete",
    }
    assert all("202" in item[m]["responses"] for m in item)


async def test_the_path_parameters_are_listed(openapi) -> None:
    """Each path parameter of the route is a required path parameter of the operation."""
    operation = openapi["paths"][SHIP]["post"]
    parameters = path_parameters(operation)
    assert set(parameters) == {"tenant", "region"}
    assert len([p for p in operation["parameters"] if p["in"] == "path"]) == 2  # once each
    assert all(parameter["required"] is True for parameter in parameters.values())


async def test_a_no_body_endpoint_is_listed_without_a_request_body(openapi) -> None:
    """AsyncContext without a model: the POST has no requestBody, still answers 202."""
    operation = openapi["paths"]["/reports/nightly"]["post"]
    assert "requestBody" not in operation and "202" in operation["responses"]


async def test_a_recursive_model_refers_to_itself_whole(openapi) -> None:
    """A self-referencing request model is one component whose children refer to it."""
    schema = request_schema(openapi, "/categories")
    assert set(schema["properties"]) == {"label", "children"}
    assert schema["properties"]["children"]["items"] == {"$ref": "#/components/schemas/Category"}


async def test_a_model_name_taken_by_another_schema_gets_a_number_and_a_shared_model_one_entry(
    http_client_for,
) -> None:
    """A FastAPI route of the app takes a different model also named ``Address``: the
    async endpoint's is ``Address2`` (and the model nesting it refers to that one), FastAPI's
    keeps its name. A model both take (``Priority``) is one component."""
    app = FastAPI()

    @app.post("/letters")
    async def letter(address: Letters.Address, priority: Priority) -> None: ...

    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/shipments", name="Ship")
    async def ship(ctx: AsyncContext[Shipment]) -> None: ...

    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    components = document["components"]["schemas"]
    assert set(components["Address"]["properties"]) == {"po_box"}
    assert set(components["Address2"]["properties"]) == {"street", "city"}
    shipment = request_schema(document, "/shipments")
    assert shipment["properties"]["destination"] == {"$ref": "#/components/schemas/Address2"}
    assert [name for name in components if name.startswith("Priority")] == ["Priority"]
    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in components, ref


async def test_same_named_models_of_two_modules_are_two_components_each_listed_once(
    http_client_for,
) -> None:
    """Two modules each have an ``Address``; a FastAPI route takes the first (FastAPI,
    seeing one, names it ``Address``) and async endpoints nest both. The first is that one
    component, not listed again under a module-qualified name; the second is a component
    of its own; every reference resolves."""
    first = create_model("Address", __module__="shop.orders", street=(str, ...))
    second = create_model("Address", __module__="shop.invoices", city=(str, ...))
    order = create_model("Order", __module__="shop.orders", ship_to=(first, ...))
    invoice = create_model("Invoice", __module__="shop.invoices", bill_to=(second, ...))
    app = FastAPI()

    async def plain(address: Any) -> None:
        return None

    plain.__annotations__ = {"address": first, "return": None}  # a local, not a global
    app.add_api_route("/addresses", plain, methods=["POST"])
    endpoints = AsyncEndpoints(app, run_workers=False)
    for path, model in (("/orders", order), ("/invoices", invoice)):

        async def handler(ctx: Any) -> None:
            return None

        handler.__annotations__ = {"ctx": AsyncContext[model], "return": None}
        endpoints.add_async_route("POST", path, handler, name=model.__name__)
    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    components = document["components"]["schemas"]
    with_street = [
        name for name, schema in components.items() if "street" in schema.get("properties", {})
    ]
    with_city = [
        name for name, schema in components.items() if "city" in schema.get("properties", {})
    ]
    assert with_street == ["Address"] and len(with_city) == 1
    assert request_schema(document, "/orders")["properties"]["ship_to"] == {
        "$ref": "#/components/schemas/Address"
    }
    assert request_schema(document, "/invoices")["properties"]["bill_to"] == {
        "$ref": f"#/components/schemas/{with_city[0]}"
    }
    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in components, ref


async def test_a_same_titled_model_nesting_another_modules_model_is_not_taken_for_fastapis(
    http_client_for,
) -> None:
    """FastAPI lists ``shop.Order`` (nesting ``shop.Address``); an async endpoint takes
    ``billing.Order`` (nesting ``billing.Address``, another schema) and another takes a
    third ``Order``. The billing body looks like FastAPI's ``Order`` until its ``Address``
    is renamed for the clash: it is not taken for it, and each body, followed through its
    references, is its own model's."""
    shop_address = create_model("Address", __module__="shop", street=(str, ...))
    shop_order = create_model("Order", __module__="shop", ship_to=(shop_address, ...))
    bill_address = create_model("Address", __module__="billing", city=(str, ...))
    bill_order = create_model("Order", __module__="billing", ship_to=(bill_address, ...))
    other_order = create_model("Order", __module__="other", n=(int, ...))
    app = FastAPI()

    async def plain(order: Any) -> None:
        return None

    plain.__annotations__ = {"order": shop_order, "return": None}
    app.add_api_route("/shop", plain, methods=["POST"])
    endpoints = AsyncEndpoints(app, run_workers=False)
    for path, model in (("/bill", bill_order), ("/other", other_order)):

        async def handler(ctx: Any) -> None:
            return None

        handler.__annotations__ = {"ctx": AsyncContext[model], "return": None}
        endpoints.add_async_route("POST", path, handler, name=path.strip("/"))
    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()

    def nested(path: str) -> set[str]:
        return set(
            resolve(document, request_schema(document, path)["properties"]["ship_to"])["properties"]
        )

    assert nested("/shop") == {"street"} and nested("/bill") == {"city"}
    assert set(request_schema(document, "/other")["properties"]) == {"n"}
    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"]


def test_a_document_built_by_get_openapi_itself_still_has_the_whole_body() -> None:
    """An app replacing ``openapi()`` with its own call of FastAPI's ``get_openapi`` (as
    FastAPI's docs show) still gets the request body, its nested models written in place."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/shipments", name="Ship")
    async def ship(ctx: AsyncContext[Shipment]) -> None: ...

    document = get_openapi(title="Shipping", version="1", routes=app.routes)
    body = document["paths"]["/shipments"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert set(schema["properties"]["destination"]["properties"]) == {"street", "city"}
    assert not [ref for ref in refs(body) if "$defs" in ref]


async def test_the_job_details_route_is_listed_with_its_job_id_parameter(openapi) -> None:
    """GET /jobs/{job_id} appears with a required job_id path parameter and the job JSON."""
    operation = openapi["paths"]["/jobs/{job_id}"]["get"]
    assert set(path_parameters(operation)) == {"job_id"}
    assert path_parameters(operation)["job_id"]["required"] is True
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert resolve(openapi, schema) == openapi["components"]["schemas"]["JobModel"]
    assert "404" in operation["responses"]


async def document_with_job_routes(http_client_for, path: str, model: Any) -> dict[str, Any]:
    """The OpenAPI document of an app with one async POST at ``path`` (a body of
    ``model``) and every job route the library adds (details, cancel, events, a batch)."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    async def handler(ctx: Any) -> None:
        return None

    handler.__annotations__ = {"ctx": AsyncContext[model], "return": None}  # this module's
    # annotations are text, read in its globals: ``model`` is a local

    endpoints.add_async_route("POST", path, handler, name="Report")
    endpoints.map_job_details()
    endpoints.map_job_cancel()
    endpoints.map_job_events()
    endpoints.map_batch_details()
    async with http_client_for(app) as client:
        document: dict[str, Any] = (await client.get("/openapi.json")).json()
    return document


async def test_every_error_answer_of_every_route_documents_its_json_body(http_client_for) -> None:
    """Each route the library adds (submissions, job details, cancel, events, a batch)
    documents every error status it answers with the JSON body it sends: ``{"detail"}``."""
    document = await document_with_job_routes(http_client_for, "/reports", Shipment)
    errors = {
        (path, method, code): answer
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for code, answer in operation["responses"].items()
        if int(code) >= 400
    }
    routes = {(path, method) for path, method, _ in errors}
    assert routes == {
        ("/reports", "post"),
        ("/jobs/{job_id}", "get"),
        ("/jobs/{job_id}/cancel", "post"),
        ("/jobs/{job_id}/events", "get"),
        ("/batches/{batch_id}", "get"),
    }
    for where, answer in errors.items():
        schema = answer["content"]["application/json"]["schema"]
        assert schema["required"] == ["detail"], where
        assert answer["description"], where
    for route in routes - {("/reports", "post")}:
        assert {"404", "503"} <= {code for path, method, code in errors if (path, method) == route}


async def test_error_bodies_path_parameters_long_polls_and_event_streams_are_typed(
    http_client_for,
) -> None:
    """What a generated client needs: an error's ``detail`` is text (a 422's the
    validation list or text, as FastAPI's); a path convertor's type is the parameter's
    (``{n:int}`` an integer), a job's and a batch's id a UUID; the job-details GET lists
    its long-polling ``Prefer`` header; the event stream is ``text/event-stream`` only."""
    path = "/items/{item_id:int}/scans/{scan:uuid}"
    document = await document_with_job_routes(http_client_for, path, Address)
    post = document["paths"]["/items/{item_id}/scans/{scan}"]["post"]
    assert path_parameters(post)["item_id"]["schema"] == {"type": "integer"}
    assert path_parameters(post)["scan"]["schema"] == {"type": "string", "format": "uuid"}
    detail = post["responses"]["409"]["content"]["application/json"]["schema"]["properties"]
    assert detail["detail"] == {"type": "string"}
    unprocessable = post["responses"]["422"]["content"]["application/json"]["schema"]
    kinds = unprocessable["properties"]["detail"]["anyOf"]
    assert {"type": "string"} in kinds
    (listed,) = [kind for kind in kinds if kind.get("type") == "array"]
    assert set(listed["items"]["required"]) == {"loc", "msg", "type"}
    details = document["paths"]["/jobs/{job_id}"]["get"]
    assert path_parameters(details)["job_id"]["schema"] == {"type": "string", "format": "uuid"}
    headers = [p["name"] for p in details["parameters"] if p["in"] == "header"]
    assert headers == ["Prefer"]
    batch = document["paths"]["/batches/{batch_id}"]["get"]
    assert path_parameters(batch)["batch_id"]["schema"]["format"] == "uuid"
    events = document["paths"]["/jobs/{job_id}/events"]["get"]["responses"]["200"]
    assert set(events["content"]) == {"text/event-stream"}


async def test_a_starlette_apps_schema_generator_reads_the_handlers_yaml_docstring() -> None:
    """A plain Starlette app documents routes with ``SchemaGenerator``, which reads the
    YAML part of an endpoint's docstring: an async endpoint's is its handler's."""
    app = Starlette()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/shipments", name="Ship")
    async def ship(ctx: AsyncContext[Shipment]) -> None:
        """Ship a parcel.
        ---
        summary: Ship a parcel
        responses:
          202:
            description: The job was accepted.
        """

    @endpoints.map_async_post("/untold", name="Untold")
    async def untold(ctx: AsyncContext[Shipment]) -> None: ...

    generator = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "Shipping", "version": "1"}})
    schema = generator.get_schema(routes=app.routes)
    assert schema["paths"]["/shipments"]["post"]["summary"] == "Ship a parcel"
    assert "202" in str(schema["paths"]["/shipments"]["post"]["responses"])
    assert "/untold" not in schema.get("paths", {})


class Letter(BaseModel):
    recipient: str


@pytest.mark.filterwarnings("ignore:Duplicate Operation ID:UserWarning")  # made on purpose
async def test_bodies_are_named_per_route_whatever_the_operation_ids(http_client_for) -> None:
    """Two AsyncEndpoints on one app, each with a handler named "convert" (so two
    operations with one id), and an app route given that id too: each async endpoint's
    body is its own model, the app route's body is left as FastAPI wrote it, a router
    included under two prefixes gets the body twice, and no mark of the library's is
    left in the document."""
    app = FastAPI()
    first, second = AsyncEndpoints(app, run_workers=False), AsyncEndpoints(app, run_workers=False)

    @app.post("/mine", operation_id="convert")
    async def mine(letter: Letter) -> None: ...

    @first.map_async_post("/v1/convert", name="convert")
    async def convert_shipment(ctx: AsyncContext[Shipment]) -> None: ...

    @second.map_async_post("/v2/convert", name="convert")
    async def convert_category(ctx: AsyncContext[Category]) -> None: ...

    router = APIRouter()

    @first.map_async_post("/notes", name="note", router=router)
    async def note(ctx: AsyncContext[Address]) -> None: ...

    app.include_router(router, prefix="/a")
    app.include_router(router, prefix="/b")
    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    assert request_schema(document, "/v1/convert")["title"] == "Shipment"
    assert request_schema(document, "/v2/convert")["title"] == "Category"
    assert request_schema(document, "/mine")["title"] == "Letter"
    assert request_schema(document, "/a/notes") == request_schema(document, "/b/notes")
    assert request_schema(document, "/a/notes")["title"] == "Address"
    assert "x-async-endpoints" not in json.dumps(document)


async def test_a_route_mapped_after_the_document_was_built_is_named_once(http_client_for) -> None:
    """The document is built, a route is mapped, the document is built again (and again):
    its body is ``Shipment``, with no numbered copies of components left behind."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/categories", name="ImportCategories")
    async def categories(ctx: AsyncContext[Category]) -> None: ...

    async with http_client_for(app) as client:
        before = (await client.get("/openapi.json")).json()

        @endpoints.map_async_post("/shipments", name="Ship")
        async def ship(ctx: AsyncContext[Shipment]) -> None: ...

        after = (await client.get("/openapi.json")).json()
        again = (await client.get("/openapi.json")).json()
    assert "/shipments" not in before["paths"] and after == again
    body = after["paths"]["/shipments"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Shipment"}
    assert not [name for name in after["components"]["schemas"] if name[-1].isdigit()]


def operation_ids(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (path, method): operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


async def test_a_router_included_twice_keeps_its_operation_ids_unique(http_client_for) -> None:
    """One router under /v1 and /v2 (API versions): the first path keeps the job name as
    its operation id, the second gets the name and its path's words (the document would
    be invalid with one id twice), as FastAPI's own routes there get ids of their own."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)
    router = APIRouter()

    @endpoints.map_async_post("/reports", name="BuildReport", router=router)
    async def build(ctx: AsyncContext[Address]) -> None: ...

    @endpoints.map_async_delete("/reports", name="DropReport", router=router)
    async def drop(ctx: AsyncContext) -> None: ...

    app.include_router(router, prefix="/v1")
    app.include_router(router, prefix="/v2")
    async with http_client_for(app) as client:
        first = operation_ids((await client.get("/openapi.json")).json())
        app.openapi_schema = None
        again = operation_ids((await client.get("/openapi.json")).json())
    assert first == again  # asked again, each path keeps its id
    assert {key: first[key] for key in first if key[0].endswith("/reports")} == {
        ("/v1/reports", "post"): "BuildReport",
        ("/v1/reports", "delete"): "DropReport_delete",
        ("/v2/reports", "post"): "BuildReport_v2_reports",
        ("/v2/reports", "delete"): "DropReport_delete_v2_reports",
    }


def tagged_ids(route: Any) -> str:
    return f"{route.tags[0] if route.tags else 'api'}-{route.name}"


@pytest.mark.parametrize("where", ["app", "router"])
async def test_the_apps_own_generate_unique_id_function_names_async_endpoints_too(
    http_client_for, where: str
) -> None:
    """FastAPI's recipe for generated clients (ids from tags and names) covers the async
    endpoints as it does the app's own routes."""
    app = FastAPI(generate_unique_id_function=tagged_ids) if where == "app" else FastAPI()
    router = APIRouter(
        tags=["items"],
        **({"generate_unique_id_function": tagged_ids} if where == "router" else {}),
    )
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/build", name="Build", router=router)
    async def build(ctx: AsyncContext) -> None: ...

    @router.get("/ordinary", name="ordinary")
    async def ordinary() -> None: ...

    app.include_router(router)
    async with http_client_for(app) as client:
        ids = operation_ids((await client.get("/openapi.json")).json())
    assert ids[("/build", "post")] == "items-Build"
    assert ids[("/ordinary", "get")] == "items-ordinary"


async def test_an_operation_id_given_to_the_route_is_its_id(http_client_for) -> None:
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/build", name="Build", operation_id="startBuild")
    async def build(ctx: AsyncContext) -> None: ...

    async with http_client_for(app) as client:
        ids = operation_ids((await client.get("/openapi.json")).json())
    assert ids[("/build", "post")] == "startBuild"
    with pytest.raises(ConfigurationError, match="operation_id need a FastAPI app"):
        AsyncEndpoints(Starlette()).add_async_post("/x", build, operation_id="x")


async def test_a_prefixed_router_included_bare_and_under_a_prefix_keeps_ids_unique(
    http_client_for,
) -> None:
    """APIRouter(prefix="/api") included as it is and under /v2: /api/build keeps the
    name, /v2/api/build gets its own id (the router's own route, made when the route was
    mapped, takes none)."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)
    router = APIRouter(prefix="/api")

    @endpoints.map_async_post("/build", name="Build", router=router)
    async def build(ctx: AsyncContext) -> None: ...

    app.include_router(router)
    app.include_router(router, prefix="/v2")
    async with http_client_for(app) as client:
        ids = operation_ids((await client.get("/openapi.json")).json())
    assert ids[("/api/build", "post")] == "Build"
    assert ids[("/v2/api/build", "post")] == "Build_v2_api_build"


async def test_the_apps_own_id_function_names_the_job_routes_too(http_client_for) -> None:
    app = FastAPI(generate_unique_id_function=tagged_ids)
    endpoints = AsyncEndpoints(app, run_workers=False)
    endpoints.map_job_details()
    endpoints.map_job_cancel()
    endpoints.map_job_events()
    async with http_client_for(app) as client:
        ids = operation_ids((await client.get("/openapi.json")).json())
    assert ids[("/jobs/{job_id}", "get")] == "api-get_jobs_job_id"
    assert ids[("/jobs/{job_id}/cancel", "post")].startswith("api-")
    assert ids[("/jobs/{job_id}/events", "get")].startswith("api-")


def test_a_blank_operation_id_is_refused() -> None:
    endpoints = AsyncEndpoints(FastAPI())

    async def build(ctx: AsyncContext) -> None: ...

    with pytest.raises(ConfigurationError, match="operation_id must be a non-blank str"):
        endpoints.add_async_post("/build", build, operation_id=" ")


async def test_the_path_parameters_of_router_prefixes_are_listed_too(http_client_for) -> None:
    """An async endpoint on ``APIRouter(prefix="/tenants/{tenant}")`` included under
    ``/orgs/{org}`` declares all three of its path's parameters, as FastAPI's own route on
    that router does (OpenAPI needs each one declared; generated clients lose the rest)."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)
    router = APIRouter(prefix="/tenants/{tenant}")

    @endpoints.map_async_post("/items/{item}", router=router, name="ImportItem")
    async def import_item(ctx: AsyncContext) -> None: ...

    app.include_router(router, prefix="/orgs/{org}")
    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/orgs/{org}/tenants/{tenant}/items/{item}"]["post"]
    parameters = path_parameters(operation)
    assert set(parameters) == {"org", "tenant", "item"}
    assert all(parameter["required"] is True for parameter in parameters.values())
    assert len([p for p in operation["parameters"] if p["in"] == "path"]) == 3


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


Pet = Annotated[Cat | Dog, Field(discriminator="kind")]


class Adoption(BaseModel):
    pet: Pet


@pytest.mark.parametrize("in_a_field", [False, True], ids=["the body", "a field"])
async def test_a_tagged_unions_mapping_names_the_components(
    http_client_for, in_a_field: bool
) -> None:
    """A discriminated union, as the body or in it: its ``discriminator.mapping`` names
    ``#/components/schemas/Cat`` and ``Dog``, which are there (it named references not
    yet settled, which no document holds)."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    async def adopt_pet(ctx: AsyncContext[Pet]) -> None: ...

    async def adopt(ctx: AsyncContext[Adoption]) -> None: ...

    endpoints.map_async_post("/adoptions", name="Adopt")(adopt if in_a_field else adopt_pet)
    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    mappings = list(discriminator_mappings(document))
    assert mappings == [{"cat": "#/components/schemas/Cat", "dog": "#/components/schemas/Dog"}]
    assert {"Cat", "Dog"} <= set(document["components"]["schemas"])


def discriminator_mappings(node: Any) -> Iterator[dict[str, str]]:
    """Every discriminator's mapping anywhere in ``node``."""
    if isinstance(node, dict):
        found = node.get("discriminator")
        if isinstance(found, dict) and "mapping" in found:
            yield found["mapping"]
        for value in node.values():
            yield from discriminator_mappings(value)
    elif isinstance(node, list):
        for item in node:
            yield from discriminator_mappings(item)
