"""Diffing: the decision between doing nothing, a dynamic update and a reload, and why."""

from __future__ import annotations

import dataclasses
import random

import pytest

from ingressd.model import (
    CATCH_ALL,
    Backend,
    BackendName,
    Certificate,
    Configuration,
    Endpoint,
    Location,
    ObjectKey,
    PathType,
    Server,
    backend_order,
    differing,
)
from ingressd.pipeline.diffing import (
    MAX_REASONS,
    Action,
    Change,
    Decision,
    decide,
    with_options_changes,
)


def backend(name: str, *addresses: str, port: str = "80") -> Backend:
    namespace, service = name.split("-", 1)
    return Backend(
        BackendName(f"{name}-{port}"),
        namespace,
        service,
        port,
        tuple(Endpoint(a, 8080) for a in addresses),
    )


def loc(
    path: str, target: str | None, path_type: PathType = PathType.PREFIX, ingress: str = "ns/app"
) -> Location:
    return Location(
        path,
        path_type,
        backend=BackendName(target) if target else None,
        ingress=ObjectKey(ingress),
        status=503 if target else 404,
    )


def cert(secret: str = "ns/tls", digest: str = "aa") -> Certificate:
    return Certificate(secret=ObjectKey(secret), sha256=digest * 32, pem="PEM", not_after=1.0)


CATCH = Server(CATCH_ALL, (loc("/", None, ingress=""),))
WWW = Server("www.zkj.com", (loc("/", "default-web-80"), loc("/api", "default-api-80")))
BASE = Configuration(
    servers=(CATCH, WWW),
    backends=(backend("default-api", "10.0.0.1"), backend("default-web", "10.0.0.2", "10.0.0.3")),
)


def with_server(config: Configuration, hostname: str, **changes: object) -> Configuration:
    servers = tuple(
        dataclasses.replace(s, **changes) if s.hostname == hostname else s  # type: ignore[arg-type]
        for s in config.servers
    )
    return dataclasses.replace(config, servers=servers)


def with_endpoints(config: Configuration, name: str, *addresses: str) -> Configuration:
    backends = tuple(
        dataclasses.replace(b, endpoints=tuple(Endpoint(a, 8080) for a in addresses))
        if b.name == name
        else b
        for b in config.backends
    )
    return dataclasses.replace(config, backends=backends)


def test_first_sync_reloads_and_posts_every_backend() -> None:
    assert decide(BASE, None) == Decision(
        Action.RELOAD,
        ("first sync",),
        (BackendName("default-api-80"), BackendName("default-web-80")),
        frozenset({Change.INITIAL}),
    )


def test_equal_configurations_need_nothing() -> None:
    assert decide(BASE, dataclasses.replace(BASE)) == Decision(Action.NOTHING, (), (), frozenset())


DYNAMIC_CASES: list[tuple[str, Configuration, tuple[str, ...], tuple[str, ...]]] = [
    (
        "endpoint-added",
        with_endpoints(BASE, "default-web-80", "10.0.0.2", "10.0.0.3", "10.0.0.4"),
        ("backend default-web-80 endpoints 2 -> 3",),
        ("default-web-80",),
    ),
    (
        "all-endpoints-gone",
        with_endpoints(BASE, "default-api-80"),
        ("backend default-api-80 endpoints 1 -> 0",),
        ("default-api-80",),
    ),
    (
        "endpoint-replaced",
        with_endpoints(BASE, "default-api-80", "10.0.0.9"),
        ("backend default-api-80 endpoints changed (1)",),
        ("default-api-80",),
    ),
    (
        "two-backends",
        with_endpoints(with_endpoints(BASE, "default-api-80"), "default-web-80", "10.0.0.2"),
        ("backend default-api-80 endpoints 1 -> 0", "backend default-web-80 endpoints 2 -> 1"),
        ("default-api-80", "default-web-80"),
    ),
]


