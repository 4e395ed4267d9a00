"""Distillation: what a strong teacher and patient KD buy over plain fine-tuning of the same small student.

    python benchmarks/distillation/run.py --data ../shared/data/banking77 --out runs/distillation
    python benchmarks/distillation/run.py --data ../shared/data/snips --out runs/distillation

Per dataset, through edgetune's own stages (one --out cache, so each teacher trains once and its logits are shared):
- teachers: all-MiniLM-L6-v2 fine-tuned as the default recipe does it, all-mpnet-base-v2 as the accuracy recipe does;
- students cut from pretrained all-MiniLM-L6-v2 (2 layers [0, 5] and 3 layers [0, 2, 5]), one seed each of --seeds:
  hard labels only (distill.alpha 0, no extra text), KD from the MiniLM teacher, KD from the MPNet teacher. A KD
  student is taught on the training texts plus `augment` perturbed copies of each that the teacher labels exactly
  as the student sees them ("patient and consistent", Beyer et al. 2022), under the same step budget;
- `--length32`: the hard-label 3-layer student at the old fixed data.max_length 32, against auto.
Every KD row is compared with its hard-label row text by text: per test text, correctness averaged over the seeds,
then a bootstrap over texts of the mean difference (edgetune.metrics.paired_difference).

Writes benchmarks/results/distillation.{md,json,png}; each (dataset, --max-steps) is one section of the same files,
and a run adds its rows to its section (replacing rows of the same depth and condition, keeping the others). The JSON
keeps each row's per-text correctness (seeds right, per test text), so a row added later is still compared text by
text with a hard-label row trained earlier.

Rows can train in parallel, one process per core: edgetune builds one stage at a time per --out, so give each process
its own --out and one --views folder (a dataset without test.csv is read through a view there, and its path is part
of every cache key), then report all rows from one --out: `--merge-cache OUT2 OUT3 --cached-only`.
`--depths 6` adds the whole all-MiniLM-L6-v2 as a student; its hard-label reference is the MiniLM-L6 teacher.
A folder without test.csv (SNIPS) is tested on its validation.csv, and validation is carved from train.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from edgetune import pipeline, schema
from edgetune.metrics import classification_scores, paired_difference
from edgetune.recipe import DEFAULT_RECIPE, load_recipe
from edgetune.targets import load_target

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
STUDENT = "sentence-transformers/all-MiniLM-L6-v2"
DEPTHS = {2: [0, 5], 3: [0, 2, 5], 6: None}  # layers of all-MiniLM-L6-v2 kept; None: all six
# The MiniLM teacher is trained exactly as the default recipe trains it (its whole teacher section).
SETTINGS = ("seeds", "max_steps", "epochs", "augment", "temperature", "alpha")  # what a section's heading states
MINILM_TEACHER = tuple(f"teacher.{k}={json.dumps(v)}" for k, v in schema.read_yaml(DEFAULT_RECIPE)["teacher"].items())


def data_view(data: Path, views: Path) -> Path:
    """The folder itself, or (no test.csv) a view in `views` whose test split is the validation file."""
    if (data / "test.csv").exists():
        return data.resolve()
    view = views / f"data-{data.name}"
    view.mkdir(parents=True, exist_ok=True)
    for name, source in (("train.csv", "train.csv"), ("test.csv", "validation.csv")):
        if not (view / name).exists():
            (view / name).symlink_to((data / source).resolve())
    return view


def run_stage(until: str, data: Path, out: Path, overrides: tuple[str, ...]) -> tuple[Path, dict, float]:
    recipe = load_recipe("accuracy", data_dir=data, overrides=overrides)
    started = time.perf_counter()
    outcome = pipeline.run(recipe, load_target("x86-avx2"), out, until=until)[-1]
    return outcome.folder, outcome.metrics, time.perf_counter() - started


def cached(stage: str, data: Path, out: Path, overrides: tuple[str, ...]) -> bool:
    recipe = load_recipe("accuracy", data_dir=data, overrides=overrides)
    key = pipeline.fingerprints(recipe, load_target("x86-avx2"))[stage]["key"]
    return (pipeline.cache_dir(out, stage, key) / "manifest.json").is_file()


def scores(folder: Path, truth: np.ndarray, n: int) -> tuple[np.ndarray, dict]:
    predicted = np.load(folder / "test_logits.npy").argmax(-1)
    return (predicted == truth).astype(float), classification_scores(truth, predicted, n)


def conditions(args) -> list[tuple[str, int, tuple[str, ...]]]:
    """(name, depth, recipe overrides) of every student row, in the order they train: each depth's hard-label and
    KD rows first, the max_length row last, so a cut-short run still answers the main comparison."""
    kd = (f"distill.alpha={args.alpha}", f"distill.temperature={args.temperature}", f"distill.augment={args.augment}")
    hard = ("distill.alpha=0", "distill.augment=0")
    rows, extra = [], []
    for depth in args.depths:
        student = (f"distill.student={STUDENT}", f"distill.student_layers={json.dumps(DEPTHS[depth])}",
                   f"distill.max_steps={args.max_steps}", f"distill.epochs={args.epochs}")
        rows += [("hard labels", depth, student + hard + MINILM_TEACHER),
                 ("KD from MiniLM-L6", depth, student + kd + MINILM_TEACHER),
                 ("KD from MPNet", depth, student + kd),
                 ("KD from MPNet, training texts only", depth, student + kd[:2] + ("distill.augment=0",))]
        if args.length32 and depth == 3:
            extra.append(("hard labels, max_length 32", depth, student + hard + MINILM_TEACHER + ("data.max_length=32",)))
    return rows + extra


def link_cache(out: Path, sources: list[Path]) -> None:
    """Finished stage folders (and teacher-label memos) of other --out folders, hard-linked into OUT/cache."""
    def link(source, target):
        try:
            os.link(source, target)
        except OSError:  # another filesystem
            shutil.copy2(source, target)

    (out / "cache").mkdir(parents=True, exist_ok=True)
    for source in sources:
        for entry in sorted((source / "cache").iterdir()):
            target = out / "cache" / entry.name
            if entry.name.startswith(".") or target.exists():
                continue  # staging folders of builds in progress; what this --out already has
            if entry.is_dir() and (entry / "manifest.json").is_file():
                shutil.copytree(entry, target, copy_function=link)
            elif entry.is_file():
                link(entry, target)


def per_text(row: dict) -> np.ndarray | None:
    """Seed-averaged correctness per test text: as trained in this run, or from the JSON (seeds right per text)."""
    if "correct" in row:
        return np.asarray(row["correct"], dtype=float)
    if "correct_counts" in row:
        return np.array([int(c) for c in row["correct_counts"]], dtype=float) / len(row.get("accuracy_seeds", [0]))
    return None


def compare(result: dict) -> None:
    """Each KD row minus the hard-label row of its depth, text by text (paired bootstrap). A 6-layer student has no
    hard-label row of its own: the MiniLM-L6 teacher is that model, all six layers fine-tuned on hard labels."""
    minilm = next(({**t, "condition": "teacher all-MiniLM-L6-v2"} for t in result["teachers"]
                   if t["model"] == "all-MiniLM-L6-v2"), None)
    for row in result["students"]:
        hard = next((r for r in result["students"] if r["layers"] == row["layers"] and r["condition"] == "hard labels"),
                    minilm if row["layers"] == 6 else None)
        if hard is None or row is hard:
            continue
        a, b = per_text(row), per_text(hard)
        if a is not None and b is not None:  # else the row keeps the comparison stored when it was trained
            row["vs_hard_labels"] = {**paired_difference(a, b), "against": hard["condition"]}


def merge(earlier: dict | None, result: dict) -> dict:
    """This run's rows into the section an earlier run wrote: rows of the same depth and condition are replaced."""
    if earlier is not None:
        if len(result["teachers"]) < 2:  # --cached-only without both teachers built: keep the reported ones
            result["teachers"] = [next((t for t in result["teachers"] if t["model"] == old["model"]), old)
                                  for old in earlier["teachers"]]
            if "teacher_ensemble" in earlier:
                result.setdefault("teacher_ensemble", earlier["teacher_ensemble"])
        rerun = {(s["condition"], s["layers"]) for s in result["students"]}
        result["students"] += [{"seeds": earlier["settings"]["seeds"], **s} for s in earlier["students"]
                               if (s["condition"], s["layers"]) not in rerun]
        result["settings"] = {k: v for k, v in {**earlier["settings"], **result["settings"]}.items() if k in SETTINGS}
    students = result["students"]
    result["settings"]["depths"] = sorted({s["layers"] for s in students})
    result["settings"]["seeds"] = sorted({seed for s in students for seed in s.get("seeds", result["settings"]["seeds"])})
    result["students"].sort(key=lambda s: (s["layers"], s["condition"] != "hard labels", s["condition"]))
    compare(result)
    return result


