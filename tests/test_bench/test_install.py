"""The install scripts on a fresh clone: what README (a) and (b) rely on."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STUB_PYTHON = """#!/usr/bin/env bash
# records the call; `-m venv DIR` makes a virtual-environment-shaped DIR with this stub inside
echo "$0 $*" >> "$CALLS"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && touch "$3/pyvenv.cfg" && cp "$0" "$3/bin/python"
fi
cat > /dev/null 2>&1 || true
exit 0
"""


@pytest.mark.parametrize("what", ["redirect file", "stray folder", "dangling link", "nothing"])
def test_setup_makes_the_project_venv_whatever_dot_venv_is(what, tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "python3").write_text(STUB_PYTHON)
    (stubs / "python3").chmod(0o755)
    if what == "redirect file":  # what tox 4.67 leaves after README (b)
        (repo / ".venv").write_text(str(tmp_path / "somewhere" / ".tox" / "py311") + "\n")
    elif what == "stray folder":
        (repo / ".venv").mkdir()
        (repo / ".venv" / "junk").write_text("x")
    elif what == "dangling link":  # a link to an environment since deleted
        (repo / ".venv").symlink_to(tmp_path / "gone")
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls")}
    done = subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (repo / ".venv" / "pyvenv.cfg").is_file()
    assert ("replacing it" in done.stderr) == (what != "nothing")
    calls = (tmp_path / "calls").read_text()
    assert "-m venv .venv" in calls and "pip install --quiet -e .[" in calls


def test_tox_writes_no_venv_redirect_and_ci_pins_a_tested_tox():
    config = configparser.ConfigParser()
    config.read(ROOT / "tox.ini")
    assert config.getboolean("tox", "venv_redirect") is False
    ci = (ROOT / ".ci" / "run").read_text()
    assert '"tox>=4.67,<4.68"' in ci
