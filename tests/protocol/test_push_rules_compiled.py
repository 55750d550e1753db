"""Compiled push rules (push_rules.compile_rules) decide exactly as push_rules.evaluate."""

from __future__ import annotations

import itertools

from homeserver.protocol import push_rules as p

USER = "@bob:example.org"
RULES = p.ruleset(USER, [
    p.UserRule("override", "secret", ["notify"],
               conditions=[{"kind": "event_match", "key": "content.body", "pattern": "sec*t"}]),
    p.UserRule("override", "typed", ["notify"], conditions=[
        {"kind": "event_match", "key": "content.msgtype", "pattern": "m.emote"},
        {"kind": "event_match", "key": "type", "pattern": "m.room.message"}]),
    p.UserRule("override", "wild", ["notify"], conditions=[{"kind": "event_match", "key": "type", "pattern": "org.*"}]),
    p.UserRule("content", "coffee", ["notify", {"set_tweak": "highlight"}], pattern="coffee"),
    p.UserRule("room", "!quiet:example.org", ["dont_notify"]),
    p.UserRule("sender", "@spam:example.org", []),
    p.UserRule("underride", "odd", ["notify"], conditions=[{"kind": "unknown_kind"}]),
], {("override", ".m.rule.suppress_notices"): p.DefaultRuleChange(enabled=False)})

BODIES = ["hello", "Bob here", "@room now", "bob", "coffee?", "secret", "SECRET", "\u212a", None]
TYPES = ["m.room.message", "M.ROOM.MESSAGE", "m.room.member", "m.reaction", "m.call.invite", "m.room.encrypted",
         "m.room.tombstone", "org.example", "m.room.messag\u212a", 5]
CONTENTS = [{}, {"msgtype": "m.notice"}, {"msgtype": "m.emote"}, {"m.mentions": {}}, {"m.mentions": {"room": True}},
            {"m.mentions": {"user_ids": [USER]}}, {"m.relates_to": {"rel_type": "m.replace"}},
            {"membership": "invite"}]


def test_compiled_rules_decide_as_evaluate():
    compiled = p.compile_rules(RULES)
    count = 0
    for body, event_type, extra, sender, room_id, state_key in itertools.product(
            BODIES, TYPES, CONTENTS, ["@alice:example.org", "@spam:example.org"],
            ["!r:example.org", "!quiet:example.org"], [None, "", USER]):
        content = dict(extra)
        if body is not None:
            content["body"] = body
        event = {"type": event_type, "sender": sender, "room_id": room_id, "content": content}
        if state_key is not None:
            event["state_key"] = state_key
        for members, name, level in ((2, "Bob", 0), (3, None, 100)):
            room = p.RoomContext(user_id=USER, member_count=members, display_name=name,
                                 sender_power_level=level, notification_levels={})
            assert compiled(event, room) == p.evaluate(RULES, event, room), event
            count += 1
    assert count > 10000


def _rule(rule_id: str, conditions: list, actions: list | None = None) -> dict:
    return {"rule_id": rule_id, "default": False, "enabled": True, "conditions": conditions,
            "actions": actions if actions is not None else ["notify", {"set_tweak": "tag", "value": rule_id}]}


# Rules on the room (member count, the sender's permission, the display name) and on the
# type, compiled into their own functions: each rule gives its own actions, so that the
# decision shows which rule matched.
ROOM_RULES = {
    "override": [
        _rule("two types", [{"kind": "event_match", "key": "type", "pattern": "m.room.message"},
                            {"kind": "event_match", "key": "type", "pattern": "m.reaction"}]),
        _rule("custom level", [{"kind": "sender_notification_permission", "key": "custom"},
                               {"kind": "event_match", "key": "type", "pattern": "M.Room.Message"}]),
        _rule("no key", [{"kind": "sender_notification_permission"}]),
        _rule("name", [{"kind": "contains_display_name"}, {"kind": "room_member_count", "is": ">=3"}]),
        _rule("bad count", [{"kind": "room_member_count", "is": "x"}]),
        _rule("not a string", [{"kind": "room_member_count", "is": 2}]),
    ],
    "content": [],
    "room": [],
    "sender": [],
    "underride": [
        _rule("few", [{"kind": "room_member_count", "is": "<3"}, {"kind": "event_match", "key": "type",
                                                                  "pattern": "m.room.message"}]),
        _rule("exactly", [{"kind": "room_member_count", "is": "==4"}]),
        _rule("room level", [{"kind": "sender_notification_permission", "key": "room"}]),
        _rule("only a type", [{"kind": "event_match", "key": "type", "pattern": "m.reaction"}]),
        _rule("disabled", [], ["notify"]) | {"enabled": False},
        _rule("anything", []),
    ],
}
LEVELS = [{}, {"room": 0}, {"room": True}, {"room": "50"}, {"custom": 100}, {"custom": 10, "room": 200}]


def test_compiled_room_conditions_decide_as_evaluate():
    compiled = p.compile_rules(ROOM_RULES)
    count = 0
    for body, event_type, members, name, level, levels in itertools.product(
            ["hi B.b", "hi Bob", "hi bxb", "@room", None], TYPES, [1, 2, 3, 4],
            [None, "", "B.b", "bob"], [0, 10, 50, 100], LEVELS):
        content = {} if body is None else {"body": body}
        event = {"type": event_type, "sender": "@alice:example.org", "content": content}
        room = p.RoomContext(user_id=USER, member_count=members, display_name=name,
                             sender_power_level=level, notification_levels=levels)
        assert compiled(event, room) == p.evaluate(ROOM_RULES, event, room), (event, room)
        count += 1
    assert count > 10000