def run_dataset(args) -> dict:
    data = data_view(args.data, args.views or args.out)
    test_rows = list(csv.DictReader((data / "test.csv").open(encoding="utf-8-sig")))
    train_labels = sorted({r["label"].strip() for r in csv.DictReader((data / "train.csv").open(encoding="utf-8-sig"))})
    truth = np.array([train_labels.index(r["label"].strip()) for r in test_rows if r["text"].strip()])
    n = len(train_labels)
    result = {"dataset": args.data.name, "test_texts": len(truth), "labels": n, "teachers": [], "students": [],
              "settings": {k: v for k, v in vars(args).items() if k in SETTINGS}}
    for name, depth, overrides in conditions(args):
        if args.only and not any(f"{depth}:{name}" == o for o in args.only):
            continue
        # Seed 0 is the recipe's own (distill.seed null): that row is the very student the accuracy build ships.
        seeded = {seed: overrides + ((f"distill.seed={seed}",) if seed != 0 else ()) for seed in args.seeds}
        if args.cached_only and not all(cached("distill", data, args.out, o) for o in seeded.values()):
            print(f"not reported (not built for every seed): {depth} layers, {name}")
            continue
        runs = []
        for seed in args.seeds:
            folder, metrics, seconds = run_stage("distill", data, args.out, seeded[seed])
            correct, score = scores(folder, truth, n)
            manifest = json.loads((folder / "manifest.json").read_text())
            runs.append({"seed": seed, **score, "seconds": manifest["seconds"], "correct": correct,
                         "max_length": metrics.get("max_length")})
        result["students"].append({
            "condition": name, "layers": depth, "overrides": list(overrides), "seeds": list(args.seeds),
            "accuracy": float(np.mean([r["accuracy"] for r in runs])),
            "accuracy_seeds": [r["accuracy"] for r in runs],
            "macro_f1": float(np.mean([r["macro_f1"] for r in runs])),
            "seconds": float(np.mean([r["seconds"] for r in runs])),
            "max_length": runs[0]["max_length"],
            "correct": np.mean([r["correct"] for r in runs], axis=0).tolist(),
        })
    teacher_logits = []
    for name, overrides in (("all-MiniLM-L6-v2", MINILM_TEACHER), ("all-mpnet-base-v2", ())):
        if args.cached_only and not cached("teacher", data, args.out, overrides):
            print(f"teacher {name} not built: its row stays as an earlier run reported it")
            continue
        folder, metrics, _ = run_stage("teacher", data, args.out, overrides)
        manifest = json.loads((folder / "manifest.json").read_text())
        correct, score = scores(folder, truth, n)
        teacher_logits.append(np.load(folder / "test_logits.npy"))
        result["teachers"].append({"model": name, **score, "seconds": manifest["seconds"],
                                   "max_length": metrics.get("max_length"), "correct": correct.tolist()})
    if len(teacher_logits) == 2:
        # Would two teachers beat one? Their summed logits, scored on the test split (no student trained on them).
        result["teacher_ensemble"] = classification_scores(truth, sum(teacher_logits).argmax(-1), n)
    return result


