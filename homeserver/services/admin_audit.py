"""One log line per admin action: who did what to whom (the admin API's audit trail)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("homeserver.admin")


def audit(actor: str, action: str, target: str, /, **details: Any) -> None:
    """Never pass secrets (passwords, tokens) in details: the line goes to the server log."""
    extra = "".join(f" {key}={value!r}" for key, value in details.items())
    log.info("admin action: admin=%s action=%s target=%s%s", actor, action, target, extra)
