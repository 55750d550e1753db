"""Push rules API and the m.push_rules account data in /sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules-api
"""

from __future__ import annotations

import asyncio

V3 = "/_matrix/client/v3"
RULES = f"{V3}/pushrules/global"


def ids(rules: list[dict]) -> list[str]:
    return [r["rule_id"] for r in rules]


def push_rules_in(sync_body: dict) -> dict | None:
    for event in sync_body["account_data"]["events"]:
        if event["type"] == "m.push_rules":
            return event["content"]
    return None


async def test_get_all_rules_gives_the_defaults(api):
    alice = await api.register("alice")
    r = await alice.get(f"{V3}/pushrules/")
    assert r.status == 200
    rules = r["global"]
    assert set(rules) == {"override", "content", "room", "sender", "underride"}
    assert ids(rules["override"])[0] == ".m.rule.master"
    assert ".m.rule.is_user_mention" in ids(rules["override"])
    assert rules["content"] == [{
        "rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True, "pattern": "alice",
        "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}],
    }]
    assert ids(rules["underride"])[-1] == ".m.rule.encrypted"
    r = await alice.get(f"{RULES}/")
    assert r.status == 200 and r.body == rules
    r = await api.request("GET", f"{V3}/pushrules/")
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"


async def test_add_get_and_delete_a_rule(api):
    alice = await api.register("alice")
    body = {"pattern": "cake*lie", "actions": ["notify"]}
    r = await alice.put(f"{RULES}/content/nocake", body)
    assert r.status == 200 and r.body == {}
    r = await alice.get(f"{RULES}/content/nocake")
    assert r.status == 200
    assert r.body == {"rule_id": "nocake", "default": False, "enabled": True, "pattern": "cake*lie",
                      "actions": ["notify"]}
    assert (await alice.get(f"{RULES}/content/nocake/enabled")).body == {"enabled": True}
    assert (await alice.get(f"{RULES}/content/nocake/actions")).body == {"actions": ["notify"]}
    # The user's content rules come before the server's.
    rules = (await alice.get(f"{V3}/pushrules/"))["global"]
    assert ids(rules["content"]) == ["nocake", ".m.rule.contains_user_name"]
    # Another user does not see it.
    bob = await api.register("bob")
    r = await bob.get(f"{RULES}/content/nocake")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await alice.delete(f"{RULES}/content/nocake")
    assert r.status == 200 and r.body == {}
    r = await alice.get(f"{RULES}/content/nocake")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await alice.delete(f"{RULES}/content/nocake")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_rule_kinds_keep_their_own_fields(api):
    alice = await api.register("alice")
    room_id = "!somewhere:example.org"
    conditions = [{"kind": "event_match", "key": "content.body", "pattern": "beer"},
                  {"kind": "room_member_count", "is": "<=10"}]
    assert (await alice.put(f"{RULES}/override/beer", {"conditions": conditions, "actions": ["notify"]})).status == 200
    assert (await alice.put(f"{RULES}/underride/any", {"actions": []})).status == 200
    assert (await alice.put(f"{RULES}/room/{room_id}", {"actions": []})).status == 200
    assert (await alice.put(f"{RULES}/sender/@spam:example.org", {"actions": ["dont_notify"]})).status == 200
    rules = (await alice.get(f"{V3}/pushrules/"))["global"]
    # User override rules come after the master rule and before the other server rules.
    assert ids(rules["override"])[:3] == [".m.rule.master", "beer", ".m.rule.suppress_notices"]
    assert rules["override"][1]["conditions"] == conditions
    assert rules["underride"][0] == {"rule_id": "any", "default": False, "enabled": True, "actions": [],
                                     "conditions": []}
    assert rules["room"] == [{"rule_id": room_id, "default": False, "enabled": True, "actions": []}]
    # The historical dont_notify action is stripped.
    assert rules["sender"] == [{"rule_id": "@spam:example.org", "default": False, "enabled": True, "actions": []}]


