"""Shared-secret registration (Synapse's /_synapse/admin/v1/register), used by admin tools."""

import hashlib
import hmac

import pytest

SECRET = "family secret"


@pytest.fixture
def config_overrides():
    return {"registration": {"enabled": False, "shared_secret": SECRET}}


def _mac(nonce: str, username: str, password: str, admin: bool, secret: str = SECRET) -> str:
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\x00{username}\x00{password}\x00".encode())
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


async def _register(api, username, password, admin=False, secret=SECRET):
    nonce = (await api.request("GET", "/_synapse/admin/v1/register"))["nonce"]
    return await api.request("POST", "/_synapse/admin/v1/register", {
        "nonce": nonce, "username": username, "password": password, "admin": admin,
        "mac": _mac(nonce, username, password, admin, secret),
    })


async def test_registers_admin_while_public_registration_is_closed(api):
    closed = await api.request("POST", "/_matrix/client/v3/register", {"username": "x", "password": "y"})
    assert closed.status == 403
    r = await _register(api, "grandma", "knitting needles", admin=True)
    assert r.status == 200, r
    assert r["user_id"] == "@grandma:test.local"
    whoami = await api.request("GET", "/_matrix/client/v3/account/whoami", token=r["access_token"])
    assert whoami["user_id"] == "@grandma:test.local"
    user = await api.services.users.get_user("@grandma:test.local")
    assert user.is_admin


async def test_wrong_mac_is_refused_and_creates_nobody(api):
    r = await _register(api, "mallory", "pw", secret="guessed")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await api.services.users.get_user("@mallory:test.local") is None


async def test_nonce_is_single_use(api):
    nonce = (await api.request("GET", "/_synapse/admin/v1/register"))["nonce"]
    body = {"nonce": nonce, "username": "once", "password": "pw", "mac": _mac(nonce, "once", "pw", False)}
    first = await api.request("POST", "/_synapse/admin/v1/register", body)
    assert first.status == 200
    again = await api.request("POST", "/_synapse/admin/v1/register", {**body, "username": "twice",
                                                                       "mac": _mac(nonce, "twice", "pw", False)})
    assert again.status == 400 and again.errcode == "M_UNKNOWN"


async def test_disabled_without_a_secret(api, services):
    services.config.registration.shared_secret = None
    r = await api.request("GET", "/_synapse/admin/v1/register")
    assert r.status == 400
