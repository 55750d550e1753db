"""The `homeserver` command: generate-config, run, register-user, create-registration-token,
rotate-signing-key, media, export-data, erase-user."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import getpass
import logging
import os
import secrets
import sys
from pathlib import Path

from homeserver.config import ConfigError, load_config, render_default_config
from homeserver.errors import MatrixError
from homeserver.server import StartupError
from homeserver.signing_key import old_keys_path, rotate_signing_key, write_new_signing_key

DEFAULT_CONFIG = Path("homeserver.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="homeserver", description="A personal Matrix homeserver")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="configuration file")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate-config", help="write a commented configuration with fresh secrets")
    generate.add_argument("--server-name", required=True, help="the domain in user ids, e.g. example.org")
    generate.add_argument("--data-dir", default="data")
    generate.add_argument(
        "--force", action="store_true",
        help="replace an existing configuration file (the data directory and signing key are kept)",
    )

    run = commands.add_parser("run", help="start the homeserver")
    run.add_argument(
        "--server-name", default="localhost",
        help="server name for the configuration written when none exists yet",
    )
    run.add_argument(
        "--port", type=int, default=None,
        help="listen on this port instead of listen.port (another process on the same config and"
             " database, docs/scaling.md); also the HOMESERVER_PORT environment variable",
    )

    register = commands.add_parser("register-user", help="create a user account")
    register.add_argument("username", help="localpart, e.g. alice for @alice:example.org")
    register.add_argument("--password", help="the password (asked for when omitted)")
    register.add_argument("--admin", action="store_true", help="make the user a server admin")

    token = commands.add_parser("create-registration-token", help="create a registration token")
    token.add_argument("--uses", type=int, default=None, help="how many registrations it allows")
    token.add_argument("--token", default=None, help="the token text (random when omitted)")

    commands.add_parser(
        "rotate-signing-key",
        help="replace the server's signing key; the old one stays published as an old key (restart after)",
    )

    _add_media_commands(commands)
    _add_user_data_commands(commands)

    args = parser.parse_args(argv)
    try:
        if args.command == "generate-config":
            code = _generate_config(args.config, args.server_name, args.data_dir, args.force)
            if code == 0:
                print(f"wrote {args.config} for server name {args.server_name!r}; edit it, then run "
                      f"`homeserver -c {args.config} run`")
                print(_discovery_hint(args.config))
            return code
        if args.command == "run":
            if not args.config.exists():
                # The README's first command: a server to try at once, configured later.
                code = _generate_config(args.config, args.server_name, "data", force=False)
                if code != 0:
                    return code
                print(f"wrote {args.config} with server name {args.server_name}; starting "
                      f"(edit it and restart to change settings)")
            return _run(args.config, args.port)
        if args.command == "register-user":
            return _register_user(args.config, args.username, args.password, args.admin)
        if args.command == "create-registration-token":
            return _create_token(args.config, args.token, args.uses)
        if args.command == "rotate-signing-key":
            return _rotate_signing_key(args.config)
        if args.command == "media":
            return _media(args.config, args)
        if args.command in ("export-data", "erase-user"):
            return _user_data(args.config, args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StartupError as e:
        # Say what stops the start in one line, not a traceback.
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 1


def _generate_config(path: Path, server_name: str, data_dir: str, force: bool) -> int:
    """Write a fresh configuration; --force replaces the file but never touches the data directory."""
    if path.exists() and not force:
        print(
            f"error: {path} already exists; not overwriting it. Edit it, choose another file with"
            f" -c, or pass --force to replace it with a fresh one (its secrets are lost; the data"
            f" directory, signing key and database are kept)",
            file=sys.stderr,
        )
        return 1
    from homeserver.config import parse_config

    text = render_default_config(server_name, data_dir)
    import yaml

    parse_config(yaml.safe_load(text), source="generated configuration")  # fail early on a bad name
    # The file holds the registration shared secret: readable by its owner only,
    # also when --force replaces a file that others could read.
    path.touch(mode=0o600, exist_ok=force)
    path.chmod(0o600)
    path.write_text(text)
    key_path = load_config(path).signing_key_file
    if key_path.exists():
        print(f"keeping the existing signing key {key_path}")
    else:
        write_new_signing_key(key_path)
        print(f"wrote a new signing key to {key_path}")
    return 0


def _discovery_hint(path: Path) -> str:
    """What to set so that Element finds the server from the bare server name."""
    config = load_config(path)
    if config.client_base_url:
        return f"clients discover the server at {config.client_base_url} (/.well-known/matrix/client)"
    return (
        f"set public_baseurl in {path} to the URL clients reach the server at (e.g."
        f" https://matrix.{config.server_name}/), so that Element can find it from"
        f" {config.server_name} through /.well-known/matrix/client"
    )


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pgserver narrates every command it runs; its warnings are what an admin needs.
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def _run(path: Path, port: int | None = None) -> int:
    from homeserver.server import serve

    config = load_config(path)
    if port is None and os.environ.get("HOMESERVER_PORT"):
        try:
            port = int(os.environ["HOMESERVER_PORT"])
        except ValueError:
            raise ConfigError(f"HOMESERVER_PORT: not a port number: {os.environ['HOMESERVER_PORT']!r}")
    if port is not None:
        if not 1 <= port <= 65535:
            raise ConfigError(f"--port: {port} is not a port number (1-65535)")
        config.listen.port = port
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


def _rotate_signing_key(path: Path) -> int:
    from homeserver.services.clock import now_ms

    key_path = load_config(path).signing_key_file
    if not key_path.exists():
        print(f"error: there is no signing key at {key_path} to rotate", file=sys.stderr)
        return 1
    new, old = rotate_signing_key(key_path, now_ms())
    print(f"new signing key {new.alg}:{new.version} in {key_path}")
    print(f"{old.key_id} is now an old key (expired_ts {old.expired_ts}), kept in {old_keys_path(key_path)}")
    print("restart the server to sign with the new key")
    return 0


def _add_media_commands(commands) -> None:
    media = commands.add_parser("media", help="media repository: usage, purge, delete, quarantine")
    actions = media.add_subparsers(dest="media_command", required=True)
    actions.add_parser("usage", help="disk used, and uploads per user (largest first)")
    listing = actions.add_parser("list", help="the media a user uploaded, newest first")
    listing.add_argument("user_id")
    delete = actions.add_parser("delete", help="delete local media; it answers 404 from then on")
    delete.add_argument("uris", nargs="+", metavar="mxc://...")
    purge = actions.add_parser(
        "purge", help="delete local media uploaded before a date, or not accessed since a date",
    )
    when = purge.add_mutually_exclusive_group(required=True)
    when.add_argument("--before", type=_timestamp_ms, metavar="DATE", help="uploaded before DATE")
    when.add_argument(
        "--not-accessed-since", type=_timestamp_ms, metavar="DATE",
        help="not downloaded since DATE (nor uploaded since, if never downloaded)",
    )
    purge.add_argument("--size-gt", type=int, default=0, metavar="BYTES", help="only files larger than this")
    purge.add_argument("--include-avatars", action="store_true", help="also delete user and room avatars")
    purge.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    remote = actions.add_parser("purge-remote", help="drop cached media of other servers")
    remote.add_argument("--not-accessed-since", type=_timestamp_ms, required=True, metavar="DATE")
    for name, text in (("quarantine", "make media answer 404 (files are kept)"), ("unquarantine", "undo quarantine")):
        action = actions.add_parser(name, help=text)
        action.add_argument("uris", nargs="+", metavar="mxc://...")


def _add_user_data_commands(commands) -> None:
    export = commands.add_parser(
        "export-data", help="write a user's profile, account data, devices, rooms, events and media to a folder",
    )
    export.add_argument("user_id", help="e.g. @alice:example.org")
    export.add_argument("directory", type=Path, help="a new or empty folder (layout: docs/your-data.md)")
    erase = commands.add_parser(
        "erase-user",
        help="deactivate a user, remove their profile, devices and data, redact their messages, delete their media",
    )
    erase.add_argument("user_id", help="e.g. @alice:example.org")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _user_data(path: Path, args: argparse.Namespace) -> int:
    from homeserver.server import open_services
    from homeserver.services.export import ExportService
    # Like homeserver/app.py, the command line wires media/ in (the files of the uploads).
    from media.app import build_repository

    config = load_config(path)
    _setup_logging("WARNING")
    if args.command == "erase-user" and not args.yes:
        try:
            answer = input(f"erase {args.user_id} for good (messages redacted, media deleted)? type the user id: ")
        except EOFError:  # no terminal: a script must say --yes
            answer = ""
        if answer.strip() != args.user_id:
            print("not erased", file=sys.stderr)
            return 1

    async def work() -> int:
        async with open_services(config) as services:
            repository = build_repository(services)
            if args.command == "export-data":
                summary = await ExportService.for_services(services).export(
                    args.user_id, args.directory, repository.content,
                )
                print(f"exported {args.user_id} to {summary.directory}: {summary.rooms} rooms,"
                      f" {summary.events} events, {summary.media} media files")
            else:
                services.erasure.media_deleter = repository
                done = await services.erasure.erase_user(args.user_id)
                print(f"erased {args.user_id}: {done['redacted_events']} events redacted in"
                      f" {done['rooms']} rooms, {done['deleted_media']} media deleted")
            return 0

    try:
        return asyncio.run(work())
    except MatrixError as e:
        print(f"error: {e.error}", file=sys.stderr)
        return 1


def _timestamp_ms(text: str) -> int:
    """DATE: 2026-01-01, 2026-01-01T12:00 (UTC unless an offset is given), or 90d (days ago)."""
    if text.endswith("d") and text[:-1].isdigit():
        moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=int(text[:-1]))
    else:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-01 or an age like 90d")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _media(path: Path, args: argparse.Namespace) -> int:
    from homeserver.server import open_services
    # Like homeserver/app.py, the command line is an entry point that wires media/ in.
    from media.admin import MediaAdmin, parse_mxc

    config = load_config(path)
    _setup_logging("WARNING")
    command = args.media_command

    async def work() -> int:
        async with open_services(config) as services:
            admin = MediaAdmin.for_services(services)
            if command == "usage":
                users, _ = await admin.usage(order_by="media_length", descending=True, limit=1_000_000)
                print(f"media store: {_size(await admin.bytes_stored())} on disk")
                for u in users:
                    print(f"{u.user_id}\t{u.media_count} files\t{_size(u.media_length)}")
            elif command == "list":
                items, _ = await admin.user_media(args.user_id, limit=1_000_000)
                for item in items:
                    created = datetime.datetime.fromtimestamp(item.created_ts / 1000, datetime.timezone.utc)
                    quarantined = "\tquarantined" if item.quarantined_by else ""
                    print(f"mxc://{config.server_name}/{item.media_id}\t{created:%Y-%m-%d %H:%M}"
                          f"\t{_size(item.media_length)}\t{item.media_type}\t{item.upload_name or ''}{quarantined}")
            elif command == "purge":
                by_access = args.before is None
                before = args.not_accessed_since if by_access else args.before
                candidates = await admin.purge_candidates(
                    before, by_access=by_access, size_gt=args.size_gt, keep_profiles=not args.include_avatars,
                )
                deleted = candidates if args.dry_run else await admin.delete_many(candidates)
                for media_id in deleted:
                    print(f"mxc://{config.server_name}/{media_id}")
                print(f"{'would delete' if args.dry_run else 'deleted'} {len(deleted)} media", file=sys.stderr)
            elif command == "purge-remote":
                print(f"dropped {await admin.purge_remote(args.not_accessed_since)} cached remote media")
            else:
                failed = 0
                for uri in args.uris:
                    mxc = parse_mxc(uri)
                    if command == "delete":
                        done = await admin.delete(mxc.server_name, mxc.media_id)
                    else:
                        by = "(command line)" if command == "quarantine" else None
                        done = await admin.set_quarantine(mxc.server_name, mxc.media_id, by)
                    if done:
                        print(f"{command}d {uri}")
                    else:
                        print(f"error: no media {uri}", file=sys.stderr)
                        failed += 1
                return 1 if failed else 0
            return 0

    try:
        return asyncio.run(work())
    except MatrixError as e:
        print(f"error: {e.error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
