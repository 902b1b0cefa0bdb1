"""The finishing touches the library puts on a FastAPI app's OpenAPI document, once it is
built: each operation lists a parameter once, and async endpoints' request bodies are
named schemas.

An async endpoint reads its own body, so FastAPI never sees its model: the library names
it in ``components/schemas`` (as pydantic names it: ``Shipment``, its nested models
too) and the operation's body refers to it, so generated clients get named types and a
recursive model is whole. A model FastAPI lists already is referred to by FastAPI's name;
a name FastAPI gives another schema takes a number (``Shipment2``). Installed once per
app, around its ``openapi()``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter

_COMPONENTS = "#/components/schemas/"
#: Where pydantic writes references before the names are settled.
_PENDING = "#/pending/"


#: The key an async endpoint's operation carries (through FastAPI's ``openapi_extra``)
#: until its body is named: it says which registered model the body is. Taken out then.
BODY_MARK = "x-async-endpoints-body"


class DocumentFinisher:
    """The app's ``openapi()``, finished: parameters once, request bodies named.

    ``bodies`` maps the mark an operation carries (`BODY_MARK`) to its request model
    (`add_body`); marks, not operation ids, find the operations, since an app may give
    another route the same id.
    """

    def __init__(self, build: Any) -> None:
        self.build = build
        self.bodies: dict[str, Any] = {}
        self._finished: dict[str, Any] | None = None

    def add_body(self, mark: str, model: Any) -> None:
        """Name ``model`` as the request body of the operation carrying ``mark``."""
        self.bodies[mark] = model
        self._finished = None

    def __call__(self) -> dict[str, Any]:
        document: dict[str, Any] = self.build()
        if document is self._finished:  # FastAPI keeps the document it built
            return document
        operations = []
        for path, item in document.get("paths", {}).items():
            for operation in item.values():
                if isinstance(operation, dict):
                    _declare_path_parameters(str(path), operation)
                    operations.append(operation)
        for operation in operations:
            if "parameters" in operation:
                operation["parameters"] = _once(operation["parameters"])
        # The mark is taken out as the body is named: a document finished before (FastAPI
        # keeps the one it built) has none left, and is not named again.
        ours = [
            (mark, operation)
            for operation in operations
            if (mark := operation.pop(BODY_MARK, None)) in self.bodies
        ]  # a route included twice (a router under two prefixes) is two operations
        if ours:
            _name_bodies(document, ours, self.bodies)
        self._finished = document
        return document


def finish_document(app: Any) -> DocumentFinisher:
    """The `DocumentFinisher` around ``app.openapi`` (installed on the first call)."""
    current = app.openapi
    if isinstance(current, DocumentFinisher):
        return current
    finisher = DocumentFinisher(current)
    app.openapi = finisher
    return finisher


def _name_bodies(
    document: dict[str, Any], operations: list[tuple[str, dict[str, Any]]], bodies: dict[str, Any]
) -> None:
    """Put the request models of ``operations`` (by their marks) in ``document``'s
    components and make each operation's body refer to its model's."""
    marks = sorted({mark for mark, _ in operations})
    schemas, top = TypeAdapter.json_schemas(
        [(mark, "validation", TypeAdapter(bodies[mark])) for mark in marks],
        ref_template=_PENDING + "{model}",
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    defs: dict[str, Any] = top.get("$defs", {})
    names = _settle_names(defs, components)
    for name, schema in defs.items():  # one FastAPI lists already is left as it is
        components.setdefault(names[name], _refer(schema, names))
    for mark, operation in operations:
        schema = _refer(schemas[(mark, "validation")], names)
        content = operation.setdefault("requestBody", {"required": True}).setdefault("content", {})
        content["application/json"] = {"schema": schema}


def _settle_names(defs: dict[str, Any], components: dict[str, Any]) -> dict[str, str]:
    """Each pydantic name of ``defs`` → its component name: an existing component holding
    the same schema (a model a route of FastAPI's takes too, under its own name or, when
    two modules' models share a name, under the one FastAPI gave it), else itself, with a
    number when ``components`` holds another schema under it. A schema refers to others,
    so one is the same only if those it refers to are the same too: a component taken
    for one is checked again against the names finally settled, and given up (its name
    settled anew) until every one taken holds."""
    reused = _reused(defs, components)
    while True:
        names = _numbered(defs, components, reused)
        wrong = {
            name for name, taken in reused.items() if components[taken] != _refer(defs[name], names)
        }
        if not wrong:
            return names
        reused = {name: taken for name, taken in reused.items() if name not in wrong}


def _numbered(
    defs: dict[str, Any], components: dict[str, Any], reused: dict[str, str]
) -> dict[str, str]:
    """The names of ``defs``: those of ``reused`` (name → the component taken for it),
    and for the others their own, with a number when ``components`` holds another schema
    under it (or a schema referring to a renamed one)."""
    names = {name: reused.get(name, name) for name in defs}
    clash = {
        name
        for name in defs
        if name not in reused
        and name in components
        and components[name] != _refer(defs[name], names)
    }
    while True:  # a schema referring to a renamed one is renamed too
        more = {
            name
            for name in defs
            if name in components
            and name not in clash
            and name not in reused
            and _refs(defs[name]) & clash
        }
        if not more:
            break
        clash |= more
    taken = set(components) | set(defs)
    for name in defs:
        if name in reused:
            continue
        chosen, number = name, 1
        while name in clash and chosen in taken:
            number += 1
            chosen = f"{name}{number}"
        names[name] = chosen
        taken.add(chosen)
    return names


def _reused(defs: dict[str, Any], components: dict[str, Any]) -> dict[str, str]:
    """The names of ``defs`` whose schema ``components`` may hold already under another
    name with the same title (``mods__a__Address``, which FastAPI, seeing only one of the
    two ``Address`` models, named ``Address``), each → that component: found until none
    is left, since a schema is the same only once those it refers to are. Candidates:
    `_settle_names` checks them against the names it settles."""
    titled: dict[str, list[str]] = {}
    for component, schema in components.items():
        if isinstance(schema, dict) and isinstance(schema.get("title"), str):
            titled.setdefault(schema["title"], []).append(component)
    reused: dict[str, str] = {}
    while True:
        names = {name: reused.get(name, name) for name in defs}
        found: dict[str, str] = {}
        for name, schema in defs.items():
            if name in reused or name in components:
                continue
            for component in titled.get(schema.get("title"), []):
                if components[component] == _refer(schema, names):
                    found[name] = component
                    break
        if not found:
            return reused
        reused.update(found)


def _refs(node: Any) -> set[str]:
    """The pending names ``node`` refers to."""
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found = {ref.removeprefix(_PENDING) for ref in _node_refs(node) if ref.startswith(_PENDING)}
    return found.union(*(_refs(value) for value in node.values()))


def _refer(node: Any, names: dict[str, str]) -> Any:
    """``node`` with its pending references pointing at the settled component names."""
    if isinstance(node, list):
        return [_refer(item, names) for item in node]
    if not isinstance(node, dict):
        return node

    def settled(ref: Any) -> Any:
        if isinstance(ref, str) and ref.startswith(_PENDING):
            return _COMPONENTS + names[ref.removeprefix(_PENDING)]
        return ref

    if "$ref" in node:
        node = {**node, "$ref": settled(node["$ref"])}
    if _is_discriminator(node):
        node = {**node, "mapping": {key: settled(ref) for key, ref in node["mapping"].items()}}
    return {key: _refer(value, names) for key, value in node.items()}


def _node_refs(node: dict[str, Any]) -> list[str]:
    """The references ``node`` itself holds: its ``$ref``, and, a discriminator, its
    mapping's (a tagged union's ``{"propertyName": "kind", "mapping": {"cat": ref}}``)."""
    refs = [node.get("$ref")]
    if _is_discriminator(node):
        refs += node["mapping"].values()
    return [ref for ref in refs if isinstance(ref, str)]


def _is_discriminator(node: dict[str, Any]) -> bool:
    return isinstance(node.get("propertyName"), str) and isinstance(node.get("mapping"), dict)


def _declare_path_parameters(path: str, operation: dict[str, Any]) -> None:
    """Give ``operation`` an entry for each parameter of its ``path`` it does not
    declare (a string, required): an async endpoint knows the path it was mapped with,
    not the prefixes of the routers that hold it (``APIRouter(prefix="/t/{tenant}")``,
    ``include_router(prefix=...)``), and OpenAPI needs every one declared."""
    names = re.findall(r"{([^}:]+)(?::[^}]*)?}", path)
    declared = {
        entry.get("name")
        for entry in operation.get("parameters", [])
        if isinstance(entry, dict) and entry.get("in") == "path"
    }
    missing = [name for name in names if name not in declared]
    if missing:
        operation["parameters"] = [
            *(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in missing
            ),
            *operation.get("parameters", []),
        ]


def _once(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``parameters`` without a repeat of a name in one place (headers in any case): a
    route dependency reading a path parameter or a header the library documents too
    (``Prefer``) would list it twice, which OpenAPI forbids. FastAPI's own entry (the
    dependency's) comes first and is kept."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for parameter in parameters:
        place = str(parameter.get("in", ""))
        name = str(parameter.get("name", ""))
        key = (name.lower() if place == "header" else name, place)
        if key not in seen:
            seen.add(key)
            kept.append(parameter)
    return kept
