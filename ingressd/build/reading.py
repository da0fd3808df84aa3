"""Reading: single Services' EndpointSlices and Secrets in, what building needs of them out.

    EndpointSlices of a Service --read_slices()--> ServiceSlices (ports, ready addresses, the
                                                   problems of each slice) --> endpoints by port
    TLS Secret --parse_tls_secret()--> Certificate | (field, reason)
    auth / proxy-ssl Secret --ingressd.annotations.secrets--> SecretFile(s) | (field, reason)
    Memo: what was read of each object, kept while the snapshot holds that very object, and
          the model values of the last build (reused by ``ingressd.build.assembly`` when
          equal); owned by one ``BuildCache`` (``ingressd.build.incremental``), which tells it
          what changed (``forget``) and what the last build made (``keep_model``)

Readers are pure and never raise: what is wrong becomes a Problem (slices) or a reason.  A
plainly well-formed IPv4 slice is read in one pass (``_plain_slice_view``); anything else goes
through ``kube.read_endpoint_slice`` and its exact messages.

Endpoint addresses nginx must never proxy to are refused as the API server refuses them
(``_refused_range``): unspecified, loopback, link-local and link-local multicast.  A loopback
endpoint reaches nginx's own host: its listeners and anything bound to 127.0.0.1 there.  The
demo and the tests run their pods on 127.x addresses, so ``allow_loopback`` (BuildOptions
``allow_loopback_endpoints``) lets loopback through; the other ranges stay refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, assert_never

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from ingressd.annotations import AnnotationOptions
from ingressd.annotations.secrets import client_auth_files, htpasswd_file, proxy_ssl_files
from ingressd.build import kube
from ingressd.build.plan import IngressPlan, Issue, plan_ingress
from ingressd.model import (
    Backend,
    BackendName,
    Certificate,
    Endpoint,
    ObjectKey,
    Problem,
    Server,
)
from ingressd.model.settings import LocationSettings, SecretFile
from ingressd.store.events import Kind
from ingressd.store.snapshot import KubeObject

__all__ = [
    "Memo",
    "SecretFiles",
    "ServiceSlices",
    "parse_tls_secret",
    "read_slices",
]

SECRET_TYPE_TLS = "kubernetes.io/tls"
SECRET_TYPE_OPAQUE = "Opaque"


class _SliceView(NamedTuple):
    """The part of one EndpointSlice the builder needs: ports by name, ready addresses."""

    #: ``(name, port)``, the first of each name.
    ports: tuple[tuple[str, int], ...]
    addresses: tuple[str, ...]


@dataclass(slots=True, eq=False)
class ServiceSlices:
    """The EndpointSlices of one Service, read once per tuple of slice objects."""

    key: ObjectKey
    raws: tuple[KubeObject, ...]
    problems: tuple[Problem, ...]
    #: What was read of each slice: kept only until the endpoints are taken from it.
    views: tuple[_SliceView, ...] | None
    #: Whether loopback addresses were accepted (read again the same way when needed).
    allow_loopback: bool = False
    #: ``(port name, ready endpoints)`` of the target ports asked for so far.
    endpoints: tuple[tuple[str, tuple[Endpoint, ...]], ...] = ()

    def endpoints_of(self, port_name: str) -> tuple[Endpoint, ...]:
        """Ready endpoints of every slice, on the slice port named ``port_name``."""
        for name, found in self.endpoints:
            if name == port_name:
                return found
        views = self.views
        if views is None:
            views = read_slices(self.key, self.raws, allow_loopback=self.allow_loopback).views
        assert views is not None
        made = _endpoints(views, port_name)
        self.endpoints = (*self.endpoints, (port_name, made))
        self.views = None
        return made


SecretFiles = SecretFile | tuple[SecretFile | None, SecretFile | None]


class _TlsMaterial(NamedTuple):
    """What a usable TLS Secret holds (``Certificate`` without the Secret's name)."""

    sha256: str
    pem: str
    not_after: float


class Memo:
    """What building derived from single objects and made last time, kept across builds.

    Every entry keeps the object it was derived from and is used only while the snapshot holds
    that very object (compared by identity; ARCHITECTURE.md, invariant 1).
    ``renewed()`` starts a full build: entries are carried over only when the new snapshot
    still holds their object, so deleted objects' entries go; between full builds ``forget()``
    drops the entries of the objects that changed.  What the entries were read with
    (annotation options, ``allow_loopback_endpoints``) is the Memo's own: other options need
    another Memo (``fits``).

    The assembly asks it for readings (``plan``, ``service_slices``, ``certificate``,
    ``secret_file``: each fills its entry) and reads the model values; only the owning
    ``BuildCache`` replaces those (``keep_model``).
    """

    def __init__(
        self, options: AnnotationOptions | None = None, *, allow_loopback_endpoints: bool = False
    ) -> None:
        self.annotation_options = options or AnnotationOptions()
        self.allow_loopback_endpoints = allow_loopback_endpoints
        self.plans: dict[ObjectKey, IngressPlan] = {}
        self.slices: dict[ObjectKey, ServiceSlices] = {}
        self.certificates: dict[ObjectKey, tuple[KubeObject, Certificate | Issue]] = {}
        #: (type, tls.crt, tls.key) -> what the Secret holds, or why it is unusable.
        self.tls_contents: dict[tuple[object, object, object], _TlsMaterial | Issue] = {}
        self.secret_files: dict[tuple[ObjectKey, str], tuple[KubeObject, SecretFiles | Issue]]
        self.secret_files = {}
        #: Model values of the last build, reused when equal: every Backend resolved (by name,
        #: canaries apart), the result's Backends and Servers, LocationSettings resolved from
        #: Secrets / Services (the others are the plan's) per Ingress.
        self.backends: dict[BackendName, Backend] = {}
        self.final_backends: dict[BackendName, Backend] = {}
        self.settings: dict[ObjectKey, LocationSettings] = {}
        self.servers: dict[str, Server] = {}
        self._old: Memo | None = None

    def renewed(self) -> Memo:
        """A Memo for a full build: same entries, but only those the build looks up survive."""
        fresh = Memo(
            self.annotation_options, allow_loopback_endpoints=self.allow_loopback_endpoints
        )
        fresh._old = self
        # Model values are only compared with, never trusted: keep them all until replaced.
        fresh.backends = self.backends
        fresh.final_backends = self.final_backends
        fresh.settings = self.settings
        fresh.servers = self.servers
        return fresh

    def fits(self, annotation_options: AnnotationOptions, allow_loopback_endpoints: bool) -> bool:
        """Whether this Memo's entries were read with these options."""
        return (
            self.annotation_options == annotation_options
            and self.allow_loopback_endpoints == allow_loopback_endpoints
        )

    def settle(self) -> None:
        """End of a full build: drop the previous generation."""
        self._old = None

    def keep_model(
        self,
        *,
        backends: dict[BackendName, Backend],
        final_backends: dict[BackendName, Backend],
        servers: dict[str, Server],
        settings: dict[ObjectKey, LocationSettings],
    ) -> None:
        """The model values of the build just made, for the next assembly to reuse.  The maps
        are handed over: nobody changes them afterwards (a new build hands new ones)."""
        self.backends = backends
        self.final_backends = final_backends
        self.servers = servers
        self.settings = settings

    def plan(self, key: ObjectKey, raw: KubeObject) -> IngressPlan:
        found = self.plans.get(key)
        if found is None or found.raw is not raw:
            old = self._old.plans.get(key) if self._old is not None else None
            if old is not None and old.raw is raw:
                found = old
            else:
                found = plan_ingress(key, raw, self.annotation_options)
            self.plans[key] = found
        return found

    def service_slices(self, key: ObjectKey, raws: tuple[KubeObject, ...]) -> ServiceSlices:
        """The slices ``raws`` of Service ``key``, read."""
        found = self.slices.get(key)
        if found is None or found.raws is not raws:
            old = self._old.slices.get(key) if self._old is not None else None
            if old is None or old.raws is not raws:
                old = read_slices(key, raws, allow_loopback=self.allow_loopback_endpoints)
            found = old
            self.slices[key] = found
        return found

    def certificate(self, key: ObjectKey, raw: KubeObject) -> Certificate | Issue:
        found = self.certificates.get(key)
        if found is None or found[0] is not raw:
            old = self._old.certificates.get(key) if self._old is not None else None
            found = old if old is not None and old[0] is raw else (raw, self._certificate(key, raw))
            self.certificates[key] = found
        return found[1]

    def _certificate(self, key: ObjectKey, raw: KubeObject) -> Certificate | Issue:
        """``parse_tls_secret``, parsed once per content: a wildcard certificate copied into
        many namespaces is one parse, not one per Secret."""
        content = _tls_content(raw)
        if content is None:
            return parse_tls_secret(key, raw)
        material = self.tls_contents.get(content)
        if material is None and self._old is not None:
            material = self._old.tls_contents.get(content)
        if material is None:
            parsed = parse_tls_secret(key, raw)
            material = (
                _TlsMaterial(parsed.sha256, parsed.pem, parsed.not_after)
                if isinstance(parsed, Certificate)
                else parsed
            )
        self.tls_contents[content] = material
        if len(self.tls_contents) > 2 * len(self.certificates) + 64:
            self._prune_tls_contents()
        if not isinstance(material, _TlsMaterial):
            return material
        return Certificate(
            secret=key, sha256=material.sha256, pem=material.pem, not_after=material.not_after
        )

    def _prune_tls_contents(self) -> None:
        """Keep the contents of the Secrets read lately only (rotations add new ones)."""
        kept = {_tls_content(raw) for raw, _ in self.certificates.values()}
        self.tls_contents = {k: v for k, v in self.tls_contents.items() if k in kept}

    def secret_file(self, key: ObjectKey, raw: KubeObject, kind: str) -> SecretFiles | Issue:
        """The file(s) ``kind`` (``auth-file``, ``auth-map``, ``proxy-ssl``, ``client-auth``)
        made from Secret
        ``key``, or ``(field, reason)``."""
        found = self.secret_files.get((key, kind))
        if found is None or found[0] is not raw:
            old = self._old.secret_files.get((key, kind)) if self._old is not None else None
            if old is not None and old[0] is raw:
                found = old
            else:
                read: SecretFiles | Issue
                if kind == "proxy-ssl":
                    read = proxy_ssl_files(key, raw)
                elif kind == "client-auth":
                    read = client_auth_files(key, raw)
                else:
                    read = htpasswd_file(key, raw, kind)
                found = (raw, read)
            self.secret_files[(key, kind)] = found
        return found[1]

    def forget(self, kind: Kind, key: ObjectKey) -> None:
        """Drop what was read of object ``key`` of ``kind`` (it changed or is gone).

        EndpointSlices are keyed by their Service, as in ``Snapshot.endpoint_slices``.  Nothing
        is read ahead of a Service (each lookup reads it), an IngressClass or a ConfigMap (a
        change of either is a full build).  Entries are checked by identity on use, so
        forgetting is about memory, never about results.
        """
        match kind:
            case Kind.INGRESS:
                self.plans.pop(key, None)
            case Kind.ENDPOINT_SLICE:
                self.slices.pop(key, None)
            case Kind.SECRET:
                self.certificates.pop(key, None)
                for purpose in _SECRET_PURPOSES:
                    self.secret_files.pop((key, purpose), None)
            case Kind.SERVICE | Kind.INGRESS_CLASS | Kind.CONFIG_MAP:
                pass
            case _:
                assert_never(kind)


#: What a Secret is read for besides TLS (``Memo.secret_file``'s ``kind``).
_SECRET_PURPOSES = ("auth-file", "auth-map", "proxy-ssl", "client-auth")


def _endpoints(views: tuple[_SliceView, ...], port_name: str) -> tuple[Endpoint, ...]:
    """Ready endpoints of every slice of a Service, on the slice port named like ours."""
    found: set[tuple[str, int]] = set()
    for view in views:
        port = next((p for name, p in view.ports if name == port_name), None)
        if port is not None:
            found.update((address, port) for address in view.addresses)
    return tuple(Endpoint(a, p) for a, p in sorted(found))


def _tls_content(raw: object) -> tuple[object, object, object] | None:
    """What ``parse_tls_secret`` reads of a Secret, when it is plain strings."""
    if not isinstance(raw, dict):
        return None
    data = raw.get("data")
    if not isinstance(data, dict):
        return None
    content = (raw.get("type"), data.get("tls.crt"), data.get("tls.key"))
    if not all(part is None or type(part) is str for part in content):
        return None
    return content


def read_slices(
    service_key: ObjectKey, raws: tuple[KubeObject, ...], *, allow_loopback: bool = False
) -> ServiceSlices:
    """The slices of one Service: what each says, and what is wrong with them.

    ``allow_loopback``: accept loopback endpoint addresses (local demo and tests only).
    """
    problems: list[Problem] = []
    views: list[_SliceView] = []
    refused = _REFUSED_IPV4_LOOPBACK_ALLOWED if allow_loopback else _REFUSED_IPV4
    for index, raw in enumerate(raws):
        view = _plain_slice_view(raw, refused)
        if view is None:
            view = _slice_view(service_key, index, raw, problems, allow_loopback)
        if view is not None:
            views.append(view)
    return ServiceSlices(service_key, raws, tuple(problems), tuple(views), allow_loopback)


#: Starts of the IPv4 addresses ``_refused_range`` refuses, as ``_IPV4`` accepts them (no
#: leading zeros): 0.0.0.0, 169.254.0.0/16, 224.0.0.0/24, and 127.0.0.0/8 unless allowed.
_REFUSED_IPV4_LOOPBACK_ALLOWED = ("0.0.0.0", "169.254.", "224.0.0.")
_REFUSED_IPV4 = (*_REFUSED_IPV4_LOOPBACK_ALLOWED, "127.")


def _plain_slice_view(raw: object, refused: tuple[str, ...]) -> _SliceView | None:
    """``_slice_view`` of a plainly well-formed IPv4 slice with valid addresses, none of them
    starting with one of ``refused``, read in one pass; ``None`` for anything else
    (``_slice_view`` then reads it and says what is wrong)."""
    if type(raw) is not dict or raw.get("addressType") != "IPv4":
        return None
    meta = raw.get("metadata")
    if meta is not None and (type(meta) is not dict or type(meta.get("name")) not in _STR_OR_NONE):
        return None
    ports: dict[str, int] = {}
    raw_ports = raw.get("ports")
    if raw_ports is not None:
        if type(raw_ports) is not list:
            return None
        for port in raw_ports:
            if type(port) is not dict:
                return None
            number, name = port.get("port"), port.get("name")
            if type(name) not in _STR_OR_NONE:
                return None
            if number is None:
                continue
            if type(number) is not int:
                return None
            if 0 < number < 65536:
                ports.setdefault(name or "", number)
    addresses: list[str] = []
    raw_endpoints = raw.get("endpoints")
    if raw_endpoints is not None:
        if type(raw_endpoints) is not list:
            return None
        check = _IPV4.match
        for endpoint in raw_endpoints:
            if type(endpoint) is not dict:
                return None
            candidates = endpoint.get("addresses")
            if type(candidates) is not list:
                return None
            conditions = endpoint.get("conditions")
            ready = terminating = None
            if conditions is not None:
                if type(conditions) is not dict:
                    return None
                ready = conditions.get("ready")
                terminating = conditions.get("terminating")
                serving = conditions.get("serving")
                for flag in (ready, terminating, serving):
                    if flag is not None and flag is not True and flag is not False:
                        return None
            for address in candidates:
                if type(address) is not str or not check(address) or address.startswith(refused):
                    return None
            if ready is not False and terminating is not True:
                addresses.extend(candidates)
    return _SliceView(tuple(ports.items()), tuple(addresses))


_STR_OR_NONE = (str, type(None))


def _slice_view(
    service_key: str, index: int, raw: KubeObject, problems: list[Problem], allow_loopback: bool
) -> _SliceView | None:
    """Ports by name and ready addresses of one slice; FQDN slices give nothing.  An address
    that is not of the slice's type, or in a range ``_refused_range`` names, is a Problem."""
    parsed = kube.read_endpoint_slice(raw)
    namespace = service_key.partition("/")[0]
    if isinstance(parsed, kube.ParseError):
        key = ObjectKey(f"{namespace}/{_name_of(raw, index)}")
        problems.append(Problem("EndpointSlice", key, parsed.field, parsed.reason))
        return None
    is_address = _ADDRESS_CHECKS.get(parsed.address_type)
    if is_address is None:
        return None
    ports: dict[str, int] = {}
    for name, port in parsed.ports:
        if 0 < port < 65536:
            ports.setdefault(name, port)
    addresses: list[str] = []
    for i, (candidates, ready, _, terminating) in enumerate(parsed.endpoints):
        if ready is False or terminating is True:
            continue
        for j, address in enumerate(candidates):
            if not is_address(address):
                reason = f"{address!r} is not an {parsed.address_type} address"
            else:
                refused = _refused_range(address)
                if refused is None or (refused == _LOOPBACK and allow_loopback):
                    addresses.append(address)
                    continue
                reason = f"{address!r} {refused}"
            key = ObjectKey(f"{namespace}/{parsed.name or f'[{index}]'}")
            at = f"endpoints[{i}].addresses[{j}]"
            problems.append(Problem("EndpointSlice", key, at, reason))
    return _SliceView(tuple(ports.items()), tuple(addresses))


_LOOPBACK = "may not be in the loopback range (127.0.0.0/8, ::1/128)"
_LINK_LOCAL_MULTICAST = "may not be in the link-local multicast range (224.0.0.0/24, ff02::/16)"
_V4_LINK_LOCAL_MULTICAST = ipaddress.IPv4Network("224.0.0.0/24")


def cluster_ip_problem(cluster_ip: str, allow_loopback: bool) -> str | None:
    """Why a Service's ``spec.clusterIP`` cannot be proxied to (``service-upstream``), or None:
    the ranges refused for endpoints (``allow_loopback`` as ``--allow-loopback-endpoints``)."""
    if cluster_ip in ("", "None"):
        return "has no cluster IP (headless)"
    if not any(check(cluster_ip) for check in _ADDRESS_CHECKS.values()):
        return f"has an invalid cluster IP {cluster_ip[:64]!r}"
    refused = _refused_range(cluster_ip)
    if refused is None or (refused == _LOOPBACK and allow_loopback):
        return None
    return f"has a cluster IP {cluster_ip} that {refused}"


def _refused_range(address: str) -> str | None:
    """Why a valid IP address may not be an endpoint, in the words of the API server's
    validation (which refuses these in every EndpointSlice it stores), or ``None``.

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged as the IPv4 address it
    reaches (the API server refuses those outright).
    """
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "may not be unspecified (0.0.0.0, ::)"
    if ip.is_loopback:
        return _LOOPBACK
    if ip.is_link_local:
        return "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
    if isinstance(ip, ipaddress.IPv4Address):
        return _LINK_LOCAL_MULTICAST if ip in _V4_LINK_LOCAL_MULTICAST else None
    # Multicast with link-local scope: ff02::/16, and ff12::, ff32:: ... (as Go's net.IP).
    return _LINK_LOCAL_MULTICAST if ip.is_multicast and ip.packed[1] & 0x0F == 2 else None


_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z"
)


