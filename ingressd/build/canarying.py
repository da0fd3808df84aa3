"""Canarying: Ingresses with ``canary: "true"`` -> alternative backends of the main ones.

    canary IngressPlan, after every other Ingress was assembled
        each rule path --main_location()--> the Location a main Ingress made for the same
                                            host + path (Exact: the same path; else the regex
                                            or the Prefix location), else a Problem
                       --backend()-------> the canary's own Backend (Service -> port)
                       --canary_backend()--> ``canary-<ingress>-<backend>``: a copy of it with
                                            the canary's ``trafficShapingPolicy`` and policy
        -> ``alternatives[main backend]``: the canaries of each main backend, in Ingress order
           (``alternativeBackends``, set on the main backends by the finish stage)

Stage 5a of the assembly (``ingressd.build.assembly``), run in the ``CANARIES`` phase.  A canary
adds no location and no server: it reads the main Ingresses' locations and extends their
backends, which is why building assembles everything again when a canary is involved.
"""

from __future__ import annotations

import dataclasses

from ingressd.annotations import IngressAnnotations
from ingressd.build.plan import IngressPlan, PathPlan
from ingressd.build.resolving import AssemblyState
from ingressd.model import CATCH_ALL, BackendName, Location, ObjectKey, PathType

__all__ = ["CanaryStage"]


class CanaryStage(AssemblyState):
    """5a. Canary Ingresses: each path's backend an alternative of the main backend."""

    def canary(self, plan: IngressPlan) -> None:
        """Each path of a canary Ingress: its backend becomes an alternative of the backend
        that serves the same host and path (a main Ingress must define it)."""
        key = plan.key
        name = key.partition("/")[2]
        annotations = plan.annotations
        if not self.checked(plan) or annotations.canary is None:
            return
        for rule in plan.rules:
            if rule.host_issue is not None:
                self.issue(key, rule.host_issue)
                continue
            host = rule.host or CATCH_ALL
            for path in rule.paths:
                at = f"spec.rules[{rule.position}].http.paths[{path.position}]"
                main = self.main_location(key, host, path, at)
                if main is None:
                    continue
                base = self.backend(key, path.backend, path.backend_issue, f"{at}.backend")
                if base is None:
                    continue
                if base == main.backend:
                    reason = f"the canary routes to {base}, the backend of its main Ingress"
                    self.problem(key, f"{at}.backend", reason)
                    continue
                canary_name = self.canary_backend(key, name, base, annotations, main)
                if canary_name is None:
                    continue
                alternatives = self.alternatives.setdefault(BackendName(main.backend or ""), [])
                if canary_name not in alternatives:
                    alternatives.append(canary_name)

    def main_location(
        self, key: ObjectKey, host: str, path: PathPlan, at: str
    ) -> Location | None:
        server = self.servers.get(host)
        raw_path = path.raw_path
        candidates: list[tuple[str, PathType]] = []
        if path.raw_type == "Exact":
            candidates.append((raw_path, PathType.EXACT))
        else:
            candidates.append((raw_path, PathType.REGEX))
            candidates.append((raw_path.rstrip("/") or "/", PathType.PREFIX))
        for candidate in candidates:
            location = server.locations.get(candidate) if server is not None else None
            if location is not None and location.backend is not None and location.ingress:
                return location
        where = "the catch-all server" if host == CATCH_ALL else f"host {host}"
        reason = f"no main Ingress serves {raw_path} on {where}; the canary is ignored"
        self.problem(key, f"{at}.path", reason)
        return None

    def canary_backend(
        self,
        key: ObjectKey,
        ingress_name: str,
        base: BackendName,
        annotations: IngressAnnotations,
        main: Location,
    ) -> BackendName | None:
        """The canary copy of ``base``, named for the canary Ingress, with its traffic policy."""
        name = BackendName(f"canary-{ingress_name}-{base}")
        if name in self.canaries:
            return name
        if name in self.backends:
            self.collided = True
            reason = f"backend name {name} is already used by a Service"
            self.problem(key, "metadata.name", reason)
            return None
        source = self.backends[base]
        policy = annotations.policy
        if policy.affinity is not None and policy.affinity.path is None:
            path = "/" if main.path_type is PathType.REGEX else main.path
            policy = dataclasses.replace(
                policy, affinity=dataclasses.replace(policy.affinity, path=path)
            )
        self.canaries[name] = dataclasses.replace(
            source,
            name=name,
            policy=dataclasses.replace(policy, traffic_shaping=annotations.canary),
        )
        return name
