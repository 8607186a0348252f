"""`bench latent`: what the latent space of a trained LSPC run holds, on the data it trained on.

LSPC's safety rests on two things the tables cannot show: the CVAE learns the actions that
the cost weights w_c (eq. 43) favour, and restricting its latent space to a box around the
prior's centre (LSPC-S; LSPC-O within eps) keeps the decoder to those actions. This reads a
run's checkpoint and its dataset and measures both: which latent dimensions carry the
actions and how the codes spread there, what share of the data's codes lie inside each
restriction, how far the decoded actions of LSPC-S and LSPC-O are from the data's, and
whether w_c moves the training mass towards the trajectories that are safe at each threshold.
The figure: the data's codes in the two most used dimensions, coloured by their
trajectory's safety, with the two restrictions and LSPC-O's latents (the paper's Fig. 3
asks the same question in action space).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.records import load_records, precision_of
from bench.run import build_method_from_record, load_checkpoint
from tasks.datasets import (DatasetError, arrays_sha256, file_sha256, local_dir, official_dir,
                            read_dsrl_file, split_trajectories)
from tasks.registry import get_task

#: the transitions a summary reads (a fixed draw); every transition where the file has fewer
SAMPLE = 20_000


class LatentError(ValueError):
    """No such run, or its checkpoint or data is not here: one line for the user."""


def find_run(results: Path, task: str, method: str, seed: int, job: str | None = None) -> dict:
    """One record of the LSPC-like job of `method` on `task` at `seed` (any of its policies'
    records names the run); several jobs (other data, config or precision) need `job`."""
    from algorithms import get_method

    name, cls = get_method(method)
    if not hasattr(cls, "latent_view"):
        raise LatentError(f"{name} has no latent space to read; bench latent reads LSPC and "
                          "LSPC-code runs")
    spec = get_task(task)
    runs = {}
    for record in load_records(results):
        if (record["task"] == spec.name and record["seed"] == seed
                and record["method"] in cls.policies and record.get("artifacts")):
            runs.setdefault(record["config_hash"], record)
    if job:
        runs = {h: r for h, r in runs.items() if h.startswith(job)}
    if not runs:
        raise LatentError(f"no record of {name} on {spec.name}, seed {seed}"
                          f"{f', job {job}' if job else ''} under {results}; train one with "
                          f"`python -m bench run --tasks {spec.name} --methods {name} "
                          f"--seeds {seed} --results {results}`")
    if len(runs) > 1:
        labels = ", ".join(f"{h[:10]} ({precision_of(r)}, {r['steps']:,} steps, "
                           f"{r['dataset_file']})" for h, r in sorted(runs.items()))
        raise LatentError(f"{len(runs)} jobs of {name} on {spec.name}, seed {seed}: {labels}; "
                          "choose one with --job HASH")
    return next(iter(runs.values()))


def load_run(results: Path, record: dict):
    """(the trained method, its task, the arrays it trained on), each checked to be the
    record's: the checkpoint in the run's folder, the data file by its sha256."""
    spec = get_task(record["task"])
    checkpoint = Path(results) / record["artifacts"] / "checkpoint.pt"
    if not checkpoint.exists():
        raise LatentError(f"{checkpoint} is missing: the records are here but not the trained "
                          "model (copied records keep no checkpoints); read the run where it "
                          "trained")
    folder = local_dir() if record["data_source"] == "local" else official_dir()
    path = folder / record["dataset_file"]
    if not path.exists():
        variable = "BENCH_LOCAL_DATA_DIR" if record["data_source"] == "local" else "DSRL_DATASET_DIR"
        raise LatentError(f"{path} is missing: the run trained on {record['dataset_file']}; "
                          f"set {variable} to the folder that holds it")
    try:
        arrays, _ = read_dsrl_file(path, spec)
    except DatasetError as err:
        raise LatentError(str(err)) from None
    # the transitions decide (a record since jobs are named by them), else the file
    wanted = record.get("dataset_arrays_sha256") or record["dataset_sha256"]
    found = arrays_sha256(arrays) if record.get("dataset_arrays_sha256") else file_sha256(path)
    if found != wanted:
        raise LatentError(f"{path} is not the data the run trained on (sha256 {wanted[:12]}); "
                          f"point {path.parent} at that one")
    method = build_method_from_record(record, spec)
    load_checkpoint(method, checkpoint)
    return method, spec, method.training_data(arrays)


def latent_view(method, arrays: dict, sample: int = SAMPLE, seed: int = 0) -> dict:
    """`method.latent_view` over a fixed draw of `sample` transitions, as NumPy arrays, with
    each transition's trajectory: its index, reward return and cost return."""
    size = len(arrays["rewards"])
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(size, sample, replace=False)) if size > sample else np.arange(size)
    keys = ("observations", "actions", "rewards", "costs", "next_observations", "terminals",
            "timeouts")
    trajectories = split_trajectories(arrays)
    owner = np.repeat(np.arange(len(trajectories.starts)), trajectories.ends - trajectories.starts)
    parts = []
    for start in range(0, len(index), 4096):
        rows = index[start:start + 4096]
        batch = {key: method.to_device(arrays[key][rows]) for key in keys}
        parts.append({k: v.cpu().numpy() for k, v in method.latent_view(batch).items()})
    view = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    view["reward_return"] = trajectories.reward_returns[owner[index]]
    view["cost_return"] = trajectories.cost_returns[owner[index]]
    return view


def used_dimensions(view: dict) -> np.ndarray:
    """The latent dimensions that carry the actions, most used first: where the codes' means
    spread over the data more than a code's own std (an unused dimension's posterior is the
    prior: means near 0, std near 1)."""
    spread, width = view["code_mean"].std(0), view["code_std"].mean(0)
    order = np.argsort(-spread)
    return order[spread[order] > width[order]]


