"""ingressd: a Kubernetes Ingress controller driving a real nginx.

The data flow, one module per stage:

    sources (manifests dir | Kubernetes watch | recorded trace)
      -> Store (``ingressd.store``)              caches, indexes, typed events
      -> updateChannel (``ingressd.channel``)    bounded asyncio queue of StoreEvents
      -> NginxController (``ingressd.controller``) events -> sync tasks
      -> syncQueue (``ingressd.queueing``)       coalescing, forced tasks, backoff
      -> sync worker (``ingressd.syncing``)      build (pure) -> diff (pure) -> apply
           dynamic    -> ``ingressd.nginx.dynamic`` POSTs backends to the Lua endpoint
           structural -> ``ingressd.nginx.rendering`` + ``ingressd.nginx.process`` reload
"""

__version__ = "0.1.0"
