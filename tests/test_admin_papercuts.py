"""What a new admin tripped over (issue 9, part 7): discovery, first run, --force, passwords, docs."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from homeserver import cli
from homeserver.config import DATABASE_ENV, PasswordConfig, load_config, parse_config
from homeserver.errors import MatrixError
from homeserver.services.password_policy import check_password

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "/_matrix/client/v3/account/password"
PW = "correct horse battery"


# /.well-known/matrix/client


@pytest.mark.parametrize("raw, expected", [
    ({"server_name": "localhost"}, "http://localhost:8008"),
    ({"server_name": "localhost", "listen": {"port": 8448}}, "http://localhost:8448"),
    ({"server_name": "127.0.0.1:8448", "listen": {"port": 9000}}, "http://127.0.0.1:9000"),
    ({"server_name": "[::1]"}, "http://[::1]:8008"),
    # A real domain is reached through the proxy, whose URL only the admin knows.
    ({"server_name": "example.org"}, None),
    ({"server_name": "localhost", "listen": {"host": "192.168.1.5"}}, None),
    ({"server_name": "example.org", "public_baseurl": "https://matrix.example.org/"},
     "https://matrix.example.org/"),
    ({"server_name": "localhost", "public_baseurl": "https://matrix.example.org/"},
     "https://matrix.example.org/"),
])
def test_client_base_url(raw, expected):
    assert parse_config(raw).client_base_url == expected


@pytest.mark.parametrize("config_overrides", [{"server_name": "localhost"}])
async def test_well_known_client_of_the_first_run_config(api):
    r = await api.request("GET", "/.well-known/matrix/client")
    assert r.status == 200, r
    assert r.body == {"m.homeserver": {"base_url": "http://localhost:8008"}}


async def test_well_known_client_404_says_what_to_set(api):
    r = await api.request("GET", "/.well-known/matrix/client")
    assert r.status == 404
    assert r.errcode == "M_NOT_FOUND"
    assert "public_baseurl" in r["error"]


def test_generate_config_says_to_set_public_baseurl(tmp_path, capsys):
    path = tmp_path / "homeserver.yaml"
    assert cli.main(["-c", str(path), "generate-config", "--server-name", "example.org"]) == 0
    out = capsys.readouterr().out
    assert "public_baseurl" in out and "https://matrix.example.org/" in out
    assert "public_baseurl" in path.read_text()

    local = tmp_path / "local.yaml"
    assert cli.main(["-c", str(local), "generate-config", "--server-name", "localhost"]) == 0
    assert "http://localhost:8008" in capsys.readouterr().out


# `run` on a fresh machine


def test_first_run_says_it_starts_and_starts(tmp_path, monkeypatch, capsys):
    started: list[Path] = []
    # The server itself is not started here: the message and the decision are the point.
    monkeypatch.setattr(cli, "_run", lambda path, port=None: started.append(path) or 0)
    path = tmp_path / "homeserver.yaml"
    assert cli.main(["-c", str(path), "run"]) == 0
    assert started == [path]
    out = capsys.readouterr().out
    assert f"wrote {path} with server name localhost; starting" in out
    assert "then run" not in out
    config = load_config(path)
    assert config.server_name == "localhost"
    assert config.signing_key_file.exists()

    # Second start: the file exists, nothing is written or said about it.
    assert cli.main(["-c", str(path), "run"]) == 0
    assert started == [path, path]
    assert "wrote" not in capsys.readouterr().out


# generate-config --force


def test_generate_config_refusal_says_what_to_do(tmp_path, capsys):
    path = tmp_path / "homeserver.yaml"
    path.write_text("# mine\n")
    assert cli.main(["-c", str(path), "generate-config", "--server-name", "example.org"]) == 1
    err = capsys.readouterr().err
    assert "--force" in err and "-c" in err
    assert path.read_text() == "# mine\n"


def test_generate_config_force_replaces_the_file_and_keeps_the_data(tmp_path, capsys):
    path = tmp_path / "homeserver.yaml"
    assert cli.main(["-c", str(path), "generate-config", "--server-name", "example.org"]) == 0
    first = load_config(path)
    key = first.signing_key_file.read_bytes()
    (first.data_dir / "media").mkdir()
    (first.data_dir / "media" / "file").write_text("a photo")
    path.chmod(0o644)

    assert cli.main(["-c", str(path), "generate-config", "--server-name", "example.net", "--force"]) == 0
    second = load_config(path)
    assert second.server_name == "example.net"
    assert second.registration.shared_secret != first.registration.shared_secret
    assert path.stat().st_mode & 0o077 == 0
    # The data directory is not the configuration: the signing key and media stay.
    assert second.signing_key_file.read_bytes() == key
    assert (second.data_dir / "media" / "file").read_text() == "a photo"
    assert "keeping the existing signing key" in capsys.readouterr().out


# Passwords


@pytest.mark.parametrize("policy, password, errcode", [
    ({}, "1234567", "M_PASSWORD_TOO_SHORT"),
    ({"minimum_length": 3}, "ab", "M_PASSWORD_TOO_SHORT"),
    ({"require_digit": True}, "abcdefgh", "M_PASSWORD_NO_DIGIT"),
    ({"require_symbol": True}, "abcdefg1", "M_PASSWORD_NO_SYMBOL"),
    ({"require_lowercase": True}, "ABCDEFG1", "M_PASSWORD_NO_LOWERCASE"),
    ({"require_uppercase": True}, "abcdefg1", "M_PASSWORD_NO_UPPERCASE"),
])
def test_password_policy_refuses(policy, password, errcode):
    with pytest.raises(MatrixError) as excinfo:
        check_password(password, PasswordConfig(**policy))
    assert (excinfo.value.status, excinfo.value.errcode) == (400, errcode)


@pytest.mark.parametrize("policy, password", [
    ({}, "12345678"),
    ({"require_digit": True, "require_symbol": True, "require_lowercase": True, "require_uppercase": True},
     "Correct horse 1"),
    ({"minimum_length": 1}, "x"),
])
def test_password_policy_accepts(policy, password):
    check_password(password, PasswordConfig(**policy))


def test_password_config_is_validated():
    assert parse_config({"server_name": "example.org"}).password_config.minimum_length == 8
    with pytest.raises(Exception, match="password_config.minimum_length"):
        parse_config({"server_name": "example.org", "password_config": {"minimum_length": 0}})
    with pytest.raises(Exception, match="password_config.require_numbers: unknown key"):
        parse_config({"server_name": "example.org", "password_config": {"require_numbers": True}})


async def test_register_user_refuses_a_short_password(api, tmp_path, database_dsn, monkeypatch, capsys):
    monkeypatch.delenv(DATABASE_ENV, raising=False)
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump({
        "server_name": "test.local", "data_dir": str(tmp_path / "data"), "database": database_dsn,
        "password_hash_rounds": 4, "password_config": {"require_digit": True},
    }))
    main = lambda *argv: asyncio.to_thread(cli.main, ["-c", str(path), *argv])  # noqa: E731
    assert await main("register-user", "alice", "--password", "x") == 1
    assert "at least 8 characters" in capsys.readouterr().err
    assert await main("register-user", "alice", "--password", "no digits here") == 1
    assert "digit" in capsys.readouterr().err
    assert await api.services.users.count_users() == 0
    assert await main("register-user", "alice", "--password", "four words 4 me") == 0


@pytest.mark.parametrize("config_overrides", [{"password_config": {"minimum_length": 10, "require_digit": True}}])
async def test_registration_and_password_change_follow_the_policy(api):
    register = {"username": "alice", "auth": {"type": "m.login.dummy"}}
    r = await api.request("POST", "/_matrix/client/v3/register", {**register, "password": "short1"})
    assert (r.status, r.errcode) == (400, "M_PASSWORD_TOO_SHORT")
    r = await api.request("POST", "/_matrix/client/v3/register", {**register, "password": "no digits at all"})
    assert (r.status, r.errcode) == (400, "M_PASSWORD_NO_DIGIT")
    assert await api.services.users.count_users() == 0

    alice = await api.register("alice", "correct horse battery 9")
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
            "password": "correct horse battery 9"}
    r = await alice.post(PASSWORD, {"new_password": "tiny1", "auth": auth})
    assert (r.status, r.errcode) == (400, "M_PASSWORD_TOO_SHORT")
    assert (await api.login("alice", password="correct horse battery 9")).status == 200
    r = await alice.post(PASSWORD, {"new_password": "staple battery 42", "auth": auth})
    assert r.status == 200, r
    assert (await api.login("alice", password="staple battery 42")).status == 200


# Documentation


def test_readme_layout_table_is_one_table():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.split(r"\n\s*\n", section) if b.strip().startswith("|")]
    assert len(blocks) == 1, "the layout table is interrupted"
    for path in ("homeserver/protocol/", "media/", "federation/", "migrations/", "tests/", "docs/"):
        assert f"`{path}`" in blocks[0]


def test_pyproject_description_is_true():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    description = project["description"]
    if "federation" in description:
        assert (ROOT / "federation" / "__init__.py").exists()
    assert "media" not in description or (ROOT / "media" / "__init__.py").exists()


def test_docs_name_the_new_keys():
    docs = (ROOT / "docs" / "configuration.md").read_text()
    assert "### `password_config`" in docs
    assert "M_PASSWORD_TOO_SHORT" in docs
    assert "--force" in docs
    assert "--force" in (ROOT / "README.md").read_text()
