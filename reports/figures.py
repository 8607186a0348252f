"""Figures from records and run artifacts (PNG and PDF): training curves (paper Fig. 2),
a sweep against a config field (Fig. 4, reports/sweep.py), a dataset's scatter (Fig. 10)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd

from reports.aggregate import ReportError
from tasks.registry import get_task


def job_tags(results: Path, planned: dict[str, tuple] | None = None) -> dict[str, str]:
    """Job hash -> what sets the job's runs apart beside its method (bench.records.job_tag),
    for every job a record under `results` names, and the `planned` ones (hash -> (variant,
    precision), the caller's, from the saved plans: bench.plan.planned_variants). A run folder
    (`run-seed<N>-<hash>`) of no such job, one left by an abandoned plan, is nobody's result.
    Where all of them are of one precision, the tags leave it out, as the report's columns
    do (reports.aggregate.single_precision): a study made in bf16 is drawn under the paper's
    names."""
    from bench.records import job_tag, load_records, precision_of

    jobs = {job_hash: (variant, precision or "fp32")
            for job_hash, (variant, precision) in (planned or {}).items()}
    for record in load_records(results):
        jobs[record["config_hash"]] = (record.get("variant"), precision_of(record))
    one_precision = len({precision for _, precision in jobs.values()}) == 1
    return {job_hash: job_tag(variant, None if one_precision else precision)
            for job_hash, (variant, precision) in jobs.items()}


#: a training run's folder (bench.records.artifact_dir, bench.plan.Job.run_dir): seed, job hash
#: and, for a method trained per threshold, the threshold
RUN_FOLDER = re.compile(r"run-seed\d+-([0-9a-f]+)(?:-thr([\d.]+))?$")


def _runs(results: Path, task: str, left_out: list | None, tags: dict[str, str]):
    """(curve path, its method folder, its job hash, the job's tag, its training threshold or
    None) of each run of a job in `tags` (job_tags) on `task`; the others' paths go to
    `left_out`."""
    spec = get_task(task)
    for path in sorted(Path(results).glob(f"{spec.suite}/{spec.name}/*/run-*/curve.csv")):
        named = RUN_FOLDER.match(path.parent.name)
        if named is None or named.group(1) not in tags:
            if left_out is not None:
                left_out.append(path)
            continue
        job_hash = named.group(1)
        yield path, path.parent.parent.name, job_hash, tags[job_hash], named.group(2)


def _named_apart(groups: dict[tuple[str, str], list]) -> dict[str, list]:
    """{(label, job hash): runs} -> {label: runs}, a label shared by several jobs (other data,
    config or budget under one name) suffixed with each job's hash: never averaged together."""
    shared = Counter(label for label, _ in groups)
    return {(f"{label} (job {job_hash[:8]})" if shared[label] > 1 else label): runs
            for (label, job_hash), runs in groups.items()}


def curve_frames(results: Path, task: str, left_out: list | None = None,
                 tags: dict[str, str] | None = None) -> dict[str, list[pd.DataFrame]]:
    """Training curves with evaluation columns, keyed by policy label (one frame per run,
    i.e. per seed of one job). Only runs of the jobs in `tags` (default: job_tags of the
    records) count; `left_out` collects the others."""
    tags = job_tags(results) if tags is None else tags
    groups: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for path, method, job_hash, tag, threshold in _runs(results, task, left_out, tags):
        frame = pd.read_csv(path)
        for column in [c for c in frame.columns if c.endswith("/reward_return")]:
            prefix = column.split("/")[0]
            label = method if prefix == "eval" else prefix
            label += f" [{tag}]" if tag else ""
            label += f" (thr {threshold})" if threshold else ""
            part = frame[["step", column, f"{prefix}/cost_return"]].dropna()
            part.columns = ["step", "reward_return", "cost_return"]
            groups.setdefault((label, job_hash), []).append(part)
    return _named_apart(groups)


#: the critics' estimates a method logs (bench.train's stats), drawn beside its returns: a
#: budget is long enough where these have flattened, not only the returns
VALUE_COLUMNS = {"value/v": "V", "value/vc": "V^c"}


def value_frames(results: Path, task: str,
                 tags: dict[str, str] | None = None) -> dict[str, list[pd.DataFrame]]:
    """The logged critic estimates (VALUE_COLUMNS) of each job's runs on the task (the jobs
    of `tags`, as curve_frames)."""
    tags = job_tags(results) if tags is None else tags
    groups: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for path, method, job_hash, tag, _ in _runs(results, task, None, tags):
        frame = pd.read_csv(path)
        present = [c for c in VALUE_COLUMNS if c in frame.columns]
        if present:
            label = method + (f" [{tag}]" if tag else "")
            groups.setdefault((label, job_hash), []).append(frame[["step", *present]].dropna())
    return _named_apart(groups)


#: where a curve is read for the flatness table: shares of its last step
FLATNESS_AT = (0.5, 0.8)


def _at(mean: pd.Series, share: float) -> float:
    """The mean curve at the last logged step no later than `share` of its last step."""
    steps = mean.index[mean.index <= share * mean.index.max()]
    return float(mean.loc[steps.max()]) if len(steps) else float("nan")


def flatness_rows(task: str, curves: dict[str, list[pd.DataFrame]],
                  values: dict[str, list[pd.DataFrame]]) -> list[dict]:
    """Where each curve of a task stands at half and four fifths of its training and at its
    end (mean over its runs), and how much it moved over the last fifth, as a share of its
    final value: the evidence for a budget, in numbers beside the figure. The returns are
    evaluations of a few episodes (noisy); the critics' batch means V and V^c are smooth."""
    rows = []
    series = [(label, stat, runs) for label, runs in curves.items()
              for stat in ("reward_return", "cost_return")]
    series += [(label, name, [r.rename(columns={column: name}) for r in runs])
               for label, runs in values.items()
               for column, name in VALUE_COLUMNS.items() if column in runs[0]]
    for label, stat, runs in series:
        mean = pd.concat(runs).groupby("step")[stat].mean().dropna()
        if mean.empty:
            continue
        final = float(mean.iloc[-1])
        late = _at(mean, FLATNESS_AT[-1])
        rows.append({"task": task, "curve": label, "statistic": stat, "runs": len(runs),
                     "last_step": int(mean.index.max()),
                     **{f"at_{share:g}": _at(mean, share) for share in FLATNESS_AT},
                     "final": final,
                     "change_last_fifth": (final - late) / abs(final) if final else float("nan")})
    return rows


def flatness_markdown(rows: list[dict]) -> str:
    """The flatness rows as a markdown table."""
    head = ("| task | curve | statistic | runs | at 50% | at 80% | final (step) | "
            "change over the last 20% |")
    lines = [head, "|" + "---|" * 8]

    def num(value, fmt):
        return "-" if pd.isna(value) else format(value, fmt)

    for r in rows:
        lines.append(f"| {r['task']} | {r['curve']} | {r['statistic']} | {r['runs']} | "
                     f"{num(r['at_0.5'], '.4g')} | {num(r['at_0.8'], '.4g')} | "
                     f"{num(r['final'], '.4g')} ({r['last_step']:,}) | "
                     f"{num(r['change_last_fifth'], '+.1%')} |")
    return "\n".join(lines) + "\n"


def plot_curves(results: Path, tasks, path: Path, left_out: list | None = None,
                planned: dict | None = None) -> list[Path]:
    """Per task (a row each; `tasks` one name or several): the reward and cost returns during
    training, mean over the seeds of each job, thresholds dashed, and where logged the
    critics' estimates V and V^c (paper Fig. 2, with the evidence for a budget beside it),
    and beside the figure, as `<path>.md`, the same curves in numbers (flatness_rows).
    Runs of no recorded or `planned` job are left out (into `left_out`; job_tags)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [tasks] if isinstance(tasks, str) else list(tasks)
    tags = job_tags(results, planned)  # the records read once for every task
    rows = []
    for task in names:
        spec = get_task(task)
        curves = curve_frames(results, task, left_out, tags)
        if not curves:
            raise ReportError(
                f"no training curves with evaluations for {spec.name} under {results}; run "
                "with `--eval-every N` (the study and paper profiles do)"
                + (f" ({len(left_out)} run folder(s) there belong to no recorded or planned "
                   "job)" if left_out else ""))
        rows.append((spec, curves, value_frames(results, task, tags)))
    with_values = any(values for _, _, values in rows)
    columns = 3 if with_values else 2
    fig, axes = plt.subplots(len(rows), columns, figsize=(5 * columns, 3.6 * len(rows)),
                             squeeze=False)
    for (spec, curves, values), axes_row in zip(rows, axes):
        ax_r, ax_c = axes_row[0], axes_row[1]
        for label, runs in curves.items():
            mean = pd.concat(runs).groupby("step").mean()
            # markers: a run evaluated once is a point, which a line alone would not draw
            ax_r.plot(mean.index, mean.reward_return, marker=".", label=f"{label} "
                      f"({len(runs)} run{'s' if len(runs) > 1 else ''})")
            ax_c.plot(mean.index, mean.cost_return, marker=".", label=label)
        for threshold in spec.thresholds:
            ax_c.axhline(threshold, color="red", linestyle="--", linewidth=0.8)
        ax_r.set(title=f"{spec.name}: reward return", xlabel="training step")
        ax_c.set(title=f"{spec.name}: cost return (thresholds dashed)", xlabel="training step")
        ax_r.legend(fontsize=7)
        if with_values:
            # V^c is a cost value, often a tenth of V or less: on an axis of its own (right,
            # dotted), so that whether it has flattened can be seen beside V
            ax_v = axes_row[2]
            ax_vc = ax_v.twinx()
            for i, (method, runs) in enumerate(values.items()):
                mean = pd.concat(runs).groupby("step").mean()
                for column, name in VALUE_COLUMNS.items():
                    if column in mean:
                        ax = ax_v if column == "value/v" else ax_vc
                        ax.plot(mean.index, mean[column], label=f"{method} {name}",
                                color=f"C{i}", linestyle="-" if ax is ax_v else ":")
            ax_v.set(title=f"{spec.name}: critic estimates (batch mean)",
                     xlabel="training step", ylabel="V (solid)")
            ax_vc.set_ylabel("V^c (dotted)")
            if values:
                lines = ax_v.get_lines() + ax_vc.get_lines()
                ax_v.legend(lines, [line.get_label() for line in lines], fontsize=7)
    from matplotlib.ticker import FuncFormatter

    for ax in axes.flat:  # "25k", not "25000": five-digit step labels run into each other
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
    fig.tight_layout()
    table = Path(path).with_suffix(".md")
    flat = [row for spec, curves, values in rows
            for row in flatness_rows(spec.name, curves, values)]
    saved = _save(fig, path)
    table.write_text(flatness_markdown(flat))
    return saved + [table]


def plot_dataset(task: str, path: Path, source: str = "auto", profile: str = "quick") -> list[Path]:
    """The trajectories of a task's dataset on the reward-cost plane, thresholds dashed."""
    from tasks.datasets import load_dataset, split_trajectories
    from tasks.figures import plot_returns

    spec = get_task(task)
    data = load_dataset(spec, source, profile)
    trajectories = split_trajectories(data.arrays)
    kind = "official DSRL" if data.source == "dsrl" else "locally collected"
    title = f"{spec.name}: {kind} ({len(trajectories)} trajectories)"
    path = Path(path)
    return [plot_returns(spec, trajectories.reward_returns, trajectories.cost_returns, title,
                         path.with_suffix(suffix)) for suffix in (".png", ".pdf")]


def plot_datasets(specs, path: Path, source: str = "auto", profile: str = "quick") -> list[Path]:
    """Every task's dataset on one sheet: a reward-cost panel per task (Fig. 10 for a suite),
    the official file's extent dotted, the thresholds dashed."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from tasks.composition import official_numbers
    from tasks.datasets import DatasetError, load_dataset, split_trajectories

    panels = []
    for spec in specs:
        try:
            panels.append((spec, load_dataset(spec, source, profile)))
        except DatasetError:
            continue
    if not panels:
        raise ReportError(f"no {profile} dataset of {', '.join(s.name for s in specs)} found; "
                          f"`python -m bench collect --profile {profile}` makes them")
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (spec, data) in zip(axes.flat, panels):
        trajectories = split_trajectories(data.arrays)
        ax.scatter(trajectories.cost_returns, trajectories.reward_returns, s=2, alpha=0.4)
        for threshold in spec.thresholds:
            ax.axvline(threshold, color="k", linestyle="--", linewidth=0.6)
        official = official_numbers(spec)
        ax.add_patch(Rectangle((0.0, spec.reward_min), official["cost_max"],
                               spec.reward_max - spec.reward_min, fill=False, edgecolor="0.4",
                               linestyle=":", linewidth=0.8))
        kind = "DSRL" if data.source == "dsrl" else f"local {profile}"
        ax.set_title(f"{spec.name} ({kind}, {len(trajectories)})", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("cost return", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("reward return", fontsize=7)
    fig.suptitle("trajectories on the reward-cost plane; dotted: the official file's extent, "
                 "dashed: the thresholds", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_latent(view: dict, summary: dict, threshold: float, path: Path) -> list[Path]:
    """`bench latent`'s figure (bench/latent.py): left, the data's codes (q(z | s, a)'s means)
    in the two most used latent dimensions, safe trajectories at `threshold` apart from the
    others, with LSPC-S's box, the eps restriction and LSPC-O's latents at the same states;
    right, the share of transitions and of the cost weight w_c by the normalized reward of
    their trajectory, for the safe and the unsafe ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    used = summary["used_dimensions"][:2]
    safe = view["cost_return"] <= threshold
    title = f"{summary['task']}: {summary['method']}, seed {summary['seed']}, {summary['steps']:,} steps"
    if len(used) == 2:
        x, y = used
        codes = view["code_mean"]
        show = np.random.default_rng(0).permutation(len(codes))[:4000]
        for mask, color, label in ((~safe, "tab:red", f"cost > {threshold:g}"),
                                   (safe, "tab:green", f"cost <= {threshold:g}")):
            pick = show[mask[show]]
            left.scatter(codes[pick, x], codes[pick, y], s=3, alpha=0.35, color=color,
                         label=f"data's codes, trajectory {label}")
        z = view["z_optimal"][show[:600]]
        left.scatter(z[:, x], z[:, y], s=6, color="tab:blue", label="LSPC-O's latents")
        for bound, style, label in ((summary["safe_box"], "-", "LSPC-S's box"),
                                    (summary["epsilon"], "--", "eps")):
            left.add_patch(Rectangle((-bound, -bound), 2 * bound, 2 * bound, fill=False,
                                     linestyle=style, linewidth=1.5, label=label))
        left.set_xlabel(f"z[{x}]")
        left.set_ylabel(f"z[{y}]")
        left.legend(fontsize=7, loc="upper right", markerscale=3)
    else:
        left.text(0.5, 0.5, f"{len(used)} used latent dimension(s): nothing to draw in 2-d",
                  ha="center", va="center", transform=left.transAxes)
    left.set_title(title, fontsize=9)
    spec = get_task(summary["task"])
    reward = spec.normalize(view["reward_return"], np.zeros_like(view["reward_return"]), 1.0)[0]
    edges = np.linspace(min(0.0, reward.min()), max(1.0, reward.max()), 11)
    weights = view["cost_weight"]
    width = (edges[1] - edges[0]) / 4
    centers = (edges[:-1] + edges[1:]) / 2
    for offset, mask, name, color in ((-1.5, safe, "safe", "tab:green"),
                                      (0.5, ~safe, "unsafe", "tab:red")):
        count, _ = np.histogram(reward[mask], edges)
        mass, _ = np.histogram(reward[mask], edges, weights=weights[mask])
        right.bar(centers + offset * width, count / len(reward), width, color=color, alpha=0.4,
                  label=f"{name}: share of transitions")
        right.bar(centers + (offset + 1) * width, mass / weights.sum(), width, color=color,
                  label=f"{name}: share of w_c")
    right.set_xlabel("normalized reward of the transition's trajectory")
    right.set_ylabel("share")
    right.set_title(f"where the cost weights put the CVAE's mass (safe: cost <= {threshold:g})",
                    fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix in (".png", ".pdf"):
        fig.savefig(path.with_suffix(suffix), dpi=120)
        out.append(path.with_suffix(suffix))
    plt.close(fig)
    return out
