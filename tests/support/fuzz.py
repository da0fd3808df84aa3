"""Hostile Kubernetes objects for the fuzz test (tests/test_fuzz.py, ``make fuzz``).

    Fuzzer(seed) --objects(n)--> Ingresses, Services, EndpointSlices, Secrets and the
        controller's ConfigMap, each field a plausible value, a hostile one (quotes, braces,
        semicolons, ``$``, CR/LF, NUL, unicode, huge) or a value of the wrong type

Every hostile string carries ``INJECTED`` right after a character that could end a directive
or open a block, so a rendered nginx.conf that shows ``INJECTED`` outside a quoted string has
let an object's text become nginx syntax.
"""

from __future__ import annotations

import base64
import random
from typing import Any

from ingressd.annotations.table import ANNOTATIONS, DEFAULT_PREFIX
from tests.support.objects import self_signed_certificate

#: What an injected directive would start with.
INJECTED = "zqinjected"

#: The controller's ConfigMap, as the fuzz test's controller reads it.
CONFIGMAP = ("ingressd", "ingressd-controller")

_BREAKERS = (
    ";",
    "{",
    "}",
    '"',
    "'",
    "\\",
    "\n",
    "\r\n",
    "\x00",
    "$",
    "${",
    "#",
    " ",
    "\t",
    "`",
    "\u2028",
)

#: Plausible values by the shape of an annotation's name (the rest get a word or a number).
_PLAUSIBLE = (
    ("custom-headers", ("hdrs", "default/hdrs", "other/hdrs")),
    ("-size", ("8m", "0", "1k", "512")),
    ("-timeout", ("5", "30s", "1m")),
    ("-number", ("4", "0", "1")),
    ("-tries", ("3", "0")),
    ("-code", ("301", "308", "302")),
    ("-weight", ("0", "100", "10")),
    ("-redirect", ("https://a.test/x", "http://[::1]:8080/")),
    ("-url", ("https://auth.test/check", "http://127.0.0.1:4180/oauth2/auth")),
    ("-signin", ("https://$host/oauth2/start?rd=$escaped_request_uri",)),
    ("-cache-key", ("$remote_user$http_authorization", "$cookie__oauth2_proxy")),
    ("-cache-duration", ("200 202 10m, 401 1m", "any 1m")),
    ("auth-keepalive", ("4", "0")),
    ("-origin", ("https://a.test", "*")),
    ("-methods", ("GET, POST",)),
    ("-headers", ("X-A, X-B",)),
    ("-range", ("10.0.0.0/8", "::1/128, 192.168.0.0/16")),
    ("-target", ("/$1", "/x")),
    ("-hash-by", ("$request_uri", "${http_x_user}")),
    ("alias", ("b.test, *.c.test",)),
    ("-protocol", ("HTTP", "GRPCS", "HTTPS")),
    ("-secret", ("default/sec", "sec")),
    ("-name", ("name", "cookie")),
    ("-errors", ("404,503",)),
    ("-path", ("/", "/x")),
    (
        "snippet",
        (
            "more_set_headers 'X: 1';",
            "return 200;",
            "more_set_headers -s '404 500' -t text/html 'X-A: $host' \"X-B: b\";",
            "more_clear_headers X-Powered-*;\nmore_clear_input_headers -t text/plain X-T;",
            "more_set_input_headers -r 'X-User: ${http_x_user}';",
            "proxy_set_header X-Real $remote_addr;\nadd_header X-C c always;",
        ),
    ),
)
_WORDS = ("true", "false", "on", "off", "cookie", "ewma", "round_robin", "basic", "always", "1")


