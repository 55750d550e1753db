"""Client routes under both versions, each a literal path (homeserver/client/base.py
add_client_routes), with one pattern per route for metrics and the suspension rules."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from homeserver.client.base import route_pattern

SEND = "/_matrix/client/{version}/rooms/{room_id}/send/{event_type}/{txn_id}"


async def test_each_client_route_is_literal_under_both_versions(api):
    app = api.client.server.app
    handlers = []
    for version in ("v3", "r0"):
        request = make_mocked_request("PUT", f"/_matrix/client/{version}/rooms/!r:x/send/m.room.message/1", app=app)
        match = await app.router.resolve(request)
        assert match.get("room_id") == "!r:x"
        assert route_pattern(match.route.resource) == SEND
        handlers.append(match.handler)
    assert handlers[0] is handlers[1]
    # No client route is left behind a version pattern, where every request would try it.
    patterns = [r.canonical for r in app.router.resources()]
    assert not [p for p in patterns if p.startswith("/_matrix/client/{version")]
    assert "/_matrix/client/v3/sync" in patterns and "/_matrix/client/r0/sync" in patterns


async def test_an_old_r0_client_and_a_v3_client_reach_the_same_room(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    old = await alice.request("PUT", f"/_matrix/client/r0/rooms/{room_id}/send/m.room.message/old",
                              {"msgtype": "m.text", "body": "r0"})
    assert old.status == 200
    r = await alice.request("GET", f"/_matrix/client/v3/rooms/{room_id}/event/{old['event_id']}")
    assert r.status == 200 and r["content"]["body"] == "r0"
    # A known path with the wrong method is 405 under both versions (404 is for unknown paths).
    for version in ("v3", "r0"):
        assert (await alice.request("DELETE", f"/_matrix/client/{version}/sync")).status == 405
        assert (await alice.request("GET", f"/_matrix/client/{version}/no/such/thing")).status == 404
