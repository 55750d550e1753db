"""The `homeserver` command: generate-config, run, register-user, create-registration-token."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import secrets
import sys
from pathlib import Path

from homeserver.config import ConfigError, load_config, render_default_config
from homeserver.errors import MatrixError

DEFAULT_CONFIG = Path("homeserver.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="homeserver", description="A personal Matrix homeserver")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="configuration file")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate-config", help="write a commented configuration with fresh secrets")
    generate.add_argument("--server-name", required=True, help="the domain in user ids, e.g. example.org")
    generate.add_argument("--data-dir", default="data")

    run = commands.add_parser("run", help="start the homeserver")
    run.add_argument(
        "--server-name", default="localhost",
        help="server name for the configuration written when none exists yet",
    )

    register = commands.add_parser("register-user", help="create a user account")
    register.add_argument("username", help="localpart, e.g. alice for @alice:example.org")
    register.add_argument("--password", help="the password (asked for when omitted)")
    register.add_argument("--admin", action="store_true", help="make the user a server admin")

    token = commands.add_parser("create-registration-token", help="create a registration token")
    token.add_argument("--uses", type=int, default=None, help="how many registrations it allows")
    token.add_argument("--token", default=None, help="the token text (random when omitted)")

    args = parser.parse_args(argv)
    try:
        if args.command == "generate-config":
            return _generate_config(args.config, args.server_name, args.data_dir)
        if args.command == "run":
            if not args.config.exists():
                _generate_config(args.config, args.server_name, "data")
            return _run(args.config)
        if args.command == "register-user":
            return _register_user(args.config, args.username, args.password, args.admin)
        if args.command == "create-registration-token":
            return _create_token(args.config, args.token, args.uses)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1


def _generate_config(path: Path, server_name: str, data_dir: str) -> int:
    if path.exists():
        print(f"error: {path} already exists; not overwriting it", file=sys.stderr)
        return 1
    from homeserver.config import parse_config

    text = render_default_config(server_name, data_dir)
    import yaml

    parse_config(yaml.safe_load(text), source="generated configuration")  # fail early on a bad name
    # The file holds the registration shared secret: readable by its owner only.
    path.touch(mode=0o600, exist_ok=False)
    path.write_text(text)
    print(f"wrote {path} for server name {server_name!r}; edit it, then run `homeserver -c {path} run`")
    return 0


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pgserver narrates every command it runs; its warnings are what an admin needs.
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def _run(path: Path) -> int:
    from homeserver.server import serve

    config = load_config(path)
    _setup_logging(config.log_level)
    asyncio.run(serve(config))
    return 0


def _register_user(path: Path, username: str, password: str | None, admin: bool) -> int:
    from homeserver.server import open_services

    config = load_config(path)
    _setup_logging("WARNING")
    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("error: the passwords differ", file=sys.stderr)
            return 1

    async def work() -> str:
        async with open_services(config) as services:
            return await services.accounts.create_account(username.lower(), password, is_admin=admin)

    try:
        user_id = asyncio.run(work())
    except MatrixError as e:
        print(f"error: {e.error}", file=sys.stderr)
        return 1
    print(f"created {'admin ' if admin else ''}user {user_id}")
    return 0


def _create_token(path: Path, token: str | None, uses: int | None) -> int:
    from homeserver.server import open_services

    config = load_config(path)
    _setup_logging("WARNING")
    token = token or secrets.token_urlsafe(12)

    async def work() -> bool:
        async with open_services(config) as services:
            return await services.registration.create_token(token, uses, None)

    if not asyncio.run(work()):
        print("error: that token already exists", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
