"""A bounded map that drops its least recently used entry first: the one type behind every
in-process cache and memory of the server (credentials and grants, resolved run and model
experiments, failed-login windows, completed multipart uploads), so that each is bounded the
same way and none grows with what clients send.

Recency is what ``put`` and ``get`` say it is; ``peek`` and ``replace`` leave it alone, for a
user whose order means something else (the login windows keep the order they were opened in,
which is the order they close in).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most ``max_entries`` entries; 0 (or less) keeps nothing. Values are never None: None
    is the answer for a missing key. Not thread-safe: one event loop owns it."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value, now the most recently used; None if absent."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The value, its place in the order unchanged; None if absent."""
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recently used, then drop the oldest beyond the bound."""
        if self.max_entries <= 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def replace(self, key: K, value: V) -> None:
        """A new value for a key that is present, its place in the order kept (KeyError if it
        is absent: replacing cannot grow the map)."""
        if key not in self._entries:
            raise KeyError(key)
        self._entries[key] = value

    def pop(self, key: K) -> V | None:
        return self._entries.pop(key, None)

    def oldest(self) -> tuple[K, V] | None:
        """The least recently used entry, left in place; None when empty."""
        for item in self._entries.items():
            return item
        return None

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
