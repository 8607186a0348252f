"""What a collection says about itself: the dataset card, the file's attributes, the summary.

The card (how the file was made: collector, budget, versions, per-agent outcome) goes into the
file's `card` attribute and, with the timings, into `<file>.card.json` beside it. What differs
between two identical runs (dates, seconds) stays out of the file, so that its sha256 names
the data.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np

from tasks.collect.budgets import (COLLECTOR_NAME, COLLECTOR_VERSION, CollectBudget,
                                   agent_cost_limits, steps_for)
from tasks.collect.stages import Stage
from tasks.provenance import harness_commit, harness_version, package_versions
from tasks.registry import TaskSpec


def card_path_for(path: Path) -> Path:
    """Where the dataset card of a local file lies: `<file>.card.json` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".card.json")


def dataset_card(spec: TaskSpec, profile: str, seed: int, budget: CollectBudget,
                 stages: list[Stage], done: dict[str, dict], stage_of: np.ndarray,
                 filter_report: dict | None) -> dict:
    """How the file was made; `stage_of` gives the stage of each kept trajectory."""
    return {
        "source": "local",
        "collector": COLLECTOR_NAME,
        "collector_version": COLLECTOR_VERSION,
        "task": spec.name,
        "env_id": spec.env_id,
        "profile": profile,
        "seed": int(seed),
        "harness_commit": _harness_commit(),
        "versions": json.loads(_versions()),
        "budget": {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v)
                   for k, v in _plain_budget(budget).items()},
        "cost_limits": [_json_float(v) for v in agent_cost_limits(budget, spec)],
        "filter": filter_report,
        "agents": _agent_cards(stages, done, stage_of),
    }


def timing(stages: list[Stage], done: dict[str, dict], resumed: list[str]) -> dict:
    """When the file was made and what it cost (the card beside the file only)."""
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "core_seconds": _stage_seconds(stages, done, None, "cpu_seconds"),
        "wall_seconds": _stage_seconds(stages, done, None, "seconds"),
        "agents": {agent: _stage_seconds(stages, done, agent, "cpu_seconds")
                   for agent in dict.fromkeys(stage.lineage for stage in stages)},
        "resumed_stages": resumed,
        "machine": machine(),
    }


def machine() -> dict:
    """The processor the stages trained on, and the instruction sets torch and numpy chose on
    it: collection repeats bit for bit on one kind of processor, but its kernels round
    differently on another (the study's data, collected at one commit on three machines, came
    out as one set of transitions twice and another once; docs/data/README.md), so a card
    says where its transitions were made."""
    import platform

    import torch

    model, flags_line = None, ""
    try:  # the first processor's lines (its model name comes before its flags)
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name") and model is None:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags_line = line
                    break
    except OSError:
        pass
    cpu = model or platform.processor() or platform.machine()
    from tasks.collect.kernels import PINNED, kernels_in_use, numpy_cpu_features

    features = numpy_cpu_features()
    flags = ("AVX2", "AVX512F", "AVX512_SKX", "AVX512_SPR", "AVX512_BF16", "AMX_BF16")
    kernels = kernels_in_use()
    return {"cpu": cpu, "kernels": kernels,
            **({"pinned": dict(PINNED)} if kernels == "portable" else {}),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "numpy_cpu_features": [f for f in flags if features.get(f)],
            "amx": "amx_bf16" in flags_line.split() if flags_line else None,
            # the processor's own, whatever the kernels were pinned to
            "isa": [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
                    if flag in flags_line.split()]}


def file_attrs(spec: TaskSpec, profile: str, seed: int, budget: CollectBudget,
               n_stages: int, stage_of: np.ndarray, card: dict) -> dict:
    """The HDF5 attributes of the collected file (their order is the file's)."""
    limits = agent_cost_limits(budget, spec)
    return {
        "source": "local",
        "collector": COLLECTOR_NAME,
        "task": spec.name,
        "env_id": spec.env_id,
        "profile": profile,
        "seed": int(seed),
        "cost_limits": np.asarray(limits, dtype=np.float64),
        "env_steps_per_agent": int(steps_for(budget, spec)),
        "n_agents": len(limits),
        "agent_episodes": np.asarray([int((stage_of == i).sum()) for i in range(n_stages)]),
        "versions": _versions(),
        "budget": json.dumps({k: repr(v) for k, v in dataclasses.asdict(budget).items()}),
        "card": json.dumps(card, sort_keys=True),
    }


