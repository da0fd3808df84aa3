"""Pure pieces of Kubernetes API machinery, for the fake API server (``tests.support.fakeapi``).

    query ``labelSelector`` --parse_label_selector()--> Selector --matches(labels)--> bool
    query ``fieldSelector`` --parse_field_selector()--> Selector --matches(fields of obj)--> bool
    PATCH body --merge_patch() (RFC 7386; strategic merge patch is treated the same)
               --json_patch() (RFC 6902)--> the patched object (inputs are never mutated)
    a failure --status(code, reason, message, ...)--> a ``Status`` object as the API server
               sends it (``kind: Status``, ``apiVersion: v1``, ``status: Failure``),
               raised as ``ApiError``

Selectors follow the API server's grammar: label requirements ``k``, ``!k``, ``k=v``, ``k==v``,
``k!=v``, ``k in (a,b)``, ``k notin (a,b)``; field requirements ``path=v``, ``path==v``,
``path!=v`` where ``path`` is a dotted path into the object (``metadata.name``, ``type``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ApiError",
    "Selector",
    "json_patch",
    "merge_patch",
    "parse_field_selector",
    "parse_label_selector",
    "status",
]

JSON = dict[str, Any]


def status(
    code: int,
    reason: str,
    message: str,
    *,
    name: str | None = None,
    group: str | None = None,
    kind: str | None = None,
) -> JSON:
    """A failure ``Status`` object; ``details`` carries what is given (``kind`` is the plural)."""
    out: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    details = {k: v for k, v in (("name", name), ("group", group), ("kind", kind)) if v}
    if details:
        out["details"] = details
    out["code"] = code
    return out


class ApiError(Exception):
    """A request the API server refuses; ``status`` is the ``Status`` object it answers with."""

    def __init__(self, status_object: JSON) -> None:
        super().__init__(
            f"{status_object['code']} {status_object['reason']}: {status_object['message']}"
        )
        self.status = status_object

    @property
    def code(self) -> int:
        return int(self.status["code"])

    @property
    def reason(self) -> str:
        return str(self.status["reason"])


def bad_request(message: str) -> ApiError:
    return ApiError(status(400, "BadRequest", message))


# -- selectors -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str]

    def matches(self, fields: Callable[[str], str | None]) -> bool:
        value = fields(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "!exists":
            return value is None
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        # "!=" and "notin" match objects without the key too, as the API server's do.
        return value is None or value not in self.values


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed label or field selector: every requirement must hold (empty: everything)."""

    requirements: tuple[_Requirement, ...]
    fields: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        if not self.requirements:
            return True
        if self.fields:
            return all(r.matches(lambda path: _field(obj, path)) for r in self.requirements)
        meta = obj.get("metadata")
        labels = meta.get("labels") if isinstance(meta, Mapping) else None
        labels = labels if isinstance(labels, Mapping) else {}
        return all(r.matches(lambda key: _str(labels.get(key))) for r in self.requirements)


EVERYTHING = Selector((), fields=False)


def _str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field(obj: Mapping[str, Any], path: str) -> str | None:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return _str(node) if not isinstance(node, Mapping | list) else None


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_RE = re.compile(r"^(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_KEY_RE = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


def parse_label_selector(text: str | None) -> Selector:
    """Parse a ``labelSelector``; raises ``ApiError`` 400 on a syntax error."""
    if not text:
        return EVERYTHING
    requirements: list[_Requirement] = []
    for part in _split_top(text):
        if m := _SET_RE.match(part):
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append(_Requirement(m["key"], m["op"], values))
        elif m := _EQ_RE.match(part):
            op = "!=" if m["op"] == "!=" else "="
            requirements.append(_Requirement(m["key"], op, frozenset([m["value"]])))
        elif m := _KEY_RE.match(part):
            requirements.append(
                _Requirement(m["key"], "!exists" if m["neg"] else "exists", frozenset())
            )
        else:
            raise bad_request(f"unable to parse requirement: {part!r}")
    return Selector(tuple(requirements), fields=False)


def parse_field_selector(text: str | None) -> Selector:
    """Parse a ``fieldSelector``; raises ``ApiError`` 400 on a syntax error."""
    if not text:
        return Selector((), fields=True)
    requirements: list[_Requirement] = []
    for part in _split_top(text):
        if not (m := _EQ_RE.match(part)):
            raise bad_request(f"invalid selector: {text!r}; can't understand {part!r}")
        op = "!=" if m["op"] == "!=" else "="
        requirements.append(_Requirement(m["key"], op, frozenset([m["value"]])))
    return Selector(tuple(requirements), fields=True)


# -- patches -------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of ``target`` by ``patch``; neither is mutated."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"json patch: invalid path {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ApiError(status(422, "Invalid", f"json patch: path {path!r} does not exist"))
    return node


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    node = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(node, dict) and last in node:
        return node[last]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node[int(last)]
    raise ApiError(status(422, "Invalid", f"json patch: path {path!r} does not exist"))


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    node = _parent(doc, parts, path)
    last = parts[-1] if parts else ""
    if isinstance(node, dict) and last in node:
        return node.pop(last)
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node.pop(int(last))
    raise ApiError(status(422, "Invalid", f"json patch: path {path!r} does not exist"))


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    node = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and (last == "-" or (last.isdigit() and int(last) <= len(node))):
        node.insert(len(node) if last == "-" else int(last), value)
    else:
        raise ApiError(status(422, "Invalid", f"json patch: cannot add at {path!r}"))
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test); ``target`` is not mutated."""
    if not isinstance(operations, list):
        raise bad_request("json patch: expected a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise bad_request(f"json patch: invalid operation {op!r}")
        kind, path = op.get("op"), op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise bad_request(f"json patch: {kind} needs 'from'")
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ApiError(status(422, "Invalid", f"json patch: test failed at {path!r}"))
        else:
            raise bad_request(f"json patch: unknown op {kind!r}")
    return doc
