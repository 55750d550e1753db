"""Push rules of a user: read, add, order, enable and change them.

Every change is written with the user's whole ruleset as their ``m.push_rules``
account data, in the same transaction and at a position of the account data
stream, so the next /sync (also a waiting one) reports it.
Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules-api
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable

import asyncpg

from homeserver.errors import MatrixError, invalid_param, missing_param, not_found
from homeserver.protocol import push_rules as rules_
from homeserver.protocol.push_rules import KINDS, DefaultRuleChange, UserRule
from homeserver.services.notifier import Notifier
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.cache import LoadingCache
from homeserver.storage.db import Database
from homeserver.storage.push_rules import PushRuleStore
from homeserver.storage.streams import StreamIdGenerator

PUSH_RULES_TYPE = "m.push_rules"
# Actions a rule may name; set_tweak objects carry any tweak (spec: passed through).
KNOWN_ACTIONS = frozenset({"notify"}) | rules_.HISTORICAL_ACTIONS
COMPILED_CACHE_SIZE = 10_000
CompiledRules = Callable[[Any, rules_.RoomContext], "list[Any] | None"]


class PushRulesService:
    def __init__(
        self, db: Database, store: PushRuleStore, account_data: AccountDataStore,
        account_data_stream: StreamIdGenerator, notifier: Notifier,
    ):
        self.db = db
        self.store = store
        self.account_data = account_data
        self.account_data_stream = account_data_stream
        self.notifier = notifier
        # Compiled rulesets for notification counts (every /sync with news evaluates them).
        self._compiled: LoadingCache[str, CompiledRules] = LoadingCache(COMPILED_CACHE_SIZE)

    async def ruleset(self, user_id: str, conn: asyncpg.Connection | None = None) -> dict[str, list[dict[str, Any]]]:
        """The user's global ruleset, every kind in priority order."""
        return rules_.ruleset(
            user_id, await self.store.user_rules(user_id, conn), await self.store.default_changes(user_id, conn)
        )

    async def compiled(self, user_id: str) -> CompiledRules:
        """The user's ruleset as one evaluating function (protocol/push_rules.compile_rules)."""
        return await self._compiled.get(user_id, self._compile)

    async def _compile(self, user_id: str) -> CompiledRules:
        return rules_.compile_rules(await self.ruleset(user_id))

    def forget(self, user_ids: Iterable[str] | None = None) -> None:
        """Rules changed (here, or on another process: ``None`` for anyone's)."""
        self._compiled.forget(user_ids)

    async def account_data_content(self, user_id: str) -> dict[str, Any]:
        """The content of the ``m.push_rules`` account data event."""
        return {"global": await self.ruleset(user_id)}

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> dict[str, Any]:
        check_kind(kind)
        rule = rules_.find_rule(await self.ruleset(user_id), kind, rule_id)
        if rule is None:
            raise not_found("The push rule was not found")
        return rule

    async def put_rule(
        self, user_id: str, kind: str, rule_id: str, body: dict[str, Any], before: str | None, after: str | None,
    ) -> None:
        """Add or replace a user-defined rule, placed relative to ``before`` or ``after``
        (``before`` wins when both are given), else first of its kind when new."""
        check_kind(kind)
        check_rule_id(rule_id)
        if rules_.is_server_default(rule_id):
            raise invalid_param("Rule ids starting with '.' are reserved for server-default rules")
        actions = check_actions(body.get("actions"))
        conditions, pattern = None, None
        if kind in ("override", "underride"):
            conditions = check_conditions(body.get("conditions", []))
        elif kind == "content":
            pattern = body.get("pattern")
            if pattern is None:
                raise missing_param("Content rules need a pattern")
            if not isinstance(pattern, str):
                raise invalid_param("pattern must be a string")

        async def change(conn: asyncpg.Connection) -> None:
            existing = {r.rule_id: r for r in await self.store.user_rules(user_id, conn) if r.kind == kind}
            order = list(existing)
            anchor = before if before is not None else after
            if anchor is not None:
                if anchor == rule_id or anchor not in existing:
                    raise MatrixError(400, "M_UNKNOWN", f"before/after rule not found: {anchor}")
                if rule_id in order:
                    order.remove(rule_id)
                index = order.index(anchor)
                order.insert(index if before is not None else index + 1, rule_id)
            elif rule_id not in existing:
                order.insert(0, rule_id)
            # New rules MUST be enabled; a replaced rule keeps its enabled state.
            enabled = existing[rule_id].enabled if rule_id in existing else True
            await self.store.put_rule(
                conn, user_id, UserRule(kind, rule_id, actions, enabled, conditions, pattern)
            )
            await self.store.set_order(conn, user_id, kind, order)

        await self._write(user_id, change)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        check_kind(kind)
        if rules_.is_server_default(rule_id):
            if rules_.find_rule(rules_.default_rules(user_id), kind, rule_id) is None:
                raise not_found("The push rule was not found")
            raise invalid_param("Server-default rules cannot be deleted; disable them instead")

        async def change(conn: asyncpg.Connection) -> None:
            if not await self.store.delete_rule(conn, user_id, kind, rule_id):
                raise not_found("The push rule was not found")

        await self._write(user_id, change)

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: Any) -> None:
        check_kind(kind)
        if enabled is None:
            raise missing_param("Missing parameter: enabled")
        if not isinstance(enabled, bool):
            raise invalid_param("enabled must be true or false")
        await self._change(user_id, kind, rule_id, DefaultRuleChange(enabled=enabled))

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: Any) -> None:
        check_kind(kind)
        await self._change(user_id, kind, rule_id, DefaultRuleChange(actions=check_actions(actions)))

    async def _change(self, user_id: str, kind: str, rule_id: str, change_: DefaultRuleChange) -> None:
        """Change the enabled state or the actions of a user rule or a server-default rule."""
        if rules_.is_server_default(rule_id):
            if rules_.find_rule(rules_.default_rules(user_id), kind, rule_id) is None:
                raise not_found("The push rule was not found")

            async def change(conn: asyncpg.Connection) -> None:
                await self.store.change_default(conn, user_id, kind, rule_id, change_)
        else:
            async def change(conn: asyncpg.Connection) -> None:
                if change_.enabled is not None:
                    found = await self.store.set_enabled(conn, user_id, kind, rule_id, change_.enabled)
                else:
                    found = await self.store.set_actions(conn, user_id, kind, rule_id, change_.actions or [])
                if not found:
                    raise not_found("The push rule was not found")

        await self._write(user_id, change)

    async def _write(self, user_id: str, change: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
        async with self.account_data_stream.allocate() as position:
            async with self.db.transaction() as conn:
                await self.store.lock_user(conn, user_id)
                await change(conn)
                content = {"global": await self.ruleset(user_id, conn)}
                await self.account_data.put(user_id, GLOBAL, PUSH_RULES_TYPE, content, position, conn=conn)
        self.forget([user_id])
        self.notifier.notify_at(self.account_data_stream, position, [user_id])


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise invalid_param(f"Unknown push rule kind {kind!r}; expected one of {', '.join(KINDS)}")


def check_rule_id(rule_id: str) -> None:
    # The spec reserves '.' for server rules and forbids slashes and backslashes.
    if "/" in rule_id or "\\" in rule_id:
        raise invalid_param("Rule ids may not contain slashes or backslashes")
    if not rule_id or len(rule_id.encode()) > 255:
        raise invalid_param("Rule ids must be 1 to 255 bytes long")


def check_actions(actions: Any) -> list[Any]:
    """Validated actions, without the historical ones (spec: ignored, e.g. stripped)."""
    if actions is None:
        raise missing_param("Missing parameter: actions")
    if not isinstance(actions, list):
        raise invalid_param("actions must be a list")
    for action in actions:
        if isinstance(action, str):
            if action not in KNOWN_ACTIONS:
                raise invalid_param(f"Unknown action {action!r}")
        elif not (isinstance(action, dict) and isinstance(action.get("set_tweak"), str)):
            raise invalid_param("Each action must be a string or a set_tweak object")
    return rules_.strip_historical_actions(actions)


def check_conditions(conditions: Any) -> list[dict[str, Any]]:
    """Conditions must be objects naming their kind; unknown kinds are kept (they
    never match, as the spec requires)."""
    if not isinstance(conditions, list):
        raise invalid_param("conditions must be a list")
    for condition in conditions:
        if not isinstance(condition, dict) or not isinstance(condition.get("kind"), str):
            raise invalid_param("Each condition must be an object with a string kind")
    return conditions
