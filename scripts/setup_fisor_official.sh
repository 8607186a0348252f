#!/usr/bin/env bash
# Build an environment for the authors' FISOR code (`bench run --set implementation=official`, CPU).
# Usage: bash scripts/setup_fisor_official.sh [TARGET]  (default: .fisor-official in the repo)
#   TARGET holds the official checkout; its Python 3.9 venv goes to TARGET/.venv.
#   If TARGET is not a checkout yet, it is cloned from FISOR_SOURCE
#   (default https://github.com/ZhengYinan-AIR/FISOR.git; a local clone or mirror works too),
#   at FISOR_REF if set (a branch or commit, e.g. metadrive_imitation; default: its HEAD).
#   Python 3.9 (environment.yaml's) is taken from FISOR_BASE_PYTHON if set, else python3.9
#   on PATH, else a pyenv 3.9. Ends by printing the FISOR_HOME / FISOR_PYTHON exports.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${1:-$root/.fisor-official}"  # a relative TARGET is taken from the current folder
source_url="${FISOR_SOURCE:-https://github.com/ZhengYinan-AIR/FISOR.git}"
entry="launcher/examples/train_offline.py"

# ---- a Python 3.9 ------------------------------------------------------------------------
is_python39() {  # pyenv's shims exist on PATH even when the version is not selected
    [ -n "$1" ] && "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 9))' \
        >/dev/null 2>&1
}
candidates=()
[ -n "${FISOR_BASE_PYTHON:-}" ] && candidates+=("$FISOR_BASE_PYTHON")
candidates+=("$(command -v python3.9 || true)")
if command -v pyenv >/dev/null 2>&1; then
    for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.9(\.|$)' | sort -rV); do
        candidates+=("$(pyenv root)/versions/$version/bin/python3.9")
    done
fi
for found in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9*/bin/python3.9; do
    candidates+=("$found")
done
base=""
for candidate in "${candidates[@]}"; do
    if is_python39 "$candidate"; then base="$candidate"; break; fi
done
if [ -z "$base" ]; then
    echo "error: no working Python 3.9 found (the authors' environment.yaml uses 3.9, and the" \
         "pinned jax/flax are of its time). Install one (e.g. pyenv install 3.9) or set" \
         "FISOR_BASE_PYTHON to its interpreter." >&2
    exit 1
fi
echo "base interpreter: $base ($("$base" --version 2>&1))"

# ---- the official code -------------------------------------------------------------------
if [ -f "$target/$entry" ]; then
    echo "using the checkout already in $target"
elif [ -e "$target" ] && [ -n "$(ls -A "$target" 2>/dev/null)" ]; then
    echo "error: $target exists but is not a FISOR checkout (no $entry); remove it or pick" \
         "another folder" >&2
    exit 1
else
    echo "cloning $source_url into $target"
    git clone --quiet "$source_url" "$target"
    if [ -n "${FISOR_REF:-}" ]; then
        git -C "$target" checkout --quiet "$FISOR_REF"
    fi
fi
home="$(cd "$target" && pwd)"

# ---- the venv ----------------------------------------------------------------------------
"$base" -m venv "$home/.venv"
python="$home/.venv/bin/python"
pip=("$python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip setuptools wheel
# requirements.txt, with these changes (each one found by installing and importing here):
# - jax 0.4.13 instead of 0.4.9: PyPI no longer has any jaxlib below 0.4.13 (Google's
#   storage still has 0.4.9), and jax 0.4.9 refuses a jaxlib newer than itself. 0.4.13 is the
#   oldest jax/jaxlib pair pip can install. Where jax's own wheel page is reachable, the exact
#   pin should work too (not tried here, that page is not reachable): FISOR_JAX_VERSION=0.4.9 \
#     PIP_FIND_LINKS=https://storage.googleapis.com/jax-releases/jax_releases.html bash ...
# - numpy==1.25.2 (environment.yaml's): pip would take numpy 2, where jax < 0.4.26 fails to
#   import (np.issubsctype was removed).
# - scipy==1.11.1 (environment.yaml's): pip would take scipy 1.13, and jax 0.4.13's
#   jax.scipy.linalg (imported by optax) wraps scipy.linalg.tril, which 1.13 removed.
# - gymnasium==0.28.1: dsrl 0.1.0's own pin (dsrl is installed without its dependencies).
# - gym==0.26.2 (environment.yaml's; also its last release): jaxrl5 imports it, the
#   requirements do not list it.
# - h5py: dsrl imports it (a dsrl dependency not installed with it).
jax_version="${FISOR_JAX_VERSION:-0.4.13}"
"${pip[@]}" \
    "jax==$jax_version" "jaxlib==$jax_version" "flax==0.5.3" "optax==0.1.5" \
    "numpy==1.25.2" "scipy==1.11.1" "gymnasium==0.28.1" "gym==0.26.2" h5py \
    "ml_collections>=0.1.0" "tqdm>=4.60.0" "absl-py>=0.12.0" "wandb>=0.12.14" matplotlib
# dsrl without its dependencies: they are the simulators (bullet-safety-gym, safety-gymnasium,
# metadrive), which training does not need (the harness evaluates, in its own environment)
"${pip[@]}" --no-deps "dsrl==0.1.0"

# ---- the check: the official modules import, and one agent trains a step ------------------
(cd "$home" && DSRL_SUPPRESS_IMPORT_ERROR=1 JAX_PLATFORMS=cpu \
    "$python" -W ignore::FutureWarning - <<'PY'
import sys
sys.path.insert(0, ".")
import gymnasium
import jax
import numpy as np
from jaxrl5.agents import FISOR
from jaxrl5.data.dataset import Dataset
from jaxrl5.data.dsrl_datasets import DSRLDataset  # noqa: F401 (dsrl, h5py: what the driver uses)
from configs.train_config import get_config

kwargs = dict(get_config("fisor")["agent_kwargs"])
kwargs.pop("model_cls")
box = gymnasium.spaces.Box
agent = FISOR.create(0, box(-np.inf, np.inf, (3,), np.float32), box(-1.0, 1.0, (2,), np.float32),
                     **kwargs)
rng = np.random.default_rng(0)
data = Dataset({"observations": rng.normal(size=(512, 3)).astype(np.float32),
                "next_observations": rng.normal(size=(512, 3)).astype(np.float32),
                "actions": rng.uniform(-0.9, 0.9, (512, 2)).astype(np.float32),
                "rewards": rng.normal(size=512).astype(np.float32),
                "costs": np.where(rng.random(512) < 0.2, 25.0, -1.0).astype(np.float32),
                "masks": np.ones(512, np.float32)}, seed=0)
agent, info = agent.update(data.sample_jax(512))
action, agent = agent.eval_actions(np.zeros(3, np.float32))
assert np.isfinite(float(info["actor_loss"])) and action.shape == (2,)
import flax, optax
print(f"ok: Python {sys.version.split()[0]}, jax {jax.__version__} ({jax.default_backend()}), "
      f"flax {flax.__version__}, optax {optax.__version__}: FISOR created, updated, acted")
PY
)

echo
echo "export FISOR_HOME=$home"
echo "export FISOR_PYTHON=$python"
