"""Methods, one file each, behind one interface (algorithms/base.py).

METHODS maps the display name (as the paper's tables print it) to the class. A method that
lives outside this repository joins the same registry, and so the same protocol, scheduler
and reports, in one of two ways:
- an entry point in the group `bench.methods` of an installed package
  (`[project.entry-points."bench.methods"] MyMethod = "my_pkg.module:MyMethod"`);
- `python -m bench run --method-module my_pkg.module:MyMethod ...` for a module on the path.
"""

from __future__ import annotations

import importlib
import re
from importlib import metadata

from algorithms.base import OfflineMethod, build_config, lookup  # noqa: F401
from algorithms.bc import BCAll, BCSafe
from algorithms.bcq_lag import BCQLag
from algorithms.bear_lag import BEARLag
from algorithms.cdt import CDT
from algorithms.coptidice import COptiDICE
from algorithms.cpq import CPQ
from algorithms.fisor import FISOR
from algorithms.fisor_official import OfficialFISOR  # noqa: F401 (FISOR's second implementation)
from algorithms.lspc import LSPC
from algorithms.lspc_code import LSPCCode
from tasks.registry import UnknownNameError

METHODS: dict[str, type[OfflineMethod]] = {
    "BC-All": BCAll,
    "BC-Safe": BCSafe,
    "CDT": CDT,
    "BCQ-Lag": BCQLag,
    "BEAR-Lag": BEARLag,
    "CPQ": CPQ,
    "COptiDICE": COptiDICE,
    "LSPC": LSPC,  # records LSPC-S and LSPC-O
    "LSPC-code": LSPCCode,  # the authors' code's choices; records LSPC-S-code and LSPC-O-code
    "FISOR": FISOR,  # native port; config implementation="official" runs the authors' code
}
#: the methods this repository ships; METHODS grows past them when plugins load
BUILT_IN: tuple[str, ...] = tuple(METHODS)
ENTRY_POINT_GROUP = "bench.methods"
_entry_points_loaded = False
#: what a method's name may hold: it names a folder of records and a column of the tables
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+\-.]{0,63}")


def _taken_names() -> dict[str, type]:
    """Every name a record can carry (a method's, and each of its policies'), case-folded."""
    taken = {}
    for name, cls in METHODS.items():
        for each in (name, *getattr(cls, "policies", ())):
            taken[each.lower()] = cls
    return taken


def check_name(name: str, cls: type, replace: bool = False) -> str:
    """A new method's name, refused when it could misplace records (`..`, a slash, a space) or
    silently take the place of a registered method (unless `replace` says so)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise UnknownNameError(
            f"method name {name!r} is not allowed: use letters, digits and - _ + . (at most 64, "
            "starting with a letter or digit); it names a folder of records")
    holder = _taken_names().get(name.lower())
    if holder is not None and holder is not cls and not replace:
        raise UnknownNameError(
            f"method name {name!r} is already taken by {holder.__module__}.{holder.__name__}; "
            "give your method another name (its class attribute `name`), or replace the "
            f"registered one on purpose with `--replace-method {name}`")
    return name


def register(cls: type, name: str | None = None, replace: bool = False) -> str:
    """Add a method class to the registry (its display name: `name`, cls.name or cls.__name__)."""
    if not (isinstance(cls, type) and issubclass(cls, OfflineMethod)):
        raise UnknownNameError(f"{cls!r} is not an OfflineMethod subclass (algorithms/base.py)")
    name = check_name(name or getattr(cls, "name", None) or cls.__name__, cls, replace)
    for policy in getattr(cls, "policies", ()):
        check_name(policy, cls, replace)
    if replace:  # a case-variant of the replaced name must not linger beside it
        for old in [n for n in METHODS if n.lower() == name.lower()]:
            del METHODS[old]
    METHODS[name] = cls
    return name


def load_method_module(spec: str, replace: bool = False) -> str:
    """Import "package.module:Class" and register the class; returns its name."""
    module_name, _, attr = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as err:  # noqa: BLE001 - whatever a user's module raises, said in one line
        raise UnknownNameError(f"--method-module {spec}: cannot import it "
                               f"({type(err).__name__}: {err}); give package.module:Class of a "
                               "module on the Python path") from None
    return register(cls, replace=replace)


def load_entry_points(warn=None) -> list[str]:
    """Register the methods of installed packages (group `bench.methods`), once. A broken one
    (it raises at import, is not a method, or takes a name already registered) is named and
    skipped, so one bad plugin never disables the harness; returns those messages."""
    global _entry_points_loaded
    problems: list[str] = []
    if _entry_points_loaded:
        return problems
    _entry_points_loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        package = entry.dist.name if getattr(entry, "dist", None) else "?"
        try:
            register(entry.load(), entry.name)
        except Exception as err:  # noqa: BLE001 - a plugin's failure is its own
            problems.append(f"skipped the method entry point {entry.name!r} ({entry.value}) of "
                            f"package {package!r}: {type(err).__name__}: {err}")
    for message in problems:
        (warn or _warn)(message)
    return problems


def _warn(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


def get_method(name: str) -> tuple[str, type[OfflineMethod]]:
    """(registered name, class) for a method name in any case; "LSPC-S" gives LSPC."""
    try:
        return lookup(METHODS, name, "method")
    except UnknownNameError:
        load_entry_points()
        return lookup(METHODS, name, "method")
