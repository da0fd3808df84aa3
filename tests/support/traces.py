"""Event traces shaped like a real API server's watch streams, for tests and the sample traces.

    Simulation.at(t, action) --run(), in time order--> actions change objects
        --TraceBuilder.add(t, type, object)--> events --lines()/write()--> JSON lines
                                                (after the header line, when given one)
    PodSet: the pods of one Service in one EndpointSlice, as the EndpointSlice controller
        writes it: pod gets an IP -> endpoint added (ready=false); readiness -> ready=true;
        deletion -> ready=false, serving=true, terminating=true; shutdown -> serving=false;
        gone -> endpoint removed.  Changes within ``batch`` seconds make one MODIFIED.

The objects themselves (Ingress, Service, Secret, ...) come from ``tests.support.traceobjects``;
the EndpointSlice is made here, by ``PodSet``, with what the EndpointSlice controller writes
(``targetRef``, ``nodeName``, ``zone``, ``conditions``).  ``resourceVersion`` is assigned by
``lines()`` in event order, one increasing counter for the whole trace, as etcd's revision is.
Everything derives from the seed: the same calls give the same bytes.
"""

from __future__ import annotations

import copy
import heapq
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingressd.store.sources.trace import TraceHeader
from tests.support.traceobjects import Obj, metadata, suffix, timestamp, uid

# -- building a trace -------------------------------------------------------------------------


class TraceBuilder:
    """Collects events, then writes them in time order with increasing resourceVersions.

    ``header``: the trace's first line, as ``ingressd record`` writes one (None: a trace of a
    recorder from before headers).
    """

    def __init__(
        self, *, first_resource_version: int = 4_812_000, header: TraceHeader | None = None
    ) -> None:
        self._events: list[tuple[float, int, str, Obj]] = []
        self._first = first_resource_version
        self.header = header

    def add(self, t: float, type_: str, obj: Obj) -> None:
        """Record ``obj`` as it is now (a deep copy) as a ``type_`` event at ``t``."""
        self._events.append((round(float(t), 3), len(self._events), type_, copy.deepcopy(obj)))

    def added(self, t: float, obj: Obj) -> None:
        self.add(t, "ADDED", obj)

    def modified(self, t: float, obj: Obj) -> None:
        self.add(t, "MODIFIED", obj)

    def deleted(self, t: float, obj: Obj) -> None:
        self.add(t, "DELETED", obj)

    def lines(self) -> list[str]:
        """The event lines (the header is not one: ``write`` puts it first)."""
        out: list[str] = []
        version = self._first
        for t, _, type_, obj in sorted(self._events, key=lambda e: (e[0], e[1])):
            version += 1
            obj["metadata"]["resourceVersion"] = str(version)
            out.append(json.dumps({"t": t, "type": type_, "object": obj}, separators=(",", ":")))
        return out

    def write(self, path: Path) -> int:
        """Write the trace; returns its size in bytes."""
        lines = self.lines()
        if self.header is not None:
            lines.insert(0, self.header.line())
        text = "\n".join(lines) + "\n"
        path.write_text(text)
        return len(text.encode())


