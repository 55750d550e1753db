"""The TURN credential arithmetic, without a server (homeserver/services/turn.py)."""

from __future__ import annotations

from homeserver.config import parse_config
from homeserver.services.turn import TurnService, ephemeral_credentials

URIS = ["turn:turn.test.local:3478?transport=udp"]


def test_ephemeral_credentials_match_coturns_rest_api_scheme():
    # Computed independently: printf %s "$U" | openssl dgst -sha1 -hmac s3cret -binary | base64
    username, password = ephemeral_credentials("s3cret", "@alice:test.local", 1795574051)
    assert username == "1795574051:@alice:test.local"
    assert password == "MNgP+SAcsRduvTDHiE96d9XXBYQ="


def test_expiry_is_the_clock_plus_the_lifetime_in_whole_seconds():
    config = parse_config({"server_name": "test.local", "turn": {
        "uris": URIS, "shared_secret": "s3cret", "user_lifetime": "2h",
    }}).turn
    service = TurnService(config, clock=lambda: 1_700_000_000_999)
    body = service.credentials("@alice:test.local")
    assert body["username"] == "1700007200:@alice:test.local"
    assert body["password"] == ephemeral_credentials("s3cret", "@alice:test.local", 1700007200)[1]
    assert body["ttl"] == 7200 and body["uris"] == URIS
    # The body holds a copy: a caller changing it cannot change the configuration.
    body["uris"].append("turn:evil.example")
    assert service.credentials("@alice:test.local")["uris"] == URIS


def test_without_uris_there_is_nothing_to_hand_out():
    service = TurnService(parse_config({"server_name": "test.local"}).turn)
    assert service.credentials("@alice:test.local") == {}
