"""The one small interface every method meets, and how a method is built from a config.

A method is built from the task's spec, its config, the cost threshold (None for a
threshold-agnostic method, which is trained once and evaluated at every threshold) and a seed.
NumPy is the boundary: `act` takes and returns arrays, so a non-PyTorch method fits too.
A method in PyTorch builds on TorchMethod, which writes the rest once: `act` around the
method's `_act_tensor`, and state_dict/load_state_dict over the attributes it names
(`state_attributes`). A method for one threshold (threshold_agnostic False) built without
one is refused by OfflineMethod.__init__, with one ConfigError for every such method.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
import types
import typing
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
    #: training steps per profile (smoke for tests, quick for a laptop, study where the Bullet
    #: curves flatten, docs/reproduction.md; paper: the paper's budget)
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
    #: --precision bf16: the networks (attributes, dotted for a part: "cvae.decoder") whose
    #: hidden layers then run in bfloat16, by the one rule of algorithms/nets.py
    #: ("Precision"): their heads and everything computed from their outputs (targets,
    #: advantages, weights, losses, log-probabilities) stay fp32, and so do the weights and
    #: the optimizers. Empty: the method trains in fp32 only.
    bf16_networks: ClassVar[tuple[str, ...]] = ()
    #: the precision it trains and acts in (set by set_precision; a run option, not a
    #: hyperparameter)
    precision: str = "fp32"

    @classmethod
    def create(cls, spec: TaskSpec, config, threshold: float | None, seed: int,
               device: str = "cpu") -> OfflineMethod:
        """What the runner trains: cls(...) by default; a method with more than one
        implementation picks one from its config here (FISOR: native or official)."""
        return cls(spec, config, threshold, seed, device)

    @classmethod
    def check_environment(cls, config, task: str) -> None:
        """A ConfigError unless what a job of `config` on `task` needs outside the harness is
        in place (another checkout, another interpreter): checked when a run starts, before
        hours of jobs. Nothing is needed by default."""

    @classmethod
    def check_precision(cls, config, precision: str) -> None:
        """A ConfigError unless this method (with this config) can train in `precision`;
        checked when a run is planned, before anything trains."""
        from algorithms.nets import PRECISIONS

        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}: {' or '.join(PRECISIONS)}")
        if precision != "fp32" and not cls.bf16_networks:
            raise ConfigError(f"{cls.__name__} trains in fp32 only: it names no networks to "
                              "run in bf16 (its class attribute bf16_networks); leave it out "
                              "of --methods, or train it with --precision fp32")

    def set_precision(self, precision: str) -> None:
        """Train and act in `precision`: each network of `bf16_networks` gets its compute
        dtype (none for fp32, where every network computes as it always has)."""
        import operator

        from algorithms.nets import PRECISIONS, set_compute_dtype

        type(self).check_precision(self.config, precision)
        if precision == "bf16" and str(self.device).startswith("cuda"):
            import torch

            if not torch.cuda.is_bf16_supported():
                raise ConfigError(f"{self.device}: this GPU has no bfloat16 arithmetic "
                                  "(Ampere or newer has it); train in fp32 there")
        for path in self.bf16_networks:
            if not set_compute_dtype(operator.attrgetter(path)(self), PRECISIONS[precision]):
                raise TypeError(f"{type(self).__name__}.bf16_networks names {path!r}, which "
                                "holds no network with a compute_dtype (algorithms/nets.py)")
        self.precision = precision
        self._step_optimizers_together()

    def _step_optimizers_together(self) -> None:
        """Every optimizer among the state attributes updates all its tensors in one pass
        (`foreach`): the same numbers as torch's per-tensor loop, its CPU default, bit for bit,
        so fp32 keeps its results. Not the fused kernels, though faster still: their updates
        differ from the loop's in the last bits. A loaded checkpoint brings its own groups'
        settings back: the same numbers either way."""
        import torch

        for name in getattr(self, "state_attributes", ()):
            optimizer = getattr(self, name, None)
            if isinstance(optimizer, torch.optim.Optimizer):
                for group in optimizer.param_groups:
                    if "foreach" in group and not group.get("fused"):
                        group["foreach"] = True

    @classmethod
    def steps_for(cls, profile: str, task: str) -> int:
        steps = cls.task_steps.get(task, {}).get(profile, cls.profile_steps.get(profile))
        if steps is None:
            raise ConfigError(f"{cls.__name__} has no training budget for the {profile!r} "
                              f"profile: add {profile!r} to its profile_steps (it has "
                              f"{', '.join(cls.profile_steps) or 'none'})")
        return steps

    def __init__(self, spec: TaskSpec, config, threshold: float | None, seed: int,
                 device: str = "cpu"):
        if threshold is None and not type(self).threshold_agnostic:
            raise ConfigError(
                f"{type(self).__name__} is trained for one cost threshold (its class says "
                "threshold_agnostic = False); got None: build it with one of the task's "
                "thresholds")
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
        """For `wants == "sequences"`: keyword arguments of tasks.samplers.SequenceSampler
        beyond the data and batch (seq_len, trajectory_weights), from the training data."""
        raise TypeError(f"{type(self).__name__} wants sequences but gives no "
                                  "sequence_options")

    @abc.abstractmethod
    def state_dict(self) -> dict:
        """Everything needed to act again after load_state_dict (weights, normalizers)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned."""


class TorchMethod(OfflineMethod):
    """A method in PyTorch: `act` and the state written once, here.

    Acting: `act` hands `_act_tensor` the observations as a float32 tensor on the method's
    device, under no_grad, and returns its actions as a NumPy array; keyword options (LSPC's
    `policy`) pass through.

    State: `state_dict` saves the attributes `state_attributes` names, by name and in that
    order, each as its kind says:
    - an object with state_dict and load_state_dict (a network, an optimizer, a scheduler, a
      PIDLagrangian): its own state_dict; an optimizer's learning rates as Python floats,
      as on the CPU, even where a CUDA graph keeps them in tensors (FISOR);
    - a tensor (a dual variable, a statistic of the data): a detached copy, loaded into the
      attribute's own tensor in place, so what holds that tensor (an optimizer, a CUDA
      graph) sees the loaded value;
    - a name in `state_counters` (a step count): a Python int, even where a CUDA graph
      keeps it in a tensor;
    - anything else (a number, None): as it is.
    `load_state_dict` restores exactly those names: a state with another name, or without
    one of them, is refused.
    """

    #: the attributes that make up the state, in the order state_dict saves them
    state_attributes: ClassVar[tuple[str, ...]] = ()
    #: those of them that count steps, saved and loaded as Python ints
    state_counters: ClassVar[tuple[str, ...]] = ()

    def to_device(self, array):
        """A NumPy array (observations, rewards) as a float32 tensor on the method's device."""
        import torch

        return torch.as_tensor(array, dtype=torch.float32, device=self.device)

    def act(self, obs: np.ndarray, **options) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self._act_tensor(self.to_device(obs), **options).cpu().numpy()

    @abc.abstractmethod
    def _act_tensor(self, obs):
        """Actions (num_envs, act_dim) for observations (num_envs, obs_dim), both tensors on
        the method's device; called under no_grad."""

    def state_dict(self) -> dict:
        import torch

        state = {}
        for name in self.state_attributes:
            value = getattr(self, name)
            if name in self.state_counters:
                value = int(value)
            elif torch.is_tensor(value):
                value = value.detach().clone()
            elif hasattr(value, "state_dict"):
                value = value.state_dict()
                if isinstance(getattr(self, name), torch.optim.Optimizer):
                    value["param_groups"] = [{**group, "lr": float(group["lr"])}
                                             for group in value["param_groups"]]
            state[name] = value
        return state

    def load_state_dict(self, state: dict) -> None:
        import torch

        if set(state) != set(self.state_attributes):
            unknown = sorted(set(state) - set(self.state_attributes))
            missing = [name for name in self.state_attributes if name not in state]
            raise KeyError(f"{type(self).__name__}.load_state_dict: the state names "
                           f"{', '.join(unknown) or 'nothing else'} beyond its "
                           f"state_attributes and lacks {', '.join(missing) or 'none'}")
        for name, value in state.items():
            current = getattr(self, name)
            if name in self.state_counters:
                setattr(self, name, int(value))
            elif torch.is_tensor(current):
                if current.shape != value.shape:
                    raise ValueError(f"{type(self).__name__}.{name}: the state holds a tensor "
                                     f"of shape {tuple(value.shape)}, not "
                                     f"{tuple(current.shape)}")
                with torch.no_grad():
                    current.copy_(value)
            elif hasattr(current, "load_state_dict"):
                current.load_state_dict(value)
            else:
                setattr(self, name, value)


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
    types_ = field_types(type(config))
    parsed = {}
    for key, text in (sets or {}).items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{method_cls.__name__} has no setting {key!r}.{hint} "
                              f"Settings: {', '.join(fields)}")
        parsed[key] = parse_setting(types_[key], text, key, getattr(config, key))
    return dataclasses.replace(config, **parsed)


