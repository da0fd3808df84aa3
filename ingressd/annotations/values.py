"""Value grammars: one annotation value (a string) in, a typed and normalized value out.  Pure.

    "8m" --size()--> "8m"        "10.0.0.0/8, 1.2.3.4" --cidr_list()--> ("10.0.0.0/8", "1.2.3.4/32")
    "true" --boolean()--> True   "https://a.com/x?y=1" --redirect_url()--> "https://a.com/x?y=1"
    anything else --> raise InvalidValue("why, completing the sentence '<annotation> ...'")

Every grammar is narrower than nginx's: a value that passes can be written into nginx.conf (inside
double quotes, or bare for numbers, sizes and times) without any character that ends a directive,
opens or closes a block, starts a variable, escapes a quote or starts a comment.  Regular
expressions are compiled with Python's ``re`` (close to PCRE for the subset accepted) and may use
``$`` only as an end anchor.  Lists are comma separated with optional spaces, as ingress-nginx
takes them.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Iterable
from typing import TypeVar

from ingressd.validation import (
    validate_host,
    validate_hostname,
    validate_namespace,
    validate_object_name,
    validate_path,
)

__all__ = [
    "InvalidValue",
    "auth_secret_ref",
    "boolean",
    "cidr_list",
    "ciphers",
    "comma_list",
    "cookie_name",
    "cors_origins",
    "enumeration",
    "hash_key",
    "header_list",
    "header_name",
    "host_list",
    "http_codes",
    "integer",
    "method_list",
    "names",
    "next_upstream",
    "on_off",
    "path",
    "realm",
    "redirect_url",
    "regex",
    "regex_path",
    "rewrite_target",
    "seconds",
    "size",
    "ssl_protocols",
    "token",
    "upstream_vhost",
]

T = TypeVar("T")

#: Characters no value may contain anywhere: quotes, backslash-free escapes of nginx strings,
#: block and directive delimiters, comments, variables, whitespace other than a space.
_NEVER = re.compile(r"[\"'`;{}#\x00-\x1f\x7f]")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_SIZE = re.compile(r"(0|[1-9][0-9]{0,11})([kKmMgG]?)\Z")
_SECONDS = re.compile(r"([0-9]{1,7})(ms|s|m|h)?\Z")
_HEADER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")
_METHOD = re.compile(r"[A-Za-z]{1,20}\Z")
_COOKIE = re.compile(r"[A-Za-z0-9_.-]{1,128}\Z")
_TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_CIPHERS = re.compile(r"[A-Za-z0-9:!+@_.-]{1,1024}\Z")
_HASH_KEY = re.compile(
    r"(?:\$[a-z_][a-z0-9_]{0,63}|\$\{[a-z_][a-z0-9_]{0,63}\}|[A-Za-z0-9_.:/-])+\Z"
)
_HAS_VARIABLE = re.compile(r"\$")
_REALM = re.compile(r"[A-Za-z0-9 _.,:()/@!?+=&*~-]{0,200}\Z")
_URL_PART = re.compile(r"[A-Za-z0-9._~!*(),:@+=&%/?-]*\Z")
_REWRITE = re.compile(r"/(?:[A-Za-z0-9._~!*(),:@+=&%/?-]|\$[1-9])*\Z")
_REGEX_CHARS = re.compile(r"[A-Za-z0-9._~!*(),:@+=&%/?^|\[\]\\$<>-]*\Z")
_ORIGIN = re.compile(r"(https?)://(\*\.)?([a-z0-9.-]+)(:[0-9]{1,5})?\Z")
_VHOST = re.compile(r"([^:]+)(?::([0-9]{1,5}))?\Z")
_PORT_MAX = 65535
#: proxy_next_upstream conditions nginx knows.
NEXT_UPSTREAM = frozenset(
    {
        "error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504",
        "http_403", "http_404", "http_429", "non_idempotent", "off",
    }
)
SSL_PROTOCOLS = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"})


class InvalidValue(ValueError):
    """An annotation value outside its grammar; the message completes "<annotation> ..."."""


def _clean(text: str, *, max_length: int = 1024) -> str:
    """The value without surrounding spaces; refuses what no grammar allows."""
    if len(text) > max_length:
        raise InvalidValue(f"must be at most {max_length} characters")
    bad = _NEVER.search(text)
    if bad:
        raise InvalidValue(f"must not contain {bad.group()!r}")
    return text.strip()


def comma_list(text: str, item: Callable[[str], T], *, max_items: int = 100) -> tuple[T, ...]:
    """``a, b,c`` -> ``(item(a), item(b), item(c))``; empty items are refused."""
    parts = [p.strip() for p in _clean(text, max_length=8192).split(",")]
    if len(parts) > max_items:
        raise InvalidValue(f"must list at most {max_items} items")
    out: list[T] = []
    for part in parts:
        if not part:
            raise InvalidValue("must not contain an empty item")
        try:
            out.append(item(part))
        except InvalidValue as exc:
            raise InvalidValue(f"item {part!r} {exc}") from None
    return tuple(out)


def boolean(text: str) -> bool:
    """``true`` / ``false`` (and the other spellings Go's ``strconv.ParseBool`` takes)."""
    value = _clean(text)
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidValue("must be true or false")


def on_off(text: str) -> bool:
    """``on`` / ``off`` (nginx's spelling; true / false accepted too)."""
    value = _clean(text).lower()
    if value in ("on", "true"):
        return True
    if value in ("off", "false"):
        return False
    raise InvalidValue("must be on or off")


def integer(low: int, high: int) -> Callable[[str], int]:
    """A decimal integer in ``[low, high]``."""

    def parse(text: str) -> int:
        value = _clean(text)
        if not re.fullmatch(r"-?[0-9]{1,12}", value):
            raise InvalidValue("must be an integer")
        number = int(value)
        if not low <= number <= high:
            raise InvalidValue(f"must be between {low} and {high}")
        return number

    return parse


def size(text: str) -> str:
    """An nginx size: digits and an optional ``k``/``m``/``g`` (``0`` where nginx allows it)."""
    value = _clean(text)
    match = _SIZE.match(value)
    if not match:
        raise InvalidValue("must be a size such as 512k, 8m or 0")
    return match.group(1) + match.group(2).lower()


def seconds(text: str) -> str:
    """A time: seconds without a unit (ingress-nginx's form) or ``ms``/``s``/``m``/``h``."""
    value = _clean(text)
    match = _SECONDS.match(value)
    if not match:
        raise InvalidValue("must be a number of seconds such as 30 (or 500ms, 2m)")
    return match.group(1) + (match.group(2) or "s")


def enumeration(*choices: str, case_sensitive: bool = False) -> Callable[[str], str]:
    """One of ``choices``; returned as spelled in ``choices``."""
    by_key = {(c if case_sensitive else c.lower()): c for c in choices}

    def parse(text: str) -> str:
        value = _clean(text)
        found = by_key.get(value if case_sensitive else value.lower())
        if found is None:
            raise InvalidValue(f"must be one of {', '.join(choices)}")
        return found

    return parse


def cidr_list(text: str) -> tuple[str, ...]:
    """Comma-separated IPv4/IPv6 addresses or CIDRs, normalized (``1.2.3.4`` -> ``1.2.3.4/32``)."""

    def network(item: str) -> str:
        try:
            return str(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise InvalidValue("is not an IP address or CIDR") from None

    return comma_list(text, network, max_items=1000)


def header_name(text: str) -> str:
    """An HTTP header name: letters, digits, ``-`` and ``_``."""
    value = _clean(text)
    if not _HEADER.match(value):
        raise InvalidValue("must be a header name (letters, digits, '-' and '_')")
    return value


def header_list(text: str, *, star: bool = False) -> tuple[str, ...]:
    """Comma-separated header names (``*`` too when ``star``)."""
    return comma_list(text, lambda h: h if star and h == "*" else header_name(h))


def method_list(text: str) -> tuple[str, ...]:
    """Comma-separated HTTP methods (letters only), upper-cased."""

    def method(item: str) -> str:
        if not _METHOD.match(item):
            raise InvalidValue("must be an HTTP method (letters only)")
        return item.upper()

    return comma_list(text, method)


def cookie_name(text: str) -> str:
    """A cookie name: letters, digits, ``_``, ``.`` and ``-``."""
    value = _clean(text)
    if not _COOKIE.match(value):
        raise InvalidValue("must be a cookie name (letters, digits, '_', '.' and '-')")
    return value


def path(text: str) -> str:
    """A URL path under the same rules as an Ingress path."""
    value = _clean(text)
    reason = validate_path(value)
    if reason is not None:
        raise InvalidValue(reason)
    return value


def realm(text: str) -> str:
    """A realm for ``auth_basic``: printable text without quotes, ``$``, ``\\``, ``;`` or braces."""
    value = _clean(text)
    if not _REALM.match(value):
        bad = re.search(r"[^A-Za-z0-9 _.,:()/@!?+=&*~-]", value)
        raise InvalidValue(f"must not contain {bad.group() if bad else value!r}")
    return value


def _authority(netloc: str) -> str:
    """``host[:port]`` of a URL, checked: a DNS name or an IP address, no user info."""
    if "@" in netloc:
        raise InvalidValue("must not contain user information")
    host, port = netloc, None
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise InvalidValue("has an unterminated IPv6 address")
        host, rest = netloc[1:end], netloc[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InvalidValue("has garbage after the IPv6 address")
            port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidValue("has an invalid IPv6 address") from None
        host = f"[{host}]"
    else:
        host, sep, port_text = netloc.partition(":")
        port = port_text if sep else None
        host = host.lower()
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            reason = validate_host(host)
            if reason is not None:
                raise InvalidValue(f"host {reason}") from None
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= _PORT_MAX:
            raise InvalidValue("has an invalid port")
        return f"{host}:{int(port)}"
    return host


def redirect_url(text: str) -> str:
    """An absolute ``http``/``https`` URL, parsed and written out again."""
    value = _clean(text, max_length=2048)
    if " " in value or "\\" in value or "$" in value:
        raise InvalidValue("must not contain spaces, '\\\\' or '$'")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise InvalidValue("must be an absolute http:// or https:// URL")
    authority = _authority(parts.netloc)
    for name, part in (("path", parts.path), ("query", parts.query), ("fragment", parts.fragment)):
        if not _URL_PART.match(part):
            raise InvalidValue(f"has characters not allowed in a URL {name}")
    return urllib.parse.urlunsplit(
        (parts.scheme, authority, parts.path or "/", parts.query, parts.fragment)
    )


def host_list(text: str) -> tuple[str, ...]:
    """Comma-separated host names (exact or ``*.`` wildcards), lower-cased."""

    def host(item: str) -> str:
        reason = validate_host(item.lower())
        if reason is not None:
            raise InvalidValue(reason)
        return item.lower()

    return comma_list(text, host)


def upstream_vhost(text: str) -> str:
    """The Host header sent to pods: a DNS name or IP address, with an optional port
    (ingress-nginx also takes nginx variables here; ingressd refuses them)."""
    if "$" in text:
        raise InvalidValue("must be a host name with an optional :port; nginx variables such "
                           "as $host are not accepted by ingressd")
    value = _clean(text)
    match = _VHOST.match(value)
    if not match:
        raise InvalidValue("must be a host name with an optional :port")
    host, port = match.group(1).lower(), match.group(2)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        reason = validate_hostname(host)
        if reason is not None:
            raise InvalidValue(reason) from None
    if port is not None:
        if not 1 <= int(port) <= _PORT_MAX:
            raise InvalidValue("has an invalid port")
        return f"{host}:{int(port)}"
    return host


def http_codes(text: str) -> tuple[int, ...]:
    """Comma-separated HTTP status codes 300-599, sorted without duplicates."""
    codes = comma_list(text, integer(300, 599))
    return tuple(sorted(set(codes)))


def next_upstream(text: str) -> tuple[str, ...]:
    """``proxy_next_upstream`` conditions, space separated (``error timeout http_502``)."""
    value = _clean(text)
    items = value.split()
    if not items:
        raise InvalidValue("must list at least one condition")
    for item in items:
        if item not in NEXT_UPSTREAM:
            choices = ", ".join(sorted(NEXT_UPSTREAM))
            raise InvalidValue(f"condition {item!r} must be one of {choices}")
    if "off" in items and len(items) > 1:
        raise InvalidValue("'off' must be alone")
    return tuple(dict.fromkeys(items))


def ssl_protocols(text: str) -> tuple[str, ...]:
    """TLS protocol names, space separated (``TLSv1.2 TLSv1.3``)."""
    items = _clean(text).split()
    if not items:
        raise InvalidValue("must list at least one protocol")
    for item in items:
        if item not in SSL_PROTOCOLS:
            choices = ", ".join(sorted(SSL_PROTOCOLS))
            raise InvalidValue(f"protocol {item!r} must be one of {choices}")
    return tuple(dict.fromkeys(items))


def ciphers(text: str) -> str:
    """An OpenSSL cipher list (``ECDHE-RSA-AES128-GCM-SHA256:!aNULL``)."""
    value = _clean(text)
    if not _CIPHERS.match(value):
        raise InvalidValue("must be an OpenSSL cipher list (letters, digits, ':!+@_.-')")
    return value


def token(text: str) -> str:
    """A short word: letters, digits, ``_``, ``.``, ``-``."""
    value = _clean(text)
    if not _TOKEN.match(value):
        raise InvalidValue("must be a single word (letters, digits, '_', '.' and '-')")
    return value


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
    value = _clean(text, max_length=512)
    if not value:
        raise InvalidValue("must not be empty")
    if not _REGEX_CHARS.match(value):
        bad = re.search(r"[^A-Za-z0-9._~!*(),:@+=&%/?^|\[\]\\$<>-]", value)
        raise InvalidValue(f"must not contain {bad.group() if bad else value!r}")
    _check_dollars(value, allow_captures=False)
    _check_backslashes(value)
    try:
        re.compile(value)
    except re.error as exc:
        raise InvalidValue(f"is not a valid regular expression: {exc}") from None
    return value


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
    value = _clean(text)
    if not _REWRITE.match(value):
        raise InvalidValue(
            "must be a path starting with '/' that uses only capture references $1-$9"
        )
    if "//" in value.split("?")[0]:
        raise InvalidValue("must not contain '//'")
    return value


def cors_origins(text: str) -> tuple[str, ...]:
    """``*`` or comma-separated ``http(s)://host[:port]`` origins (``*.`` one-label wildcard)."""
    value = _clean(text)
    if value == "*":
        return ("*",)

    def origin(item: str) -> str:
        match = _ORIGIN.match(item.lower())
        if not match:
            raise InvalidValue("must be * or http(s)://host[:port]")
        reason = validate_hostname(match.group(3))
        if reason is not None and not _is_ip(match.group(3)):
            raise InvalidValue(f"host {reason}")
        port = match.group(4)
        if port is not None and not 1 <= int(port[1:]) <= _PORT_MAX:
            raise InvalidValue("has an invalid port")
        return item.lower()

    return comma_list(text, origin)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def auth_secret_ref(text: str) -> tuple[str | None, str]:
    """``name`` or ``namespace/name`` of a Secret -> ``(namespace or None, name)``."""
    value = _clean(text)
    namespace, sep, name = value.rpartition("/")
    if sep:
        reason = validate_namespace(namespace)
        if reason is not None:
            raise InvalidValue(f"namespace {reason}")
    reason = validate_object_name(name)
    if reason is not None:
        raise InvalidValue(f"name {reason}")
    return (namespace if sep else None), name


def names(values: Iterable[str]) -> str:
    """``a, b and c`` for messages."""
    items = list(values)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
