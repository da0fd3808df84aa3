"""Lua-applied annotations through a real nginx: canaries, load-balance, upstream-hash-by and
cookie affinity; changing them is a dynamic update (no reload)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, Response
from tests.support.objects import ingress, path, rule

pytestmark = pytest.mark.nginx

P = "nginx.ingress.kubernetes.io/"


def web_ingress(name: str, host: str, svc: str, **annotations: str) -> dict[str, Any]:
    return ingress(
        name,
        rules=[rule(host, path("/", svc, 80))],
        annotations={P + k: v for k, v in annotations.items()},
        created="2024-01-01T00:00:00Z" if "canary" not in annotations else "2024-02-01T00:00:00Z",
    )


async def pods_of(
    h: Harness, host: str, count: int, headers: dict[str, str] | None = None
) -> Counter[str | None]:
    """Which pod answered each of ``count`` requests (sent 50 at a time)."""
    seen: Counter[str | None] = Counter()
    for start in range(0, count, 50):
        end = min(count, start + 50)
        batch = await asyncio.gather(
            *(h.get(f"/{i}", host=host, headers=headers) for i in range(start, end))
        )
        for resp in batch:
            assert resp.status == 200, resp.body[:200]
            seen[(resp.pod or "").rsplit("-", 1)[0]] += 1
    return seen


def lua_errors(h: Harness) -> list[str]:
    """Lines of nginx's error log that mean the Lua side raised."""
    log = (h.options.work_dir / "logs" / "error.log").read_text(errors="replace")
    markers = ("runtime error", "lua entry thread aborted", "failed to run", "balancer error")
    return [line for line in log.splitlines() if any(m in line for m in markers)]


async def settled_dynamic(h: Harness, before_updates: float) -> None:
    """Wait until a dynamic update after ``before_updates`` has been applied."""

    async def check() -> None:
        assert h.dynamic_updates > before_updates

    await h.eventually(check)
    await h.settled()


async def test_canary_by_weight_header_and_cookie_with_dynamic_weight_changes(
    harness: Harness,
) -> None:
    h = harness
    await deploy(h, "main", replicas=2)
    await deploy(h, "canary")
    h.write("main.yaml", web_ingress("main", "app.test", "main"))
    h.write(
        "canary.yaml",
        web_ingress(
            "app-canary",
            "app.test",
            "canary",
            **{
                "canary": "true",
                "canary-weight": "20",
                "canary-by-header": "X-Canary",
                "canary-by-cookie": "use_canary",
            },
        ),
    )
    await expect(h, "/", host="app.test", service="main")
    await expect(h, "/", host="app.test", service="canary", headers={"X-Canary": "always"})

    # 20% of 1000 requests: binomial sd ~12.6, so +-60 is almost 5 sd.
    share = (await pods_of(h, "app.test", 1000))["canary"] / 1000
    assert 0.14 <= share <= 0.26, share

    # The header decides first (always / never), then the cookie, then the weight.
    always = await pods_of(h, "app.test", 40, {"X-Canary": "always"})
    never = await pods_of(h, "app.test", 40, {"X-Canary": "never", "Cookie": "use_canary=always"})
    cookie = await pods_of(h, "app.test", 40, {"Cookie": "use_canary=always"})
    cookie_never = await pods_of(h, "app.test", 40, {"Cookie": "use_canary=never"})
    other = await pods_of(h, "app.test", 40, {"X-Canary": "maybe", "Cookie": "use_canary=always"})
    assert (always, never) == (Counter(canary=40), Counter(main=40))
    assert (cookie, cookie_never, other) == (
        Counter(canary=40),
        Counter(main=40),
        Counter(canary=40),
    )

    # A new weight is a dynamic update: no reload, and the share follows.
    reloads, updates = h.reloads, h.dynamic_updates
    h.write(
        "canary.yaml",
        web_ingress(
            "app-canary",
            "app.test",
            "canary",
            **{"canary": "true", "canary-weight": "100", "canary-by-header": "X-Canary"},
        ),
    )
    await settled_dynamic(h, updates)
    assert await pods_of(h, "app.test", 50) == Counter(canary=50)
    assert await pods_of(h, "app.test", 20, {"X-Canary": "never"}) == Counter(main=20)
    h.write(
        "canary.yaml",
        web_ingress(
            "app-canary",
            "app.test",
            "canary",
            **{
                "canary": "true",
                "canary-weight": "0",
                "canary-by-header": "X-Region",
                "canary-by-header-value": "eu",
            },
        ),
    )
    await settled_dynamic(h, h.dynamic_updates)
    assert await pods_of(h, "app.test", 50) == Counter(main=50)
    assert await pods_of(h, "app.test", 20, {"X-Region": "eu"}) == Counter(canary=20)
    assert await pods_of(h, "app.test", 20, {"X-Region": "us"}) == Counter(main=20)
    assert h.reloads == reloads
    assert lua_errors(h) == []


