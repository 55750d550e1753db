"""The server's ed25519 signing key, kept in a file in the data directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from homeserver.protocol import signing


def write_new_signing_key(path: Path) -> Any:
    key = signing.generate_signing_key("a_" + os.urandom(3).hex())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Readable by the owner only: whoever holds this key can speak for the server.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(signing.encode_signing_key(key) + "\n")
    return key


def load_or_create_signing_key(path: Path) -> Any:
    if not path.exists():
        return write_new_signing_key(path)
    line = path.read_text().strip().splitlines()[0]
    return signing.decode_signing_key(line)
