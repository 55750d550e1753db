"""Debian command-line tools that tests drive (coturn, nginx, docker-compose).

Where a tool is missing and the tests run as root on a machine with apt-get (a
fresh Debian box, CI), its package is installed on first use, so the README's
test command needs nothing else. Where it can be neither found nor installed,
the test fails and says how to install it: these tests are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

# Daemons live in sbin, which a non-login shell may leave off PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def debian_tool(name: str, *packages: str) -> str:
    """The path of ``name``, installing the first of ``packages`` that apt-get can install."""
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None and shutil.which("apt-get") and os.geteuid() == 0:
        for package in packages:
            _apt_install(package)
            path = shutil.which(name, path=_SEARCH_PATH)
            if path is not None:
                break
    if path is None:
        pytest.fail(f"{name} not found: install it first: sudo apt-get install -y {packages[0]} (Debian/Ubuntu)",
                    pytrace=False)
    return path


def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(install, env=env, capture_output=True, timeout=600)