async def test_load_balance_hash_and_affinity_keep_requests_on_pods_and_change_without_reload(
    harness: Harness,
) -> None:
    h = harness
    await deploy(h, "web", replicas=4)
    h.write("ing.yaml", web_ingress("web", "web.test", "web", **{"load-balance": "round_robin"}))
    await expect(h, "/", host="web.test", service="web")
    spread = Counter([(await h.get("/", host="web.test")).pod for _ in range(40)])
    assert len(spread) == 4, spread

    await h.settled()  # new workers may serve before the reload's sync has counted it
    reloads, updates = h.reloads, h.dynamic_updates
    h.write(
        "ing.yaml", web_ingress("web", "web.test", "web", **{"upstream-hash-by": "$http_x_user"})
    )
    await settled_dynamic(h, updates)
    for user in ("alice", "bob", "carol", "dave"):
        pods = {
            (await h.get(f"/{i}", host="web.test", headers={"X-User": user})).pod for i in range(10)
        }
        assert len(pods) == 1, (user, pods)
    users = {
        (await h.get("/", host="web.test", headers={"X-User": f"u{i}"})).pod for i in range(40)
    }
    assert len(users) >= 3, users

    h.write(
        "ing.yaml", web_ingress("web", "web.test", "web", **{"upstream-hash-by": "$request_uri"})
    )
    await settled_dynamic(h, h.dynamic_updates)
    for uri in ("/a", "/b?x=1", "/c/d"):
        assert len({(await h.get(uri, host="web.test")).pod for _ in range(8)}) == 1, uri

    h.write("ing.yaml", web_ingress("web", "web.test", "web", **{"load-balance": "ewma"}))
    await settled_dynamic(h, h.dynamic_updates)
    held = {b["name"]: b for b in await h.ingressd.nginx.endpoint.get_backends()}
    assert held["default-web-80"]["load-balance"] == "ewma"
    assert held["default-web-80"]["upstreamHashByConfig"]["upstream-hash-by"] == ""
    spread = Counter([(await h.get("/", host="web.test")).pod for _ in range(40)])
    assert len(spread) >= 2, spread

    for mode in ("balanced", "persistent"):
        h.write(
            "ing.yaml",
            web_ingress(
                "web",
                "web.test",
                "web",
                **{
                    "affinity": "cookie",
                    "affinity-mode": mode,
                    "session-cookie-name": "route",
                    "session-cookie-max-age": "3600",
                    "session-cookie-samesite": "Lax",
                },
            ),
        )
        await settled_dynamic(h, h.dynamic_updates)
        first: Response = await h.get("/", host="web.test")
        cookie = first.headers["Set-Cookie"]
        assert cookie.startswith("route=") and "; Path=/; Max-Age=3600; SameSite=Lax" in cookie
        value = cookie.split(";", 1)[0]
        followers = [
            await h.get("/", host="web.test", headers={"Cookie": value}) for _ in range(15)
        ]
        assert {r.pod for r in followers} == {first.pod}, mode
        assert all("Set-Cookie" not in r.headers for r in followers)
        sessions = {(await h.get("/", host="web.test")).pod for _ in range(30)}
        assert len(sessions) >= 2, (mode, sessions)

    assert h.reloads == reloads
    assert lua_errors(h) == []
