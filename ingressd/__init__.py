"""ingressd: a Kubernetes Ingress controller driving a real nginx.

The data flow, one module per stage:

    sources (manifests dir | Kubernetes watch | recorded trace)
      -> Store (``ingressd.store``)              caches, indexes, typed events
      -> updateChannel (``ingressd.pipeline.channel``)    bounded asyncio queue of StoreEvents
      -> NginxController (``ingressd.pipeline.controller``) events -> sync tasks
      -> syncQueue (``ingressd.pipeline.queueing``)       coalescing, forced tasks, backoff
      -> sync worker (``ingressd.pipeline.syncing``)      build (pure) -> diff (pure) -> apply
           dynamic    -> ``ingressd.nginx.dynamic`` POSTs backends to the Lua endpoint
           structural -> ``ingressd.nginx.rendering`` + ``ingressd.nginx.process`` reload
"""

__version__ = "0.1.0"

from ingressd import kubelib as _kubelib

_kubelib.install()  # before any module of ours imports kubernetes-asyncio
