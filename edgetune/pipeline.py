"""The stage table (the one registry of stages), cache keys, and the run loop."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.metadata
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgetune import artifacts, distributed, oserrors, outdir
from edgetune.console import console, log, quiet_libraries
from edgetune.data import dataset_digest, file_digest, load_dataset, split_source
from edgetune.errors import BadInput
from edgetune.models import check_layer_map, check_model_reference, model_fingerprint, offline_config
from edgetune.recipe import Recipe
from edgetune.targets import Target

LIBRARIES = ("torch", "transformers", "peft", "onnx", "onnxruntime")


def _data_files(recipe: Recipe) -> dict[str, str | None]:
    return {"train": recipe.data.train, "validation": recipe.data.validation, "test": recipe.data.test}


def _distill_files(recipe: Recipe) -> dict[str, str | None]:
    return _data_files(recipe) | {"transfer": recipe.distill.transfer}


def _calibration_files(recipe: Recipe) -> dict[str, str | None]:
    # int8-static ranges and int4 gptq Hessians come from the calibration texts.
    return {"calibration": recipe.quantize.calibration if recipe.quantize.reads_calibration else None}


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]  # stages whose folders it reads (and only those); their keys chain into this one's
    sections: tuple[str, ...]  # recipe sections the stage reads
    target_fields: tuple[str, ...]  # slice of the target profile that changes its output
    files: Callable[[Recipe], dict[str, str | None]]  # external files hashed into the key
    version: int  # bump when the stage's code changes its output
    cacheable: bool = True
    summary: str = ""

    def run(self, recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
        module = importlib.import_module(f"edgetune.stages.{self.name}")  # heavy imports stay lazy
        return module.run(recipe, inputs=inputs, out_dir=out_dir, target=target)


STAGES: tuple[Stage, ...] = (
    Stage("teacher", (), ("seed", "data", "teacher"), (), _data_files, 2,
          summary="fine-tune the teacher when it has no head for the labels; cache its logits"),
    Stage("distill", ("teacher",), ("seed", "data", "distill"), (), _distill_files, 3,
          summary="a smaller student trained on the teacher's logits (KD + CE)"),
    Stage("tune", ("distill",), ("seed", "data", "tune"), (), _data_files, 1,
          summary="LoRA on the student (peft), head trained fully"),
    Stage("export", ("distill", "tune"), ("data", "export"), (), _data_files, 2,
          summary="merge LoRA, ONNX export, validate against PyTorch"),
    Stage("quantize", ("export",), ("seed", "data", "quantize"), ("quantization",), _calibration_files, 5,
          summary="graph fusions + int8/int4 quantization with the target's preset"),
    Stage("baseline", ("teacher",), ("data", "export"), (), _data_files, 2,
          summary="the teacher as fp32 ONNX: the reference for speed-ups"),
    Stage("bench", ("teacher", "distill", "export", "quantize", "baseline"), ("data", "bench", "confidence"), ("*",),
          lambda r: {}, 2,
          cacheable=False, summary="latency, size and accuracy on this host; bundle and report"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def stage(name: str) -> Stage:
    return STAGES[STAGE_NAMES.index(name)]


def ancestors(name: str) -> tuple[str, ...]:
    """`name` and every stage it reads from, transitively, in table order: what `edgetune NAME` builds."""
    wanted, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in wanted:
            wanted.add(current)
            todo.extend(stage(current).upstream)
    return tuple(n for n in STAGE_NAMES if n in wanted)


def descendants(name: str) -> tuple[str, ...]:
    """`name` and every stage that reads from it, transitively, in table order: what `--force NAME` rebuilds."""
    found = {name}
    for s in STAGES:  # the table lists a stage after its upstream, so one pass sees every path
        if found.intersection(s.upstream):
            found.add(s.name)
    return tuple(n for n in STAGE_NAMES if n in found)


class StageInputs(dict):
    """The folders of a stage's declared upstream; reading any other is a bug in the stage, named as such."""

    def __init__(self, stage_name: str, folders: dict[str, Path]):
        super().__init__({u: folders[u] for u in stage(stage_name).upstream})
        self.stage_name = stage_name

    def __missing__(self, key: str) -> Path:
        raise KeyError(f"stage {self.stage_name} read the {key} folder, which it does not declare upstream "
                       f"(declared: {', '.join(self) or 'none'}); add {key!r} to its upstream in edgetune/pipeline.py")


