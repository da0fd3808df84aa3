"""ingress-nginx annotations: the table of every known one, their grammars, and the parser.

    metadata.annotations --parse_annotations(key, annotations, options)--> IngressAnnotations
        (typed LocationSettings, server aliases/snippet, BackendPolicy, canary TrafficShaping,
         and a report: supported / supported with a difference / unsupported / invalid /
         unknown / ignored / not allowed, per annotation)
    -> building attaches the values to the model; ``ingressd check`` prints the report

``ANNOTATIONS`` (``table.py``) lists every ingress-nginx annotation ingressd knows, with its
support and the difference from ingress-nginx; ``values.py``, ``urls.py`` and ``patterns.py`` hold
the value grammars; ``headers.py`` header names and values and the safe subset of snippets
(header rules, rendered again, never spliced); ``secrets.py`` reads the Secrets annotations
refer to (htpasswd, CA bundles).
"""

from ingressd.annotations.combining import AuthRequest
from ingressd.annotations.parsing import (
    AnnotationOptions,
    AnnotationReport,
    IngressAnnotations,
    Status,
    parse_annotations,
)
from ingressd.annotations.table import (
    ANNOTATIONS,
    DEFAULT_PREFIX,
    Annotation,
    Group,
    Risk,
    Support,
)

__all__ = [
    "ANNOTATIONS",
    "DEFAULT_PREFIX",
    "Annotation",
    "AnnotationOptions",
    "AnnotationReport",
    "AuthRequest",
    "Group",
    "IngressAnnotations",
    "Risk",
    "Status",
    "Support",
    "parse_annotations",
]
