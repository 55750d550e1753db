#!/bin/sh
# The image's entrypoint: on the first start, write the configuration into the data
# volume; then run the command (by default `homeserver -c /data/homeserver.yaml run`).
#
# First start only (an existing homeserver.yaml is never touched):
#   - SERVER_NAME (required): the part after the colon in user ids; it cannot change later.
#   - `homeserver generate-config` writes the commented file with fresh secrets and the
#     signing key, with data_dir the folder that holds the configuration (/data).
#   - listen.host becomes 0.0.0.0: inside a container 127.0.0.1 is unreachable from
#     the reverse proxy. Publish the port on the host's 127.0.0.1 only (compose.yaml does).
#   - MATRIX_HOST (optional): public_baseurl https://MATRIX_HOST/ and the .well-known answers.
#   - TURN_SECRET (optional, with MATRIX_HOST): the turn section for the coturn service.
# The database comes from HOMESERVER_DATABASE at every start (it overrides the file);
# unset, the server runs an embedded PostgreSQL in /data/postgres.
set -eu

CONFIG="${HOMESERVER_CONFIG:-/data/homeserver.yaml}"

if [ ! -e "$CONFIG" ]; then
    if [ -z "${SERVER_NAME:-}" ]; then
        echo "error: $CONFIG does not exist; set SERVER_NAME (e.g. example.org) for the first start" >&2
        exit 64
    fi
    DATA_DIR="$(dirname "$CONFIG")"
    homeserver -c "$CONFIG" generate-config --server-name "$SERVER_NAME" --data-dir "$DATA_DIR"
    CONFIG="$CONFIG" python - <<'PY'
import os
from pathlib import Path

from homeserver.config import load_config

path = Path(os.environ["CONFIG"])
text = path.read_text()
default_listen = "listen:\n  host: 127.0.0.1\n"
if default_listen not in text:
    raise SystemExit(f"error: {path} has no default listen section to change to 0.0.0.0")
text = text.replace(default_listen, "listen:\n  host: 0.0.0.0\n", 1)
# Caddy reaches the homeserver from the compose network, not from loopback: believe the
# X-Forwarded-For of Docker's private networks, so rate limits and the device list see clients.
default_proxies = 'trusted_proxies: ["127.0.0.1", "::1"]\n'
if default_proxies not in text:
    raise SystemExit(f"error: {path} has no default trusted_proxies to extend for the compose network")
text = text.replace(default_proxies,
                    'trusted_proxies: ["127.0.0.1", "::1", "172.16.0.0/12", "192.168.0.0/16", "10.0.0.0/8"]\n', 1)

extra = []
matrix_host = os.environ.get("MATRIX_HOST", "").strip()
if matrix_host:
    # generate-config leaves these keys commented out, so appending them defines each once.
    extra += [
        f'public_baseurl: "https://{matrix_host}/"',
        "well_known:",
        f'  server: "{matrix_host}:443"',
    ]
    turn_secret = os.environ.get("TURN_SECRET", "").strip()
    if turn_secret:
        extra += [
            "turn:",
            f'  uris: ["turn:{matrix_host}:3478?transport=udp", "turn:{matrix_host}:3478?transport=tcp"]',
            f'  shared_secret: "{turn_secret}"',
            "  user_lifetime: 1h",
        ]
if extra:
    text += "\n# Written by docker/entrypoint.sh on the first start.\n" + "\n".join(extra) + "\n"
path.write_text(text)

config = load_config(path)  # stops the start here, with the key named, if anything is off
assert config.listen.host == "0.0.0.0"
print(f"{path}: listening on 0.0.0.0:{config.listen.port} inside the container"
      + (f", public_baseurl {config.public_baseurl}" if config.public_baseurl else "")
      + (", TURN configured" if config.turn.uris else ""))
PY
fi

exec "$@"