def library_versions() -> dict[str, str]:
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = "missing"
    return versions


def target_slice(target: Target, fields: tuple[str, ...]) -> dict:
    full = dataclasses.asdict(target)
    full.pop("description"), full.pop("source")
    return full if fields == ("*",) else {f: full[f] for f in fields}


def fingerprints(recipe: Recipe, target: Target) -> dict[str, dict]:
    """Everything that changes each stage's output, and its sha256. Cheap: no torch import."""
    model = model_fingerprint(recipe.teacher.model, recipe.teacher.revision)
    libs = library_versions()
    keys: dict[str, str] = {}
    result = {}
    for s in STAGES:
        material = {
            "stage": s.name,
            "version": s.version,
            "config": {name: recipe.section(name) for name in s.sections},
            "target": target_slice(target, s.target_fields),
            "upstream": {u: keys[u] for u in s.upstream},
            "files": {k: file_digest(v) for k, v in s.files(recipe).items()},
            "dataset": dataset_digest(recipe.data) if "data" in s.sections else None,
            "model": model if s.name == "teacher" else None,
            "libraries": libs,
        }
        keys[s.name] = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
        result[s.name] = {"key": keys[s.name], "material": material}
    return result


def cache_dir(out_root: Path, name: str, key: str) -> Path:
    return out_root / "cache" / f"{name}-{key[:16]}"


def preflight(recipe: Recipe, target: Target) -> None:
    """Check every input a build reads before any stage starts, so bad input costs no training time."""
    from edgetune import confidence  # numpy: not for `edgetune --help`

    data = load_dataset(recipe.data, recipe.seed)
    for hint in confidence.check(recipe, data):
        log(hint, style="yellow")
    if target.batch_size > len(data.test.texts):
        raise BadInput(f"{target.source}: batch_size {target.batch_size} is larger than the test split "
                       f"({len(data.test.texts)} texts in {split_source(recipe.data, 'test')}); lower batch_size "
                       "or add test data")
    check_model_reference(recipe.teacher.model, "teacher.model")
    config = offline_config(recipe.teacher.model)
    if config and "num_hidden_layers" in config:
        if recipe.distill.student is None:
            check_layer_map(recipe.distill.layers, config["num_hidden_layers"], recipe.source)
        if recipe.distill.hidden_weight > 0 and recipe.distill.hidden_layer_map:
            check_layer_map(recipe.distill.hidden_layer_map, config["num_hidden_layers"], recipe.source)
    if recipe.distill.student:
        check_model_reference(recipe.distill.student, "distill.student")
        student = offline_config(recipe.distill.student)
        widths = (student or {}).get("hidden_size"), (config or {}).get("hidden_size")
        if recipe.distill.hidden_weight > 0 and None not in widths and widths[0] != widths[1] \
                and not recipe.distill.hidden_projection:
            raise BadInput(f"{recipe.source}: student hidden size {widths[0]} differs from the teacher's {widths[1]}; "
                           "set distill.hidden_projection: true to learn a linear map, or distill.hidden_weight: 0")
    if recipe.distill.transfer:
        from edgetune.data import read_calibration_texts

        read_calibration_texts(Path(recipe.distill.transfer))
    if recipe.quantize.reads_calibration and recipe.quantize.calibration:
        from edgetune.data import read_calibration_texts

        read_calibration_texts(Path(recipe.quantize.calibration))
    if recipe.export.prune_vocab:
        from edgetune.vocab import check_prunable

        check_prunable(recipe.distill.student or recipe.teacher.model, f"{recipe.source}: export.prune_vocab")


@dataclass
class Outcome:
    stage: str
    status: str  # built | cached | measured | up to date
    seconds: float
    folder: Path
    metrics: dict


