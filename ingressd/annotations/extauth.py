"""External authentication grammars: ``auth-*`` values (and ``global-auth-*``) checked.  Pure.

    "http://10.0.0.9:4180/oauth2/auth" --auth_url()--> the URL, normalized
    "https://$host/oauth2/start?x=1"   --signin_url()--> the URL (allow-listed variables only)
    "$cookie__oauth2_proxy"            --cache_key()--> the key
    "200 202 10m, 401 1m"              --cache_durations()--> ("200 202 10m", "401 1m")
    "X-Request-Start: t=${msec}"       --header_value()--> the value (a ConfigMap entry)
    anything else --> raise InvalidValue (``values.py``)

ingress-nginx took ``auth-url`` and the headers of ``auth-proxy-set-headers`` nearly as they
came and spliced them into nginx.conf (CVE-2025-24514, CVE-2025-15566).  Here every value has a
grammar narrower than nginx's: no quote, backslash, ``;``, brace, ``#``, whitespace inside a
URL, and ``$`` only before a variable of an allow list (``variables.py``'s grammar; so
``nginx -t`` never meets an unknown one and nothing reads a variable ingressd does not expect).
``auth-url`` takes no variable at all: nginx resolves its host when it loads the configuration.
"""

from __future__ import annotations

import re
import urllib.parse

from ingressd.annotations import urls
from ingressd.annotations.values import InvalidValue, clean, comma_list, header_name
from ingressd.annotations.variables import AllowList, Grammar

__all__ = [
    "AUTH_METHODS",
    "auth_method",
    "auth_url",
    "cache_durations",
    "cache_key",
    "header_value",
    "proxy_set_headers",
    "redirect_param",
    "request_redirect",
    "signin_url",
]

AUTH_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")

#: Variables a sign-in URL may name (``$escaped_request_uri`` is set by ingressd's sign-in
#: location, as ingress-nginx's is).
SIGNIN_VARIABLES = AllowList(
    frozenset(
        {"host", "http_host", "best_http_host", "scheme", "request_uri", "escaped_request_uri"}
    )
)
#: Variables of cache keys and header values; and the families (``$http_x``, ``$cookie_x``).
VALUE_VARIABLES = AllowList(
    frozenset(
        {
            "host",
            "http_host",
            "best_http_host",
            "scheme",
            "request_uri",
            "uri",
            "args",
            "request_method",
            "remote_addr",
            "remote_user",
            "server_name",
            "server_port",
            "request_id",
            "req_id",
            "msec",
            "time_iso8601",
            "ssl_client_s_dn",
            "ssl_client_verify",
        }
    ),
    prefixes=("http_", "cookie_", "arg_"),
)

_URL_CHARS = re.compile(r"[A-Za-z0-9._~!*(),:@+=&%/?-]*\Z")
_PARAM = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_CODE = re.compile(r"[1-5][0-9][0-9]\Z")
_TIME = re.compile(r"[1-9][0-9]{0,8}(ms|s|m|h|d|w|M|y)\Z")
_KEY_TEXT = re.compile(r"[A-Za-z0-9_.:/-]*\Z")
_HEADER_TEXT = re.compile(r"[A-Za-z0-9 _.,:=/+*!?@%&()~<>\[\]|^-]*\Z")
_SIGNIN_REST = Grammar(SIGNIN_VARIABLES, _URL_CHARS, "a URL")
_CACHE_KEY = Grammar(VALUE_VARIABLES, _KEY_TEXT, "a cache key")
_HEADER_VALUE = Grammar(VALUE_VARIABLES, _HEADER_TEXT, "a header value")
_MAX_KEY = 256
_MAX_HEADER_VALUE = 1024


def auth_url(text: str) -> str:
    """An absolute ``http``/``https`` URL without variables, user information or fragment."""
    if "$" in text:
        raise InvalidValue(
            "must not contain nginx variables ('$'): ingressd sends the subrequest to a fixed "
            "host (write the auth service's address, e.g. http://oauth2-proxy.auth.svc:4180/"
            "oauth2/auth)"
        )
    value = urls.redirect_url(text)
    if urllib.parse.urlsplit(value).fragment or "#" in text:
        raise InvalidValue("must not have a fragment")
    return value


