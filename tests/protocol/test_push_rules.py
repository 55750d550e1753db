"""Push rules, pure: the server-default rules and every condition kind.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules
"""

from __future__ import annotations

from homeserver.protocol.push_rules import (
    DefaultRuleChange, RoomContext, UserRule, condition_matches, default_rules, evaluate, glob_matches, outcome,
    property_at, ruleset, split_property_path,
)

ALICE = "@alice:example.org"
ROOM = "!room:example.org"


def message(body: str, sender: str = "@bob:example.org", **content) -> dict:
    return {
        "type": "m.room.message", "room_id": ROOM, "sender": sender, "event_id": "$e",
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def ctx(member_count: int = 3, **kwargs) -> RoomContext:
    return RoomContext(user_id=ALICE, member_count=member_count, **kwargs)


def test_default_rules_in_the_spec_order():
    rules = default_rules(ALICE)
    assert [r["rule_id"] for r in rules["override"]] == [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
        ".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention",
        ".m.rule.roomnotif", ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ]
    assert [r["rule_id"] for r in rules["content"]] == [".m.rule.contains_user_name"]
    assert [r["rule_id"] for r in rules["underride"]] == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message",
        ".m.rule.encrypted",
    ]
    assert rules["room"] == [] and rules["sender"] == []
    every = [r for kind in rules.values() for r in kind]
    assert all(r["default"] is True for r in every)
    # Only the master rule starts disabled.
    assert [r["rule_id"] for r in every if not r["enabled"]] == [".m.rule.master"]
    # The user's own id and localpart fill the templates.
    invite = rules["override"][2]
    assert {"kind": "event_match", "key": "state_key", "pattern": ALICE} in invite["conditions"]
    assert rules["override"][4]["conditions"] == [
        {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": ALICE}
    ]
    assert rules["content"][0]["pattern"] == "alice"
    assert rules["content"][0]["actions"] == [
        "notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"},
    ]
    assert rules["underride"][0]["actions"] == ["notify", {"set_tweak": "sound", "value": "ring"}]


def test_default_rules_are_fresh_copies():
    first = default_rules(ALICE)
    first["content"][0]["actions"][1]["value"] = "changed"
    assert default_rules(ALICE)["content"][0]["actions"][1]["value"] == "default"


def test_ruleset_puts_user_rules_before_defaults_but_after_master():
    own = [
        UserRule("override", "mine", ["notify"], conditions=[]),
        UserRule("content", "cake", ["notify"], pattern="cake"),
        UserRule("room", ROOM, []),
        UserRule("underride", "low", [], enabled=False, conditions=[{"kind": "event_match", "key": "type",
                                                                       "pattern": "x"}]),
    ]
    rules = ruleset(ALICE, own, {("override", ".m.rule.master"): DefaultRuleChange(enabled=True),
                                 ("underride", ".m.rule.message"): DefaultRuleChange(actions=[])})
    assert [r["rule_id"] for r in rules["override"]][:3] == [".m.rule.master", "mine", ".m.rule.suppress_notices"]
    assert rules["override"][0]["enabled"] is True
    assert [r["rule_id"] for r in rules["content"]] == ["cake", ".m.rule.contains_user_name"]
    assert rules["content"][0] == {"rule_id": "cake", "default": False, "enabled": True, "actions": ["notify"],
                                   "pattern": "cake"}
    # Room and sender rules carry no conditions or pattern: the rule id is the condition.
    assert rules["room"] == [{"rule_id": ROOM, "default": False, "enabled": True, "actions": []}]
    assert rules["underride"][0]["rule_id"] == "low" and rules["underride"][0]["enabled"] is False
    message_rule = next(r for r in rules["underride"] if r["rule_id"] == ".m.rule.message")
    assert message_rule["actions"] == [] and message_rule["enabled"] is True


def test_event_match_globs_are_case_insensitive_and_whole_value():
    event = {"type": "m.room.topic", "room_id": ROOM, "sender": "@b:x", "state_key": "",
             "content": {"topic": "Lunch plans"}}
    cond = {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}
    assert condition_matches(cond, event, ctx())
    for topic, expected in [("LUNCH", True), (" lunch", False), ("lunc", False), (None, False), (5, False)]:
        other = {**event, "content": {"topic": topic}}
        assert condition_matches(cond, other, ctx()) is expected, topic
    # Absent: no match, even for "*".
    assert not condition_matches({"kind": "event_match", "key": "content.nothing", "pattern": "*"}, event, ctx())
    # Regex characters in patterns are literal.
    assert glob_matches("a.b", "a.b") and not glob_matches("a.b", "axb")
    assert glob_matches("[x]", "[X]") and not glob_matches("[x]", "x")


