"""What the tests share: harnesses, fake pods, a fake API server and Kubernetes objects.

    harness       Harness: a real ingressd (real nginx) over a manifests dir; free ports
    kubeharness   KubeHarness: the same over the fake API server, through the Kubernetes source
    e2e           deploy(): fake pods + Service + EndpointSlice; expect(): wait until served
    backends      EchoPods: HTTP servers on loopback addresses that answer with their name
    fakeapi       FakeApiServer: the Kubernetes API over HTTP, with fault injection
    objects       Kubernetes objects for snapshots, manifests and the fake API server
    traceobjects  the same as a real API server sends them, for traces
    traces        Simulation, PodSet, TraceBuilder: event traces (tests, examples/traces/)
    rbac          every API call ingressd makes, checked against manifests/deploy

Dev-only: the benchmarks and ``examples/traces/generate.py`` use it from the checkout; nothing in
``ingressd`` imports it.
"""
