"""Make the installed safety-gymnasium importable on Python 3.11:
`python -m tasks.patch_safety_gymnasium`.

safety-gymnasium 0.4.0 (the version dsrl pins) declares dataclass fields such as
`color: np.array = COLOR['vase']` in its asset modules. Since Python 3.11 a dataclass refuses
any unhashable default ("mutable default <class 'numpy.ndarray'> for field color is not allowed:
use default_factory"), so `safety_gymnasium.make(...)` fails on the first asset it builds. This
step rewrites each such field, in the installed package files, to
`field(default_factory=lambda: COLOR['vase'].copy())`: the same value, a fresh copy per instance.

Idempotent (a patched file is left alone), touches nothing else, and does not import the package
(it locates it with importlib). scripts/setup.sh and tox run it after the --no-deps install;
`--check` only reports, with exit status 1 while something is left to patch.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import stat
import sys
from pathlib import Path

from tasks.files import write_atomic

PACKAGE = "safety_gymnasium"

# an annotated class-body field whose default is one of the COLOR arrays (assets/color.py)
_FIELD = re.compile(
    r"^(?P<head>[ \t]+\w+[ \t]*:[ \t]*[\w.]+[ \t]*=[ \t]*)"
    r"(?P<value>COLOR\[[^\]\n]+\])"
    r"(?P<tail>[ \t]*(?:#[^\n]*)?)$",
    re.MULTILINE)
_IMPORT = re.compile(r"^from dataclasses import (?P<names>[^\n]+)$", re.MULTILINE)


def patch_source(text: str) -> tuple[str, int]:
    """The module text with every numpy-array field default made a default_factory, and the
    number of fields changed (0: nothing to do)."""
    text, count = _FIELD.subn(
        lambda m: f"{m['head']}field(default_factory=lambda: {m['value']}.copy()){m['tail']}",
        text)
    if count:
        match = _IMPORT.search(text)
        if match is None:
            raise ValueError("a dataclass module without `from dataclasses import ...`")
        names = [name.strip() for name in match["names"].split(",")]
        if "field" not in names:
            names.append("field")
            text = text[:match.start()] + f"from dataclasses import {', '.join(names)}" + \
                text[match.end():]
    return text, count


def package_dir() -> Path | None:
    """Where safety-gymnasium is installed (found without importing it), or None."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def patch_installed(root: Path | None = None, check: bool = False) -> dict[str, int]:
    """Patch (or, with check, only count) the fields left in the package; {file: fields}."""
    root = root if root is not None else package_dir()
    if root is None:
        raise FileNotFoundError(f"{PACKAGE} is not installed in this environment ({sys.prefix})")
    changed = {}
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        new, count = patch_source(text)
        if not count:
            continue
        changed[str(path.relative_to(root))] = count
        if not check:
            _write_atomically(path, new)
    return changed


def _write_atomically(path: Path, text: str) -> None:
    # a new size and mtime: the stale .pyc is recompiled; the module keeps its own mode
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"),
                 mode=stat.S_IMODE(path.stat().st_mode))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.patch_safety_gymnasium",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only report; exit 1 while fields are left to patch")
    args = parser.parse_args(argv)
    if package_dir() is None:  # an install without the safetygym extra: nothing to patch
        print("safety-gymnasium is not installed: nothing to patch")
        return 0
    changed = patch_installed(check=args.check)
    fields = sum(changed.values())
    if args.check:
        print(f"safety-gymnasium: {fields} dataclass fields with a numpy default left"
              + (f" in {len(changed)} files (run python -m tasks.patch_safety_gymnasium)"
                 if fields else ""))
        return 1 if fields else 0
    print(f"safety-gymnasium: {fields} dataclass fields in {len(changed)} files now use "
          "default_factory" if fields else "safety-gymnasium: already importable (nothing to do)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
