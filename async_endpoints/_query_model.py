"""Declared query parameters: an async endpoint's ``query=Model`` option.

The model (a pydantic ``BaseModel``) is validated against the query string the job keeps
(sensitive parameters already left out) when the job is submitted, so a bad value answers
``422`` with nothing stored, and again for each attempt, where the handler reads it as
``ctx.query``. Values are text, read as FastAPI reads query parameters: a field whose
type is a list (or tuple, set, sequence) takes every value of a repeated key, any other
the last; the key is the field's validation alias (any of an ``AliasChoices``), else its
alias, else its name. A field holding a model, or read through an ``AliasPath``, is
refused: no query string gives one.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, AliasPath, BaseModel, ValidationError
from pydantic.fields import FieldInfo
from starlette.datastructures import QueryParams

from ._capture import query_name_key, query_name_keys
from ._errors import ConfigurationError, JobValidationError, summarize_errors

_MANY = (list, tuple, set, frozenset)


@dataclass(frozen=True, slots=True)
class QueryModel:
    """A handler's query model and the keys of its fields that take every value."""

    model: type[BaseModel]
    many: frozenset[str]

    @classmethod
    def of(cls, model: object, sensitive: Iterable[str]) -> QueryModel | None:
        """The query model ``model`` (None: no query model), checked.

        Raises:
            ConfigurationError: ``model`` is not a pydantic model class, or a field of it
                is named as a sensitive query parameter (never captured, so never there).
        """
        if model is None:
            return None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigurationError(f"query must be a pydantic BaseModel class, not {model!r}")
        secret = {query_name_key(name) for name in sensitive}
        many = set()
        for name, field in model.model_fields.items():
            if _holds_a_model(field.annotation):
                raise ConfigurationError(
                    f"query parameter {name!r} of {model.__name__} is a model: a query "
                    "parameter holds text, numbers and choices (or a list of them)"
                )
            if _reads_a_path(field):
                raise ConfigurationError(
                    f"query parameter {name!r} of {model.__name__} reads a path "
                    "(AliasPath): a query string is flat, so name its key instead"
                )
            for key in _keys(name, field):
                if not secret.isdisjoint(query_name_keys(key)):
                    raise ConfigurationError(
                        f"query parameter {key!r} of {model.__name__} is one of "
                        "sensitive_query_params: it is never captured, so no job would have it"
                    )
                if _takes_many(field.annotation):
                    many.add(key)
        return cls(model, frozenset(many))

    def parse(self, query_string: str) -> BaseModel:
        """The model read from ``query_string`` (as a job keeps it).

        Raises:
            JobValidationError: it fails the model; each error's ``loc`` starts with
                ``"query"``, and the message names the parameters.
        """
        params = QueryParams(query_string)
        data = {key: params.getlist(key) if key in self.many else params[key] for key in params}
        try:
            return self.model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            located = [
                {"loc": ["query", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors
            ]
            told = summarize_errors(located)
            raise JobValidationError(
                f"query parameters failed validation: {told}", located
            ) from None


def _keys(name: str, field: FieldInfo) -> list[str]:
    """The query keys a field reads: its validation alias (each of an ``AliasChoices``
    that names a key), else its alias, else its name."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)] or [name]
    return [field.alias or name]


def _reads_a_path(field: FieldInfo) -> bool:
    """Whether ``field``'s validation alias is (or offers) an ``AliasPath``."""
    alias = field.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    return any(isinstance(choice, AliasPath) for choice in choices)


def _unwrapped(annotation: Any) -> list[Any]:
    """The types ``annotation`` stands for, ``Annotated`` and unions taken apart."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrapped(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [kind for arg in typing.get_args(annotation) for kind in _unwrapped(arg)]
    return [annotation]


def _takes_many(annotation: Any) -> bool:
    """Whether a field of type ``annotation`` holds several values (``list[int]``,
    ``list[str] | None``, ``Annotated[tuple[int, ...], ...]``, ``Sequence[int]``)."""
    return any(_collection(kind) for kind in _unwrapped(annotation))


def _collection(kind: Any) -> bool:
    origin = typing.get_origin(kind) or kind
    if not isinstance(origin, type) or issubclass(origin, str | bytes):
        return False
    return issubclass(origin, _MANY) or origin in (
        collections.abc.Sequence,
        collections.abc.Set,
        collections.abc.MutableSequence,
        collections.abc.MutableSet,
    )


def _holds_a_model(annotation: Any) -> bool:
    """Whether a field of type ``annotation`` holds a pydantic model (or a list of them),
    which no query string can give."""
    for kind in _unwrapped(annotation):
        items = typing.get_args(kind) if _collection(kind) else (kind,)
        for item in items:
            if any(isinstance(t, type) and issubclass(t, BaseModel) for t in _unwrapped(item)):
                return True
    return False
