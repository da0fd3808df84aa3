"""Annotating: an Ingress's parsed annotations -> resolved LocationSettings, backend policies,
server aliases / snippet / app-root.

    IngressAnnotations (``IngressPlan.annotations``, parsed by ``ingressd.annotations``)
        --settings()--> LocationSettings of every location of the Ingress, with the Secrets
                        (``auth-secret``, ``proxy-ssl-secret``) and the Service
                        (``default-backend``) they name resolved; a missing or unusable Secret
                        denies the locations (503)
        --set_policy()--> the BackendPolicy (load-balance, upstream-hash-by, affinity) of the
                        backends the Ingress routes to: the oldest Ingress that sets one wins
        --server_annotations()--> ``server-alias``, ``server-snippet``, ``app-root`` on the
                        drafts of the Ingress's hosts: the oldest Ingress of a host wins

Stage 3a of the assembly (``ingressd.build.assembly``): the rules stage calls it for each Ingress
and each location it adds.  What it resolves is kept per Ingress (``resolved_settings``) and is
the last build's object when equal.
"""

from __future__ import annotations

import dataclasses

from ingressd.annotations import IngressAnnotations
from ingressd.build import kube
from ingressd.build.plan import backend_ref
from ingressd.build.resolving import AssemblyState, Refused
from ingressd.model import (
    BackendName,
    ObjectKey,
    PathType,
)
from ingressd.model.policy import DEFAULT_POLICY
from ingressd.model.settings import BasicAuth, LocationSettings, SecretFile

__all__ = ["AnnotationStage"]


class AnnotationStage(AssemblyState):
    """3a. What an Ingress's annotations do to its locations, backends and servers."""


    def settings(
        self, key: ObjectKey, namespace: str, annotations: IngressAnnotations
    ) -> LocationSettings:
        """The Ingress's LocationSettings with the Secrets and Services they name resolved
        (the last build's object when equal)."""
        s = self.resolve_settings(key, namespace, annotations)
        if s is not annotations.settings:
            previous = self.memo.settings.get(key)
            if previous is not None and previous == s:
                s = previous
            self.resolved_settings[key] = s
        return s

    def resolve_settings(
        self, key: ObjectKey, namespace: str, annotations: IngressAnnotations
    ) -> LocationSettings:
        """A missing or unusable Secret denies the locations (503), as an invalid security
        annotation does; a missing ``default-backend`` Service is only left out."""
        s = annotations.settings
        if s.denied is not None:
            return s
        auth = annotations.auth_request
        if auth is not None:
            found = self.secret_file(namespace, auth.namespace, auth.name, auth.secret_type)
            if isinstance(found, Refused):
                self.problem(key, self.annotation_field("auth-secret"), found.reason,
                             missing=found.missing)
                return LocationSettings(denied=f"auth-secret: {found.reason}")
            assert isinstance(found, SecretFile)
            s = dataclasses.replace(s, auth=BasicAuth(auth.realm, found))
        ssl_ref = annotations.proxy_ssl_secret
        if ssl_ref is not None and s.proxy_ssl is not None:
            files = self.secret_file(namespace, ssl_ref[0], ssl_ref[1], "proxy-ssl")
            if isinstance(files, Refused):
                self.problem(key, self.annotation_field("proxy-ssl-secret"), files.reason,
                             missing=files.missing)
                return LocationSettings(denied=f"proxy-ssl-secret: {files.reason}")
            assert isinstance(files, tuple)
            ca, client = files
            s = dataclasses.replace(
                s, proxy_ssl=dataclasses.replace(s.proxy_ssl, ca=ca, client_certificate=client)
            )
        if s.proxy_ssl is not None and s.proxy_ssl.verify and s.proxy_ssl.ca is None:
            reason = "proxy-ssl-verify needs a proxy-ssl-secret holding ca.crt"
            self.problem(key, self.annotation_field("proxy-ssl-verify"), reason)
            return LocationSettings(denied=reason)
        if annotations.default_backend is not None:
            name = self.annotation_backend(key, namespace, annotations.default_backend)
            if name is not None:
                s = dataclasses.replace(s, default_backend=name)
            elif s.custom_http_errors:
                s = dataclasses.replace(s, custom_http_errors=())
        return s


    def annotation_backend(
        self, key: ObjectKey, namespace: str, service: str
    ) -> BackendName | None:
        """``default-backend``: the first port of a Service of the Ingress's namespace."""
        at = self.annotation_field("default-backend")
        found = self.service(ObjectKey(f"{namespace}/{service}"))
        if found is None or isinstance(found, kube.ParseError) or not found.ports:
            why = "not found" if found is None else "unusable (no port)"
            self.problem(key, at, f"service {namespace}/{service} {why}",
                         missing="" if found is not None else f"Service {namespace}/{service}")
            return None
        number = found.ports[0][1]
        backend = {"service": {"name": service, "port": {"number": number}}}
        ref, issue = backend_ref(namespace, backend, at)
        return self.backend(key, ref, issue, at)

    def set_policy(
        self,
        backend: BackendName,
        annotations: IngressAnnotations,
        location_key: tuple[str, PathType],
        key: ObjectKey,
    ) -> None:
        """Give ``backend`` the Ingress's balancing policy; the oldest Ingress that sets one
        wins (ingress-nginx keeps the first too), a different one later is a Problem."""
        policy = annotations.policy
        if policy == DEFAULT_POLICY:
            return
        if policy.affinity is not None and policy.affinity.path is None:
            path = "/" if location_key[1] is PathType.REGEX else location_key[0]
            policy = dataclasses.replace(
                policy, affinity=dataclasses.replace(policy.affinity, path=path)
            )
        taken = self.policies.get(backend)
        if taken is None:
            self.policies[backend] = (policy, key)
        elif taken[1] != key and taken[0] != policy:
            reason = (
                f"backend {backend} already uses the load-balance / upstream-hash-by / affinity"
                f" of Ingress {taken[1]}; these are ignored for it"
            )
            self.problem(key, "metadata.annotations", reason)

    def server_annotations(
        self, key: ObjectKey, hosts: list[str], annotations: IngressAnnotations
    ) -> None:
        """``server-alias``, ``server-snippet`` and ``app-root`` go to every host of the
        Ingress (the oldest Ingress of a host wins its snippet and app-root)."""
        for host in hosts:
            draft = self.servers[host]
            for alias in annotations.aliases:
                draft.aliases.setdefault(alias, key)
            if draft.app_root is None:
                draft.app_root = annotations.app_root
            if annotations.server_snippet is None:
                continue
            if draft.snippet is None:
                draft.snippet, draft.snippet_from = annotations.server_snippet, key
            elif draft.snippet_from != key:
                reason = (
                    f"host {host} already has the server-snippet of Ingress {draft.snippet_from}"
                    " (one per host)"
                )
                self.problem(key, self.annotation_field("server-snippet"), reason)