def _is_ipv6(address: str) -> object:
    if "%" in address:  # a scoped (link-local) address is not routable from nginx
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


#: addressType -> check of one address (a regex for IPv4: ipaddress costs 2 us an address).
_ADDRESS_CHECKS: dict[str, Callable[[str], object]] = {
    "IPv4": _IPV4.match,
    "IPv6": _is_ipv6,
}


def _name_of(raw: object, index: int) -> str:
    """An EndpointSlice's name for a Problem, even when its metadata is broken."""
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else f"[{index}]"


# --- TLS Secrets ---------------------------------------------------------------------------

#: OpenSSL 3's security level 2 (Debian's default): RSA and DSA keys of fewer bits are refused.
_MIN_RSA_BITS = 2048
#: Signature hashes security level 2 refuses in a certificate chain.
_WEAK_HASHES = frozenset({"md5", "sha1"})


def _too_weak(private_key: object, chain: list[x509.Certificate]) -> tuple[str, str] | None:
    """Why OpenSSL at security level 2 would refuse this key or chain, as (field, reason)."""
    if isinstance(private_key, rsa.RSAPrivateKey | dsa.DSAPrivateKey):
        if private_key.key_size < _MIN_RSA_BITS:
            return (
                "data.tls.key",
                f"is a {private_key.key_size}-bit key; OpenSSL's security level needs "
                f"{_MIN_RSA_BITS} bits or more",
            )
    for index, cert in enumerate(chain):
        # the last certificate of a longer chain may be a root: its own signature is not used
        if index and index == len(chain) - 1:
            break
        algorithm = cert.signature_hash_algorithm
        if algorithm is not None and algorithm.name in _WEAK_HASHES:
            return (
                "data.tls.crt",
                f"certificate {index + 1} is signed with {algorithm.name.upper()}, which "
                "OpenSSL's security level refuses",
            )
    return None


