"""Push rules: the rules each user defined, and their changes to server-default rules.

The server-default rules themselves are not stored: they come from
homeserver.protocol.push_rules, so a new server version brings its new defaults.
"""

from __future__ import annotations

import json

import asyncpg

from homeserver.protocol.push_rules import DefaultRuleChange, UserRule
from homeserver.storage.db import Database


class PushRuleStore:
    def __init__(self, db: Database):
        self.db = db

    async def lock_user(self, conn: asyncpg.Connection, user_id: str) -> None:
        """Serialise the rule changes of one user until the transaction ends
        (priorities are read, then rewritten)."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "push_rules:" + user_id)

    async def user_rules(self, user_id: str, conn: asyncpg.Connection | None = None) -> list[UserRule]:
        """The user's own rules, each kind's in priority order (most important first)."""
        rows = await (conn or self.db).fetch(
            "SELECT kind, rule_id, conditions, pattern, actions, enabled FROM push_rules"
            " WHERE user_id = $1 ORDER BY kind, priority DESC",
            user_id,
        )
        return [
            UserRule(
                kind=r["kind"], rule_id=r["rule_id"], actions=json.loads(r["actions"]), enabled=r["enabled"],
                conditions=json.loads(r["conditions"]) if r["conditions"] is not None else None,
                pattern=r["pattern"],
            )
            for r in rows
        ]

    async def default_changes(
        self, user_id: str, conn: asyncpg.Connection | None = None
    ) -> dict[tuple[str, str], DefaultRuleChange]:
        rows = await (conn or self.db).fetch(
            "SELECT kind, rule_id, enabled, actions FROM push_rule_defaults_changed WHERE user_id = $1", user_id
        )
        return {
            (r["kind"], r["rule_id"]): DefaultRuleChange(
                enabled=r["enabled"], actions=json.loads(r["actions"]) if r["actions"] is not None else None,
            )
            for r in rows
        }

    async def put_rule(self, conn: asyncpg.Connection, user_id: str, rule: UserRule) -> None:
        """Insert or replace a rule; its priority is set by ``set_order``."""
        await conn.execute(
            "INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions, pattern, actions, enabled)"
            " VALUES ($1, $2, $3, 0, $4, $5, $6, $7)"
            " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET conditions = EXCLUDED.conditions,"
            " pattern = EXCLUDED.pattern, actions = EXCLUDED.actions, enabled = EXCLUDED.enabled",
            user_id, rule.kind, rule.rule_id,
            json.dumps(rule.conditions) if rule.conditions is not None else None,
            rule.pattern, json.dumps(rule.actions), rule.enabled,
        )

    async def set_order(self, conn: asyncpg.Connection, user_id: str, kind: str, rule_ids: list[str]) -> None:
        """Give the user's rules of ``kind`` priorities in this order, most important first."""
        count = len(rule_ids)
        await conn.executemany(
            "UPDATE push_rules SET priority = $4 WHERE user_id = $1 AND kind = $2 AND rule_id = $3",
            [(user_id, kind, rule_id, count - i) for i, rule_id in enumerate(rule_ids)],
        )

    async def delete_rule(self, conn: asyncpg.Connection, user_id: str, kind: str, rule_id: str) -> bool:
        status = await conn.execute(
            "DELETE FROM push_rules WHERE user_id = $1 AND kind = $2 AND rule_id = $3", user_id, kind, rule_id
        )
        return status != "DELETE 0"

    async def set_enabled(self, conn: asyncpg.Connection, user_id: str, kind: str, rule_id: str, enabled: bool) -> bool:
        status = await conn.execute(
            "UPDATE push_rules SET enabled = $4 WHERE user_id = $1 AND kind = $2 AND rule_id = $3",
            user_id, kind, rule_id, enabled,
        )
        return status != "UPDATE 0"

    async def set_actions(
        self, conn: asyncpg.Connection, user_id: str, kind: str, rule_id: str, actions: list
    ) -> bool:
        status = await conn.execute(
            "UPDATE push_rules SET actions = $4 WHERE user_id = $1 AND kind = $2 AND rule_id = $3",
            user_id, kind, rule_id, json.dumps(actions),
        )
        return status != "UPDATE 0"

    async def change_default(
        self, conn: asyncpg.Connection, user_id: str, kind: str, rule_id: str, change: DefaultRuleChange
    ) -> None:
        """Record a change to a server-default rule; the fields ``change`` leaves None keep
        any earlier change."""
        await conn.execute(
            "INSERT INTO push_rule_defaults_changed (user_id, kind, rule_id, enabled, actions)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET"
            " enabled = COALESCE(EXCLUDED.enabled, push_rule_defaults_changed.enabled),"
            " actions = COALESCE(EXCLUDED.actions, push_rule_defaults_changed.actions)",
            user_id, kind, rule_id, change.enabled,
            json.dumps(change.actions) if change.actions is not None else None,
        )
