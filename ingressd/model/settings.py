"""Location settings: what annotations change in one location's nginx block.  Structural.

    annotations (proxy-*, rewrite-target, *-redirect, cors-*, auth-*, limit-*, ...)
        --annotations.parse_annotations()--> LocationSettings
    Secrets named by auth-secret, proxy-ssl-secret --annotations.secrets--> SecretFile
    auth-tls-secret + auth-tls-* --building--> ClientAuth (a Server's, not a location's)
        --building--> Location.settings (shared by the locations of one Ingress)
        --nginx.directives--> lines inside the ``location`` block of nginx.conf

Everything here is written into nginx.conf, so a change reloads nginx; the files made from
Secrets (``SecretFile``) are written into the work dir and named by a hash of their content.
``None`` (or an empty tuple) means the default; ``LocationSettings.to_json()`` shows only what
differs from it.  Immutable values, like the rest of ``ingressd.model``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ingressd.model.keys import BackendName, ObjectKey


class BackendProtocol(enum.Enum):
    """``backend-protocol``: how nginx talks to the pods."""

    HTTP = "HTTP"
    HTTPS = "HTTPS"
    GRPC = "GRPC"
    GRPCS = "GRPCS"


@dataclass(frozen=True, slots=True)
class SecretFile:
    """A file made from a Secret (htpasswd, CA bundle, client certificate), written 0600 into
    the work dir; its name carries a hash of the content, so a change reloads nginx."""

    secret: ObjectKey
    #: What the file is for: ``auth``, ``ca``, ``client``; part of the file name.
    purpose: str
    sha256: str
    content: str = field(repr=False)

    @property
    def file_name(self) -> str:
        namespace, _, name = self.secret.partition("/")
        return f"{namespace}_{name}-{self.purpose}-{self.sha256[:16]}"


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """``auth-tls-*``: client certificates a host asks for at the TLS handshake.  Server-level
    in nginx (``ssl_verify_client`` and friends), so it belongs to ``Server``, not to a
    location; the ``ssl-client-*`` headers go to the pods of every location of the host."""

    #: ``ca.crt`` of ``auth-tls-secret`` (``ssl_client_certificate``).
    ca: SecretFile
    #: ``ca.crl`` (``ssl_crl``), checked to be signed by a certificate of ``ca``.
    crl: SecretFile | None = None
    #: ``on``, ``off``, ``optional`` or ``optional_no_ca``.
    verify: str = "on"
    depth: int = 1
    #: ``auth-tls-error-page``: where a failed verification redirects (302).
    error_page: str | None = None
    #: ``auth-tls-pass-certificate-to-upstream``: the ``ssl-client-cert`` header.
    pass_certificate: bool = False
    #: ``auth-tls-match-cn``: ``CN=<regex>``; a subject DN that does not match answers 403.
    match_cn: str | None = None

    def secret_files(self) -> tuple[SecretFile, ...]:
        return (self.ca,) if self.crl is None else (self.ca, self.crl)


@dataclass(frozen=True, slots=True)
class Redirect:
    """``permanent-redirect`` / ``temporal-redirect``: answer every request with a redirect."""

    code: int
    url: str


@dataclass(frozen=True, slots=True)
class RateLimits:
    """``limit-rps``, ``limit-rpm``, ``limit-connections`` per client address.

    ``zone`` names the nginx shared memory zones of the Ingress (its requests share them).
    """

    zone: str
    rps: int | None = None
    rpm: int | None = None
    connections: int | None = None
    burst_multiplier: int = 5
    #: ``limit-rate`` (KB/s per connection, 0 = off) and ``limit-rate-after`` (KB).
    rate: int | None = None
    rate_after: int | None = None


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """``auth-type: basic`` with the htpasswd file from ``auth-secret``."""

    realm: str
    file: SecretFile


@dataclass(frozen=True, slots=True)
class ExternalAuth:
    """``auth-url`` and ``auth-*`` (or the ConfigMap's ``global-auth-*``): every request asks
    an auth service first (nginx ``auth_request``), with ingress-nginx's defaults.

    Every string is validated by ``ingressd.annotations.extauth`` and quoted again when
    rendered.  The rendered internal location is named by ``id`` (a digest of the whole value),
    so locations with equal settings share it, and a change is a new location (a reload).
    """

    #: ``http(s)://host[:port]/path[?query]``, no variables.
    url: str
    #: ``auth-method``: the method of the subrequest (``None``: the client's).
    method: str | None = None
    #: ``auth-signin``: where a 401 redirects (may hold allow-listed variables).
    signin: str | None = None
    signin_redirect_param: str = "rd"
    #: ``auth-response-headers``: copied from the auth answer to the upstream request.
    response_headers: tuple[str, ...] = ()
    #: ``auth-request-redirect``: the ``X-Auth-Request-Redirect`` value (``None``: the URI).
    request_redirect: str | None = None
    #: ``auth-cache-key``: answers are cached by this key (text and allow-listed variables).
    cache_key: str | None = None
    #: ``auth-cache-duration``: ``proxy_cache_valid`` arguments, e.g. ``("200 202 401 5m",)``.
    cache_duration: tuple[str, ...] = ("200 202 401 5m",)
    always_set_cookie: bool = False
    #: ``auth-proxy-set-headers``: ``(name, value)`` from the ConfigMap it names.
    proxy_set_headers: tuple[tuple[str, str], ...] = ()
    #: ``auth-keepalive``: idle connections kept to the auth service (0: none).
    keepalive: int = 0
    keepalive_share_vars: bool = False
    keepalive_requests: int = 1000
    keepalive_timeout: int = 60

    @property
    def id(self) -> str:
        """Names the internal location (and upstream) of these settings: ``a<hex>``."""
        return "a" + hashlib.sha256(repr(self).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Cors:
    """``enable-cors`` and ``cors-*``, with ingress-nginx's defaults."""

    #: ``("*",)`` or origins such as ``https://a.com``, ``https://*.b.com:8443``.
    origins: tuple[str, ...] = ("*",)
    methods: str = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    headers: str = (
        "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,"
        "Content-Type,Range,Authorization"
    )
    expose_headers: str = ""
    credentials: bool = True
    max_age: int = 1728000


@dataclass(frozen=True, slots=True)
class ProxySSL:
    """``proxy-ssl-*``: TLS towards HTTPS / GRPCS pods."""

    verify: bool = False
    #: Trusted CAs (``ca.crt`` of ``proxy-ssl-secret``).
    ca: SecretFile | None = None
    #: Client certificate + key (``tls.crt`` + ``tls.key`` of ``proxy-ssl-secret``).
    client_certificate: SecretFile | None = None
    #: Name checked against the pod's certificate and sent by SNI; ``None``: the Service's
    #: cluster DNS name ``<service>.<namespace>.svc``.
    name: str | None = None
    server_name: bool = False
    verify_depth: int = 1
    ciphers: str | None = None
    protocols: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModSecurity:
    """``enable-modsecurity``, ``enable-owasp-core-rules``, ``modsecurity-snippet``,
    ``modsecurity-transaction-id`` of one Ingress (the ConfigMap's keys are the defaults)."""

    #: ``None``: the ConfigMap's ``enable-modsecurity`` decides.
    enable: bool | None = None
    #: Run the OWASP Core Rule Set here (also when the ConfigMap turns it on for all).
    owasp_core_rules: bool = False
    #: ModSecurity rules for these locations: the safe subset re-rendered, or the snippet as
    #: written when snippets are allowed.
    rules: str | None = None
    transaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class LocationSettings:
    """Everything annotations change in one location's nginx block.  ``None`` = the default.

    Shared by the locations of one Ingress; a change is structural (nginx.conf changes).
    """

    #: Why the location answers 503 instead of proxying: a security annotation (access lists,
    #: authentication, backend TLS) was invalid, and failing open would expose the backend.
    denied: str | None = None
    body_size: str | None = None
    client_body_buffer_size: str | None = None
    connect_timeout: str | None = None
    send_timeout: str | None = None
    read_timeout: str | None = None
    buffering: bool | None = None
    request_buffering: bool | None = None
    buffer_size: str | None = None
    buffers_number: int | None = None
    busy_buffers_size: str | None = None
    max_temp_file_size: str | None = None
    http_version: str | None = None
    connection_header: str | None = None
    next_upstream: tuple[str, ...] = ()
    next_upstream_tries: int | None = None
    next_upstream_timeout: str | None = None
    rewrite_target: str | None = None
    redirect: Redirect | None = None
    custom_http_errors: tuple[int, ...] = ()
    #: ``default-backend``: serves when the backend has no endpoint, and the custom errors.
    default_backend: BackendName | None = None
    #: Where ``custom_http_errors`` go when not to ``default_backend``: the backend of
    #: ``--default-backend-service`` (the annotation without ``default-backend``, or the
    #: ConfigMap's codes).
    error_backend: BackendName | None = None
    upstream_vhost: str | None = None
    x_forwarded_prefix: str | None = None
    #: ``ssl-redirect``: ``None`` follows the server (redirect when it has TLS).
    ssl_redirect: bool | None = None
    force_ssl_redirect: bool = False
    #: ``preserve-trailing-slash``: the HTTPS redirect keeps a trailing ``/`` of the URI
    #: (by default it is stripped, as ingress-nginx does).
    preserve_trailing_slash: bool = False
    backend_protocol: BackendProtocol = BackendProtocol.HTTP
    proxy_ssl: ProxySSL | None = None
    #: ``whitelist-source-range`` / ``allowlist-source-range`` (normalized CIDRs).
    allow: tuple[str, ...] = ()
    #: ``denylist-source-range``.
    deny: tuple[str, ...] = ()
    limits: RateLimits | None = None
    auth: BasicAuth | None = None
    #: ``auth-url`` (or the ConfigMap's ``global-auth-url``): external authentication.
    external_auth: ExternalAuth | None = None
    satisfy_any: bool = False
    cors: Cors | None = None
    access_log: bool | None = None
    rewrite_log: bool = False
    #: ``proxy-redirect-from`` / ``-to``: ``("off",)``, ``("default",)`` or ``(from, to)``.
    proxy_redirect: tuple[str, ...] = ()
    #: ``proxy-cookie-domain`` / ``proxy-cookie-path``: ``("off",)`` or ``(from, to)``.
    cookie_domain: tuple[str, ...] = ()
    cookie_path: tuple[str, ...] = ()
    #: ``configuration-snippet`` (only with ``--allow-snippet-annotations``).
    snippet: str | None = None
    #: The WAF annotations; ``None``: none set (the ConfigMap decides).
    modsecurity: ModSecurity | None = None

    @property
    def errors_to(self) -> BackendName | None:
        """The backend that answers ``custom_http_errors`` (None: they are not intercepted)."""
        if not self.custom_http_errors or self.denied is not None:
            return None
        return self.error_backend if self.error_backend is not None else self.default_backend

    def secret_files(self) -> tuple[SecretFile, ...]:
        files: list[SecretFile] = []
        if self.auth is not None:
            files.append(self.auth.file)
        if self.proxy_ssl is not None:
            for f in (self.proxy_ssl.ca, self.proxy_ssl.client_certificate):
                if f is not None:
                    files.append(f)
        return tuple(files)

    def to_json(self) -> dict[str, Any]:
        """The settings that differ from the defaults, JSON-ready (secret contents left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = _jsonable(value)
        return out


DEFAULT_SETTINGS = LocationSettings()


def _jsonable(value: object) -> Any:
    if isinstance(value, SecretFile):
        return {"secret": value.secret, "file": value.file_name}
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
