"""The m.room.member rule: rule 5 in room versions 1-5 and 12, rule 4 in 6-11.

Spec: https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.protocol.auth_common import AuthError, RuleNumbers
from homeserver.protocol.events import Event
from homeserver.protocol.power_levels import (
    CREATE_KEY,
    AuthState,
    get_named_level,
    get_user_power_level,
    original_creator,
)


def check_membership(event: Event, auth_state: AuthState, n: RuleNumbers) -> None:
    """Allow (return) or refuse (raise AuthError) an m.room.member event."""
    rule = n.member
    membership = event.content.get("membership")
    target = event.state_key
    # Rule x.1: a member event needs a state_key and a membership.
    if target is None or "membership" not in event.content:
        raise AuthError(f"rule {rule}.1: m.room.member without state_key or membership")
    # Rule x.2 (v8+): join_authorised_via_users_server's server must have signed
    # the event; signatures are checked by the caller.

    if membership == "join":
        _check_join(event, auth_state, n)
    elif membership == "invite":
        _check_invite(event, auth_state, n)
    elif membership == "leave":
        _check_leave(event, auth_state, n)
    elif membership == "ban":
        _check_ban(event, auth_state, n)
    elif membership == "knock" and event.room_version.knock_allowed:
        _check_knock(event, auth_state, n)
    else:
        raise AuthError(f"rule {rule}.{n.unknown_membership}: unknown membership {membership!r}")


def _membership(auth_state: AuthState, user_id: str) -> str | None:
    member = auth_state.get(("m.room.member", user_id))
    return member.membership if member is not None else None


def _join_rule(auth_state: AuthState) -> str:
    # With no m.room.join_rules event the room is invite-only.
    join_rules = auth_state.get(("m.room.join_rules", ""))
    if join_rules is None:
        return "invite"
    join_rule = join_rules.content.get("join_rule")
    return join_rule if isinstance(join_rule, str) else "invite"


def _check_join(event: Event, auth_state: AuthState, n: RuleNumbers) -> None:
    room_version = event.room_version
    sub = f"{n.member}.{n.join}"
    create = auth_state.get(CREATE_KEY)
    # .1: the creator's own join right after the create event.
    prev_events = event.prev_event_ids
    if (
        create is not None
        and len(prev_events) == 1
        and prev_events[0] == create.event_id
        and event.state_key == original_creator(create)
    ):
        return
    # .2
    if event.sender != event.state_key:
        raise AuthError(f"rule {sub}.2: sender cannot join another user")
    current = _membership(auth_state, event.sender)
    # .3
    if current == "ban":
        raise AuthError(f"rule {sub}.3: sender is banned")
    join_rule = _join_rule(auth_state)
    # .4: invite (and, from v7, knock) rooms admit the invited and the joined.
    if join_rule == "invite" or (join_rule == "knock" and room_version.knock_allowed):
        if current in ("invite", "join"):
            return
        # Not allowed by .4, and no later sub-rule matches: "otherwise, reject".
        raise AuthError(
            f"rule {sub}.{n.join_otherwise}: join rule is {join_rule} and sender is not invited"
        )
    # .5 (v8+): restricted (and, from v10, knock_restricted) rooms.
    if (join_rule == "restricted" and room_version.restricted_join_allowed) or (
        join_rule == "knock_restricted" and room_version.knock_restricted_allowed
    ):
        if current in ("invite", "join"):
            return
        authoriser = event.content.get("join_authorised_via_users_server")
        if not isinstance(authoriser, str) or _membership(auth_state, authoriser) != "join":
            raise AuthError(
                f"rule {sub}.5.2: join_authorised_via_users_server is not a joined member"
            )
        if get_user_power_level(authoriser, auth_state) < get_named_level(auth_state, "invite"):
            raise AuthError(f"rule {sub}.5.2: join_authorised_via_users_server cannot invite")
        return
    if join_rule == "public":
        return
    raise AuthError(
        f"rule {sub}.{n.join_otherwise}: join rule {join_rule!r} does not admit the sender"
    )


def _check_invite(event: Event, auth_state: AuthState, n: RuleNumbers) -> None:
    sub = f"{n.member}.{n.invite}"
    target = event.state_key
    assert target is not None
    if "third_party_invite" in event.content:
        _check_third_party_invite(event, auth_state, f"{sub}.1")
        return
    # .2
    if _membership(auth_state, event.sender) != "join":
        raise AuthError(f"rule {sub}.2: sender is not joined")
    # .3
    if _membership(auth_state, target) in ("join", "ban"):
        raise AuthError(f"rule {sub}.3: target is joined or banned")
    # .4, .5
    if get_user_power_level(event.sender, auth_state) < get_named_level(auth_state, "invite"):
        raise AuthError(f"rule {sub}.5: sender is below the invite level")


def _check_third_party_invite(event: Event, auth_state: AuthState, sub: str) -> None:
    if _membership(auth_state, event.state_key or "") == "ban":
        raise AuthError(f"rule {sub}.1: target is banned")
    invite = event.content.get("third_party_invite")
    signed = invite.get("signed") if isinstance(invite, dict) else None
    if not isinstance(signed, dict):
        raise AuthError(f"rule {sub}.2: third_party_invite has no signed object")
    if "mxid" not in signed or "token" not in signed:
        raise AuthError(f"rule {sub}.3: signed lacks mxid or token")
    if signed["mxid"] != event.state_key:
        raise AuthError(f"rule {sub}.4: signed.mxid does not match state_key")
    token = signed["token"]
    third_party_invite = (
        auth_state.get(("m.room.third_party_invite", token)) if isinstance(token, str) else None
    )
    if third_party_invite is None:
        raise AuthError(f"rule {sub}.5: no m.room.third_party_invite for the token")
    if third_party_invite.sender != event.sender:
        raise AuthError(f"rule {sub}.6: sender did not send the m.room.third_party_invite")
    if _signed_by_any(signed, _public_keys(third_party_invite.content)):
        return
    raise AuthError(f"rule {sub}.8: no signature in signed matches the invite's public keys")


def _public_keys(content: Mapping[str, Any]) -> list[str]:
    keys = []
    if isinstance(content.get("public_key"), str):
        keys.append(content["public_key"])
    listed = content.get("public_keys")
    if isinstance(listed, list):
        for entry in listed:
            if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                keys.append(entry["public_key"])
    return keys


def _signed_by_any(signed: dict[str, Any], public_keys: list[str]) -> bool:
    """Rule x.x.1.7: does any ed25519 signature in ``signed`` verify with any key?

    The keys are unpadded base64 (standard or URL-safe) in the state event, so
    this needs no fetching; whether the identity server has since revoked a key
    (``key_validity_url``) is not part of the rule.
    """
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    for public_key in public_keys:
        try:
            key_bytes = decode_base64(public_key)
        except (ValueError, UnicodeError):
            continue
        for server, by_key_id in signatures.items():
            if not isinstance(by_key_id, dict):
                continue
            for key_id in by_key_id:
                if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                    continue
                try:
                    verify_key = decode_verify_key_bytes(key_id, key_bytes)
                    verify_signed_json(signed, server, verify_key)
                except (SignatureVerifyException, ValueError, TypeError, KeyError):
                    continue
                return True
    return False


def _check_leave(event: Event, auth_state: AuthState, n: RuleNumbers) -> None:
    sub = f"{n.member}.{n.leave}"
    target = event.state_key
    assert target is not None
    sender_membership = _membership(auth_state, event.sender)
    # .1: leaving yourself (or rejecting an invite, or, from v7, rescinding a knock).
    if event.sender == target:
        may_leave = {"invite", "join"}
        if event.room_version.knock_allowed:
            may_leave.add("knock")
        if sender_membership in may_leave:
            return
        raise AuthError(f"rule {sub}.1: sender is not invited or joined")
    # .2
    if sender_membership != "join":
        raise AuthError(f"rule {sub}.2: sender is not joined")
    sender_level = get_user_power_level(event.sender, auth_state)
    # .3: unbanning needs the ban level.
    ban_level = get_named_level(auth_state, "ban")
    if _membership(auth_state, target) == "ban" and sender_level < ban_level:
        raise AuthError(f"rule {sub}.3: sender is below the ban level and the target is banned")
    # .4, .5: kicking needs the kick level and a higher level than the target.
    if sender_level < get_named_level(auth_state, "kick"):
        raise AuthError(f"rule {sub}.5: sender is below the kick level")
    if get_user_power_level(target, auth_state) >= sender_level:
        raise AuthError(f"rule {sub}.5: target's power level is not below the sender's")


def _check_ban(event: Event, auth_state: AuthState, n: RuleNumbers) -> None:
    sub = f"{n.member}.{n.ban}"
    target = event.state_key
    assert target is not None
    # .1
    if _membership(auth_state, event.sender) != "join":
        raise AuthError(f"rule {sub}.1: sender is not joined")
    # .2, .3
    sender_level = get_user_power_level(event.sender, auth_state)
    if sender_level < get_named_level(auth_state, "ban"):
        raise AuthError(f"rule {sub}.3: sender is below the ban level")
    if get_user_power_level(target, auth_state) >= sender_level:
        raise AuthError(f"rule {sub}.3: target's power level is not below the sender's")


def _check_knock(event: Event, auth_state: AuthState, n: RuleNumbers) -> None:
    sub = f"{n.member}.{n.knock}"
    join_rule = _join_rule(auth_state)
    # .1
    knockable = join_rule == "knock" or (
        join_rule == "knock_restricted" and event.room_version.knock_restricted_allowed
    )
    if not knockable:
        raise AuthError(f"rule {sub}.1: join rule {join_rule!r} does not allow knocking")
    # .2
    if event.sender != event.state_key:
        raise AuthError(f"rule {sub}.2: sender cannot knock for another user")
    # .3, .4
    current = _membership(auth_state, event.sender)
    if current in ("ban", "invite", "join"):
        raise AuthError(f"rule {sub}.4: sender's membership is {current}")
