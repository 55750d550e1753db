"""POST /search over room events, on the full-text index of migrations/0017_search.sql.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-search
"""

from __future__ import annotations

from typing import Any

from homeserver.storage.search import SearchQuery, SearchStore
from tests.client.sync_helpers import V3, leave, send_event, send_state
from tests.helpers import User


async def search(user: User, term: str, next_batch: str | None = None, **criteria: Any):
    params = {"next_batch": next_batch} if next_batch is not None else None
    return await user.post(f"{V3}/search", {
        "search_categories": {"room_events": {"search_term": term, **criteria}}}, params=params)


def found(r) -> list[str]:
    assert r.status == 200, r
    return [res["result"]["event_id"] for res in r["search_categories"]["room_events"]["results"]]


def room_events(r) -> dict[str, Any]:
    assert r.status == 200, r
    return r["search_categories"]["room_events"]


async def test_found_by_word_with_count_and_highlights(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    hit = await alice.send_text(room, "The Kettle is boiling")
    await alice.send_text(room, "nothing to see here")
    other = await alice.send_text(room, "kettle again")
    r = room_events(await search(alice, "kettle"))
    assert {res["result"]["event_id"] for res in r["results"]} == {hit, other}
    assert r["count"] == 2
    assert r["highlights"] == ["kettle"]
    first = r["results"][0]
    assert isinstance(first["rank"], float) and first["rank"] > 0
    assert first["result"]["room_id"] == room
    assert first["result"]["content"]["body"] in ("The Kettle is boiling", "kettle again")
    assert "next_batch" not in r
    # Every word must be there; a quoted phrase, an excluded word and "or" are understood.
    assert found(await search(alice, "kettle boiling")) == [hit]
    assert found(await search(alice, '"kettle is"')) == [hit]
    assert found(await search(alice, "kettle -boiling")) == [other]
    assert set(found(await search(alice, "boiling or again"))) == {hit, other}
    assert room_events(await search(alice, "kettle -boiling"))["highlights"] == ["kettle"]
    assert room_events(await search(alice, "absent"))["results"] == []
    # Punctuation alone seeks nothing and finds nothing.
    empty = room_events(await search(alice, "!!!"))
    assert empty["results"] == [] and empty["count"] == 0 and empty["highlights"] == []


async def test_not_found_in_rooms_the_user_cannot_see(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    private = await alice.create_room()
    await alice.send_text(private, "secret pancake")
    assert found(await search(bob, "pancake")) == []
    # Bob left before the message: the room is no longer searched for him.
    shared = await alice.create_room(preset="public_chat")
    await bob.join(shared)
    await bob.send_text(shared, "waffle before leaving")
    await leave(bob, shared)
    await alice.send_text(shared, "waffle after bob left")
    assert found(await search(bob, "waffle")) == []
    assert len(found(await search(alice, "waffle"))) == 2


async def test_history_visibility_joined_hides_what_came_before_the_join(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await send_state(alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    await alice.send_text(room, "crumpet before bob")
    await bob.join(room)
    after = await alice.send_text(room, "crumpet after bob")
    assert found(await search(bob, "crumpet")) == [after]
    assert len(found(await search(alice, "crumpet"))) == 2


async def test_order_by_recent_and_rank(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    strong = await alice.send_text(room, "tea tea tea")
    weak = await alice.send_text(room, "tea and a long sentence about many other things besides")
    newest = await alice.send_text(room, "some tea")
    assert found(await search(alice, "tea", order_by="recent")) == [newest, weak, strong]
    ranked = room_events(await search(alice, "tea", order_by="rank"))
    assert [res["result"]["event_id"] for res in ranked["results"]][0] == strong
    ranks = [res["rank"] for res in ranked["results"]]
    assert ranks == sorted(ranks, reverse=True)


async def test_filter_by_room_sender_and_limit(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    one = await alice.create_room(preset="public_chat")
    two = await alice.create_room(preset="public_chat")
    await bob.join(one)
    a1 = await alice.send_text(one, "scone")
    b1 = await bob.send_text(one, "scone")
    a2 = await alice.send_text(two, "scone")
    assert set(found(await search(alice, "scone"))) == {a1, b1, a2}
    assert set(found(await search(alice, "scone", filter={"rooms": [one]}))) == {a1, b1}
    assert found(await search(alice, "scone", filter={"not_rooms": [one]})) == [a2]
    assert found(await search(alice, "scone", filter={"senders": [bob.user_id]})) == [b1]
    assert set(found(await search(alice, "scone", filter={"not_senders": [bob.user_id]}))) == {a1, a2}
    limited = room_events(await search(alice, "scone", order_by="recent", filter={"limit": 2}))
    assert [res["result"]["event_id"] for res in limited["results"]] == [a2, b1]
    assert limited["count"] == 3 and "next_batch" in limited
    # A room the user is not in stays out even when named in the filter.
    mine = await bob.create_room()
    await bob.send_text(mine, "scone")
    assert set(found(await search(alice, "scone", filter={"rooms": [mine, one]}))) == {a1, b1}


async def test_next_batch_pages_through_every_result_once(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    sent = [await alice.send_text(room, "bagel " + "x " * i) for i in range(7)]
    for order in ("recent", "rank"):
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            r = room_events(await search(alice, "bagel", token, order_by=order, filter={"limit": 3}))
            seen += [res["result"]["event_id"] for res in r["results"]]
            assert r["count"] == 7
            pages += 1
            token = r.get("next_batch")
            if token is None:
                break
        assert sorted(seen) == sorted(sent) and len(seen) == 7, order
        assert pages == 3
        if order == "recent":
            assert seen == sent[::-1]
    # A token of one order does not serve the other.
    r = room_events(await search(alice, "bagel", order_by="recent", filter={"limit": 3}))
    wrong = await search(alice, "bagel", r["next_batch"], order_by="rank")
    assert wrong.status == 400 and wrong.errcode == "M_INVALID_PARAM"
    bad = await search(alice, "bagel", "not-a-token")
    assert bad.status == 400 and bad.errcode == "M_INVALID_PARAM"


async def test_event_context_with_profiles(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    await alice.put(f"{V3}/profile/{alice.user_id}/displayname", {"displayname": "Alice A"})
    before = [await alice.send_text(room, f"before {i}") for i in range(3)]
    hit = await alice.send_text(room, "muffin")
    after = [await alice.send_text(room, f"after {i}") for i in range(3)]
    r = room_events(await search(alice, "muffin", event_context={
        "before_limit": 2, "after_limit": 1, "include_profile": True}))
    [result] = r["results"]
    context = result["context"]
    assert [e["event_id"] for e in context["events_before"]] == [before[2], before[1]]
    assert [e["event_id"] for e in context["events_after"]] == [after[0]]
    assert context["profile_info"][alice.user_id]["displayname"] == "Alice A"
    assert isinstance(context["start"], str) and isinstance(context["end"], str)
    # The tokens go on with /messages.
    more = await alice.get(f"{V3}/rooms/{room}/messages", params={"from": context["end"], "dir": "f"})
    assert [e["event_id"] for e in more["chunk"]] == after[1:]
    # Without event_context there is no context; without include_profile no profile_info.
    assert "context" not in room_events(await search(alice, "muffin"))["results"][0]
    plain = room_events(await search(alice, "muffin", event_context={}))["results"][0]["context"]
    assert "profile_info" not in plain and len(plain["events_after"]) == 3


async def test_groupings_and_include_state(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    one = await alice.create_room(preset="public_chat", name="Room one")
    two = await alice.create_room()
    await bob.join(one)
    a1 = await alice.send_text(one, "donut")
    b1 = await bob.send_text(one, "donut")
    a2 = await alice.send_text(two, "donut")
    r = room_events(await search(alice, "donut", order_by="recent", include_state=True,
                                 groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]}))
    by_room = r["groups"]["room_id"]
    assert by_room[two]["results"] == [a2] and by_room[one]["results"] == [b1, a1]
    assert by_room[two]["order"] < by_room[one]["order"]
    by_sender = r["groups"]["sender"]
    assert by_sender[alice.user_id]["results"] == [a2, a1] and by_sender[bob.user_id]["results"] == [b1]
    assert set(r["state"]) == {one, two}
    assert {"m.room.name", "m.room.create"} <= {e["type"] for e in r["state"][one]}
    assert "groups" not in room_events(await search(alice, "donut"))


async def test_names_topics_and_keys(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    name = await send_state(alice, room, "m.room.name", {"name": "Gardening club"})
    topic = await send_state(alice, room, "m.room.topic", {"topic": "tomatoes and gardening"})
    body = await alice.send_text(room, "my gardening tips")
    assert set(found(await search(alice, "gardening"))) == {name, topic, body}
    assert found(await search(alice, "gardening", keys=["content.name"])) == [name]
    assert found(await search(alice, "gardening", keys=["content.topic"])) == [topic]
    assert set(found(await search(alice, "gardening", keys=["content.body", "content.name"]))) == {name, body}
    # A filter on types narrows the search too.
    assert found(await search(alice, "gardening", filter={"types": ["m.room.topic"]})) == [topic]
    assert found(await search(alice, "gardening", filter={"not_types": ["m.room.*"]})) == []


async def test_redacted_ignored_and_encrypted_are_not_found(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    gone = await alice.send_text(room, "pretzel oops")
    r = await alice.put(f"{V3}/rooms/{room}/redact/{gone}/r1", {})
    assert r.status == 200, r
    kept = await alice.send_text(room, "pretzel fine")
    from_bob = await bob.send_text(room, "pretzel from bob")
    assert set(found(await search(alice, "pretzel"))) == {kept, from_bob}
    r = await alice.put(f"{V3}/user/{alice.user_id}/account_data/m.ignored_user_list",
                        {"ignored_users": {bob.user_id: {}}})
    assert r.status == 200, r
    assert found(await search(alice, "pretzel")) == [kept]
    # The server cannot read encrypted messages: nothing of them is found.
    secret = await alice.create_room()
    await send_state(alice, secret, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
    await send_event(alice, secret, "m.room.encrypted", {
        "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "pretzel", "sender_key": "k",
        "session_id": "s", "device_id": "D"}, "e1")
    assert found(await search(alice, "pretzel", filter={"rooms": [secret]})) == []


async def test_odd_content_neither_breaks_writes_nor_search(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    nul = await send_event(alice, room, "m.room.message", {"msgtype": "m.text", "body": "nul\u0000byte churro"}, "n1")
    await send_event(alice, room, "m.room.message", {"msgtype": "m.text", "body": 42}, "n2")
    await send_event(alice, room, "m.room.message", {"msgtype": "m.text", "body": ["churro"]}, "n3")
    await send_state(alice, room, "m.room.topic", {"topic": {"churro": True}})
    assert found(await search(alice, "churro")) == [nul]


async def test_bad_input_is_refused_clearly(api):
    alice = await api.register("alice")

    async def post(body: Any):
        return await alice.post(f"{V3}/search", body)

    cases = [
        ({}, "M_MISSING_PARAM"),
        ({"search_categories": []}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": []}}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {}}}, "M_MISSING_PARAM"),
        ({"search_categories": {"room_events": {"search_term": 5}}}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {"search_term": "x", "keys": ["content.url"]}}}, "M_INVALID_PARAM"),
        ({"search_categories": {"room_events": {"search_term": "x", "keys": "content.body"}}}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {"search_term": "x", "order_by": "oldest"}}}, "M_INVALID_PARAM"),
        ({"search_categories": {"room_events": {"search_term": "x", "filter": {"limit": 0}}}}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {"search_term": "x", "filter": {"rooms": "!a:b"}}}}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {"search_term": "x", "event_context": {"before_limit": -1}}}},
         "M_INVALID_PARAM"),
        ({"search_categories": {"room_events": {"search_term": "x", "event_context": {"after_limit": "3"}}}},
         "M_BAD_JSON"),
        ({"search_categories": {"room_events": {"search_term": "x", "groupings": {"group_by": [{"key": "type"}]}}}},
         "M_INVALID_PARAM"),
        ({"search_categories": {"room_events": {"search_term": "x", "include_state": "yes"}}}, "M_BAD_JSON"),
    ]
    for body, errcode in cases:
        r = await post(body)
        assert (r.status, r.errcode) == (400, errcode), (body, r)
    r = await alice.request("POST", f"{V3}/search", raw=b"not json")
    assert (r.status, r.errcode) == (400, "M_NOT_JSON")
    # Unknown categories are ignored; no token is a 401.
    r = await post({"search_categories": {"room_tags": {}}})
    assert r.status == 200 and r["search_categories"] == {}
    r = await api.request("POST", f"{V3}/search", {"search_categories": {}})
    assert r.status == 401


async def test_search_uses_the_full_text_index(services):
    # A room of 3000 messages: the planner picks the GIN index for a word few of them hold.
    await services.db.execute(
        "INSERT INTO events (event_id, room_id, stream_ordering, depth, type, sender, origin_server_ts, json)"
        " SELECT '$e' || n, '!big:test', 100000 + n, n, 'm.room.message', '@a:test', n,"
        " json_build_object('content', json_build_object('body', CASE WHEN n % 1000 = 0 THEN 'rare word'"
        " ELSE 'common words ' || n END))::text FROM generate_series(1, 3000) AS n")
    await services.db.execute("ANALYZE events")
    for order_by_rank in (True, False):
        query = SearchQuery(term="rare", room_ids=["!big:test"], types=["m.room.message"],
                            order_by_rank=order_by_rank)
        plan = await SearchStore(services.db).explain(query)
        assert "events_search" in plan, plan
        hits = await SearchStore(services.db).search(query, None, 10)
        assert sorted(h.event_id for h in hits) == ["$e1000", "$e2000", "$e3000"]


async def test_pages_skip_what_history_visibility_hides(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await send_state(alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    await bob.join(room)
    seen_by_bob = [await alice.send_text(room, f"brioche {i}") for i in range(3)]
    await leave(bob, room)
    [await alice.send_text(room, f"brioche hidden {i}") for i in range(4)]
    await bob.join(room)
    later = await alice.send_text(room, "brioche later")
    # The hidden ones (sent while bob was away) sit between the visible ones in the order.
    got: list[str] = []
    token = None
    while True:
        r = room_events(await search(bob, "brioche", token, order_by="recent", filter={"limit": 2}))
        got += [res["result"]["event_id"] for res in r["results"]]
        token = r.get("next_batch")
        if token is None:
            break
    assert got == [later, *seen_by_bob[::-1]]
