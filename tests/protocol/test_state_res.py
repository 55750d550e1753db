"""State resolution v2 (room versions 2-11) and v2.1 (room version 12).

The classic scenarios (the ones Synapse's and ruma's state resolution tests
walk through) are rebuilt here as small DAGs: a linear room start, then forks
given as chains of prev_events; the state before each event is the resolution
of the states after its prev_events, and its auth_events are picked from that
state by the auth events selection. Ids are synthetic ("$PA"): state
resolution checks no hashes or signatures.

Spec: https://spec.matrix.org/v1.19/rooms/v2/#state-resolution and
https://spec.matrix.org/v1.19/rooms/v12/#state-resolution
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from homeserver.protocol.auth_rules import auth_types_for_event
from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, StateResAlgorithm
from homeserver.protocol.state_res import (
    _conflicted_subgraph,
    _EventCache,
    _mainline_sort,
    _reverse_topological_power_sort,
    auth_chain,
    resolve_state,
)

ALICE = "@alice:a.test"  # the creator
BOB = "@bob:b.test"
CHARLIE = "@charlie:c.test"
ZARA = "@zara:z.test"
EVE = "@eve:e.test"

CREATE = ("m.room.create", "")
PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")
TOPIC = ("m.room.topic", "")

VERSIONS = ["2", "10", "12"]


def member(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


@dataclasses.dataclass
class Spec:
    """An event to be built once the state before it is known."""

    sender: str
    type: str
    content: dict[str, Any]
    state_key: str | None = None


class Room:
    """Events of one room, built in a chosen room version, and the state after each."""

    def __init__(self, version: str):
        self.version: RoomVersion = KNOWN_ROOM_VERSIONS[version]
        self.events: dict[str, Event] = {}
        self.state_after: dict[str, dict[tuple[str, str], str]] = {}
        self.ts = 0
        create_content: dict[str, Any] = {"room_version": version}
        if not self.version.implicit_room_creator:
            create_content["creator"] = ALICE
        self.create_id = "$CREATE"
        if self.version.room_id_from_create_event:
            self.room_id = "!CREATE"
        else:
            self.room_id = "!room:a.test"

    def get(self, event_id: str) -> Event | None:
        return self.events.get(event_id)

    def ref(self, event_id: str) -> Any:
        if self.version.uses_event_id_in_event:
            return [event_id, {"sha256": "unchecked"}]
        return event_id

    def power_levels(self, users: dict[str, int], **extra: Any) -> dict[str, Any]:
        """A power levels content; v12 creators may not be listed, their power is infinite."""
        if self.version.privileged_creators:
            users = {user: level for user, level in users.items() if user != ALICE}
        return {"users": users, **extra}

    def build(
        self,
        name: str,
        spec: Spec,
        prev: list[str],
        auth: list[str] | None = None,
        ts: int | None = None,
    ) -> Event:
        """Make event "$name"; its auth events are chosen from the state before it
        unless ``auth`` names them."""
        event_id = "$" + name
        self.ts += 1
        event_json: dict[str, Any] = {
            "type": spec.type,
            "sender": spec.sender,
            "content": spec.content,
            "prev_events": [self.ref(p) for p in prev],
            "depth": 1 + max((self.events[p].depth for p in prev), default=0),
            "origin_server_ts": self.ts if ts is None else ts,
        }
        if spec.state_key is not None:
            event_json["state_key"] = spec.state_key
        if not (self.version.room_id_from_create_event and spec.type == "m.room.create"):
            event_json["room_id"] = self.room_id
        before = self.state_before(prev)
        if auth is None:
            keys = auth_types_for_event(
                self.version, spec.type, spec.sender, spec.state_key, spec.content
            )
            auth = [before[key] for key in keys if key in before]
        event_json["auth_events"] = [self.ref(a) for a in auth]
        event = Event(event_json, event_id, self.version)
        self.events[event_id] = event
        after = dict(before)
        if event.is_state():
            after[event.state_tuple] = event_id
        self.state_after[event_id] = after
        return event

    def state_before(self, prev: list[str]) -> dict[tuple[str, str], str]:
        states = [self.state_after[p] for p in prev]
        if not states:
            return {}
        if len(states) == 1:
            return dict(states[0])
        return resolve_state(self.version, states, self.get)

    def start(self) -> None:
        """The room's linear start, as in Synapse's test: alice creates it, sets power
        levels and public join rules; bob, charlie and zara join; zara says START."""
        initial = [
            ("CREATE", Spec(ALICE, "m.room.create", self._create_content(), "")),
            ("IMA", Spec(ALICE, "m.room.member", {"membership": "join"}, ALICE)),
            ("IPOWER", Spec(ALICE, "m.room.power_levels", self.power_levels({ALICE: 100}), "")),
            ("IJR", Spec(ALICE, "m.room.join_rules", {"join_rule": "public"}, "")),
            ("IMB", Spec(BOB, "m.room.member", {"membership": "join"}, BOB)),
            ("IMC", Spec(CHARLIE, "m.room.member", {"membership": "join"}, CHARLIE)),
            ("IMZ", Spec(ZARA, "m.room.member", {"membership": "join"}, ZARA)),
            ("START", Spec(ZARA, "m.room.message", {"body": "start"})),
        ]
        prev: list[str] = []
        for name, spec in initial:
            self.build(name, spec, prev)
            prev = ["$" + name]

    def _create_content(self) -> dict[str, Any]:
        content: dict[str, Any] = {"room_version": self.version.identifier}
        if not self.version.implicit_room_creator:
            content["creator"] = ALICE
        return content

    def run(self, specs: dict[str, Spec], chains: list[list[str]]) -> dict[tuple[str, str], str]:
        """Build the forks (each chain runs from newest to oldest) and return the
        resolved state before an END event that has every chain's head as a prev."""
        prevs: dict[str, list[str]] = {}
        for chain in chains:
            for newer, older in zip(chain, chain[1:]):
                prevs.setdefault(newer, [])
                if older not in prevs[newer]:
                    prevs[newer].append(older)
        built = {name[1:] for name in self.events}

        def build(name: str) -> None:
            if name in built:
                return
            for p in prevs[name]:
                build(p)
            self.build(name, specs[name], ["$" + p for p in prevs[name]])
            built.add(name)

        # Build in declaration order so origin_server_ts follows it, as in Synapse's test.
        for name in specs:
            build(name)
        return self.state_before(["$" + p for p in prevs["END"]])

    def expected(self, *names: str) -> dict[tuple[str, str], str]:
        """The state at START with the named events' keys replaced by them."""
        state = dict(self.state_after["$START"])
        for name in names:
            event = self.events["$" + name]
            state[event.state_tuple] = event.event_id
        return state


