"""A body given in code (`submit`, a batch's `JobSpec`, a schedule) reaches the handler as
the caller gave it, as a POST's body does: fields under their aliases, secrets by value,
fields declared ``exclude=True`` kept, defaults the caller saw kept; a body whose JSON
form the model would not read back is refused at once, storing nothing. On the in-memory
store and on a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    SecretBytes,
    SecretStr,
    field_serializer,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from typing_extensions import TypedDict

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    JobSpec,
    JobStore,
    JobValidationError,
)
from async_endpoints._handlers import Handler


class Card(BaseModel):
    number: SecretStr
    pin: int = Field(default=0, exclude=True)


class Order(BaseModel):
    item_name: str = Field(alias="itemName")
    card: Card
    cards: list[Card] = []
    trace: uuid.UUID = Field(default_factory=uuid.uuid4)
    tags: set[str] = set()
    internal: str = Field(exclude=True)


class Stamp(BaseModel):
    """A model whose own writing of a field is not what it reads."""

    at: datetime

    @field_serializer("at")
    def day_first(self, at: datetime) -> str:
        return at.strftime("%d/%m/%Y")


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: str


def seen(order: Order) -> dict[str, Any]:
    """What a handler reads of an order, secrets revealed."""
    return {
        "item": order.item_name,
        "card": [order.card.number.get_secret_value(), order.card.pin],
        "cards": [[c.number.get_secret_value(), c.pin] for c in order.cards],
        "trace": str(order.trace),
        "tags": sorted(order.tags),
        "internal": order.internal,
    }


@pytest.fixture
async def endpoints(store: JobStore) -> AsyncIterator[AsyncEndpoints]:
    endpoints = AsyncEndpoints(FastAPI(), store=store, max_retries=0)

    @endpoints.map_async_post("/orders", name="Order")
    async def order(ctx: AsyncContext[Order]) -> dict[str, Any]:
        return seen(ctx.request)

    @endpoints.map_async_post("/stamps", name="Stamp")
    async def stamp(ctx: AsyncContext[Stamp]) -> str:
        return ctx.request.at.isoformat()

    @endpoints.map_async_post("/loose", name="Loose")
    async def loose(ctx: AsyncContext[Loose]) -> dict[str, Any]:
        return ctx.request.model_dump()

    async with endpoints.running():
        yield endpoints


def an_order() -> Order:
    return Order(
        itemName="tea",
        card=Card(number="4111 1111", pin=1234),
        cards=[Card(number="5500 0000", pin=9)],
        tags={"b", "a"},
        internal="kept",
    )


EXPECTED = {
    "item": "tea",
    "card": ["4111 1111", 1234],
    "cards": [["5500 0000", 9]],
    "tags": ["a", "b"],
    "internal": "kept",
}


async def test_a_model_instance_reaches_the_handler_as_given(endpoints: AsyncEndpoints) -> None:
    """An instance of a model with an alias, secrets, excluded fields (nested too), a set
    and a default factory: the handler reads every value the caller's instance held."""
    given = an_order()
    job = await endpoints.wait_for((await endpoints.submit("Order", given)).id, timeout=10)
    assert job.status == "Completed", job.error
    assert job.result == {**EXPECTED, "trace": str(given.trace)}


async def test_plain_data_reaches_the_handler_as_a_post_would_send_it(
    endpoints: AsyncEndpoints,
) -> None:
    """Plain data under the model's aliases, with excluded fields: as over HTTP."""
    trace = uuid.uuid4()
    body = {
        "itemName": "tea",
        "card": {"number": "4111 1111", "pin": 1234},
        "cards": [{"number": "5500 0000", "pin": 9}],
        "trace": trace,
        "tags": {"b", "a"},
        "internal": "kept",
    }
    job = await endpoints.wait_for((await endpoints.submit("Order", body)).id, timeout=10)
    assert job.status == "Completed", job.error
    assert job.result == {**EXPECTED, "trace": str(trace)}


async def test_extra_fields_a_model_allows_reach_the_handler(endpoints: AsyncEndpoints) -> None:
    """A model allowing extra fields: an instance's extras are stored with it."""
    given = Loose(kind="a", colour="red")  # type: ignore[call-arg]
    job = await endpoints.wait_for((await endpoints.submit("Loose", given)).id, timeout=10)
    assert job.result == {"kind": "a", "colour": "red"}


async def test_a_batch_and_a_schedule_store_the_body_as_given(endpoints: AsyncEndpoints) -> None:
    """A batch's JobSpec and a schedule write their bodies the same way."""
    given = an_order()
    batch = await endpoints.submit_batch([JobSpec("Order", given)])
    [job] = (await endpoints.list_jobs(batch_id=batch.id)).jobs
    done = await endpoints.wait_for(job.id, timeout=10)
    assert done.result == {**EXPECTED, "trace": str(given.trace)}
    schedule = await endpoints.upsert_schedule("orders", "Order", "0 0 * * *", body=given)
    assert schedule.body is not None
    assert Order.model_validate_json(schedule.body) == given


