async def test_two_users_chat(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(name="Family")
    await alice.invite(room, bob.user_id)
    await bob.join(room)
    first = await bob.sync()
    assert room in first["rooms"]["join"]
    event_id = await alice.send_text(room, "hello bob")
    second = await bob.sync(since=first["next_batch"], timeout=1000)
    timeline = second["rooms"]["join"][room]["timeline"]["events"]
    assert [e["event_id"] for e in timeline] == [event_id]
    assert timeline[0]["content"]["body"] == "hello bob"