def summarize(record: dict, method, spec, view: dict) -> dict:
    cfg = method.config
    used = used_dimensions(view)
    codes = view["code_mean"][:, used]
    weights = view["cost_weight"].astype(np.float64)
    reward = spec.normalize(view["reward_return"], np.zeros_like(view["reward_return"]), 1.0)[0]

    def inside(bound):
        return float(np.mean(np.all(np.abs(codes) <= bound, axis=1))) if len(used) else None

    advantage = np.abs(view["cost_advantage"].astype(np.float64))

    def mean_over(values, rows):
        return float(values[rows].mean()) if rows.any() else None

    by_threshold = {}
    for threshold in spec.thresholds:
        safe = view["cost_return"] <= threshold
        # w_c compares the actions taken in a state; where |A_c| is large a state's actions
        # differ in cost, and that decides which trajectories' transitions gain weight
        by_threshold[f"{threshold:g}"] = {
            "share": float(safe.mean()),
            "weighted_share": float(weights[safe].sum() / weights.sum()) if weights.sum() else None,
            "mean_weight": {"safe": mean_over(weights, safe), "unsafe": mean_over(weights, ~safe)},
            "mean_abs_advantage": {"safe": mean_over(advantage, safe),
                                   "unsafe": mean_over(advantage, ~safe)}}
    z_optimal = np.abs(view["z_optimal"][:, used])
    return {
        "task": spec.name, "method": record["trained_as"], "seed": record["seed"],
        "job": record["config_hash"], "steps": record["steps"],
        "precision": precision_of(record), "data": record["dataset_file"],
        "transitions": int(len(weights)),
        "latent_dim": int(view["code_mean"].shape[1]), "action_dim": spec.act_dim,
        "used_dimensions": [int(d) for d in used],
        "code_center": [float(view["code_mean"][:, d].mean()) for d in used],
        "code_spread": [float(view["code_mean"][:, d].std()) for d in used],
        "code_std": [float(view["code_std"][:, d].mean()) for d in used],
        "safe_box": float(method.safe_epsilon), "epsilon": float(cfg.epsilon),
        "codes_in_safe_box": inside(method.safe_epsilon), "codes_in_epsilon": inside(cfg.epsilon),
        "optimal_at_bound": (float(np.mean(z_optimal > 0.99 * cfg.epsilon))
                             if len(used) else None),
        "action_error": {"code": float(view["error_code"].mean()),
                         "LSPC-S": float(view["error_safe"].mean()),
                         "LSPC-O": float(view["error_optimal"].mean())},
        "cost_weight": {"mean": float(weights.mean()),
                        "at_clip": float(np.mean(weights >= 0.999 * cfg.max_weight))},
        "trajectory_reward": {"mean": float(reward.mean()),
                              "weighted_mean": float(np.average(reward, weights=weights))
                              if weights.sum() else None},
        "safe_trajectories": by_threshold,
    }


def render(summary: dict) -> str:
    """The summary as a few lines of text (markdown-friendly)."""
    s = summary
    dims = ", ".join(f"{d} (centre {c:+.2f}, spread {a:.2f}, std {b:.2f})"
                     for d, c, a, b in zip(s["used_dimensions"], s["code_center"],
                                           s["code_spread"], s["code_std"]))
    pct = lambda x: "-" if x is None else f"{x:.1%}"  # noqa: E731
    safe = "; ".join(f"cost <= {t}: {pct(v['share'])} of transitions, {pct(v['weighted_share'])} "
                     "of the weight" for t, v in s["safe_trajectories"].items())
    errors = s["action_error"]
    num = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    by_side = "; ".join(
        f"cost <= {t}: w_c {num(v['mean_weight']['safe'])} vs {num(v['mean_weight']['unsafe'])}, "
        f"|A_c| {num(v['mean_abs_advantage']['safe'])} vs "
        f"{num(v['mean_abs_advantage']['unsafe'])}" for t, v in s["safe_trajectories"].items())
    return "\n".join([
        f"{s['method']} on {s['task']}, seed {s['seed']}, job {s['job'][:10]}, "
        f"{s['steps']:,} steps, {s['precision']}, data {s['data']} "
        f"({s['transitions']:,} transitions read)",
        f"- the actions ({s['action_dim']}-d) live in {len(s['used_dimensions'])} of "
        f"{s['latent_dim']} latent dimensions: {dims or 'none'}",
        f"- the data's codes inside LSPC-S's box |z| <= {s['safe_box']:g}: "
        f"{pct(s['codes_in_safe_box'])}; inside |z| <= eps = {s['epsilon']:g}: "
        f"{pct(s['codes_in_epsilon'])} (on the used dimensions)",
        f"- LSPC-O's latents at the bound eps (used dimensions): {pct(s['optimal_at_bound'])}",
        f"- squared action error against the data's action: decoder at the action's own code "
        f"{errors['code']:.3f}, LSPC-S {errors['LSPC-S']:.3f}, LSPC-O {errors['LSPC-O']:.3f}",
        f"- cost weights w_c: mean {s['cost_weight']['mean']:.2f}, at the clip "
        f"{pct(s['cost_weight']['at_clip'])}; trajectories safe at {safe}",
        f"- per transition, safe vs unsafe trajectories: {by_side}",
        f"- normalized reward of the transitions' trajectories: {s['trajectory_reward']['mean']:.3f}"
        f", weighted by w_c {s['trajectory_reward']['weighted_mean']:.3f}",
    ])