def end() -> Spec:
    return Spec(ZARA, "m.room.message", {"body": "end"})


@pytest.fixture(params=VERSIONS)
def room(request) -> Room:
    room = Room(request.param)
    room.start()
    return room


# The classic scenarios ---------------------------------------------------------------


def test_ban_vs_power_levels(room: Room) -> None:
    # Alice bans bob in one fork; in the other bob, a moderator, re-sends the power
    # levels. The ban sorts after the power levels and is upheld.
    pl = room.power_levels({ALICE: 100, BOB: 50})
    specs = {
        "PA": Spec(ALICE, "m.room.power_levels", pl, ""),
        "MA": Spec(ALICE, "m.room.member", {"membership": "join"}, ALICE),
        "MB": Spec(ALICE, "m.room.member", {"membership": "ban"}, BOB),
        "PB": Spec(BOB, "m.room.power_levels", pl, ""),
        "END": end(),
    }
    state = room.run(specs, [["END", "MB", "MA", "PA", "START"], ["END", "PB", "PA"]])
    assert state == room.expected("PA", "MA", "MB")


def test_join_rule_evasion(room: Room) -> None:
    # Eve joins in a fork that has not seen the room turn private: she stays out.
    specs = {
        "JR": Spec(ALICE, "m.room.join_rules", {"join_rule": "private"}, ""),
        "ME": Spec(EVE, "m.room.member", {"membership": "join"}, EVE),
        "END": end(),
    }
    state = room.run(specs, [["END", "JR", "START"], ["END", "ME", "START"]])
    assert state == room.expected("JR")
    assert member(EVE) not in state


def test_offtopic_power_levels(room: Room) -> None:
    # Bob raises charlie, charlie lowers himself; a second fork at bob's levels
    # does not undo charlie's later change.
    specs = {
        "PA": Spec(ALICE, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 50}), ""),
        "PB": Spec(
            BOB, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 50, CHARLIE: 50}), ""
        ),
        "PC": Spec(
            CHARLIE,
            "m.room.power_levels",
            room.power_levels({ALICE: 100, BOB: 50, CHARLIE: 0}),
            "",
        ),
        "END": end(),
    }
    state = room.run(specs, [["END", "PC", "PB", "PA", "START"], ["END", "PA"]])
    assert state == room.expected("PC")


