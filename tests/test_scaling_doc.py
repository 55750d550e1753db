"""The nginx configuration of docs/scaling.md is one Debian's nginx accepts (`nginx -t`), with
its optional block for the writes of a room put where the doc says (tests/e2e/test_nginx_proxy.py
runs the single-process configuration of docs/reverse-proxy.md for real)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.debian_tools import debian_tool

DOC = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"
IN_SERVER = "# in the server block, before the catch-all location:"
CATCH_ALL = "    location ~ ^(/_matrix"


def _blocks() -> list[str]:
    return re.findall(r"```nginx\n(.*?)```", DOC.read_text(), re.S)


def test_the_documented_nginx_configuration_is_valid(tmp_path):
    nginx = debian_tool("nginx", "nginx-light", "nginx")
    main, by_room = _blocks()
    assert IN_SERVER in by_room and CATCH_ALL in main
    http_part, server_part = by_room.split(IN_SERVER)
    # No certificates on a test machine: plain listeners instead of the TLS ones.
    main = re.sub(r"listen \d+ ssl http2;.*\n", "", main)
    assert "listen" not in main
    main = main.replace("server_name", "listen 127.0.0.1:18443;\n    server_name", 1)
    main = main.replace(CATCH_ALL, server_part.strip("\n") + "\n" + CATCH_ALL, 1)
    config = (
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n    access_log off;\n{http_part}\n{main}\n}}\n"
    )
    (tmp_path / "nginx.conf").write_text(config)
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr + "\n" + config
    assert "homeserver_by_room" in config and "hash $room_of_write consistent" in config