def write(results: list[dict], args) -> None:
    lines = ["# Distillation: strong teacher and patient KD against hard labels", "",
             "`python benchmarks/distillation/run.py --data DATA --out OUT` (edgetune's own teacher and distill stages). "
             "Students: cuts of pretrained all-MiniLM-L6-v2 trained for at most max_steps (early stopping on "
             "validation); KD: KL at temperature T with weight alpha plus CE, on the training texts and `augment` "
             "teacher-labelled perturbed copies of each. Accuracy is the mean over the seeds (each seed's in "
             "brackets); the interval is a paired bootstrap over test texts of the seed-averaged per-text "
             "correctness, KD row minus the hard-label row of the same depth.", ""]
    for res in results:
        best_teacher = max(t["accuracy"] for t in res["teachers"])
        settings = ", ".join(f"{k} {v}" for k, v in res["settings"].items())
        lines += [f"## {res['dataset']}, max_steps {res['settings']['max_steps']} ({res['test_texts']} test texts, "
                  f"{res['labels']} labels)", "",
                  f"Settings: {settings}.", "",
                  "| model | layers | accuracy (mean; per seed) | macro-F1 | minus hard labels, points (95% CI) | train s |",
                  "|---|---|---|---|---|---|"]
        for t in res["teachers"]:
            lines.append(f"| teacher {t['model']} (max_length {t['max_length']:.0f}) | – | {t['accuracy']:.4f} | "
                         f"{t['macro_f1']:.4f} | – | {t['seconds']:.0f} |")
        ens = res.get("teacher_ensemble") or {"accuracy": float("nan"), "macro_f1": float("nan")}
        lines.append(f"| both teachers' logits summed (not trained; would a two-teacher KD gain?) | – | "
                     f"{ens['accuracy']:.4f} | {ens['macro_f1']:.4f} | – | – |")
        for s in res["students"]:
            gain = s.get("vs_hard_labels")
            diff = (f"{100 * gain['gain']:+.2f} ({100 * gain['ci'][0]:+.2f} to {100 * gain['ci'][1]:+.2f})"
                    + (f" vs the {gain['against']}" if gain.get("against", "hard labels") != "hard labels" else "")
                    if gain else "–")
            seeds = ", ".join(f"{a:.4f}" for a in s["accuracy_seeds"])
            lines.append(f"| student: {s['condition']} | {s['layers']} | {s['accuracy']:.4f} ({seeds}) | "
                         f"{s['macro_f1']:.4f} | {diff} | {s['seconds']:.0f} |")
        best = max(res["students"], key=lambda s: s["accuracy"])
        lines += ["", f"Best student: {best['condition']}, {best['layers']} layers, {best['accuracy']:.4f} = "
                  f"{100 * best['accuracy'] / best_teacher:.1f}% of the best teacher (fp32 PyTorch, before export "
                  "and quantization).", ""]
    (RESULTS / "distillation.md").write_text("\n".join(lines))
    slim = [{**r, "teachers": [stored(t) for t in r["teachers"]], "students": [stored(s) for s in r["students"]]}
            for r in results]
    (RESULTS / "distillation.json").write_text(json.dumps(slim, indent=1))
    plot(results)
    print("\n".join(lines))


