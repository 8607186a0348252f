"""The global random generators (torch CPU and CUDA, NumPy, Python): seeded per job, saved
in a training checkpoint and restored from it, and set apart while an evaluation draws from
its own streams, so evaluating never changes what trains."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    # generator states are CPU byte tensors whatever the device; a checkpoint loaded with
    # map_location="cuda" carries them onto the GPU, where set_rng_state refuses them
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


@contextlib.contextmanager
def own_random_streams(seed: int):
    """Inside: every global generator (torch CPU and CUDA, NumPy, Python) seeded with `seed`;
    after: each back in the state it had before, whatever was drawn inside."""
    saved = rng_state()
    try:
        torch.manual_seed(seed)  # seeds the CUDA generators too
        np.random.seed(seed)
        random.seed(seed)
        yield
    finally:
        set_rng_state(saved)
