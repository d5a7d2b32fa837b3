"""The one bounded map (domain/lru.py) behind the caches and memories of the server, and the
completed-upload memory of the multipart handlers built on it. FailureWindows, its other user
with an order of its own, is covered in test_login_limits.py."""

from __future__ import annotations

import pytest

from metricgate.api.multipart import _Completions
from metricgate.domain.lru import Lru


def _filled(max_entries: int, keys: str) -> Lru[str, int]:
    lru: Lru[str, int] = Lru(max_entries)
    for i, key in enumerate(keys):
        lru.put(key, i)
    return lru


def test_put_drops_the_least_recently_used_beyond_the_bound() -> None:
    lru = _filled(3, "abc")
    assert lru.get("a") == 0  # a is now the most recent: b is the oldest
    lru.put("d", 3)
    assert len(lru) == 3
    assert [lru.peek(k) for k in "abcd"] == [0, None, 2, 3]
    lru.put("c", 20)  # an update is a use too
    lru.put("e", 4)
    assert [lru.peek(k) for k in "acde"] == [None, 20, 3, 4]


def test_peek_and_replace_leave_the_order_alone() -> None:
    lru = _filled(3, "abc")
    assert lru.peek("a") == 0
    lru.replace("a", 10)
    assert lru.oldest() == ("a", 10)
    lru.put("d", 3)
    assert lru.peek("a") is None
    assert lru.oldest() == ("b", 1)
    with pytest.raises(KeyError):
        lru.replace("a", 1)  # replacing never adds
    assert len(lru) == 3


def test_missing_keys_pop_clear_and_a_zero_bound() -> None:
    lru = _filled(2, "ab")
    assert lru.get("x") is None
    assert lru.pop("x") is None
    assert lru.pop("a") == 0
    assert lru.oldest() == ("b", 1)
    lru.clear()
    assert len(lru) == 0
    assert lru.oldest() is None
    nothing = _filled(0, "ab")
    assert len(nothing) == 0
    assert nothing.get("a") is None


def test_completed_uploads_are_remembered_up_to_the_bound() -> None:
    completions = _Completions(remember=2)
    answers = {upload: (f"dir/{upload}", ((1, "etag"),)) for upload in ("u1", "u2", "u3")}
    for upload, answer in answers.items():
        completions.lock(upload)
        completions.finished(upload, answer)
    assert not completions.already("u1", answers["u1"])  # the oldest went
    assert completions.already("u2", answers["u2"])
    assert completions.already("u3", answers["u3"])
    assert not completions.already("u3", ("dir/u3", ((1, "other"),)))  # another request
    completions.finished("u4", None)  # a failed completion is not remembered
    assert not completions.already("u4", ("dir/u4", ()))
    assert completions._locks == {}
