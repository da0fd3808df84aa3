"""The model of what nginx must do: immutable values built from the Store, diffed and rendered.

    keys           ObjectKey, BackendName, CATCH_ALL
    configuration  Configuration, Server, Location, Backend, Endpoint, Certificate, Problem
    settings       LocationSettings: what annotations change in a location (structural)
    policy         BackendPolicy, TrafficShaping: how Lua balances a backend (dynamic)
    validation     grammars of the Kubernetes names and hosts copied into the model

The package's face re-exports ``keys`` and ``configuration``; settings, policy and validation are
imported from their modules.
"""

from ingressd.model.configuration import (
    Backend,
    Certificate,
    Configuration,
    Endpoint,
    Location,
    PathType,
    Problem,
    Server,
    backend_order,
    differing,
    server_order,
)
from ingressd.model.keys import CATCH_ALL, BackendName, ObjectKey

__all__ = [
    "CATCH_ALL",
    "Backend",
    "BackendName",
    "Certificate",
    "Configuration",
    "Endpoint",
    "Location",
    "ObjectKey",
    "PathType",
    "Problem",
    "Server",
    "backend_order",
    "differing",
    "server_order",
]
