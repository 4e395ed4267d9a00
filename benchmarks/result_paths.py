"""How benchmark results name a path: never a folder of the machine they were measured on (one definition for every
script in benchmarks/, which put the repository root on sys.path to import it)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shown(path: Path | str, folders: dict[str, Path] | None = None, outside: str = "OUT", keep: int = 1) -> str:
    """`path` as the results record it, naming no folder of this machine: relative to the repository root when
    inside it, else under the label of the first of `folders` ({label: folder}) holding it, else relative to the
    repository root when both share a top folder (../shared/data/banking77), else its last `keep` parts under
    `outside`."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    for label, folder in {"": REPO, **(folders or {})}.items():
        try:
            rel = path.relative_to(os.path.abspath(folder))
        except ValueError:
            continue
        return (Path(label) / rel).as_posix() if label else (rel.as_posix() or ".")
    if len(Path(os.path.commonpath([path, REPO])).parts) > 1:
        return Path(os.path.relpath(path, REPO)).as_posix()
    return Path(outside, *path.parts[-keep:]).as_posix()


def shown_args(argv: list[str], folders: dict[str, Path] | None = None) -> str:
    """A command line's arguments with each absolute path (also in NAME=PATH) as `shown` writes it."""
    out = []
    for arg in argv:
        name, eq, value = arg.rpartition("=")
        if eq and Path(value).is_absolute():  # NAME=PATH: a path outside shows under OUT_NAME
            out.append(f"{name}={shown(value, folders, 'OUT_' + name.lstrip('-').upper(), keep=3)}")
        elif Path(arg).is_absolute():
            out.append(shown(arg, folders))
        else:
            out.append(arg)
    return " ".join(out)
