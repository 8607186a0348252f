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
from importlib import metadata

from algorithms.base import OfflineMethod, build_config, lookup  # noqa: F401
from algorithms.bc import BCAll, BCSafe
from algorithms.bcq_lag import BCQLag
from algorithms.bear_lag import BEARLag
from algorithms.cdt import CDT
from algorithms.coptidice import COptiDICE
from algorithms.cpq import CPQ
from algorithms.fisor import FISOR
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
ENTRY_POINT_GROUP = "bench.methods"
_entry_points_loaded = False


def register(cls: type, name: str | None = None) -> str:
    """Add a method class to the registry (its display name: `name`, cls.name or cls.__name__)."""
    if not (isinstance(cls, type) and issubclass(cls, OfflineMethod)):
        raise UnknownNameError(f"{cls!r} is not an OfflineMethod subclass (algorithms/base.py)")
    name = name or getattr(cls, "name", None) or cls.__name__
    METHODS[name] = cls
    return name


def load_method_module(spec: str) -> str:
    """Import "package.module:Class" and register the class; returns its name."""
    module_name, _, attr = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise UnknownNameError(f"--method-module {spec}: cannot import it ({err}); give "
                               "package.module:Class of a module on the Python path") from None
    return register(cls)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            register(entry.load(), entry.name)


def get_method(name: str) -> tuple[str, type[OfflineMethod]]:
    """(registered name, class) for a method name in any case; "LSPC-S" gives LSPC."""
    try:
        return lookup(METHODS, name, "method")
    except UnknownNameError:
        _load_entry_points()
        return lookup(METHODS, name, "method")
