"""Pushers: GET /pushers and POST /pushers/set.

Pushers are kept and listed so that clients can manage them (Element's
notification settings read them); this server does not yet send anything to
push gateways.
Spec: https://spec.matrix.org/v1.19/client-server-api/#client-behaviour-1
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from homeserver.errors import invalid_param, missing_param
from homeserver.services.clock import now_ms
from homeserver.storage.pushers import Pusher, PusherStore

GATEWAY_PATH = "/_matrix/push/v1/notify"
MAX_PUSHKEY_BYTES = 512
MAX_APP_ID_CHARS = 64


class PushersService:
    def __init__(self, store: PusherStore):
        self.store = store

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        out = []
        for p in await self.store.of_user(user_id):
            pusher: dict[str, Any] = {
                "pushkey": p.pushkey, "kind": p.kind, "app_id": p.app_id, "app_display_name": p.app_display_name,
                "device_display_name": p.device_display_name, "lang": p.lang, "data": p.data,
            }
            if p.profile_tag is not None:
                pusher["profile_tag"] = p.profile_tag
            out.append(pusher)
        return out

    async def set(self, user_id: str, body: dict[str, Any]) -> None:
        """Create, replace (kind given) or delete (kind null) the pusher of an app id and pushkey."""
        if "kind" not in body:
            raise missing_param("Missing parameter: kind")
        app_id = _string(body, "app_id")
        pushkey = _string(body, "pushkey")
        if len(app_id) > MAX_APP_ID_CHARS:
            raise invalid_param(f"app_id may be at most {MAX_APP_ID_CHARS} characters")
        if len(pushkey.encode()) > MAX_PUSHKEY_BYTES:
            raise invalid_param(f"pushkey may be at most {MAX_PUSHKEY_BYTES} bytes")
        kind = body["kind"]
        if kind is None:
            await self.store.delete(user_id, app_id, pushkey)
            return
        if kind != "http":
            # Email notifications need a mail setup this server does not have.
            raise invalid_param("kind must be 'http' (or null to delete the pusher)")
        data = body.get("data")
        if data is None:
            raise missing_param("Missing parameter: data")
        if not isinstance(data, dict):
            raise invalid_param("data must be an object")
        url = data.get("url")
        if url is None:
            raise missing_param("Missing parameter: data.url")
        if not isinstance(url, str) or not _is_gateway_url(url):
            raise invalid_param(f"data.url must be an http(s) URL with the path {GATEWAY_PATH}")
        profile_tag = body.get("profile_tag")
        if profile_tag is not None and not isinstance(profile_tag, str):
            raise invalid_param("profile_tag must be a string")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise invalid_param("append must be true or false")
        pusher = Pusher(
            user_id=user_id, app_id=app_id, pushkey=pushkey, kind=kind,
            app_display_name=_string(body, "app_display_name"),
            device_display_name=_string(body, "device_display_name"),
            profile_tag=profile_tag, lang=_string(body, "lang"), data=data,
        )
        await self.store.put(pusher, now_ms(), keep_other_users=append)


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise missing_param(f"Missing parameter: {name}")
    if not isinstance(value, str):
        raise invalid_param(f"{name} must be a string")
    return value


def _is_gateway_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("https", "http") and bool(parts.netloc) and parts.path == GATEWAY_PATH