async def test_before_and_after_order_user_rules(api):
    alice = await api.register("alice")

    async def add(rule_id: str, **params: str) -> None:
        r = await alice.put(f"{RULES}/override/{rule_id}", {"actions": ["notify"]}, params=params)
        assert r.status == 200, r

    async def order() -> list[str]:
        rules = (await alice.get(f"{V3}/pushrules/"))["global"]["override"]
        return [i for i in ids(rules) if not i.startswith(".")]

    await add("a")
    await add("b")  # a new rule without before/after is the most important
    assert await order() == ["b", "a"]
    await add("c", after="a")
    assert await order() == ["b", "a", "c"]
    await add("d", before="a")
    assert await order() == ["b", "d", "a", "c"]
    # Both given: before wins.
    await add("e", before="b", after="c")
    assert await order() == ["e", "b", "d", "a", "c"]
    # Moving an existing rule; updating it without before/after keeps its place.
    await add("e", after="c")
    assert await order() == ["b", "d", "a", "c", "e"]
    r = await alice.put(f"{RULES}/override/d", {"actions": [], "conditions": []})
    assert r.status == 200
    assert await order() == ["b", "d", "a", "c", "e"]
    assert (await alice.get(f"{RULES}/override/d/actions")).body == {"actions": []}


async def test_bad_before_and_after(api):
    alice = await api.register("alice")
    assert (await alice.put(f"{RULES}/override/a", {"actions": []})).status == 200
    for params in ({"before": "nosuchrule"}, {"after": "nosuchrule"}, {"before": ".m.rule.master"},
                   {"after": ".m.rule.suppress_notices"}):
        r = await alice.put(f"{RULES}/override/new", {"actions": []}, params=params)
        assert r.status == 400 and r.errcode == "M_UNKNOWN", (params, r)
    # A rule of another kind is no anchor either.
    assert (await alice.put(f"{RULES}/underride/u", {"actions": []})).status == 200
    r = await alice.put(f"{RULES}/override/new", {"actions": []}, params={"before": "u"})
    assert r.status == 400 and r.errcode == "M_UNKNOWN"
    r = await alice.get(f"{RULES}/override/new")
    assert r.status == 404


