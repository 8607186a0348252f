"""Methods, one file each, behind one interface (algorithms/base.py).

METHODS maps the display name (as the paper's tables print it) to the class.
"""

from algorithms.base import OfflineMethod, build_config, lookup  # noqa: F401
from algorithms.bc import BCAll, BCSafe
from algorithms.lspc import LSPC

METHODS: dict[str, type[OfflineMethod]] = {
    "BC-All": BCAll,
    "BC-Safe": BCSafe,
    "LSPC": LSPC,  # records LSPC-S and LSPC-O
}


def get_method(name: str) -> tuple[str, type[OfflineMethod]]:
    """(registered name, class) for a method name in any case; "LSPC-S" gives LSPC."""
    return lookup(METHODS, name, "method")
