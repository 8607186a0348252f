"""The commands about tasks and data: tasks, collect, datasets, download."""

from __future__ import annotations

import json
import sys

from bench.cli.args import (
    COLLECT_PROFILE_NAMES,
    UserError,
    add_task_selection,
    selected_tasks,
    whole_number,
)


def cmd_tasks(args) -> int:
    from tasks.registry import TASKS, suite_tasks

    specs = suite_tasks(args.suite) if args.suite else list(TASKS.values())
    if args.format == "json":
        print(json.dumps([spec.as_dict() for spec in specs], indent=1))
    else:
        from tabulate import tabulate

        print(tabulate([(s.name, s.suite, s.env_id, s.max_episode_steps,
                         "/".join(f"{t:g}" for t in s.thresholds), s.reward_min, s.reward_max,
                         s.dataset_file) for s in specs],
                       headers=["task", "suite", "env id", "steps", "thresholds", "r_min",
                                "r_max", "official file"], floatfmt=".2f"))
    return 0


def cmd_collect(args) -> int:
    from tasks.collect import CollectError
    from tasks.collect.kernels import KernelsError, kernels_in_use, portable_environment
    from tasks.datasets import local_path

    if args.kernels == "portable" and kernels_in_use() != "portable":
        import os

        if os.environ.get("BENCH_PORTABLE_CHILD") == "1":  # pinned, yet not in use: say so
            from tasks.collect.cards import machine

            made_on = machine()
            raise UserError("--kernels portable: the pinned kernels did not take in the child "
                            f"process (torch's {made_on['torch_cpu_capability']}, numpy's "
                            f"{' '.join(made_on['numpy_cpu_features'])}, MKL_CBWR="
                            f"{os.environ.get('MKL_CBWR')}); collect with --kernels native")
        # the libraries read their kernel settings when they load: this command again, in a
        # process that loads them under the pinned settings
        import subprocess

        try:
            env = portable_environment() | {"BENCH_PORTABLE_CHILD": "1"}
        except KernelsError as err:
            raise UserError(str(err)) from None
        return subprocess.call([sys.executable, "-m", "bench", *args.argv], env=env)
    specs = selected_tasks(args)
    existing = [local_path(s, args.profile) for s in specs
                if local_path(s, args.profile).exists()]
    if existing and not args.force:
        print("already collected (kept; --force to collect again): "
              + ", ".join(p.name for p in existing))
    todo = [s for s in specs if args.force or not local_path(s, args.profile).exists()]
    try:
        done = _collect(todo, args) if todo else []
    except CollectError as err:
        raise UserError(str(err)) from None
    if done:
        from tasks.composition import datasets_table, describe_dataset

        rows = [describe_dataset(s, local_path(s, args.profile), "local", args.profile)
                for s in specs if s.name in done]
        print("\nbeside the official files (`python -m bench datasets` prints this again):")
        print(datasets_table(rows))
    return 0


def _collect(todo, args) -> list[str]:
    """Collect the tasks; return their names. With one job, task after task with a bar. With
    several, every agent of every task is one job (the largest first), so that all the cores
    work until the last agent ends, whatever the tasks' sizes; each task is then pooled from
    its agents' saved stages (the same file as a serial collection: the agents are
    independent and seeded alone)."""
    import time

    from joblib import Parallel, delayed
    from tqdm import tqdm

    from tasks.collect import agents_of, collect_task, format_summary, train_agent_stages

    n_jobs = args.jobs or 2
    print(f"collecting {', '.join(s.name for s in todo)} ({args.profile} profile, "
          f"{n_jobs} in parallel)", flush=True)
    started = time.perf_counter()
    resumed = {spec.name: [] for spec in todo}
    if n_jobs > 1:
        agents = sorted(((spec, agent, i) for spec in todo
                         for i, agent in enumerate(agents_of(spec, args.profile))),
                        key=lambda unit: unit[2])  # every task's largest agent first
        trained = Parallel(n_jobs=min(n_jobs, len(agents)), return_as="generator_unordered")(
            delayed(train_agent_stages)(spec, args.profile, args.seed, agent, force=args.force)
            for spec, agent, _ in agents)
        with tqdm(total=len(agents), desc="agents trained", unit="agent") as bar:
            for outcome in trained:
                resumed[outcome["task"]] += outcome["resumed"]
                bar.update(1)
    done = []
    for spec in todo:
        summary = collect_task(spec, profile=args.profile, seed=args.seed,
                               progress=(n_jobs == 1), force=args.force,
                               **({"resumed_stages": resumed[spec.name], "started": started}
                                  if n_jobs > 1 else {}))
        print(format_summary(summary), flush=True)
        done.append(summary["task"])
    return done


