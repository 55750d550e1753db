"""A scriptable, possibly malicious federation peer for the inbound PDU tests.

`FakePeer` is a real aiohttp server on 127.0.0.1 over HTTPS (self-signed
certificate), named "127.0.0.1:<port>", with its own ed25519 key. It serves
`/_matrix/key/v2/server` and what a receiving server asks of an origin
(`/event`, `/event_auth`, `/get_missing_events`, `/state_ids`), answering from
the events it built, unless a test overrides an answer. It builds, hashes and
signs events itself (`PeerRoom.build`), joins rooms through make_join/send_join,
invites our users to rooms of its own and lets them join those (it serves
make_join/send_join too), and sends X-Matrix signed transactions. Nothing here is our server's code
beyond the pure signing helpers of homeserver/protocol.
"""

from __future__ import annotations

import itertools
import json
import ssl
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from yarl import URL

from homeserver.protocol import signing
from homeserver.protocol.auth_rules import auth_types_for_event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from homeserver.protocol.server_keys import server_keys_object
from homeserver.protocol.xmatrix import sign_request
from homeserver.services.clock import now_ms
from tests.federation.tls_cert import make_self_signed_certificate

FED = "/_matrix/federation/v1"
FED2 = "/_matrix/federation/v2"
StateKey = tuple[str, str]

_txn_ids = itertools.count()


class PeerResponse:
    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body

    def __repr__(self) -> str:
        return f"<PeerResponse {self.status} {self.body!r}>"

    def __getitem__(self, key: str) -> Any:
        return self.body[key]

    @property
    def errcode(self) -> str | None:
        return self.body.get("errcode") if isinstance(self.body, dict) else None


def event_id_of(pdu: dict[str, Any], version: RoomVersion) -> str:
    return signing.compute_event_id({k: v for k, v in pdu.items() if k != "unsigned"}, version)


class PeerRoom:
    """The peer's view of one room: the events it knows, the state after each, its tip."""

    def __init__(self, peer: "FakePeer", room_id: str, version: RoomVersion):
        self.peer = peer
        self.room_id = room_id
        self.version = version
        self.events: dict[str, dict[str, Any]] = {}
        self.state_after: dict[str, dict[StateKey, str]] = {}
        self.tip: list[str] = []

    def remember(self, pdu: dict[str, Any], state_before: dict[StateKey, str] | None = None) -> str:
        """Keep an event (served by /event, /event_auth, ...); its state after from its prev events."""
        event_id = event_id_of(pdu, self.version)
        self.events[event_id] = pdu
        peer_events = self.peer.events
        peer_events[event_id] = pdu
        if state_before is None:
            state_before = self.state_at(self._ids(pdu.get("prev_events", [])))
        state = dict(state_before)
        if isinstance(pdu.get("state_key"), str):
            state[(pdu["type"], pdu["state_key"])] = event_id
        self.state_after[event_id] = state
        return event_id

    def _ids(self, refs: list[Any]) -> list[str]:
        return [r[0] if isinstance(r, list) else r for r in refs]

    def state_at(self, prev_ids: list[str]) -> dict[StateKey, str]:
        """The state after these events, merged in order (enough for the tests' simple DAGs)."""
        state: dict[StateKey, str] = {}
        for prev in prev_ids:
            state.update(self.state_after.get(prev, {}))
        return state

    @property
    def state(self) -> dict[StateKey, str]:
        return self.state_at(self.tip)

    def build(
        self, sender: str, event_type: str, content: dict[str, Any], *, state_key: str | None = None,
        prev_events: list[str] | None = None, auth_events: list[str] | None = None, depth: int | None = None,
        extra: dict[str, Any] | None = None, key: Any = None, sign_as: str | None = None,
        advance: bool = True, sign: bool = True, event_id_server: str | None = None,
    ) -> dict[str, Any]:
        """A hashed and signed PDU of this room, remembered (and made the tip unless advance=False).

        Defaults: prev_events the tip, auth_events chosen from the state there by the
        spec's auth events selection, depth one more than the deepest prev event.
        ``extra`` sets or overrides top-level keys before hashing.
        """
        prevs = list(self.tip) if prev_events is None else prev_events
        state = self.state_at(prevs)
        if auth_events is None:
            keys = auth_types_for_event(self.version, event_type, sender, state_key, content)
            auth_events = [state[k] for k in keys if k in state]
        if depth is None:
            depth = max((self.events[p]["depth"] for p in prevs if p in self.events), default=0) + 1
        pdu: dict[str, Any] = {
            "type": event_type, "sender": sender, "content": content,
            "origin_server_ts": now_ms(), "depth": depth,
        }
        if not (event_type == "m.room.create" and self.version.room_id_from_create_event):
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if self.version.event_format is EventFormat.V1:
            server = event_id_server or self.peer.server_name
            pdu["event_id"] = f"${next(_txn_ids)}x{now_ms()}:{server}"
            pdu["prev_events"] = [[p, {}] for p in prevs]
            pdu["auth_events"] = [[a, {}] for a in auth_events]
        else:
            pdu["prev_events"] = prevs
            pdu["auth_events"] = auth_events
        if extra:
            pdu.update(extra)
        signing.add_content_hash(pdu)
        if sign:
            signing.sign_event(pdu, self.version, sign_as or self.peer.server_name, key or self.peer.key)
        event_id = self.remember(pdu)
        if advance:
            self.tip = [event_id]
        return pdu

    def message(self, sender: str, body: str, **kwargs: Any) -> dict[str, Any]:
        return self.build(sender, "m.room.message", {"msgtype": "m.text", "body": body}, **kwargs)

    def event_id(self, pdu: dict[str, Any]) -> str:
        return event_id_of(pdu, self.version)

    def auth_chain(self, event_ids: list[str]) -> list[dict[str, Any]]:
        """The auth chain of events, from what the peer knows, each event once."""
        seen: dict[str, dict[str, Any]] = {}
        todo = list(event_ids)
        while todo:
            event_id = todo.pop()
            pdu = self.peer.events.get(event_id)
            if pdu is None:
                continue
            for auth_id in self._ids(pdu.get("auth_events", [])):
                if auth_id not in seen and auth_id in self.peer.events:
                    seen[auth_id] = self.peer.events[auth_id]
                    todo.append(auth_id)
        return list(seen.values())


