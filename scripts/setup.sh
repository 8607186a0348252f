#!/usr/bin/env bash
# Create .venv in the repository root and install the harness with the three simulator families.
# Usage: bash scripts/setup.sh [extras]   (default extras: bullet,safetygym,metadrive,test)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-bullet,safetygym,metadrive,test}"
# .venv may already be something else: a PEP 832 redirect file that a tool (tox 4.67) wrote,
# or a folder that is no virtual environment; the project's environment takes the name
# (a link to a working environment elsewhere is kept; a dangling link is replaced)
if { [ -L .venv ] && [ ! -e .venv ]; } || { [ -e .venv ] && { [ ! -d .venv ] || [ ! -f .venv/pyvenv.cfg ]; }; }; then
  echo "setup: .venv is not a virtual environment here (a redirect file, a stray folder or a dangling link); replacing it" >&2
  rm -rf .venv
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
.venv/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
# safety-gymnasium 0.4.0 does not import on Python 3.11 as published (mutable dataclass defaults)
.venv/bin/python -m tasks.patch_safety_gymnasium
DSRL_SUPPRESS_IMPORT_ERROR=1 .venv/bin/python - <<'PY'
import importlib.util
from importlib.metadata import version

import gymnasium
import torch

found = [f"torch {torch.__version__}", f"gymnasium {gymnasium.__version__}"]
for module, dist in (("bullet_safety_gym", "bullet-safety-gym"), ("mujoco", "safety-gymnasium"),
                     ("metadrive", "metadrive-simulator")):
    if importlib.util.find_spec(module) is not None:
        if module == "mujoco":  # what Python 3.11 refuses in the unpatched package
            from safety_gymnasium.assets import free_geoms, geoms, mocaps  # noqa: F401
        elif module == "metadrive":
            import metadrive  # noqa: F401
        else:
            import bullet_safety_gym  # noqa: F401
        found.append(f"{dist} {version(dist)}")
print("installed:", " | ".join(found))
PY