def test_topic_basic(room: Room) -> None:
    # Alice demotes bob (PA2); bob's fork re-promotes himself (PB) from an older
    # mainline point and sets a topic: both fail, alice's topic T2 stays.
    specs = {
        "T1": Spec(ALICE, "m.room.topic", {"topic": "one"}, ""),
        "PA1": Spec(ALICE, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 50}), ""),
        "T2": Spec(ALICE, "m.room.topic", {"topic": "two"}, ""),
        "PA2": Spec(ALICE, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 0}), ""),
        "PB": Spec(BOB, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 50}), ""),
        "T3": Spec(BOB, "m.room.topic", {"topic": "three"}, ""),
        "END": end(),
    }
    chains = [["END", "PA2", "T2", "PA1", "T1", "START"], ["END", "T3", "PB", "PA1"]]
    state = room.run(specs, chains)
    assert state == room.expected("PA2", "T2")


def test_topic_reset(room: Room) -> None:
    # Bob sets a topic, then is banned; the merge with a fork that saw only alice's
    # topic keeps alice's topic (bob's is checked after his ban) and the ban.
    specs = {
        "T1": Spec(ALICE, "m.room.topic", {"topic": "one"}, ""),
        "PA": Spec(ALICE, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 50}), ""),
        "T2": Spec(BOB, "m.room.topic", {"topic": "two"}, ""),
        "MB": Spec(ALICE, "m.room.member", {"membership": "ban"}, BOB),
        "END": end(),
    }
    chains = [["END", "MB", "T2", "PA", "T1", "START"], ["END", "T1"]]
    state = room.run(specs, chains)
    assert state == room.expected("T1", "MB", "PA")


def test_topic(room: Room) -> None:
    # As topic_basic, with a message merging the forks and a later topic from alice.
    specs = {
        "T1": Spec(ALICE, "m.room.topic", {"topic": "one"}, ""),
        "PA1": Spec(ALICE, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 50}), ""),
        "T2": Spec(ALICE, "m.room.topic", {"topic": "two"}, ""),
        "PA2": Spec(ALICE, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 0}), ""),
        "PB": Spec(BOB, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 50}), ""),
        "T3": Spec(BOB, "m.room.topic", {"topic": "three"}, ""),
        "MZ1": Spec(ZARA, "m.room.message", {"body": "merge"}),
        "T4": Spec(ALICE, "m.room.topic", {"topic": "four"}, ""),
        "END": end(),
    }
    chains = [
        ["END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"],
        ["END", "MZ1", "T3", "PB", "PA1"],
    ]
    state = room.run(specs, chains)
    assert state == room.expected("T4", "PA2")


def test_identical_state_sets_need_no_events(room: Room) -> None:
    state = room.state_after["$START"]
    assert resolve_state(room.version, [state, dict(state)], lambda _id: None) == {}
    # ...because every entry names an event we cannot load; with the events, it is the same.
    assert resolve_state(room.version, [state, dict(state)], room.get) == state


# Orderings ---------------------------------------------------------------------------


def test_mainline_ordering(room: Room) -> None:
    # Topics citing older points of the mainline sort first; same point: by ts, then id.
    pa1 = room.build(
        "PA1",
        Spec(ALICE, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 50}), ""),
        ["$START"],
    )
    pa2 = room.build(
        "PA2",
        Spec(ALICE, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 60}), ""),
        [pa1.event_id],
    )
    topic = Spec(BOB, "m.room.topic", {"topic": "x"}, "")
    late_old = room.build("TOLD", topic, [pa2.event_id], auth=["$IPOWER", "$IMB", "$CREATE"], ts=90)
    mid = room.build("TMID", topic, [pa2.event_id], auth=[pa1.event_id, "$IMB", "$CREATE"], ts=50)
    new_b = room.build("TNEWB", topic, [pa2.event_id], auth=[pa2.event_id, "$IMB"], ts=10)
    new_a = room.build("TNEWA", topic, [pa2.event_id], auth=[pa2.event_id, "$IMB"], ts=10)
    no_pl = room.build("TNOPL", topic, [pa2.event_id], auth=["$IMB"], ts=99)
    ids = {e.event_id for e in (late_old, mid, new_b, new_a, no_pl)}
    order = _mainline_sort(ids, pa2.event_id, _EventCache(room.get))
    assert order == ["$TNOPL", "$TOLD", "$TMID", "$TNEWA", "$TNEWB"]


