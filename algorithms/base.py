"""The one small interface every method meets, and how a method is built from a config.

A method is built from the task's spec, its config, the cost threshold (None for a
threshold-agnostic method, which is trained once and evaluated at every threshold) and a seed.
NumPy is the boundary: `act` takes and returns arrays, so a non-PyTorch method fits too.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tasks.registry import TaskSpec, UnknownNameError


class OfflineMethod(abc.ABC):
    """Base class of every method. Subclasses set the class attributes and the four methods."""

    #: the frozen dataclass of hyperparameters
    Config: ClassVar[type]
    #: trained once per (task, seed) and evaluated at every threshold
    threshold_agnostic: ClassVar[bool] = True
    #: "transitions" (s, a, r, c, s', done) or "sequences" (CDT)
    wants: ClassVar[str] = "transitions"
    #: names of the policies one training run yields, each recorded as a method of its own
    #: (LSPC gives LSPC-S and LSPC-O); empty: the method is its one policy. The runner sets
    #: `self.policy` to the one `act` should use.
    policies: ClassVar[tuple[str, ...]] = ()
    #: training steps per profile (smoke for tests, quick for a laptop, paper's budget)
    profile_steps: ClassVar[dict[str, int]] = {}
    #: per-task values that truly differ from the defaults: {task name: {field: value}}
    overrides: ClassVar[dict[str, dict[str, Any]]] = {}
    #: per-task training budgets that differ from profile_steps: {task: {profile: steps}}
    #: (OSRL trains its baselines 200k steps on MetaDrive, for example)
    task_steps: ClassVar[dict[str, dict[str, int]]] = {}
    #: train_step is tensor work alone, the same every step (no host syncs, no Python
    #: branches on values or step counts, no schedules in Python floats): on a GPU the runner
    #: captures it in a CUDA graph and replays it (bench/graphs.py)
    graph_safe: ClassVar[bool] = False
    #: trains as a whole rather than step by step (an external process: FISOR's official
    #: code); the runner then iterates `fit` instead of calling train_step
    trains_itself: ClassVar[bool] = False

    @classmethod
    def create(cls, spec: TaskSpec, config, threshold: float | None, seed: int,
               device: str = "cpu") -> OfflineMethod:
        """What the runner trains: cls(...) by default; a method with more than one
        implementation picks one from its config here (FISOR: native or official)."""
        return cls(spec, config, threshold, seed, device)

    @classmethod
    def steps_for(cls, profile: str, task: str) -> int:
        return cls.task_steps.get(task, {}).get(profile, cls.profile_steps[profile])

    def __init__(self, spec: TaskSpec, config, threshold: float | None, seed: int,
                 device: str = "cpu"):
        self.spec, self.config, self.threshold, self.seed = spec, config, threshold, seed
        self.device = device

    def training_data(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The part of the dataset this method learns from (all of it, by default)."""
        return arrays

    @abc.abstractmethod
    def train_step(self, batch: dict) -> dict:
        """One gradient step on a batch of torch tensors; returns scalar stats (tensors allowed)."""

    @abc.abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations (num_envs, obs_dim) -> (num_envs, act_dim)."""

    def fit(self, arrays: dict[str, np.ndarray], steps: int, seed: int, log_every: int,
            workdir: Path) -> Iterator[tuple[int, dict]]:
        """For `trains_itself`: train `steps` steps on `arrays`, yielding (step, stats) every
        `log_every` steps and at the last; `workdir` (the run's folder) keeps what the
        training leaves behind (its log). No evaluation during training (eval_every)."""
        raise TypeError(f"{type(self).__name__} sets trains_itself but has no fit")

    def prepare_graph_capture(self) -> None:
        """Called once before a CUDA graph records train_step (graph_safe methods on a GPU):
        move Python-side state the step changes (a counter, a schedule) into tensors on the
        device that the step updates in place. Default: nothing to move."""

    def record_fields(self) -> dict:
        """Fields added to every record of this method beyond the common ones (FISOR says
        which implementation trained it). Default: none."""
        return {}

    def reset(self, num_envs: int, threshold: float | None = None) -> None:
        """Called at the start of evaluation episodes with the threshold they are evaluated at
        (sequence models clear their context; a prompted model, CDT, takes it as its target
        cost; None outside a threshold's evaluation)."""

    def observe(self, rewards: np.ndarray, costs: np.ndarray, dones: np.ndarray) -> None:
        """Called after every evaluation step with each env's raw reward, cost and
        terminated | truncated (CDT lowers its returns-to-go and costs-to-go). Default: nothing."""

    def sequence_options(self, arrays: dict[str, np.ndarray]) -> dict:
        """For `wants == "sequences"`: keyword arguments of bench.run.SequenceSampler beyond the
        data and batch (seq_len, trajectory_weights), from the training data."""
        raise TypeError(f"{type(self).__name__} wants sequences but gives no "
                                  "sequence_options")

    @abc.abstractmethod
    def state_dict(self) -> dict:
        """Everything needed to act again after load_state_dict (weights, normalizers)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned."""


def paper_steps_on(suite: str, steps: int) -> dict[str, dict[str, int]]:
    """task_steps giving every task of a suite its own paper budget (OSRL: 200k on MetaDrive)."""
    from tasks.registry import suite_tasks

    return {spec.name: {"paper": steps} for spec in suite_tasks(suite)}


class ConfigError(ValueError):
    """A --set value or override that does not fit the method's config."""


def build_config(method_cls: type[OfflineMethod], task: str, sets: dict[str, str] | None = None):
    """Config = the defaults, then the task's overrides, then the user's --set values."""
    config = method_cls.Config()
    config = dataclasses.replace(config, **method_cls.overrides.get(task, {}))
    fields = {f.name: f for f in dataclasses.fields(config)}
    parsed = {}
    for key, text in (sets or {}).items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{method_cls.__name__} has no setting {key!r}.{hint} "
                              f"Settings: {', '.join(fields)}")
        parsed[key] = _parse_like(getattr(config, key), text, key)
    return dataclasses.replace(config, **parsed)


def _parse_like(default, text: str, key: str):
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            return tuple(type(default[0])(part) for part in text.split(",")) if default else ()
    except ValueError:
        raise ConfigError(f"--set {key}={text}: expected a value like {default!r}") from None
    return text


def lookup(registry: dict[str, type], name: str, kind: str = "method"):
    """(registered name, class) for a name in any case, or a policy name of a method."""
    folded = {key.lower().replace("_", "-"): key for key in registry}
    for key, cls in registry.items():
        for policy in getattr(cls, "policies", ()):
            folded.setdefault(policy.lower(), key)
    key = folded.get(name.lower().replace("_", "-"))
    if key is None:
        close = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(registry)}.")
    return key, registry[key]
