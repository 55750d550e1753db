"""Server keys: our own key response, the notary endpoints, and the KeyRing that finds
other servers' keys and checks signatures with them.

Spec: https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys
The HTTP side of both is federation/key_routes.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import nacl.signing
from aiohttp import web

from homeserver.config import TrustedKeyServer
from homeserver.protocol import signing
from homeserver.protocol.canonical import canonical_json_str, parse_json
from homeserver.protocol.events import Event
from homeserver.protocol.ids import is_valid_server_name
from homeserver.protocol.server_keys import (
    ServerKey,
    ServerKeysError,
    ServerKeysResponse,
    check_notary_signature,
    is_ed25519_key_id,
    min_valid_until_for_event,
    parse_server_keys_response,
    required_signature_servers,
    server_keys_object,
    signature_key_ids,
)
from homeserver.protocol.signing import SignatureError
from homeserver.services.clock import now_ms
from homeserver.services.container import Services
from homeserver.signing_key import OldVerifyKey, load_old_verify_keys
from homeserver.storage.cache import LruCache
from homeserver.storage.server_keys import ServerKeyStore

# KEYRING is also imported from here (federation/auth.py); the routes live in key_routes.py.
from federation.key_routes import KEY_QUERY_PATH, KEY_SERVER_PATH, KEYRING, routes

log = logging.getLogger(__name__)

# Our current key verifies whatever we signed with it, whenever.
_FOREVER = 2**63 - 1
# At most this often per server do we ask for its keys (also after failures): events
# naming unknown key ids must not make us hammer the server they claim to come from.
DEFAULT_REFETCH_INTERVAL_MS = 10_000
# Servers answered at once for one notary query.
_NOTARY_CONCURRENCY = 8


class KeyClient(Protocol):
    """What the KeyRing needs of federation/client.py's FederationClient."""

    async def get_json(self, destination: str, path: str, query: Any = None, *,
                       signed: bool = True, timeout: float | None = None) -> Any: ...

    async def post_json(self, destination: str, path: str, body: Any, *,
                        query: Any = None, timeout: float | None = None) -> Any: ...


