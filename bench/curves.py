"""The training curves (the paper's Fig. 2): the CSV each job rewrites at its log points,
and the evaluator that adds the policies' returns to it every `eval_every` steps."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bench.evaluate import evaluate_policy
from bench.streams import own_random_streams


def write_curve(rows: dict[int, dict], curve_path: Path) -> None:
    curve_path.parent.mkdir(parents=True, exist_ok=True)
    if rows:
        fields = list(dict.fromkeys(k for row in rows.values() for k in row))
        with open(curve_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows[s] for s in sorted(rows))


def curve_evaluator(method, spec, policies: tuple[str, ...], episodes: int, seed: int = 0):
    """Mean raw reward and cost returns of each policy, for the training curves (Fig. 2); a
    prompted method (CDT) is prompted with the task's lowest threshold.

    An evaluation in the middle of training leaves training's random streams as it found
    them (as does building its simulators): it draws from its own, seeded from (job seed,
    step), and restores torch's (CPU and CUDA), NumPy's and Python's global generators
    afterwards. So a job trains the same with
    or without curves, and different seeds stay independent after an evaluation.

    Each policy at each point gets fresh simulators, as the records do (bench/recording.py):
    a reused Bullet Car or Drone world keeps some of its last episode's state through
    reset(seed), so a curve point would depend on the points before it, and a job resumed
    from a checkpoint (new simulators) would draw other curves than an unbroken one."""
    def own_streams(step: int):
        return own_random_streams(int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))

    def evaluate(step: int) -> dict:
        with own_streams(step):
            return _evaluate_curve_point(step)

    def _evaluate_curve_point(step: int) -> dict:
        out = {}
        for name in policies or (None,):
            if name is not None:
                method.policy = name
            episodes_ = evaluate_policy(method.act, spec, episodes, 2_000_000 + step,
                                        reset=method.reset,
                                        threshold=spec.thresholds[0], observe=method.observe)
            prefix = f"{name}/" if name else "eval/"
            out[prefix + "reward_return"] = float(np.mean(episodes_["reward_returns"]))
            out[prefix + "cost_return"] = float(np.mean(episodes_["cost_returns"]))
        return out

    return evaluate
