#!/usr/bin/env bash
# Create .venv in the repository root and install the harness with the Bullet simulator.
# Usage: bash scripts/setup.sh [extras]   (default extras: bullet,test)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-bullet,test}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
.venv/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
DSRL_SUPPRESS_IMPORT_ERROR=1 .venv/bin/python -c "import torch, gymnasium, pybullet, bullet_safety_gym, dsrl; print('installed: torch', torch.__version__, '| gymnasium', gymnasium.__version__)"
