"""Plain helpers shared by the tests: recipes for the tiny teacher, CLI calls, cache inspection."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

import edgetune
from edgetune.cli import main
from edgetune.pipeline import STAGE_NAMES, STAGES, ancestors

PACKAGE = Path(edgetune.__file__).resolve().parent
REPO = PACKAGE.parent
SMART_HOME = PACKAGE / "recipes" / "smart_home"
CALIBRATION = REPO / "calibration" / "smart_home.csv"
BUILTIN_TARGETS = sorted(p.stem for p in (REPO / "targets").glob("*.yaml"))
CACHED_STAGES = tuple(s.name for s in STAGES if s.cacheable)  # every stage but bench, in table order

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# --- recipes ---------------------------------------------------------------------------------------------

def tiny_recipe(teacher: Path, overrides: dict | None = None) -> dict:
    """A recipe that trains the tiny teacher in seconds on the real smart-home CSVs."""
    # The tiny model's word embeddings are random, not pretrained: they must train (the default freezes them).
    training = {"learning_rate": 1.0e-3, "batch_size": 32, "freeze_word_embeddings": False}
    recipe = {
        "seed": 0,
        "data": {
            "train": str(SMART_HOME / "train.csv"),
            "validation": str(SMART_HOME / "validation.csv"),
            "test": str(SMART_HOME / "test.csv"),
            "max_length": 32,
        },
        "teacher": {"model": str(teacher), "epochs": 3, **training},
        "distill": {"layers": [0, 2], "temperature": 4.0, "alpha": 0.7, "epochs": 3, **training},
        "tune": {"r": 8, "lora_alpha": 16, "target_modules": ["query", "value"], "epochs": 2, **training},
        "export": {"opset": 17, "atol": 1.0e-4},
        "quantize": {"method": "int8-dynamic", "optimize": True},
        "bench": {"max_seconds": 1, "min_runs": 50, "warmup_runs": 5, "max_runs": 300},
    }
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = recipe
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return recipe


def write_recipe(path: Path, teacher: Path, overrides: dict | None = None) -> Path:
    """Write tiny_recipe(teacher, overrides) as YAML to `path` and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tiny_recipe(teacher, overrides), sort_keys=False))
    return path


def write_csv(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- the command line ------------------------------------------------------------------------------------

def invoke(*args: str) -> Result:
    """Run `edgetune ARGS` in this process; unexpected exceptions propagate (a traceback is a failure)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def build(recipe: Path, out: Path, *extra: str, target: str = "rpi5", command: str = "build") -> Result:
    return invoke(command, "--target", target, "--recipe", recipe, "--out", out, *extra)


def plain(text: str) -> str:
    """Output without colour codes and with every run of whitespace (rich wraps long lines) made one space."""
    return " ".join(ANSI.sub("", text).split())


def squashed(text: str) -> str:
    """Output without colour codes or any whitespace: robust against rich folding long paths mid-word."""
    return "".join(ANSI.sub("", text).split())


def assert_mentions(output: str, *needles: str | Path) -> None:
    flat = squashed(output)
    for needle in needles:
        assert squashed(str(needle)) in flat, f"{needle!r} not in the output:\n{output}"


def stage_statuses(output: str) -> dict[str, str]:
    """{stage: status} from the summary table a build prints (built, cached, measured, up to date)."""
    statuses = {}
    for line in ANSI.sub("", output).splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line)]
        if len(cells) > 3 and cells[1] in STAGE_NAMES:
            statuses[cells[1]] = cells[2]
    return statuses


def status_predictions(output: str) -> dict[str, str]:
    """{stage: 'cached' | 'to build'} from `edgetune status --target ...`."""
    stages = "|".join(CACHED_STAGES)
    return dict(re.findall(rf"^\s*({stages})\s+(cached|to build)\s*$", ANSI.sub("", output), re.M))


def expected(built: tuple[str, ...] = (), *, bench: str = "measured", until: str = "bench") -> dict[str, str]:
    """The summary a build prints when exactly `built` are (re)built and the rest come from the cache."""
    names = ancestors(until)
    return {s: ("built" if s in built else "cached") if s != "bench" else bench for s in names}


def predicted(to_build: tuple[str, ...] = ()) -> dict[str, str]:
    """What `edgetune status --target` says when exactly `to_build` are missing from the cache."""
    return {s: "to build" if s in to_build else "cached" for s in CACHED_STAGES}


# --- the cache -------------------------------------------------------------------------------------------

def cache_entries(out: Path) -> set[str]:
    """Names of complete cache entries (folders with a manifest.json) under out/cache."""
    cache = out / "cache"
    if not cache.is_dir():
        return set()
    return {p.name for p in cache.iterdir() if p.is_dir() and (p / "manifest.json").is_file()}


def cache_folders(out: Path) -> set[str]:
    """Every folder under out/cache, complete or not (staging folders included)."""
    cache = out / "cache"
    return {p.name for p in cache.iterdir()} if cache.is_dir() else set()


def entries_of(names: set[str], stage: str) -> set[str]:
    return {n for n in names if n.startswith(f"{stage}-")}


def staging_leftovers(out: Path) -> list[Path]:
    return sorted(out.rglob(".tmp-*")) if out.exists() else []


def manifest_identities(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every manifest.json under out: a rebuilt entry gets a new file, a reused one keeps it."""
    manifests = sorted(out.rglob("manifest.json"))
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in manifests}


