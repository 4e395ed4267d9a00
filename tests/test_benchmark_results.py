"""Published benchmark results and READMEs name no folder of the machine they were made on.

Paths in them are relative to the repository root (edgetune/recipes/smart_home, ../shared/data/banking77) or sit
under a placeholder (OUT/int8-copy/rpi5); an absolute /work/..., /tmp/..., /root/..., /home/... or C:\\... path
tells a reader nothing and leaks the machine's layout.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A machine path: one of the usual roots after a start, whitespace, a quote, a bracket, '=' or ':' (but not after
# a word character or '.', so ../runs/x and ~/.cache stay allowed), or a Windows drive path (C:\ or C:/).
MACHINE_PATH = re.compile(r"(?:^|(?<=[\s\"'`(\[=:,]))/(?:work|tmp|root|home)/|(?<![A-Za-z0-9])[A-Za-z]:[\\/](?![\\/])")


def scanned() -> list[Path]:
    files = [p for p in (REPO / "benchmarks" / "results").rglob("*") if p.is_file()]
    files += [REPO / "README.md", *(REPO / "benchmarks").rglob("README.md")]
    return sorted(p for p in set(files) if p.is_file())


def machine_paths(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:  # a plot: no text to read
        return []
    return [f"{path.relative_to(REPO)}:{number}: {line.strip()[:160]}"
            for number, line in enumerate(text.splitlines(), 1) if MACHINE_PATH.search(line)]


def test_the_pattern_finds_machine_paths_and_spares_relative_ones():
    for line in ('"path": "/tmp/gatework/int8-copy/rpi5"', "--out /work/x", "(/root/.cache/edgetune)",
                 "/home/me/data", "int8=/tmp/qs/model.onnx", r"saved to C:\Users\me", "D:/data/x.csv"):
        assert MACHINE_PATH.search(line), line
    for line in ("--data ../shared/data/banking77", "OUT/int8-copy/rpi5", "~/.cache/edgetune/host-peaks.json",
                 "edgetune/recipes/smart_home", "runs/gate-int8/rpi5", "https://example.org/tmp/x", "ratio 1:2",
                 "12:30 UTC", "a/tmp/b"):
        assert not MACHINE_PATH.search(line), line


def test_results_and_readmes_name_no_machine_paths():
    files = scanned()
    assert any(p.suffix == ".json" for p in files), "no result files found"
    found = [hit for p in files for hit in machine_paths(p)]
    assert not found, "absolute machine paths (write them relative to the repository root, or under OUT/):\n" + \
        "\n".join(found)
