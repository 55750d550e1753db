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