async def test_invalid_rules_are_refused_and_store_nothing(api, services):
    alice = await api.register("alice")
    before = (await alice.get(f"{V3}/pushrules/")).body
    cases = [
        ("PUT", f"{RULES}/badkind/x", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{V3}/pushrules/device/override/x", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/.mine", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/.m.rule.master", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/a%5Cb", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/a%2Fb", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/{'x' * 256}", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/x", {}, 400, "M_MISSING_PARAM"),
        ("PUT", f"{RULES}/override/x", {"actions": "notify"}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/x", {"actions": ["shout"]}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/x", {"actions": [{"tweak": "sound"}]}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/x", {"actions": [], "conditions": {}}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/x", {"actions": [], "conditions": [{"key": "type"}]}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/content/x", {"actions": []}, 400, "M_MISSING_PARAM"),
        ("PUT", f"{RULES}/content/x", {"actions": [], "pattern": 5}, 400, "M_INVALID_PARAM"),
        ("GET", f"{RULES}/badkind/x", None, 400, "M_INVALID_PARAM"),
        ("GET", f"{RULES}/override/nosuchrule", None, 404, "M_NOT_FOUND"),
        ("GET", f"{RULES}/underride/.m.rule.master", None, 404, "M_NOT_FOUND"),
        ("PUT", f"{RULES}/override/nosuchrule/enabled", {"enabled": False}, 404, "M_NOT_FOUND"),
        ("PUT", f"{RULES}/override/.m.rule.nosuchrule/enabled", {"enabled": False}, 404, "M_NOT_FOUND"),
        ("PUT", f"{RULES}/override/.m.rule.master/enabled", {"enabled": "yes"}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/.m.rule.master/enabled", {}, 400, "M_MISSING_PARAM"),
        ("PUT", f"{RULES}/override/nosuchrule/actions", {"actions": []}, 404, "M_NOT_FOUND"),
        ("PUT", f"{RULES}/override/.m.rule.master/actions", {"actions": [7]}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/.m.rule.master/actions", {}, 400, "M_MISSING_PARAM"),
        ("GET", f"{RULES}/override/nosuchrule/enabled", None, 404, "M_NOT_FOUND"),
        ("GET", f"{RULES}/override/nosuchrule/actions", None, 404, "M_NOT_FOUND"),
        ("DELETE", f"{RULES}/override/.m.rule.master", None, 400, "M_INVALID_PARAM"),
        ("DELETE", f"{RULES}/underride/.m.rule.nosuchrule", None, 404, "M_NOT_FOUND"),
    ]
    for method, path, body, status, errcode in cases:
        r = await alice.request(method, path, body)
        assert (r.status, r.errcode) == (status, errcode), (method, path, body, r)
        assert isinstance(r.body.get("error"), str)
    r = await alice.request("PUT", f"{RULES}/override/x", raw=b"not json")
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    assert (await alice.get(f"{V3}/pushrules/")).body == before
    assert await services.db.fetchval("SELECT count(*) FROM push_rules") == 0
    assert await services.db.fetchval("SELECT count(*) FROM push_rule_defaults_changed") == 0


async def test_enable_and_change_actions_of_default_and_user_rules(api):
    alice = await api.register("alice")
    master = f"{RULES}/override/.m.rule.master"
    assert (await alice.get(f"{master}/enabled")).body == {"enabled": False}
    assert (await alice.put(f"{master}/enabled", {"enabled": True})).status == 200
    assert (await alice.get(f"{master}/enabled")).body == {"enabled": True}
    message = f"{RULES}/underride/.m.rule.message"
    new_actions = ["notify", {"set_tweak": "sound", "value": "bing"}]
    assert (await alice.put(f"{message}/actions", {"actions": new_actions})).status == 200
    r = await alice.get(message)
    assert r.body == {"rule_id": ".m.rule.message", "default": True, "enabled": True, "actions": new_actions,
                      "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}]}
    # Changing one field of a server rule keeps the other change.
    assert (await alice.put(f"{message}/enabled", {"enabled": False})).status == 200
    r = await alice.get(message)
    assert r["enabled"] is False and r["actions"] == new_actions
    # Other users keep the defaults.
    bob = await api.register("bob")
    assert (await bob.get(f"{master}/enabled")).body == {"enabled": False}
    # A user rule: disabled, it stays disabled when its actions are replaced through PUT.
    assert (await alice.put(f"{RULES}/sender/@x:example.org", {"actions": ["notify"]})).status == 200
    assert (await alice.put(f"{RULES}/sender/@x:example.org/enabled", {"enabled": False})).status == 200
    assert (await alice.put(f"{RULES}/sender/@x:example.org", {"actions": []})).status == 200
    r = await alice.get(f"{RULES}/sender/@x:example.org")
    assert r["enabled"] is False and r["actions"] == []
    assert (await alice.put(f"{RULES}/sender/@x:example.org/actions", {"actions": ["notify"]})).status == 200
    assert (await alice.get(f"{RULES}/sender/@x:example.org/actions")).body == {"actions": ["notify"]}
    # Server rules cannot be deleted, only disabled.
    r = await alice.delete(master)
    assert r.status == 400
    assert (await alice.get(master)).status == 200


async def test_sync_carries_push_rules(api):
    alice = await api.register("alice")
    first = await alice.sync()
    content = push_rules_in(first.body)
    assert content is not None
    assert content == {"global": (await alice.get(f"{V3}/pushrules/"))["global"]}
    since = first["next_batch"]
    # Nothing changed: an incremental sync does not repeat them.
    assert push_rules_in((await alice.sync(since)).body) is None
    r = await alice.put(f"{RULES}/override/.m.rule.master/enabled", {"enabled": True})
    assert r.status == 200
    second = await alice.sync(since)
    content = push_rules_in(second.body)
    assert content is not None and content["global"]["override"][0]["enabled"] is True
    # The server keeps the account data too, as clients may read it there.
    r = await alice.get(f"{V3}/user/{alice.user_id}/account_data/m.push_rules")
    assert r.status == 200 and r.body == content
    # And clients may not write it there.
    r = await alice.put(f"{V3}/user/{alice.user_id}/account_data/m.push_rules", {"global": {}})
    assert r.status == 405


async def test_rule_change_wakes_a_waiting_sync(api):
    alice = await api.register("alice")
    since = (await alice.sync())["next_batch"]
    waiting = asyncio.create_task(alice.sync(since, timeout=30000))
    await asyncio.sleep(0)  # let the long poll start before the change
    r = await alice.put(f"{RULES}/room/!quiet:example.org", {"actions": []})
    assert r.status == 200
    woken = await asyncio.wait_for(waiting, 10)
    content = push_rules_in(woken.body)
    assert content is not None and ids(content["global"]["room"]) == ["!quiet:example.org"]


async def test_account_data_filter_applies_to_push_rules(api):
    alice = await api.register("alice")
    r = await alice.sync(filter='{"account_data": {"not_types": ["m.push_rules"]}}')
    assert push_rules_in(r.body) is None
