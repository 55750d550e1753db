"""Push rules: the server-default rule set of a user, and evaluation of rules against an event.

Pure: rules and events are plain JSON dicts; what evaluation needs to know about
the room (member count, the user's display name, power levels) is passed in.
Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import operator
import re
from typing import Any, Callable, Iterator, Mapping

from homeserver.protocol.canonical import MAX_INT, MIN_INT

# The kinds in the order they are checked (spec: "Push Rules", the kinds list).
KINDS = ("override", "content", "room", "sender", "underride")
MASTER_RULE = ".m.rule.master"
# Deprecated in v1.7: "should only be enabled if the event does not have an m.mentions property".
LEGACY_MENTION_RULES = frozenset({".m.rule.contains_display_name", ".m.rule.roomnotif", ".m.rule.contains_user_name"})
# Spec "Historical Actions": MUST be ignored, e.g. stripped.
HISTORICAL_ACTIONS = frozenset({"dont_notify", "coalesce"})
# The `notifications` level of a power levels event that leaves the key out.
DEFAULT_NOTIFICATION_LEVEL = 50

_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _match(key: str, pattern: str) -> dict[str, str]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _default(rule_id: str, conditions: list[dict[str, Any]], actions: list[Any]) -> dict[str, Any]:
    return {"rule_id": rule_id, "default": True, "enabled": True, "conditions": conditions, "actions": actions}


def default_rules(user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The spec's server-default rules for ``user_id``, per kind, each list in priority order.

    Spec: https://spec.matrix.org/v1.19/client-server-api/#predefined-rules
    """
    localpart = user_id[1:].split(":", 1)[0]
    override = [
        {**_default(MASTER_RULE, [], []), "enabled": False},
        _default(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _default(".m.rule.invite_for_me", [
            _match("type", "m.room.member"), _match("content.membership", "invite"), _match("state_key", user_id),
        ], ["notify", _SOUND_DEFAULT]),
        _default(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _default(".m.rule.is_user_mention", [
            {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": user_id},
        ], ["notify", _SOUND_DEFAULT, _HIGHLIGHT]),
        _default(".m.rule.contains_display_name", [{"kind": "contains_display_name"}],
                 ["notify", _SOUND_DEFAULT, _HIGHLIGHT]),
        _default(".m.rule.is_room_mention", [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
            {"kind": "sender_notification_permission", "key": "room"},
        ], ["notify", _HIGHLIGHT]),
        _default(".m.rule.roomnotif", [
            _match("content.body", "@room"), {"kind": "sender_notification_permission", "key": "room"},
        ], ["notify", _HIGHLIGHT]),
        _default(".m.rule.tombstone", [_match("type", "m.room.tombstone"), _match("state_key", "")],
                 ["notify", _HIGHLIGHT]),
        _default(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _default(".m.rule.room.server_acl", [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
        _default(".m.rule.suppress_edits", [
            {"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"},
        ], []),
    ]
    content = [{
        "rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True, "pattern": localpart,
        "actions": ["notify", _SOUND_DEFAULT, _HIGHLIGHT],
    }]
    underride = [
        _default(".m.rule.call", [_match("type", "m.call.invite")],
                 ["notify", {"set_tweak": "sound", "value": "ring"}]),
        _default(".m.rule.encrypted_room_one_to_one", [
            {"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted"),
        ], ["notify", _SOUND_DEFAULT]),
        _default(".m.rule.room_one_to_one", [
            {"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message"),
        ], ["notify", _SOUND_DEFAULT]),
        _default(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        _default(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]
    # A deep copy: the tweak dicts are shared constants, and callers may change what they get.
    return copy.deepcopy({"override": override, "content": content, "room": [], "sender": [], "underride": underride})


def is_server_default(rule_id: str) -> bool:
    return rule_id.startswith(".")


def strip_historical_actions(actions: list[Any]) -> list[Any]:
    return [a for a in actions if not (isinstance(a, str) and a in HISTORICAL_ACTIONS)]


@dataclasses.dataclass(frozen=True)
class UserRule:
    """A user-defined rule as stored: ``conditions`` for override/underride, ``pattern`` for content."""

    kind: str
    rule_id: str
    actions: list[Any]
    enabled: bool = True
    conditions: list[dict[str, Any]] | None = None
    pattern: str | None = None

    def to_json(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "rule_id": self.rule_id, "default": False, "enabled": self.enabled, "actions": self.actions,
        }
        if self.kind in ("override", "underride"):
            rule["conditions"] = self.conditions or []
        elif self.kind == "content":
            rule["pattern"] = self.pattern or ""
        return rule


@dataclasses.dataclass(frozen=True)
class DefaultRuleChange:
    """A user's change to a server-default rule: None leaves the default as it is."""

    enabled: bool | None = None
    actions: list[Any] | None = None


def ruleset(
    user_id: str,
    user_rules: list[UserRule],
    changes: Mapping[tuple[str, str], DefaultRuleChange] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The user's global ruleset: per kind, user rules (in the given priority order)
    before the server-default rules, except ``.m.rule.master`` which comes first of all.

    Spec: "server-default rules ... operate at a lower priority than user-defined
    rules, except for the .m.rule.master rule".
    """
    changes = changes or {}
    defaults = default_rules(user_id)
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        base = []
        for rule in defaults[kind]:
            change = changes.get((kind, rule["rule_id"]))
            if change is not None:
                if change.enabled is not None:
                    rule["enabled"] = change.enabled
                if change.actions is not None:
                    rule["actions"] = change.actions
            base.append(rule)
        own = [r.to_json() for r in user_rules if r.kind == kind]
        if kind == "override":
            out[kind] = base[:1] + own + base[1:]
        else:
            out[kind] = own + base
    return out


def find_rule(rules: Mapping[str, list[dict[str, Any]]], kind: str, rule_id: str) -> dict[str, Any] | None:
    for rule in rules.get(kind, []):
        if rule["rule_id"] == rule_id:
            return rule
    return None


# Evaluation


@dataclasses.dataclass(frozen=True)
class RoomContext:
    """What evaluating rules for one user needs to know about the room, besides the event."""

    user_id: str
    member_count: int
    display_name: str | None = None
    sender_power_level: int | float = 0
    # The `notifications` object of the room's power levels content.
    notification_levels: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def evaluate(
    rules: Mapping[str, list[dict[str, Any]]], event: Mapping[str, Any], room: RoomContext,
) -> list[Any] | None:
    """The actions of the first enabled rule, in priority order, that matches the
    event (client format: ``room_id`` present), or None when no rule matches."""
    content = event.get("content")
    has_mentions = isinstance(content, dict) and "m.mentions" in content
    for kind, rule in _in_priority_order(rules):
        if not rule.get("enabled", True):
            continue
        if has_mentions and rule.get("default") and rule["rule_id"] in LEGACY_MENTION_RULES:
            continue
        if _rule_matches(kind, rule, event, room):
            return strip_historical_actions(rule.get("actions", []))
    return None


@dataclasses.dataclass(frozen=True)
class Outcome:
    notify: bool
    highlight: bool


_OUTCOMES = {(n, h): Outcome(n, h) for n in (False, True) for h in (False, True)}


def outcome(actions: list[Any] | None) -> Outcome:
    """Whether actions notify, and whether they highlight (spec: a highlight tweak
    without a value means true; no highlight tweak means false)."""
    if not actions:
        return _OUTCOMES[(False, False)]
    highlight = False
    for action in actions:
        if isinstance(action, dict) and action.get("set_tweak") == "highlight":
            highlight = action.get("value", True) is True
    return _OUTCOMES[("notify" in actions, highlight)]


def _in_priority_order(rules: Mapping[str, list[dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in KINDS:
        for rule in rules.get(kind, []):
            yield kind, rule


def _rule_matches(kind: str, rule: Mapping[str, Any], event: Mapping[str, Any], room: RoomContext) -> bool:
    if kind == "content":
        pattern = rule.get("pattern")
        return isinstance(pattern, str) and condition_matches(_match("content.body", pattern), event, room)
    if kind == "room":
        return event.get("room_id") == rule["rule_id"]
    if kind == "sender":
        return event.get("sender") == rule["rule_id"]
    conditions = rule.get("conditions", [])
    if not isinstance(conditions, list):
        return False
    return all(condition_matches(c, event, room) for c in conditions)


def condition_matches(condition: Any, event: Mapping[str, Any], room: RoomContext) -> bool:
    """One condition. Spec: "Unrecognised conditions MUST NOT match any events"; so
    does a condition missing a parameter it needs."""
    if not isinstance(condition, dict):
        return False
    kind = condition.get("kind")
    key = condition.get("key")
    if kind == "event_match":
        pattern = condition.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        value = property_at(event, key)
        if not isinstance(value, str):
            return False
        return glob_matches(pattern, value, word_boundary=key == "content.body")
    if kind == "event_property_is":
        if not isinstance(key, str) or "value" not in condition or not _is_plain_value(condition["value"]):
            return False
        value = property_at(event, key, _MISSING)
        return value is not _MISSING and _same_value(value, condition["value"])
    if kind == "event_property_contains":
        if not isinstance(key, str) or "value" not in condition or not _is_plain_value(condition["value"]):
            return False
        values = property_at(event, key)
        return isinstance(values, list) and any(_same_value(v, condition["value"]) for v in values)
    if kind == "contains_display_name":
        body = property_at(event, "content.body")
        if not room.display_name or not isinstance(body, str):
            return False
        return _word_regex(re.escape(room.display_name)).search(body) is not None
    if kind == "room_member_count":
        return _member_count_matches(condition.get("is"), room.member_count)
    if kind == "sender_notification_permission":
        if not isinstance(key, str):
            return False
        required = room.notification_levels.get(key, DEFAULT_NOTIFICATION_LEVEL)
        if isinstance(required, bool) or not isinstance(required, int):
            required = DEFAULT_NOTIFICATION_LEVEL
        return room.sender_power_level >= required
    return False


_MISSING = object()


def split_property_path(path: str) -> list[str]:
    """A dot-separated property path into its keys: ``\\.`` is a literal dot and
    ``\\\\`` a literal backslash; any other backslash is itself.

    Spec: https://spec.matrix.org/v1.19/appendices/#dot-separated-property-paths
    """
    parts, current, i = [], [], 0
    while i < len(path):
        char = path[i]
        if char == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


@functools.lru_cache(maxsize=1024)
def _property_keys(path: str) -> tuple[str, ...]:
    # Rules name few paths, evaluated against every event: parsed once each.
    return tuple(split_property_path(path))


def property_at(event: Mapping[str, Any], path: str, missing: Any = None) -> Any:
    value: Any = event
    for key in _property_keys(path):
        if not isinstance(value, dict) or key not in value:
            return missing
        value = value[key]
    return value


def _is_plain_value(value: Any) -> bool:
    """A non-compound canonical JSON value: string, integer in range, boolean or null."""
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and MIN_INT <= value <= MAX_INT


def _same_value(a: Any, b: Any) -> bool:
    # Exact: true is not 1 and "1" is not 1 (spec: "do not cast types").
    return _is_plain_value(a) and type(a) is type(b) and a == b


_WORD_CHARS = "A-Za-z0-9_"


@functools.lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> str:
    """A glob (``*`` any run of characters, ``?`` exactly one) as a regex body.

    Spec: https://spec.matrix.org/v1.19/appendices/#glob-style-matching
    """
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


@functools.lru_cache(maxsize=1024)
def _word_regex(body: str) -> re.Pattern[str]:
    return re.compile(f"(?:^|[^{_WORD_CHARS}]){body}(?:$|[^{_WORD_CHARS}])", re.IGNORECASE | re.DOTALL)


@functools.lru_cache(maxsize=1024)
def _display_name_regex(name: str) -> re.Pattern[str]:
    return _word_regex(re.escape(name))


def glob_matches(pattern: str, value: str, word_boundary: bool = False) -> bool:
    """Case-insensitive glob match of the whole value, or, for ``content.body``, of any
    substring that starts and ends at a word boundary."""
    if word_boundary:
        return _word_regex(_glob_regex(pattern)).search(value) is not None
    return _whole_regex(pattern).fullmatch(value) is not None


@functools.lru_cache(maxsize=1024)
def _whole_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(_glob_regex(pattern), re.IGNORECASE | re.DOTALL)


_MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]+)", re.ASCII)


def _member_count_matches(spec: Any, count: int) -> bool:
    if not isinstance(spec, str):
        return False
    found = _MEMBER_COUNT.fullmatch(spec)
    if found is None:
        return False
    op, number = found.group(1) or "==", int(found.group(2))
    return {
        "==": count == number, "<": count < number, ">": count > number, "<=": count <= number, ">=": count >= number,
    }[op]


# Compiled rules: the same evaluation as `evaluate`, with each rule's conditions turned
# once into small functions, for evaluating one ruleset against many events (the unread
# counts of a /sync evaluate every new event of every room for one user).

Predicate = Callable[[Mapping[str, Any], RoomContext], bool]


def compile_rules(rules: Mapping[str, list[dict[str, Any]]]) -> Callable[[Mapping[str, Any], RoomContext], list[Any] | None]:
    """A function equal to ``lambda event, room: evaluate(rules, event, room)``."""
    compiled: list[tuple[bool, str | None, Predicate, Predicate, list[Any]]] = []
    for kind, rule in _in_priority_order(rules):
        if not rule.get("enabled", True):
            continue
        legacy = bool(rule.get("default")) and rule["rule_id"] in LEGACY_MENTION_RULES
        required = _required_type(kind, rule)
        compiled.append((legacy, required, _compile_rule(kind, rule), _compile_rule(kind, rule, required),
                         strip_historical_actions(rule.get("actions", []))))
    # For an event of an ASCII type (lower-cased), with or without m.mentions: the rules that
    # may match it, in order, each without its conditions on the type (they hold). Built at
    # the first such event; the number of types kept is bounded (event types are anyone's).
    by_type: dict[tuple[str, bool], list[tuple[Predicate, list[Any]]]] = {}

    def rules_for(lowered: str, has_mentions: bool) -> list[tuple[Predicate, list[Any]]]:
        found = by_type.get((lowered, has_mentions))
        if found is None:
            found = [(untyped if required is not None else matches, actions)
                     for legacy, required, matches, untyped, actions in compiled
                     if not (has_mentions and legacy) and required in (None, lowered)]
            if len(by_type) < MAX_COMPILED_TYPES:
                by_type[(lowered, has_mentions)] = found
        return found

    def evaluate_compiled(event: Mapping[str, Any], room: RoomContext) -> list[Any] | None:
        content = event.get("content")
        has_mentions = isinstance(content, dict) and "m.mentions" in content
        event_type = event.get("type")
        if isinstance(event_type, str) and event_type.isascii():
            for matches, actions in rules_for(event_type.lower(), has_mentions):
                if matches(event, room):
                    return list(actions)
            return None
        for legacy, _required, matches, _untyped, actions in compiled:
            if has_mentions and legacy:
                continue
            if matches(event, room):
                return list(actions)
        return None

    return evaluate_compiled


# Event types whose rule lists a compiled ruleset keeps.
MAX_COMPILED_TYPES = 64
_COMPARISONS = {"==": operator.eq, "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}


def _literal_type(condition: Any) -> str | None:
    """The event type (lower case) an `event_match` on "type" without wildcards requires."""
    if not isinstance(condition, dict) or condition.get("kind") != "event_match" or condition.get("key") != "type":
        return None
    pattern = condition.get("pattern")
    if not isinstance(pattern, str) or "*" in pattern or "?" in pattern or not pattern.isascii():
        return None
    return pattern.lower()


def _required_type(kind: str, rule: Mapping[str, Any]) -> str | None:
    conditions = rule.get("conditions") if kind in ("override", "underride") else None
    if not isinstance(conditions, list):
        return None
    return next((t for t in map(_literal_type, conditions) if t is not None), None)


def _compile_rule(kind: str, rule: Mapping[str, Any], known_type: str | None = None) -> Predicate:
    """The rule as one predicate; with ``known_type``, for events of that (lower-cased,
    ASCII) type only, which the rule's `event_match` conditions on that type then need
    not test."""
    if kind == "content":
        pattern = rule.get("pattern")
        if not isinstance(pattern, str):
            return _never
        return _compile_condition(_match("content.body", pattern))
    if kind == "room":
        rule_id = rule["rule_id"]
        return lambda event, room: event.get("room_id") == rule_id
    if kind == "sender":
        rule_id = rule["rule_id"]
        return lambda event, room: event.get("sender") == rule_id
    conditions = rule.get("conditions", [])
    if not isinstance(conditions, list):
        return _never
    if known_type is not None:
        conditions = [c for c in conditions if _literal_type(c) != known_type]
    # Conditions are pure, so their order is free: the type test first (it fails most
    # often), then those reading the room only, those reading a property, and the regular
    # expressions over the body last.
    ordered = sorted(conditions, key=_cost)
    predicates = [_compile_condition(c) for c in ordered]
    if not predicates:
        return _always
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda event, room: first(event, room) and second(event, room)
    return lambda event, room: all(p(event, room) for p in predicates)


def _cost(condition: Any) -> int:
    if _literal_type(condition) is not None:
        return 0
    if not isinstance(condition, dict):
        return 1
    kind = condition.get("kind")
    if kind in ("room_member_count", "sender_notification_permission"):
        return 1
    if kind == "contains_display_name" or (kind == "event_match" and condition.get("key") == "content.body"):
        return 3
    return 2


def _never(event: Mapping[str, Any], room: RoomContext) -> bool:
    return False


def _always(event: Mapping[str, Any], room: RoomContext) -> bool:
    return True


def _compile_condition(condition: Any) -> Predicate:
    if not isinstance(condition, dict):
        return _never
    kind, key = condition.get("kind"), condition.get("key")
    if kind == "event_match" and isinstance(key, str) and isinstance(condition.get("pattern"), str):
        keys = _property_keys(key)
        pattern: str = condition["pattern"]
        if key == "content.body":
            regex = _word_regex(_glob_regex(pattern))
            test = lambda value: regex.search(value) is not None  # noqa: E731
        elif "*" not in pattern and "?" not in pattern and pattern.isascii():
            # A pattern without wildcards matches the whole value, case-insensitively.
            # (For ASCII values: re.IGNORECASE folds some other characters onto ASCII ones.)
            lowered, whole = pattern.lower(), _whole_regex(pattern)
            test = lambda value: (  # noqa: E731
                value.lower() == lowered if value.isascii() else whole.fullmatch(value) is not None)
        else:
            whole = _whole_regex(pattern)
            test = lambda value: whole.fullmatch(value) is not None  # noqa: E731

        def event_match(event: Mapping[str, Any], room: RoomContext) -> bool:
            value = _at(event, keys)
            return isinstance(value, str) and test(value)
        return event_match
    if kind in ("event_property_is", "event_property_contains") and isinstance(key, str) and (
            "value" in condition and _is_plain_value(condition["value"])):
        keys = _property_keys(key)
        expected = condition["value"]
        if kind == "event_property_is":
            def property_is(event: Mapping[str, Any], room: RoomContext) -> bool:
                value = _at(event, keys, _MISSING)
                return value is not _MISSING and _same_value(value, expected)
            return property_is

        def property_contains(event: Mapping[str, Any], room: RoomContext) -> bool:
            values = _at(event, keys)
            return isinstance(values, list) and any(_same_value(v, expected) for v in values)
        return property_contains
    if kind == "room_member_count":
        spec = condition.get("is")
        found = _MEMBER_COUNT.fullmatch(spec) if isinstance(spec, str) else None
        if found is None:
            return _never
        compare, number = _COMPARISONS[found.group(1) or "=="], int(found.group(2))
        return lambda event, room: compare(room.member_count, number)
    if kind == "sender_notification_permission":
        if not isinstance(key, str):
            return _never

        def permitted(event: Mapping[str, Any], room: RoomContext) -> bool:
            required = room.notification_levels.get(key, DEFAULT_NOTIFICATION_LEVEL)
            if isinstance(required, bool) or not isinstance(required, int):
                required = DEFAULT_NOTIFICATION_LEVEL
            return room.sender_power_level >= required
        return permitted
    if kind == "contains_display_name":
        body_keys = _property_keys("content.body")

        def contains_display_name(event: Mapping[str, Any], room: RoomContext) -> bool:
            body = _at(event, body_keys)
            name = room.display_name
            if not name or not isinstance(body, str):
                return False
            return _display_name_regex(name).search(body) is not None
        return contains_display_name
    return lambda event, room: condition_matches(condition, event, room)


def _at(event: Mapping[str, Any], keys: tuple[str, ...], missing: Any = None) -> Any:
    value: Any = event
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return missing
        value = value[key]
    return value