def cmd_datasets(args) -> int:
    from tasks.composition import datasets_table, describe_dataset, find_datasets
    from tasks.datasets import DatasetError, local_dir, official_dir
    from tasks.registry import TASKS, suite_tasks

    specs = (selected_tasks(args) if args.tasks else
             suite_tasks(args.suite) if args.suite else list(TASKS.values()))
    rows, broken = [], []
    for spec in specs:
        for path, source, profile in find_datasets(spec):
            try:
                rows.append(describe_dataset(spec, path, source, profile))
            except DatasetError as err:
                broken.append(str(err))
    if args.format == "json":
        print(json.dumps(rows, indent=1))
    elif rows:
        print(datasets_table(rows))
    else:
        print(f"no dataset found for {', '.join(s.name for s in specs)} in {official_dir()} "
              f"(official) or {local_dir()} (local); `python -m bench collect` makes local ones")
    for message in broken:
        print(f"unreadable, left out: {message}", file=sys.stderr)
    return 0


def cmd_download(args) -> int:
    from tasks.datasets import download_official

    for spec in selected_tasks(args):
        print(f"{spec.name}: {download_official(spec, args.mirror)}")
    return 0


def add_parsers(add) -> None:
    """Its subcommands, each from `add(name, help)`."""
    p = add("tasks", "list the 28 DSRL tasks and their constants")
    p.add_argument("--suite", help="bullet | safetygym | metadrive | all, or a comma list")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_tasks)
    p = add("collect", "collect DSRL-format datasets from the simulators (PPO-Lagrangian)")
    add_task_selection(p)
    p.set_defaults(profile="quick")
    for action in p._actions:
        if action.dest == "profile":  # collection has its own profiles (study: DSRL-like data)
            action.choices = list(COLLECT_PROFILE_NAMES)
            action.help = ("collection budget: smoke (tests), quick (minutes), study (DSRL-like, "
                           "about an hour of one core a task), paper (cluster)")
    p.add_argument("--seed", type=whole_number(0), default=0)
    p.add_argument("--force", action="store_true", help="collect again over an existing file")
    p.add_argument("--kernels", choices=["native", "portable"], default="native",
                   help="native (default): torch, MKL and numpy pick their kernels for this "
                        "processor, so the file repeats bit for bit on processors of its kind; "
                        "portable: every library pinned to AVX2 kernels (MKL's COMPATIBLE "
                        "branch, OpenBLAS's Haswell ones), in a child process, for the same "
                        "file on other x86-64 processors (tasks/collect/kernels.py)")
    p.set_defaults(func=cmd_collect)
    p = add("datasets", "the datasets on disk beside the official files' numbers")
    p.add_argument("--suite", help="bullet | safetygym | metadrive | all, or a comma list")
    p.add_argument("--tasks", help="comma-separated task names")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_datasets)
    p = add("download", "fetch the official DSRL files (needs network) into DSRL_DATASET_DIR")
    p.add_argument("--suite", help="bullet | safetygym | metadrive")
    p.add_argument("--tasks", help="comma-separated task names")
    p.add_argument("--mirror", help="a URL folder holding the files under their official names")
    p.set_defaults(func=cmd_download)
