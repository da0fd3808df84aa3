"""The routing oracle: random Ingress sets and requests, sent through both ``--routing`` modes.

    seed --generate_world()--> World (Services, Secrets, Ingresses; what requests may name)
         --generate_requests()--> [Request]
    World --Pair.apply()--> one manifests dir read by two controllers:
        Harness(routing="nginx")   the oracle: a server block per host, a location per path
        Harness(routing="lua")     one catch-all server, lua/ingressd/router.lua picks the route
    Request --Pair.compare()--> (Answer from nginx, Answer from lua) --differ?--> Mismatch

An ``Answer`` is what both modes must agree on: the status, the Service of the pod that answered
(``X-Pod`` is ``<service>-<i>``), the path the pod received (after ``rewrite-target``), the
``Location`` of a redirect (each controller's own ports replaced by ``<http>`` / ``<https>``),
whether ``Strict-Transport-Security`` was sent, and, over HTTPS, which certificate was presented.

Everything random comes from one ``random.Random(seed)``, so a seed names a world and its
requests (``World.yaml()`` and ``Mismatch.show()`` write them out for a report).  Canary weights
are 0 or 100 only, so that every answer is deterministic.  One known difference between the
modes is left out where it is decided: the certificate of names a wildcard's certificate covers
but their own server has none (``shadowed_names``).  Used by ``tests/test_routing_parity.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import random
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from yarl import URL

from ingressd.app.runtime import Source
from ingressd.model import Configuration
from ingressd.store.snapshot import KubeObject
from ingressd.store.sources.files import ManifestsSource
from tests.support.backends import EchoPods
from tests.support.harness import Harness, free_port, pod_addresses
from tests.support.objects import (
    backend,
    endpoint_slice,
    ingress,
    path,
    rule,
    self_signed_certificate,
    service,
    service_port,
    tls,
    tls_secret,
)

__all__ = [
    "Answer",
    "Mismatch",
    "Pair",
    "Request",
    "World",
    "generate_requests",
    "generate_world",
]

P = "nginx.ingress.kubernetes.io/"

#: Services with pods (``<service>-<i>`` answer), one without endpoints (503), one that does
#: not exist (the path is dropped with a Problem).
SERVED = ("alpha", "beta", "gamma", "delta")
EMPTY = "empty"
GHOST = "ghost"
PORT_NAME = "http"

EXACT_HOSTS = ("a.test", "b.test", "shop.test", "c.x.test", "api.y.test")
WILDCARD_HOSTS = ("*.x.test", "*.y.test")
ALIASES = ("alias.test", "www.a.test", "*.z.test")
#: Hosts no Ingress names, and names two labels below a wildcard (a wildcard is one label).
OTHER_HOSTS = ("unknown.test", "deep.foo.x.test", "x.test")
#: Matches of the wildcards above (``c.x.test`` is also an exact host: the exact one wins).
WILDCARD_MATCHES = ("foo.x.test", "c.x.test", "bar.y.test", "api.y.test", "one.z.test")

#: Paths of Exact / Prefix / ImplementationSpecific rules: nested, near misses, trailing slashes.
PLAIN_PATHS = (
    "/",
    "/aaa",
    "/aaa/",
    "/aaa/bbb",
    "/aaaccc",
    "/api",
    "/api/v1",
    "/img",
    "/shop/cart/",
    "/x.y",
    "/AAA",
)
#: Regex paths (``use-regex``), their capture groups, and URIs that match each.
REGEX_PATHS: dict[str, tuple[int, tuple[str, ...]]] = {
    "/api/v[0-9]+": (0, ("/api/v2", "/api/v12/users", "/API/V3", "/api/vx")),
    r"/img/.*\.png": (0, ("/img/a.png", "/img/a/b.PNG", "/img/a.png.txt", "/img/a.jpg")),
    "/files/(.*)": (1, ("/files/", "/files/a/b", "/FILES/x")),
    "/aaa(/|$)(.*)": (2, ("/aaa", "/aaa/", "/aaa/bbb/c", "/aaaccc")),
    "/user/([a-z]+)/profile": (1, ("/user/bob/profile", "/user/bob/profile/x", "/user/7/profile")),
    "/": (0, ()),
}
#: ``rewrite-target`` values and the capture groups each needs from every path it applies to.
REWRITES = {"/": 0, "/$1": 1, "/new/$2?from=$1": 2}
PERMANENT_REDIRECT = "https://elsewhere.test/landing"
APP_ROOT = "/app"
CANARY_HEADER = "X-Canary"
CANARY_COOKIE = "canary"
#: Creation times: few, so that conflicts between Ingresses are often decided by the name.
TIMESTAMPS = ("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z")
#: Over the ``proxy-body-size`` some Ingresses set, under nginx's default (1m).
SMALL_BODY_LIMIT = "1k"
LARGE_BODY = 2048


# ----------------------------------------------------------------------------------- worlds


@dataclass
class World:
    """A set of Secrets and Ingresses over the fixed Services, and what requests may name."""

    objects: list[KubeObject]
    #: Hosts (exact and wildcard) the Ingresses' rules name.
    hosts: list[str] = field(default_factory=list)
    #: Paths of the Ingresses as written: (path, pathType, regex).
    paths: list[tuple[str, str, bool]] = field(default_factory=list)
    #: Each rule's paths with its host (None: no host), for requests that hit them.
    routes: list[tuple[str | None, tuple[str, str, bool]]] = field(default_factory=list)

    def yaml(self) -> str:
        """The Ingresses and Secrets (certificates shown by their SANs) as YAML."""
        shown: list[dict[str, Any]] = []
        for obj in self.objects:
            if obj["kind"] == "Secret":
                shown.append({**obj, "data": {"tls.crt": f"<{_sans(obj)}>", "tls.key": "<key>"}})
            else:
                shown.append(obj)
        return yaml.safe_dump_all(shown, sort_keys=False)


def _sans(secret: KubeObject) -> str:
    pem = base64.b64decode(secret["data"]["tls.crt"])
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return "certificate for " + ", ".join(names.get_values_for_type(x509.DNSName))


def services() -> list[KubeObject]:
    """The Services every world uses (the pods are the ``Pair``'s): ``SERVED`` with pods,
    ``EMPTY`` with an EndpointSlice of no endpoints."""
    out: list[KubeObject] = []
    for name in (*SERVED, EMPTY):
        out.append(service(name, ports=[service_port(80, PORT_NAME, target_port=PORT_NAME)]))
    return out


class _Generator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.objects: list[KubeObject] = []
        self.secrets = 0
        #: (host or None, path, pathType, regex) of the main Ingresses' paths, for canaries
        #: and conflicts.
        self.mains: list[tuple[str | None, str, str, bool]] = []
        self.hosts: set[str] = set()
        self.paths: set[tuple[str, str, bool]] = set()

    def service(self) -> str:
        roll = self.rng.random()
        if roll < 0.1:
            return EMPTY
        if roll < 0.15:
            return GHOST
        return self.rng.choice(SERVED)

    def port(self) -> int | str:
        return self.rng.choice((80, PORT_NAME))

    def host(self) -> str | None:
        roll = self.rng.random()
        if roll < 0.6:
            return self.rng.choice(EXACT_HOSTS)
        if roll < 0.8:
            return self.rng.choice(WILDCARD_HOSTS)
        return None

    def world(self, count: int) -> World:
        for index in range(count):
            self.ingress(index)
        ingresses = [o for o in self.objects if o["kind"] == "Ingress"]
        secrets = [o for o in self.objects if o["kind"] == "Secret"]
        return World(
            objects=[*secrets, *ingresses],
            hosts=sorted(self.hosts),
            paths=sorted(self.paths),
            routes=[
                (host, (text, path_type, regex)) for host, text, path_type, regex in self.mains
            ],
        )

    def ingress(self, index: int) -> None:
        rng = self.rng
        name = f"ing{index}"
        kinds = ["plain", "regex", "rewrite", "redirect"]
        weights = [5, 2, 2, 1]
        if self.mains:
            kinds += ["canary", "conflict"]
            weights += [2, 1]
        kind = rng.choices(kinds, weights)[0]
        if kind == "canary":
            self.canary(name)
            return
        if kind == "conflict":
            self.conflict(name)
            return
        annotations: dict[str, str] = {}
        groups = 0
        if kind == "regex":
            annotations[P + "use-regex"] = "true"
        elif kind == "rewrite":
            target = rng.choice(list(REWRITES))
            groups = REWRITES[target]
            annotations[P + "rewrite-target"] = target
            if rng.random() < 0.5:
                annotations[P + "use-regex"] = "true"
        elif kind == "redirect":
            annotations[P + "permanent-redirect"] = PERMANENT_REDIRECT
            if rng.random() < 0.5:
                annotations[P + "permanent-redirect-code"] = rng.choice(("301", "308", "302"))
        regex = kind in ("regex", "rewrite")
        rules = []
        hosts: list[str] = []
        for _ in range(rng.choice((1, 1, 2))):
            host = self.host()
            paths = []
            for _ in range(rng.choice((1, 2, 3))):
                paths.append(self.path(host, regex=regex, groups=groups))
            rules.append(rule(host, *paths))
            if host is not None and host not in hosts:
                hosts.append(host)
        self.server_annotations(annotations, hosts)
        tls_entries = self.tls(hosts)
        if tls_entries and rng.random() < 0.2:
            annotations[P + "ssl-redirect"] = "false"
        if not tls_entries and rng.random() < 0.1:
            annotations[P + "force-ssl-redirect"] = "true"
        default = None
        if rng.random() < 0.15:
            default = backend(self.service(), self.port())
        self.objects.append(
            ingress(
                name,
                rules=rules,
                tls_entries=tls_entries,
                default_backend=default,
                annotations=annotations or None,
                created=rng.choice(TIMESTAMPS),
            )
        )

    def path(self, host: str | None, *, regex: bool, groups: int) -> dict[str, Any]:
        rng = self.rng
        if groups > 0:
            # rewrite-target with captures: regex paths that have them, never Exact
            choices = [p for p, (n, _) in REGEX_PATHS.items() if n >= groups]
            text, path_type = rng.choice(choices), rng.choice(("Prefix", "ImplementationSpecific"))
        elif regex and rng.random() < 0.7:
            text, path_type = (
                rng.choice(list(REGEX_PATHS)),
                rng.choice(("Prefix", "ImplementationSpecific")),
            )
        else:
            text = rng.choice(PLAIN_PATHS)
            path_type = rng.choice(("Exact", "Prefix", "Prefix", "ImplementationSpecific"))
        is_regex = regex and path_type != "Exact"
        self.paths.add((text, path_type, is_regex))
        if host is not None:
            self.hosts.add(host)
        self.mains.append((host, text, path_type, is_regex))
        return path(text, self.service(), self.port(), path_type)

    def server_annotations(self, annotations: dict[str, str], hosts: list[str]) -> None:
        rng = self.rng
        if rng.random() < 0.15:
            aliases = rng.sample(ALIASES, rng.choice((1, 2)))
            annotations[P + "server-alias"] = ",".join(aliases)
        if rng.random() < 0.15:
            annotations[P + "app-root"] = APP_ROOT
        if rng.random() < 0.1:
            annotations[P + "proxy-body-size"] = SMALL_BODY_LIMIT
        if rng.random() < 0.1:
            annotations[P + "default-backend"] = rng.choice((*SERVED, EMPTY))
        if rng.random() < 0.05:
            # a security annotation that cannot be applied: the Ingress answers 503
            annotations[P + "auth-type"] = "basic"
            annotations[P + "auth-secret"] = "no-such-secret"

    def tls(self, hosts: list[str]) -> list[dict[str, Any]]:
        rng = self.rng
        if not hosts or rng.random() < 0.7:
            return []
        chosen = rng.sample(hosts, rng.randint(1, len(hosts)))
        roll = rng.random()
        if roll < 0.15:
            return [tls(*chosen, secret_name=None)]  # the default certificate
        if roll < 0.3:
            return [tls(*chosen, secret_name="missing-secret")]
        self.secrets += 1
        name = f"tls{self.secrets}"
        cert, key = self_signed_certificate(f"{name}.cert.test", *chosen)
        self.objects.append(tls_secret(name, cert_pem=cert, key_pem=key))
        return [tls(*chosen, secret_name=name)]

    def canary(self, name: str) -> None:
        rng = self.rng
        host, text, path_type, _ = rng.choice(self.mains)
        annotations = {P + "canary": "true"}
        if rng.random() < 0.6:
            annotations[P + "canary-by-header"] = CANARY_HEADER
            if rng.random() < 0.3:
                annotations[P + "canary-by-header-value"] = "yes"
        if rng.random() < 0.5:
            annotations[P + "canary-by-cookie"] = CANARY_COOKIE
        if rng.random() < 0.5:
            annotations[P + "canary-weight"] = rng.choice(("0", "100"))
        self.objects.append(
            ingress(
                name,
                rules=[rule(host, path(text, rng.choice(SERVED), self.port(), path_type))],
                annotations=annotations,
                created=rng.choice(TIMESTAMPS),
            )
        )

    def conflict(self, name: str) -> None:
        """The host, path and type of another Ingress's path to another Service: the older
        Ingress wins (by creationTimestamp, then by name)."""
        rng = self.rng
        host, text, path_type, regex = rng.choice(self.mains)
        self.objects.append(
            ingress(
                name,
                rules=[rule(host, path(text, rng.choice(SERVED), self.port(), path_type))],
                annotations={P + "use-regex": "true"} if regex else None,
                created=rng.choice(TIMESTAMPS),
            )
        )


def generate_world(rng: random.Random, ingresses: int) -> World:
    """``ingresses`` random Ingresses (and the Secrets they name) over ``services()``."""
    return _Generator(rng).world(ingresses)


# ----------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    method: str
    https: bool
    #: The Host header (any case, maybe with a trailing dot and a port); SNI is its name in
    #: lower case.
    host: str
    #: Path and query as sent, unnormalised.
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body_bytes: int = 0

    @property
    def sni(self) -> str:
        return self.host.partition(":")[0].lower().rstrip(".")

    def describe(self) -> str:
        scheme = "https" if self.https else "http"
        extra = "".join(f" -H '{n}: {v}'" for n, v in self.headers)
        body = f" (body {self.body_bytes} bytes)" if self.body_bytes else ""
        return f"{self.method} {scheme}://[{self.host}]{self.target}{extra}{body}"


def _uri_variants(paths: Sequence[tuple[str, str, bool]]) -> list[str]:
    """Request paths around ``paths``: exact, below, near misses, other case."""
    out: list[str] = []
    for text, _path_type, is_regex in paths:
        if is_regex and text in REGEX_PATHS:
            out += REGEX_PATHS[text][1]
            continue
        base = text.rstrip("/") or "/"
        out += [text, base, base + "/", base.rstrip("/") + "/sub/x", base + "ccc", base.upper()]
    return out


def _matches(host: str | None) -> list[str]:
    """Names a request may send for a rule's host (``None``: names no rule has)."""
    if host is None:
        return list(OTHER_HOSTS)
    if host.startswith("*."):
        return [m for m in WILDCARD_MATCHES if m.endswith(host[1:])]
    return [host]


def generate_requests(rng: random.Random, world: World, count: int) -> list[Request]:
    """``count`` random requests that mostly name the world's hosts and paths."""
    concrete = [name for host in world.hosts or EXACT_HOSTS for name in _matches(host)]
    others = [*EXACT_HOSTS, *ALIASES[:2], "one.z.test", *OTHER_HOSTS, *WILDCARD_MATCHES]
    extra = ["/", "/nothing", "/.well-known/acme-challenge/token", "/aaa//bbb", "/aaa/%62bb"]
    extra += ["/aaa/./bbb", "/x/../aaa/bbb"]
    uris = _uri_variants(world.paths) + extra
    out: list[Request] = []
    while len(out) < count:
        if world.routes and rng.random() < 0.5:
            # a path of a rule, on a name of its host
            host_of, rule_path = rng.choice(world.routes)
            host = rng.choice(_matches(host_of))
            target = rng.choice(_uri_variants([rule_path]) or extra)
        else:
            host = rng.choice(concrete) if rng.random() < 0.75 else rng.choice(others)
            target = rng.choice(uris)
        roll = rng.random()
        if roll < 0.1:
            host = host.upper()
        elif roll < 0.2:
            host = host[0].upper() + host[1:]
        if rng.random() < 0.05:
            host += "."
        if rng.random() < 0.15:
            host += rng.choice((":80", ":443", ":8080"))
        if rng.random() < 0.1:
            target += "?q=1&r=a%2Fb"
        method = rng.choices(("GET", "POST", "HEAD"), (6, 3, 1))[0]
        body = 0
        if method == "POST":
            body = LARGE_BODY if rng.random() < 0.3 else 16
        headers: list[tuple[str, str]] = []
        if rng.random() < 0.4:
            headers.append((CANARY_HEADER, rng.choice(("always", "never", "yes", "no"))))
        if rng.random() < 0.3:
            headers.append(("Cookie", f"{CANARY_COOKIE}={rng.choice(('always', 'never'))}"))
        https = rng.random() < 0.4
        out.append(Request(method, https, host, target, tuple(headers), body_bytes=body))
    return out


# ----------------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    status: int
    #: The Service of the pod that answered, or None (nginx answered itself).
    service: str | None
    #: The path and query the pod received (None when no pod answered, or for HEAD).
    path: str | None
    #: ``Location`` with the controller's own ports as ``<http>`` / ``<https>``.
    location: str | None
    hsts: bool
    #: Common name of the certificate presented (HTTPS only).
    certificate: str | None

    def show(self) -> str:
        parts = [f"status={self.status}", f"service={self.service}"]
        if self.path is not None:
            parts.append(f"path={self.path}")
        if self.location is not None:
            parts.append(f"location={self.location}")
        parts.append(f"hsts={self.hsts}")
        if self.certificate is not None:
            parts.append(f"certificate={self.certificate!r}")
        return " ".join(parts)


def _normalise_location(value: str | None, h: Harness) -> str | None:
    if value is None:
        return None
    names = {str(h.http_port): "<http>", str(h.https_port): "<https>"}
    return re.sub(r":([0-9]+)", lambda m: ":" + names.get(m.group(1), m.group(1)), value)


_UNVERIFIED = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE


async def presented_certificate(port: int, server_name: str) -> str | None:
    """The common name of the certificate nginx presents on ``port`` for SNI ``server_name``."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=_UNVERIFIED, server_hostname=server_name
    )
    try:
        tls_object = writer.get_extra_info("ssl_object")
        der = tls_object.getpeercert(binary_form=True) if tls_object is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if der is None:
        return None
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


async def send(session: aiohttp.ClientSession, h: Harness, request: Request) -> Answer:
    """Send ``request`` to the controller of ``h`` and read its answer."""
    scheme, port = ("https", h.https_port) if request.https else ("http", h.http_port)
    url = URL(f"{scheme}://127.0.0.1:{port}{request.target}", encoded=True)
    headers = {"Host": request.host, **dict(request.headers)}
    async with session.request(
        request.method,
        url,
        headers=headers,
        data=b"x" * request.body_bytes if request.body_bytes else None,
        ssl=False,
        allow_redirects=False,
        server_hostname=request.sni if request.https else None,
    ) as resp:
        body = await resp.read()
        pod = resp.headers.get("X-Pod")
        received = None
        if pod is not None and body:
            received = json.loads(body)["path"]
        return Answer(
            status=resp.status,
            service=pod.rsplit("-", 1)[0] if pod is not None else None,
            path=received,
            location=_normalise_location(resp.headers.get("Location"), h),
            hsts="Strict-Transport-Security" in resp.headers,
            certificate=(await presented_certificate(port, request.sni) if request.https else None),
        )


# ----------------------------------------------------------------------------------- the pair


def shadowed_names(config: Configuration) -> frozenset[str]:
    """Exact server names without a certificate of their own under a wildcard that has one.

    Known difference, left out of the comparison: --routing nginx presents the certificate of
    the server the SNI names (none: the default certificate), --routing lua the exact name's,
    else the wildcard's (lua/ingressd/certificates.lua), so for these names nginx presents the
    default certificate and Lua the wildcard's.
    """
    named: set[str] = set()
    with_certificate: set[str] = set()
    for server in config.servers:
        names = (server.hostname, *server.aliases)
        named.update(names)
        if server.certificate is not None:
            with_certificate.update(names)
    return frozenset(
        name
        for name in named - with_certificate
        if not name.startswith("*.")
        and "." in name
        and "*." + name.partition(".")[2] in with_certificate
    )


class _Reader(Harness):
    """A harness whose controller reads another harness's manifests dir."""

    def __init__(self, root: Path, manifests: Path, *, routing: str) -> None:
        super().__init__(root, routing=routing)
        self.manifests = manifests

    def make_source(self) -> Source:
        self.manifests_source = ManifestsSource(self.manifests, poll_interval=0.05)
        return self.manifests_source


@dataclass(frozen=True)
class Mismatch:
    request: Request
    nginx: Answer
    lua: Answer

    def show(self) -> str:
        return (
            f"  {self.request.describe()}\n"
            f"    nginx: {self.nginx.show()}\n"
            f"    lua:   {self.lua.show()}"
        )


class Pair:
    """Two controllers, ``--routing nginx`` and ``--routing lua``, over one manifests dir and
    one set of pods."""

    def __init__(self, root: Path) -> None:
        (root / "nginx").mkdir()
        (root / "lua").mkdir()
        self.nginx = Harness(root / "nginx", routing="nginx")
        self.lua = _Reader(root / "lua", self.nginx.manifests, routing="lua")
        self.pods: list[EchoPods] = []
        self.session: aiohttp.ClientSession | None = None
        #: Server names whose certificate is not compared (``shadowed_names``).
        self.shadowed: frozenset[str] = frozenset()

    @property
    def harnesses(self) -> tuple[Harness, Harness]:
        return self.nginx, self.lua

    async def start(self) -> None:
        objects = services()
        for name in SERVED:
            addresses = pod_addresses(2)
            port = free_port()
            pods = EchoPods({a: f"{name}-{i}" for i, a in enumerate(addresses)}, port)
            await pods.start()
            self.pods.append(pods)
            objects.append(
                endpoint_slice(name, endpoints=addresses, port=port, port_name=PORT_NAME)
            )
        objects.append(endpoint_slice(EMPTY, endpoints=[], port=free_port(), port_name=PORT_NAME))
        self.nginx.write("services.yaml", *objects)
        await asyncio.gather(self.nginx.start(), self.lua.start())
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=16),
            timeout=aiohttp.ClientTimeout(total=10),
        )

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        await asyncio.gather(self.nginx.stop(), self.lua.stop())
        for pods in self.pods:
            await pods.stop()

    async def apply(self, objects: Sequence[KubeObject]) -> None:
        """Make ``objects`` the world (replacing the last one) and wait until both controllers
        serve it: raises when either could not apply it."""
        self.nginx.write("world.yaml", *objects)
        await asyncio.gather(self.nginx.settled(), self.lua.settled())
        for h in self.harnesses:
            worker = h.ingressd.worker
            build = worker.last_build
            assert build is not None and worker.running == build.configuration, (
                f"--routing {h.options.routing} did not apply the world: {worker.records[-1]}"
            )
        running = self.nginx.ingressd.worker.running
        assert running is not None
        self.shadowed = shadowed_names(running)

    def problems(self) -> list[str]:
        """What the last build skipped, and why (the same in both modes)."""
        build = self.nginx.ingressd.worker.last_build
        if build is None:
            return []
        return [f"{p.kind} {p.key} {p.field}: {p.reason}" for p in build.problems]

    async def answers(self, request: Request) -> tuple[Answer, Answer]:
        """The answers of --routing nginx and of --routing lua to ``request``."""
        assert self.session is not None
        nginx, lua = await asyncio.gather(
            send(self.session, self.nginx, request), send(self.session, self.lua, request)
        )
        return nginx, lua

    async def compare(self, request: Request) -> Mismatch | None:
        nginx, lua = await self.answers(request)
        if request.https and request.sni in self.shadowed:
            nginx = dataclasses.replace(nginx, certificate=None)
            lua = dataclasses.replace(lua, certificate=None)
        return None if nginx == lua else Mismatch(request, nginx, lua)

    async def compare_all(self, requests: Sequence[Request]) -> list[Mismatch]:
        found = await asyncio.gather(*(self.compare(r) for r in requests))
        return [m for m in found if m is not None]
