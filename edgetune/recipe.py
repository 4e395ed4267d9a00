"""The build recipe: what to train, on which data, and how to compress it (YAML -> frozen dataclasses)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgetune import schema
from edgetune.errors import BadInput

DEFAULT_RECIPE = Path(__file__).parent / "recipes" / "default.yaml"


@dataclass(frozen=True)
class DataConfig:
    # Files (.csv, .jsonl or .parquet: edgetune/readers.py), or `dataset`: a Hugging Face datasets id whose
    # train/validation/test splits are read instead.
    train: str | None = None
    test: str | None = None
    validation: str | None = None  # carved from train (fixed seed) when absent
    dataset: str | None = None
    dataset_config: str | None = None  # the dataset's configuration (subset) name, for datasets with several
    text_column: str = "text"
    label_column: str = "label"
    # Tokens; longer texts are truncated. auto: the shortest multiple of 8 that keeps 99% of the training texts'
    # tokens (edgetune/data.py, sequence_length), resolved by each stage for the tokenizer it uses.
    max_length: int | Literal["auto"] = "auto"
    validation_fraction: float = 0.1
    # The label that marks out-of-scope texts (e.g. oos): none of the known intents. Its rows are not a class and are
    # not trained on; they are the texts the bundle should abstain on (edgetune/confidence.py). null: every label is
    # a class, whatever its name.
    out_of_scope_label: str | None = None


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10
    learning_rate: float = 1e-4
    batch_size: int = 32
    patience: int = 3  # epochs without validation improvement before stopping
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    # Cap on optimizer steps, like the HF Trainer's max_steps: bounds the time a bigger dataset takes with the same
    # recipe (the schedule spans min(epochs x steps per epoch, max_steps)); null: epochs alone decide.
    max_steps: int | None = None
    # Keep the word-embedding table fixed. On CPU its AdamW update and dense gradient are a third of a small
    # model's step time (30522 x 384 rows for MiniLM), and fine-tuning it buys little on a few thousand texts.
    freeze_word_embeddings: bool = True
    # Also freeze the embeddings and the lowest N transformer layers: their backward pass is skipped, which makes a
    # 12-layer teacher's step cheaper on CPU (benchmarks/results/distillation.md measures by how much).
    freeze_layers: int = 0
    # auto: bf16 autocast where the hardware computes bf16 natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX),
    # else fp32. Weights and optimizer state stay fp32 either way.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Batches whose gradients add up before each optimizer step: an effective batch of batch_size x this (x the
    # processes under `accelerate launch`) in the memory of one batch.
    gradient_accumulation_steps: int = 1


# Section defaults are the default recipe's (edgetune/recipes/default.yaml): a recipe that omits a key gets what the
# shipped recipe uses, and tests/test_recipe_targets.py keeps the two equal.

@dataclass(frozen=True)
class TeacherConfig(TrainingConfig):
    epochs: int = 12
    learning_rate: float = 2e-4
    batch_size: int = 16
    # Bounds a bigger --data set (Banking77: 5.3 epochs, ~13 min on 2 cores); the smart-home set needs 276.
    max_steps: int | None = 3000
    model: str = "sentence-transformers/all-MiniLM-L6-v2"  # hub id or local folder
    revision: str = "main"
    trust_remote_code: bool = False


@dataclass(frozen=True)
class DistillConfig(TrainingConfig):
    epochs: int = 20
    learning_rate: float = 2e-4
    batch_size: int = 16
    patience: int = 4
    max_steps: int | None = 3000
    layers: tuple[int, ...] = (0, 5)  # teacher layers copied into the student, in order
    student: str | None = None  # another pretrained model as the student (any tokenizer); `layers` then unused
    student_layers: tuple[int, ...] | None = None  # layers of `student` to keep (null: all of them)
    seed: int | None = None  # the student's own seed (null: the recipe's); varies the student, not the teacher
    # At 4, Banking77's 77 classes flatten the teacher's train-set targets to p(true) 0.15; at 2: 0.62.
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the soft-label KL loss; (1 - alpha) goes to hard-label CE
    hidden_weight: float = 0.0  # weight of hidden-state MSE (needs the teacher's tokenizer)
    hidden_layer_map: tuple[int, ...] | None = None  # teacher layer matched by each student layer; default: `layers`
    hidden_projection: bool = True  # learn a linear map when student and teacher widths differ
    transfer: str | None = None  # CSV with a `text` column: unlabeled text the teacher labels softly
    augment: int = 0  # perturbed copies of each training text, soft-labelled by the teacher (edgetune/augment.py)


@dataclass(frozen=True)
class TuneConfig(TrainingConfig):
    epochs: int = 6
    learning_rate: float = 1e-3
    batch_size: int = 16
    patience: int = 2
    max_steps: int | None = 1200
    r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    target_modules: tuple[str, ...] = ("query", "key", "value", "dense")


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    atol: float = 1e-4  # max |onnx - torch| logit difference on real inputs; exceeding it fails the stage
    validation_samples: int = 64
    # Keep only the embedding rows of tokens train+validation use (plus special and single-character pieces);
    # the tokenizer is rewritten to match before the ONNX export. WordPiece tokenizers only.
    prune_vocab: bool = False
    # Also keep the first N ordinary tokens of the vocabulary: BERT's vocab.txt lists words by frequency, so these
    # are the commonest words, a backstop for words the training data never used.
    prune_keep_first: int = 0
    prune_min_match: float = 0.995  # test-split prediction match rate (pruned vs unpruned) below which export fails


@dataclass(frozen=True)
class QuantizeConfig:
    method: str = "int8-dynamic"  # a registered method: edgetune/quantizers/ (none, int8-dynamic, int8-static, int4)
    optimize: bool = True  # onnxruntime transformer fusions (attention, LayerNorm, GELU) before quantizing
    calibration: str | None = None  # CSV with a `text` column; default: the recipe's train split
    calibration_samples: int = 128
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    block_size: int = 32  # int4 weight-only block size
    int4_algorithm: Literal["rtn", "hqq", "gptq"] = "rtn"  # gptq calibrates on the calibration texts
    # MatMulNBits compute: 0 unset (fp32), 1 fp32, 2 fp16, 3 bf16, 4 int8 activations (the fast CPU path).
    int4_accuracy_level: int = 4
    max_accuracy_drop: float | None = None  # validation accuracy drop allowed vs fp32 (absolute); null: not checked
    max_float_nodes: int | None = None  # accuracy-aware mode keeps at most this many nodes in float; null: no cap

    @property
    def reads_calibration(self) -> bool:
        """Whether the method reads calibration texts (static ranges, GPTQ's Hessians): the method says."""
        from edgetune import quantizers

        return quantizers.get(self.method).reads_calibration(self)


@dataclass(frozen=True)
class BenchConfig:
    warmup_runs: int = 20
    min_runs: int = 200
    max_runs: int = 5000
    max_seconds: float = 10.0
    ci_relative_halfwidth: float = 0.05  # stop when the p95's 95% bootstrap CI is this narrow


@dataclass(frozen=True)
class ConfidenceConfig:
    """Calibrated probabilities and the abstain threshold (edgetune/confidence.py), fitted on the validation split."""
    temperature_scaling: bool = True  # the bundle divides its logits by a temperature fitted on validation
    # The bundle answers the abstain label when its calibrated top probability is below the threshold.
    # auto: when data.out_of_scope_label is set.
    abstain: Literal["auto", True, False] = "auto"
    # How the threshold is chosen on the validation split: false_accept_rate accepts at most `threshold_rate` of its
    # out-of-scope texts (it needs some); false_reject_rate rejects at most `threshold_rate` of its in-scope texts.
    threshold_rule: Literal["false_accept_rate", "false_reject_rate"] = "false_accept_rate"
    threshold_rate: float = 0.05
    # The answer when the bundle abstains; null: data.out_of_scope_label, or "out_of_scope" without one.
    abstain_label: str | None = None


@dataclass(frozen=True)
class SearchConfig:
    """Budget-driven student search (edgetune/search.py): train every depth, quantize each with every method, ship
    the most accurate candidate within the target's size and p95 budgets. `search: auto` takes these defaults."""

    depths: tuple[int, ...] = (1, 2, 3)  # student depths: teacher layers kept, spread evenly (first and last kept)
    methods: tuple[str, ...] | None = None  # quantize methods tried; null: every registered method that quantizes


@dataclass(frozen=True)
class Recipe:
    data: DataConfig
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    confidence: ConfidenceConfig = field(default_factory=ConfidenceConfig)
    search: SearchConfig | None = None  # null: build the recipe's one student; no stage reads it (no cache key)
    seed: int = 0
    # Where training runs. Not in the cache key: CPU and GPU results differ only by float rounding.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    source: str = field(default="", compare=False)  # the file it came from, for messages

    def section(self, name: str) -> dict:
        if name == "seed":
            return {"seed": self.seed}
        values = dataclasses.asdict(getattr(self, name))
        if name == "data" and values["out_of_scope_label"] is None:
            del values["out_of_scope_label"]  # unset, it changes nothing: builds cached before the key stay valid
        return values


def packaged_recipe(path: Path | str | None) -> Path:
    """A recipe file, or the name of one edgetune ships (`default`, `accuracy`) when no such file exists."""
    if path is None:
        return DEFAULT_RECIPE
    shipped = DEFAULT_RECIPE.parent / f"{path}.yaml"
    return shipped if not Path(path).exists() and "/" not in str(path) and shipped.is_file() else Path(path)


def load_recipe(path: Path | None = None, *, overrides: tuple[str, ...] = (), data_dir: Path | None = None) -> Recipe:
    """Read a recipe, apply `--set` overrides and `--data`, resolve data paths against the recipe's folder."""
    path = packaged_recipe(path)
    raw = schema.read_yaml(path)
    for assignment in overrides:
        schema.apply_override(raw, assignment)
    base = path.parent
    overridden = {a.split("=", 1)[0].strip() for a in overrides}
    if data_dir is not None:
        raw["data"] = data_section(dict(raw.get("data") or {}), str(data_dir))
    if raw.get("search") == "auto":
        raw["search"] = {}
    source = f"{path} (with --set {' '.join(overrides)})" if overrides else str(path)
    recipe = schema.build(Recipe, raw, source=source)
    data = recipe.data

    def resolve(dotted: str, value: str | None) -> str | None:
        # Paths in the file are relative to the file; paths given with --set, to the working directory.
        if value is None:
            return None
        return str(((Path.cwd() if dotted in overridden else base) / value).resolve())

    resolved = {split: resolve(f"data.{split}", getattr(data, split)) for split in ("train", "test", "validation")}
    quantize = dataclasses.replace(
        recipe.quantize, calibration=resolve("quantize.calibration", recipe.quantize.calibration)
    )
    distill = dataclasses.replace(recipe.distill, transfer=resolve("distill.transfer", recipe.distill.transfer))
    recipe = dataclasses.replace(
        recipe, data=dataclasses.replace(data, **resolved), quantize=quantize, distill=distill, source=str(path)
    )
    _check_values(recipe)
    return recipe


def data_section(section: dict, data: str) -> dict:
    """The recipe's data section with `--data` in place of its splits: a folder of split files (train.csv,
    train.jsonl or train.parquet, ...) or, when no such folder exists, a Hugging Face datasets id."""
    from edgetune.readers import SPLITS, split_files

    for key in (*SPLITS, "dataset", "dataset_config"):
        section.pop(key, None)
    folder = Path(data)
    if folder.is_dir():
        return section | split_files(folder)
    if folder.exists() or data.startswith((".", "/", "~")) or data.count("/") > 1 or not data.strip():
        raise BadInput(f"--data {data}: not a folder; give a folder with train and test files "
                       "(.csv, .jsonl or .parquet) or a Hugging Face datasets id such as PolyAI/banking77")
    return section | {"dataset": data}


def _check_values(recipe: Recipe) -> None:
    src = recipe.source
    data = recipe.data
    if data.dataset is None and (data.train is None or data.test is None):
        key = "data.train" if data.train is None else "data.test"
        raise BadInput(f"{src}: missing required key '{key}' (a .csv, .jsonl or .parquet file); or read a Hugging "
                       "Face dataset's splits with data.dataset")
    if data.dataset is not None and (data.train or data.test or data.validation):
        raise BadInput(f"{src}: data.dataset ({data.dataset}) and data files (data.train/test/validation) both "
                       "given; keep one source of data")
    if not data.text_column or not data.label_column or data.text_column == data.label_column:
        raise BadInput(f"{src}: data.text_column and data.label_column must name two different columns")
    if not recipe.distill.layers:
        raise BadInput(f"{src}: distill.layers is empty; list the teacher layers to keep, e.g. [0, 5]")
    if len(set(recipe.distill.layers)) != len(recipe.distill.layers):
        raise BadInput(f"{src}: distill.layers {list(recipe.distill.layers)} repeats a layer")
    if not 0.0 <= recipe.distill.alpha <= 1.0:
        raise BadInput(f"{src}: distill.alpha = {recipe.distill.alpha} must be within [0, 1]")
    d = recipe.distill
    if d.augment < 0:
        raise BadInput(f"{src}: distill.augment = {d.augment} must be >= 0 (perturbed copies per training text)")
    if d.hidden_weight < 0:
        raise BadInput(f"{src}: distill.hidden_weight must be >= 0")
    map_length = len(d.hidden_layer_map or d.layers)
    if d.hidden_weight > 0 and d.student is None and map_length != len(d.layers):
        raise BadInput(f"{src}: distill.hidden_layer_map has {map_length} entries but the student has "
                       f"{len(d.layers)} layers; give one teacher layer per student layer")
    if isinstance(recipe.data.max_length, int) and recipe.data.max_length < 2:
        raise BadInput(f"{src}: data.max_length = {recipe.data.max_length} must be >= 2 tokens, or auto")
    if d.student_layers is not None:
        if d.student is None:
            raise BadInput(f"{src}: distill.student_layers needs distill.student (the pretrained model to cut); "
                           "to cut the teacher, use distill.layers")
        if not d.student_layers or len(set(d.student_layers)) != len(d.student_layers):
            raise BadInput(f"{src}: distill.student_layers {list(d.student_layers)} must list distinct layers, "
                           "e.g. [0, 2, 5], or be null for all of them")
    if recipe.distill.temperature <= 0:
        raise BadInput(f"{src}: distill.temperature must be > 0")
    from edgetune import quantizers

    if recipe.quantize.method not in quantizers.names():
        raise BadInput(f"{src}: quantize.method = {recipe.quantize.method!r} is not one of "
                       f"{', '.join(quantizers.names())} (the methods registered in edgetune/quantizers/)")
    block = recipe.quantize.block_size
    if block < 16 or block & (block - 1):
        raise BadInput(f"{src}: quantize.block_size = {block} must be a power of two >= 16 (e.g. 32, 64, 128)")
    if recipe.quantize.calibration_samples < 1:
        raise BadInput(f"{src}: quantize.calibration_samples must be >= 1")
    if recipe.quantize.int4_accuracy_level not in (0, 1, 2, 3, 4):
        raise BadInput(f"{src}: quantize.int4_accuracy_level = {recipe.quantize.int4_accuracy_level} must be 0-4 "
                       "(onnxruntime MatMulNBits: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)")
    drop = recipe.quantize.max_accuracy_drop
    if drop is not None and not -1.0 < drop < 1.0:
        raise BadInput(f"{src}: quantize.max_accuracy_drop = {drop} must be within (-1, 1): an absolute accuracy "
                       "drop on the validation split, e.g. 0.01 (negative: the quantized model must beat fp32), "
                       "or null to skip the check")
    if recipe.quantize.max_float_nodes is not None and recipe.quantize.max_float_nodes < 0:
        raise BadInput(f"{src}: quantize.max_float_nodes must be >= 0, or null for no cap")
    if recipe.export.prune_keep_first < 0:
        raise BadInput(f"{src}: export.prune_keep_first must be >= 0")
    if not 0.0 <= recipe.export.prune_min_match <= 1.0:
        raise BadInput(f"{src}: export.prune_min_match = {recipe.export.prune_min_match} must be within [0, 1]")
    for name in ("teacher", "distill", "tune"):
        cfg = getattr(recipe, name)
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise BadInput(f"{src}: {name}.epochs and {name}.batch_size must be >= 1")
        if cfg.gradient_accumulation_steps < 1:
            raise BadInput(f"{src}: {name}.gradient_accumulation_steps = {cfg.gradient_accumulation_steps} "
                           "must be >= 1")
        if cfg.freeze_layers < 0:
            raise BadInput(f"{src}: {name}.freeze_layers = {cfg.freeze_layers} must be >= 0")
        if cfg.max_steps is not None and cfg.max_steps < 1:
            raise BadInput(f"{src}: {name}.max_steps = {cfg.max_steps} must be >= 1, or null to let epochs decide")
    c = recipe.confidence
    if not 0.0 <= c.threshold_rate < 1.0:
        raise BadInput(f"{src}: confidence.threshold_rate = {c.threshold_rate} must be within [0, 1): the share of "
                       f"validation texts the {c.threshold_rule.replace('_', ' ')} may reach, e.g. 0.05")
    if recipe.data.out_of_scope_label is not None and not recipe.data.out_of_scope_label.strip():
        raise BadInput(f"{src}: data.out_of_scope_label is blank; name the label of out-of-scope rows (e.g. oos), "
                       "or null")
    if recipe.search is not None:
        from edgetune.search import check_search

        check_search(recipe)
    if recipe.export.validation_samples < 1:
        raise BadInput(f"{src}: export.validation_samples must be >= 1")
    if recipe.export.atol <= 0:
        raise BadInput(f"{src}: export.atol must be > 0")
