"""The JSON a job stores for a request body given in code (`submit`, batches, schedules).

A POST stores the body as the client sent it, and the worker reads it with the model
again. A body given in code has no text of its own, so one is written for it that the
model reads back as the caller meant, which the model's own dump does not always give:

- it writes fields under their names, where the model reads them under their aliases;
- it masks ``SecretStr`` / ``SecretBytes`` (the worker would get ``**********``);
- it leaves out fields declared ``exclude=True`` (the worker would get their default, or
  fail on a required one).

So the body is written as a client would send it: under the aliases the model reads,
secrets by their value, excluded fields included, the rest as the model writes it (its
serializers, round-trip form). A text the model does not read back is refused at once
(`JobValidationError`), rather than stored for every attempt of the job to fail on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError, to_json, to_jsonable_python


def body_json(adapter: TypeAdapter[Any], given: Any, value: Any) -> str:
    """The JSON to store for ``given``, which ``adapter`` validated as ``value``: the
    first of these that the model reads back: ``given`` as a client would send it,
    ``value`` so, then the model's own dump (by alias, then by name), for models whose
    fields are read under alias choices or paths.

    Raises:
        NotReadBackError: the model reads back none of them.
        PydanticSerializationError: the body has no JSON form at all (or TypeError /
            ValueError from a value pydantic cannot write).
    """
    candidates: tuple[Callable[[], bytes], ...] = (
        lambda: to_json(_as_sent(given)),
        lambda: to_json(_as_sent(value)),
        lambda: adapter.dump_json(value, by_alias=True, round_trip=True),
        lambda: adapter.dump_json(value, round_trip=True),
    )
    failures: list[Exception] = []
    for candidate in candidates:
        try:
            text = candidate().decode()
            adapter.validate_json(text)
        except (ValidationError, PydanticSerializationError, TypeError, ValueError) as exc:
            failures.append(exc)
            continue
        return text
    unread = [failure for failure in failures if isinstance(failure, ValidationError)]
    if unread:
        raise NotReadBackError(unread[0])
    raise failures[0]


class NotReadBackError(ValueError):
    """The model reads back no JSON form of a body it validated (``error`` says why)."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__("the model does not read back the body it was given")
        self.error = error


def _as_sent(value: Any) -> Any:
    """``value`` as JSON data a client would send for it."""
    if isinstance(value, BaseModel):
        return _model(value)
    if isinstance(value, dict):
        return {str(_as_sent(key)): _as_sent(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_sent(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [_as_sent(item) for item in value]
        return sorted(items, key=lambda item: to_json(item))
    if isinstance(value, SecretStr | SecretBytes):
        return _as_sent(value.get_secret_value())
    return to_jsonable_python(value)


def _model(model: BaseModel) -> dict[str, Any]:
    """A model instance as JSON data: its own dump (serializers, round-trip form), but
    each field under the key the model reads it by, secrets revealed, excluded fields
    included, and nested models written the same way."""
    dumped = model.model_dump(by_alias=True, round_trip=True)  # python mode: secrets kept
    data: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        own = getattr(model, name)
        if info.exclude or _holds_model(own):
            item = _as_sent(own)
        elif (written := _written_key(name, info)) in dumped:
            item = _as_sent(dumped[written])
        else:
            continue  # left out by the model's own serializer
        data[_read_key(name, info)] = item
    for key, item in (model.model_extra or {}).items():
        data[key] = _as_sent(item)
    return data


def _written_key(name: str, info: FieldInfo) -> str:
    return info.serialization_alias or info.alias or name


def _read_key(name: str, info: FieldInfo) -> str:
    alias = info.validation_alias
    if isinstance(alias, str):
        return alias
    return info.alias or name


def _holds_model(value: Any) -> bool:
    if isinstance(value, BaseModel):
        return True
    if isinstance(value, dict):
        return any(_holds_model(item) for item in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_model(item) for item in value)
    return False
