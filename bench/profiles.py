"""Budgets: smoke (seconds, for tests), quick (minutes on a 2-core laptop), study (hours: budgets
at which the learning curves flatten, on the DSRL-like `study` data), paper (a cluster).

A method's training steps per profile live beside the method (`profile_steps`); what is
common to every method lives here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    eval_episodes: int
    """evaluation episodes per (method, task, threshold, seed); OSRL's eval scripts use 20"""
    seeds: tuple[int, ...]
    """default seeds when --seeds is not given (the paper uses 3)"""
    log_every: int
    """training steps between two logged points of the training curve"""
    eval_every: int = 0
    """training steps between two evaluations during training (paper Fig. 2); 0: none"""
    curve_episodes: int = 5
    """episodes per evaluation during training"""
    checkpoint_every: int = 0
    """training steps between two resumable checkpoints (a kill loses at most these); 0: none"""
    checkpoint_seconds: float = 0.0
    """also checkpoint when this much wall time has passed since the last one; 0: never.
    Slow methods (FISOR, CDT) take minutes for a few hundred steps here, so a step count
    alone can leave a whole quick job unprotected."""


PROFILES = {
    "smoke": Profile("smoke", eval_episodes=2, seeds=(0,), log_every=10),
    "quick": Profile("quick", eval_episodes=20, seeds=(0, 1, 2), log_every=500,
                     checkpoint_every=1000, checkpoint_seconds=300.0),
    # the converging study of docs/reproduction.md: evaluated every 10k steps (its curves show
    # where the budgets flatten), trained on the `study` collection (bench collect --profile
    # study) unless --data-profile says otherwise
    "study": Profile("study", eval_episodes=20, seeds=(0, 1, 2), log_every=1000,
                     eval_every=10_000, checkpoint_every=5000, checkpoint_seconds=300.0),
    "paper": Profile("paper", eval_episodes=20, seeds=(0, 1, 2), log_every=5000,
                     eval_every=20_000,  # as the authors' LSPC runs
                     checkpoint_every=20_000, checkpoint_seconds=600.0),
}
