"""Our users' memberships in rooms that live on other servers.

Spec: https://spec.matrix.org/v1.19/server-server-api/#joining-rooms

- Join: ``make_join`` (offering every room version we support) on each
  candidate server in turn, fill in and sign the template, ``send_join`` v2;
  the returned state and auth chain are checked in full (signatures, hashes,
  the auth rules of each event against its auth events) before the join is
  written with that state as the state before it.
- Leave or reject an invite of a room we are not in: ``make_leave`` /
  ``send_leave`` v2 through the server that invited us.
- Invite a user of another server: their server countersigns the event
  (``/v2/invite``) before the pipeline writes it.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Iterable
from urllib.parse import quote

from homeserver.errors import MatrixError, forbidden
from homeserver.protocol import ids, signing
from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, StateResAlgorithm
from homeserver.services.clock import now_ms

from federation.client import FederationError
from federation.context import Federation
from federation.inbound import PduRejected

log = logging.getLogger(__name__)

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"
# A join answer for a large room (Matrix HQ) is tens of megabytes.
MAX_SEND_JOIN_BYTES = 200 * 1024 * 1024
SUPPORTED_VERSIONS = [v.identifier for v in KNOWN_ROOM_VERSIONS.values() if v.state_res is not StateResAlgorithm.V1]


def _path(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


class RemoteMembership:
    """What MembershipService asks of federation (explicit wiring: set by federation/app.py)."""

    def __init__(self, fed: Federation):
        self.fed = fed

    @property
    def server_name(self) -> str:
        return self.fed.server_name

    # Joining

    async def join(self, user_id: str, room_id: str, servers: Iterable[str], content: dict[str, Any]) -> Event:
        candidates = [s for s in dict.fromkeys(servers) if s and s != self.server_name]
        if not candidates:
            raise MatrixError(404, "M_NOT_FOUND", "No server to join the room through: give one with 'via'")
        async with self.fed.receiver.joining(room_id):
            return await self._join_through_any(candidates, user_id, room_id, content)

    async def _join_through_any(self, candidates: list[str], user_id: str, room_id: str,
                                content: dict[str, Any]) -> Event:
        last_error: Exception | None = None
        for server in candidates:
            try:
                return await self._join_via(server, user_id, room_id, content)
            except MatrixError as e:
                if e.status == 403 or e.errcode == "M_INCOMPATIBLE_ROOM_VERSION":
                    raise
                last_error = e
            except Exception as e:  # unreachable, bad answer: try the next server
                log.info("join of %s via %s failed: %s", room_id, server, e)
                last_error = e
        if isinstance(last_error, MatrixError):
            raise last_error
        raise MatrixError(502, "M_UNKNOWN", f"Could not join through any server: {last_error}")

    async def _make(self, server: str, kind: str, room_id: str, user_id: str,
                    query: dict[str, Any] | None = None) -> tuple[RoomVersion, dict[str, Any]]:
        try:
            answer = await self.fed.client.get_json(server, f"{V1}/{kind}/{_path(room_id, user_id)}", query)
        except FederationError as e:
            raise _remote_error(e, kind)
        if not isinstance(answer, dict) or not isinstance(answer.get("event"), dict):
            raise MatrixError(502, "M_UNKNOWN", f"{server} gave a bad {kind} answer")
        version = KNOWN_ROOM_VERSIONS.get(answer.get("room_version", "1"))
        if version is None or version.state_res is StateResAlgorithm.V1:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "The room's version is not supported here",
                              room_version=str(answer.get("room_version")))
        return version, answer["event"]

    def _complete(self, template: dict[str, Any], version: RoomVersion, user_id: str, room_id: str,
                  membership: str, content: dict[str, Any]) -> Event:
        if (template.get("type") != "m.room.member" or template.get("state_key") != user_id
                or template.get("sender") != user_id or template.get("room_id") != room_id):
            raise MatrixError(502, "M_UNKNOWN", "The remote server's template is not our membership event")
        event_json = {k: v for k, v in template.items() if k not in ("signatures", "hashes", "unsigned")}
        new_content = dict(content)
        new_content["membership"] = membership
        authoriser = (template.get("content") or {}).get("join_authorised_via_users_server")
        if isinstance(authoriser, str):
            new_content["join_authorised_via_users_server"] = authoriser
        event_json["content"] = new_content
        event_json["origin_server_ts"] = now_ms()
        if version.uses_event_id_in_event:
            event_json["origin"] = self.server_name
            event_json["event_id"] = f"${secrets.token_urlsafe(18)}:{self.server_name}"
        return self.fed.services.pipeline.finish_event(event_json, version)

    async def _join_via(self, server: str, user_id: str, room_id: str, content: dict[str, Any]) -> Event:
        version, template = await self._make(server, "make_join", room_id, user_id, {"ver": SUPPORTED_VERSIONS})
        event = self._complete(template, version, user_id, room_id, "join", content)
        try:
            answer = await self.fed.client.put_json(
                server, f"{V2}/send_join/{_path(room_id, event.event_id)}", event.json,
                max_bytes=MAX_SEND_JOIN_BYTES, timeout=300)
        except FederationError as e:
            raise _remote_error(e, "send_join")
        if not isinstance(answer, dict):
            raise MatrixError(502, "M_UNKNOWN", f"{server} gave a bad send_join answer")
        returned = answer.get("event")
        if isinstance(returned, dict) and version.restricted_join_allowed:
            # A restricted join comes back with the authorising server's signature added.
            event = await self._countersigned(event, returned, version)
        await self._persist_join(server, event, answer, version)
        return event

    async def _countersigned(self, event: Event, returned: dict[str, Any], version: RoomVersion) -> Event:
        try:
            candidate = signing.event_from_pdu({k: v for k, v in returned.items() if k != "unsigned"}, version)
        except ValueError:
            return event
        if candidate.event_id != event.event_id:
            return event
        return candidate

    async def _persist_join(self, server: str, event: Event, answer: dict[str, Any], version: RoomVersion) -> None:
        fed = self.fed
        services = fed.services
        room_id = event.room_id
        state_pdus = answer.get("state")
        chain_pdus = answer.get("auth_chain")
        if not isinstance(state_pdus, list) or not isinstance(chain_pdus, list):
            raise MatrixError(502, "M_UNKNOWN", f"{server} gave a send_join answer without state")
        creator = None
        for pdu in state_pdus:
            if isinstance(pdu, dict) and pdu.get("type") == "m.room.create" and pdu.get("state_key") == "":
                creator = pdu.get("sender")
        if creator is None:
            raise MatrixError(502, "M_UNKNOWN", f"{server} sent a room state without its create event")
        await services.rooms.ensure_room(services.db.pool, room_id, version.identifier, creator, now_ms())
        services.events.remember_room_version(room_id, version)
        async with fed.receiver.room_lock(room_id):
            # Every event is checked (signatures, hash, its auth events) and stored as an outlier.
            parsed = await fed.receiver.store_outliers(server, list(chain_pdus) + list(state_pdus), version,
                                                       room_id=room_id)
            state: dict[StateKey, str] = {}
            for pdu in state_pdus:
                event_id = fed.receiver.event_id_in(pdu, version)
                stored = parsed.get(event_id) if event_id else None
                if stored is not None and stored.is_state():
                    state[stored.state_tuple] = stored.event_id
            accepted = await services.events.get_events(state.values())
            state = {k: v for k, v in state.items() if v in accepted and not accepted[v].internal.get("rejected")}
            if ("m.room.create", "") not in state:
                raise MatrixError(502, "M_UNKNOWN", "The room's create event did not check out")
            await fed.receiver.ensure_auth_events(server, event)
            rejected = await services.pipeline.receive_remote(event, state_before=state)
        if rejected is not None:
            raise forbidden(f"The join does not pass the auth rules against the room's state: {rejected}")

    # Knocking

    async def knock(self, user_id: str, room_id: str, servers: Iterable[str], content: dict[str, Any]) -> Event:
        last: Exception | None = None
        for server in [s for s in dict.fromkeys(servers) if s and s != self.server_name]:
            try:
                version, template = await self._make(server, "make_knock", room_id, user_id,
                                                      {"ver": SUPPORTED_VERSIONS})
                if not version.knock_allowed:
                    raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "The room's version has no knocking",
                                      room_version=version.identifier)
                event = self._complete(template, version, user_id, room_id, "knock", content)
                answer = await self.fed.client.put_json(
                    server, f"{V1}/send_knock/{_path(room_id, event.event_id)}", event.json)
            except MatrixError as e:
                if e.status in (400, 403):
                    raise
                last = e
                continue
            except FederationError as e:
                raise _remote_error(e, "send_knock")
            except Exception as e:
                last = e
                continue
            stripped = answer.get("knock_room_state") if isinstance(answer, dict) else None
            services = self.fed.services
            await services.rooms.ensure_room(services.db.pool, room_id, version.identifier, None, now_ms())
            services.events.remember_room_version(room_id, version)
            await services.pipeline.store_out_of_band_membership(event, {
                "knock_room_state": [s for s in stripped or [] if isinstance(s, dict)], "invited_via": server})
            return event
        raise MatrixError(502, "M_UNKNOWN", f"Could not knock through any server: {last}")

    # Invites of users on other servers

    async def countersign_invite(self, event: Event, stripped_state: list[dict[str, Any]]) -> Event:
        target = event.state_key or ""
        server = ids.server_name_of(target)
        if server is None:
            raise forbidden("Invalid user id")
        body = {"room_version": event.room_version.identifier, "event": event.json,
                "invite_room_state": stripped_state}
        try:
            answer = await self.fed.client.put_json(server, f"{V2}/invite/{_path(event.room_id, event.event_id)}", body)
        except FederationError as e:
            raise _remote_error(e, "invite")
        except Exception as e:
            raise MatrixError(502, "M_UNKNOWN", f"Could not reach {server}: {e}")
        signed = answer.get("event") if isinstance(answer, dict) else None
        if not isinstance(signed, dict):
            raise MatrixError(502, "M_UNKNOWN", f"{server} did not return the invite")
        try:
            invite = await self.fed.receiver.parse_and_verify(signed, event.room_version)
        except PduRejected as e:
            raise MatrixError(502, "M_UNKNOWN", f"{server} returned a bad invite: {e}")
        if invite.event_id != event.event_id:
            raise MatrixError(502, "M_UNKNOWN", f"{server} changed the invite")
        if server not in (invite.json.get("signatures") or {}):
            raise MatrixError(502, "M_UNKNOWN", f"{server} did not sign the invite")
        return invite

    # Leaving (or refusing) a room we are not in

    async def leave_out_of_band(self, user_id: str, room_id: str, content: dict[str, Any]) -> Event:
        membership = await self.fed.services.state.get_membership(room_id, user_id)
        if membership is None:
            raise forbidden("You are not invited to this room")
        member_event = await self.fed.services.events.get_event(membership[1])
        servers = []
        if member_event is not None:
            servers.append(member_event.internal.get("invited_via") or ids.server_name_of(member_event.sender))
        servers.append(ids.server_name_of(room_id))
        last: Exception | None = None
        for server in [s for s in dict.fromkeys(servers) if s and s != self.server_name]:
            try:
                version, template = await self._make(server, "make_leave", room_id, user_id)
                event = self._complete(template, version, user_id, room_id, "leave", content)
                await self.fed.client.put_json(server, f"{V2}/send_leave/{_path(room_id, event.event_id)}",
                                               event.json)
            except (MatrixError, FederationError, Exception) as e:  # try the next, else leave locally
                log.info("remote leave of %s via %s failed: %s", room_id, server, e)
                last = e
                continue
            await self.fed.services.pipeline.store_out_of_band_membership(event, {})
            return event
        # Nobody to tell: still end the invite here, with a leave of our own making.
        log.info("rejecting the invite to %s locally only (%s)", room_id, last)
        version = await self.fed.services.events.get_room_version(room_id)
        assert version is not None
        event_json = {
            "type": "m.room.member", "room_id": room_id, "sender": user_id, "state_key": user_id,
            "content": {**content, "membership": "leave"}, "origin_server_ts": now_ms(), "depth": 1,
            "prev_events": [], "auth_events": [],
        }
        event = self.fed.services.pipeline.finish_event(event_json, version)
        await self.fed.services.pipeline.store_out_of_band_membership(event, {})
        return event


def _remote_error(e: Any, what: str) -> MatrixError:
    body = e.body if isinstance(getattr(e, "body", None), dict) else {}
    errcode = body.get("errcode") or "M_UNKNOWN"
    status = e.status if e.status in (400, 403, 404) else 502
    message = body.get("error") or f"The remote server refused {what} ({e.status})"
    extra = {"room_version": body["room_version"]} if "room_version" in body else {}
    return MatrixError(status, errcode, message, **extra)


class RemoteDirectory:
    """Aliases of other servers: GET /query/directory on the alias's server."""

    def __init__(self, fed: Federation):
        self.fed = fed

    async def lookup(self, alias: str) -> tuple[str, list[str]]:
        server = ids.server_name_of(alias)
        try:
            answer = await self.fed.client.get_json(server, f"{V1}/query/directory", {"room_alias": alias})
        except FederationError as e:
            if e.status == 404:
                raise MatrixError(404, "M_NOT_FOUND", "Room alias not found")
            raise _remote_error(e, "the alias lookup")
        except Exception as e:
            raise MatrixError(504, "M_UNKNOWN", f"Could not reach {server}: {e}")
        room_id = answer.get("room_id") if isinstance(answer, dict) else None
        servers = answer.get("servers") if isinstance(answer, dict) else None
        if not isinstance(room_id, str) or not ids.is_valid_room_id(room_id):
            raise MatrixError(502, "M_UNKNOWN", f"{server} gave a bad alias answer")
        return room_id, [s for s in servers if isinstance(s, str)] if isinstance(servers, list) else [server]