# --- report.json -----------------------------------------------------------------------------------------

def report_dict(*, target: str = "rpi5", accuracy: float = 0.9, latency: dict | None = None, host: dict | None = None,
                test_examples: int = 48, test_set_sha256: str | None = None) -> dict:
    """A complete report.json object (edgetune.report_json.Report) with the given numbers; the rest plausible."""
    from edgetune.report_json import SCHEMA_VERSION

    scores = {"accuracy": accuracy, "macro_f1": accuracy - 0.01}
    lat = {"p50": 0.5, "p95": 1.0, "p99": 1.2, "p95_ci": [0.97, 1.03], "p50_ci": [0.49, 0.51], "mean": 0.55,
           "runs": 500, "stopped_because": "test", "batch_size": 1,
           "sequence_length": {"min": 3, "median": 5.0, "max": 8}} | (latency or {})
    row = scores | {"p50": lat["p50"], "p95": lat["p95"], "p95_ci": lat["p95_ci"], "size_bytes": 1000}
    report = {
        "schema_version": SCHEMA_VERSION, "target": target, "measured_on_target": False, "note": "test report",
        "host": {"cpu": "test CPU", "arch": "x86_64", "flags": [], "cores": 1, "threads": 1, "onnxruntime": "1",
                 "execution_provider": "CPUExecutionProvider", "python": "3", "os": "Linux"} | (host or {}),
        "quantization": "int8-dynamic", "latency_ms": lat, "throughput_per_s": 1000.0, "cold_start_ms": 10.0,
        "peak_rss_mb": 50.0, **scores, "per_class_f1": {"a": 1.0}, "agreement_with_fp32": 1.0, "size_bytes": 1000,
        "bundle_bytes": 2000, "student_fp32": scores | {"size_bytes": 4000, "per_class_f1": {"a": 1.0}},
        "teacher": scores | {"layers": 6, "parameters": 100, "per_class_f1": {"a": 1.0}}, "student": {"layers": 2},
        "comparison": {"teacher_fp32": row, "student_fp32": row, "shipped": row},
        "speedup_vs_teacher_p95": {"ratio": 2.0, "ci": [1.9, 2.1]}, "test_examples": test_examples,
        "budgets": {"p95_ms": {"limit": 25.0, "value": 1.0, "ok": True, "evidence": "measured on the target"}},
    }
    if test_set_sha256:
        report["test_set_sha256"] = test_set_sha256
    return report
