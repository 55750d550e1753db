"""What every client route module needs: its services, the requester, path prefixes, Body."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from homeserver.errors import MatrixError
# Re-exported: client route modules import these from here (they live below every route package).
from homeserver.request_context import access_token_of, requester, same_user, services

__all__ = ["V1", "V3", "Body", "access_token_of", "check_content", "requester", "same_user", "services"]

V3 = "/_matrix/client/{version:(?:v3|r0)}"
V1 = "/_matrix/client/v1"


class Body(BaseModel):
    """A request body: types are strict, unknown keys are allowed (clients send extras)."""

    model_config = ConfigDict(strict=True, extra="allow")


def check_content(value: Any, name: str = "content") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MatrixError(400, "M_BAD_JSON", f"{name} must be a JSON object")
    return value
