"""The admin's rules for new passwords (config: password_config).

The error codes are Synapse's (synapse/api/errors.py, handlers/password_policy.py),
which Element knows; the spec's generic one is M_WEAK_PASSWORD.
"""

from __future__ import annotations

import re

from homeserver.config import PasswordConfig
from homeserver.errors import MatrixError

_RULES = (
    ("require_digit", re.compile(r"[0-9]"), "M_PASSWORD_NO_DIGIT", "a digit"),
    ("require_symbol", re.compile(r"[^a-zA-Z0-9]"), "M_PASSWORD_NO_SYMBOL", "a symbol"),
    ("require_lowercase", re.compile(r"[a-z]"), "M_PASSWORD_NO_LOWERCASE", "a lowercase letter"),
    ("require_uppercase", re.compile(r"[A-Z]"), "M_PASSWORD_NO_UPPERCASE", "an uppercase letter"),
)


def check_password(password: str, policy: PasswordConfig) -> None:
    """Raise 400 with the first rule the password breaks."""
    if len(password) < policy.minimum_length:
        raise MatrixError(
            400, "M_PASSWORD_TOO_SHORT",
            f"The password must be at least {policy.minimum_length} characters long",
        )
    for flag, pattern, errcode, what in _RULES:
        if getattr(policy, flag) and not pattern.search(password):
            raise MatrixError(400, errcode, f"The password must contain {what}")