def test_event_match_on_body_is_by_words():
    cond = {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}
    for body, expected in [
        ("An example event.", True), ("exple", True), ("An exciting triple-whammy", True),
        ("examples", False), ("counterexample", False), ("an_example", False), ("example_", False), ("ex\nample", True),
    ]:
        assert condition_matches(cond, message(body), ctx()) is expected, body


def test_event_property_is_is_exact_and_typed():
    event = {"type": "m.room.create", "room_id": ROOM, "sender": "@b:x", "state_key": "",
             "content": {"m.federate": True, "count": 1, "name": "true", "none": None, "list": [1]}}
    def is_(key, value):
        return condition_matches({"kind": "event_property_is", "key": key, "value": value}, event, ctx())
    assert is_("content.m\\.federate", True)
    assert not is_("content.m\\.federate", "true")
    assert not is_("content.m\\.federate", 1)
    assert is_("content.count", 1) and not is_("content.count", True)
    assert is_("content.name", "true")
    assert is_("content.none", None)
    assert not is_("content.missing", None)
    assert not is_("content.list", [1])
    # The unescaped dot is a path separator: content -> m -> federate does not exist.
    assert not is_("content.m.federate", True)


def test_event_property_contains_matches_array_members_exactly():
    event = {"type": "m.room.canonical_alias", "room_id": ROOM, "sender": "@b:x", "state_key": "",
             "content": {"alt_aliases": ["#somewhere:example.org", "#myroom:example.com", 3, True, {"a": 1}],
                         "alias": "#myroom:example.com"}}
    def contains(key, value):
        return condition_matches({"kind": "event_property_contains", "key": key, "value": value}, event, ctx())
    assert contains("content.alt_aliases", "#myroom:example.com")
    assert not contains("content.alt_aliases", ":example.com")
    assert contains("content.alt_aliases", 3) and not contains("content.alt_aliases", "3")
    assert contains("content.alt_aliases", True) and not contains("content.alt_aliases", 1)
    # Not an array, or absent: no match.
    assert not contains("content.alias", "#myroom:example.com")
    assert not contains("content.missing", "x")


def test_contains_display_name():
    cond = {"kind": "contains_display_name"}
    named = ctx(display_name="Alice Liddell")
    assert condition_matches(cond, message("hi alice liddell!"), named)
    assert not condition_matches(cond, message("hi alice liddellx"), named)
    assert not condition_matches(cond, message("hi alice"), named)
    # Without a display name, or a body, nothing matches.
    assert not condition_matches(cond, message("hi"), ctx(display_name=None))
    assert not condition_matches(cond, {"type": "m.room.message", "content": {}}, named)
    # A display name with regex characters is matched literally.
    assert condition_matches(cond, message("hey (a+) there"), ctx(display_name="(a+)"))
    assert not condition_matches(cond, message("hey aaa there"), ctx(display_name="(a+)"))


def test_room_member_count():
    def count_is(spec, count):
        return condition_matches({"kind": "room_member_count", "is": spec}, message("x"), ctx(member_count=count))
    assert count_is("2", 2) and not count_is("2", 3)
    assert count_is("==2", 2)
    assert count_is("<3", 2) and not count_is("<3", 3)
    assert count_is("<=3", 3) and not count_is("<=3", 4)
    assert count_is(">3", 4) and not count_is(">3", 3)
    assert count_is(">=3", 3) and not count_is(">=3", 2)
    for bad in ("", "=2", "two", "< 2", "2.0", None, 2):
        assert not count_is(bad, 2), bad


def test_sender_notification_permission():
    cond = {"kind": "sender_notification_permission", "key": "room"}
    assert condition_matches(cond, message("x"), ctx(sender_power_level=50))
    assert not condition_matches(cond, message("x"), ctx(sender_power_level=49))
    assert condition_matches(cond, message("x"), ctx(sender_power_level=10, notification_levels={"room": 10}))
    assert not condition_matches(cond, message("x"), ctx(sender_power_level=10, notification_levels={"room": 20}))
    # A non-integer level falls back to the default of 50.
    assert not condition_matches(cond, message("x"), ctx(sender_power_level=10,
                                                          notification_levels={"room": "10"}))
    assert not condition_matches({"kind": "sender_notification_permission"}, message("x"), ctx(sender_power_level=100))


def test_unknown_or_malformed_conditions_never_match():
    for cond in ({"kind": "org.example.unknown"}, {}, "event_match", {"kind": "event_match", "key": "type"},
                 {"kind": "event_property_is", "key": "type"},
                 {"kind": "event_property_is", "key": "content.x", "value": {"a": 1}}):
        assert not condition_matches(cond, message("x"), ctx()), cond
    rules = {"override": [{"rule_id": "u", "default": False, "enabled": True, "actions": ["notify"],
                           "conditions": [{"kind": "org.example.unknown"}]}]}
    assert evaluate(rules, message("x"), ctx()) is None


