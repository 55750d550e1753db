"""What every client route module needs: its services, the requester, path prefixes, Body."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from homeserver.errors import MatrixError, invalid_param, missing_param
# Re-exported: client route modules import these from here (they live below every route package).
from homeserver.request_context import access_token_of, requester, same_user, services

__all__ = [
    "V1", "V3", "Body", "access_token_of", "check_content", "parse_params", "requester", "same_user", "services",
]

V3 = "/_matrix/client/{version:(?:v3|r0)}"
V1 = "/_matrix/client/v1"


class Body(BaseModel):
    """A request body: types are strict, unknown keys are allowed (clients send extras)."""

    model_config = ConfigDict(strict=True, extra="allow")


BodyT = TypeVar("BodyT", bound=BaseModel)


def parse_params(model: type[BodyT], body: dict[str, Any]) -> BodyT:
    """As http.parse_model, but a value of the wrong type is M_INVALID_PARAM, not M_BAD_JSON:
    the answer of the APIs whose parameters were always checked one by one (push rules,
    pushers), as Synapse gives it."""
    try:
        return model.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "missing":
            raise missing_param(f"Missing parameter: {field}")
        raise invalid_param(f"Invalid parameter {field}: {first['msg']}")


def check_content(value: Any, name: str = "content") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MatrixError(400, "M_BAD_JSON", f"{name} must be a JSON object")
    return value
