"""Server ACLs: whether a room's m.room.server_acl lets a server take part.

Spec: https://spec.matrix.org/v1.19/client-server-api/#mroomserver_acl (the order of
the checks is numbered there) and server-server-api/#server-access-control-lists-acls.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from homeserver.protocol.push_rules import glob_matches


def _host(server_name: str) -> str:
    """The server name without its port: ACLs never consider ports."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end != -1 else server_name
    return server_name.partition(":")[0]


def _is_ip_literal(host: str) -> bool:
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _patterns(value: Any) -> list[str]:
    # Entries that are not strings cannot match anything.
    return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []


def server_allowed(acl_content: Mapping[str, Any] | None, server_name: str) -> bool:
    """Whether ``server_name`` may take part in a room whose ACL content is given
    (None: the room has no m.room.server_acl)."""
    if acl_content is None:  # 1
        return True
    host = _host(server_name)
    allow_ip_literals = acl_content.get("allow_ip_literals", True)
    if not isinstance(allow_ip_literals, bool):
        allow_ip_literals = True
    if not allow_ip_literals and _is_ip_literal(host):  # 2
        return False
    if any(glob_matches(p, host) for p in _patterns(acl_content.get("deny"))):  # 3
        return False
    return any(glob_matches(p, host) for p in _patterns(acl_content.get("allow")))  # 4, 5