def stored(row: dict) -> dict:
    """A row as the JSON keeps it: per-text correctness as one digit per text (how many seeds got it right)."""
    if "correct" not in row:
        return row
    seeds = len(row.get("accuracy_seeds", [0]))
    counts = "".join(str(round(c * seeds)) for c in row["correct"])
    return {**{k: v for k, v in row.items() if k != "correct"}, "correct_counts": counts}


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 3.8), squeeze=False)
    for ax, res in zip(axes[0], results):
        rows = [s for s in res["students"] if "vs_hard_labels" in s]
        labels = [f"{s['condition']} ({s['layers']}L)" for s in rows]
        gains = [100 * s["vs_hard_labels"]["gain"] for s in rows]
        errors = [[100 * (s["vs_hard_labels"]["gain"] - s["vs_hard_labels"]["ci"][0]) for s in rows],
                  [100 * (s["vs_hard_labels"]["ci"][1] - s["vs_hard_labels"]["gain"]) for s in rows]]
        ax.errorbar(gains, range(len(rows)), xerr=errors, fmt="o", capsize=4)
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(range(len(rows)), labels)
        ax.set_xlabel("accuracy minus hard labels (points, 95% CI)")
        ax.set_title(f"{res['dataset']}, max_steps {res['settings']['max_steps']}")
    fig.tight_layout()
    fig.savefig(RESULTS / "distillation.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train.csv and test.csv (or validation.csv)")
    parser.add_argument("--out", type=Path, required=True, help="edgetune --out folder: its cache is reused")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--depths", type=int, nargs="+", default=[3, 2], choices=sorted(DEPTHS))
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--augment", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--length32", action="store_true", help="add the 3-layer hard-label row at max_length 32")
    parser.add_argument("--only", nargs="+", metavar="DEPTH:CONDITION",
                        help='train and report only these rows, e.g. "3:KD from MPNet" (parallel runs: see --merge-cache)')
    parser.add_argument("--cached-only", action="store_true",
                        help="report the rows already built for every seed; train nothing new")
    parser.add_argument("--views", type=Path, default=None,
                        help="where views of folders without test.csv go (default --out); one folder for parallel runs")
    parser.add_argument("--merge-cache", type=Path, nargs="+", default=[], metavar="OUT",
                        help="hard-link the finished stages of these --out folders (parallel runs) into --out first")
    args = parser.parse_args()
    link_cache(args.out, args.merge_cache)
    result = run_dataset(args)
    path = RESULTS / "distillation.json"
    # One section per dataset and step budget: a run adds its rows to its own, beside the others.
    sections = json.loads(path.read_text()) if path.exists() else []
    same = lambda r: (r["dataset"], r["settings"]["max_steps"]) == (result["dataset"], args.max_steps)
    earlier = next((r for r in sections if same(r)), None)
    write([r for r in sections if not same(r)] + [merge(earlier, result)], args)


if __name__ == "__main__":
    main()
