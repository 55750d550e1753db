"""StreamChangeCache: which rooms maybe changed since a position, without a query."""

from __future__ import annotations

from homeserver.storage.streams import StreamChangeCache


def test_changed_among_answers_as_maybe_changed_since_for_each():
    cache = StreamChangeCache(start=10)
    cache.record("!a", 12)
    cache.record("!b", 15)
    cache.record("!a", 11)  # another process's older change, told late: the newer stands
    rooms = ["!c", "!b", "!a", "!d"]
    for position in (9, 10, 11, 12, 14, 15, 20):
        expected = [r for r in rooms if cache.maybe_changed_since(r, position)]
        assert cache.changed_among(rooms, position) == expected
    assert cache.changed_among(rooms, 11) == ["!b", "!a"]
    assert cache.changed_among(rooms, 12) == ["!b"]
    # Before what the cache knows, every room maybe changed.
    assert cache.changed_among(iter(rooms), 9) == rooms


def test_a_token_older_than_the_horizon_is_answered_maybe():
    cache = StreamChangeCache(start=0, max_entities=4)
    for n in range(1, 7):
        cache.record(f"!r{n}", n)
    # The oldest half was dropped and the horizon raised past it.
    assert cache.changed_among(["!r1", "!r6"], 1) == ["!r1", "!r6"]
    assert cache.changed_among(["!r1", "!r6"], 5) == ["!r6"]