def auth_method(text: str) -> str:
    value = clean(text)
    if value not in AUTH_METHODS:
        raise InvalidValue(f"must be one of {', '.join(AUTH_METHODS)}")
    return value


def signin_url(text: str) -> str:
    """An absolute ``http``/``https`` URL; its host may be ``$host`` / ``$http_host`` /
    ``$best_http_host``, its path and query may use the sign-in variables."""
    value = clean(text, max_length=2048)
    match = re.match(r"(https?)://([^/?]*)(.*)\Z", value)
    if match is None:
        raise InvalidValue("must be an absolute http:// or https:// URL")
    scheme, authority, rest = match.groups()
    if authority in ("$host", "$http_host", "$best_http_host"):
        host = authority
    elif "$" in authority:
        raise InvalidValue("may only use $host, $http_host or $best_http_host as its host")
    else:
        host = urls.redirect_url(f"{scheme}://{authority}/").removeprefix(f"{scheme}://")[:-1]
    _SIGNIN_REST.checked(rest)
    return f"{scheme}://{host}{rest}"


def redirect_param(text: str) -> str:
    """The query parameter that carries the original URL (``rd``)."""
    value = clean(text)
    if not _PARAM.match(value):
        raise InvalidValue("must be a query parameter name (letters, digits, '_', '.', '-')")
    return value


def request_redirect(text: str) -> str:
    """The ``X-Auth-Request-Redirect`` value: an absolute URL or a path."""
    value = clean(text, max_length=2048)
    if value.startswith("/"):
        if not _URL_CHARS.match(value) or "$" in value:
            raise InvalidValue("has characters not allowed in a URL path")
        return value
    return urls.redirect_url(value)


def cache_key(text: str) -> str:
    """Text (``[A-Za-z0-9_.:/-]``) and allow-listed variables (``$remote_user$http_x``)."""
    value = clean(text, max_length=_MAX_KEY)
    if not value:
        raise InvalidValue("must not be empty")
    return _CACHE_KEY.checked(value)


def cache_durations(text: str) -> tuple[str, ...]:
    """Comma-separated ``proxy_cache_valid`` arguments: status codes, then one time
    (``200 202 10m``; ``any 1m``; a time alone caches 200, 301 and 302)."""

    def entry(item: str) -> str:
        words = item.split()
        *codes, time = words
        if not _TIME.match(time):
            raise InvalidValue("must end with a time such as 10m (ms, s, m, h, d, w, M, y)")
        if codes != ["any"] and not all(_CODE.match(c) for c in codes):
            raise InvalidValue("must list status codes (100-599) or 'any' before the time")
        return " ".join(words)

    return comma_list(text, entry, max_items=20)


def header_value(text: str) -> str:
    """A request header value for the auth service: printable text and allow-listed variables
    (``$http_x``, ``${msec}``, ...); no quote, backslash, brace or ``#``."""
    if len(text) > _MAX_HEADER_VALUE:
        raise InvalidValue(f"must be at most {_MAX_HEADER_VALUE} characters")
    value = text.strip()
    return _HEADER_VALUE.checked(value)


#: Most entries read from an ``auth-proxy-set-headers`` ConfigMap.
MAX_PROXY_SET_HEADERS = 100


def proxy_set_headers(data: object) -> tuple[tuple[str, str], ...]:
    """The ``data`` of an ``auth-proxy-set-headers`` ConfigMap: header name -> value, each
    checked (``header_name``, ``header_value``), sorted by name."""
    if not isinstance(data, dict) or not data:
        raise InvalidValue("has no data: expected header names and values")
    if len(data) > MAX_PROXY_SET_HEADERS:
        raise InvalidValue(f"has more than {MAX_PROXY_SET_HEADERS} entries")
    out: list[tuple[str, str]] = []
    for name in sorted(data, key=str):
        value = data[name]
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidValue(f"entry {name!r}: names and values must be strings")
        try:
            out.append((header_name(name), header_value(value)))
        except InvalidValue as exc:
            raise InvalidValue(f"entry {name!r} {exc}") from None
    return tuple(out)