async def test_a_body_whose_json_form_the_model_cannot_read_is_refused_storing_nothing(
    endpoints: AsyncEndpoints,
) -> None:
    """An instance of a model whose serializer writes a field in a form its validator
    refuses: refused at once with a JobValidationError naming the field, instead of a
    job every attempt of which would fail. The same value as plain JSON data, as a
    client would send it, is stored as given and runs."""
    at = datetime(2026, 12, 5, 8, 30, tzinfo=UTC)
    with pytest.raises(JobValidationError) as refused:
        await endpoints.submit("Stamp", Stamp(at=at))
    assert "reads back" in str(refused.value)
    assert [tuple(error["loc"]) for error in refused.value.errors] == [("at",)]
    assert await endpoints.store.count_waiting() == 0
    plain = {"at": at.isoformat()}
    job = await endpoints.wait_for((await endpoints.submit("Stamp", plain)).id, timeout=10)
    assert job.result == at.isoformat()


class Plain(BaseModel):
    a: int = 1


class WithSecret(Plain):
    secret: SecretStr


class Blob(BaseModel):
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    data: bytes
    key: SecretStr


class Tags(RootModel[dict[str, int]]):
    pass


class Keys(RootModel[list[SecretStr]]):
    pass


class Chosen(BaseModel):
    name: str = Field(validation_alias=AliasChoices("fullName", "name"))
    key: SecretStr


def handler_for(model: Any) -> Handler:
    async def handle(ctx: AsyncContext[Any]) -> None:
        return None

    handle.__annotations__ = {"ctx": AsyncContext[model], "return": None}
    return Handler.from_function(handle)


def worker_reads(model: Any, given: Any) -> Any:
    """What a worker reads of ``given`` submitted in code for a ``model`` body."""
    handler = handler_for(model)
    _, text = handler.coerce_body(given)
    assert text is not None
    return handler.parse_body(text)


def test_bodies_of_every_shape_reach_the_worker_as_given() -> None:
    """Root models (with secrets too), a generator, bytes the model writes in base64
    next to a secret, alias choices next to a secret: what the worker reads equals what
    the caller gave; a subclass instance given for its base keeps only the base's
    fields, its own secret is not stored."""
    assert worker_reads(Tags, Tags({"x": 1})) == Tags({"x": 1})
    keys = worker_reads(Keys, Keys([SecretStr("k1"), SecretStr("k2")]))
    assert [key.get_secret_value() for key in keys.root] == ["k1", "k2"]
    assert worker_reads(list[int], (n for n in range(3))) == [0, 1, 2]
    blob = worker_reads(Blob, Blob(data=b"abcd", key=SecretStr("s")))
    assert (blob.data, blob.key.get_secret_value()) == (b"abcd", "s")
    chosen = worker_reads(Chosen, {"fullName": "Ada", "key": "s"})
    assert (chosen.name, chosen.key.get_secret_value()) == ("Ada", "s")
    handler = handler_for(Plain)
    _, text = handler.coerce_body(WithSecret(a=2, secret=SecretStr("hunter2")))
    assert text is not None and "hunter2" not in text and "secret" not in text


class ByName(BaseModel):
    model_config = ConfigDict(validate_by_alias=False, validate_by_name=True)

    item_name: str = Field(alias="itemName")
    key: SecretStr


class Bytes64(BaseModel):
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    data: bytes = Field(exclude=True)
    key: SecretStr


class SecretBytes64(BaseModel):
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    key: SecretBytes


@pydantic_dataclass
class Login:
    user: str
    password: SecretStr
    attempts: int = Field(default=0, exclude=True)


class Headers(TypedDict):
    token: SecretStr


class Keyring(BaseModel):
    keys: set[SecretStr]
    big: int = Field(default=0, exclude_if=lambda value: value > 100)


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")

    key: SecretStr


class OpenChild(Open):
    note: str = Field(default="", exclude=True)


def test_secrets_and_excluded_fields_reach_the_worker_wherever_they_are() -> None:
    """Secrets in a model read by field name, in a dataclass, a TypedDict and a set;
    excluded fields of a dataclass, of bytes the model writes in base64, and left out by
    ``exclude_if``: the worker reads what was given. A subclass's own excluded field is
    not stored for a model that would take it as an extra."""
    by_name = worker_reads(ByName, ByName(item_name="tea", key=SecretStr("s")))
    assert (by_name.item_name, by_name.key.get_secret_value()) == ("tea", "s")
    blob = worker_reads(Bytes64, Bytes64(data=b"abcd", key=SecretStr("s")))
    assert (blob.data, blob.key.get_secret_value()) == (b"abcd", "s")
    login = worker_reads(Login, Login(user="ada", password=SecretStr("pw"), attempts=3))
    assert (login.password.get_secret_value(), login.attempts) == ("pw", 3)
    headers = worker_reads(Headers, {"token": SecretStr("t")})
    assert headers["token"].get_secret_value() == "t"
    ring = worker_reads(Keyring, Keyring(keys={SecretStr("k1"), SecretStr("k2")}, big=500))
    assert ({key.get_secret_value() for key in ring.keys}, ring.big) == ({"k1", "k2"}, 500)
    opened = worker_reads(Open, OpenChild(key=SecretStr("s"), note="child only"))
    assert (opened.key.get_secret_value(), opened.model_extra) == ("s", {})


def test_a_secret_the_walk_cannot_write_is_refused_not_stored_masked() -> None:
    """Secret bytes the model reads as base64: no text found reads back the same secret,
    so the body is refused (never stored as ``**********``)."""
    handler = handler_for(SecretBytes64)
    with pytest.raises(JobValidationError, match="reads back"):
        handler.coerce_body(SecretBytes64(key=SecretBytes(b"\xff\x00")))
