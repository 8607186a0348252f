"""Where a trained LSPC run's two policies take the agent, on a Bullet task.

    python scripts/where_it_ends.py --task DroneRun --results DIR [--seed 0] [--episodes 3]
        [--safe-epsilon 0.25,0.6,0] [--optimal-latent mean,sample]

Reads the run's checkpoint (as `bench latent` does: BENCH_LOCAL_DATA_DIR names the data the
run trained on, checked by its sha256) and runs a few episodes of LSPC-S and LSPC-O,
printing each one's reward and cost return and the agent's position and velocity at its
end, read from the simulator. A table says a policy is unsafe; this says how (off the
track, too fast, backwards, on the ground).

`--safe-epsilon` acts LSPC-S with other boxes [-eps_S, eps_S] on the same trained decoder
(eps_S only changes acting, not training): whether the authors' code's eps_S = eps, or the
prior's centre (0), would have been safe with this run's decoder. `--optimal-latent` acts
LSPC-O at the latent safety encoder's mean (LSPC, the paper's reading) or with z sampled from
it (LSPC-code, the authors' code), also acting only: which of LSPC and LSPC-code's differences
in LSPC-O's behaviour come from how it acts rather than from how it was trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latent import LatentError, find_run, load_run  # noqa: E402
from tasks.envs import action_bounds, make_env  # noqa: E402


def episode(method, env, policy: str, seed: int) -> dict:
    torch.manual_seed(seed)  # LSPC-S draws its latent at every step
    np.random.seed(seed)  # Bullet's agents draw their start from NumPy's global generator
    obs, _ = env.reset(seed=seed)
    low, high = action_bounds(env)  # clipped as bench's evaluation clips
    reward = cost = 0.0
    done = False
    while not done:
        action = method.act(obs[None].astype(np.float32), policy=policy)[0]
        obs, r, terminated, truncated, info = env.step(np.clip(action, low, high))
        reward, cost = reward + r, cost + info.get("cost", 0.0)
        done = terminated or truncated
    agent = env.unwrapped.agent
    return {"reward": reward, "cost": cost, "position": np.asarray(agent.get_position()),
            "velocity": np.asarray(agent.get_linear_velocity())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--method", default="LSPC")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--safe-epsilon", default=None,
                        help="comma-separated eps_S values to act LSPC-S with, instead of "
                             "both policies as trained")
    parser.add_argument("--optimal-latent", default=None,
                        help="comma-separated: mean, sample, or both; LSPC-O acted at the "
                             "encoder's mean or with z sampled from it")
    args = parser.parse_args()
    boxes = None
    if args.safe_epsilon is not None:
        try:
            boxes = [float(v) for v in args.safe_epsilon.split(",")]
        except ValueError:
            boxes = []
        if not boxes or any(not (v >= 0) for v in boxes):
            print(f"error: --safe-epsilon {args.safe_epsilon!r} is not a comma-separated list "
                  "of numbers >= 0 (e.g. 0.25,0.6,0)", file=sys.stderr)
            return 2
    latents = None
    if args.optimal_latent is not None:
        latents = args.optimal_latent.split(",")
        if any(v not in ("mean", "sample") for v in latents):  # "" gives [""]
            print(f"error: --optimal-latent {args.optimal_latent!r}: give mean, sample or "
                  "mean,sample", file=sys.stderr)
            return 2
    try:
        record = find_run(args.results, args.task, args.method, args.seed)
        method, spec, _ = load_run(args.results, record)
    except LatentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if spec.suite != "bullet":
        print(f"error: {spec.name} is not a Bullet task; this reads a Bullet agent's position",
              file=sys.stderr)
        return 2
    if (boxes or latents) and not hasattr(method.config, "safe_epsilon"):
        print(f"error: {args.method} has no latent to change; --safe-epsilon and "
              "--optimal-latent are for LSPC and LSPC-code runs", file=sys.stderr)
        return 2
    print(f"{args.method} on {spec.name}, seed {args.seed}, job {record['config_hash']}, "
          f"{record['steps']:,} steps")
    runs = [(f"eps_S={eps:g}", method.policies[0],
             dataclasses.replace(method.config, safe_epsilon=eps)) for eps in boxes or ()]
    runs += [(f"O_z={how}", method.policies[1],
              dataclasses.replace(method.config, optimal_samples_latent=how == "sample"))
             for how in latents or ()]
    if not runs:
        runs = [(policy, policy, method.config) for policy in method.policies]
    for label, policy, config in runs:
        method.config = config
        costs = []
        for k in range(args.episodes):
            # a fresh simulator each episode, as bench's records have: a reused Bullet world
            # carries state over, so a line would depend on the episodes acted before it
            env = make_env(spec)
            try:
                ep = episode(method, env, policy, seed=100 + k)
            finally:
                env.close()
            costs.append(ep["cost"])
            speed = float(np.linalg.norm(ep["velocity"]))
            print(f"{label:12s} episode {k}: reward {ep['reward']:8.1f}  cost {ep['cost']:5.0f}  "
                  f"end at x {ep['position'][0]:+.2f} y {ep['position'][1]:+.2f} "
                  f"z {ep['position'][2]:+.2f}, velocity "
                  f"({', '.join(f'{v:+.2f}' for v in ep['velocity'])}), speed {speed:.2f}")
        if boxes or latents:
            print(f"{label:12s} mean cost {np.mean(costs):.1f} over {len(costs)} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
