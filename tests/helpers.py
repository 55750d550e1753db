"""A thin client for the in-process server, so tests read like the spec."""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any, AsyncIterator, Callable

from aiohttp.test_utils import TestClient, TestServer

_txn = itertools.count()


class Response:
    def __init__(self, status: int, body: Any, headers):
        self.status = status
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body!r}>"

    def __getitem__(self, key: str) -> Any:
        return self.body[key]

    @property
    def errcode(self) -> str | None:
        return self.body.get("errcode") if isinstance(self.body, dict) else None


class User:
    def __init__(self, api: "Api", user_id: str, access_token: str, device_id: str):
        self.api = api
        self.user_id = user_id
        self.access_token = access_token
        self.device_id = device_id

    async def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.api.request(method, path, body, token=self.access_token, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("POST", path, body if body is not None else {}, **kwargs)

    async def put(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("PUT", path, body if body is not None else {}, **kwargs)

    async def delete(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("DELETE", path, body, **kwargs)

    # Common actions, asserting success.

    async def create_room(self, **body: Any) -> str:
        r = await self.post("/_matrix/client/v3/createRoom", body)
        assert r.status == 200, r
        return r["room_id"]

    async def join(self, room_id: str) -> None:
        r = await self.post(f"/_matrix/client/v3/join/{room_id}", {})
        assert r.status == 200, r

    async def invite(self, room_id: str, user_id: str) -> None:
        r = await self.post(f"/_matrix/client/v3/rooms/{room_id}/invite", {"user_id": user_id})
        assert r.status == 200, r

    async def send_text(self, room_id: str, body: str, txn_id: str | None = None) -> str:
        txn_id = txn_id or f"t{next(_txn)}"
        r = await self.put(
            f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn_id}",
            {"msgtype": "m.text", "body": body},
        )
        assert r.status == 200, r
        return r["event_id"]

    async def sync(self, since: str | None = None, timeout: int = 0, **params: Any) -> Response:
        query = {"timeout": str(timeout), **{k: str(v) for k, v in params.items()}}
        if since:
            query["since"] = since
        r = await self.request("GET", "/_matrix/client/v3/sync", params=query)
        assert r.status == 200, r
        return r


class Api:
    def __init__(self, client: TestClient, services: Any):
        self.client = client
        self.services = services

    async def request(
        self, method: str, path: str, body: Any = None, token: str | None = None,
        params: dict[str, str] | None = None, raw: bytes | None = None, headers: dict[str, str] | None = None,
    ) -> Response:
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.client.request(method, path, data=data, params=params, headers=all_headers) as resp:
            text = await resp.text()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text
            return Response(resp.status, parsed, resp.headers)

    async def register(self, username: str, password: str = "correct horse battery") -> User:
        r = await self.request("POST", "/_matrix/client/v3/register", {
            "username": username, "password": password, "auth": {"type": "m.login.dummy"},
        })
        assert r.status == 200, r
        return User(self, r["user_id"], r["access_token"], r["device_id"])

    async def login(self, username: str, password: str = "correct horse battery", **extra: Any) -> Response:
        return await self.request("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": username},
            "password": password,
            **extra,
        })


@contextlib.asynccontextmanager
async def served(services: Any) -> AsyncIterator[Api]:
    """The app of these services served in this process, and a client of it."""
    from homeserver.app import create_app

    client = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        yield Api(client, services)
    finally:
        await client.close()


class _WatchedConnection:
    def __init__(self, conn: Any, on_statement: Callable[[str], None]):
        self._conn = conn
        self._on_statement = on_statement

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._conn, name)
        if name in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
            async def watched(*args: Any, **kwargs: Any) -> Any:
                self._on_statement(args[0])
                return await value(*args, **kwargs)
            return watched
        return value


def watch_statements(db: Any, on_statement: Callable[[str], None]) -> None:
    """Call ``on_statement(sql)``, from now on, for every statement sent through the
    Database (homeserver/storage/db.py), those of its transactions too."""
    for name in ("fetch", "fetchrow", "fetchval", "execute"):
        method = getattr(db, name)

        async def watched(*args: Any, _method: Any = method) -> Any:
            on_statement(args[0])
            return await _method(*args)

        setattr(db, name, watched)
    transaction = db.transaction

    @contextlib.asynccontextmanager
    async def watched_transaction() -> Any:
        async with transaction() as conn:
            yield _WatchedConnection(conn, on_statement)

    db.transaction = watched_transaction


def count_queries(db: Any) -> dict[str, int]:
    """Count in ``counted["n"]``, from now on, every statement sent through the Database
    (``watch_statements``)."""
    counted = {"n": 0}

    def count(_sql: str) -> None:
        counted["n"] += 1

    watch_statements(db, count)
    return counted


def record_statements(db: Any) -> list[str]:
    """The text of every statement sent through the Database from now on, whitespace
    folded (``watch_statements``)."""
    sent: list[str] = []
    watch_statements(db, lambda sql: sent.append(" ".join(sql.split())))
    return sent
