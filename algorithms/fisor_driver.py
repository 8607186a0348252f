"""Runs the authors' FISOR code (ZhengYinan-AIR/FISOR) for the harness: check, train, serve.

Started by algorithms/fisor_official.py with the interpreter of the official environment
(FISOR_PYTHON: Python 3.9, flax 0.5.3, jax 0.4.13 as scripts/setup_fisor_official.sh installs
it, ...), so it imports nothing of the harness and keeps to Python 3.9 syntax. It imports the
official modules from the checkout and does what launcher/examples/train_offline.py
(call_main) does, in its order and with its functions, except where the harness must differ:
- the task and data: the harness's arrays (an .npz of the file the harness read) stand in
  for the dsrl env, through an object with the env's get_dataset() and reference returns,
  so DSRLDataset still does the official relabelling and normalize_returns the scaling;
- the configuration: configs/train_config.py get_config("fisor") (the `:fisor` of the
  official command line), then the values the harness's config gives (all equal to the
  official ones unless the user changed them), its seed and its number of steps;
- no wandb and no evaluation here: `serve` answers the harness's evaluation loop with
  FISOR.eval_actions, so both implementations are evaluated by the same harness code.

Messages to the harness are single lines "FISOR-DRIVER {json}" on stdout; anything else
there (the official prints) is passed on to the run's log.

    python fisor_driver.py check JOB.json
    python fisor_driver.py train JOB.json
    python fisor_driver.py serve JOB.json   (then JSON requests on stdin, one a line)
"""

import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

PREFIX = "FISOR-DRIVER "


def emit(**message):
    print(PREFIX + json.dumps(message), flush=True)


def official_modules(home):
    """The FISOR agent class, DSRLDataset and the config module of the checkout at `home`."""
    sys.path.insert(0, str(home))  # the launcher's own sys.path.append('.') from the root
    from jaxrl5.agents import FISOR
    from jaxrl5.data.dsrl_datasets import DSRLDataset

    spec = importlib.util.spec_from_file_location("fisor_train_config",
                                                  str(Path(home) / "configs" / "train_config.py"))
    config_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config_module)
    return FISOR, DSRLDataset, config_module


def plain(value):
    """A ConfigDict (or anything dict-like) as nested plain dicts."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def effective_config(config_module, job):
    config = plain(config_module.get_config("fisor"))
    for key, value in job["overrides"].items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    config["seed"] = job["seed"]
    if "steps" in job:  # training
        config["max_steps"] = job["steps"]
    return config


class HarnessData:
    """Stands where train_offline.py holds a dsrl env: get_dataset() returns the harness's
    arrays, and the reference returns and episode length are DSRL's for the task."""

    def __init__(self, path, task):
        with np.load(path) as data:
            self._arrays = {key: data[key] for key in data.files}
        self.max_episode_reward = task["reward_max"]
        self.min_episode_reward = task["reward_min"]
        self.max_episode_cost = task["cost_max"]
        self.min_episode_cost = 0.0
        self._max_episode_steps = task["max_episode_steps"]

    def get_dataset(self, h5path=None):
        return {key: value.copy() for key, value in self._arrays.items()}


def build_agent(FISOR, config, task, seed):
    """FISOR.create as call_main calls it, the spaces being the task's shapes."""
    from gymnasium.spaces import Box

    kwargs = dict(config["agent_kwargs"])
    kwargs.pop("model_cls", None)
    kwargs.pop("cost_scale", None)
    kwargs["env_max_steps"] = task["max_episode_steps"]
    observation_space = Box(-np.inf, np.inf, (task["obs_dim"],), np.float32)
    action_space = Box(-1.0, 1.0, (task["act_dim"],), np.float32)
    return FISOR.create(seed, observation_space, action_space, **kwargs)


def versions():
    """What the official code ran on (after official_modules imported it): the setup script
    cannot install requirements.txt's jax 0.4.9 today, so records say which one ran."""
    found = {"python": sys.version.split()[0]}
    for name, module in (("jax", "jax"), ("jaxlib", "jaxlib.version"), ("flax", "flax"),
                         ("optax", "optax"), ("numpy", "numpy")):
        try:
            found[name] = str(importlib.import_module(module).__version__)
        except (ImportError, AttributeError):
            found[name] = None
    return found


def check(job):
    official_modules(job["home"])
    found = versions()
    emit(event="ok", python=found.pop("python"), versions=found)


def train(job):
    started = time.time()
    FISOR, DSRLDataset, config_module = official_modules(job["home"])
    config = effective_config(config_module, job)
    emit(event="config", config=config)
    env = HarnessData(job["data"], job["task"])
    dataset = DSRLDataset(env, critic_type=config["agent_kwargs"]["critic_type"],
                          cost_scale=config["dataset_kwargs"]["cost_scale"])
    dataset.normalize_returns(env.max_episode_reward, env.min_episode_reward,
                              env._max_episode_steps)
    dataset.seed(job["seed"])
    agent = build_agent(FISOR, config, job["task"], job["seed"])
    steps, log_every = job["steps"], job["log_every"]
    for step in range(1, steps + 1):
        agent, info = agent.update(dataset.sample_jax(config["batch_size"]))
        if step % log_every == 0 or step == steps:
            emit(event="log", step=step, stats={key: float(value) for key, value in info.items()})
    agent.save(str(Path(job["out"])), steps)  # writes model{steps}.pickle there
    emit(event="done", checkpoint="model%d.pickle" % steps, seconds=time.time() - started,
         versions=versions())


def serve(job):
    """Requests, one JSON object a line: {"seed": s} restarts the agent's random key;
    {"obs": [[...], ...]} asks for one action per observation (FISOR.eval_actions)."""
    FISOR, _, config_module = official_modules(job["home"])
    import jax  # after the checkout joined the path, as the official modules import it
    config = effective_config(config_module, job)
    agent = build_agent(FISOR, config, job["task"], job["seed"]).load(job["checkpoint"])
    emit(event="ready")
    for line in sys.stdin:
        request = json.loads(line)
        if "seed" in request:
            agent = agent.replace(rng=jax.random.PRNGKey(request["seed"]))
            emit(event="seeded")
        else:
            actions = []
            for obs in np.asarray(request["obs"], np.float32):
                action, agent = agent.eval_actions(obs)
                actions.append(np.asarray(action, np.float32).reshape(-1).tolist())
            emit(event="actions", actions=actions)


if __name__ == "__main__":
    command, job_path = sys.argv[1], sys.argv[2]
    with open(job_path) as handle:
        job = json.load(handle)
    {"check": check, "train": train, "serve": serve}[command](job)
