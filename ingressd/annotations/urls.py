"""URL grammars: redirect URLs, Host headers and CORS origins, checked and written out again.  Pure.

    "https://Example.com:8443/a?b=c" --redirect_url()--> "https://example.com:8443/a?b=c"
    "Svc.NS.svc:8080" --upstream_vhost()--> "svc.ns.svc:8080"
    "https://a.com, http://*.b.com:81" --cors_origins()--> ("https://a.com", "http://*.b.com:81")
    anything else --> raise InvalidValue (``values.py``)

The host in each is a DNS name (``ingressd.model.validation``) or an IP address, the port
1-65535; no user information, spaces, backslashes or ``$`` (nginx would expand a variable).
Like every grammar in ``values.py``, narrower than nginx's: a value that passes can be written
inside double quotes in nginx.conf.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

from ingressd.annotations.values import InvalidValue, clean, comma_list
from ingressd.model.validation import validate_host, validate_hostname

__all__ = ["cors_origins", "redirect_url", "upstream_vhost"]

_URL_PART = re.compile(r"[A-Za-z0-9._~!*(),:@+=&%/?-]*\Z")
_ORIGIN = re.compile(r"(https?)://(\*\.)?([a-z0-9.-]+)(:[0-9]{1,5})?\Z")
_VHOST = re.compile(r"([^:]+)(?::([0-9]{1,5}))?\Z")
_PORT_MAX = 65535


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
    value = clean(text, max_length=2048)
    if " " in value or "\\" in value or "$" in value:
        raise InvalidValue("must not contain spaces, '\\\\' or '$'")
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError as exc:  # "Invalid IPv6 URL", bracketed hosts urlsplit cannot read
        raise InvalidValue(f"is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidValue("must be an absolute http:// or https:// URL")
    authority = _authority(parts.netloc)
    for name, part in (("path", parts.path), ("query", parts.query), ("fragment", parts.fragment)):
        if not _URL_PART.match(part):
            raise InvalidValue(f"has characters not allowed in a URL {name}")
    return urllib.parse.urlunsplit(
        (parts.scheme, authority, parts.path or "/", parts.query, parts.fragment)
    )


def upstream_vhost(text: str) -> str:
    """The Host header sent to pods: a DNS name or IP address, with an optional port
    (ingress-nginx also takes nginx variables here; ingressd refuses them)."""
    if "$" in text:
        raise InvalidValue(
            "must be a host name with an optional :port; nginx variables such "
            "as $host are not accepted by ingressd"
        )
    value = clean(text)
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


def cors_origins(text: str) -> tuple[str, ...]:
    """``*`` or comma-separated ``http(s)://host[:port]`` origins (``*.`` one-label wildcard)."""
    value = clean(text)
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
