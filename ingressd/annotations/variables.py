"""nginx variables in annotation and ConfigMap values: one grammar, an allow list per use.  Pure.

    "t=${msec} $http_x" --Grammar(AllowList, literal pattern, ...)
        .parts()--> (("text", "t="), ("var", "msec"), ("text", " "), ("var", "http_x"))
        .checked()--> the text as written
    anything else --> raise InvalidValue naming the first refused variable or character

A reference is ``$name`` or ``${name}`` with a lowercase name of ``a-z``, ``0-9`` and ``_``;
any other ``$`` is refused.  nginx reads every letter, digit and ``_`` after an unbraced ``$``
as the name, case-insensitively, so ``$hostX`` is its ``$hostx``: refused too (``${host}X`` is
the variable and text).  Each use has its ``Grammar``, kept by the module that owns the value
(``extauth``, ``headers``, ``modsecurity``, ``ingressd.pipeline.configmap``'s log format):
which names (its ``AllowList``), which literal characters, whether ``${name}`` is a form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingressd.annotations.values import InvalidValue

__all__ = ["AllowList", "Grammar"]

_NAME = re.compile(r"[a-z0-9_]+")
#: As nginx reads a reference: ``${...}``, or ``$`` and every letter, digit and ``_`` after it.
_REFERENCE = re.compile(r"\$(?:\{([a-z0-9_]+)\}|([A-Za-z0-9_]+))")
#: The same without ``${...}`` (an empty first group, so the name is group 2 in both).
_UNBRACED = re.compile(r"\$()([A-Za-z0-9_]+)")


@dataclass(frozen=True, slots=True)
class AllowList:
    """The variables one use may name: ``names``, and the families ``prefixes`` start
    (``http_`` takes ``$http_x_user``, never ``$http_`` alone)."""

    names: frozenset[str]
    prefixes: tuple[str, ...] = ()
    #: Said of ``names`` in messages instead of listing them, when they are too many to read.
    summary: str = ""

    def __post_init__(self) -> None:
        for name in (*self.names, *self.prefixes):
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a variable name")

    def allows(self, name: str) -> bool:
        return name in self.names or any(
            name.startswith(p) and len(name) > len(p) for p in self.prefixes
        )

    def shown(self) -> str:
        """``$a, $b, $http_<name>``: what is allowed, for a message."""
        names = [self.summary] if self.summary else [f"${n}" for n in sorted(self.names)]
        return ", ".join([*names, *(f"${p}<name>" for p in self.prefixes)]) or "no variable"


@dataclass(frozen=True, slots=True)
class Grammar:
    """One use's text with variables: the names ``allowed`` takes, literal runs that
    ``literal`` fullmatches (a ``$`` never reaches it), ``${name}`` too unless not ``braces``.
    ``what`` ("a header value") ends the messages; ``shown`` says which literal characters are
    allowed ("letters, digits, '_.-'"), if that is short."""

    allowed: AllowList
    literal: re.Pattern[str]
    what: str
    shown: str = ""
    braces: bool = True

    def parts(self, text: str) -> tuple[tuple[str, str], ...]:
        """``text`` as ``("text", run)`` and ``("var", name)`` parts, in order."""
        reference = _REFERENCE if self.braces else _UNBRACED
        out: list[tuple[str, str]] = []
        at = 0
        while True:
            dollar = text.find("$", at)
            run = text[at:] if dollar < 0 else text[at:dollar]
            if run:
                if not self.literal.fullmatch(run):
                    bad = next((c for c in run if not self.literal.fullmatch(c)), run)
                    also = f" (only {self.shown} and variables)" if self.shown else ""
                    raise InvalidValue(f"{bad!r} is not allowed in {self.what}{also}")
                out.append(("text", run))
            if dollar < 0:
                return tuple(out)
            match = reference.match(text, dollar)
            if match is None:
                forms = "$name or ${name}" if self.braces else "$name"
                raise InvalidValue(
                    f"'$' must start a variable: {forms}, a name of a-z, 0-9 and _ "
                    f"({text[dollar : dollar + 16]!r} is not one)"
                )
            name = match.group(1) or match.group(2)
            if not _NAME.fullmatch(name):
                raise InvalidValue(_not_lowercase(name, self.braces))
            if not self.allowed.allows(name):
                raise InvalidValue(
                    f"${name} is not allowed in {self.what} (allowed: {self.allowed.shown()})"
                )
            out.append(("var", name))
            at = match.end()

    def checked(self, text: str) -> str:
        """``text`` as written, once ``parts`` accepts it."""
        self.parts(text)
        return text


def _not_lowercase(name: str, braces: bool) -> str:
    head = re.match(r"[a-z0-9_]*", name)
    assert head is not None
    hint = (
        f" (the variable, then text: ${{{head.group()}}}{name[head.end() :]})"
        if head.group() and braces
        else ""
    )
    return (
        f"${name}: nginx would read the variable ${name.lower()}; variable names are lowercase "
        f"a-z, 0-9 and _{hint}"
    )