@pytest.mark.parametrize(
    ("new", "reasons", "changed"), [c[1:] for c in DYNAMIC_CASES], ids=[c[0] for c in DYNAMIC_CASES]
)
def test_endpoint_changes_alone_are_dynamic(
    new: Configuration, reasons: tuple[str, ...], changed: tuple[str, ...]
) -> None:
    assert decide(new, BASE) == Decision(
        Action.DYNAMIC,
        reasons,
        changed,  # type: ignore[arg-type]
        frozenset({Change.BACKENDS}),
    )


RELOAD_CASES: list[tuple[str, Configuration, tuple[str, ...]]] = [
    (
        "server-added",
        dataclasses.replace(BASE, servers=(*BASE.servers, Server("b.com", (loc("/", None),)))),
        ("server b.com added",),
    ),
    (
        "server-removed",
        dataclasses.replace(BASE, servers=(CATCH,)),
        ("server www.zkj.com removed",),
    ),
    (
        "location-added",
        with_server(BASE, "www.zkj.com", locations=(*WWW.locations, loc("/x", "default-web-80"))),
        ("location www.zkj.com /x (Prefix) added",),
    ),
    (
        "location-removed",
        with_server(BASE, "www.zkj.com", locations=WWW.locations[:1]),
        ("location www.zkj.com /api (Prefix) removed",),
    ),
    (
        "location-backend-changed",
        with_server(
            BASE,
            "www.zkj.com",
            locations=(loc("/", "default-web-80"), loc("/api", "default-web-80")),
        ),
        ("location www.zkj.com /api (Prefix) changed backend default-api-80 -> default-web-80",),
    ),
    (
        "location-lost-its-backend",
        with_server(BASE, "www.zkj.com", locations=(loc("/", None), WWW.locations[1])),
        ("location www.zkj.com / (Prefix) changed backend default-web-80 -> status 404",),
    ),
    (
        "location-changed-owner",
        with_server(
            BASE,
            "www.zkj.com",
            locations=(loc("/", "default-web-80", ingress="ns/other"), WWW.locations[1]),
        ),
        ("location www.zkj.com / (Prefix) changed ingress ns/app -> ns/other",),
    ),
    (
        "exact-is-another-location",
        with_server(
            BASE,
            "www.zkj.com",
            locations=(WWW.locations[0], loc("/api", "default-api-80", PathType.EXACT)),
        ),
        (
            "location www.zkj.com /api (Exact) added",
            "location www.zkj.com /api (Prefix) removed",
        ),
    ),
    (
        "certificate-added",
        with_server(BASE, "www.zkj.com", certificate=cert(), ssl_redirect=True),
        ("certificate of www.zkj.com added", "ssl redirect of www.zkj.com turned on"),
    ),
    (
        "ssl-redirect-only",
        with_server(BASE, "www.zkj.com", ssl_redirect=True),
        ("ssl redirect of www.zkj.com turned on",),
    ),
    (
        "backend-added",
        dataclasses.replace(BASE, backends=(*BASE.backends, backend("default-new", "10.0.0.7"))),
        ("backend default-new-80 added",),
    ),
    (
        "backend-removed",
        dataclasses.replace(BASE, backends=BASE.backends[1:]),
        ("backend default-api-80 removed",),
    ),
    (
        "backend-points-elsewhere-under-the-same-name",
        dataclasses.replace(
            BASE, backends=(dataclasses.replace(BASE.backends[0], service="x"), BASE.backends[1])
        ),
        ("backend default-api-80 changed",),
    ),
    (
        "servers-reordered",
        dataclasses.replace(BASE, servers=(WWW, CATCH)),
        ("configuration changed",),
    ),
]


@pytest.mark.parametrize(
    ("new", "reasons"), [c[1:] for c in RELOAD_CASES], ids=[c[0] for c in RELOAD_CASES]
)
def test_structural_changes_reload_with_reasons(
    new: Configuration, reasons: tuple[str, ...]
) -> None:
    decision = decide(new, BASE)
    assert decision.action is Action.RELOAD
    assert decision.reasons == reasons