def field_types(config_cls: type) -> dict[str, Any]:
    """Each field's annotation as a type (the files use `from __future__ import annotations`,
    so dataclasses hold them as strings)."""
    try:
        hints = typing.get_type_hints(config_cls)
    except (NameError, TypeError):  # a plugin's unresolvable annotation: whatever resolves
        hints = {}
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(config_cls)}


def is_tuple_type(annotation) -> bool:
    """tuple[...] or an optional one: a comma in its --set text separates its items."""
    return any(typing.get_origin(a) is tuple or a is tuple
               for a in (annotation, *_optional_parts(annotation)[0]))


NONE_WORDS = ("none", "null")


def parse_setting(annotation, text: str, key: str, default: Any = None):
    """A --set value parsed by its field's annotation: bool (true/false, 1/0, yes/no), int,
    float, str, tuple[T, ...] and tuple[T1, T2] (comma-separated), and X | None, which also
    takes None / none / null. Anything else is one ConfigError naming what was expected."""
    options, optional = _optional_parts(annotation)
    if text.strip().lower() in NONE_WORDS:
        if optional:
            return None
        raise ConfigError(f"--set {key}={text}: {key} cannot be None; expected "
                          f"{_describe(annotation)}, like {default!r}")
    try:
        if len(options) != 1:
            raise TypeError
        return _parse_as(options[0], text.strip())
    except ValueError:
        like = f", like {default!r}" if default is not None else ""
        raise ConfigError(f"--set {key}={text}: expected {_describe(annotation)}{like}") from None
    except TypeError:
        raise ConfigError(f"--set {key}={text}: a field of type {annotation!r} cannot be set "
                          "from the command line") from None


