"""A fake Kubernetes API server speaking the real protocol over HTTP (see ``server.py``).

FakeApiServer (server.py)   the listening socket, the Python-side "cluster" and the faults
    --> ApiHandler (serving.py)   HTTP requests -> store operations and watch streams
            --> discovery() / route() (routing.py)   what a path addresses
            --> ApiStore (store.py)   objects, resourceVersions, watch history
    selectors, patches, Status errors: machinery.py (pure)
"""

from tests.support.fakeapi.server import ApiError, ApiRequest, FakeApiServer, RequestLog

__all__ = ["ApiError", "ApiRequest", "FakeApiServer", "RequestLog"]
