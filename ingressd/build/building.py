"""Building: a Store snapshot in, the model of what nginx must do out.  Pure in behaviour.

    Snapshot + BuildOptions --build_configuration(snapshot, options, cache=)--> BuildResult
        cache        the caller's ``BuildCache`` (``ingressd.build.incremental``): the last
                     build, from which the next one assembles only what a change touches;
                     without one, a full build: every Ingress assembled
                     (``ingressd.build.assembly``, from per-object plans, ``ingressd.build.plan``)
        Either way the result is the one a full build of the snapshot gives.

Nothing is raised and nothing is logged: whatever is wrong in an object becomes a ``Problem``
naming the object and the field, and only the offending rule, path or TLS entry is skipped (the
whole Ingress only when its structure is broken).  An invalid annotation is left out (its default
applies), except the security ones (access lists, authentication, backend TLS): their Ingress's
locations then answer 503 (``LocationSettings.denied``) rather than serve unprotected.  Every
value copied into the model has passed ``ingressd.model.validation`` or ``ingressd.annotations``.
Results depend only on the snapshot's content, never on dict order.
"""

from __future__ import annotations

import dataclasses

from ingressd.build.incremental import BuildCache, BuildResult
from ingressd.build.selection import BuildOptions
from ingressd.build.streams import build_streams
from ingressd.memory import gc_paused
from ingressd.model import backend_order
from ingressd.store.snapshot import Snapshot

__all__ = ["BuildCache", "BuildOptions", "BuildResult", "build_configuration"]


def build_configuration(
    snapshot: Snapshot, options: BuildOptions, *, cache: BuildCache | None = None
) -> BuildResult:
    """Turn the snapshot's objects into the ``Configuration`` nginx must serve.

    ``cache``: where the last build is kept for the next one, held by the caller that builds
    again and again (the sync worker); without one, a full build.
    """
    if cache is None:
        cache = BuildCache()
    with gc_paused():
        result = cache.build(snapshot, options)
        return with_streams(result, snapshot, options)


def with_streams(result: BuildResult, snapshot: Snapshot, options: BuildOptions) -> BuildResult:
    """``result`` with the stream listeners and the backends only they use
    (``ingressd.build.streams``); ``result`` itself when there are none."""
    if not (
        options.tcp_services_configmap
        or options.udp_services_configmap
        or options.enable_ssl_passthrough
    ):
        return result
    streams, backends, problems = build_streams(snapshot, options, result.configuration)
    config = result.configuration
    if backends:
        merged = sorted((*config.backends, *backends), key=backend_order)
        config = dataclasses.replace(config, backends=tuple(merged))
    return dataclasses.replace(
        result,
        configuration=dataclasses.replace(config, streams=streams),
        problems=(*result.problems, *problems),
    )