@pytest.mark.parametrize(
    ("old_cert", "new_cert", "reason"),
    [
        (cert(digest="aa"), cert(digest="bb"), "certificate of www.zkj.com changed"),
        (cert(), None, "certificate of www.zkj.com removed"),
        (cert("ns/a"), cert("ns/b"), "certificate of www.zkj.com changed"),
    ],
    ids=["rotated", "removed", "other-secret"],
)
def test_certificate_changes_reload(
    old_cert: Certificate, new_cert: Certificate | None, reason: str
) -> None:
    running = with_server(BASE, "www.zkj.com", certificate=old_cert)
    decision = decide(with_server(BASE, "www.zkj.com", certificate=new_cert), running)
    assert (decision.action, decision.reasons) == (Action.RELOAD, (reason,))


def test_reload_still_lists_backends_to_post() -> None:
    new = dataclasses.replace(
        with_endpoints(BASE, "default-web-80", "10.0.0.9"),
        backends=(
            *with_endpoints(BASE, "default-web-80", "10.0.0.9").backends,
            backend("default-new", "10.0.0.7"),
        ),
    )
    decision = decide(new, BASE)
    assert decision.action is Action.RELOAD
    assert decision.reasons == ("backend default-new-80 added",)
    assert decision.changed_backends == ("default-new-80", "default-web-80")


def test_reasons_are_sorted_and_capped() -> None:
    hosts = [f"h{i:03d}.com" for i in range(30)]
    new = dataclasses.replace(
        BASE, servers=(*BASE.servers, *(Server(h, (loc("/", None),)) for h in reversed(hosts)))
    )
    decision = decide(new, BASE)
    assert len(decision.reasons) == MAX_REASONS + 1
    assert list(decision.reasons[:MAX_REASONS]) == [
        f"server {h} added" for h in hosts[:MAX_REASONS]
    ]
    assert decision.reasons[-1] == "and 10 more"


def test_removed_backend_is_not_posted() -> None:
    decision = decide(dataclasses.replace(BASE, backends=BASE.backends[1:]), BASE)
    assert decision.changed_backends == ()


def test_backends_named_finds_each_by_bisection_and_refuses_an_unknown_name() -> None:
    config = Configuration(
        backends=tuple(
            Backend(BackendName(f"default-svc{i:03}-80"), "default", f"svc{i:03}", "80")
            for i in range(100)
        )
    )
    names = [BackendName("default-svc042-80"), BackendName("default-svc000-80")]
    assert [b.name for b in config.backends_named(names)] == names
    with pytest.raises(KeyError):
        config.backends_named([BackendName("default-svc042-81")])


# -- the kind of change: what a reload is counted under ---------------------------------------

RELOADING = {name: new for name, new, _ in RELOAD_CASES}
MANY_HOSTS = [f"h{i:03d}.com" for i in range(MAX_REASONS)]