class FakePeer:
    """The peer server. ``start()``, then ``close()``; ``target`` is the server it talks to."""

    def __init__(self, directory: Path, target_url: str, target_name: str, key_version: str = "peer1"):
        self.directory = directory
        self.target_url = target_url.rstrip("/")
        self.target_name = target_name
        self.key = signing.generate_signing_key(key_version)
        self.port = 0
        self.events: dict[str, dict[str, Any]] = {}
        self.rooms: dict[str, PeerRoom] = {}
        # (method, path with query) of every request the peer was sent.
        self.requests: list[tuple[str, str]] = []
        # Transactions our server sent here: (txn id, body).
        self.transactions: list[tuple[str, dict[str, Any]]] = []
        # Answers a test puts in place of the computed ones: event id -> JSON body.
        self.event_overrides: dict[str, Any] = {}
        self.event_auth_overrides: dict[str, Any] = {}
        self.state_ids_overrides: dict[str, Any] = {}
        self.missing_events_answer: Callable[[dict[str, Any]], Any] | None = None
        # Awaited in send_join once the join is the room's tip, before the answer goes back.
        self.on_send_join: Callable[[PeerRoom, dict[str, Any]], Awaitable[None]] | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def server_name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def count(self, path_prefix: str) -> int:
        return sum(1 for _, path in self.requests if path.startswith(path_prefix))

    # --- Lifecycle ------------------------------------------------------------------------

    async def start(self) -> "FakePeer":
        pair = make_self_signed_certificate(self.directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(pair.certificate), str(pair.private_key))
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return self

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- Serving --------------------------------------------------------------------------

    def keys_response(self) -> dict[str, Any]:
        body = server_keys_object(
            self.server_name, {signing.key_id(self.key): signing.verify_key_base64(self.key)}, {},
            now_ms() + 3600_000,
        )
        return signing.sign_json(body, self.server_name, self.key)

    def _room_of(self, request: web.Request) -> PeerRoom:
        room = self.rooms.get(request.match_info["room_id"])
        if room is None:
            raise web.HTTPNotFound(text=json.dumps({"errcode": "M_NOT_FOUND", "error": "no room"}),
                                   content_type="application/json")
        return room

    def _app(self) -> web.Application:
        routes = web.RouteTableDef()

        @routes.get("/_matrix/key/v2/server")
        async def keys(request: web.Request) -> web.Response:
            return web.json_response(self.keys_response())

        @routes.put(FED + "/send/{txn_id}")
        async def send(request: web.Request) -> web.Response:
            self.transactions.append((request.match_info["txn_id"], await request.json()))
            return web.json_response({"pdus": {}})

        @routes.get(FED + "/event/{event_id}")
        async def event(request: web.Request) -> web.Response:
            event_id = request.match_info["event_id"]
            if event_id in self.event_overrides:
                return web.json_response(self.event_overrides[event_id])
            pdu = self.events.get(event_id)
            if pdu is None:
                return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown"}, status=404)
            return web.json_response({"origin": self.server_name, "origin_server_ts": now_ms(), "pdus": [pdu]})

        @routes.get(FED + "/event_auth/{room_id}/{event_id}")
        async def event_auth(request: web.Request) -> web.Response:
            event_id = request.match_info["event_id"]
            if event_id in self.event_auth_overrides:
                return web.json_response(self.event_auth_overrides[event_id])
            room = self._room_of(request)
            return web.json_response({"auth_chain": room.auth_chain([event_id])})

        @routes.post(FED + "/get_missing_events/{room_id}")
        async def get_missing_events(request: web.Request) -> web.Response:
            body = await request.json()
            if self.missing_events_answer is not None:
                return web.json_response(self.missing_events_answer(body))
            room = self._room_of(request)
            earliest = set(body.get("earliest_events", []))
            limit = int(body.get("limit", 10))
            found: dict[str, dict[str, Any]] = {}
            frontier = list(body.get("latest_events", []))
            # Breadth first from the latest events back to the earliest, newest first.
            while frontier and len(found) < limit:
                next_frontier = []
                for event_id in frontier:
                    pdu = room.events.get(event_id)
                    if pdu is None:
                        continue
                    for prev in room._ids(pdu["prev_events"]):
                        if prev in earliest or prev in found or prev not in room.events:
                            continue
                        if len(found) < limit:
                            found[prev] = room.events[prev]
                            next_frontier.append(prev)
                frontier = next_frontier
            events = sorted(found.values(), key=lambda p: p["depth"])
            return web.json_response({"events": events})

        @routes.get(FED + "/state_ids/{room_id}")
        async def state_ids(request: web.Request) -> web.Response:
            event_id = request.query.get("event_id", "")
            if event_id in self.state_ids_overrides:
                return web.json_response(self.state_ids_overrides[event_id])
            room = self._room_of(request)
            pdu = room.events.get(event_id)
            if pdu is None:
                return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown"}, status=404)
            # The state before the event, as Synapse answers.
            state = room.state_at(room._ids(pdu["prev_events"]))
            chain = room.auth_chain(list(state.values()))
            return web.json_response({
                "pdu_ids": list(state.values()), "auth_chain_ids": [room.event_id(p) for p in chain],
            })

        @routes.get(FED + "/make_join/{room_id}/{user_id}")
        async def make_join(request: web.Request) -> web.Response:
            room = self._room_of(request)
            user_id = request.match_info["user_id"]
            content = {"membership": "join"}
            prevs = list(room.tip)
            state = room.state_at(prevs)
            keys = auth_types_for_event(room.version, "m.room.member", user_id, user_id, content)
            auth = [state[k] for k in keys if k in state]
            if room.version.event_format is EventFormat.V1:
                prev_refs, auth_refs = [[p, {}] for p in prevs], [[a, {}] for a in auth]
            else:
                prev_refs, auth_refs = prevs, auth
            template = {
                "type": "m.room.member", "sender": user_id, "state_key": user_id, "content": content,
                "room_id": room.room_id, "prev_events": prev_refs, "auth_events": auth_refs,
                "depth": max(room.events[p]["depth"] for p in prevs) + 1, "origin_server_ts": now_ms(),
            }
            return web.json_response({"room_version": room.version.identifier, "event": template})

        @routes.put(FED2 + "/send_join/{room_id}/{event_id}")
        async def send_join(request: web.Request) -> web.Response:
            room = self._room_of(request)
            pdu = await request.json()
            state = room.state_at(room._ids(pdu["prev_events"]))
            room.tip = [room.remember(pdu)]
            if self.on_send_join is not None:
                await self.on_send_join(room, pdu)
            return web.json_response({
                "origin": self.server_name, "event": pdu, "members_omitted": False,
                "state": [room.events[i] for i in state.values()],
                "auth_chain": room.auth_chain(list(state.values()) + [room.event_id(pdu)]),
                "servers_in_room": [self.server_name],
            })

        @web.middleware
        async def log_requests(request: web.Request, handler):
            self.requests.append((request.method, request.path_qs))
            return await handler(request)

        app = web.Application(middlewares=[log_requests], client_max_size=10 * 1024 * 1024)
        app.add_routes(routes)
        return app

    # --- Talking to our server ------------------------------------------------------------

    async def request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None, *,
        destination: str | None = None, origin: str | None = None, key: Any = None, signed: bool = True,
        raw: bytes | None = None,
    ) -> PeerResponse:
        """A request to our server, X-Matrix signed as this peer (or as told)."""
        assert self._session is not None
        target = path + ("?" + urlencode(query, doseq=True) if query else "")
        headers = {}
        if body is not None or raw is not None:
            headers["Content-Type"] = "application/json"
        if signed:
            headers["Authorization"] = sign_request(
                key or self.key, method, target, origin or self.server_name,
                destination or self.target_name, body,
            )
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        # Sent exactly as signed: no re-quoting of the path.
        url = URL(self.target_url + target, encoded=True)
        async with self._session.request(method, url, data=data, headers=headers) as resp:
            text = await resp.text()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text
            return PeerResponse(resp.status, parsed)

    async def send_transaction(
        self, pdus: list[Any] = (), edus: list[Any] = (), txn_id: str | None = None, **kwargs: Any
    ) -> PeerResponse:
        txn_id = txn_id or f"txn{next(_txn_ids)}"
        body = {"origin": self.server_name, "origin_server_ts": now_ms(), "pdus": list(pdus), "edus": list(edus)}
        return await self.request("PUT", f"{FED}/send/{quote(txn_id, safe='')}", body, **kwargs)

    async def invite(self, room: PeerRoom, sender: str, user_id: str) -> dict[str, Any]:
        """Invite one of our users to a room of the peer's through /v2/invite; the countersigned PDU."""
        pdu = room.build(sender, "m.room.member", {"membership": "invite"}, state_key=user_id)
        event_id = room.event_id(pdu)
        answer = await self.request(
            "PUT", f"{FED2}/invite/{quote(room.room_id, safe='')}/{quote(event_id, safe='')}",
            {"room_version": room.version.identifier, "event": pdu, "invite_room_state": []})
        assert answer.status == 200, answer
        countersigned = answer["event"]
        room.remember(countersigned)
        return countersigned

    def new_room(self, creator: str, version: RoomVersion) -> PeerRoom:
        """A room of the peer's own: its create event, the creator's join, power levels."""
        provisional = f"!own{next(_txn_ids)}:{self.server_name}"
        room = PeerRoom(self, provisional, version)
        content: dict[str, Any] = {"room_version": version.identifier}
        if not version.implicit_room_creator:
            content["creator"] = creator
        create = room.build(creator, "m.room.create", content, state_key="", prev_events=[], auth_events=[])
        if version.room_id_from_create_event:
            room.room_id = "!" + room.event_id(create)[1:]
        self.rooms[room.room_id] = room
        room.build(creator, "m.room.member", {"membership": "join"}, state_key=creator)
        levels: dict[str, Any] = {"users": {} if version.privileged_creators else {creator: 100}}
        room.build(creator, "m.room.power_levels", levels, state_key="")
        return room

    async def join(self, room_id: str, user_id: str, versions: tuple[str, ...] = tuple(KNOWN_ROOM_VERSIONS)) -> PeerRoom:
        """Join one of our rooms through make_join and send_join; the peer's room view."""
        path_ids = f"{quote(room_id, safe='')}/{quote(user_id, safe='')}"
        made = await self.request("GET", f"{FED}/make_join/{path_ids}", query={"ver": list(versions)})
        assert made.status == 200, made
        version = KNOWN_ROOM_VERSIONS[made["room_version"]]
        pdu = dict(made["event"])
        pdu["origin_server_ts"] = now_ms()
        if version.event_format is EventFormat.V1:
            pdu["event_id"] = f"${next(_txn_ids)}join:{self.server_name}"
        signing.add_content_hash(pdu)
        signing.sign_event(pdu, version, self.server_name, self.key)
        event_id = event_id_of(pdu, version)
        sent = await self.request("PUT", f"{FED2}/send_join/{quote(room_id, safe='')}/{quote(event_id, safe='')}", pdu)
        assert sent.status == 200, sent
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = PeerRoom(self, room_id, version)
        state: dict[StateKey, str] = {}
        for other in sent["auth_chain"] + sent["state"]:
            other_id = room.remember(other, state_before={})
            if other in sent["state"]:
                state[(other["type"], other["state_key"])] = other_id
        room.remember(sent["event"], state_before=state)
        room.tip = [event_id]
        return room