def parse_tls_secret(key: ObjectKey, raw: object) -> Certificate | tuple[str, str]:
    """A TLS Secret -> ``Certificate``, or ``(field, reason)`` saying what is wrong with it.

    Accepts type ``kubernetes.io/tls`` or ``Opaque`` with ``data["tls.crt"]`` (PEM chain, leaf
    first) and ``data["tls.key"]`` (unencrypted PEM key), both base64 as the API serves them.
    The key must belong to the leaf certificate.  RSA keys are not re-validated (that costs
    ~40 ms each); their public half is checked against the certificate instead.
    """
    if not isinstance(raw, dict):
        return ("object", "must be a mapping")
    secret_type = raw.get("type") or SECRET_TYPE_OPAQUE
    if secret_type not in (SECRET_TYPE_TLS, SECRET_TYPE_OPAQUE):
        return ("type", f"must be {SECRET_TYPE_TLS}, not {secret_type!r}")
    data = raw.get("data")
    if not isinstance(data, dict):
        return ("data", "must be a mapping holding tls.crt and tls.key")
    texts: list[str] = []
    for name in ("tls.crt", "tls.key"):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            return (f"data.{name}", "missing" if value is None else "must be a base64 string")
        try:
            texts.append(base64.b64decode(value, validate=True).decode("ascii"))
        except (binascii.Error, ValueError):
            return (f"data.{name}", "is not base64 of PEM text")
    crt_text, key_text = texts
    try:
        chain = x509.load_pem_x509_certificates(crt_text.encode())
    except Exception as exc:  # untrusted input: any parser failure is a reason
        return ("data.tls.crt", f"is not a PEM certificate chain: {exc}")
    try:
        private_key = serialization.load_pem_private_key(
            key_text.encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
    except Exception as exc:  # untrusted input: any parser failure is a reason
        return ("data.tls.key", f"is not an unencrypted PEM private key: {exc}")
    leaf = chain[0]
    try:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        matches = leaf.public_key().public_bytes(der, spki) == (
            private_key.public_key().public_bytes(der, spki)
        )
    except Exception as exc:  # untrusted input: any parser failure is a reason
        return ("data.tls.key", f"cannot be compared with the certificate: {exc}")
    if not matches:
        return ("data.tls.key", "does not match the first certificate of tls.crt")
    weak = _too_weak(private_key, chain)
    if weak is not None:
        return weak
    # Only what was parsed is written out: a key block hidden in tls.crt (which nginx would
    # load instead of tls.key), comments and other blocks never reach nginx.
    try:
        pem = "".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in chain
        ) + private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
    except Exception as exc:  # untrusted input: any serializer failure is a reason
        return ("data.tls.key", f"cannot be written out again: {exc}")
    return Certificate(
        secret=key,
        sha256=hashlib.sha256(pem.encode()).hexdigest(),
        pem=pem,
        not_after=leaf.not_valid_after_utc.timestamp(),
    )
