"""User-interactive authentication: the 401 dance of /register, device deletion, password change.

Spec: https://spec.matrix.org/v1.19/client-server-api/#user-interactive-authentication-api
"""

from __future__ import annotations

import secrets
from typing import Any

from homeserver.errors import MatrixError
from homeserver.services.accounts import AccountService
from homeserver.services.clock import now_ms
from homeserver.storage.registration import RegistrationStore

SESSION_LIFETIME_MS = 30 * 60 * 1000

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"


class AuthRequired(MatrixError):
    """The 401 answer that tells the client which stages remain."""

    def __init__(self, flows: list[list[str]], session: str, completed: list[str], params: dict[str, Any],
                 errcode: str | None = None, error: str | None = None):
        super().__init__(401, errcode or "M_FORBIDDEN", error or "Authentication required")
        self.body: dict[str, Any] = {
            "flows": [{"stages": flow} for flow in flows],
            "params": params,
            "session": session,
            "completed": completed,
        }
        if errcode:
            self.body.update(errcode=errcode, error=error)

    def to_json(self) -> dict[str, Any]:
        return self.body


class UserInteractiveAuth:
    def __init__(self, store: RegistrationStore, accounts: AccountService):
        self.store = store
        self.accounts = accounts

    async def authenticate(
        self, auth: Any, flows: list[list[str]], purpose: str, expected_user: str | None = None
    ) -> dict[str, Any]:
        """Run one step; return the session's results once a flow is complete, else raise AuthRequired."""
        params: dict[str, Any] = {}
        if not isinstance(auth, dict):
            session = await self._new_session(purpose)
            raise AuthRequired(flows, session, [], params)
        session = auth.get("session")
        stored = await self.store.get_session(session) if isinstance(session, str) else None
        if stored is None or stored[0] != purpose or stored[3] < now_ms() - SESSION_LIFETIME_MS:
            if session is not None:
                raise MatrixError(400, "M_UNKNOWN", "Unknown or expired session")
            session = await self._new_session(purpose)
            completed, results = [], {}
        else:
            completed, results = stored[1], stored[2]

        stage = auth.get("type")
        allowed = {s for flow in flows for s in flow}
        if isinstance(stage, str) and stage in allowed and stage not in completed:
            try:
                new_results = await self._run_stage(stage, auth, expected_user)
            except MatrixError as e:
                raise AuthRequired(flows, session, completed, params, e.errcode, e.error)
            await self.store.complete_stage(session, stage, new_results)
            completed = completed + [stage]
            results = {**results, **new_results}
        elif stage is not None and stage not in allowed:
            raise AuthRequired(flows, session, completed, params, "M_UNRECOGNIZED", f"Unknown auth type {stage}")

        if any(all(s in completed for s in flow) for flow in flows):
            await self.store.delete_session(session)
            return results
        raise AuthRequired(flows, session, completed, params)

    async def registration_token_is_usable(self, token: str) -> bool:
        """GET /register/m.login.registration_token/validity: usable now, without spending it."""
        return await self.store.token_is_usable(token, now_ms())

    async def spend_registration_token(self, token: str) -> None:
        """One use of the token, once the account it admitted exists."""
        await self.store.complete_token(token)

    async def _new_session(self, purpose: str) -> str:
        session = secrets.token_urlsafe(24)
        await self.store.delete_sessions_older_than(now_ms() - SESSION_LIFETIME_MS)
        await self.store.create_session(session, purpose, now_ms())
        return session

    async def _run_stage(self, stage: str, auth: dict[str, Any], expected_user: str | None) -> dict[str, Any]:
        if stage == DUMMY:
            return {}
        if stage == REGISTRATION_TOKEN:
            token = auth.get("token")
            if not isinstance(token, str) or not await self.store.token_is_usable(token, now_ms()):
                raise MatrixError(401, "M_FORBIDDEN", "Invalid registration token")
            await self.store.reserve_token(token)
            return {"registration_token": token}
        if stage == PASSWORD:
            password = auth.get("password")
            identifier = _identifier_user(auth)
            if not isinstance(password, str) or identifier is None:
                raise MatrixError(401, "M_FORBIDDEN", "Missing user or password")
            user_id = await self.accounts.check_password(identifier, password)
            if expected_user is not None and user_id != expected_user:
                raise MatrixError(401, "M_FORBIDDEN", "Password is not of the logged-in user")
            return {"user_id": user_id}
        raise MatrixError(401, "M_UNRECOGNIZED", f"Unsupported auth stage {stage}")


def _identifier_user(body: dict[str, Any]) -> str | None:
    """The user named by an m.id.user identifier, or the deprecated top-level "user"."""
    identifier = body.get("identifier")
    if isinstance(identifier, dict):
        if identifier.get("type") == "m.id.user" and isinstance(identifier.get("user"), str):
            return identifier["user"]
        return None
    user = body.get("user")
    return user if isinstance(user, str) else None