CHANGE_CASES: list[tuple[str, Configuration, Configuration | None, Change]] = [
    ("first-sync", BASE, None, Change.INITIAL),
    ("endpoints", with_endpoints(BASE, "default-web-80", "10.0.0.9"), BASE, Change.BACKENDS),
    *(
        (name, RELOADING[name], BASE, kind)
        for name, kind in [
            ("server-added", Change.SERVERS),
            ("server-removed", Change.SERVERS),
            ("location-added", Change.LOCATIONS),
            ("location-removed", Change.LOCATIONS),
            ("location-backend-changed", Change.LOCATIONS),
            ("location-changed-owner", Change.LOCATIONS),
            ("certificate-added", Change.CERTIFICATES),  # with its ssl redirect: OTHER
            ("ssl-redirect-only", Change.OTHER),
            ("backend-added", Change.BACKENDS),
            ("backend-removed", Change.BACKENDS),
            ("backend-points-elsewhere-under-the-same-name", Change.BACKENDS),
            ("servers-reordered", Change.OTHER),
        ]
    ),
    (
        "certificate-rotated",
        with_server(BASE, "www.zkj.com", certificate=cert(digest="bb")),
        with_server(BASE, "www.zkj.com", certificate=cert(digest="aa")),
        Change.CERTIFICATES,
    ),
    (
        "server-outweighs-location-and-backend",
        dataclasses.replace(
            BASE,
            servers=(
                CATCH,
                Server("a.com", (loc("/", None),)),
                dataclasses.replace(WWW, locations=WWW.locations[:1]),
            ),
            backends=BASE.backends[1:],
        ),
        BASE,
        Change.SERVERS,
    ),
    (
        "location-outweighs-backend",
        dataclasses.replace(
            with_server(BASE, "www.zkj.com", locations=WWW.locations[:1]),
            backends=BASE.backends[1:],
        ),
        BASE,
        Change.LOCATIONS,
    ),
    (
        # Reasons sort "backend ..." before "server ...": past MAX_REASONS only backends are
        # kept, and a reason that is cut adds no kind (the label follows the reasons shown).
        "reasons-beyond-the-cap-count-no-kind",
        dataclasses.replace(
            BASE,
            servers=(*BASE.servers, *(Server(h, (loc("/", None),)) for h in MANY_HOSTS)),
            backends=(*BASE.backends, *(backend(f"default-{h}", "10.0.0.7") for h in MANY_HOSTS)),
        ),
        BASE,
        Change.BACKENDS,
    ),
]


@pytest.mark.parametrize(
    ("new", "running", "kind"), [c[1:] for c in CHANGE_CASES], ids=[c[0] for c in CHANGE_CASES]
)
def test_each_change_has_its_kind(
    new: Configuration, running: Configuration | None, kind: Change
) -> None:
    assert decide(new, running).change is kind


def test_kinds_name_every_reason_kept() -> None:
    certificate_added = decide(RELOADING["certificate-added"], BASE)
    assert certificate_added.changes == {Change.CERTIFICATES, Change.OTHER}
    assert decide(BASE, dataclasses.replace(BASE)).changes == frozenset()


@pytest.mark.parametrize(
    ("new", "kind"),
    [
        (BASE, Change.OPTIONS),
        (RELOADING["ssl-redirect-only"], Change.OPTIONS),
        (RELOADING["server-added"], Change.SERVERS),
    ],
    ids=["options-alone", "options-outweigh-other", "servers-outweigh-options"],
)
def test_changed_options_make_a_reload_of_kind_options_unless_outweighed(
    new: Configuration, kind: Change
) -> None:
    decision = with_options_changes(
        decide(new, BASE), ("global options changed: proxy-body-size 1m -> 8m",)
    )
    assert decision.action is Action.RELOAD
    assert "global options changed: proxy-body-size 1m -> 8m" in decision.reasons
    assert decision.change is kind


def test_kinds_are_the_reload_metric_labels() -> None:
    assert [c.value for c in Change] == [
        "initial",
        "servers",
        "locations",
        "certificates",
        "backends",
        "streams",
        "options",
        "routes",
        "other",
    ]


@pytest.mark.parametrize("seed", range(4))
def test_differing_names_the_items_that_are_not_the_other_sides_very_objects(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        names = sorted(rng.sample(range(400), rng.randint(0, 120)))
        old = tuple(Backend(BackendName(f"b{n:03}"), "default", "web", "80") for n in names)
        new = list(old)
        for _ in range(rng.choice((0, 1, 2, 7, 60))):
            roll = rng.random()
            if roll < 0.3 and new:
                new.pop(rng.randrange(len(new)))
            elif roll < 0.6 and new:  # another object, equal or not
                at = rng.randrange(len(new))
                new[at] = dataclasses.replace(new[at], service_port=rng.choice(("80", "81")))
            else:
                name = f"b{rng.randrange(400):03}"
                if all(b.name != name for b in new):
                    new.append(Backend(BackendName(name), "default", "web", "80"))
                    new.sort(key=backend_order)
        fresh, stale = differing(tuple(new), old, key=backend_order)
        assert fresh == [b for b in new if not any(b is o for o in old)]
        assert stale == [o for o in old if not any(o is b for b in new)]
