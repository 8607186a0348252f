"""Collecting a DSRL-format dataset from the real simulator, with our own PPO-Lagrangian agents.

The official DSRL files were made by training online safe RL agents (TRPO/PPO-Lagrangian) at
several cost limits and keeping every rollout of their training, so the data cover the
reward-cost plane on both sides of the evaluation thresholds. This package does the same in
spirit, on a laptop budget:

- several agents per task, each a compact PPO-Lagrangian (64x64 tanh MLPs, Gaussian policy,
  GAE, separate reward and cost critics, one Lagrange multiplier updated once per epoch from
  the mean episode cost against the agent's own cost limit), plus one unconstrained agent;
- every episode of every agent, from the first (near random) to the last, goes into the file;
- each agent steps a few environments together (batched policy inference);
- the actions stored are the ones the simulator received (clipped to the Box).

Deterministic per seed (network init, action noise and every episode's reset seed derive from
(seed, agent, episode)), resumable (each finished agent is saved to a hidden partial folder
beside the output), and it never writes under an official DSRL file name.

The modules, in the order a collection uses them:

- budgets.py: the profiles (CollectBudget) and what each task makes of them;
- stages.py: the resumable pieces (an agent, or a segment of one) and their partial files;
- ppo_lagrangian.py: the agent (the loss, GAE and multiplier update as pure functions, the
  rollout, the training loop);
- cards.py: the dataset card, the file's attributes and the printed summary;
- this file: collect_task, which runs the stages, pools and filters their episodes and
  writes the file; train_agent_stages, which trains one agent's stages alone (bench collect
  trains the agents of its tasks on all its cores, then pools each task).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from tasks.collect import cards
from tasks.collect.budgets import (COLLECT_PROFILES, COLLECTOR_NAME, COLLECTOR_VERSION,
                                   OFFICIAL_MAX, REFERENCE_SPEED, CollectBudget, CollectError,
                                   agent_cost_limits, budget_for, get_budget, steps_for)
from tasks.collect.cards import card_path_for, format_summary
from tasks.collect.ppo_lagrangian import train_agent as _train_agent
from tasks.collect.seeding import derive_seed
from tasks.collect.stages import _segments as _segments  # noqa: F401 (tests use it)
from tasks.collect.stages import (Stage, episode_returns, keep_episodes, load_partial,
                                  partial_dir, plan_stages, save_partial, stage_fingerprint)
from tasks.composition import apply_grid_filter, in_window, window_of
from tasks.datasets import KEYS, local_path, split_trajectories, write_dsrl_file
from tasks.files import write_text_atomic
from tasks.registry import TASKS, TaskSpec

__all__ = [
    "COLLECT_PROFILES", "COLLECTOR_NAME", "COLLECTOR_VERSION", "OFFICIAL_MAX", "REFERENCE_SPEED",
    "CollectBudget", "CollectError", "Stage", "agent_cost_limits", "agents_of", "budget_for",
    "card_path_for", "collect_task", "train_agent_stages", "format_summary", "get_budget", "official_cost_max",
    "partial_dir", "plan_stages", "steps_for",
]


def official_cost_max(spec: TaskSpec) -> float:
    """The largest episode cost in the task's official DSRL file (the top of its window)."""
    from tasks.composition import official_numbers

    return float(official_numbers(spec)["cost_max"])


