"""Wiring of the federation: client, keys, sender, receiver, routes and the hooks into services.

``setup_federation`` is called by homeserver/app.py; it is the one place that
knows every part (STYLE.md habit 5: explicit wiring).
"""

from __future__ import annotations

import logging

from aiohttp import web

from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.services.container import Services
from homeserver.storage.event_graph import EventGraphStore
from homeserver.storage.federation_queue import FederationQueueStore
from homeserver.storage.received_transactions import ReceivedTransactionStore

from federation import backfill, e2e, keys, membership_routes, presence, queries, serving
from federation import hierarchy, openid
from federation.app_keys import FEDERATION
from federation.client import FederationClient
from federation.context import Federation
from federation.edus import EduRelay
from federation.inbound import EventReceiver
from federation.joins import RemoteDirectory, RemoteMembership
from federation.routes import TRANSACTIONS, routes as transaction_routes
from federation.sender import FederationSender
from federation.transactions import TransactionHandler

log = logging.getLogger(__name__)

# A transaction holds up to 50 PDUs of 64 KiB and 100 EDUs: more than a client request may.
MAX_FEDERATION_BODY_BYTES = 8 * 1024 * 1024


@web.middleware
async def federation_body_limit(request: web.Request, handler):
    if request.path.startswith("/_matrix/federation/"):
        request = request.clone(client_max_size=max(request.client_max_size, MAX_FEDERATION_BODY_BYTES))
    return await handler(request)


def setup_federation(app: web.Application, services: Services) -> Federation | None:
    config = services.config
    if not config.federation.enabled:
        return None
    client = FederationClient(config.server_name, services.signing_key, config.federation)
    keyring = keys.install(app, services, client)
    sender = FederationSender(config.server_name, services.db, FederationQueueStore(services.db),
                              services.events, client)
    receiver = EventReceiver(services, keyring, client)
    fed = Federation(
        server_name=config.server_name, services=services, client=client, keyring=keyring,
        sender=sender, receiver=receiver, graph=EventGraphStore(services.db, services.state),
    )
    app[FEDERATION] = fed
    app.middlewares.append(federation_body_limit)
    transactions = TransactionHandler(receiver, ReceivedTransactionStore(services.db))
    app[TRANSACTIONS] = transactions
    EduRelay(fed).install(transactions)
    e2e.install(fed, transactions)
    presence.install(fed, transactions)
    queries.install(fed, transactions)
    app.router.add_routes(transaction_routes)
    membership_routes.install(app, fed)
    serving.install(app)
    hierarchy.install(app, fed)
    app.router.add_routes(openid.routes)
    backfill.install(fed)

    services.membership.remote = RemoteMembership(fed)
    services.membership.directory_lookup = RemoteDirectory(fed).lookup

    async def send_our_events(event: Event) -> None:
        # Our users' events go to every other server of the room; a membership
        # event also to the server of its target (a kick or ban of their user).
        if ids.server_name_of(event.sender) != config.server_name or event.internal.get("outlier"):
            return
        # From the pipeline's cache of who is joined (kept current on membership changes,
        # here and on the other processes): no query per message.
        destinations = set(await services.pipeline.joined_servers(event.room_id))
        if event.type == "m.room.member" and event.state_key:
            destinations.add(ids.server_name_of(event.state_key) or config.server_name)
        destinations.discard(config.server_name)
        if destinations:
            await sender.send_pdu(event, destinations)

    services.pipeline.after_persist.append(send_our_events)

    # One process sends for the database (the cluster's leader); the others wake its sender.
    cluster = services.cluster
    sender.wake_elsewhere = lambda destination: cluster.send(["fed", [destination]])

    def on_fed(_sender: str, item: list) -> None:
        if cluster.leader:  # the others ignore it (passing it on would echo forever)
            for destination in item[1]:
                sender.wake(destination)

    cluster.handlers["fed"] = on_fed

    async def lifecycle(app: web.Application):
        await cluster.run_on_leader(sender.start, sender.stop)
        yield
        await cluster.end_job(sender.start, sender.stop)
        await client.close()

    app.cleanup_ctx.append(lifecycle)
    return fed
