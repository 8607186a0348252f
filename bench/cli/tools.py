"""The commands about methods: methods (the registry), speed (a training step timed)."""

from __future__ import annotations

import json
import sys

from bench.cli.args import BF16_SLOWDOWN_LIMIT, STEPS, add_precision, torch_device


def cmd_methods(args) -> int:
    import dataclasses

    from algorithms import METHODS, load_entry_points

    load_entry_points()
    rows = [{"name": name, "records": list(cls.policies) or [name],
             "threshold_agnostic": cls.threshold_agnostic, "wants": cls.wants,
             "steps": dict(cls.profile_steps),
             "config": {f.name: getattr(cls.Config(), f.name)
                        for f in dataclasses.fields(cls.Config)},
             "overridden_tasks": sorted(cls.overrides)} for name, cls in METHODS.items()]
    if args.format == "json":
        print(json.dumps(rows, indent=1, default=str))
    else:
        from tabulate import tabulate

        print(tabulate([(r["name"], ", ".join(r["records"]), r["threshold_agnostic"],
                         " / ".join(f"{k} {v:,}" for k, v in r["steps"].items()))
                        for r in rows],
                       headers=["method", "records", "threshold-agnostic", "training steps"]))
    return 0


def cmd_speed(args) -> int:
    from algorithms import METHODS, get_method
    from bench.speed import measure

    names = (list(METHODS) if args.method == "all"
             else [get_method(m.strip())[0] for m in args.method.split(",") if m.strip()])
    from algorithms.base import ConfigError

    if args.precision == "bf16" and args.device == "cpu":
        from bench.speed import bf16_matmul_slowdown

        slowdown = bf16_matmul_slowdown()
        if slowdown > BF16_SLOWDOWN_LIMIT:  # timed all the same: that is what speed is for
            print(f"note: a bf16 matmul takes {slowdown:.0f}x as long as an fp32 one on this "
                  "processor (no bfloat16 arithmetic): the bf16 steps are slow, and so is "
                  "this command; --steps 2 --rounds 1 for a first look", file=sys.stderr,
                  flush=True)
    results = []
    for name in names:
        try:
            results.append(measure(name, args.task, args.batch, args.steps, args.rounds,
                                   args.device, args.threads, reference=not args.no_reference,
                                   precision=args.precision))
        except ConfigError as err:  # --method all --precision bf16: one that cannot, named
            if len(names) == 1:
                raise
            print(f"{name}: skipped ({err})", file=sys.stderr)
            continue
        # for `bench run --dry-run`: one-thread CPU speeds, or a GPU's (threads aside)
        if args.batch is None and (results[-1]["threads"] == 1 or args.device != "cpu"):
            from bench.estimate import remember_speed

            remember_speed(name, results[-1]["task"], results[-1]["steps_per_s"], args.device,
                           args.precision)
        if not args.json and len(names) == 1:
            for key, value in results[-1].items():
                print(f"{key:32s} {value:.3f}" if isinstance(value, float)
                      else f"{key:32s} {value}")
    if args.json:
        print(json.dumps(results[0] if len(names) == 1 else results, indent=1))
    elif len(names) > 1 and args.precision != "fp32":
        print(speed_precision_table(results))
    elif len(names) > 1:
        from tabulate import tabulate

        def ratio(r):
            key = next((k for k in r if k.startswith("speedup_vs_")), None)
            return f"{r[key]:.2f}x vs {key[len('speedup_vs_'):]}" if key else "-"

        print(tabulate([(r["method"], r["batch_size"], f"{r['steps_per_s']:.2f}",
                         f"{r['gflop_per_step']:.2f}", f"{r['gflop_per_s']:.1f}", ratio(r))
                        for r in results],
                       headers=["method", "batch", "steps/s", "GFLOP/step", "GFLOP/s",
                                "speedup (same run)"]))
    return 0


def speed_precision_table(results: list[dict]) -> str:
    """`bench speed --precision bf16` over several methods: each one's low-precision step,
    its fp32 step and the fp32 reference (LSPC's straightforward step, osrl-lib's where
    installed), steps/s measured in the same run, and the three ratios."""
    from tabulate import tabulate

    def rate(r, key):
        return f"{r[key]:.2f}" if key in r else "-"

    def times(r, key):
        return f"{r[key]:.2f}x" if key in r else "-"

    rows = []
    for r in results:
        ref = next((k[len("speedup_vs_"):] for k in r if k.startswith("speedup_vs_")
                    and k not in ("speedup_vs_fp32", "speedup_vs_eager")), None)
        rows.append((r["method"], r["batch_size"], rate(r, "steps_per_s"),
                     rate(r, "fp32_steps_per_s"),
                     f"{r[ref + '_steps_per_s']:.2f} ({ref})" if ref else "-",
                     times(r, "speedup_vs_fp32"),
                     times(r, f"speedup_vs_{ref}") if ref else "-",
                     times(r, f"fp32_speedup_vs_{ref}") if ref else "-"))
    precision = results[0]["precision"] if results else "bf16"
    return tabulate(rows, headers=["method", "batch", f"{precision} steps/s", "fp32 steps/s",
                                   "fp32 reference steps/s", f"{precision} / fp32",
                                   f"{precision} / reference", "fp32 / reference"])


def add_parsers(add) -> None:
    """Its subcommands, each from `add(name, help)`."""
    p = add("methods", "list the registered methods, their profiles' steps and defaults")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_methods)
    p = add("speed", "time a method's training step (steps/s, GFLOP/s), beside the reference "
                     "implementation of the same step in the same run")
    p.add_argument("--method", default="LSPC",
                   help="a method, a comma-separated list, or 'all' (every registered one)")
    p.add_argument("--task", default="AntRun", help="whose shapes the synthetic data take")
    p.add_argument("--batch", type=STEPS,
                   help="batch size (default: the method's own, the paper's / OSRL's)")
    p.add_argument("--steps", type=STEPS, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=STEPS, default=3, help="interleaved rounds (median taken)")
    p.add_argument("--threads", type=STEPS, help="torch threads (default: torch's)")
    p.add_argument("--device", type=torch_device, default="cpu",
                   help="torch device: cpu, cuda or cuda:N (default cpu)")
    add_precision(p, "time this precision's step; bf16 also times the same method's fp32 "
                     "step and the fp32 reference in the same run (default fp32)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the reference step (LSPC's straightforward one, osrl-lib's for "
                        "the OSRL baselines where osrl-lib is installed)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_speed)