class KeyRing:
    """Other servers' verify keys: from memory, PostgreSQL, the server itself, then
    the trusted notaries; and signature checks of requests and events with them."""

    def __init__(
        self,
        server_name: str,
        signing_key: Any,
        store: ServerKeyStore,
        client: KeyClient,
        *,
        key_validity_ms: int,
        trusted_key_servers: Sequence[TrustedKeyServer] = (),
        old_keys: Iterable[OldVerifyKey] = (),
        clock: Callable[[], int] = now_ms,
        refetch_interval_ms: int = DEFAULT_REFETCH_INTERVAL_MS,
        cache_size: int = 10_000,
    ):
        self.server_name = server_name
        self.signing_key = signing_key
        self.store = store
        self.client = client
        self.key_validity_ms = key_validity_ms
        self.trusted_key_servers = list(trusted_key_servers)
        self.clock = clock
        self.refetch_interval_ms = refetch_interval_ms
        current_id = signing.key_id(signing_key)
        self._old_keys = [k for k in old_keys if k.key_id != current_id]
        self._own: dict[str, ServerKey] = {
            k.key_id: ServerKey(server_name, k.key_id, k.verify_key, k.expired_ts, k.expired_ts)
            for k in self._old_keys
        }
        self._own[current_id] = ServerKey(server_name, current_id, signing_key.verify_key, _FOREVER)
        # (server, key id) -> (valid_until_ts of the response it came from, key)
        self._cache: LruCache[tuple[str, str], tuple[int, ServerKey]] = LruCache(cache_size)
        self._inflight: dict[tuple[str, bool], asyncio.Future] = {}
        self._last_attempt: dict[tuple[str, bool], int] = {}
        # Fetches finished per slot: a caller that looked in the cache before one
        # finished re-reads the cache instead of fetching again.
        self._fetches_done: dict[tuple[str, bool], int] = {}

    # --- Our own keys -----------------------------------------------------------------

    def own_keys_response(self) -> dict[str, Any]:
        """Our /_matrix/key/v2/server body, signed, valid for key_validity_hours."""
        body = server_keys_object(
            self.server_name,
            {signing.key_id(self.signing_key): signing.verify_key_base64(self.signing_key)},
            {k.key_id: (signing.verify_key_base64(k.verify_key), k.expired_ts) for k in self._old_keys},
            self.clock() + self.key_validity_ms,
        )
        return signing.sign_json(body, self.server_name, self.signing_key)

    # --- Finding keys -----------------------------------------------------------------

    async def get_verify_keys(
        self, server_name: str, key_ids: Iterable[str], min_valid_until_ts: int
    ) -> dict[str, nacl.signing.VerifyKey]:
        """The keys among ``key_ids`` valid until at least ``min_valid_until_ts``
        (old keys included, by their expired_ts); the others are left out."""
        keys = await self._keys(server_name, key_ids, min_valid_until_ts, include_old=True)
        return {key_id: key.verify_key for key_id, key in keys.items()}

    async def _keys(
        self, server_name: str, key_ids: Iterable[str], min_valid: int, *, include_old: bool
    ) -> dict[str, ServerKey]:
        wanted = {k for k in key_ids if is_ed25519_key_id(k)}
        if not wanted:
            return {}

        def usable(known: Mapping[str, ServerKey]) -> dict[str, ServerKey]:
            return {
                key_id: key for key_id, key in known.items()
                if key_id in wanted and key.valid_until_ts >= min_valid and (include_old or not key.is_old)
            }

        if server_name == self.server_name:
            return usable(self._own)
        fetches_seen = self._fetches_done.get((server_name, True), 0)
        found = usable(await self._cached(server_name, wanted))
        if len(found) < len(wanted):
            await self._fetch(
                server_name, wanted - found.keys(), min_valid, via_notaries=True, fetches_seen=fetches_seen
            )
            found = usable(await self._cached(server_name, wanted))
        return found

    async def _cached(self, server_name: str, key_ids: set[str]) -> dict[str, ServerKey]:
        found: dict[str, ServerKey] = {}
        for key_id in key_ids:
            entry = self._cache.get((server_name, key_id))
            if entry is not None:
                found[key_id] = entry[1]
        missing = key_ids - found.keys()
        if missing:
            for row in await self.store.get_responses(server_name, missing):
                try:
                    raw = parse_json(row.key_json)
                    response = parse_server_keys_response(raw, server_name, row.fetched_ts)
                except (ServerKeysError, ValueError) as exc:
                    log.warning("stored keys of %s no longer validate: %s", server_name, exc)
                    continue
                key = response.keys.get(row.key_id)
                if key is not None:
                    self._remember_key(key, response.valid_until_ts)
                    found[row.key_id] = key
        return found

    def _remember_key(self, key: ServerKey, response_valid_until_ts: int) -> None:
        known = self._cache.get((key.server_name, key.key_id))
        # As in the table: the response valid the longest is the newest word.
        if known is None or known[0] <= response_valid_until_ts:
            self._cache.set((key.server_name, key.key_id), (response_valid_until_ts, key))

    async def _remember(self, response: ServerKeysResponse, fetched_ts: int) -> None:
        await self.store.store_response(
            response.server_name, response.keys, canonical_json_str(response.json),
            response.valid_until_ts, fetched_ts,
        )
        for key in response.keys.values():
            self._remember_key(key, response.valid_until_ts)

    async def _fetch(
        self, server_name: str, key_ids: set[str], min_valid: int, *, via_notaries: bool,
        fetches_seen: int | None = None,
    ) -> None:
        """Ask for the keys, once for all concurrent callers, at most once per interval.

        ``fetches_seen`` is the slot's count of finished fetches when the caller read
        the cache: if one finished since, its answer is already there to re-read."""
        slot = (server_name, via_notaries)
        inflight = self._inflight.get(slot)
        if inflight is None:
            if fetches_seen is not None and self._fetches_done.get(slot, 0) != fetches_seen:
                return
            last = self._last_attempt.get(slot)
            if last is not None and self.clock() - last < self.refetch_interval_ms:
                return
            self._last_attempt[slot] = self.clock()
            inflight = asyncio.ensure_future(
                self._fetch_now(server_name, key_ids, min_valid, via_notaries)
            )
            self._inflight[slot] = inflight
            inflight.add_done_callback(lambda _: self._finished(slot))
        # Shielded: a caller that gives up does not cancel the fetch of the others.
        await asyncio.shield(inflight)

    def _finished(self, slot: tuple[str, bool]) -> None:
        self._inflight.pop(slot, None)
        self._fetches_done[slot] = self._fetches_done.get(slot, 0) + 1

    async def _fetch_now(
        self, server_name: str, key_ids: set[str], min_valid: int, via_notaries: bool
    ) -> None:
        def satisfied(response: ServerKeysResponse) -> bool:
            return all(
                (key := response.keys.get(key_id)) is not None and key.valid_until_ts >= min_valid
                for key_id in key_ids
            )

        fetched_ts = self.clock()
        try:
            raw = await self.client.get_json(server_name, KEY_SERVER_PATH, signed=False)
            response = parse_server_keys_response(raw, server_name, fetched_ts)
            await self._remember(response, fetched_ts)
            if satisfied(response):
                return
        except ServerKeysError as exc:
            log.warning("keys of %s: %s", server_name, exc)
        except Exception as exc:  # unreachable, an HTTP error, bad JSON: try the notaries
            log.info("cannot fetch the keys of %s directly: %s", server_name, exc)
        if not via_notaries:
            return
        for notary in self.trusted_key_servers:
            if notary.server_name in (self.server_name, server_name):
                continue
            try:
                if await self._query_notary(notary, server_name, key_ids, min_valid, satisfied):
                    return
            except Exception as exc:
                log.info("notary %s has no keys of %s for us: %s", notary.server_name, server_name, exc)

    async def _query_notary(
        self, notary: TrustedKeyServer, server_name: str, key_ids: set[str], min_valid: int,
        satisfied: Callable[[ServerKeysResponse], bool],
    ) -> bool:
        criteria = {key_id: {"minimum_valid_until_ts": min_valid} for key_id in sorted(key_ids)}
        fetched_ts = self.clock()
        answer = await self.client.post_json(
            notary.server_name, KEY_QUERY_PATH, {"server_keys": {server_name: criteria}}
        )
        entries = answer.get("server_keys") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise ServerKeysError("the answer has no server_keys list")
        done = False
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("server_name") != server_name:
                continue
            try:
                if notary.verify_keys:
                    check_notary_signature(entry, notary.server_name, notary.verify_keys)
                # Always the origin's own signature: a notary vouches, it cannot invent keys.
                response = parse_server_keys_response(entry, server_name, fetched_ts)
            except (SignatureError, ServerKeysError) as exc:
                log.warning("notary %s relayed bad keys of %s: %s", notary.server_name, server_name, exc)
                continue
            await self._remember(response, fetched_ts)
            done = done or satisfied(response)
        return done

    # --- Checking signatures ----------------------------------------------------------

    async def verify_json(self, obj: dict[str, Any], server_name: str, at_ts: int) -> None:
        """Check ``server_name``'s signature on ``obj`` with its current keys valid at
        ``at_ts``: at least one, and none of those we know may fail."""
        key_ids = signature_key_ids(obj, server_name)
        if not key_ids:
            raise SignatureError(f"not signed by {server_name}")
        keys = await self._keys(server_name, key_ids, at_ts, include_old=False)
        if not keys:
            raise SignatureError(f"no key of {server_name} among {sorted(key_ids)} is known and valid")
        for key in keys.values():
            signing.verify_json(obj, server_name, key.key_id, key.verify_key)

    async def verify_event_signatures(self, event: Event) -> None:
        """The signatures the spec requires on a received event (the sender's server;
        the event id's for v1-v2; the authorising server of a restricted join), each
        with a key valid at the event's origin_server_ts where the room version says so."""
        servers = required_signature_servers(event)
        min_valid = min_valid_until_for_event(event)
        await asyncio.gather(*(self._verify_event_by(event, server, min_valid) for server in servers))

    async def _verify_event_by(self, event: Event, server_name: str, min_valid: int) -> None:
        key_ids = signature_key_ids(event.json, server_name)
        if not key_ids:
            raise SignatureError(f"event {event.event_id} is not signed by {server_name}")
        keys = await self._keys(server_name, key_ids, min_valid, include_old=True)
        if not keys:
            raise SignatureError(
                f"no key of {server_name} among {sorted(key_ids)} is known and valid for {event.event_id}"
            )
        for key in keys.values():
            signing.verify_event_signature(
                event.json, event.room_version, server_name, key.key_id, key.verify_key
            )

    # --- Notary -----------------------------------------------------------------------

    async def notary_query(
        self, criteria: Mapping[str, Mapping[str, int | None]], minimum: int | None = None
    ) -> list[dict[str, Any]]:
        """Key responses for ``server -> key id -> minimum_valid_until_ts`` (no key ids:
        all keys, valid until ``minimum``), as their servers signed them plus our signature."""
        limit = asyncio.Semaphore(_NOTARY_CONCURRENCY)

        async def answer(server_name: str, wanted: Mapping[str, int | None]) -> list[dict[str, Any]]:
            async with limit:
                return await self._notary_answer(server_name, wanted, minimum)

        answers = await asyncio.gather(
            *(answer(name, wanted) for name, wanted in criteria.items() if is_valid_server_name(name))
        )
        return [response for responses in answers for response in responses]

    async def _notary_answer(
        self, server_name: str, wanted: Mapping[str, int | None], minimum: int | None
    ) -> list[dict[str, Any]]:
        if server_name == self.server_name:
            return [self.own_keys_response()]
        now = self.clock()
        rows = await self._notary_rows(server_name, wanted)
        if self._stale(rows, wanted, minimum if minimum is not None else now, now):
            # Only the server itself: asking our notaries on behalf of others could loop.
            await self._fetch(server_name, set(wanted), 0, via_notaries=False)
            rows = await self._notary_rows(server_name, wanted)
        answers: list[dict[str, Any]] = []
        seen: set[str] = set()
        for row in rows:
            # Served even when stale: it still lets old events be checked (keys_server.yaml).
            if row.key_json in seen:
                continue
            seen.add(row.key_json)
            relayed = parse_json(row.key_json)
            answers.append(signing.sign_json(relayed, self.server_name, self.signing_key))
        return answers

    async def _notary_rows(self, server_name: str, wanted: Mapping[str, int | None]):
        return await self.store.get_responses(server_name, list(wanted) or None)

    @staticmethod
    def _stale(rows, wanted: Mapping[str, int | None], minimum: int, now: int) -> bool:
        if not wanted:
            return not rows or max(row.valid_until_ts for row in rows) < minimum
        by_key = {row.key_id: row for row in rows}
        return any(
            key_id not in by_key or by_key[key_id].valid_until_ts < (needed if needed is not None else now)
            for key_id, needed in wanted.items()
        )


# --- Wiring ------------------------------------------------------------------------------

def install(app: web.Application, services: Services, client: KeyClient) -> KeyRing:
    """Build the KeyRing, put it under ``app[KEYRING]`` and add the key routes."""
    config = services.config
    keyring = KeyRing(
        config.server_name,
        services.signing_key,
        ServerKeyStore(services.db),
        client,
        key_validity_ms=config.federation.key_validity_hours * 3600 * 1000,
        trusted_key_servers=config.federation.trusted_key_servers,
        old_keys=load_old_verify_keys(config.signing_key_file),
    )
    app[KEYRING] = keyring
    app.router.add_routes(routes)
    return keyring
