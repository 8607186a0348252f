"""The random streams of a collection, each derived from (seed, agent, purpose, index).

Purposes in use: 1 the agent's action noise and minibatch order, 2 its network init, 3 an
episode's reset (indexed by the agent's reset count), 4 an environment's construction
(indexed by the environment), 7 the grid filter's subsampling.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np


def derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def seed_globals(value: int) -> None:
    # Bullet-Safety-Gym ignores reset(seed=...): its worlds, spawn points and joint noise draw
    # from the global `numpy.random` and `random` generators, so those are what we seed
    np.random.seed(value % 2**32)
    random.seed(value)


@contextmanager
def global_rng_guard():
    """Leave the caller's global numpy/random generator states as they were."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
