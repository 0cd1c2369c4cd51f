"""The metadata text cache: least recently used dropped first, bounded by characters."""

from __future__ import annotations

from dicomweb_server.services.retrieve import TextCache


def test_least_recently_used_texts_go_first() -> None:
    cache = TextCache(max_chars=10)
    cache.put_many({"a": "xxxx", "b": "yyyy"})
    assert cache.get_many(["a"]) == {"a": "xxxx"}  # a is now the most recent
    cache.put_many({"c": "zzzz"})  # 12 chars: b, the least recent, goes
    assert cache.get_many(["a", "b", "c"]) == {"a": "xxxx", "c": "zzzz"}


def test_a_text_larger_than_the_cache_is_not_kept() -> None:
    cache = TextCache(max_chars=3)
    cache.put_many({"big": "xxxx", "small": "yy"})
    assert cache.get_many(["big", "small"]) == {"small": "yy"}
