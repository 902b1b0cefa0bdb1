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
validated back before it is stored; for a body type that hides something, what it reads
back must also equal the value given (by the model's own dump, secrets by value), so that
no secret is stored masked. A body whose text the model would not read back (a serializer
writing a form its validator refuses, a secret in a place the walk does not reach) is
refused at once (`NotReadBackError`), rather than stored for every attempt of the job to
fail on, or to run with a masked secret.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import typing
import weakref
from collections.abc import Callable
from typing import Any, TypeGuard

import typing_extensions
from pydantic import (
    AliasChoices,
    BaseModel,
    PydanticUserError,
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
#: Collections written as JSON arrays in their own order (sets and deques too).
_SEQUENCES = (list, tuple, set, frozenset, collections.deque)


class NotReadBackError(ValueError):
    """The model reads back no JSON form of a body it validated (``error`` says why)."""

    def __init__(self, error: ValidationError | None) -> None:
        super().__init__("the model does not read back the body it was given")
        self.error = error


def body_json(adapter: TypeAdapter[Any], given: Any, value: Any, *, reveal: bool) -> str:
    """The JSON to store for ``given``, which ``adapter`` validated as ``value``: the
    first of these that the model reads back: with ``reveal``, the dump with secrets,
    excluded fields and read keys put back; the model's dump by alias; its dump by field
    name; ``given`` itself when it is plain JSON data (what a client would have sent, for
    a model whose serializer writes what its validator refuses). With ``reveal``, what is
    read back must also equal ``value`` as the model dumps it (secrets by value).

    Raises:
        NotReadBackError: the model reads back none of them (as ``value``).
        PydanticSerializationError: the body has no JSON form at all.
    """
    candidates: list[Callable[[], bytes | str]] = [
        lambda: adapter.dump_json(value, by_alias=True, round_trip=True),
        lambda: adapter.dump_json(value, round_trip=True),
    ]
    if reveal:
        candidates.insert(0, lambda: _revealed_json(adapter, value))
    candidates.append(lambda: _as_posted(given))
    failures: list[Exception] = []
    for candidate in candidates:
        try:
            text = candidate()
            back = adapter.validate_json(text)
            if reveal and not _same(adapter, back, value):
                failures.append(NotReadBackError(None))
                continue
        except (ValidationError, PydanticSerializationError, TypeError, ValueError) as exc:
            failures.append(exc)
            continue
        return text if isinstance(text, str) else text.decode()
    unread = [one for one in failures if isinstance(one, ValidationError | NotReadBackError)]
    if unread:
        first = unread[0]
        raise first if isinstance(first, NotReadBackError) else NotReadBackError(first)
    if isinstance(failures[0], PydanticUserError):  # a type pydantic cannot write
        raise PydanticSerializationError(str(failures[0]))
    raise failures[0]


def _same(adapter: TypeAdapter[Any], back: Any, value: Any) -> bool:
    """Whether ``back`` and ``value`` dump alike (declared fields; secrets by value)."""
    try:
        mine = adapter.dump_python(value, round_trip=True)
        return bool(adapter.dump_python(back, round_trip=True) == mine)
    except (PydanticSerializationError, TypeError, ValueError):
        return False


def _as_posted(given: Any) -> bytes:
    """``given`` as a client would have POSTed it, when it is plain JSON data (read only
    once the other texts failed: a walk of the whole body).

    Raises:
        TypeError: it is not.
        UnicodeEncodeError: it holds text with no UTF-8 form (a body with no JSON form).
    """
    if not _is_json(given):
        raise TypeError("the body given is not plain JSON data")
    return json.dumps(given, ensure_ascii=False).encode()


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
        extras = _hints(annotation).get("__pydantic_extra__")
        return any(
            _hides(annotation, name, info) or _needs_reveal(info.annotation, seen)
            for name, info in annotation.model_fields.items()
        ) or (extras is not None and _needs_reveal(extras, seen))
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        fields: dict[str, FieldInfo] = getattr(annotation, "__pydantic_fields__", {})
        if any(_hides(None, name, info) for name, info in fields.items()):
            return True
        return any(_needs_reveal(hint, seen) for hint in _hints(annotation).values())
    if typing_extensions.is_typeddict(annotation):
        return any(_needs_reveal(hint, seen) for hint in _hints(annotation).values())
    return any(_needs_reveal(argument, seen) for argument in typing.get_args(annotation))


def _hides(model: type[BaseModel] | None, name: str, info: FieldInfo) -> bool:
    """Whether the field is left out of the dump, or written under another key than
    the one the model reads it by."""
    if info.exclude or getattr(info, "exclude_if", None) is not None:
        return True
    return _written_key(name, info) != _read_key(model, name, info)


def _hints(annotation: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(annotation, include_extras=True)
    except (NameError, TypeError):
        return {}


def _revealed_json(adapter: TypeAdapter[Any], value: Any) -> bytes:
    dumped = adapter.dump_python(value, mode="json", by_alias=True, round_trip=True)
    declared = getattr(adapter, "_type", None)
    if typing.get_origin(declared) is typing.Annotated:  # Annotated[Model, Field(...)]
        declared = typing.get_args(declared)[0]
    model = declared if isinstance(declared, type) and issubclass(declared, BaseModel) else None
    return TypeAdapter(Any).dump_json(_revealed(value, dumped, model))


def _revealed(value: Any, dumped: Any, declared: type[BaseModel] | None = None) -> Any:
    """``dumped`` (the JSON-mode dump of ``value``) with what it hides put back;
    ``declared`` is the model the place of ``value`` is declared as, when known."""
    if isinstance(value, _SECRETS):
        secret = value.get_secret_value()
        return secret.decode() if isinstance(secret, bytes) else _plain(secret)
    if isinstance(value, RootModel):
        return _revealed(value.root, dumped)
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        return _model(value, dumped, declared)
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and isinstance(dumped, dict):
        return _dataclass(value, dumped)
    if isinstance(value, dict) and isinstance(dumped, dict) and len(value) == len(dumped):
        pairs = zip(value.values(), dumped.items(), strict=True)
        return {key: _revealed(item, written) for item, (key, written) in pairs}
    if isinstance(value, _SEQUENCES) and isinstance(dumped, list) and len(value) == len(dumped):
        return [_revealed(item, written) for item, written in zip(value, dumped, strict=True)]
    return dumped


def _model(
    model: BaseModel, dumped: dict[str, Any], declared: type[BaseModel] | None
) -> dict[str, Any]:
    """A model's dump with each field under the key the model reads it by, secrets
    revealed and excluded fields added (fields its serializer left out stay out); the
    fields of ``declared`` alone when given (a subclass instance keeps its own out)."""
    kind = declared if declared is not None and isinstance(model, declared) else type(model)
    data: dict[str, Any] = {}
    own = model.__dict__
    for name, info in kind.model_fields.items():
        written, read = _written_key(name, info), _read_key(kind, name, info)
        inner = info.annotation if _is_model(info.annotation) else None
        if written in dumped:
            kept = dumped[written]
            data[read] = _revealed(own.get(name), kept, inner) if _walks(kind, name) else kept
        elif (info.exclude or getattr(info, "exclude_if", None)) and name in own:
            alone = _field_adapter(kind, name).dump_python(
                own[name], mode="json", by_alias=True, round_trip=True
            )
            data[read] = _revealed(own[name], alone, inner)
    for key, item in (model.model_extra or {}).items():
        if key in dumped:
            data[key] = _revealed(item, dumped[key])
    return data


def _dataclass(value: Any, dumped: dict[str, Any]) -> dict[str, Any]:
    """A dataclass's dump with secrets revealed and its excluded fields added."""
    fields: dict[str, FieldInfo] = getattr(type(value), "__pydantic_fields__", {})
    data = dict(dumped)
    for field in dataclasses.fields(value):
        own = getattr(value, field.name)
        if field.name in dumped:
            data[field.name] = _revealed(own, dumped[field.name])
        elif field.name in fields and fields[field.name].exclude:
            hint = _hints(type(value)).get(field.name, Any)
            alone = TypeAdapter(hint).dump_python(own, mode="json", round_trip=True)
            data[field.name] = _revealed(own, alone)
    return data


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


#: Per model class, per field: whether its values are walked (`_walks`), and the adapter
#: that writes an excluded field alone (`_field_adapter`). Weak: a model class made at run
#: time is not kept alive by having been submitted once.
_WALKS: weakref.WeakKeyDictionary[type, dict[str, bool]] = weakref.WeakKeyDictionary()
_ADAPTERS: weakref.WeakKeyDictionary[type, dict[str, TypeAdapter[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _walks(model: type[BaseModel], name: str) -> bool:
    """Whether the values of ``model``'s field ``name`` may hold something to reveal (a
    field that cannot is copied from the dump as it is, unwalked)."""
    known = _WALKS.setdefault(model, {})
    if name not in known:
        known[name] = needs_reveal(model.model_fields[name].annotation)
    return known[name]


def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """An adapter writing ``model``'s field ``name`` alone, under the model's config
    (base64 bytes, say) when the field's type takes one."""
    known = _ADAPTERS.setdefault(model, {})
    if name not in known:
        annotation = model.model_fields[name].annotation or Any
        try:
            known[name] = TypeAdapter(annotation, config=model.model_config)
        except PydanticUserError:  # a model or dataclass: it has a config of its own
            known[name] = TypeAdapter(annotation)
    return known[name]


def _written_key(name: str, info: FieldInfo) -> str:
    return info.serialization_alias or info.alias or name


def _read_key(model: type[BaseModel] | None, name: str, info: FieldInfo) -> str:
    if model is not None and model.model_config.get("validate_by_alias") is False:
        return name
    alias = info.validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        first = next((choice for choice in alias.choices if isinstance(choice, str)), None)
        if first is not None:
            return first
    return info.alias or name


def _plain(secret: Any) -> Any:
    """The value inside a ``Secret[...]``, as JSON data."""
    return TypeAdapter(Any).dump_python(secret, mode="json")
