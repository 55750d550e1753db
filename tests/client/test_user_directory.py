"""User directory search: finding family members to start a chat with."""

import pytest

SEARCH = "/_matrix/client/v3/user_directory/search"


async def _set_name(user, name):
    r = await user.put(f"/_matrix/client/v3/profile/{user.user_id}/displayname", {"displayname": name})
    assert r.status == 200, r


async def test_finds_users_sharing_a_room_by_name_and_id(api):
    peter = await api.register("peter")
    mum = await api.register("mum")
    stranger = await api.register("stranger")
    await _set_name(mum, "Mum Smith")
    await _set_name(stranger, "Mumford Stranger")
    room = await peter.create_room(invite=[mum.user_id])
    await mum.join(room)

    r = await peter.post(SEARCH, {"search_term": "smith"})
    assert r.status == 200, r
    assert r["results"] == [{"user_id": mum.user_id, "display_name": "Mum Smith"}]
    assert r["limited"] is False
    # By user id too; the stranger shares no room with peter, so is not found.
    r = await peter.post(SEARCH, {"search_term": "mum"})
    assert [e["user_id"] for e in r["results"]] == [mum.user_id]


async def test_users_in_public_rooms_are_found(api):
    peter = await api.register("peter")
    gran = await api.register("gran")
    await gran.create_room(preset="public_chat", visibility="public")
    r = await peter.post(SEARCH, {"search_term": "gran"})
    assert [e["user_id"] for e in r["results"]] == [gran.user_id]


async def test_limit_and_limited(api):
    peter = await api.register("peter")
    room = await peter.create_room(preset="public_chat")
    for i in range(4):
        cousin = await api.register(f"cousin{i}")
        await cousin.join(room)
    r = await peter.post(SEARCH, {"search_term": "cousin", "limit": 3})
    assert [e["user_id"] for e in r["results"]] == [f"@cousin{i}:test.local" for i in range(3)]
    assert r["limited"] is True


@pytest.mark.parametrize("config_overrides", [{"user_directory": {"search_all_users": True}}])
async def test_search_all_users_finds_everyone_local(api):
    peter = await api.register("peter")
    await api.register("auntie")
    r = await peter.post(SEARCH, {"search_term": "aunt"})
    assert [e["user_id"] for e in r["results"]] == ["@auntie:test.local"]


async def test_bad_requests(api):
    peter = await api.register("peter")
    r = await peter.post(SEARCH, {})
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
    r = await peter.post(SEARCH, {"search_term": 5})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await peter.post(SEARCH, {"search_term": "x", "limit": -1})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await api.request("POST", SEARCH, {"search_term": "x"})
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"
    # LIKE wildcards in the term match only themselves.
    r = await peter.post(SEARCH, {"search_term": "%"})
    assert r.status == 200 and r["results"] == []
