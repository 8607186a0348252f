"""What the commands share: argument types that check values when parsed, the selections of
tasks and methods, and UserError (one line, exit 2)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.profiles import PROFILES

EXAMPLES = {
    "tasks": "python -m bench tasks --suite bullet --format json",
    "methods": "python -m bench methods --format json",
    "collect": "python -m bench collect --suite bullet --profile quick",
    "datasets": "python -m bench datasets --suite bullet [--format json]",
    "download": "python -m bench download --suite bullet [--mirror URL]",
    "run": "python -m bench run --suite bullet --methods BC-All,BC-Safe --profile quick",
    "report": "python -m bench report --format latex --layout summary",
    "plot": "python -m bench plot --kind curves --task CarRun",
    "status": "python -m bench status --results results",
    "claims": "python -m bench claims --results results [--format markdown|json]",
    "latent": "python -m bench latent --task DroneRun --method LSPC --results results --plot latent",
    "transfer": "python -m bench transfer --from easysparse --profile quick",
    "speed": "python -m bench speed --method all --precision bf16 --steps 10 --rounds 3",
}

#: tasks.collect.COLLECT_PROFILES' names, spelled out so that `--help` needs no numpy (a test
#: holds the two equal)
COLLECT_PROFILE_NAMES = ("smoke", "quick", "study", "paper")


class UserError(Exception):
    """Bad input: printed as one line, no traceback, exit status 2."""


def csv_items(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in csv_items(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes integers like 0,1,2, not {text!r}") from None
    if not seeds or any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(
            f"takes distinct integers >= 0 like 0,1,2, not {text!r}")
    return seeds


def results_folder(text: str) -> str:
    """--results: a folder (made when first written), never an existing file."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder for the records")
    return text


def writable(folder: Path) -> bool:
    """Whether records can be written under `folder` (made here if missing)."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def selected_methods(text: str | None, registered) -> list[str]:
    """--methods as a list: every registered method when not given; an empty one is an error."""
    if text is None:
        return list(registered)
    methods = csv_items(text)
    if not methods:
        raise UserError("--methods is empty: name at least one (`python -m bench methods` "
                        "lists them), or leave the flag out to run every method")
    return methods


def module_name(spec: str) -> str:
    """The display name a --method-module class registers under (its `name`, else its class
    name), without registering it."""
    import importlib

    module_name, _, attr = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception:  # noqa: BLE001 - load_method_module reports it
        return ""
    return str(getattr(cls, "name", None) or attr).lower()


def whole_number(least: int, meaning: str = ""):
    """An argparse type: a whole number of at least `least` (`meaning` says what 0 does)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a whole number, not {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(
                f"takes a whole number >= {least}{meaning}, not {value}")
        return value

    parse.__name__ = "whole number"
    return parse


STEPS = whole_number(1)
COUNT = whole_number(0, " (0: the default)")
EVERY = whole_number(0, " (0: never)")


def torch_device(text: str) -> str:
    """A torch device this machine has: checked when the command is parsed, so that a bad
    --device is one line here rather than a traceback in every job."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown torch device {text!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text}: this PyTorch ({torch.__version__}) sees no CUDA GPU; install a CUDA "
                "build of torch on a GPU machine, or leave --device out to train on the CPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: the harness trains on cpu, cuda or cuda:N")
    return "cpu" if device.type == "cpu" else text  # "cpu:0" is the CPU too


def name_damaged(frame) -> None:
    """The damaged records a reader left out of `frame`, named on stderr (never averaged in)."""
    from bench.records import damaged_note

    if frame.attrs.get("damaged"):
        print(damaged_note(frame.attrs["damaged"]), file=sys.stderr)


def selected_tasks(args) -> list:
    from tasks.registry import get_task, suite_tasks

    if args.tasks:
        return [get_task(name) for name in csv_items(args.tasks)]
    if args.suite:
        return suite_tasks(args.suite)
    raise UserError("say which tasks: --suite bullet or --tasks BallRun,CarRun")


def planned_workers(args) -> int:
    """Jobs at once that a dry run plans for: --jobs, else one per core."""
    return args.jobs or (os.cpu_count() or 1)


def add_precision(p, help_text: str = "") -> None:
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help=help_text or (
        "fp32 (default), or bf16: each method's hidden layers in bfloat16 (a GPU's tensor "
        "cores), heads, targets, losses, weights and optimizers in fp32 (docs/performance.md, "
        "Precision); a bf16 job is a job of its own, with records of its own"))


#: how many times slower than fp32 a bf16 matmul may run before training in bf16 is refused:
#: processors with bfloat16 arithmetic run it faster than fp32, AVX-512 ones about as fast,
#: AVX2-only ones 40 to 100 times slower (bench.speed.bf16_matmul_slowdown)
BF16_SLOWDOWN_LIMIT = 4.0


def refuse_emulated_bf16(precision: str, device: str) -> None:
    """A UserError when `precision` is bf16 on a CPU that has no bfloat16 arithmetic: there
    torch runs bf16 matmuls in a scalar loop, and a training run that takes an hour in fp32
    takes a day or more. Measured (two small matmuls, well under a second) rather than read off
    the processor's flags, so that it holds for processors this list never named.
    BENCH_ALLOW_SLOW_BF16=1 trains anyway (a test of the bf16 path on such a machine)."""
    if precision != "bf16" or str(device).startswith("cuda") or \
            os.environ.get("BENCH_ALLOW_SLOW_BF16") == "1":
        return
    from bench.speed import bf16_matmul_slowdown
    from tasks.collect.cards import machine

    slowdown = bf16_matmul_slowdown()
    if slowdown > BF16_SLOWDOWN_LIMIT:
        raise UserError(
            f"--precision bf16: this processor ({machine()['cpu']}) has no bfloat16 "
            f"arithmetic: a bf16 matmul took {slowdown:.0f}x as long as an fp32 one here; train "
            "with --precision fp32, or in bf16 on a processor with AMX or AVX512-BF16 "
            "(BENCH_ALLOW_SLOW_BF16=1 trains in bf16 here anyway)")


def add_task_selection(p):
    p.add_argument("--suite", help="bullet | safetygym | metadrive | all, or a comma list")
    p.add_argument("--tasks", help="comma-separated task names (any case, paper short forms)")
    p.add_argument("--profile", choices=list(PROFILES), default="quick",
                   help="budget: smoke (tests), quick (laptop), study (hours: converging curves), paper (cluster)")
    p.add_argument("--jobs", type=COUNT, default=0,
                   help="jobs at once (default: one per core, or one per Dask worker)")