def test_power_events_sorted_by_sender_level_then_ts_then_id(room: Room) -> None:
    # Three concurrent, independent join rules changes from the same state: the
    # higher-powered sender's sorts first, so the lower ones are applied after it and win
    # if allowed; equal levels go by origin_server_ts, then event id.
    pl = room.build(
        "PL",
        Spec(
            ALICE,
            "m.room.power_levels",
            room.power_levels({ALICE: 100, BOB: 60, CHARLIE: 60}, state_default=50),
            "",
        ),
        ["$START"],
    )
    jr = "m.room.join_rules"
    a = room.build("JA", Spec(ALICE, jr, {"join_rule": "invite"}, ""), [pl.event_id], ts=300)
    b = room.build("JB", Spec(BOB, jr, {"join_rule": "knock"}, ""), [pl.event_id], ts=200)
    c = room.build("JC", Spec(CHARLIE, jr, {"join_rule": "public"}, ""), [pl.event_id], ts=200)
    states = [room.state_after[e.event_id] for e in (a, b, c)]
    state = resolve_state(room.version, states, room.get)
    # Order: JA (alice, highest), then JB and JC (ts 200, "$JB" < "$JC"): JC is last.
    assert state[JR] == c.event_id
    # With charlie's join rules later than bob's, bob's is last.
    d = room.build("JD", Spec(CHARLIE, jr, {"join_rule": "public"}, ""), [pl.event_id], ts=100)
    states = [room.state_after[e.event_id] for e in (a, b, d)]
    assert resolve_state(room.version, states, room.get)[JR] == b.event_id


def test_auth_dag_order_beats_the_tie_breakers(room: Room) -> None:
    # Bob's power levels are an auth event of alice's join rules change, through an
    # event outside the sorted set: alice's, though higher-powered and earlier, comes
    # after it. Bob's level is read from his event's auth events (IPOWER: 0), not from
    # the power levels it sets (50), so charlie's earlier kick of zara sorts first.
    pb = room.build(
        "PB",
        Spec(BOB, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 50}), ""),
        ["$START"],
        ts=500,
    )
    between = room.build("TB", Spec(BOB, "m.room.topic", {"topic": "t"}, ""), [pb.event_id])
    ja = room.build(
        "JA",
        Spec(ALICE, "m.room.join_rules", {"join_rule": "invite"}, ""),
        [between.event_id],
        auth=[*between.auth_event_ids, between.event_id],
        ts=5,
    )
    kick = room.build(
        "KZ", Spec(CHARLIE, "m.room.member", {"membership": "leave"}, ZARA), ["$START"], ts=1
    )
    ids = {pb.event_id, ja.event_id, kick.event_id}
    assert _reverse_topological_power_sort(ids, _EventCache(room.get)) == ["$KZ", "$PB", "$JA"]


# Robustness --------------------------------------------------------------------------


def test_missing_events_are_treated_as_absent(room: Room) -> None:
    t1 = room.build("T1", Spec(ALICE, "m.room.topic", {"topic": "one"}, ""), ["$START"])
    # T2 cites an auth event nobody has: it is authorised by what is there.
    t2 = room.build(
        "T2",
        Spec(ALICE, "m.room.topic", {"topic": "two"}, ""),
        ["$START"],
        auth=["$CREATE", "$IPOWER", "$IMA", "$NOWHERE"],
    )
    s1 = room.state_after[t1.event_id]
    s2 = dict(room.state_after[t2.event_id])
    s2[("m.room.name", "")] = "$GONE"  # an entry whose event is unknown
    state = resolve_state(room.version, [s1, s2], room.get)
    assert state[TOPIC] == t2.event_id  # later origin_server_ts, same mainline position
    assert ("m.room.name", "") not in state
    # A state set of only unknown events adds nothing.
    state = resolve_state(room.version, [s1, {TOPIC: "$GONE"}], room.get)
    assert state[TOPIC] == t1.event_id
    assert "$NOWHERE" in auth_chain([t2.event_id], room.get)