class Fuzzer:
    """Seeded generator of hostile objects."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self._counter = 0
        cert, key = self_signed_certificate("fuzz.test")
        self.pem = (cert, key)

    # -- values ----------------------------------------------------------------------------

    def hostile(self) -> str:
        rng = self.rng
        base = rng.choice(("a.test", "/x", "web", "80", "8m", "https://a.test/", "", "é-ü"))
        breaker = rng.choice(_BREAKERS)
        tail = rng.choice(
            (
                f"{INJECTED} on;",
                f"{INJECTED} {{",
                f"$host{INJECTED}",
                f"$host{INJECTED.upper()}",
                INJECTED,
            )
        )
        value = base + breaker + tail
        if rng.random() < 0.05:
            value *= rng.randint(100, 3000)  # huge
        return value

    def anything(self, plausible: tuple[Any, ...] = ("x",)) -> Any:
        """A plausible value, a hostile string or a value of the wrong type."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.45:
            return rng.choice(plausible)
        if roll < 0.85:
            return self.hostile()
        return rng.choice((None, 7, -1, 2**70, 1.5, True, [], {}, ["a"], {"a": "b"}))

    def name(self) -> str:
        self._counter += 1
        if self.rng.random() < 0.1:
            return self.anything(("web",))  # type: ignore[no-any-return]
        return f"o{self._counter}"

    def annotations(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.rng.sample(sorted(ANNOTATIONS), self.rng.randint(0, 6)):
            plausible = next((v for suffix, v in _PLAUSIBLE if name.endswith(suffix)), _WORDS)
            out[f"{DEFAULT_PREFIX}/{name}"] = self.anything(plausible)
        if self.rng.random() < 0.1:
            out[self.hostile()] = self.hostile()
        return out

    # -- objects ---------------------------------------------------------------------------

    def meta(self, namespace: str = "default") -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name(), "namespace": namespace}
        if self.rng.random() < 0.1:
            meta["namespace"] = self.anything(("default",))
        return meta

    def ingress(self) -> dict[str, Any]:
        rng = self.rng
        paths = [
            {
                "path": self.anything(("/", "/api", "/a/b/", "/v[0-9]+")),
                "pathType": self.anything(("Prefix", "Exact", "ImplementationSpecific")),
                "backend": {
                    "service": {
                        "name": self.anything(("web", "api", "missing")),
                        "port": rng.choice(
                            (
                                {"number": self.anything((80, 8080))},
                                {"name": self.anything(("http",))},
                            )
                        ),
                    }
                },
            }
            for _ in range(rng.randint(1, 3))
        ]
        rules = [
            {"host": self.anything(("a.test", "*.b.test", "c.test")), "http": {"paths": paths}}
            for _ in range(rng.randint(1, 2))
        ]
        spec: dict[str, Any] = {"ingressClassName": "ingressd", "rules": rules}
        if rng.random() < 0.3:
            spec["tls"] = [
                {"hosts": [self.anything(("a.test",))], "secretName": self.anything(("sec",))}
            ]
        if rng.random() < 0.2:
            spec["defaultBackend"] = {"service": {"name": "web", "port": {"number": 80}}}
        meta = self.meta()
        meta["annotations"] = self.annotations()
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": meta,
            "spec": spec,
        }

    def service(self) -> dict[str, Any]:
        ports = [
            {
                "name": self.anything(("http",)),
                "port": self.anything((80,)),
                "targetPort": self.anything((8080, "http")),
            }
        ]
        meta = self.meta()
        meta["name"] = self.rng.choice(("web", "api", meta["name"]))
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": ports}}

    def endpoint_slice(self) -> dict[str, Any]:
        meta = self.meta()
        meta["labels"] = {"kubernetes.io/service-name": self.anything(("web", "api"))}
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": meta,
            "addressType": self.anything(("IPv4", "IPv6", "FQDN")),
            "ports": [{"name": self.anything(("http",)), "port": self.anything((8080,))}],
            "endpoints": [
                {
                    "addresses": [self.anything(("10.0.0.1", "fd00::1", "127.0.0.1", "0.0.0.0"))],
                    "conditions": {"ready": self.anything((True,))},
                }
                for _ in range(self.rng.randint(0, 3))
            ],
        }

    def secret(self) -> dict[str, Any]:
        cert, key = self.pem
        data: dict[str, Any] = {
            "tls.crt": base64.b64encode(cert.encode()).decode(),
            "tls.key": base64.b64encode(key.encode()).decode(),
            "auth": base64.b64encode(b"alice:{PLAIN}secret\n").decode(),
        }
        for field in self.rng.sample(sorted(data), self.rng.randint(0, 3)):
            data[field] = self.anything((data[field],))
        meta = self.meta()
        meta["name"] = self.rng.choice(("sec", meta["name"]))
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "type": "Opaque",
            "data": data,
        }

    def configmap(self) -> dict[str, Any]:
        from ingressd.pipeline.configmap import known_keys

        keys = self.rng.sample(known_keys(), 4)
        data = {key: self.anything(("true", "5", "8m", "1")) for key in keys}
        for key in ("add-headers", "proxy-set-headers"):
            if key in data and self.rng.random() < 0.7:
                data[key] = "ingressd/hdrs"
        namespace, name = CONFIGMAP
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }

    def header_configmap(self) -> dict[str, Any]:
        """A ConfigMap of headers (custom-headers, add-headers, proxy-set-headers name them)."""
        rng = self.rng
        data = {
            rng.choice(("X-A", "X-B", "Content-Security-Policy", self.hostile())): self.anything(
                ("v", "default-src 'self'; img-src *", "$host", "${http_x_user} $5")
            )
            for _ in range(rng.randint(0, 3))
        }
        namespace = rng.choice(("default", "ingressd"))
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "hdrs", "namespace": namespace},
            "data": data,
        }

    def objects(self, count: int) -> list[dict[str, Any]]:
        makers = (
            (self.ingress, 0.45),
            (self.service, 0.2),
            (self.endpoint_slice, 0.2),
            (self.secret, 0.08),
            (self.header_configmap, 0.03),
            (self.configmap, 0.04),
        )
        out = []
        for _ in range(count):
            roll, total = self.rng.random(), 0.0
            for make, share in makers:
                total += share
                if roll < total:
                    out.append(make())
                    break
            else:
                out.append(self.ingress())
        return out
