"""A bounded, thread-safe LRU cache measured in bytes, keyed by image content hash.

Used for the BLIP-2 captions, the SAM image embeddings and the CLIP embeddings, so a follow-up
turn on an image the worker has already seen runs none of those encoders again.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, Optional


def nbytes(value: Any) -> int:
    """Approximate memory of a cached value (tensors and arrays by their buffers)."""
    if hasattr(value, "nbytes"):  # numpy arrays, torch tensors (>= 2.1)
        return int(value.nbytes)
    if hasattr(value, "element_size") and hasattr(value, "nelement"):
        return int(value.element_size() * value.nelement())
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value) + 64
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values()) + 64
    return sys.getsizeof(value)


class ByteLRU:
    """Least-recently-used cache holding at most ``max_bytes`` (an item larger than that is not kept)."""

    def __init__(self, max_bytes: int, name: str = "cache"):
        self.max_bytes = max_bytes
        self.name = name
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Optional[Any]:
        """The cached value (counting a hit), or None (counting a miss)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            self.misses += 1
            return None

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value``; evict the least recently used items until it fits."""
        size = nbytes(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """``(value, hit)``: the cached value, or ``compute()`` stored and returned."""
        value = self.get(key)
        if value is not None:
            return value, True
        value = compute()
        self.put(key, value)
        return value, False

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> dict[str, int]:
        return {"items": len(self._items), "bytes": self._bytes, "max_bytes": self.max_bytes,
                "hits": self.hits, "misses": self.misses}
