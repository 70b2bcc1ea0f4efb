"""Facts worked out once per object that does not change (a pack's tuple of rules, a fitted
dtype's categories, a tuple of feature names), kept beside the object rather than in it.

Scoring a claim asks for the same few facts many times per call; building them each time
costs more than the claim. An entry is keyed by the object's identity and holds the object
itself, so while the entry lives the identity cannot be reused by another object; the cache
is bounded (cleared when full), since objects that come new every call would pile up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["by_identity"]


def by_identity(cache: dict, obj: object, name: str, build: Callable[[], Any], limit: int = 256) -> Any:
    """`build()` for `obj` and `name`, from `cache` when it was built for this very object."""
    key = (id(obj), name)
    got = cache.get(key)
    if got is None or got[0] is not obj:
        if len(cache) >= limit:
            cache.clear()
        got = cache[key] = (obj, build())
    return got[1]
