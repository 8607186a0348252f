"""One step of the authors' FISOR (ZhengYinan-AIR/FISOR, JAX) for the oracle test
test_fisor_official.py: run with FISOR_PYTHON, it imports nothing of the harness.

    python fisor_official_step.py JOB.json OUT.npz

JOB: {"home": checkout, "obs_dim": n, "act_dim": m, "batch": rows, "seed": s,
      "agent_kwargs": {...changes to configs/train_config.py's fisor agent_kwargs}}.
OUT holds, each parameter under "init/<net>/<flax path>" and "new/<net>/<flax path>" (the
agent's params before and after one FISOR.update), the batch ("batch/<key>", in the official
layout: costs relabelled to h, masks = 1 - done), the random draws of the two actor updates
("draws/time<i>", "draws/noise<i>", replayed from the agent's key as update_actor splits it)
and the stats FISOR.update returns ("info/<name>").
"""

import json
import sys
from pathlib import Path

import numpy as np

NETS = ("score_model", "target_score_model", "critic", "target_critic", "value",
        "safe_critic", "safe_target_critic", "safe_value")


def main(job_path, out_path):
    with open(job_path) as handle:
        job = json.load(handle)
    sys.path.insert(0, job["home"])
    import flax
    import jax
    from gymnasium.spaces import Box

    from configs.train_config import get_config
    from jaxrl5.agents import FISOR

    kwargs = dict(get_config("fisor")["agent_kwargs"])
    kwargs.pop("model_cls")
    kwargs.update(job["agent_kwargs"])
    obs_dim, act_dim, rows = job["obs_dim"], job["act_dim"], job["batch"]
    agent = FISOR.create(job["seed"], Box(-np.inf, np.inf, (obs_dim,), np.float32),
                         Box(-1.0, 1.0, (act_dim,), np.float32), **kwargs)

    rng = np.random.default_rng(job["seed"])
    unsafe = rng.random(rows) < 0.3
    batch = {
        "observations": rng.normal(size=(rows, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-0.99, 0.99, (rows, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=rows).astype(np.float32),
        # DSRLDataset's relabelling for critic_type "hj": cost_scale where cost > 0, else -1
        "costs": np.where(unsafe, 25.0, -1.0).astype(np.float32),
        "masks": (rng.random(rows) > 0.05).astype(np.float32),
        "next_observations": rng.normal(size=(rows, obs_dim)).astype(np.float32),
    }

    out = {}
    for name in NETS:
        out.update(flat("init/" + name, getattr(agent, name).params))
    out.update({"batch/" + key: value for key, value in batch.items()})
    # update_actor's draws, in its order: key for the step t, key for the noise, key for the
    # dropout; the key left over is the next update's
    key_rng = agent.rng
    for i in range(2):
        key, key_rng = jax.random.split(key_rng, 2)
        out["draws/time%d" % i] = np.asarray(jax.random.randint(key, (rows // 2,), 0,
                                                                agent.T))
        key, key_rng = jax.random.split(key_rng, 2)
        out["draws/noise%d" % i] = np.asarray(jax.random.normal(key, (rows // 2, act_dim)))
        key, key_rng = jax.random.split(key_rng, 2)

    new_agent, info = agent.update(jax.tree_util.tree_map(jax.numpy.asarray, batch))
    for name in NETS:
        out.update(flat("new/" + name, getattr(new_agent, name).params))
    out.update({"info/" + key: np.asarray(value) for key, value in info.items()})
    out["versions/jax"] = np.asarray(jax.__version__)
    out["versions/flax"] = np.asarray(flax.__version__)
    np.savez(out_path, **out)


def flat(prefix, params):
    import flax

    tree = flax.traverse_util.flatten_dict(flax.core.frozen_dict.unfreeze(params))
    return {prefix + "/" + "/".join(path): np.asarray(value) for path, value in tree.items()}


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
