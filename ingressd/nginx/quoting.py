"""Quoting: the last check of every string on its way into nginx.conf.  Pure.

    annotation values (ingressd.nginx.directives, server_directives)
        --quote_text / quote_word / quote_regex / quote_target--> "value"
        --bare_size / bare_time / bare_header / bare_word / bare_cidr / on_off--> value
        or raise DirectiveError (the renderer raises it again as RenderError)
    object names, paths, formats (ingressd.nginx.routing, rendering, the template)
        --quote / quote_path / quote_log_format--> "value" / 'format'
        or raise RenderError

Every value has been validated before it gets here (``ingressd.model.validation``,
``ingressd.annotations``); each function here still refuses what its grammar forbids, so a value
that slipped past validation cannot end a directive, open a block, start a variable or a comment.
Numbers are printed with ``int()`` by the callers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "DirectiveError",
    "RenderError",
    "bare_cidr",
    "bare_header",
    "bare_size",
    "bare_time",
    "bare_word",
    "header_word",
    "on_off",
    "quote",
    "quote_header",
    "quote_header_name",
    "quote_log_format",
    "quote_modsecurity_rules",
    "quote_path",
    "quote_regex",
    "quote_target",
    "quote_text",
    "quote_variables",
    "quote_word",
]


# --- values from annotations: refused with DirectiveError -----------------------------------


class DirectiveError(ValueError):
    """A value cannot be written safely (raised as ``RenderError`` by the renderer)."""


_TEXT_UNSAFE = re.compile(r"[\"'\\$;{}#\x00-\x1f\x7f]")
_WORD_UNSAFE = re.compile(r"[\"'\\$;{}#\s\x00-\x1f\x7f]")
_REGEX_UNSAFE = re.compile(r"[\"';{}#\s\x00-\x1f\x7f]")
_SIZE = re.compile(r"[0-9]{1,12}[kmg]?\Z")
_TIME = re.compile(r"[0-9]{1,7}(ms|s|m|h)\Z")
_HEADER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")


def quote_text(value: str) -> str:
    """Double-quote free text (spaces allowed); no quote, backslash, ``$``, ``;``, braces, ``#``."""
    match = _TEXT_UNSAFE.search(value)
    if match:
        raise DirectiveError(f"refusing to write {value!r} into nginx.conf: {match.group()!r}")
    return f'"{value}"'


def quote_word(value: str) -> str:
    """Double-quote a word (no whitespace either)."""
    match = _WORD_UNSAFE.search(value)
    if match or not value:
        raise DirectiveError(f"refusing to write {value!r} into nginx.conf")
    return f'"{value}"'


def _check_dollars(value: str, *, captures: bool) -> None:
    for match in re.finditer(r"\$", value):
        nxt = value[match.end() : match.end() + 1]
        if nxt in ("", ")", "|") or (captures and nxt in "123456789" and nxt):
            continue
        raise DirectiveError(f"refusing to write {value!r} into nginx.conf: '$' before {nxt!r}")


def quote_variables(value: str) -> str:
    """Double-quote text with nginx variables (``$name``, ``${name}``): no quote, backslash,
    ``;``, ``#`` or control character, braces only around a variable name, ``$`` only before
    one (which variables a value may use is its grammar's business)."""
    bare = re.sub(r"\$(\{[a-z_][a-z0-9_]*\}|[a-z_][a-z0-9_]*)", "", value)
    match = _TEXT_UNSAFE.search(bare)
    if match or not value:
        raise DirectiveError(f"refusing to write {value!r} into nginx.conf")
    return f'"{value}"'


def quote_regex(value: str) -> str:
    """Double-quote a regular expression: ``$`` only as an end anchor; a backslash never before
    a quote, a backslash, ``n``/``r``/``t`` (nginx would unescape them) or the end."""
    match = _REGEX_UNSAFE.search(value)
    if match or not value:
        raise DirectiveError(f"refusing to write regex {value!r} into nginx.conf")
    _check_dollars(value, captures=False)
    for i, char in enumerate(value):
        if char == "\\" and (i + 1 == len(value) or value[i + 1] in "\\\"'nrt"):
            raise DirectiveError(f"refusing to write regex {value!r}: backslash escape")
    return f'"{value}"'


def quote_target(value: str) -> str:
    """Double-quote a rewrite target: ``$1``-``$9`` are the only variables."""
    match = _WORD_UNSAFE.search(value.replace("$", ""))
    if match or not value.startswith("/"):
        raise DirectiveError(f"refusing to write rewrite target {value!r} into nginx.conf")
    _check_dollars(value, captures=True)
    if value.endswith("$"):
        raise DirectiveError(f"refusing to write rewrite target {value!r} into nginx.conf")
    return f'"{value}"'


_HEADER_TOKEN = re.compile(r"[0-9A-Za-z][!#%&'*+.^_`|~0-9A-Za-z-]*\Z")
_HEADER_TEXT_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')
_VARIABLE_NAME = re.compile(r"[a-z0-9_]+\Z")

#: The template's variable holding a literal ``$`` (nginx strings have no escape for it).
DOLLAR_VARIABLE = "ingressd_dollar"