def test_cyclic_auth_events_end(room: Room) -> None:
    # A malicious peer's power levels cite each other as auth events, and a join rules
    # event cites both: every walk (auth chains, sort, mainline) must end.
    content = room.power_levels({ALICE: 100, BOB: 50})
    base_auth = ["$CREATE", "$IMA"]
    pl_spec = Spec(ALICE, "m.room.power_levels", content, "")
    room.build("PX", pl_spec, ["$START"], auth=[*base_auth, "$PY"])
    room.build("PY", pl_spec, ["$START"], auth=[*base_auth, "$PX"])
    room.build(
        "JRX",
        Spec(ALICE, "m.room.join_rules", {"join_rule": "invite"}, ""),
        ["$START"],
        auth=[*base_auth, "$PX", "$PY"],
    )
    room.build(
        "TX",
        Spec(ALICE, "m.room.topic", {"topic": "x"}, ""),
        ["$START"],
        auth=[*base_auth, "$PX"],
    )
    start = room.state_after["$START"]
    s1 = {**start, PL: "$PX", JR: "$JRX", TOPIC: "$TX"}
    s2 = {**start, PL: "$PY"}
    state = resolve_state(room.version, [s1, s2], room.get)
    assert auth_chain(["$PX"], room.get) >= {"$PX", "$PY", "$CREATE", "$IMA"}
    # The power levels on the cycle never become free in the topological sort, so
    # neither is applied, nor the join rules that depend on them (the older join rules
    # stay); the topic (not a power event) is checked against its own auth events.
    assert PL not in state
    assert state[JR] == "$IJR"
    assert state[TOPIC] == "$TX"


def test_rejected_events_never_in_result(room: Room) -> None:
    t1 = room.build("T1", Spec(ALICE, "m.room.topic", {"topic": "one"}, ""), ["$START"], ts=10)
    t2 = room.build("T2", Spec(ALICE, "m.room.topic", {"topic": "two"}, ""), ["$START"], ts=20)
    n1 = room.build("N1", Spec(ALICE, "m.room.name", {"name": "n"}, ""), ["$START"])
    t2.internal["rejected"] = "auth"
    n1.internal["rejected"] = "auth"
    s1 = {**room.state_after[t1.event_id], ("m.room.name", ""): n1.event_id}
    s2 = {**room.state_after[t2.event_id], ("m.room.name", ""): n1.event_id}
    state = resolve_state(room.version, [s1, s2], room.get)
    # T2 would win by origin_server_ts; rejected, it is ignored. The rejected name is
    # unconflicted, yet left out too.
    assert state[TOPIC] == t1.event_id
    assert ("m.room.name", "") not in state


def test_rejected_auth_event_is_not_used(room: Room) -> None:
    # Bob's topic is authorised only by a rejected power levels event granting him 50.
    bad_pl = room.build(
        "PBAD",
        Spec(BOB, "m.room.power_levels", room.power_levels({ALICE: 100, BOB: 50}), ""),
        ["$START"],
    )
    bad_pl.internal["rejected"] = "auth"
    topic = room.build(
        "TB",
        Spec(BOB, "m.room.topic", {"topic": "bob"}, ""),
        [bad_pl.event_id],
        auth=([] if room.version.room_id_from_create_event else ["$CREATE"])
        + [bad_pl.event_id, "$IMB"],
    )
    s1 = room.state_after["$START"]
    s2 = {**s1, TOPIC: topic.event_id}
    state = resolve_state(room.version, [s1, s2], room.get)
    # The power levels fall back to the resolved IPOWER (bob has 0): the topic fails.
    assert TOPIC not in state


# State resolution v2.1 (room version 12) ---------------------------------------------

V12 = KNOWN_ROOM_VERSIONS["12"]
# The same room version 12 events resolved with the v2 algorithm, for comparison.
V12_WITH_V2 = dataclasses.replace(V12, state_res=StateResAlgorithm.V2)


