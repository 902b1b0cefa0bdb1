"""The JSON a job stores for a request body given in code (`submit`, batches, schedules).

A POST stores the body as the client sent it, and the worker reads it with the model
again. A body given in code has no text of its own, so one is written for it that the
model reads back as the caller meant. The model's own dump, by alias and in round-trip
form, is that text for most models; it is not for a model that

- masks secrets (``SecretStr``, ``SecretBytes``, ``Secret[...]``: the worker would get
  ``**********``);
- leaves out fields declared ``exclude=True`` (the worker would get their default, or
  fail on a required one);
- reads a field under another key than it writes it (a ``validation_alias``, a
  ``serialization_alias``).

For a body type holding any of these (`needs_reveal`, found once per handler from its
annotations), the dump is walked beside the value: secrets written by their value,
excluded fields added, keys put back to the ones the model reads. Either way the text is
validated back before it is stored, and a body whose text the model would not read back
(a serializer writing a form its validator refuses) is refused at once (`NotReadBackError`),
rather than stored for every attempt of the job to fail on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from collections.abc import Callable
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    RootModel,
    Secret,
    SecretBytes,
    SecretStr,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError

_SECRETS = (SecretStr, SecretBytes, Secret)


class NotReadBackError(ValueError):
    """The model reads back no JSON form of a body it validated (``error`` says why)."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__("the model does not read back the body it was given")
        self.error = error


def body_json(adapter: TypeAdapter[Any], given: Any, value: Any, *, reveal: bool) -> str:
    """The JSON to store for ``given``, which ``adapter`` validated as ``value``: the
    first of these that the model reads back: with ``reveal``, the dump with secrets,
    excluded fields and read keys put back; the model's dump by alias; its dump by field
    name; ``given`` itself when it is plain JSON data (what a client would have sent, for
    a model whose serializer writes what its validator refuses).

    Raises:
        NotReadBackError: the model reads back none of them.
        PydanticSerializationError: the body has no JSON form at all.
    """
    candidates: list[Callable[[], bytes | str]] = [
        lambda: adapter.dump_json(value, by_alias=True, round_trip=True),
        lambda: adapter.dump_json(value, round_trip=True),
    ]
    if reveal:
        candidates.insert(0, lambda: _revealed_json(adapter, value))
    if _is_json(given):
        # Encoded here, so that text with no UTF-8 form fails as a body with no JSON form.
        candidates.append(lambda: json.dumps(given, ensure_ascii=False).encode())
    failures: list[Exception] = []
    for candidate in candidates:
        try:
            text = candidate()
            adapter.validate_json(text)
        except (ValidationError, PydanticSerializationError, UnicodeError, ValueError) as exc:
            failures.append(exc)
            continue
        return text if isinstance(text, str) else text.decode()
    unread = [failure for failure in failures if isinstance(failure, ValidationError)]
    if unread:
        raise NotReadBackError(unread[0])
    raise failures[0]


def _is_json(data: Any, depth: int = 0) -> bool:
    """Whether ``data`` is made of JSON's own types alone (str keys)."""
    if depth > 64:
        return False
    if data is None or isinstance(data, str | bool | int | float):
        return True
    if isinstance(data, list):
        return all(_is_json(item, depth + 1) for item in data)
    if isinstance(data, dict):
        return all(isinstance(key, str) and _is_json(item, depth + 1) for key, item in data.items())
    return False


def needs_reveal(annotation: Any) -> bool:
    """Whether bodies of type ``annotation`` may hold something the model's own dump
    does not write as the model reads it: a secret, an excluded field, a field read
    under another key than it is written."""
    return _needs_reveal(annotation, set())


def _needs_reveal(annotation: Any, seen: set[int]) -> bool:
    if id(annotation) in seen:
        return False
    seen.add(id(annotation))
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, _SECRETS):
        return True
    if isinstance(origin, type) and issubclass(origin, _SECRETS):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(
            _hides(info) or _needs_reveal(info.annotation, seen)
            for info in annotation.model_fields.values()
        )
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        fields: dict[str, FieldInfo] = getattr(annotation, "__pydantic_fields__", {})
        if any(_hides(info) for info in fields.values()):
            return True
        return any(_needs_reveal(hint, seen) for hint in _hints(annotation).values())
    if typing.is_typeddict(annotation):
        return any(_needs_reveal(hint, seen) for hint in _hints(annotation).values())
    return any(_needs_reveal(argument, seen) for argument in typing.get_args(annotation))


def _hides(info: FieldInfo) -> bool:
    moved = info.serialization_alias is not None and info.serialization_alias != info.alias
    return bool(info.exclude) or info.validation_alias is not None or moved


def _hints(annotation: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(annotation, include_extras=True)
    except (NameError, TypeError):
        return {}


def _revealed_json(adapter: TypeAdapter[Any], value: Any) -> bytes:
    dumped = adapter.dump_python(value, mode="json", by_alias=True, round_trip=True)
    return TypeAdapter(Any).dump_json(_revealed(value, dumped))


def _revealed(value: Any, dumped: Any) -> Any:
    """``dumped`` (the JSON-mode dump of ``value``) with what it hides put back."""
    if isinstance(value, _SECRETS):
        secret = value.get_secret_value()
        return secret.decode() if isinstance(secret, bytes) else _plain(secret)
    if isinstance(value, RootModel):
        return _revealed(value.root, dumped)
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        return _model(value, dumped)
    if isinstance(value, dict) and isinstance(dumped, dict) and len(value) == len(dumped):
        pairs = zip(value.values(), dumped.items(), strict=True)
        return {key: _revealed(item, written) for item, (key, written) in pairs}
    if isinstance(value, list | tuple) and isinstance(dumped, list) and len(value) == len(dumped):
        return [_revealed(item, written) for item, written in zip(value, dumped, strict=True)]
    return dumped


def _model(model: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    """A model's dump with each field under the key the model reads it by, secrets
    revealed and excluded fields added (fields its serializer left out stay out)."""
    data: dict[str, Any] = {}
    own = model.__dict__
    for name, info in type(model).model_fields.items():
        written = info.serialization_alias or info.alias or name
        if written in dumped:
            kept = dumped[written]
            hidden = _field_hides(type(model), name)
            data[_read_key(name, info)] = _revealed(own.get(name), kept) if hidden else kept
        elif info.exclude and name in own:
            alone = TypeAdapter(Any if info.annotation is None else info.annotation).dump_python(
                own[name], mode="json", by_alias=True, round_trip=True
            )
            data[_read_key(name, info)] = _revealed(own[name], alone)
    for key, item in (model.model_extra or {}).items():
        if key in dumped:
            data[key] = _revealed(item, dumped[key])
    return data


@functools.lru_cache(maxsize=4096)
def _field_hides(model: type[BaseModel], name: str) -> bool:
    """Whether the values of ``model``'s field ``name`` may hold something to reveal (a
    field that cannot is copied from the dump as it is, unwalked)."""
    return needs_reveal(model.model_fields[name].annotation)


def _read_key(name: str, info: FieldInfo) -> str:
    alias = info.validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return info.alias or name


def _plain(secret: Any) -> Any:
    """The value inside a ``Secret[...]``, as JSON data."""
    return TypeAdapter(Any).dump_python(secret, mode="json")