class Simulation:
    """Actions at times, run in time order (ties in the order they were scheduled)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[float], object]]] = []
        self._seq = 0

    def at(self, t: float, action: Callable[[float], object]) -> None:
        heapq.heappush(self._heap, (t, self._seq, action))
        self._seq += 1

    def run(self) -> None:
        while self._heap:
            t, _, action = heapq.heappop(self._heap)
            action(t)


@dataclass(slots=True)
class Pod:
    name: str
    ip: str
    node: str
    zone: str
    #: The ReplicaSet hash in its name: which version of the Deployment it runs.
    revision: str
    #: created (no IP yet), pending (not ready), ready, terminating, gone
    state: str = "created"
    serving: bool = False


@dataclass
class PodSet:
    """One Service's pods and the EndpointSlice that lists them."""

    trace: TraceBuilder
    sim: Simulation
    rng: random.Random
    namespace: str
    service: str
    port: int = 8080
    nodes: tuple[str, ...] = ("worker-1", "worker-2", "worker-3", "worker-4")
    #: The EndpointSlice controller's reaction time: changes closer than this make one update.
    batch: float = 0.05
    pods: list[Pod] = field(default_factory=list)
    slice: Obj = field(init=False)
    _next_ip: dict[str, int] = field(default_factory=dict)
    _dirty: bool = False

    def __post_init__(self) -> None:
        name = f"{self.service}-{suffix(self.rng)}"
        labels = {
            "app": self.service,
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            "kubernetes.io/service-name": self.service,
        }
        owner = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.service, "uid": uid("Service", self.namespace, self.service)},
        }
        self.slice = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": metadata(
                "EndpointSlice", name, self.namespace, labels=labels, generation=1, owner=owner
            ),
            "addressType": "IPv4",
            "endpoints": [],
            "ports": [{"name": "http", "port": self.port, "protocol": "TCP"}],
        }

    # -- pods ---------------------------------------------------------------------------------

    def new_pod(self, revision: str) -> Pod:
        node_index = self.rng.randrange(len(self.nodes))
        node = self.nodes[node_index]
        host = self._next_ip.get(node, 2)
        self._next_ip[node] = host + 1
        digest = int(uid("Service", self.namespace, self.service)[:2], 16) % 32
        ip = f"10.244.{node_index * 32 + digest}.{host}"
        pod = Pod(
            name=f"{self.service}-{revision}-{suffix(self.rng)}",
            ip=ip,
            node=node,
            zone=f"zone-{'abc'[node_index % 3]}",
            revision=revision,
        )
        self.pods.append(pod)
        return pod

    def initial(self, revision: str, count: int) -> list[Pod]:
        """``count`` ready pods, in the slice before the trace starts."""
        pods = [self.new_pod(revision) for _ in range(count)]
        for pod in pods:
            pod.state, pod.serving = "ready", True
        self._render()
        return pods

    def set(self, t: float, pod: Pod, state: str) -> None:
        """Change ``pod``'s state at ``t``; the slice follows ``batch`` seconds later."""
        pod.state = state
        if state == "ready":
            pod.serving = True
        elif state in ("pending", "gone"):
            pod.serving = False
        if state == "gone":
            self.pods.remove(pod)
        self._touch(t)

    def unserve(self, t: float, pod: Pod) -> None:
        """A terminating pod's readiness probe fails: ``serving`` turns false."""
        if pod.state == "terminating":
            pod.serving = False
            self._touch(t)

    def _touch(self, t: float) -> None:
        if not self._dirty:
            self._dirty = True
            self.sim.at(t + self.batch, self._flush)

    def _flush(self, t: float) -> None:
        self._dirty = False
        self._render()
        self.slice["metadata"]["generation"] += 1
        self.slice["metadata"]["annotations"] = {
            "endpoints.kubernetes.io/last-change-trigger-time": timestamp(t)
        }
        self.trace.modified(t, self.slice)

    def _render(self) -> None:
        self.slice["endpoints"] = [self._endpoint(p) for p in self.pods if p.state != "created"]

    def _endpoint(self, pod: Pod) -> Obj:
        return {
            "addresses": [pod.ip],
            "conditions": {
                "ready": pod.state == "ready",
                "serving": pod.serving,
                "terminating": pod.state == "terminating",
            },
            "nodeName": pod.node,
            "targetRef": {
                "kind": "Pod",
                "name": pod.name,
                "namespace": self.namespace,
                "uid": uid("Pod", self.namespace, pod.name),
            },
            "zone": pod.zone,
        }

    # -- lifecycles ---------------------------------------------------------------------------

    def start_pod(
        self,
        t: float,
        revision: str,
        *,
        on_ready: Callable[[float], None] | None = None,
        ip_after: tuple[float, float] = (0.8, 2.0),
        ready_after: tuple[float, float] = (3.0, 7.0),
    ) -> Pod:
        """Create a pod at ``t``: IP after ``ip_after`` s, ready ``ready_after`` s later."""
        pod = self.new_pod(revision)
        appear = t + self.rng.uniform(*ip_after)
        ready = appear + self.rng.uniform(*ready_after)

        def got_ip(now: float) -> None:
            if pod.state == "created":
                self.set(now, pod, "pending")

        def became_ready(now: float) -> None:
            if pod.state == "pending":
                self.set(now, pod, "ready")
                if on_ready is not None:
                    on_ready(now)

        self.sim.at(appear, got_ip)
        self.sim.at(ready, became_ready)
        return pod

    def stop_pod(
        self,
        t: float,
        pod: Pod,
        *,
        unserve_after: tuple[float, float] = (1.0, 3.0),
        gone_after: tuple[float, float] = (4.0, 10.0),
    ) -> None:
        """Delete ``pod`` at ``t``: terminating at once, not serving, then gone."""
        if pod.state == "created":
            pod.state = "gone"
            self.pods.remove(pod)
            return
        self.set(t, pod, "terminating")
        gone = t + self.rng.uniform(*gone_after)
        self.sim.at(
            min(gone - 0.01, t + self.rng.uniform(*unserve_after)),
            lambda now: self.unserve(now, pod),
        )
        self.sim.at(gone, lambda now: self.set(now, pod, "gone"))
