"""What a resident server does when other servers join, leave, knock or invite through it.

Spec: https://spec.matrix.org/v1.19/server-server-api/#joining-rooms (and the
sections on leaving, knocking and inviting that follow it).

make_* hands out an event template that the asking server fills in and signs;
send_* takes the signed event through the one pipeline (federation/inbound.py,
then ``EventPipeline.receive_remote``) and sends it on to the other servers of
the room. An invite of one of our users is countersigned and kept out of band.
The HTTP side is federation/membership_routes.py.
"""

from __future__ import annotations

from typing import Any, Sequence

from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.protocol import ids, signing
from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.services.clock import now_ms
from homeserver.services.pipeline import EventDraft

from federation.context import Federation
from federation.inbound import PduRejected


class ResidentMembership:
    def __init__(self, fed: Federation):
        self.fed = fed
        self.services = fed.services

    async def resident_room_version(self, room_id: str, origin: str) -> RoomVersion:
        """The room's version, if the origin may ask and we are in the room; checked before the body is read."""
        await self.fed.check_acl(room_id, origin)
        version = await self.services.events.get_room_version(room_id)
        if version is None or not await self.fed.is_resident(room_id):
            raise not_found("This server is not in that room")
        return version

    async def make_membership(
        self, origin: str, room_id: str, user_id: str, membership: str, supported_versions: Sequence[str],
    ) -> dict[str, Any]:
        """GET /make_join, /make_leave, /make_knock: the template of the member event."""
        version = await self.resident_room_version(room_id, origin)
        if membership in ("join", "knock") and version.identifier not in supported_versions:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION",
                              f"The room is of version {version.identifier}, not among those given",
                              room_version=version.identifier)
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            authoriser = await self.services.membership.restricted.authoriser(room_id, user_id)
            if authoriser is not None:
                content["join_authorised_via_users_server"] = authoriser
        _, template, _ = await self.services.pipeline.template(
            room_id, EventDraft("m.room.member", user_id, content, state_key=user_id))
        return {"room_version": version.identifier, "event": template}

    async def send_membership(
        self, origin: str, version: RoomVersion, room_id: str, event_id: str, membership: str,
        body: dict[str, Any],
    ) -> Event:
        """PUT /send_join, /send_leave, /send_knock: the signed event, accepted and sent on."""
        fed = self.fed
        try:
            event = await fed.receiver.parse_and_verify(body, version)
        except PduRejected as e:
            raise bad_json(str(e))
        if event.event_id != event_id or event.room_id != room_id:
            raise bad_json("The event id or room id does not match the path")
        if (event.type != "m.room.member" or event.membership != membership or event.state_key != event.sender
                or ids.server_name_of(event.sender) != origin):
            raise bad_json(f"Expected a {membership} of a user of {origin}")
        if membership == "join":
            authoriser = event.content.get("join_authorised_via_users_server")
            if isinstance(authoriser, str) and ids.server_name_of(authoriser) == fed.server_name:
                # Our user authorised a restricted join: our signature is part of the event.
                signing.sign_event(event.json, version, fed.server_name, self.services.signing_key)
        async with fed.receiver.room_lock(room_id):
            await fed.receiver.ensure_auth_events(origin, event)
            rejected = await self.services.pipeline.receive_remote(event)
        if rejected is not None:
            raise forbidden(f"The {membership} is not allowed: {rejected}")
        stored = await self.services.events.get_event(event.event_id)
        # The resident server tells the rest of the room (the asking server has it).
        await fed.sender.send_pdu(stored or event, [s for s in await fed.servers_in_room(room_id) if s != origin])
        return stored or event

    async def join_response(self, event: Event) -> dict[str, Any]:
        """The room as the joining server needs it: the state before the join and its auth chain."""
        state_before = await self.services.state.get_state(event.internal.get("state_group_before"))
        state_ids = list(state_before.values())
        state_events = await self.services.events.get_events(state_ids)
        auth_chain_ids = await self.fed.graph.auth_chain_ids(state_ids + [event.event_id])
        auth_events = await self.services.events.get_events(auth_chain_ids)
        servers = await self.fed.servers_in_room(event.room_id)
        return {
            "origin": self.fed.server_name,
            "state": [e.json for e in state_events.values()],
            "auth_chain": [e.json for e in auth_events.values()],
            "event": event.json,
            # omit_members (MSC3706) is accepted, but the full state is always sent.
            "members_omitted": False,
            "servers_in_room": servers,
        }

    async def knock_state(self, room_id: str) -> list[dict[str, Any]]:
        return await self.fed.stripped_state(room_id)

    async def receive_invite(self, origin: str, room_id: str, event_id: str, body: dict[str, Any]) -> Event:
        """PUT /invite: an invite of one of our users to a room on another server, countersigned and kept."""
        fed = self.fed
        version = KNOWN_ROOM_VERSIONS.get(body.get("room_version", "1"))
        if version is None:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "Unsupported room version",
                              room_version=str(body.get("room_version")))
        pdu = body.get("event")
        try:
            event = await fed.receiver.parse_and_verify(pdu, version)
        except PduRejected as e:
            raise bad_json(str(e))
        if event.event_id != event_id or event.room_id != room_id:
            raise bad_json("The event id or room id does not match the path")
        target = event.state_key
        if (event.type != "m.room.member" or event.membership != "invite" or not isinstance(target, str)
                or ids.server_name_of(target) != fed.server_name or ids.server_name_of(event.sender) != origin):
            raise bad_json("Expected an invite of one of our users by a user of the requesting server")
        user = await self.services.users.get_user(target)
        if user is None or user.deactivated:
            raise not_found("No such user")
        await fed.check_acl(event.room_id, origin)
        signing.sign_event(event.json, version, fed.server_name, self.services.signing_key)
        stripped = body.get("invite_room_state")
        if not isinstance(stripped, list):
            unsigned = pdu.get("unsigned") if isinstance(pdu, dict) else None
            stripped = unsigned.get("invite_room_state", []) if isinstance(unsigned, dict) else []
        stripped = [s for s in stripped if isinstance(s, dict)]
        services = self.services
        await services.rooms.ensure_room(services.db.pool, event.room_id, version.identifier, None, now_ms())
        services.events.remember_room_version(event.room_id, version)
        current = await services.state.get_membership(event.room_id, target)
        if current is None or current[0] != "join":
            await services.pipeline.store_out_of_band_membership(
                event, {"invite_room_state": stripped, "invited_via": origin})
        return event