def v12_room_with_pl_chain() -> tuple[Room, dict, dict]:
    """P1 (bob 50) <- P2 (alice raises bob to 100) <- P3 (bob raises charlie to 75).

    One fork is at P3, the other still at P1; a topic citing P2 is in both, so P2
    is in both auth chains and not in the auth difference; it lies between the
    conflicted P3 and P1 in the auth DAG, so it is in the conflicted state subgraph.
    """
    room = Room("12")
    room.start()
    p1 = room.build(
        "P1", Spec(ALICE, "m.room.power_levels", room.power_levels({BOB: 50}), ""), ["$START"]
    )
    p2 = room.build(
        "P2", Spec(ALICE, "m.room.power_levels", room.power_levels({BOB: 100}), ""), ["$P1"]
    )
    topic = room.build("T", Spec(BOB, "m.room.topic", {"topic": "t"}, ""), ["$P2"])
    p3 = room.build(
        "P3",
        Spec(BOB, "m.room.power_levels", room.power_levels({BOB: 100, CHARLIE: 75}), ""),
        ["$T"],
    )
    start = room.state_after["$START"]
    s1 = {**start, TOPIC: topic.event_id, PL: p3.event_id}
    s2 = {**start, TOPIC: topic.event_id, PL: p1.event_id}
    assert p2.event_id in auth_chain([topic.event_id], room.get)
    return room, s1, s2


def test_v2_1_conflicted_subgraph_joins_the_full_conflicted_set() -> None:
    room, s1, s2 = v12_room_with_pl_chain()
    subgraph = _conflicted_subgraph({"$P1", "$P3"}, _EventCache(room.get))
    # P2 is on the path P3 -> P2 -> P1; the create event and memberships are not
    # (no conflicted event is reachable from them).
    assert subgraph == {"$P1", "$P2", "$P3"}
    # v2.1 replays P2 before P3, so bob's P3 is allowed; v2 checks P3 against P1
    # (bob 50 cannot raise himself to 100) and resets the power levels to P1.
    assert resolve_state(V12, [s1, s2], room.get)[PL] == "$P3"
    assert resolve_state(V12_WITH_V2, [s1, s2], room.get)[PL] == "$P1"


def test_v2_1_starts_from_the_create_event_not_the_unconflicted_state() -> None:
    # Both forks have bob demoted (PD, unconflicted); one also has a topic bob set
    # while he still had power (cited P1), the other alice's older topic.
    room = Room("12")
    room.start()
    p1 = Spec(ALICE, "m.room.power_levels", room.power_levels({BOB: 50}), "")
    room.build("P1", p1, ["$START"])
    room.build("TA", Spec(ALICE, "m.room.topic", {"topic": "alice"}, ""), ["$P1"], ts=100)
    room.build("TB", Spec(BOB, "m.room.topic", {"topic": "bob"}, ""), ["$P1"], ts=200)
    room.build("PD", Spec(ALICE, "m.room.power_levels", room.power_levels({BOB: 0}), ""), ["$P1"])
    assert "$CREATE" not in room.events["$TB"].auth_event_ids
    start = room.state_after["$START"]
    s1 = {**start, PL: "$PD", TOPIC: "$TA"}
    s2 = {**start, PL: "$PD", TOPIC: "$TB"}
    # v2: bob's topic is checked against the unconflicted PD and fails.
    assert resolve_state(V12_WITH_V2, [s1, s2], room.get)[TOPIC] == "$TA"
    # v2.1: the checks start empty; bob's topic is checked against its own auth
    # events, with the create event found through the room id, and passes; it is
    # later than alice's. PD, unconflicted, is applied last.
    state = resolve_state(V12, [s1, s2], room.get)
    assert state[TOPIC] == "$TB"
    assert state[PL] == "$PD"
    assert state[CREATE] == "$CREATE"


def test_v2_1_unconflicted_state_is_applied_last() -> None:
    # Both forks are at P1; one has a name event citing the newer P2 (alice raised
    # bob), so P2 is in the auth difference and is replayed: it passes and becomes the
    # partially resolved power levels, and bob's name, checked against it, passes.
    # Then the unconflicted P1 of both forks is put back over it.
    room, _, _ = v12_room_with_pl_chain()
    name = room.build("N", Spec(BOB, "m.room.name", {"name": "n"}, ""), ["$P2"])
    assert "$P2" in name.auth_event_ids
    start = room.state_after["$START"]
    s1 = {**start, PL: "$P1", ("m.room.name", ""): "$N"}
    s2 = {**start, PL: "$P1"}
    for version in (V12, V12_WITH_V2):
        state = resolve_state(version, [s1, s2], room.get)
        assert state[PL] == "$P1"
        assert state[("m.room.name", "")] == "$N"


def test_v1_is_not_supported() -> None:
    with pytest.raises(ValueError):
        resolve_state(KNOWN_ROOM_VERSIONS["1"], [{}], lambda _id: None)