def summary(spec: TaskSpec, profile: str, seed: int, budget: CollectBudget, out_path: Path,
            trajs, n_transitions: int, card: dict, times: dict, plot: Path,
            started: float) -> dict:
    """The summary collect_task returns (and format_summary prints); `started` is when the
    collection began (time.perf_counter)."""
    import time

    from tasks.composition import summarize
    from tasks.datasets import file_sha256

    return {
        "task": spec.name,
        "profile": profile,
        "seed": int(seed),
        "path": str(out_path),
        "card": str(card_path_for(out_path)),
        "sha256": file_sha256(out_path),
        "plot": str(plot),
        "n_trajectories": len(trajs),
        "n_transitions": int(n_transitions),
        "reward_return_min": float(trajs.reward_returns.min()),
        "reward_return_max": float(trajs.reward_returns.max()),
        "cost_return_min": float(trajs.cost_returns.min()),
        "cost_return_max": float(trajs.cost_returns.max()),
        "fraction_cost_le": {float(th): float(np.mean(trajs.cost_returns <= th))
                             for th in spec.thresholds},
        "cost_limits": list(agent_cost_limits(budget, spec)),
        "env_steps_per_agent": int(steps_for(budget, spec)),
        "agents": card["agents"],
        "filter": card["filter"],
        "resumed_stages": times["resumed_stages"],
        "machine": times["machine"],
        "row": summarize(spec, trajs.reward_returns, trajs.cost_returns),
        "core_seconds": times["core_seconds"],
        "agent_core_seconds": times["agents"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def format_summary(summary: dict) -> str:
    """Human-readable lines for the CLI."""
    fractions = ", ".join(f"<= {th:g}: {frac:.0%}"
                          for th, frac in summary["fraction_cost_le"].items())
    lines = [
        f"{summary['task']} ({summary['profile']}, seed {summary['seed']}): "
        f"{summary['n_trajectories']} trajectories, {summary['n_transitions']} transitions "
        f"in {summary['seconds']:.0f}s ({summary['core_seconds'] / 3600:.2f} core-hours of "
        "training, resumed segments included)",
        f"  file: {summary['path']}",
        f"  plot: {summary['plot']}",
        f"  reward return: {summary['reward_return_min']:.1f} .. "
        f"{summary['reward_return_max']:.1f}",
        f"  cost return:   {summary['cost_return_min']:.1f} .. {summary['cost_return_max']:.1f}",
        f"  trajectories with cost {fractions}",
    ]
    for agent in summary.get("agents", []):
        lines.append(
            f"  {agent['agent']}: {agent['episodes']} episodes ({agent['episodes_kept']} kept), "
            f"last 10%: reward {agent['last10pct_reward']:.1f}, cost "
            f"{agent['last10pct_cost']:.1f}, lambda {agent['final_lambda']:.2f}, "
            f"{summary['agent_core_seconds'][agent['agent']] / 60:.1f} core-min")
    if summary.get("filter"):
        f = summary["filter"]
        lines.append(f"  grid filter: {f['pool']} pooled, {f['in_window']} in DSRL's window, "
                     f"{f['kept']} kept (at most {f['max_per_bin']} per bin)")
        floor = f"{f.get('min_share_each_side') or 0:.0%}"
        # the filter report's keys are "<threshold> <side>" (tasks/composition.py)
        added = [(*key.split(), n) for key, n in (f.get("added_for_share") or {}).items()]
        removed = [(*key.split(), n) for key, n in (f.get("removed_for_share") or {}).items()]
        if added:
            lines.append(f"    added back for the {floor} floor: " + ", ".join(
                f"{n} {side} (cost {'<=' if side == 'safe' else '>'} {threshold})"
                for threshold, side, n in added))
        if removed:
            lines.append(f"    given up by the other side for the {floor} floor: " + ", ".join(
                f"{n} for the {side} share at {threshold}" for threshold, side, n in removed))
    if summary.get("resumed_stages"):
        lines.append(f"  resumed: {', '.join(summary['resumed_stages'])}")
    if summary.get("machine"):
        made_on = summary["machine"]
        if made_on.get("kernels") == "portable":
            lines.append(f"  made on: {made_on['cpu']}, portable kernels (torch, MKL, oneDNN "
                         "and numpy pinned to AVX2: tasks/collect/kernels.py)")
        else:
            lines.append(f"  made on: {made_on['cpu']} (native kernels, torch's "
                         f"{made_on['torch_cpu_capability']}{', AMX' if made_on.get('amx') else ''}"
                         "; another kind of processor may round the training differently and "
                         "collect other transitions: --kernels portable does not)")
    lines.append(f"  sha256: {summary['sha256']}")
    return "\n".join(lines)


def plot(spec: TaskSpec, profile: str, out_path: Path, rewards: np.ndarray, costs: np.ndarray,
         groups: dict[str, np.ndarray]) -> Path:
    """Reward return vs cost return per trajectory (as DSRL's Fig. 10), beside the data file."""
    from tasks.figures import plot_returns

    title = f"{spec.name}: locally collected ({profile}, {len(rewards)} trajectories)"
    return plot_returns(spec, rewards, costs, title, out_path.with_suffix(".png"), groups)


def _json_float(value: float):
    return value if math.isfinite(value) else repr(value)


def _plain_budget(budget: CollectBudget) -> dict:
    out = {}
    for key, value in dataclasses.asdict(budget).items():
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else _json_float(v)
                     if isinstance(v, float) else v for v in value]
        out[key] = value
    return out


def _stage_seconds(stages, done, lineage: str | None, key: str) -> float:
    """Seconds (`cpu_seconds` or wall `seconds`) of one agent's stages, or of all (None)."""
    return round(float(sum(float(done[s.name].get(key, 0.0)) for s in stages
                           if lineage is None or s.lineage == lineage)), 1)


def _agent_cards(stages, done, stage_of) -> list[dict]:
    """Per agent (lineage): its cost limit, steps, core time, episodes trained and kept, the
    reward and cost of its last tenth of episodes, and its final multiplier."""
    cards = []
    for lineage in dict.fromkeys(stage.lineage for stage in stages):
        mine = [stage for stage in stages if stage.lineage == lineage]
        rewards = np.concatenate([done[s.name]["episode_reward_returns"] for s in mine])
        costs = np.concatenate([done[s.name]["episode_cost_returns"] for s in mine])
        tail = max(1, len(rewards) // 10)
        kept = sum(int((stage_of == stages.index(s)).sum()) for s in mine)
        last = done[mine[-1].name]
        cards.append({
            "agent": lineage,
            "env_steps": int(sum(s.steps for s in mine)),
            "episodes": int(len(rewards)),
            "episodes_kept": kept,
            "last10pct_reward": float(rewards[-tail:].mean()) if len(rewards) else None,
            "last10pct_cost": float(costs[-tail:].mean()) if len(costs) else None,
            "final_lambda": float(last["state/lambda"]) if "state/lambda" in last else None,
            "final_cost_limit": _json_float(float(mine[-1].cost_limits[-1])),
        })
    return cards


def _versions() -> str:
    found = package_versions(("torch", "gymnasium", "pybullet", "bullet-safety-gym", "dsrl",
                              "numpy", "safety-gymnasium", "mujoco", "metadrive-simulator"))
    found["bench"] = harness_version()
    found["collector"] = COLLECTOR_VERSION
    return json.dumps(found, sort_keys=True)


def _harness_commit() -> str | None:
    return harness_commit()[0]
