"""The command line: thin subcommands over library functions (heavy imports inside each
command, so `--help` stays fast), one module per group of commands."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from bench.cli import data, results, runs, tools
from bench.cli.args import COLLECT_PROFILE_NAMES, EXAMPLES, UserError  # noqa: F401


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line (what is wrong, where to read more) and exit 2, not the whole
    usage block before it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m bench", description="Safe offline RL benchmark harness (LSPC paper).",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def add(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text,
                              epilog=f"example:\n  {EXAMPLES[name]}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    for group in (data, tools, runs, results):
        group.add_parsers(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a command that reruns itself
    from algorithms.base import ConfigError
    from tasks.datasets import DatasetError
    from tasks.envs import EnvUnavailableError
    from tasks.registry import UnknownNameError

    user_errors = (UserError, UnknownNameError, DatasetError, ConfigError, EnvUnavailableError,
                   FileExistsError)
    # `kill` (SIGTERM) stops a command as Ctrl-C does: joblib then ends its worker processes,
    # which would otherwise go on training and writing beside a rerun of the same command
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        return args.func(args)
    except user_errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = ("the collection's finished segments are kept" if args.command == "collect"
                else "finished records are kept")
        print(f"interrupted: {kept}; run the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # piped into `head` and the like: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
