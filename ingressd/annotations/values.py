"""Value grammars: one annotation value (a string) in, a typed and normalized value out.  Pure.

    "8m" --size()--> "8m"        "10.0.0.0/8, 1.2.3.4" --cidr_list()--> ("10.0.0.0/8", "1.2.3.4/32")
    "true" --boolean()--> True   "503,404, 404" --http_codes()--> (404, 503)
    anything else --> raise InvalidValue("why, completing the sentence '<annotation> ...'")
        -> ``table.py`` names the grammar of each annotation, ``parsing.py`` runs it

Every grammar is narrower than nginx's: a value that passes can be written into nginx.conf (inside
double quotes, or bare for numbers, sizes and times) without any character that ends a directive,
opens or closes a block, starts a variable, escapes a quote or starts a comment.  Lists are comma
separated with optional spaces, as ingress-nginx takes them.

Here: numbers, flags, sizes, times, lists and names (headers, cookies, hosts, Secrets).  The
grammars of URLs and ``host:port`` values are in ``urls.py``; those of values where ``$`` has a
meaning (regular expressions, rewrite targets, hash keys) in ``patterns.py``.  Both build on
``clean()`` and ``comma_list()`` from here.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Callable, Iterable
from typing import TypeVar

from ingressd.model.validation import (
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
    "clean",
    "comma_list",
    "cookie_domain",
    "cookie_name",
    "enumeration",
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
    "seconds",
    "size",
    "ssl_protocols",
    "token",
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
_REALM = re.compile(r"[A-Za-z0-9 _.,:()/@!?+=&*~-]{0,200}\Z")
#: proxy_next_upstream conditions nginx knows.
NEXT_UPSTREAM = frozenset(
    {
        "error",
        "timeout",
        "invalid_header",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "http_403",
        "http_404",
        "http_429",
        "non_idempotent",
        "off",
    }
)
SSL_PROTOCOLS = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"})


class InvalidValue(ValueError):
    """An annotation value outside its grammar; the message completes "<annotation> ..."."""


def clean(text: str, *, max_length: int = 1024) -> str:
    """The value without surrounding spaces; refuses what no grammar allows."""
    if len(text) > max_length:
        raise InvalidValue(f"must be at most {max_length} characters")
    bad = _NEVER.search(text)
    if bad:
        raise InvalidValue(f"must not contain {bad.group()!r}")
    return text.strip()


def comma_list(text: str, item: Callable[[str], T], *, max_items: int = 100) -> tuple[T, ...]:
    """``a, b,c`` -> ``(item(a), item(b), item(c))``; empty items are refused."""
    parts = [p.strip() for p in clean(text, max_length=8192).split(",")]
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
    value = clean(text)
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidValue("must be true or false")


def on_off(text: str) -> bool:
    """``on`` / ``off`` (nginx's spelling; true / false accepted too)."""
    value = clean(text).lower()
    if value in ("on", "true"):
        return True
    if value in ("off", "false"):
        return False
    raise InvalidValue("must be on or off")


def integer(low: int, high: int) -> Callable[[str], int]:
    """A decimal integer in ``[low, high]``."""

    def parse(text: str) -> int:
        value = clean(text)
        if not re.fullmatch(r"-?[0-9]{1,12}", value):
            raise InvalidValue("must be an integer")
        number = int(value)
        if not low <= number <= high:
            raise InvalidValue(f"must be between {low} and {high}")
        return number

    return parse


#: The largest size an offset directive (client_max_body_size) is given: far below off_t's
#: limit, where nginx would refuse the value (999999999999g).
_MAX_OFFSET = 2**50
#: The largest buffer size: nginx's size directives take k and m only (no g), and a buffer of
#: more than 1 GiB is a mistake.
_MAX_BUFFER = 1024**3
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size_in_bytes(text: str) -> int:
    """The bytes of a size ``size()`` accepted (``8m`` -> 8388608); ``InvalidValue`` otherwise."""
    match = _SIZE.match(text)
    if not match:
        raise InvalidValue("must be a size such as 512k, 8m or 0")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def size(text: str) -> str:
    """An nginx size: digits and an optional ``k``/``m``/``g`` (``0`` where nginx allows it)."""
    value = clean(text)
    match = _SIZE.match(value)
    if not match:
        raise InvalidValue("must be a size such as 512k, 8m or 0")
    unit = match.group(2).lower()
    if size_in_bytes(value) > _MAX_OFFSET:
        raise InvalidValue(f"must be at most {_MAX_OFFSET // 1024**3}g")
    return match.group(1) + unit


def buffer_size(text: str) -> str:
    """A buffer size: digits and an optional ``k`` or ``m`` (nginx's size directives take no
    ``g``), at most 1024m."""
    value = size(text)
    if value.endswith("g"):
        raise InvalidValue("must be given in k or m: nginx takes no g here (1024m, not 1g)")
    if size_in_bytes(value) > _MAX_BUFFER:
        raise InvalidValue("must be at most 1024m")
    return value


def seconds(text: str) -> str:
    """A time: seconds without a unit (ingress-nginx's form) or ``ms``/``s``/``m``/``h``."""
    value = clean(text)
    match = _SECONDS.match(value)
    if not match:
        raise InvalidValue("must be a number of seconds such as 30 (or 500ms, 2m)")
    return match.group(1) + (match.group(2) or "s")


def enumeration(*choices: str, case_sensitive: bool = False) -> Callable[[str], str]:
    """One of ``choices``; returned as spelled in ``choices``."""
    by_key = {(c if case_sensitive else c.lower()): c for c in choices}

    def parse(text: str) -> str:
        value = clean(text)
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
    value = clean(text)
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
    value = clean(text)
    if not _COOKIE.match(value):
        raise InvalidValue("must be a cookie name (letters, digits, '_', '.' and '-')")
    return value


def cookie_domain(text: str) -> str:
    """A cookie's ``Domain`` attribute: a DNS name, optionally with a leading ``.``,
    lower-cased."""
    value = clean(text).lower()
    reason = validate_hostname(value[1:] if value.startswith(".") else value)
    if reason is not None:
        raise InvalidValue(f"must be a domain name: {reason}")
    return value


def path(text: str) -> str:
    """A URL path under the same rules as an Ingress path."""
    value = clean(text)
    reason = validate_path(value)
    if reason is not None:
        raise InvalidValue(reason)
    return value


def realm(text: str) -> str:
    """A realm for ``auth_basic``: printable text without quotes, ``$``, ``\\``, ``;`` or braces."""
    value = clean(text)
    if not _REALM.match(value):
        bad = re.search(r"[^A-Za-z0-9 _.,:()/@!?+=&*~-]", value)
        raise InvalidValue(f"must not contain {bad.group() if bad else value!r}")
    return value


def host_list(text: str) -> tuple[str, ...]:
    """Comma-separated host names (exact or ``*.`` wildcards), lower-cased."""

    def host(item: str) -> str:
        reason = validate_host(item.lower())
        if reason is not None:
            raise InvalidValue(reason)
        return item.lower()

    return comma_list(text, host)


def http_codes(text: str) -> tuple[int, ...]:
    """Comma-separated HTTP status codes 300-599, sorted without duplicates."""
    codes = comma_list(text, integer(300, 599))
    return tuple(sorted(set(codes)))


def next_upstream(text: str) -> tuple[str, ...]:
    """``proxy_next_upstream`` conditions, space separated (``error timeout http_502``)."""
    value = clean(text)
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
    items = clean(text).split()
    if not items:
        raise InvalidValue("must list at least one protocol")
    for item in items:
        if item not in SSL_PROTOCOLS:
            choices = ", ".join(sorted(SSL_PROTOCOLS))
            raise InvalidValue(f"protocol {item!r} must be one of {choices}")
    return tuple(dict.fromkeys(items))


def ciphers(text: str) -> str:
    """An OpenSSL cipher list (``ECDHE-RSA-AES128-GCM-SHA256:!aNULL``) that selects at least
    one cipher of the OpenSSL nginx links (checked with the same library through ``ssl``)."""
    value = clean(text)
    if not _CIPHERS.match(value):
        raise InvalidValue("must be an OpenSSL cipher list (letters, digits, ':!+@_.-')")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).set_ciphers(value)
    except ssl.SSLError:
        raise InvalidValue("selects no cipher OpenSSL knows") from None
    return value