def collect_task(spec: TaskSpec, profile: str = "quick", seed: int = 0, out_path=None,
                 progress: bool = True, force: bool = False,
                 resumed_stages: list[str] | None = None, started: float | None = None) -> dict:
    """Collect the task's dataset with PPO-Lagrangian agents; write it, plot it, summarise it.

    Returns the summary dict (also what gets printed, see format_summary); the dataset card
    (how the file was made) is in the file's attribute `card` and in `<file>.card.json`.
    When its agents were trained before this call, each by `train_agent_stages` (on several
    cores), every stage is found saved: `resumed_stages` then names the ones an earlier run
    had saved, and `started` (time.perf_counter) when the collection began.
    """
    out_path = _check_out_path(spec, profile, out_path, force)
    budget = budget_for(profile, spec)
    stages = plan_stages(budget, spec)
    partial = partial_dir(out_path, seed)
    started = time.perf_counter() if started is None else started
    done, resumed = _train_stages(spec, profile, budget, seed, stages, partial, progress)
    if resumed_stages is not None:
        resumed = [stage.name for stage in stages if stage.name in set(resumed_stages)]

    arrays, stage_of, trajs, filter_report = _pool(spec, budget, seed, stages, done)
    card = cards.dataset_card(spec, profile, seed, budget, stages, done, stage_of,
                              filter_report)
    times = cards.timing(stages, done, resumed)  # beside the file only: its hash names the data
    write_dsrl_file(out_path, arrays,
                    cards.file_attrs(spec, profile, seed, budget, len(stages), stage_of, card))
    write_text_atomic(card_path_for(out_path),
                      json.dumps({**card, "timing": times}, indent=1, sort_keys=True) + "\n")
    if budget.grid_filter is None:
        shutil.rmtree(partial, ignore_errors=True)
        try:
            partial.parent.rmdir()  # the .partial folder itself, when nothing else is pending
        except OSError:
            pass
    # with a grid filter the trained stages stay: changing the filter, or adding an agent,
    # then costs seconds, not the core-hours of training again (delete .partial to free them)

    lineages = list(dict.fromkeys(stage.lineage for stage in stages))
    lineage_of = np.asarray([lineages.index(stages[i].lineage) for i in stage_of], dtype=int)
    plot = cards.plot(spec, profile, out_path, trajs.reward_returns, trajs.cost_returns,
                      {name: lineage_of == i for i, name in enumerate(lineages)})
    return cards.summary(spec, profile, seed, budget, out_path, trajs, len(arrays["rewards"]),
                         card, times, plot, started)


def _check_out_path(spec: TaskSpec, profile: str, out_path, force: bool) -> Path:
    """Where the file goes; a CollectError if that is an official name, or taken (no force)."""
    out_path = Path(out_path) if out_path is not None else local_path(spec, profile)
    official_names = {task.dataset_file for task in TASKS.values()}
    if out_path.name in official_names:
        raise CollectError(
            f"{out_path}: {out_path.name} is the name of an official DSRL file; locally "
            "collected data must not pose as official data, choose another name")
    if out_path.exists() and not force:
        raise CollectError(
            f"{out_path} already exists; pass --force (force=True) to collect again and "
            "overwrite it")
    return out_path


def agents_of(spec: TaskSpec, profile: str = "quick") -> list[str]:
    """The agents (stage lineages) of a collection, the one with the most steps first."""
    stages = plan_stages(budget_for(profile, spec), spec)
    steps = {}
    for stage in stages:
        steps[stage.lineage] = steps.get(stage.lineage, 0) + stage.steps
    return sorted(steps, key=lambda lineage: -steps[lineage])


def train_agent_stages(spec: TaskSpec, profile: str, seed: int, agent: str, out_path=None,
                       force: bool = False) -> dict:
    """Train the stages of one agent of a collection (a lineage: "limit 10", "unconstrained")
    that are not saved yet, saving each to the partial folder; collect_task then finds them
    saved and pools. The agents are independent (each seeds its own networks, noise and
    resets from (seed, agent)), so training them in separate processes, in any order, gives
    the file a serial collection writes. Returns {"task", "agent", "trained", "resumed"}."""
    out_path = _check_out_path(spec, profile, out_path, force)
    budget = budget_for(profile, spec)
    stages = [stage for stage in plan_stages(budget, spec) if stage.lineage == agent]
    if not stages:
        raise CollectError(f"{spec.name} has no agent {agent!r} in the {profile} collection; "
                           f"its agents: {', '.join(agents_of(spec, profile))}")
    _, resumed = _train_stages(spec, profile, budget, seed, stages,
                               partial_dir(out_path, seed), progress=False)
    return {"task": spec.name, "agent": agent, "resumed": resumed,
            "trained": [stage.name for stage in stages if stage.name not in resumed]}


