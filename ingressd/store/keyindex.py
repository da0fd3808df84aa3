"""A compact reverse index: target -> the Ingress keys that refer to it.

    Store (service/secret -> Ingresses) and the build cache (host/service -> Ingresses)
        --add()/discard()--> {target: key | {key, ...}} --members()--> keys

Most targets have exactly one user, so an entry is the bare key until a second one arrives; at
10,000 Ingresses that saves a set per entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ingressd.model import ObjectKey

#: One key, or a set of two or more.
Entry = ObjectKey | set[ObjectKey]


def add(index: dict[Any, Entry], target: Any, key: ObjectKey) -> None:
    found = index.get(target)
    if found is None:
        index[target] = key
    elif isinstance(found, set):
        found.add(key)
    elif found != key:
        index[target] = {found, key}


def discard(index: dict[Any, Entry], target: Any, key: ObjectKey) -> None:
    found = index.get(target)
    if found is None:
        return
    if isinstance(found, set):
        found.discard(key)
        if len(found) == 1:
            index[target] = next(iter(found))
    elif found == key:
        del index[target]


def members(index: dict[Any, Entry], target: Any) -> Iterable[ObjectKey]:
    found = index.get(target)
    if found is None:
        return ()
    return found if isinstance(found, set) else (found,)
