"""kubernetes-asyncio, each class loaded when first used rather than all at import.

The library's package ``__init__`` files import every API class and every model class it has
(over 60 API modules and 750 model modules: 63 MB of a controller's ~100 MB before it holds a
single object, on Python 3.11).  ingressd uses four API classes, ``ApiClient``, ``Configuration``
and the handful of models a Lease read deserializes into; the informers read JSON themselves.

``install()`` (called by ``ingressd/__init__.py``, so before any ingressd module can import the
library) puts stand-ins for the four eager packages in ``sys.modules``:

    kubernetes_asyncio                   client, config, watch, ... -> that subpackage
    kubernetes_asyncio.client            ApiClient, CoreV1Api, V1Lease, ... -> its module
    kubernetes_asyncio.client.api        CoreV1Api, ... -> its module
    kubernetes_asyncio.client.models     V1Lease, ... -> its module

Each is a package with the real directory as its ``__path__`` (submodules import as usual) and
a module ``__getattr__`` that resolves a name the way the real ``__init__`` would: the
``from <module> import <Name>`` lines of that ``__init__`` are read (not run) once, on the
first lookup, and the one module that defines the name is imported.  ``ApiClient``'s
deserializer looks model classes up with ``getattr(kubernetes_asyncio.client.models, name)``
and gets them the same way.  Nothing changes when the library was imported before
``install()`` (the real packages are kept) or is not installed.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from pathlib import Path

__all__ = ["LAZY_PACKAGES", "install"]

ROOT = "kubernetes_asyncio"

#: The packages whose ``__init__`` imports what they list; each gets a stand-in.
LAZY_PACKAGES = (ROOT, f"{ROOT}.client", f"{ROOT}.client.api", f"{ROOT}.client.models")

#: ``from kubernetes_asyncio.x.y import Name`` and ``import kubernetes_asyncio.x as name``.
_FROM_IMPORT = re.compile(rf"^from ({ROOT}(?:\.\w+)+) import (\w+)\s*$", re.MULTILINE)
_IMPORT_AS = re.compile(rf"^import ({ROOT}(?:\.\w+)+) as (\w+)\s*$", re.MULTILINE)


class _Names:
    """Name -> defining module, read from one package's ``__init__.py`` on first use."""

    def __init__(self, init_file: Path) -> None:
        self._init_file = init_file
        self._modules: dict[str, tuple[str, bool]] | None = None

    def lookup(self, name: str) -> tuple[str, bool] | None:
        """``(module, is_the_module_itself)`` for ``name``, or ``None`` when the real
        ``__init__`` does not define it."""
        if self._modules is None:
            text = self._init_file.read_text(encoding="utf-8")
            modules = {n: (m, False) for m, n in _FROM_IMPORT.findall(text)}
            modules.update({n: (m, True) for m, n in _IMPORT_AS.findall(text)})
            self._modules = modules
        return self._modules.get(name)


def _stand_in(name: str, directory: Path) -> types.ModuleType:
    init_file = directory / "__init__.py"
    spec = importlib.machinery.ModuleSpec(name, None, origin=str(init_file), is_package=True)
    spec.submodule_search_locations = [str(directory)]
    module = types.ModuleType(name, f"Stand-in for {name}: see ingressd.kubelib.")
    module.__spec__ = spec
    module.__path__ = [str(directory)]
    module.__file__ = str(init_file)
    module.__package__ = name
    names = _Names(init_file)

    def __getattr__(attribute: str) -> object:
        found = names.lookup(attribute)
        if found is None:
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        source, whole = found
        imported = importlib.import_module(source)
        value = imported if whole else getattr(imported, attribute)
        setattr(module, attribute, value)  # the next lookup is a plain attribute read
        return value

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def install() -> bool:
    """Put the stand-ins in place; ``False`` (and nothing done) when the library is already
    imported or not installed."""
    if ROOT in sys.modules:
        return False
    spec = importlib.util.find_spec(ROOT)
    if spec is None or not spec.submodule_search_locations:
        return False
    top = Path(next(iter(spec.submodule_search_locations)))
    for name in LAZY_PACKAGES:
        module = _stand_in(name, top.joinpath(*name.split(".")[1:]))
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    return True