def _train_stages(spec, profile, budget, seed, stages, partial, progress):
    """_run_stages on one torch thread, with a bar (progress) or one line per stage."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bar = None
    try:
        from tqdm import tqdm

        bar = tqdm(total=sum(stage.steps for stage in stages), unit="step",
                   disable=not progress, desc=f"collect {spec.name} ({profile})",
                   dynamic_ncols=True)
        say = None if progress else (lambda line: print(line, flush=True))
        return _run_stages(spec, profile, budget, seed, stages, partial, bar, say)
    finally:
        torch.set_num_threads(threads)
        if bar is not None:
            bar.close()


def _run_stages(spec, profile, budget, seed, stages, partial, bar, say=None):
    """Train every stage not saved yet; return each stage's saved arrays and which resumed.
    `say` (when given) gets one line per stage: how far the collection is, without a bar."""
    window = window_of(spec, budget.grid_filter) if budget.grid_filter else None
    done: dict[str, dict] = {}
    prints: dict[str, str] = {}
    resumed = []
    lineages = {stage.lineage for stage in stages}
    scope = f" of {stages[0].lineage}" if len(lineages) == 1 else ""
    for stage in stages:
        fingerprint = stage_fingerprint(spec, profile, budget, seed, stage,
                                        prints.get(stage.parent))
        prints[stage.name] = fingerprint
        file = partial / f"{stage.name}.npz"
        data = load_partial(file, fingerprint)
        if data is None:
            start = None
            if stage.parent is not None:
                start = {k: v for k, v in done[stage.parent].items() if k.startswith("state/")}
            start_n = bar.n
            began, began_cpu = time.perf_counter(), time.process_time()
            # _train_agent is looked up here, on the package, so that a test can stand in
            data = _train_agent(spec, budget, stage.steps, seed, stage.agent,
                                stage.cost_limits if len(set(stage.cost_limits)) > 1
                                else stage.cost_limits[0], bar=bar, start=start)
            # core time is the process's CPU time (one torch thread, the simulator in process):
            # what the stage costs, whatever else shared the machine; wall time beside it
            data["seconds"] = np.asarray(time.perf_counter() - began)
            data["cpu_seconds"] = np.asarray(time.process_time() - began_cpu)
            bar.update(max(0, start_n + stage.steps - bar.n))  # the tail steps overshoot
            rewards, costs = episode_returns(data)
            data["episode_reward_returns"], data["episode_cost_returns"] = rewards, costs
            if window is not None:
                # episodes that can never be kept are not stored (an ant's pool is gigabytes)
                data = keep_episodes(data, in_window(costs, rewards, window))
            save_partial(file, data, fingerprint)
        else:
            resumed.append(stage.name)
            bar.update(stage.steps)
        done[stage.name] = data
        if say is not None:
            rewards = data["episode_reward_returns"]
            costs = data["episode_cost_returns"]
            tail = max(1, len(rewards) // 10)
            share = sum(s.steps for s in stages if s.name in done) / sum(s.steps for s in stages)
            how = "resumed" if stage.name in resumed else "trained"
            say(f"{spec.name} ({profile}): {stage.name} {how} ({len(done)}/{len(stages)} "
                f"stages{scope}, {share:.0%} of the steps); "
                f"its last episodes: reward {rewards[-tail:].mean():.0f}, cost "
                f"{costs[-tail:].mean():.1f}, limit {stage.cost_limits[-1]:g}")
    return done, resumed


def _pool(spec, budget, seed, stages, done):
    """Every stage's episodes in one flat dataset, through the grid filter when the budget has
    one. Returns (arrays, the stage of each trajectory, the trajectories, the filter report)."""
    results = [done[stage.name] for stage in stages]
    arrays = {key: np.concatenate([r[key] for r in results]) for key in KEYS}
    stage_of = np.repeat(np.arange(len(stages)), [len(r["episode_lengths"]) for r in results])
    if len(stage_of) == 0:
        raise CollectError(
            f"{spec.name}: none of the collected episodes lies inside DSRL's reward-cost window "
            f"(cost 0..{official_cost_max(spec):g}, reward >= {spec.reward_min:.0f}); the agents "
            "did not learn the task: give it more steps (agent_scale of the profile)")
    trajs = split_trajectories(arrays)
    filter_report = None
    if budget.grid_filter is not None:
        rng = np.random.default_rng(derive_seed(seed, 7, 7))
        kept, filter_report = apply_grid_filter(spec, trajs.cost_returns, trajs.reward_returns,
                                                budget.grid_filter, rng)
        if len(kept) == 0:
            raise CollectError(
                f"{spec.name}: the grid filter kept none of the {len(trajs)} trajectories in "
                "DSRL's window (every bin too sparse); collect more (agent_scale)")
        mask = trajs.mask(np.isin(np.arange(len(trajs)), kept), len(arrays["rewards"]))
        arrays = {key: value[mask] for key, value in arrays.items()}
        stage_of = stage_of[kept]
        trajs = split_trajectories(arrays)
    return arrays, stage_of, trajs, filter_report
