"""fp32 against bf16 (`--precision`), measured: the same jobs in both precisions, side by side.

    python scripts/precision_equivalence.py RESULTS [--jobs 2]            # the study
    python scripts/precision_equivalence.py RESULTS --budget smoke        # a minute, a test

The study (issue 21's "Equivalence", about 10 core-hours, one thread a job): in fp32 and bf16,
- LSPC (LSPC-S and LSPC-O) and BC-Safe on two Bullet tasks (BallRun, CarRun) with the
  DSRL-like local data (`bench collect --profile study`), seeds 0-2, 30,000 steps each;
- COptiDICE on the first task at threshold 20, seeds 0-2, 30,000 steps;
evaluated as `bench run --profile quick` evaluates (20 episodes per threshold), recorded in
RESULTS like any run (`bench status --results RESULTS` follows them, `bench report` reads
them; a bf16 job is a job of its own). Then the first 10,000 steps of LSPC (first task,
first seed) again in both precisions, in this process, from the same initial weights,
batches and random draws, every step's losses and AWR weights kept in
RESULTS/precision-tracking/.

It prints, and writes to RESULTS/precision-equivalence.md (and --out, e.g. docs/precision.md):
- per task, method and metric: mean and std over seeds of the normalized reward and cost in
  each precision (each seed first averaged over its thresholds, as the report tables), the
  difference of the means (bf16 - fp32) and the seed spread (pooled std of the two), and
  whether the difference lies within it;
- per tracked statistic: the correlation of the two precisions' per-step values, of their
  100-step means, and the largest relative gap between their 100-step means.
Rerun the same command to resume after an interruption: recorded jobs are skipped, killed
ones resume from their checkpoints, finished tracking runs are read back.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's harness, here and in the job processes
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

import numpy as np  # noqa: E402

#: what each budget runs: the study, or a smoke test of this script
BUDGETS = {
    "study": {"tasks": "BallRun,CarRun", "seeds": "0,1,2", "steps": 30_000,
              "track_steps": 10_000, "profile": "quick", "data_profile": "study"},
    "smoke": {"tasks": "BallRun", "seeds": "0,1", "steps": 20, "track_steps": 30,
              "profile": "smoke", "data_profile": "smoke"},
}
METHODS = ("LSPC", "BC-Safe")
COST_METHOD, COST_THRESHOLD = "COptiDICE", 20.0
PRECISIONS = ("fp32", "bf16")
#: LSPC's per-step statistics followed over the tracking run
TRACKED = ("loss/v", "loss/q", "loss/vc", "loss/qc", "loss/cvae", "loss/encoder",
           "weights/cost_mean", "weights/cost_max", "weights/reward_mean")
METRICS = (("normalized_reward", "reward"), ("normalized_cost", "cost"))


def plan(args, precision: str):
    """The study's jobs in one precision (COptiDICE at COST_THRESHOLD only)."""
    from bench.plan import plan_jobs
    from tasks.registry import get_task

    specs = [get_task(name) for name in args.tasks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    common = dict(steps=args.steps, precision=precision, data_profile=args.data_profile)
    jobs = plan_jobs(specs, list(METHODS), seeds, args.profile, args.results, "local", **common)
    cost = plan_jobs(specs[:1], [COST_METHOD], seeds, args.profile, args.results, "local",
                     **common)
    return jobs + [job for job in cost if job.train_threshold == COST_THRESHOLD]


def run_all(args, jobs) -> list[dict]:
    from bench.plan import save_plan
    from bench.schedule import run_jobs

    save_plan(jobs, args.results)  # `bench status --results RESULTS` follows them
    print(f"{len(jobs)} jobs ({sum(bool(j.missing()) for j in jobs)} to run) in "
          f"{args.results}", flush=True)
    outcomes = run_jobs(jobs, n_jobs=args.jobs, progress=not args.quiet)
    return [o for o in outcomes if o["status"] in ("error", "failed earlier")]


# ---- the side-by-side of the recorded results ------------------------------------------
def seed_means(records, hashes: set[str]) -> dict[tuple, dict[int, tuple[float, float]]]:
    """(task, method, precision) -> {seed: (reward, cost)}, each the mean over thresholds."""
    from bench.records import precision_of

    per: dict[tuple, dict[int, list]] = {}
    for record in records:
        if record.get("config_hash") not in hashes:
            continue
        key = (record["task"], record["method"], precision_of(record))
        per.setdefault(key, {}).setdefault(record["seed"], []).append(
            [record[name] for name, _ in METRICS])
    return {key: {seed: tuple(np.mean(values, axis=0)) for seed, values in seeds.items()}
            for key, seeds in per.items()}


def side_by_side(means) -> list[dict]:
    """One row per (task, method, metric) found in both precisions."""
    rows = []
    for task, method in sorted({(t, m) for t, m, _ in means}):
        both = [means.get((task, method, p)) for p in PRECISIONS]
        if not all(both):
            continue
        for i, (_, metric) in enumerate(METRICS):
            values = [np.array([seeds[s][i] for s in sorted(seeds)]) for seeds in both]
            stds = [v.std(ddof=1) if len(v) > 1 else float("nan") for v in values]
            spread = float(np.sqrt(np.mean(np.square(stds))))  # pooled over the two
            diff = float(values[1].mean() - values[0].mean())
            rows.append({"task": task, "method": method, "metric": metric,
                         "fp32": (values[0].mean(), stds[0]), "bf16": (values[1].mean(), stds[1]),
                         "seeds": min(len(v) for v in values), "difference": diff,
                         "spread": spread,
                         "within": bool(abs(diff) <= spread) if np.isfinite(spread) else None})
    return rows


# ---- the tracking run: the same LSPC steps in both precisions ------------------------------
def tracking_path(args, job, precision: str) -> Path:
    return (Path(args.results) / "precision-tracking"
            / f"{job.task}-LSPC-seed{job.seed}-{args.track_steps}steps-{job.job_hash}-{precision}.csv")


def track(job, steps: int, path: str, threads: int = 1) -> str:
    """`steps` LSPC steps of `job` as the runner starts them (seeded, the job's sampler), every
    step's TRACKED statistics written to `path` (CSV)."""
    import torch

    from bench.run import build_method
    from bench.streams import seed_everything
    from tasks.samplers import make_sampler
    from tasks.datasets import read_dsrl_file
    from tasks.registry import get_task

    torch.set_num_threads(threads)
    spec = get_task(job.task)
    arrays, _ = read_dsrl_file(Path(job.data_path), spec)
    seed_everything(job.seed)
    method = build_method(job, spec)
    sampler = make_sampler(method, method.training_data(arrays), job.config["batch_size"],
                           job.seed, job.options.device)
    rows = []
    for step in range(1, steps + 1):
        stats = method.train_step(sampler.sample())
        rows.append({"step": step, **{key: float(stats[key]) for key in TRACKED}})
    from tasks.files import write_atomic

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    return str(write_atomic(Path(path), write))


def read_tracking(path: Path) -> dict[str, np.ndarray]:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([float(row[key]) for row in rows]) for key in TRACKED}


