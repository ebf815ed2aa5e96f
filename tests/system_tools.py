"""System programs the tests drive (Mosquitto, tmux): found on the PATH, installed with
apt-get where missing, or the test is skipped."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest

SBIN = "/usr/sbin:/usr/local/sbin:/sbin"
"""Where daemons live when the PATH leaves out the sbin folders."""


def system_program(name: str) -> str:
    """The path of the executable ``name`` (from the Debian package of the same name)."""

    def find() -> str | None:
        return shutil.which(name) or shutil.which(name, path=SBIN)

    found = find()
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", name]
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            if subprocess.run(install, env=env, capture_output=True, timeout=300).returncode:
                subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300)
                subprocess.run(install, env=env, capture_output=True, timeout=300)
        found = find()
    if found is None:
        pytest.skip(f"{name} is not installed and could not be installed with apt-get")
    return found
