"""The configuration file and the `homeserver` command (generate-config, register-user, tokens)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from homeserver import cli
from homeserver.config import DATABASE_ENV, ConfigError, load_config, parse_config

TOKEN_GATED = {"registration": {"enabled": True, "require_token": True}}


def _generate(path: Path, *extra: str) -> int:
    return cli.main(["-c", str(path), "generate-config", "--server-name", "example.org", *extra])


def _write_config(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump({
        "server_name": "test.local",
        "data_dir": str(tmp_path / "data"),
        "database": dsn,
        "password_hash_rounds": 4,
        "password_config": {"minimum_length": 1},
    }))
    return path


async def _run_cli(*argv: str) -> int:
    # The commands call asyncio.run(), so they need a thread without a running loop.
    return await asyncio.to_thread(cli.main, list(argv))


# generate-config


def test_generate_config_writes_a_valid_commented_file(tmp_path, capsys):
    path = tmp_path / "homeserver.yaml"
    assert _generate(path) == 0
    text = path.read_text()
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) >= 10
    config = load_config(path)
    assert config.server_name == "example.org"
    # Safe defaults: closed registration, a data directory next to the file.
    assert config.registration.enabled is False
    assert config.data_dir == (tmp_path / "data").resolve()
    secret = config.registration.shared_secret
    assert isinstance(secret, str) and len(secret) >= 32
    # It holds a secret: no one but the owner may read it.
    assert path.stat().st_mode & 0o077 == 0
    assert str(path) in capsys.readouterr().out


def test_generated_secrets_are_fresh(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert _generate(first) == 0
    assert _generate(second) == 0
    assert load_config(first).registration.shared_secret != load_config(second).registration.shared_secret


def test_generate_config_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "homeserver.yaml"
    path.write_text("# my precious configuration\n")
    assert _generate(path) != 0
    assert path.read_text() == "# my precious configuration\n"
    assert "exists" in capsys.readouterr().err


def test_generate_config_refuses_a_bad_server_name(tmp_path, capsys):
    path = tmp_path / "homeserver.yaml"
    code = cli.main(["-c", str(path), "generate-config", "--server-name", "not a server name!"])
    assert code != 0
    assert not path.exists()
    assert "server_name" in capsys.readouterr().err


# Validation: errors name the key


@pytest.mark.parametrize("raw, key", [
    ({"server_name": "example.org", "bogus": 1}, "bogus"),
    ({"server_name": "example.org", "registration": {"enable": True}}, "registration.enable"),
    ({"server_name": "not a name!"}, "server_name"),
    ({"server_name": "example.org:http"}, "server_name"),
    ({}, "server_name"),
    ({"server_name": 42}, "server_name"),
    ({"server_name": "example.org", "listen": {"port": "eighty"}}, "listen.port"),
    ({"server_name": "example.org", "listen": {"port": 70000}}, "listen.port"),
    ({"server_name": "example.org", "listen": "0.0.0.0:8008"}, "listen"),
    ({"server_name": "example.org", "registration": {"enabled": "perhaps"}}, "registration.enabled"),
    ({"server_name": "example.org", "limits": {"max_request_body_bytes": 10}}, "limits.max_request_body_bytes"),
    ({"server_name": "example.org", "rate_limits": {"login": {"per_second": -1}}}, "rate_limits.login.per_second"),
    ({"server_name": "example.org", "password_hash_rounds": 2}, "password_hash_rounds"),
    ({"server_name": "example.org", "log_level": "LOUD"}, "log_level"),
])
def test_invalid_config_names_the_key(raw, key):
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)
    message = str(excinfo.value)
    assert f"{key}:" in message, message


def test_unknown_key_is_called_unknown():
    with pytest.raises(ConfigError) as excinfo:
        parse_config({"server_name": "example.org", "regsitration": {}})
    assert "regsitration: unknown key" in str(excinfo.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as excinfo:
        parse_config({"server_name": "bad name", "listen": {"port": 0}, "extra": 1})
    message = str(excinfo.value)
    for key in ("server_name", "listen.port", "extra"):
        assert key in message


@pytest.mark.parametrize("text, fragment", [
    ("server_name: [unclosed\n", "YAML"),
    ("server_name: example.org\n  bad indent: 1\n", "YAML"),
    ("- just\n- a list\n", "mapping"),
    ("", "mapping"),
    ("just a string\n", "mapping"),
])
def test_bad_files(tmp_path, text, fragment):
    path = tmp_path / "homeserver.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert fragment in str(excinfo.value)
    assert str(path) in str(excinfo.value)


def test_missing_file_suggests_generate_config(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path / "nope.yaml")
    assert "generate-config" in str(excinfo.value)


def test_commands_report_config_errors(tmp_path, capsys):
    path = tmp_path / "homeserver.yaml"
    path.write_text("server_name: example.org\nlisten: {port: eighty}\n")
    code = cli.main(["-c", str(path), "register-user", "alice", "--password", "pw"])
    assert code == 2
    assert "listen.port" in capsys.readouterr().err


def test_relative_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "homeserver.yaml"
    path.write_text("server_name: example.org\ndata_dir: state\nsigning_key_path: keys/signing.key\n")
    config = load_config(path)
    assert config.data_dir == (tmp_path / "etc" / "state").resolve()
    assert config.signing_key_file == (tmp_path / "etc" / "keys" / "signing.key").resolve()


def test_database_environment_variable_overrides_the_file(monkeypatch):
    config = parse_config({"server_name": "example.org", "database": "postgresql://file/db"})
    monkeypatch.delenv(DATABASE_ENV, raising=False)
    assert config.database_dsn == "postgresql://file/db"
    monkeypatch.setenv(DATABASE_ENV, "postgresql://env/db")
    assert config.database_dsn == "postgresql://env/db"


# Admin commands against the test database


async def test_register_user(api, tmp_path, database_dsn, monkeypatch, capsys):
    monkeypatch.delenv(DATABASE_ENV, raising=False)
    path = _write_config(tmp_path, database_dsn)
    assert await _run_cli("-c", str(path), "register-user", "Alice", "--password", "alice pw") == 0
    assert "@alice:test.local" in capsys.readouterr().out
    assert await _run_cli("-c", str(path), "register-user", "root", "--password", "root pw", "--admin") == 0

    alice = await api.services.users.get_user("@alice:test.local")
    root = await api.services.users.get_user("@root:test.local")
    assert alice is not None and alice.is_admin is False
    assert root is not None and root.is_admin is True
    r = await api.login("alice", password="alice pw")
    assert r.status == 200
    assert r["user_id"] == "@alice:test.local"
    assert (await api.login("root", password="root pw")).status == 200

    # A taken or invalid name fails with a message and creates nothing.
    capsys.readouterr()
    assert await _run_cli("-c", str(path), "register-user", "alice", "--password", "other") == 1
    assert await _run_cli("-c", str(path), "register-user", "bad name", "--password", "x") == 1
    err = capsys.readouterr().err
    assert "taken" in err
    assert await api.services.users.count_users() == 2
    assert (await api.login("alice", password="other")).status == 403


@pytest.mark.parametrize("config_overrides", [TOKEN_GATED])
async def test_created_registration_token_works(api, tmp_path, database_dsn, monkeypatch, capsys):
    monkeypatch.delenv(DATABASE_ENV, raising=False)
    path = _write_config(tmp_path, database_dsn)
    assert await _run_cli("-c", str(path), "create-registration-token", "--uses", "1") == 0
    token = capsys.readouterr().out.strip()
    assert token and "\n" not in token

    register = {"username": "alice", "password": "pw", "auth": {"type": "m.login.registration_token", "token": token}}
    r = await api.request("POST", "/_matrix/client/v3/register", register)
    assert r.status == 200, r
    assert r["user_id"] == "@alice:test.local"
    # --uses 1: the token is spent.
    again = await api.request("POST", "/_matrix/client/v3/register", {**register, "username": "bob"})
    assert again.status == 401
    assert again.errcode == "M_FORBIDDEN"

    # A chosen token text; the same one twice is refused.
    assert await _run_cli("-c", str(path), "create-registration-token", "--token", "family2026") == 0
    assert capsys.readouterr().out.strip() == "family2026"
    assert await _run_cli("-c", str(path), "create-registration-token", "--token", "family2026") == 1
    r = await api.request("POST", "/_matrix/client/v3/register", {
        **register, "username": "bob", "auth": {"type": "m.login.registration_token", "token": "family2026"},
    })
    assert r.status == 200
