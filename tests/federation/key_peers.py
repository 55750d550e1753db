"""In-process homeservers that reach each other's key endpoints, for the KeyRing tests.

`Network` has the two methods of FederationClient the KeyRing uses (get_json,
post_json) and sends them as real HTTP requests to the in-process app registered
under the destination's server name; a name with no app is unreachable.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from federation.keys import KeyRing, install
from homeserver.appkeys import SERVICES
from homeserver.http import matrix_middleware
from homeserver.protocol.canonical import parse_json
from homeserver.services.container import Services


class Unreachable(Exception):
    pass


class HttpError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body


class Network:
    def __init__(self) -> None:
        self.peers: dict[str, TestClient] = {}
        # (destination, method, path) of every request sent.
        self.sent: list[tuple[str, str, str]] = []

    def add(self, server_name: str, client: TestClient) -> None:
        self.peers[server_name] = client

    def count(self, destination: str) -> int:
        return sum(1 for d, _, _ in self.sent if d == destination)

    async def _request(self, method: str, destination: str, path: str, **kwargs: Any) -> Any:
        self.sent.append((destination, method, path))
        client = self.peers.get(destination)
        if client is None:
            raise Unreachable(destination)
        async with client.request(method, path, **kwargs) as response:
            raw = await response.read()
            body = parse_json(raw) if raw else None
            if response.status != 200:
                raise HttpError(response.status, body)
            return body

    async def get_json(self, destination: str, path: str, query: Any = None, *,
                       signed: bool = True, timeout: float | None = None) -> Any:
        return await self._request("GET", destination, path, params=query)

    async def post_json(self, destination: str, path: str, body: Any, *,
                        query: Any = None, timeout: float | None = None) -> Any:
        return await self._request("POST", destination, path, json=body, params=query)


@dataclasses.dataclass
class Peer:
    server_name: str
    services: Services
    client: TestClient
    keyring: KeyRing
    app: web.Application


@contextlib.asynccontextmanager
async def peer(
    tmp_path: Path, dsn: str, server_name: str, network: Network, *, extra_routes=(), **config: Any
) -> AsyncIterator[Peer]:
    """Our homeserver named ``server_name`` on database ``dsn``, with the key routes,
    reachable on ``network`` and fetching other servers' keys through it."""
    from homeserver.server import open_services
    from tests.conftest import make_config

    settings = make_config(tmp_path / server_name, dsn, server_name=server_name, **config)
    async with open_services(settings) as services:
        # Only the key routes (and the test's own), not the whole app: whatever else
        # the federation wiring installs would talk to the real network.
        app = web.Application(middlewares=[matrix_middleware])
        app[SERVICES] = services
        keyring = install(app, services, network)
        # Tests see each fetch: no pause between two fetches of the same server.
        keyring.refetch_interval_ms = 0
        for route in extra_routes:
            app.router.add_route(*route)
        client = TestClient(TestServer(app))
        await client.start_server()
        network.add(server_name, client)
        try:
            yield Peer(server_name, services, client, keyring, app)
        finally:
            network.peers.pop(server_name, None)
            await client.close()