def test_property_paths():
    assert split_property_path("content.m\\.relates_to.rel_type") == ["content", "m.relates_to", "rel_type"]
    assert split_property_path("a\\\\.b") == ["a\\", "b"]
    assert split_property_path("a\\b") == ["a\\b"]
    assert property_at({"a": {"b.c": 1}}, "a.b\\.c") == 1
    assert property_at({"a": [1]}, "a.0") is None


def evaluate_defaults(event, room=None):
    return outcome(evaluate(ruleset(ALICE, []), event, room or ctx()))


def test_default_rules_evaluated():
    # A plain message in a group room notifies without highlight; in a 1:1 room too.
    assert evaluate_defaults(message("hello")) == outcome(["notify"])
    assert evaluate(ruleset(ALICE, []), message("hello"), ctx(member_count=2))[0] == "notify"
    # The localpart or display name highlights, but only without m.mentions.
    assert evaluate_defaults(message("hi alice")).highlight
    assert evaluate_defaults(message("hi Ally"), ctx(display_name="Ally")).highlight
    mentions_other = message("hi alice", **{"m.mentions": {"user_ids": ["@carol:example.org"]}})
    assert not evaluate_defaults(mentions_other).highlight
    mentions_me = message("hi", **{"m.mentions": {"user_ids": [ALICE]}})
    assert evaluate_defaults(mentions_me).highlight
    # @room needs the sender's power, as m.mentions.room does.
    room_mention = message("hi @room", **{"m.mentions": {"room": True}})
    assert evaluate_defaults(room_mention, ctx(sender_power_level=50)).highlight
    assert not evaluate_defaults(room_mention, ctx(sender_power_level=0)).highlight
    assert evaluate_defaults(message("hi @room"), ctx(sender_power_level=100)).highlight
    # Notices, edits and reactions are silent; invites for me are loud.
    assert evaluate_defaults(message("beep", msgtype="m.notice")) == outcome([])
    edit = message("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    assert not evaluate_defaults(edit).notify
    reaction = {"type": "m.reaction", "room_id": ROOM, "sender": "@b:x", "content": {}}
    assert not evaluate_defaults(reaction).notify
    invite = {"type": "m.room.member", "room_id": ROOM, "sender": "@b:x", "state_key": ALICE,
              "content": {"membership": "invite"}}
    assert evaluate_defaults(invite).notify
    other_member = {**invite, "state_key": "@carol:example.org"}
    assert not evaluate_defaults(other_member).notify
    tombstone = {"type": "m.room.tombstone", "room_id": ROOM, "sender": "@b:x", "state_key": "",
                 "content": {"body": "moved", "replacement_room": "!new:x"}}
    assert evaluate_defaults(tombstone) == outcome(["notify", {"set_tweak": "highlight"}])
    encrypted = {"type": "m.room.encrypted", "room_id": ROOM, "sender": "@b:x", "content": {}}
    assert evaluate(ruleset(ALICE, []), encrypted, ctx(member_count=2)) == [
        "notify", {"set_tweak": "sound", "value": "default"}]
    assert evaluate(ruleset(ALICE, []), encrypted, ctx(member_count=5)) == ["notify"]
    # Other event types match no rule at all.
    assert evaluate(ruleset(ALICE, []), {"type": "m.room.name", "room_id": ROOM, "sender": "@b:x",
                                         "state_key": "", "content": {"name": "x"}}, ctx()) is None


def test_master_rule_and_user_rules_take_priority():
    muted = ruleset(ALICE, [], {("override", ".m.rule.master"): DefaultRuleChange(enabled=True)})
    assert evaluate(muted, message("hi alice"), ctx()) == []
    own = [UserRule("room", ROOM, ["dont_notify"]), UserRule("sender", "@bob:example.org", ["notify"])]
    rules = ruleset(ALICE, own)
    # The room rule comes before the sender rule; historical actions are stripped.
    assert evaluate(rules, message("hello"), ctx()) == []
    # Content rules (the username) still come before room rules.
    assert outcome(evaluate(rules, message("hello alice"), ctx())).highlight
    disabled = ruleset(ALICE, [UserRule("room", ROOM, [], enabled=False)])
    assert evaluate(disabled, message("hello"), ctx()) == ["notify"]


def test_outcome_reads_highlight_values():
    assert outcome(None) == outcome([]) and not outcome(None).notify
    assert outcome(["notify", {"set_tweak": "highlight"}]).highlight
    assert not outcome(["notify", {"set_tweak": "highlight", "value": False}]).highlight
    assert outcome([{"set_tweak": "highlight", "value": True}]).highlight
    assert not outcome([{"set_tweak": "highlight", "value": True}]).notify
