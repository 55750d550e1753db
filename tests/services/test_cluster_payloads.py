"""What a process of a cluster sends begins with its own id (services/cluster.py), so that
the process drops its own notifications, which PostgreSQL delivers to it too, unparsed."""

from __future__ import annotations

import asyncio
import json

from homeserver.services.cluster import POSITION_MARK, Cluster
from homeserver.services.cluster_outbox import payloads


async def test_every_payload_begins_with_the_senders_id_and_only_a_peers_is_handled():
    cluster = Cluster(None, "me", {})  # no database: nothing here reaches it
    cluster._peers["peer"] = 0.0
    sent: list[str] = []

    async def capture(payload: str) -> None:
        sent.append(payload)

    cluster._notify = capture
    await cluster._send({"k": "ask"})
    await cluster._send({"k": "bye"})
    _, in_statement, _ = cluster.write_notification("events", 7, ["ev", "!r", POSITION_MARK, "$e"])
    sent.append(in_statement)
    sent.extend(payloads("me", {"events": [8]}, {"events": 8}, [["u", "events", 8, ["@a:x"]]] * 400))
    assert len(sent) > 4  # the outbox cut its items over several payloads
    for payload in sent:
        assert payload.startswith(cluster._own_prefix)
        assert json.loads(payload)["i"] == "me"

    handled: list[str] = []
    cluster.handlers["probe"] = lambda sender, item: handled.append(sender)
    message = {"k": "w", "x": [["probe"]]}
    cluster._on_payload(json.dumps({"i": "me", **message}, separators=(",", ":")))
    cluster._on_payload(json.dumps({"i": "peer", **message}, separators=(",", ":")))
    # An id that merely begins like ours is another process's.
    cluster._on_payload(json.dumps({"i": "meow", **message}, separators=(",", ":")))
    await asyncio.sleep(0)
    assert handled == ["peer", "meow"]