def _header_text(parts: Sequence[tuple[str, str]]) -> str:
    out: list[str] = []
    for kind, text in parts:
        if kind == "var":
            if not _VARIABLE_NAME.match(text):
                raise DirectiveError(f"refusing variable {text!r} in a header value")
            out.append("${" + text + "}")
            continue
        match = _HEADER_TEXT_UNSAFE.search(text)
        if kind != "text" or match:
            raise DirectiveError(f"refusing to write header value {text!r} into nginx.conf")
        out.append(text.replace("$", "${" + DOLLAR_VARIABLE + "}"))
    return "".join(out)


def quote_header_name(name: str, *, wildcard: bool = False) -> str:
    """Double-quote a header name: an HTTP token without ``$`` (``wildcard``: a final ``*``)."""
    if not _HEADER_TOKEN.match(name) or "*" in (name[:-1] if wildcard else name):
        raise DirectiveError(f"refusing to write header name {name!r} into nginx.conf")
    return f'"{name}"'


def quote_header(parts: Sequence[tuple[str, str]], name: str | None = None) -> str:
    """Double-quote a header value made of ``("text", ...)`` and ``("var", name)`` parts, or
    ``Name: value`` with ``name`` (headers-more's form).  Variables are written ``${name}``; a
    ``$`` in text becomes ``${ingressd_dollar}``; quotes, backslashes and control characters
    are refused."""
    value = _header_text(parts)
    if name is None:
        return f'"{value}"'
    quote_header_name(name, wildcard=False)
    return f'"{name}: {value}"' if value else f'"{name}:"'


def bare_size(value: str) -> str:
    """An nginx size, unquoted: digits and an optional ``k``/``m``/``g``."""
    if not _SIZE.match(value):
        raise DirectiveError(f"refusing to write size {value!r} into nginx.conf")
    return value


def bare_time(value: str) -> str:
    """An nginx time, unquoted: digits and ``ms``/``s``/``m``/``h``."""
    if not _TIME.match(value):
        raise DirectiveError(f"refusing to write time {value!r} into nginx.conf")
    return value


def bare_header(name: str) -> str:
    """A header name, unquoted: letters, digits, ``_`` and ``-``."""
    if not _HEADER.match(name):
        raise DirectiveError(f"refusing to write header name {name!r} into nginx.conf")
    return name


def header_word(name: str) -> str:
    """A header name as a directive's argument: bare when plain, else double-quoted (any HTTP
    token but ``$``)."""
    try:
        return bare_header(name)
    except DirectiveError:
        return quote_header_name(name)


def on_off(flag: bool) -> str:
    """A flag as nginx spells it."""
    return "on" if flag else "off"


def bare_word(value: str) -> str:
    """A word, unquoted: letters, digits, ``_`` and ``.`` (zone names, conditions, protocols)."""
    if not re.fullmatch(r"[A-Za-z0-9_.]+", value):
        raise DirectiveError(f"refusing to write {value!r} into nginx.conf")
    return value


def bare_cidr(value: str) -> str:
    """An IPv4/IPv6 CIDR, unquoted."""
    if not re.fullmatch(r"[0-9a-fA-F.:]+/[0-9]{1,3}", value):
        raise DirectiveError(f"refusing to write CIDR {value!r} into nginx.conf")
    return value


#: Longest token nginx reads (its configuration buffer is 4096 bytes; a longer parameter fails
#: ``nginx -t``).
MAX_TOKEN_BYTES = 4000
_RULES_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def quote_modsecurity_rules(text: str) -> str:
    """Single-quote ModSecurity rules for ``modsecurity_rules``: every backslash and quote
    escaped, line breaks and tabs as ``\\n``, ``\\r``, ``\\t`` (nginx turns them back), so the
    text comes out of nginx's parser exactly as written and cannot end the directive.  Other
    control characters and texts longer than nginx reads are refused."""
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text):
        raise DirectiveError("refusing ModSecurity rules with control characters")
    quoted = "'" + text.translate(_RULES_ESCAPES) + "'"
    if len(quoted.encode()) > MAX_TOKEN_BYTES:
        raise DirectiveError(
            f"refusing ModSecurity rules of {len(quoted.encode())} bytes once quoted: nginx "
            f"reads at most {MAX_TOKEN_BYTES}"
        )
    return quoted


# --- names from objects, our own paths, log formats: refused with RenderError ---------------

_UNSAFE = re.compile(r'["\\$;{}#\s\x00-\x1f\x7f\']')


class RenderError(ValueError):
    """A value could not be written into nginx.conf safely."""


def quote(value: str) -> str:
    """Quote ``value`` for nginx.conf, refusing characters that could change its meaning."""
    match = _UNSAFE.search(value)
    if match:
        raise RenderError(f"refusing to write {value!r} into nginx.conf: {match.group()!r}")
    return f'"{value}"'


def quote_path(value: str) -> str:
    """Quote a file-system path (ours, not a user's: spaces are fine, quotes and ``$`` are not)."""
    if re.search(r'["\\$\x00-\x1f\x7f]', value):
        raise RenderError(f"refusing to write path {value!r} into nginx.conf")
    return f'"{value}"'


def quote_log_format(value: str) -> str:
    """Single-quote a log format: ``$variables`` are its purpose, anything that ends it is not."""
    match = re.search(r"['\"\\{};\x00-\x1f\x7f]", value)
    if match:
        raise RenderError(f"refusing to write log format {value!r}: {match.group()!r}")
    return f"'{value}'"
