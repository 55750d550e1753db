"""Start-up time and resident memory of a fresh server on the embedded PostgreSQL.

    .venv/bin/python tests/benchmarks/bench_startup.py [--starts 2]

In a fresh temporary folder: `homeserver generate-config` (then only the port is
changed to a free one, so that a server already on 8008 does not matter), and
`homeserver run` with no database configured, so the embedded PostgreSQL is
created on the first start (initdb and every migration) and reused on the next.
Prints, per start: the seconds from the process start to the first 200 on
/health, and memory from /proc: the homeserver process's RSS, and the PSS
(shared pages split fairly) of it plus its PostgreSQL processes, at the first
200 and again after a few requests. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

HOMESERVER = Path(sys.executable).with_name("homeserver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kb(path: str, field: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def postgres_processes(data_dir: Path) -> list[int]:
    """The embedded PostgreSQL's postmaster (pg_ctl detaches it from the server) and its children."""
    try:
        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [postmaster, *descendants(postmaster)]


def memory(pid: int, data_dir: Path) -> dict[str, float]:
    """MiB: the server's RSS, and the PSS of the server and the embedded PostgreSQL's processes."""
    others = sorted(set(descendants(pid)) | set(postgres_processes(data_dir)))
    return {
        "server_rss_mib": _kb(f"/proc/{pid}/status", "VmRSS") / 1024,
        "server_pss_mib": _kb(f"/proc/{pid}/smaps_rollup", "Pss") / 1024,
        "postgres_processes": len(others),
        "total_pss_mib": sum(_kb(f"/proc/{p}/smaps_rollup", "Pss") for p in [pid, *others]) / 1024,
    }


def call(base: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def start_once(directory: Path, port: int, first: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HOMESERVER_DATABASE"}
    log = open(directory / "server.log", "ab")
    started = time.monotonic()
    process = subprocess.Popen([str(HOMESERVER), "-c", str(directory / "homeserver.yaml"), "run"],
                               cwd=directory, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"server exited: {(directory / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.02)
        ready = time.monotonic() - started
        at_start = memory(process.pid, directory / "data")
        # A little use: a user, a room, a few messages, a sync.
        name = "alice" if first else "bob"
        user = call(base, "POST", "/_matrix/client/v3/register",
                    {"username": name, "password": "bench-password-1", "auth": {"type": "m.login.dummy"}})
        token = user["access_token"]
        room = call(base, "POST", "/_matrix/client/v3/createRoom", {}, token)["room_id"]
        for i in range(20):
            call(base, "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t{i}",
                 {"msgtype": "m.text", "body": f"message {i}"}, token)
        call(base, "GET", "/_matrix/client/v3/sync", token=token)
        after_use = memory(process.pid, directory / "data")
        kind = "first start (initdb + migrations)" if first else "second start (existing data)"
        print(f"{kind}: first 200 on /health after {ready:.2f} s")
        print(f"  at first 200:   server RSS {at_start['server_rss_mib']:.1f} MiB, "
              f"server + {at_start['postgres_processes']} PostgreSQL processes PSS {at_start['total_pss_mib']:.1f} MiB")
        print(f"  after 20 sends: server RSS {after_use['server_rss_mib']:.1f} MiB, "
              f"server + {after_use['postgres_processes']} PostgreSQL processes PSS {after_use['total_pss_mib']:.1f} MiB")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=2, help="starts on the same data (the first creates it)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="hs-bench-startup-"))
    try:
        config_path = directory / "homeserver.yaml"
        subprocess.run([str(HOMESERVER), "-c", str(config_path), "generate-config", "--server-name", "localhost"],
                       check=True, capture_output=True)
        config = yaml.safe_load(config_path.read_text())
        port = free_port()
        config["listen"]["port"] = port
        # register a user without a token for the "use" part; the policy of the generated file stays.
        config["registration"]["enabled"] = True
        config_path.write_text(yaml.safe_dump(config))
        for i in range(args.starts):
            start_once(directory, port, first=i == 0)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