def _optional_parts(annotation) -> tuple[list, bool]:
    """(the non-None members, whether None is allowed) of X | None; ([X], False) otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], False


def _parse_as(kind, text: str):
    if kind is bool:
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if text.lower() not in words:
            raise ValueError(text)
        return words[text.lower()]
    if kind is int:
        number = float(text)
        if not number.is_integer():
            raise ValueError(text)
        return int(text) if text.lstrip("+-").isdigit() else int(number)
    if kind is float:
        return float(text)
    if kind is str:
        return text
    if kind is tuple or typing.get_origin(kind) is tuple:
        parts = [part.strip() for part in text.split(",")] if text else []
        items = typing.get_args(kind)
        if len(items) == 2 and items[1] is Ellipsis:  # tuple[T, ...]
            return tuple(_parse_as(items[0], part) for part in parts)
        if not items:  # a bare tuple: its items as text
            return tuple(parts)
        if len(parts) != len(items):
            raise ValueError(text)
        return tuple(_parse_as(item, part) for item, part in zip(items, parts))
    raise TypeError(kind)


def _describe(annotation) -> str:
    options, optional = _optional_parts(annotation)
    text = " or ".join(_describe_one(kind) for kind in options)
    return f"{text} or None" if optional else text


def _describe_one(kind) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    if kind in names:
        return names[kind]
    items = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and len(items) == 2 and items[1] is Ellipsis:
        return f"comma-separated values, each {_describe_one(items[0])}"
    if typing.get_origin(kind) is tuple:
        return f"{len(items)} comma-separated values ({', '.join(map(_describe_one, items))})"
    return repr(kind)


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
