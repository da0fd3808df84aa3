"""kubernetes-asyncio loaded by need (``ingressd.kubelib``): each check runs in a fresh
interpreter, since the test process has imported the library long before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def run_python(code: str, **environment: str) -> object:
    """What ``code`` prints last, as JSON, run by a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, **environment},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_controller_loads_only_the_api_classes_it_uses_and_no_model_at_start() -> None:
    loaded = run_python(
        """
        import json, sys
        import ingressd.cli.commands, ingressd.cluster.duties, ingressd.store.sources.kubernetes
        prefix = "kubernetes_asyncio.client."
        print(json.dumps(sorted(m for m in sys.modules if m.startswith(prefix))))
        """
    )
    assert isinstance(loaded, list)
    models = [m for m in loaded if m.startswith("kubernetes_asyncio.client.models.")]
    apis = {m.rsplit(".", 1)[1] for m in loaded if m.startswith("kubernetes_asyncio.client.api.")}
    assert models == []
    used = {
        "core_api",
        "core_v1_api",
        "coordination_v1_api",
        "discovery_v1_api",
        "networking_v1_api",
    }
    assert "core_v1_api" in apis
    assert apis <= used


def test_every_name_the_library_exports_resolves_to_the_same_class_as_an_eager_import() -> None:
    listing = """
        import json, os
        if os.environ.get("WITH_INGRESSD"):
            import ingressd
        import kubernetes_asyncio.client as c
        names = json.loads(os.environ["NAMES"]) if os.environ.get("NAMES") else c.__all__
        found = {n: f"{getattr(c, n).__module__}.{getattr(c, n).__qualname__}" for n in names}
        found["models.V1LeaseSpec"] = c.models.V1LeaseSpec.__module__
        print(json.dumps(found))
        """
    eager = run_python(listing)
    assert isinstance(eager, dict)
    names = [k for k in eager if "." not in k]
    assert len(names) > 700 and "ApiClient" in names  # every API and model class
    lazy = run_python(listing, WITH_INGRESSD="1", NAMES=json.dumps(names))
    assert lazy == eager


def test_a_name_the_library_does_not_define_is_an_attribute_error() -> None:
    outcome = run_python(
        """
        import json
        import ingressd
        import kubernetes_asyncio.client as c
        try:
            c.V1NoSuchThing
        except AttributeError as e:
            print(json.dumps(str(e)))
        """
    )
    assert outcome == "module 'kubernetes_asyncio.client' has no attribute 'V1NoSuchThing'"


def test_a_library_imported_before_ingressd_is_left_as_it_came() -> None:
    outcome = run_python(
        """
        import json
        import kubernetes_asyncio.client
        from ingressd import kubelib
        print(json.dumps([kubelib.install(), hasattr(kubernetes_asyncio.client, "__all__")]))
        """
    )
    assert outcome == [False, True]
