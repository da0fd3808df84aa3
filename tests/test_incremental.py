"""Incremental building: the last build's objects are reused, and the result is always the one a
full build of the same snapshot gives."""

from __future__ import annotations

import base64
import random

import pytest

from ingressd.build import BuildCache, BuildOptions, BuildResult, build_configuration
from ingressd.build.assembly import Assembled, Assembly
from ingressd.model import CATCH_ALL, Configuration, ObjectKey, Server
from ingressd.pipeline.channel import UpdateChannel
from ingressd.store.events import EventType, WatchEvent
from ingressd.store.snapshot import KubeObject, Snapshot
from ingressd.store.store import Store
from tests.support import objects as o

OPTIONS = BuildOptions()
P = "nginx.ingress.kubernetes.io/"


def store_of(*objects: KubeObject) -> Store:
    store = Store(channel=UpdateChannel(maxsize=1 << 20))
    for obj in objects:
        store.apply(WatchEvent(EventType.ADDED, obj))
    return store


def full(snapshot: Snapshot, options: BuildOptions = OPTIONS) -> BuildResult:
    """A build from scratch (no cache)."""
    return build_configuration(snapshot, options)


class Builds:
    """Builds of a Store's snapshots through one BuildCache, as the sync worker makes them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cache = BuildCache()

    def __call__(self, options: BuildOptions = OPTIONS) -> BuildResult:
        return build_configuration(self.store.snapshot(), options, cache=self.cache)

    @property
    def last(self) -> tuple[str, int]:
        return self.cache.last


def server(config: Configuration, host: str) -> Server:
    return next(s for s in config.servers if s.hostname == host)


def web(i: int) -> list[KubeObject]:
    return [o.service(f"svc{i}"), o.endpoint_slice(f"svc{i}", endpoints=[f"10.0.{i}.1"])]


def site(i: int, *paths: str) -> KubeObject:
    host = f"h{i}.test"
    return o.ingress(f"ing{i}", rules=[o.rule(host, *(o.path(p, f"svc{i}") for p in paths))])


def cluster(n: int = 20) -> Store:
    objects: list[KubeObject] = []
    for i in range(n):
        objects += [*web(i), site(i, "/", "/api")]
    return store_of(*objects)


# --- reuse -----------------------------------------------------------------------------------


def test_unchanged_servers_and_backends_are_the_same_objects_after_a_change() -> None:
    store = cluster()
    build = Builds(store)
    first = build().configuration
    store.apply(WatchEvent(EventType.MODIFIED, site(3, "/", "/api", "/new")))
    second = build().configuration
    assert build.last == ("incremental", 1)
    changed = server(second, "h3.test")
    assert [loc.path for loc in changed.locations] == ["/", "/api", "/new"]
    assert changed is not server(first, "h3.test")
    for old, new in zip(first.servers, second.servers, strict=True):
        if new.hostname != "h3.test":
            assert new is old
    assert all(a is b for a, b in zip(first.backends, second.backends, strict=True))
    # The rebuilt server's unchanged locations are the old objects too.
    assert changed.locations[0] is server(first, "h3.test").locations[0]


def test_the_same_snapshot_twice_gives_the_same_result_object() -> None:
    snapshot = cluster().snapshot()
    cache = BuildCache()
    first = build_configuration(snapshot, OPTIONS, cache=cache)
    assert build_configuration(snapshot, OPTIONS, cache=cache) is first


def test_without_a_cache_every_build_is_a_full_one() -> None:
    store = cluster(3)
    first = build_configuration(store.snapshot(), OPTIONS).configuration
    store.apply(WatchEvent(EventType.MODIFIED, site(1, "/", "/api", "/new")))
    second = build_configuration(store.snapshot(), OPTIONS).configuration
    assert server(second, "h0.test") == server(first, "h0.test")
    assert server(second, "h0.test") is not server(first, "h0.test")


def test_an_endpoint_change_rebuilds_only_that_backend() -> None:
    store = cluster()
    build = Builds(store)
    first = build().configuration
    store.apply(WatchEvent(EventType.MODIFIED, o.endpoint_slice("svc5", endpoints=["10.9.9.9"])))
    second = build().configuration
    assert build.last == ("endpoints", 1)  # patched: no Ingress assembled again
    changed = [b for b in second.backends if b not in first.backends]
    assert [(b.name, [e.address for e in b.endpoints]) for b in changed] == [
        ("default-svc5-80", ["10.9.9.9"])
    ]
    assert all(a is b for a, b in zip(first.servers, second.servers, strict=True))


def test_an_endpoint_change_with_slice_problems_takes_the_path_that_lists_them() -> None:
    store = cluster()
    build = Builds(store)
    build()
    bad = o.endpoint_slice("svc5", endpoints=["10.9.9.9", "not-an-address"])
    store.apply(WatchEvent(EventType.MODIFIED, bad))
    result = build()
    assert build.last == ("incremental", 1)
    assert [p.kind for p in result.problems] == ["EndpointSlice"]
    assert result == full(store.snapshot())
    store.apply(WatchEvent(EventType.MODIFIED, o.endpoint_slice("svc5", endpoints=["10.9.9.8"])))
    result = build()
    assert build.last == ("incremental", 1)  # the problem must go too
    assert result.problems == ()
    assert result == full(store.snapshot())


def test_a_changed_object_is_read_again_and_a_deleted_one_forgotten() -> None:
    store = cluster(3)
    build = Builds(store)
    build()
    memo = build.cache.memo
    plan = memo.plans[ObjectKey("default/ing1")]
    store.apply(WatchEvent(EventType.MODIFIED, site(1, "/other")))
    result = build()
    assert memo.plans[ObjectKey("default/ing1")] is not plan
    assert [loc.path for loc in server(result.configuration, "h1.test").locations] == [
        "/",
        "/other",
    ]
    store.apply(WatchEvent(EventType.DELETED, site(2)))
    store.apply(WatchEvent(EventType.DELETED, o.service("svc2")))
    store.apply(WatchEvent(EventType.DELETED, o.endpoint_slice("svc2")))
    result = build()
    assert ObjectKey("default/ing2") not in memo.plans
    assert ObjectKey("default/svc2") not in memo.slices
    assert "h2.test" not in [s.hostname for s in result.configuration.servers]
    assert result == full(store.snapshot())


def test_a_full_build_keeps_readings_of_unchanged_objects_only() -> None:
    store = cluster(3)
    build = Builds(store)
    build()
    plan = build.cache.memo.plans[ObjectKey("default/ing0")]
    store.apply(WatchEvent(EventType.ADDED, o.ingress_class("other", "example.com/other")))
    store.apply(WatchEvent(EventType.DELETED, site(2)))
    build()
    assert build.last[0] == "full"  # an IngressClass changed
    assert build.cache.memo.plans[ObjectKey("default/ing0")] is plan
    assert ObjectKey("default/ing2") not in build.cache.memo.plans


def test_other_options_build_from_scratch() -> None:
    store = cluster(3)
    build = Builds(store)
    build()
    other = BuildOptions(ingress_class="other")
    assert build(other).configuration.servers[0].hostname == "_"
    assert build.last[0] == "full"
    assert build(other) == full(store.snapshot(), other)


def test_allowing_loopback_endpoints_reads_the_cached_slices_again() -> None:
    store = store_of(
        o.service("svc0"), o.endpoint_slice("svc0", endpoints=["127.0.1.1"]), site(0, "/")
    )
    allowed = BuildOptions(allow_loopback_endpoints=True)
    build = Builds(store)

    def served(options: BuildOptions) -> tuple[tuple[str, ...], int]:
        result = build(options)
        (backend,) = result.configuration.backends
        return tuple(e.address for e in backend.endpoints), len(result.problems)

    assert served(OPTIONS) == ((), 1)
    assert served(allowed) == (("127.0.1.1",), 0)
    assert build.last[0] == "full"
    assert served(OPTIONS) == ((), 1)
    # Endpoint-only changes take the patch path; it must read with the options of the build.
    store.apply(
        WatchEvent(
            EventType.MODIFIED, o.endpoint_slice("svc0", endpoints=["127.0.1.2", "10.0.0.1"])
        )
    )
    assert served(OPTIONS) == (("10.0.0.1",), 1)
    assert served(allowed) == (("10.0.0.1", "127.0.1.2"), 0)
    store.apply(
        WatchEvent(
            EventType.MODIFIED, o.endpoint_slice("svc0", endpoints=["127.0.1.3", "10.0.0.1"])
        )
    )
    assert served(allowed) == (("10.0.0.1", "127.0.1.3"), 0)
    assert build.last[0] == "endpoints"


# --- the last build ----------------------------------------------------------------------


def test_a_build_forgets_what_was_read_of_deleted_objects_of_every_kind(
    pems: list[tuple[str, str]],
) -> None:
    cert, key = pems[0]
    auth = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "auth", "namespace": "default"},
        "data": {"auth": base64.b64encode(b"alice:{PLAIN}secret").decode()},
    }
    secured = o.ingress(
        "ing2",
        rules=[o.rule("h2.test", o.path("/", "svc2"))],
        annotations={P + "auth-type": "basic", P + "auth-secret": "auth"},
    )
    tls = o.ingress(
        "ing1",
        rules=[o.rule("h1.test", o.path("/", "svc1"))],
        tls_entries=[o.tls("h1.test", secret_name="tls1")],
    )
    store = store_of(
        *web(0),
        *web(1),
        *web(2),
        site(0, "/"),
        tls,
        secured,
        auth,
        o.tls_secret("tls1", cert_pem=cert, key_pem=key),
    )
    build = Builds(store)
    build()
    memo = build.cache.memo
    ingress, service, tls_secret = (ObjectKey(f"default/{n}") for n in ("ing0", "svc0", "tls1"))
    auth_file = (ObjectKey("default/auth"), "auth-file")
    assert ingress in memo.plans and service in memo.slices
    assert tls_secret in memo.certificates and auth_file in memo.secret_files
    store.apply(WatchEvent(EventType.DELETED, site(0)))
    store.apply(WatchEvent(EventType.DELETED, o.endpoint_slice("svc0")))
    store.apply(WatchEvent(EventType.DELETED, o.tls_secret("tls1", cert_pem="", key_pem="")))
    store.apply(WatchEvent(EventType.DELETED, auth))
    result = build()
    assert build.last == ("incremental", 3)  # a full build forgets them anyway
    assert ingress not in memo.plans and service not in memo.slices
    assert tls_secret not in memo.certificates and auth_file not in memo.secret_files
    assert result == full(store.snapshot())


def test_a_build_hands_the_memo_new_maps_and_leaves_the_last_ones_as_they_were() -> None:
    store = cluster()
    build = Builds(store)
    build()
    memo = build.cache.memo
    servers, backends = memo.servers, memo.final_backends
    kept_servers, kept_backends = dict(servers), dict(backends)
    store.apply(WatchEvent(EventType.MODIFIED, site(3, "/", "/new")))
    store.apply(WatchEvent(EventType.MODIFIED, o.endpoint_slice("svc4", endpoints=["10.9.9.9"])))
    build()
    assert build.last == ("incremental", 2)
    store.apply(WatchEvent(EventType.MODIFIED, o.endpoint_slice("svc5", endpoints=["10.9.9.9"])))
    build()
    assert build.last == ("endpoints", 1)
    assert memo.servers is not servers and memo.final_backends is not backends
    assert (servers, backends) == (kept_servers, kept_backends)


def test_a_build_that_raises_leaves_no_last_build_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    store = cluster(3)
    build = Builds(store)
    build()
    store.apply(WatchEvent(EventType.MODIFIED, site(1, "/", "/new")))

    def defect(self: Assembly, keys: object = None) -> Assembled:
        raise RuntimeError("a defect")

    with monkeypatch.context() as patched:
        patched.setattr(Assembly, "run", defect)
        with pytest.raises(RuntimeError):
            build()
    result = build()
    assert build.last[0] == "full"
    assert result == full(store.snapshot())


# --- equivalence with full builds on random changes ----------------------------------------


HOSTS = [*(f"{c}.test" for c in "abcdefgh"), "*.w.test", None, "Bad_Host"]
PATHS = ["/", "/api", "/api/", "/x", "/img(.*)", "/a b"]
TYPES = ["Prefix", "Exact", "ImplementationSpecific", "Prefix", "Weird"]
SERVICES = [f"s{i}" for i in range(6)]  # s5 never exists
PORTS: list[int | str] = [80, 81, "http", 99]
TIMES = ["2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z", None]


class World:
    """A random cluster and random changes to it."""

    def __init__(self, seed: int, pems: list[tuple[str, str]]) -> None:
        self.rng = random.Random(seed)
        #: Chance of what makes every build a full one (canaries, aliases).
        self.rare = 0.05 if seed % 3 == 0 else 0.005
        self.pems = pems
        self.store = Store(channel=UpdateChannel(maxsize=1 << 20))
        self.ingresses: set[str] = set()
        for i in range(5):
            self.apply(self.service(f"s{i}"))
            self.apply(self.slice(f"s{i}"))
        for i in range(3):
            self.apply(self.secret(f"t{i}"))
        self.apply(self.auth_secret("auth"))
        for i in range(14):
            self.apply(self.ingress(f"i{i}"))

    def apply(self, obj: KubeObject, kind: EventType = EventType.MODIFIED) -> None:
        self.store.apply(WatchEvent(kind, obj))

    def service(self, name: str) -> KubeObject:
        ports = [o.service_port(80, "http", target_port=8080)]
        if self.rng.random() < 0.5:
            ports.append(o.service_port(81, "admin", target_port=8081))
        if self.rng.random() < 0.1:
            return o.service(name, type="ExternalName")
        return o.service(name, ports=ports)

    def slice(self, service: str) -> KubeObject:
        addresses: list[str] = [f"10.1.{self.rng.randrange(4)}.{k}" for k in range(3)]
        if self.rng.random() < 0.15:
            addresses.append("not-an-address")
        return o.endpoint_slice(
            service,
            endpoints=addresses,
            port_name="http",
            port=8080,
            name=f"{service}-{self.rng.choice('ab')}",
        )

    def secret(self, name: str) -> KubeObject:
        cert, key = self.rng.choice(self.pems)
        secret = o.tls_secret(name, cert_pem=cert, key_pem=key)
        if self.rng.random() < 0.2:
            secret["data"]["tls.key"] = base64.b64encode(b"garbage").decode()
        return secret

    def auth_secret(self, name: str) -> KubeObject:
        users = "alice:{PLAIN}secret" if self.rng.random() < 0.8 else "bad line"
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"},
            "data": {"auth": base64.b64encode(users.encode()).decode()},
        }

    def annotations(self) -> dict[str, str]:
        rng = self.rng
        out: dict[str, str] = {}
        choices: list[tuple[float, dict[str, str]]] = [
            (0.15, {"load-balance": "ewma"}),
            (0.1, {"use-regex": "true"}),
            (0.05, {"rewrite-target": "/"}),
            (0.1, {"ssl-redirect": "false"}),
            (0.1, {"auth-type": "basic", "auth-secret": rng.choice(["auth", "nope"])}),
            (0.1, {"default-backend": rng.choice(SERVICES)}),
            (0.1, {"proxy-body-size": "8m"}),
            (self.rare, {"canary": "true", "canary-weight": "30"}),
            (self.rare, {"server-alias": "alias.test"}),
            (0.05, {"app-root": "/app"}),
            (0.05, {"affinity": "cookie"}),
            (0.03, {"limit-rps": "not a number"}),
            (0.05, {"custom-http-errors": "404,503"}),
        ]
        for chance, values in choices:
            if rng.random() < chance:
                out.update(values)
        return {P + k: v for k, v in out.items()}

    def ingress(self, name: str) -> KubeObject:
        rng = self.rng
        rules = []
        hosts: list[str] = []
        for _ in range(rng.randint(1, 2)):
            host = rng.choice(HOSTS)
            if host:
                hosts.append(host)
            paths = [
                o.path(
                    rng.choice(PATHS),
                    rng.choice(SERVICES),
                    rng.choice(PORTS),
                    path_type=rng.choice(TYPES),
                )
                for _ in range(rng.randint(1, 3))
            ]
            rules.append(o.rule(host, *paths))
        tls_entries = []
        if hosts and rng.random() < 0.4:
            secret = rng.choice(["t0", "t1", "t2", "t9", None])
            tls_entries.append(o.tls(*hosts, secret_name=secret))
        default = None
        if rng.random() < 0.1:
            default = o.backend(rng.choice(SERVICES), 80)
        self.ingresses.add(name)
        return o.ingress(
            name,
            rules=rules,
            tls_entries=tls_entries,
            default_backend=default,
            ingress_class_name=rng.choice(["ingressd"] * 8 + ["other", None]),
            annotations=self.annotations(),
            created=rng.choice(TIMES),
        )

    def change(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.45:
            self.apply(self.ingress(f"i{rng.randrange(18)}"))
        elif roll < 0.55 and self.ingresses:
            name = rng.choice(sorted(self.ingresses))
            self.ingresses.discard(name)
            self.apply(o.ingress(name), EventType.DELETED)
        elif roll < 0.7:
            self.apply(self.slice(f"s{rng.randrange(5)}"))
        elif roll < 0.8:
            name = f"s{rng.randrange(5)}"
            deleted = rng.random() < 0.3
            self.apply(
                o.service(name) if deleted else self.service(name),
                EventType.DELETED if deleted else EventType.MODIFIED,
            )
        elif roll < 0.9:
            name = f"t{rng.randrange(3)}"
            deleted = rng.random() < 0.3
            self.apply(
                o.tls_secret(name, cert_pem="", key_pem="") if deleted else self.secret(name),
                EventType.DELETED if deleted else EventType.MODIFIED,
            )
        elif roll < 0.95:
            self.apply(self.auth_secret("auth"))
        elif rng.random() < 0.8:
            self.apply(self.ingress(f"i{rng.randrange(18)}"))
        elif rng.random() < 0.5:
            self.apply(o.ingress_class("ingressd", default=rng.random() < 0.5))
        else:
            self.apply(o.ingress_class("ingressd"), EventType.DELETED)


@pytest.fixture(scope="module")
def pems() -> list[tuple[str, str]]:
    return [o.self_signed_certificate("a.test"), o.self_signed_certificate("b.test")]


#: --default-backend-service (one of the world's Services, changed and deleted like the others)
#: and the ConfigMap's custom-http-errors.
DEFAULT_BACKEND_OPTIONS = BuildOptions(
    default_backend_service=ObjectKey("default/s1"), custom_http_errors=(502,)
)


@pytest.mark.parametrize(
    ("seed", "options"),
    [(seed, OPTIONS) for seed in range(12)]
    + [
        pytest.param(seed, DEFAULT_BACKEND_OPTIONS, id=f"default-backend-{seed}")
        for seed in (0, 1, 2, 4)
    ],
)
def test_incremental_builds_equal_full_builds(
    seed: int, options: BuildOptions, pems: list[tuple[str, str]]
) -> None:
    world = World(seed, pems)
    cache = BuildCache()
    ways: dict[str, int] = {}
    previous: BuildResult | None = None
    for step in range(60):
        for _ in range(world.rng.choice([1, 1, 1, 2, 3])):
            world.change()
        snapshot = world.store.snapshot()
        result = build_configuration(snapshot, options, cache=cache)
        ways[cache.last[0]] = ways.get(cache.last[0], 0) + 1
        expected = full(snapshot, options)
        assert result.configuration == expected.configuration, (step, cache.last)
        assert result.problems == expected.problems, (step, cache.last)
        assert result.ignored == expected.ignored, (step, cache.last)
        if previous is not None:
            # Whatever did not change is the previous object.
            before = {s.hostname: s for s in previous.configuration.servers}
            for s in result.configuration.servers:
                if s == before.get(s.hostname):
                    assert s is before[s.hostname] or cache.last[0] == "full"
        previous = result
    if options is OPTIONS:
        assert ways.get("incremental", 0) >= (5 if seed % 3 == 0 else 20), ways
    # else: a balancing policy on the default backend's Service, or a change of it, makes
    # the build a full one (every server may use that backend): most builds of these worlds


def test_catch_all_default_backends_follow_the_oldest_ingress() -> None:
    objects = [*web(1), *web(2)]
    young = o.ingress(
        "young", default_backend=o.backend("svc2", 80), created="2024-06-01T00:00:00Z"
    )
    old = o.ingress("old", default_backend=o.backend("svc1", 80), created="2024-01-01T00:00:00Z")
    store = store_of(*objects, young, old, site(1, "/"))
    build = Builds(store)
    first = build()
    assert server(first.configuration, CATCH_ALL).locations[0].backend == "default-svc1-80"
    store.apply(WatchEvent(EventType.DELETED, old))
    second = build()
    assert build.last[0] == "incremental"
    assert server(second.configuration, CATCH_ALL).locations[0].backend == "default-svc2-80"
    assert second == full(store.snapshot())
