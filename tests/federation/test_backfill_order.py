"""The pure parts of backfill: the order a batch is written in, and tokens below zero."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.services.tokens import MIN_POSITION, pagination_token, parse_pagination_token

from federation.backfill import _oldest_first

V10 = KNOWN_ROOM_VERSIONS["10"]


def event(event_id: str, depth: int, prevs: list[str]) -> Event:
    return Event({"type": "m.room.message", "room_id": "!r:x", "sender": "@a:x", "content": {},
                  "depth": depth, "prev_events": prevs, "auth_events": []}, event_id, V10)


def test_prev_events_come_first_whatever_the_depths_say():
    # $b claims a lower depth than its prev $a: the edge decides.
    batch = {e.event_id: e for e in [
        event("$c", 3, ["$b", "$x"]), event("$b", 1, ["$a"]), event("$a", 2, ["$unknown"]),
        event("$x", 1, ["$a"]),
    ]}
    order = [e.event_id for e in _oldest_first(batch)]
    assert order.index("$a") < order.index("$b") < order.index("$c")
    assert order.index("$a") < order.index("$x") < order.index("$c")


def test_a_cycle_is_left_out():
    batch = {e.event_id: e for e in [event("$p", 1, ["$q"]), event("$q", 2, ["$p"]), event("$r", 1, [])]}
    assert [e.event_id for e in _oldest_first(batch)] == ["$r"]


@pytest.mark.parametrize("position", [0, 1, 17, -1, -123456, MIN_POSITION])
def test_pagination_tokens_round_trip_below_zero(position):
    assert parse_pagination_token(pagination_token(position)) == position


@pytest.mark.parametrize("token", ["b", "b-1", "s-5", "b" + "9" * 40, "b1_2"])
def test_bad_tokens_below_zero_are_refused(token):
    with pytest.raises(MatrixError):
        parse_pagination_token(token)
