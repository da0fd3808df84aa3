"""Header rules: header names and values, the safe subset of snippets, ConfigMaps of headers.
Pure.

    configuration-snippet text --parse_snippet()--> tuple[HeaderRule, ...]
        only ``more_set_headers``, ``more_clear_headers``, ``more_set_input_headers``,
        ``more_clear_input_headers``, ``proxy_set_header``, ``add_header`` with their own
        argument grammars; anything else raises ``RefusedLine`` naming the line
    ConfigMap ``data`` --header_entries()--> ((name, HeaderValue), ...) and the refused keys
    "X-Foo" --header_name()-->  "X-Foo"       "id ${request_id}" --header_value()--> HeaderValue
        -> ``ingressd.nginx.directives`` renders the rules again through ``nginx.quoting``;
           the snippet's text never reaches nginx.conf

Names follow the HTTP token grammar (RFC 9110) without ``$``, starting with a letter or digit
(headers-more takes a leading ``-`` for an option).  Values are printable ASCII: literal text
and the variables ``ALLOWED_VARIABLES`` takes (``$host``, ``${remote_addr}``, ``$http_x_user``;
the grammar of a reference is ``variables.py``'s); a ``"`` or ``\\`` is refused, since nginx
would unescape it, and so is any other ``$``.  Values of ``custom-headers`` are literal text,
``$`` included (``literal_value``), as ingress-nginx writes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ingressd.annotations.values import InvalidValue
from ingressd.annotations.variables import AllowList, Grammar
from ingressd.model.settings import HeaderAction, HeaderRule, HeaderValue

__all__ = [
    "ALLOWED_VARIABLES",
    "RefusedLine",
    "header_entries",
    "header_name",
    "header_value",
    "literal_value",
    "parse_snippet",
]

#: Longest header name and value taken.
MAX_NAME = 256
MAX_VALUE = 4096

#: Variables a header value may use: what the request and the connection are; and the families
#: ``$http_<header>``, ``$cookie_<name>``, ``$arg_<name>``, and the response's
#: (``$sent_http_<header>``, ``$upstream_http_<header>``).
ALLOWED_VARIABLES = AllowList(
    frozenset(
        {
            "args",
            "best_http_host",
            "content_length",
            "content_type",
            "host",
            "hostname",
            "https",
            "is_args",
            "msec",
            "query_string",
            "remote_addr",
            "remote_port",
            "remote_user",
            "req_id",
            "request_id",
            "request_method",
            "request_uri",
            "scheme",
            "server_addr",
            "server_name",
            "server_port",
            "server_protocol",
            "ssl_protocol",
            "ssl_cipher",
            "time_iso8601",
            "time_local",
            "uri",
            "namespace",
            "ingress_name",
            "proxy_upstream_name",
            "proxy_add_x_forwarded_for",
        }
    ),
    prefixes=("http_", "cookie_", "arg_", "sent_http_", "upstream_http_"),
)

#: Literal text of a header value: printable ASCII but ``"`` and ``\\`` (nginx unescapes them).
_VALUE = Grammar(ALLOWED_VARIABLES, re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*"), "a header value")

#: A token that starts with a letter or digit (headers-more takes a leading ``-`` for an option).
_NAME = re.compile(r"[0-9A-Za-z][!#%&'*+.^_`|~0-9A-Za-z-]*\Z")
_PRINTABLE = re.compile(r"[\x20-\x7e]*\Z")
_WORD = re.compile(r"[^\s;{}\"'#]+")
_STATUS = re.compile(r"[1-5][0-9][0-9]\Z")
_MEDIA_TYPE = re.compile(r"[a-z0-9!#&^_.+-]+/[a-z0-9!#&^_.+-]+\Z", re.IGNORECASE)


class RefusedLine(InvalidValue):
    """A snippet line that is not in the safe subset; ``line`` is its 1-based number."""

    def __init__(self, line: int, text: str, why: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"line {line} ({shown!r}) is refused: {why}")
        self.line = line


def header_name(text: str, *, wildcard: bool = False) -> str:
    """A header name: an HTTP token without ``$``; ``wildcard``: may end with ``*``."""
    if not 0 < len(text) <= MAX_NAME or not _NAME.match(text):
        raise InvalidValue(
            f"{text!r} is not a header name (a letter or digit, then letters, digits and "
            "!#%&'*+.^_`|~-)"
        )
    if "*" in text[:-1] or (text.endswith("*") and not wildcard):
        raise InvalidValue(f"{text!r}: '*' only ends a name to clear")
    return text


def _check_value(text: str) -> None:
    """What every header value must be, with or without variables."""
    if len(text) > MAX_VALUE:
        raise InvalidValue(f"a header value must be at most {MAX_VALUE} characters")
    if not _PRINTABLE.match(text):
        raise InvalidValue("a header value must be printable ASCII (no control characters)")
    if '"' in text or "\\" in text:
        raise InvalidValue("a header value must not contain '\"' or '\\'")


def header_value(text: str) -> HeaderValue:
    """Literal text and allowed variables (``$host``, ``${http_x_user}``)."""
    _check_value(text)
    return HeaderValue(_VALUE.parts(text))


def literal_value(text: str) -> HeaderValue:
    """Literal text only: a ``$`` is a dollar sign (``custom-headers``, as ingress-nginx)."""
    _check_value(text)
    return HeaderValue((("text", text),) if text else ())


def header_entries(
    data: Mapping[str, object], *, literal: bool = False
) -> tuple[tuple[tuple[str, HeaderValue], ...], dict[str, str]]:
    """A ConfigMap's ``data`` as header name -> value, sorted by name; the refused keys with
    why.  ``literal``: values are literal text (``custom-headers``)."""
    good: list[tuple[str, HeaderValue]] = []
    refused: dict[str, str] = {}
    for key in sorted(data, key=str):
        raw = data[key]
        try:
            if not isinstance(key, str):
                raise InvalidValue("keys are header names")
            if not isinstance(raw, str):
                raise InvalidValue("ConfigMap values are strings")
            name = header_name(key)
            value = literal_value(raw.strip()) if literal else header_value(raw.strip())
        except InvalidValue as exc:
            refused[str(key)] = str(exc)
            continue
        good.append((name, value))
    return tuple(good), refused


# --- the safe subset of snippets --------------------------------------------------------------


def _tokens(text: str) -> list[tuple[int, str, list[str]]]:
    """Directives of a snippet: ``(line, source line, [word, ...])``, quotes removed.

    Refused here: braces, backslashes, an unterminated string, a directive without ``;``.
    """
    directives: list[tuple[int, str, list[str]]] = []
    lines = text.split("\n")
    words: list[str] = []
    start = 0
    for number, line in enumerate(lines, 1):
        i, n = 0, len(line)
        while i < n:
            char = line[i]
            if char in " \t\r":
                i += 1
                continue
            if not words:
                start = number
            if char == "#":
                if words:
                    raise RefusedLine(number, line.strip(), "a comment inside a directive")
                break
            if char in "{}":
                raise RefusedLine(number, line.strip(), "blocks are not header rules")
            if char == ";":
                if not words:
                    raise RefusedLine(number, line.strip(), "an empty directive")
                directives.append((start, lines[start - 1].strip(), words))
                words = []
                i += 1
                continue
            if char in "\"'":
                end = line.find(char, i + 1)
                if end < 0:
                    raise RefusedLine(number, line.strip(), "an unterminated string")
                word = line[i + 1 : end]
                if "\\" in word:
                    raise RefusedLine(number, line.strip(), "backslash escapes")
                words.append(word)
                i = end + 1
                if i < n and line[i] not in " \t\r;":
                    raise RefusedLine(number, line.strip(), "text right after a string")
                continue
            match = _WORD.match(line, i)
            assert match is not None
            word = match.group()
            if "\\" in word:
                raise RefusedLine(number, line.strip(), "backslash escapes")
            words.append(word)
            i = match.end()
    if words:
        raise RefusedLine(start, lines[start - 1].strip(), "a directive without ';'")
    return directives


def _options(
    args: list[str], allowed: str, line: int, source: str
) -> tuple[tuple[int, ...], tuple[str, ...], bool, list[str]]:
    """Leading ``-s``, ``-t``, ``-r`` options of a headers-more directive, then the rest."""
    statuses: list[int] = []
    types: list[str] = []
    replace = False
    i = 0
    while i < len(args) and args[i].startswith("-"):
        option = args[i]
        if option not in allowed.split():
            raise RefusedLine(line, source, f"option {option!r} (this directive takes {allowed})")
        if option == "-r":
            replace = True
            i += 1
            continue
        if i + 1 >= len(args):
            raise RefusedLine(line, source, f"option {option} needs a value")
        for item in args[i + 1].split():
            if option == "-s":
                if not _STATUS.match(item):
                    raise RefusedLine(line, source, f"-s takes status codes, not {item!r}")
                statuses.append(int(item))
            elif not _MEDIA_TYPE.match(item):
                raise RefusedLine(line, source, f"-t takes content types, not {item!r}")
            else:
                types.append(item)
        i += 2
    return tuple(statuses), tuple(types), replace, args[i:]


def _name_value(pair: str, line: int, source: str) -> tuple[str, HeaderValue]:
    name, colon, value = pair.partition(":")
    if not colon:
        raise RefusedLine(line, source, f"{pair!r} is not 'Name: value'")
    try:
        return header_name(name.strip()), header_value(value.strip())
    except InvalidValue as exc:
        raise RefusedLine(line, source, str(exc)) from None


def _rule(line: int, source: str, words: list[str]) -> HeaderRule:
    directive, args = words[0], words[1:]
    try:
        action = HeaderAction(directive)
    except ValueError:
        raise RefusedLine(
            line, source, f"{directive!r} is not a header rule (allowed: {_ALLOWED})"
        ) from None
    if action in (HeaderAction.PROXY_SET, HeaderAction.ADD):
        always = action is HeaderAction.ADD and len(args) == 3 and args[2] == "always"
        if len(args) != 2 and not always:
            form = "Name value" + (" [always]" if action is HeaderAction.ADD else "")
            raise RefusedLine(line, source, f"{directive} takes {form}")
        try:
            name, value = header_name(args[0]), header_value(args[1])
        except InvalidValue as exc:
            raise RefusedLine(line, source, str(exc)) from None
        return HeaderRule(action, (name,), (value,), always=always)
    allowed = {
        HeaderAction.SET: "-s -t",
        HeaderAction.CLEAR: "-s -t",
        HeaderAction.SET_INPUT: "-r -t",
        HeaderAction.CLEAR_INPUT: "-t",
    }[action]
    statuses, types, replace, rest = _options(args, allowed, line, source)
    if not rest:
        raise RefusedLine(line, source, f"{directive} needs at least one header")
    if action in (HeaderAction.SET, HeaderAction.SET_INPUT):
        pairs = [_name_value(pair, line, source) for pair in rest]
        return HeaderRule(
            action,
            tuple(n for n, _ in pairs),
            tuple(v for _, v in pairs),
            statuses=statuses,
            types=types,
            replace_only=replace,
        )
    try:
        names = tuple(header_name(n, wildcard=True) for n in rest)
    except InvalidValue as exc:
        raise RefusedLine(line, source, str(exc)) from None
    return HeaderRule(action, names, statuses=statuses, types=types)


_ALLOWED = ", ".join(a.value for a in HeaderAction)


def parse_snippet(text: str) -> tuple[HeaderRule, ...]:
    """The header rules of a snippet made only of them; ``RefusedLine`` names the first line
    that is not one (``InvalidValue`` for an empty snippet)."""
    if "\x00" in text:
        raise InvalidValue("must not contain NUL")
    rules = tuple(_rule(line, source, words) for line, source, words in _tokens(text))
    if not rules:
        raise InvalidValue("has no directive")
    return rules
