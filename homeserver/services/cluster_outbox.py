"""What services/cluster.py sends, cut to NOTIFY's size, and the guard of lone-writer writes."""

from __future__ import annotations

import json
import logging
from typing import Any

from homeserver.storage.stream_positions import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)


class SoloWrite:
    def __init__(self, cluster: Any):
        self.cluster = cluster
        self.solo = False

    async def __aenter__(self) -> bool:
        """True if the write may rely on being the only writer."""
        cluster = self.cluster
        self.solo = cluster.solo
        if self.solo:
            cluster._solo_writes += 1
            cluster._solo_drained.clear()
        return self.solo

    async def __aexit__(self, *exc: Any) -> None:
        if self.solo:
            cluster = self.cluster
            cluster._solo_writes -= 1
            if cluster._solo_writes == 0:
                cluster._solo_drained.set()


def payloads(instance: str, finished: dict[str, list[int]], bounds: dict[str, int],
              items: list[list[Any]]) -> list[str]:
    """The outbox as notification payloads, each under the size limit."""
    out: list[str] = []
    base = {"i": instance, "k": "w", "b": bounds, "f": finished, "x": []}
    text = json.dumps(base, separators=(",", ":"))
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        # Very many positions at once: bounds alone (others catch up through them).
        base = {"i": instance, "k": "w", "b": bounds, "f": {}, "x": []}
    current = base
    size = len(json.dumps(current, separators=(",", ":")).encode())
    for item in items:
        item_size = len(json.dumps(item, separators=(",", ":")).encode()) + 1
        if item_size + 100 > MAX_PAYLOAD_BYTES:
            log.warning("cluster: an item of %d bytes is too big to send: %.80r", item_size, item)
            continue
        if size + item_size > MAX_PAYLOAD_BYTES:
            # Items first, positions last: what changed is known before the position moves.
            out.append(json.dumps({"i": instance, "k": "w", "x": current["x"]}, separators=(",", ":")))
            current = {**base, "x": []}
            size = len(json.dumps(current, separators=(",", ":")).encode())
        current["x"].append(item)
        size += item_size
    out.append(json.dumps(current, separators=(",", ":")))
    return out
