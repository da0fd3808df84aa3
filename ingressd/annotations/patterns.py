"""Pattern grammars: the values in which ``$`` means something (regexes, targets, hash keys).  Pure.

    "/api/v[0-9]+/(.*)" --regex_path()--> "/api/v[0-9]+/(.*)"
    "/app/$1?x=y" --rewrite_target()--> "/app/$1?x=y"
    "${http_x_user}-a" --hash_key()--> "${http_x_user}-a"
    anything else --> raise InvalidValue (``values.py``)

Regular expressions are compiled with Python's ``re`` and with the PCRE libraries nginx and
``ngx.re`` run them on (``ingressd.annotations.pcre``), and may use ``$`` only as an end
anchor; a rewrite target only as ``$1``-``$9``, the path's capture groups; a hash key holds
nginx variables, evaluated in Lua, never by nginx.conf.  A backslash never escapes a quote,
itself or the end.  Like every grammar in ``values.py``, narrower than
nginx's: a value that passes can be written inside double quotes in nginx.conf.
"""

from __future__ import annotations

import re
import warnings

from ingressd.annotations.pcre import pcre_available, pcre_error
from ingressd.annotations.values import InvalidValue, clean

__all__ = ["common_name", "hash_key", "regex", "regex_path", "rewrite_target"]

#: ``$name`` runs to the first character that cannot be in a name, as Lua (``chash.parse_key``)
#: and nginx read it: ``$hostX`` is not ``$host`` and ``X`` (``${host}X`` is).
_HASH_KEY = re.compile(
    r"(?:\$[a-z_][a-z0-9_]{0,63}(?![A-Za-z0-9_])|\$\{[a-z_][a-z0-9_]{0,63}\}|[A-Za-z0-9_.:/-])+\Z"
)
_HAS_VARIABLE = re.compile(r"\$")
_REWRITE = re.compile(r"/(?:[A-Za-z0-9._~!*(),:@+=&%/?-]|\$[1-9])*\Z")
_REGEX_CHARS = re.compile(r"[A-Za-z0-9._~!*(),:@+=&%/?^|\[\]\\$<>-]*\Z")


def hash_key(text: str) -> str:
    """``upstream-hash-by``: nginx variables and literal text, e.g. ``$request_uri``,
    ``$http_x_user``, ``${remote_addr}-x``.  Evaluated in Lua, never by nginx.conf."""
    if len(text) > 256:
        raise InvalidValue("must be at most 256 characters")
    value = text.strip()
    if not value or not _HASH_KEY.match(value) or not _HAS_VARIABLE.search(value):
        raise InvalidValue(
            "must be nginx variables and text such as $request_uri or ${http_x_user}-a"
        )
    return value


def _check_dollars(value: str, *, allow_captures: bool) -> None:
    """``$`` only as a regex end anchor (before ``)``, ``|`` or at the end), or ``$1``-``$9``."""
    for match in re.finditer(r"\$", value):
        nxt = value[match.end() : match.end() + 1]
        if nxt in ("", ")", "|"):
            continue
        if allow_captures and nxt.isdigit() and nxt != "0":
            continue
        raise InvalidValue("must not use '$' except as an end anchor ('$', '$)' or '$|')")


def _check_backslashes(value: str) -> None:
    """A backslash must escape a regex character, never a quote, itself or the end."""
    i = value.find("\\")
    while i >= 0:
        nxt = value[i + 1 : i + 2]
        if nxt == "":
            raise InvalidValue("must not end with a backslash")
        if nxt in "\\\"'nrt":
            raise InvalidValue(f"must not contain a backslash before {nxt!r}")
        i = value.find("\\", i + 2)


def regex(text: str) -> str:
    """A regular expression (PCRE subset): compiled to check it; no quotes, braces,
    semicolons, whitespace or ``$`` other than an end anchor."""
    value = clean(text, max_length=512)
    if not value:
        raise InvalidValue("must not be empty")
    if not _REGEX_CHARS.match(value):
        bad = re.search(r"[^A-Za-z0-9._~!*(),:@+=&%/?^|\[\]\\$<>-]", value)
        raise InvalidValue(f"must not contain {bad.group() if bad else value!r}")
    _check_dollars(value, allow_captures=False)
    _check_backslashes(value)
    nested = _nested_quantifier(value)
    if nested is not None:
        raise InvalidValue(
            f"repeats a group that itself repeats ({nested}): such a pattern can take "
            "exponential time on a crafted path (ReDoS)"
        )
    # The engines that will run it decide; Python's re only where they cannot be loaded.
    reason = pcre_error(value) if pcre_available() else _python_error(value)
    if reason is not None:
        raise InvalidValue(f"is not a regular expression nginx can run: {reason}")
    return value


def _nested_quantifier(pattern: str) -> str | None:
    """The first group that is repeated without bound while it contains an unbounded
    repetition itself (``(a+)+``, ``(x*y)*``, ``(a|b+){2,}``), or None.

    A syntactic check, stricter than needed (some such patterns are linear), as the price of
    never letting a catastrophic one through; character classes and escapes are skipped.
    """
    stack: list[tuple[int, bool]] = []  # (start of the group, holds an unbounded repetition)
    i, n = 0, len(pattern)
    inner = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            end = i + 1
            if end < n and pattern[end] == "^":
                end += 1
            if end < n and pattern[end] == "]":
                end += 1
            while end < n and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            i = end + 1
            continue
        if c == "(":
            stack.append((i, inner))
            inner = False
        elif c == ")" and stack:
            start, outer = stack.pop()
            if _unbounded(pattern, i + 1) and inner:
                return pattern[start : i + 1]
            inner = outer or inner or _unbounded(pattern, i + 1)
        elif c in "*+" or (c == "{" and _unbounded(pattern, i)):
            inner = True
        i += 1
    return None


def _unbounded(pattern: str, at: int) -> bool:
    """Whether a repetition without an upper bound starts at ``at``: ``*``, ``+``, ``{n,}``."""
    if at >= len(pattern):
        return False
    if pattern[at] in "*+":
        return True
    match = re.match(r"\{[0-9]+,\}", pattern[at:])
    return match is not None


def _python_error(value: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            re.compile(value)
        except re.error as exc:
            return str(exc)
    return None


def common_name(text: str) -> str:
    """``auth-tls-match-cn``: ``CN=`` and a regular expression matched (by nginx, PCRE2)
    against the client certificate's subject DN, e.g. ``CN=(client-a|client-b)``.

    A space becomes ``\\x20`` (the same pattern for PCRE) so that the value stays one word;
    the rest is ``regex()``'s grammar: no quotes, braces or ``;`` can reach nginx.conf
    (CVE-2025-1097 was an injection through this annotation).
    """
    value = clean(text, max_length=512)
    if not value.startswith("CN="):
        raise InvalidValue("must start with 'CN=' followed by a regular expression")
    return regex(value.replace(" ", "\\x20"))


def regex_path(text: str) -> str:
    """An Ingress path used as a regular expression (``use-regex``): starts with ``/``."""
    value = regex(text)
    if not value.startswith("/"):
        raise InvalidValue("must start with '/'")
    if value.count("(") > 9 + value.count("(?"):
        raise InvalidValue("must have at most 9 capture groups")
    return value


def rewrite_target(text: str) -> str:
    """``rewrite-target``: a path that may use the path's capture groups ``$1``-``$9``."""
    value = clean(text)
    if not _REWRITE.match(value):
        raise InvalidValue(
            "must be a path starting with '/' that uses only capture references $1-$9"
        )
    if "//" in value.split("?")[0]:
        raise InvalidValue("must not contain '//'")
    return value
