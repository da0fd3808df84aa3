"""Grammar checks for every string the builder copies from Kubernetes objects into the model.

    raw Ingress / Service / Secret fields --validate_*()--> None (valid) | reason (str)
        -> building.build_configuration() turns a reason into a ``Problem`` and skips the item

Every value that reaches nginx.conf (host names, paths, names that make up backend and file
names) passes through here first, so the renderer never sees a character that could end a
directive, open a block or start a variable.  The checks are deliberately stricter than nginx
needs: a path may hold only ``A-Z a-z 0-9 . _ ~ - / ! * ( ) , : @ + = &`` after its leading slash.

Each ``validate_*`` function is pure and returns ``None`` when the value is valid, or a short
human reason ("must not contain '{'") that completes the sentence "<field> ...".
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "MAX_HOSTNAME_LENGTH",
    "MAX_PATH_LENGTH",
    "validate_dns1035_label",
    "validate_dns1123_label",
    "validate_dns1123_subdomain",
    "validate_host",
    "validate_hostname",
    "validate_namespace",
    "validate_object_name",
    "validate_path",
    "validate_port_name",
    "validate_port_number",
    "validate_service_name",
    "validate_wildcard_host",
]

#: Longest DNS-1123 subdomain (and so host name) Kubernetes accepts.
MAX_HOSTNAME_LENGTH = 253
#: Longest DNS label.
MAX_LABEL_LENGTH = 63
#: Longest Ingress path ingressd accepts.
MAX_PATH_LENGTH = 1024
#: Longest IANA service name (a named Service port).
MAX_PORT_NAME_LENGTH = 15

_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)*\Z"
)
_DOTTED_NUMBERS = re.compile(r"[0-9.]+\Z")
_LABEL_CHARS = re.compile(r"[a-z0-9-]+\Z")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_PATH = re.compile(r"/[A-Za-z0-9._~\-/!*(),:@+=&]*\Z")
_PATH_BAD_CHAR = re.compile(r"[^A-Za-z0-9._~\-/!*(),:@+=&]")
_PORT_NAME_CHARS = re.compile(r"[a-z0-9-]+\Z")
_HAS_LETTER = re.compile(r"[a-z]")


def _label_reason(label: str) -> str | None:
    """Why one dot-separated label of a host name is not a DNS-1123 label."""
    if not label:
        return "must not contain an empty label"
    if len(label) > MAX_LABEL_LENGTH:
        return f"label {label[:20]!r}... must be at most {MAX_LABEL_LENGTH} characters"
    if _DNS1123_LABEL.match(label):
        return None
    if label.lower() != label and _LABEL_CHARS.match(label.lower()):
        return "must be lowercase"
    if not _LABEL_CHARS.match(label):
        bad = next(c for c in label if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "-"))
        return f"must not contain {bad!r} (only lowercase letters, digits, '-' and '.')"
    return f"label {label!r} must start and end with a lowercase letter or digit"


def validate_dns1123_subdomain(value: str) -> str | None:
    """A DNS-1123 subdomain: lowercase labels of ``a-z 0-9 -`` joined by dots, <= 253 characters.

    Labels are also held to 63 characters (the DNS limit; Kubernetes' own check omits it).
    """
    if not value:
        return "must not be empty"
    if len(value) > MAX_HOSTNAME_LENGTH:
        return f"must be at most {MAX_HOSTNAME_LENGTH} characters"
    if _SUBDOMAIN.match(value):
        return None
    for label in value.split("."):
        reason = _label_reason(label)
        if reason is not None:
            return reason
    return "must be a lowercase DNS name"  # pragma: no cover - the regex and labels agree


def validate_dns1123_label(value: str) -> str | None:
    """A DNS-1123 label (namespace names): ``a-z 0-9 -``, alphanumeric at both ends, <= 63."""
    if not value:
        return "must not be empty"
    if "." in value:
        return "must not contain '.'"
    return _label_reason(value)


def validate_dns1035_label(value: str) -> str | None:
    """A DNS-1035 label (Service names): like DNS-1123 but starting with a letter."""
    reason = validate_dns1123_label(value)
    if reason is not None:
        return reason
    if not _DNS1035_LABEL.match(value):
        return "must start with a lowercase letter"
    return None


def validate_namespace(value: str) -> str | None:
    """A namespace name (DNS-1123 label)."""
    return validate_dns1123_label(value)


def validate_object_name(value: str) -> str | None:
    """A Kubernetes object name such as a Secret's or an Ingress's (DNS-1123 subdomain)."""
    return validate_dns1123_subdomain(value)


def validate_service_name(value: str) -> str | None:
    """A Service name (DNS-1035 label)."""
    return validate_dns1035_label(value)


def validate_hostname(host: str) -> str | None:
    """An exact Ingress host: a DNS-1123 subdomain that is not an IP address."""
    reason = validate_dns1123_subdomain(host)
    if reason is not None or not _DOTTED_NUMBERS.match(host):
        return reason
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return "must be a DNS name, not an IP address"


def validate_wildcard_host(host: str) -> str | None:
    """A wildcard Ingress host: ``*.`` then a subdomain of at least two labels (``*.foo.com``).

    The star must be the whole first label; it matches exactly one label at request time.
    """
    if not host.startswith("*."):
        return "wildcard must be the whole first label ('*.example.com')"
    rest = host[2:]
    if "*" in rest:
        return "must contain only one '*', as the whole first label"
    if len(host) > MAX_HOSTNAME_LENGTH:
        return f"must be at most {MAX_HOSTNAME_LENGTH} characters"
    reason = validate_dns1123_subdomain(rest)
    if reason is not None:
        return reason
    if rest.count(".") < 1:
        return "wildcard must be followed by at least two labels ('*.example.com')"
    return None


def validate_host(host: str) -> str | None:
    """An Ingress rule or TLS host: exact (:func:`validate_hostname`) or wildcard."""
    if "*" in host:
        return validate_wildcard_host(host)
    return validate_hostname(host)


def validate_path(path: str) -> str | None:
    """An Ingress path, safe to write into an nginx ``location`` directive.

    Must start with ``/``; only ``A-Z a-z 0-9 . _ ~ - / ! * ( ) , : @ + = &`` may follow; no
    ``//``, no ``.`` or ``..`` segment; at most 1024 characters.
    """
    if len(path) > MAX_PATH_LENGTH:
        return f"must be at most {MAX_PATH_LENGTH} characters"
    if not path.startswith("/"):
        return "must start with '/'"
    if not _PATH.match(path):
        bad = _PATH_BAD_CHAR.search(path[1:])
        char = bad.group() if bad else path[1:]
        return f"must not contain {char!r}"
    if "//" in path:
        return "must not contain '//'"
    if "/." not in path:
        return None
    for segment in path.split("/"):
        if segment in (".", ".."):
            return f"must not contain a {segment!r} segment"
    return None


def validate_port_name(name: str) -> str | None:
    """A named Service port (IANA_SVC_NAME): <= 15 of ``a-z 0-9 -``, a letter, no ``--``."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_PORT_NAME_LENGTH:
        return f"must be at most {MAX_PORT_NAME_LENGTH} characters"
    if not _PORT_NAME_CHARS.match(name):
        return "must contain only lowercase letters, digits and '-'"
    if not _HAS_LETTER.search(name):
        return "must contain at least one letter"
    if name.startswith("-") or name.endswith("-"):
        return "must not start or end with '-'"
    if "--" in name:
        return "must not contain '--'"
    return None


def validate_port_number(number: int) -> str | None:
    """A TCP/UDP port number, 1 to 65535."""
    if isinstance(number, bool) or not isinstance(number, int):
        return "must be an integer"
    if not 1 <= number <= 65535:
        return "must be between 1 and 65535"
    return None