_REDIRECT_URL = re.compile(r"[A-Za-z0-9._~:/?&=%+@!*(),-]{1,512}\Z")
_COOKIE_PART = re.compile(r"[A-Za-z0-9._~/:-]{1,253}\Z")


def proxy_redirect_url(text: str) -> str:
    """``proxy-redirect-from`` / ``-to``: ``off``, ``default`` or a URL or path prefix of the
    ``Location`` header (no regex: no leading ``~``; no ``$``, spaces or quotes)."""
    value = clean(text)
    if not _REDIRECT_URL.match(value):
        raise InvalidValue("must be off, default or a URL or path without spaces, '$' or quotes")
    return value


def cookie_rewrite(text: str) -> tuple[str, ...]:
    """``proxy-cookie-domain`` / ``-path``: ``off`` or ``<from> <to>`` (letters, digits and
    ``._~/:-``; no regex, no variables)."""
    value = clean(text)
    if value == "off":
        return ("off",)
    parts = value.split()
    if len(parts) != 2 or not all(_COOKIE_PART.match(p) for p in parts):
        raise InvalidValue("must be off or '<from> <to>' (letters, digits and '._~/:-')")
    if parts[0].startswith("~"):
        raise InvalidValue("regular expressions are not accepted")
    return (parts[0], parts[1])


def token(text: str) -> str:
    """A short word: letters, digits, ``_``, ``.``, ``-``."""
    value = clean(text)
    if not _TOKEN.match(value):
        raise InvalidValue("must be a single word (letters, digits, '_', '.' and '-')")
    return value


def auth_secret_ref(text: str) -> tuple[str | None, str]:
    """``name`` or ``namespace/name`` of a Secret -> ``(namespace or None, name)``."""
    value = clean(text)
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
