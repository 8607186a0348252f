"""How much a collection trains: the profiles, and what each task makes of them.

A profile (smoke, quick, study, paper) is one CollectBudget: how many agents (one per cost
limit), how many env steps each, and the PPO-Lagrangian settings. `budget_for` and
`steps_for` turn it into one task's budget: fewer environments where the simulator allows
fewer, more steps where the task learns slower or its simulator runs faster.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from tasks.composition import GridFilter
from tasks.registry import TaskSpec

#: bump when a change to this package changes what a given (task, profile, seed) collects;
#: partial files of another version are not reused
COLLECTOR_VERSION = "1"
COLLECTOR_NAME = "ppo-lagrangian (bench)"

#: the speed that a speed-scaled `env_steps_per_agent` is written for (steps/s)
REFERENCE_SPEED = 2000.0

#: a `cost_limits` entry: the agent's limit is the official file's largest episode cost (on the
#: task's own scale), so that the top of the file's reward axis is reached inside its window.
#: Where that cost is no higher than the profile's other finite limits (CarRun: 40) there is
#: no such agent, as nothing new lies between (the agents after it move up one place)
OFFICIAL_MAX = "official max"


@dataclass(frozen=True)
class CollectBudget:
    """How much data a profile collects per task, and the PPO-Lagrangian settings that make it."""

    env_steps_per_agent: int
    """env steps each agent trains for (at REFERENCE_SPEED when speed_scaled; see steps_for)"""
    cost_limits: tuple[float | str, ...]
    """one agent per entry: its episode cost limit on the Bullet scale (thresholds 10/20/40),
    multiplied by (suite's largest threshold / 40) for other suites; inf = unconstrained;
    OFFICIAL_MAX = the official file's largest cost"""
    speed_scaled: bool = False
    """scale env_steps_per_agent by the task's collect_speed / REFERENCE_SPEED (the same wall time
    for every task)"""
    num_envs: int = 4
    """environments each agent steps together (batched inference)"""
    steps_per_epoch: int = 2000
    """env steps (all envs together) collected between two PPO updates"""
    update_epochs: int = 10
    """passes over one epoch's rollout per PPO update (cut short by target_kl)"""
    minibatch_size: int = 250
    """samples per gradient step"""
    lr: float = 3e-4
    """Adam learning rate of actor and both critics"""
    gamma: float = 0.99
    """discount of rewards and costs"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_ratio: float = 0.2
    """PPO clip range"""
    target_kl: float = 0.02
    """stop an update's passes early once the approximate KL exceeds this"""
    lagrange_lr: float = 0.05
    """step size of the multiplier: lam <- max(0, lam + lagrange_lr * (mean ep cost - limit))"""
    lagrange_init: float = 0.0
    """initial Lagrange multiplier"""
    init_log_std: float = -0.5
    """initial log standard deviation of the Gaussian policy"""
    hidden: int = 64
    """width of the two hidden tanh layers of every network"""
    anneal_from: float | None = None
    """None: each agent keeps its cost limit all along. A number: the limit starts there and
    rises linearly to the agent's own over `anneal_window`, as DSRL annealed its agents'
    target costs (e.g. CarCircle 5 -> 100 over epochs 100-900 of 1000): an agent that starts
    safe learns the task under a tight limit, then spends its cost as the limit loosens, so one
    agent's episodes cover the cost axis from the bottom up"""
    anneal_window: tuple[float, float] = (0.1, 0.9)
    """the shares of an agent's epochs where the annealed limit starts and stops rising"""
    segment_steps: int = 0
    """train and save each agent in pieces of about this many env steps, so an interrupted
    collection loses at most one piece (0: one piece per agent)"""
    agent_scale: tuple[tuple[str, float], ...] = ()
    """per-task multiplier of env_steps_per_agent, as data: (task, factor) pairs (the ants and
    the circles learn slower: docs/data/README.md)"""
    grid_filter: GridFilter | None = None
    """DSRL's grid filter on the pooled trajectories (None: every episode is kept)"""


COLLECT_PROFILES: dict[str, CollectBudget] = {
    # seconds per task: tiny, for tests (2 agents x a few episodes)
    "smoke": CollectBudget(env_steps_per_agent=400, cost_limits=(10.0, math.inf), num_envs=2,
                           steps_per_epoch=200, update_epochs=2, minibatch_size=100),
    # minutes per task, speed-scaled so that every task takes about as long
    "quick": CollectBudget(env_steps_per_agent=44_000, cost_limits=(5.0, 15.0, 30.0, 60.0,
                                                                    math.inf),
                           speed_scaled=True),
    # DSRL-like data on every Bullet task (docs/data/README.md): four agents from scratch whose
    # cost limits rise from 2 to 10, 20, 40 and to the official file's largest cost over the
    # first half of their training and stay there for the second, and one unconstrained (on
    # DroneRun the limit-140 agent ended at reward ~490, the unconstrained one of an earlier
    # version at ~670 inside the window; on BallRun it runs at cost ~91, inside the window's
    # 96), every episode pooled, then
    # DSRL's grid filter in the official file's window (20% above its largest cost). From
    # scratch, because an agent started from an unconstrained expert that violates the limit
    # at every step sees flat cost advantages and never learns to slow down. A rise over 10-90%
    # of training (DSRL's CarCircle schedule) left BallRun's top agent no time at its limit:
    # it ended slow (reward ~520 at cost ~84) where the same budget with the rise over 10-50%
    # ended flat out (~1,490 at ~92)
    "study": CollectBudget(env_steps_per_agent=400_000,
                           cost_limits=(10.0, 20.0, 40.0, OFFICIAL_MAX, math.inf),
                           num_envs=8, steps_per_epoch=4000, minibatch_size=500,
                           anneal_from=2.0, anneal_window=(0.1, 0.5), segment_steps=200_000,
                           agent_scale=(("BallCircle", 2.5), ("CarCircle", 1.25),
                                        ("DroneCircle", 2.0), ("AntRun", 3.0),
                                        ("AntCircle", 3.0)),
                           grid_filter=GridFilter()),
    # the real thing, for a cluster
    "paper": CollectBudget(env_steps_per_agent=2_000_000,
                           cost_limits=(5.0, 10.0, 20.0, 30.0, 40.0, 60.0, 80.0, math.inf),
                           num_envs=8, steps_per_epoch=20_000, minibatch_size=1000),
}


class CollectError(RuntimeError):
    """Collection cannot proceed (existing output, official file name, bad profile)."""


def get_budget(profile: str) -> CollectBudget:
    if profile not in COLLECT_PROFILES:
        raise CollectError(f"unknown collect profile {profile!r}; use one of "
                           f"{', '.join(COLLECT_PROFILES)}")
    return COLLECT_PROFILES[profile]


def budget_for(profile: str, spec: TaskSpec) -> CollectBudget:
    """The profile's budget as this task runs it: MetaDrive allows one engine per process, so
    its agents step one environment (the epochs keep their size)."""
    from tasks.envs import max_envs_in_process

    budget = get_budget(profile)
    most = max_envs_in_process(spec)
    if most is not None and budget.num_envs > most:
        budget = dataclasses.replace(budget, num_envs=most)
    return budget


def steps_for(budget: CollectBudget, spec: TaskSpec) -> int:
    """The env-step budget of one agent on this task (a whole number of epochs)."""
    steps = float(budget.env_steps_per_agent) * task_scale(budget.agent_scale, spec)
    if budget.speed_scaled:
        steps *= spec.collect_speed / REFERENCE_SPEED
    epochs = max(1, round(steps / budget.steps_per_epoch))
    return epochs * budget.steps_per_epoch


def agent_cost_limits(budget: CollectBudget, spec: TaskSpec) -> tuple[float, ...]:
    """Each agent's episode cost limit on this task's scale (the suite's largest threshold
    stands for the Bullet suite's 40; OFFICIAL_MAX is the official file's largest cost)."""
    from tasks.composition import official_numbers

    scale = spec.thresholds[-1] / 40.0
    others = [float(limit) * scale for limit in budget.cost_limits if limit != OFFICIAL_MAX]
    highest = max((limit for limit in others if math.isfinite(limit)), default=0.0)
    limits = []
    for limit in budget.cost_limits:
        if limit == OFFICIAL_MAX:
            top = float(official_numbers(spec)["cost_max"])
            if top > highest:
                limits.append(top)
        else:
            limits.append(float(limit) * scale)
    return tuple(limits)


def task_scale(table: tuple[tuple[str, float], ...], spec: TaskSpec) -> float:
    """The task's factor in an `agent_scale` table (1 for a task it does not name)."""
    return dict(table).get(spec.name, 1.0)