def window_of(steps: int) -> int:
    return min(100, max(1, steps // 10))


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def tracking_rows(fp32: dict, bf16: dict, steps: int) -> list[dict]:
    """Per statistic: per-step correlation, correlation and largest relative gap of the
    window means (gap relative to the fp32 mean of the window)."""
    window = window_of(steps)
    rows = []
    for key in TRACKED:
        x, y = fp32[key][:steps], bf16[key][:steps]
        n = len(x) // window * window
        xm, ym = (v[:n].reshape(-1, window).mean(1) for v in (x, y))
        gap = np.abs(ym - xm) / np.maximum(np.abs(xm), 1e-12)
        rows.append({"statistic": key, "r_step": correlation(x, y),
                     "r_window": correlation(xm, ym), "max_relative_gap": float(gap.max()),
                     "median_relative_gap": float(np.median(gap)), "window": window})
    return rows


# ---- the page ----------------------------------------------------------------------------
def _pm(value: tuple[float, float]) -> str:
    mean, std = value
    return f"{mean:.3f} ± {std:.3f}" if np.isfinite(std) else f"{mean:.3f}"


def _num(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if np.isfinite(value) else "-"


def render(args, rows: list[dict], tracking: list[dict], command: str, missing: int) -> str:
    lines = ["# fp32 against bf16 (`--precision`)", "", "Made with (BENCH_LOCAL_DATA_DIR "
             f"holding the `{args.data_profile}` collection: `python -m bench collect --tasks "
             f"{args.tasks} --profile {args.data_profile}`; RESULTS a folder of your choice; "
             "rerun to resume, then add `--out docs/precision.md` to write this page):", "",
             "```bash", command, "```", "",
             f"Jobs: LSPC (LSPC-S, LSPC-O) and BC-Safe on {args.tasks.replace(',', ', ')}; "
             f"{COST_METHOD} on {args.tasks.split(',')[0]} at threshold {COST_THRESHOLD:g}; "
             f"seeds {args.seeds}, {args.steps:,} steps, `{args.data_profile}` local data, "
             f"evaluated as the `{args.profile}` profile; both precisions.", ""]
    if missing:
        lines += [f"**{missing} of the jobs have no records yet**: the table holds what is "
                  "recorded so far.", ""]
    lines += ["Normalized reward and cost: mean ± std over seeds (each seed averaged over its "
              "thresholds first); difference = bf16 - fp32; spread = the pooled std over seeds "
              "of the two precisions; within: |difference| <= spread.", "",
              "| task | method | metric | fp32 | bf16 | difference | seed spread | within |",
              "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        within = {True: "yes", False: "**no**", None: "-"}[row["within"]]
        lines.append(f"| {row['task']} | {row['method']} | {row['metric']} | {_pm(row['fp32'])} "
                     f"| {_pm(row['bf16'])} | {row['difference']:+.3f} | {_num(row['spread'])} "
                     f"| {within} |")
    if tracking:
        window = tracking[0]["window"]
        lines += ["", f"LSPC's first {args.track_steps:,} steps ({args.tasks.split(',')[0]}, "
                  f"seed {args.seeds.split(',')[0]}) in both precisions from the same weights, "
                  "batches and random draws: correlation of the per-step values and of "
                  f"{window}-step means, and the gap between the {window}-step means relative "
                  "to fp32's (largest and median).", "",
                  "| statistic | r (per step) | r (window means) | largest relative gap | "
                  "median relative gap |", "|---|---|---|---|---|"]
        for row in tracking:
            lines.append(f"| {row['statistic']} | {_num(row['r_step'], 4)} | "
                         f"{_num(row['r_window'], 4)} | {_num(row['max_relative_gap'])} | "
                         f"{_num(row['median_relative_gap'])} |")
    return "\n".join(lines) + "\n"


def made_with(argv: list[str], args) -> str:
    """The command that trains what the page shows, as a reader would type it: the results
    folder as RESULTS (no path of the machine that ran it), without the options that only
    render (--out, --report-only, --quiet)."""
    words, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--out":
            skip = True
        elif word.startswith("--out=") or word in ("--report-only", "--quiet"):
            pass
        elif word == str(args.results) or Path(word) == args.results:
            words.append("RESULTS")
        else:
            words.append(word)
    return " ".join(["python scripts/precision_equivalence.py", *words])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example:\n  python scripts/precision_equivalence.py "
                                            "results-precision --jobs 2 --out docs/precision.md")
    parser.add_argument("results", help="folder of the records (made if missing)")
    parser.add_argument("--budget", choices=list(BUDGETS), default="study",
                        help="study (the issue's) or smoke (a test of this script)")
    for key in ("tasks", "seeds", "steps", "track_steps", "profile", "data_profile"):
        parser.add_argument("--" + key.replace("_", "-"), type=int if "steps" in key else str,
                            help=f"default: the budget's ({', '.join(f'{b} {v[key]}' for b, v in BUDGETS.items())})")
    parser.add_argument("--jobs", type=int, default=0, help="jobs at once (default: a core each)")
    parser.add_argument("--out", help="also write the page here (e.g. docs/precision.md)")
    parser.add_argument("--report-only", action="store_true",
                        help="render what is recorded; train nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for key, value in BUDGETS[args.budget].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.results = Path(args.results)
    command = made_with(argv if argv is not None else sys.argv[1:], args)

    jobs = {precision: plan(args, precision) for precision in PRECISIONS}
    failed = []
    if not args.report_only:
        for precision in PRECISIONS:
            failed += run_all(args, jobs[precision])
    # the tracking run, both precisions at once where there are cores for it
    first = next(job for job in jobs["fp32"] if job.method == "LSPC")
    targets = {p: (next(j for j in jobs[p] if (j.method, j.task, j.seed) ==
                        (first.method, first.task, first.seed)))
               for p in PRECISIONS}
    paths = {p: tracking_path(args, targets[p], p) for p in PRECISIONS}
    todo = [p for p in PRECISIONS if not paths[p].exists()]
    if todo and not args.report_only:
        from bench.parallel import in_parallel, share_cores

        print(f"tracking {args.track_steps:,} LSPC steps in {', '.join(todo)}", flush=True)
        n_jobs, threads = share_cores(min(args.jobs or 2, len(todo)), len(todo))
        for _ in in_parallel(track, [(targets[p], args.track_steps, str(paths[p]))
                                     for p in todo], n_jobs, threads):
            pass
    tracking = (tracking_rows(*(read_tracking(paths[p]) for p in PRECISIONS), args.track_steps)
                if all(paths[p].exists() for p in PRECISIONS) else [])

    from bench.records import load_records

    hashes = {job.job_hash for p in PRECISIONS for job in jobs[p]}
    missing = sum(bool(job.missing()) for p in PRECISIONS for job in jobs[p])
    page = render(args, side_by_side(seed_means(load_records(args.results), hashes)), tracking,
                  command, missing)
    from tasks.files import write_text_atomic

    write_text_atomic(args.results / "precision-equivalence.md", page)
    if args.out:
        write_text_atomic(Path(args.out), page)
    print(page)
    for outcome in failed:
        print(f"FAILED {outcome['job']}: {outcome.get('error', '?')}", file=sys.stderr)
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