def run(
    recipe: Recipe,
    target: Target,
    out_root: Path,
    *,
    until: str = "bench",
    force: str | None = None,
    measure: bool = False,
    wait: bool = True,
) -> list[Outcome]:
    """Run `until` and the stages it reads from (its ancestors), each handed only its declared upstream folders.
    Cached stages are reused, except `force` and its descendants.

    `measure`: bench even when the bundle and its report are current (the `bench` command sets it).
    `wait`: when another build holds `out_root`, wait for it (else BadInput, exit 2).
    """
    if until not in STAGE_NAMES:
        raise BadInput(f"unknown stage '{until}'; stages: {', '.join(STAGE_NAMES)}")
    if force is not None and force not in STAGE_NAMES:
        raise BadInput(f"--force {force}: unknown stage; stages: {', '.join(STAGE_NAMES)}")
    if force is not None and force not in ancestors(until):
        raise BadInput(f"--force {force}: `edgetune {until}` does not run {force} (it runs "
                       f"{', '.join(ancestors(until))}); force one of those, or run `edgetune build --force {force}`")
    distributed.quiet_unless_main()
    preflight(recipe, target)
    out_root = Path(out_root)
    prints = fingerprints(recipe, target)
    forced = set(descendants(force)) if force else set()
    folders: dict[str, Path] = {}
    outcomes = []
    # One build per --out at a time; under accelerate launch the main process holds the lock for all of them.
    lock = outdir.locked(out_root, wait=wait) if distributed.is_main() else contextlib.nullcontext()
    with lock:
        if distributed.is_main():
            artifacts.remove_stale_staging(out_root)
        # Decided before anything is built: under accelerate launch, every process then builds the same stages.
        plan = {name: _reuse(stage(name), prints[name]["key"], out_root, target, forced=name in forced,
                             measure=measure) for name in ancestors(until)}
        distributed.wait_for_everyone()
        for s in (stage(name) for name in ancestors(until)):
            outcome = plan[s.name]
            if outcome is None and distributed.runs_stage(s.name):
                outcome = _build(s, recipe, target, out_root, prints[s.name], StageInputs(s.name, folders))
            if plan[s.name] is None and distributed.processes() > 1:
                distributed.wait_for_everyone()  # the main process has published the stage
                folder = cache_dir(out_root, s.name, prints[s.name]["key"]) if s.cacheable else out_root / target.name
                outcome = outcome or Outcome(s.name, "built", 0.0, folder, {})
            folders[s.name] = outcome.folder
            outcomes.append(outcome)
    return outcomes


def _reuse(s: Stage, key: str, out_root: Path, target: Target, *, forced: bool, measure: bool) -> Outcome | None:
    """The cached entry (or the current report, for bench) when it may be reused; None when the stage must run."""
    if forced:
        return None
    if s.cacheable:
        folder = cache_dir(out_root, s.name, key)
        manifest = artifacts.read_manifest(folder)
        if manifest and _intact(s.name, folder, manifest, "cache entry"):
            return Outcome(s.name, "cached", 0.0, folder, manifest.get("metrics", {}))
        return None
    folder = out_root / target.name
    report = artifacts.read_manifest(folder / "bundle")
    if report and report.get("key") == key and not measure and _intact(s.name, folder / "bundle", report, "bundle"):
        return Outcome(s.name, "up to date", 0.0, folder, report.get("metrics", {}))
    return None


def _intact(name: str, folder: Path, manifest: dict, what: str) -> bool:
    """A folder is reused only when its files are the ones its manifest records; a damaged one is rebuilt."""
    damage = artifacts.damage(folder, manifest)
    if damage:
        log(f"{name}: {what} {folder} is damaged ({damage}): rebuilding it", "yellow")
    return damage is None


def _build(s: Stage, recipe: Recipe, target: Target, out_root: Path, fingerprint: dict,
           inputs: StageInputs) -> Outcome:
    folder = cache_dir(out_root, s.name, fingerprint["key"]) if s.cacheable else out_root / target.name
    console.rule(f"[bold]{s.name}[/bold]: {s.summary}")
    quiet_libraries()
    started = time.perf_counter()
    with oserrors.writing(s.name, folder), artifacts.staging(folder) as tmp:
        metrics = s.run(recipe, inputs=inputs, out_dir=tmp, target=target)
        seconds = time.perf_counter() - started
        manifest = {
            "stage": s.name,
            "key": fingerprint["key"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(seconds, 2),
            "metrics": metrics,
            "recipe": recipe.source,
            "material": fingerprint["material"],
        }
        manifest_dir = tmp / "bundle" if not s.cacheable else tmp
        artifacts.write_manifest(manifest_dir, manifest)  # last: marks the entry complete
        if distributed.is_main():
            artifacts.publish(tmp, folder)
    return Outcome(s.name, "measured" if not s.cacheable else "built", seconds, folder, metrics)
