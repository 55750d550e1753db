"""GET /_matrix/client/v3/voip/turnServer and the `turn` configuration section.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3voipturnserver
The real coturn accepting these credentials is tested in tests/e2e/test_turn_coturn.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

import pytest

from homeserver.config import ConfigError, parse_config

TURN = "/_matrix/client/v3/voip/turnServer"
SECRET = "a shared secret only coturn and we know"
URIS = ["turn:turn.test.local:3478?transport=udp", "turns:turn.test.local:5349?transport=tcp"]


def _hmac_password(secret: str, username: str) -> str:
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


async def test_without_turn_configured_the_answer_is_an_empty_object(api):
    alice = await api.register("alice")
    r = await alice.get(TURN)
    assert (r.status, r.body) == (200, {})
    # The r0 prefix, still used by older clients, answers the same.
    r = await alice.get("/_matrix/client/r0/voip/turnServer")
    assert (r.status, r.body) == (200, {})


@pytest.mark.parametrize("config_overrides", [{"turn": {"uris": URIS, "shared_secret": SECRET}}])
async def test_credentials_require_an_access_token(api):
    r = await api.request("GET", TURN)
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN"), r
    r = await api.request("GET", TURN, token="not a token")
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN"), r
    alice = await api.register("alice")
    r = await alice.post(TURN, {})
    assert (r.status, r.errcode) == (405, "M_UNRECOGNIZED"), r


@pytest.mark.parametrize(
    "config_overrides", [{"turn": {"uris": URIS, "shared_secret": SECRET, "user_lifetime": "30m"}}]
)
async def test_shared_secret_gives_each_user_expiring_hmac_credentials(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    before = int(time.time())
    r = await alice.get(TURN)
    after = int(time.time())
    assert r.status == 200, r
    assert set(r.body) == {"username", "password", "uris", "ttl"}
    match = re.fullmatch(r"([0-9]+):(.+)", r["username"])
    assert match, r
    # "<expiry unix seconds>:<user id>", the expiry user_lifetime from now.
    assert match[2] == alice.user_id
    assert before + 1800 <= int(match[1]) <= after + 1800
    assert r["ttl"] == 1800 and isinstance(r["ttl"], int)
    assert r["password"] == _hmac_password(SECRET, r["username"])
    assert r["uris"] == URIS

    r = await bob.get(TURN)
    assert r["username"].endswith(":" + bob.user_id)
    assert r["password"] == _hmac_password(SECRET, r["username"])


@pytest.mark.parametrize(
    "config_overrides", [{"turn": {"uris": URIS[:1], "username": "family", "password": "relay pass"}}]
)
async def test_static_credentials_are_handed_out_as_configured(api):
    alice = await api.register("alice")
    r = await alice.get(TURN)
    assert r.status == 200, r
    assert r.body == {"username": "family", "password": "relay pass", "uris": URIS[:1], "ttl": 3600}


@pytest.mark.parametrize("config_overrides", [{"turn": {
    "uris": URIS, "shared_secret": SECRET, "rate_limit": {"per_second": 0.001, "burst": 2},
}}])
async def test_requests_are_rate_limited_per_user(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    for _ in range(2):
        assert (await alice.get(TURN)).status == 200
    r = await alice.get(TURN)
    assert (r.status, r.errcode) == (429, "M_LIMIT_EXCEEDED"), r
    assert r["retry_after_ms"] > 0
    # Another user has a bucket of their own.
    assert (await bob.get(TURN)).status == 200


# The configuration section


def _turn(**section) -> object:
    return parse_config({"server_name": "test.local", "turn": section}).turn


def test_turn_config_defaults_and_durations():
    default = parse_config({"server_name": "test.local"}).turn
    assert default.uris == [] and not default.enabled
    assert default.user_lifetime == 3600
    turn = _turn(uris=URIS + ["turn:[2001:db8::1]:3478", "turn:192.0.2.1"], shared_secret="s")
    assert turn.enabled and turn.user_lifetime == 3600
    durations = (("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), (600, 600), ("600", 600))
    for written, seconds in durations:
        assert _turn(uris=URIS, shared_secret="s", user_lifetime=written).user_lifetime == seconds
    # Accepted for Synapse-style configurations, without effect here.
    assert _turn(uris=URIS, shared_secret="s", allow_guests=False).allow_guests is False


@pytest.mark.parametrize("section, problem", [
    ({"uris": ["stun:turn.test.local:3478"], "shared_secret": "s"},
     "turn.uris: .*'stun:turn.test.local:3478' is not a TURN URI"),
    ({"uris": ["https://turn.test.local"], "shared_secret": "s"}, "turn.uris: .*not a TURN URI"),
    ({"uris": ["turn:turn.test.local?transport=sctp"], "shared_secret": "s"}, "turn.uris: .*not a TURN URI"),
    ({"uris": ["turn: turn.test.local"], "shared_secret": "s"}, "turn.uris: .*not a TURN URI"),
    ({"uris": "turn:turn.test.local", "shared_secret": "s"}, "turn.uris: "),
    ({"uris": URIS}, "turn: .*neither shared_secret nor username and password"),
    ({"shared_secret": "s"}, "turn: .*uris is empty"),
    ({"uris": URIS, "shared_secret": "s", "username": "u", "password": "p"}, "turn: .*not both"),
    ({"uris": URIS, "username": "u"}, "turn: .*username and password must be set together"),
    ({"uris": URIS, "shared_secret": ""}, "turn.shared_secret: "),
    ({"uris": URIS, "shared_secret": "s", "user_lifetime": 10},
     "turn.user_lifetime: .*greater than or equal to 60"),
    # Synapse counts plain numbers in milliseconds; here they are seconds, so a
    # copied 86400000 would be 1000 days and is refused.
    ({"uris": URIS, "shared_secret": "s", "user_lifetime": 86_400_000},
     "turn.user_lifetime: .*less than or equal"),
    ({"uris": URIS, "shared_secret": "s", "user_lifetime": "an hour"}, "turn.user_lifetime: .*duration"),
    ({"uris": URIS, "shared_secret": "s", "turn_uris": URIS}, "turn.turn_uris: unknown key"),
])
def test_turn_config_errors_name_the_key(section, problem):
    with pytest.raises(ConfigError) as error:
        _turn(**section)
    assert re.search(problem, str(error.value)), str(error.value)
