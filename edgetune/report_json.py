"""report.json, typed: the one definition bench writes and the CLI, gate, report.md and the benchmarks read.

`edgetune/report.schema.json` is the same definition as a JSON Schema for other tools; it is generated from these
dataclasses (`python -m edgetune.report_json > edgetune/report.schema.json`) and a test keeps the two equal.
Bump SCHEMA_VERSION when a field is added, removed or changes meaning; `read` names what an unreadable file lacks.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from edgetune.errors import BadInput

SCHEMA_VERSION = 3
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")


@dataclass
class SequenceLengths:
    min: int
    median: float
    max: int


@dataclass
class LatencyMs:
    """The shipped model's latency (edgetune.runtime.Latency.summary) and how it was fed."""
    p50: float
    p95: float
    p99: float
    p95_ci: list[float]
    p50_ci: list[float]
    mean: float
    runs: int
    stopped_because: str
    batch_size: int
    sequence_length: SequenceLengths
    samples: list[float] = field(default_factory=list)


@dataclass
class Host:
    """edgetune.runtime.describe_host: the machine that measured latency (the device, for a remote target)."""
    cpu: str
    arch: str
    flags: list[str]
    cores: int
    threads: int
    onnxruntime: str
    execution_provider: str
    python: str
    os: str
    threads_note: str | None = None


@dataclass
class StudentFp32:
    accuracy: float
    macro_f1: float
    size_bytes: int
    per_class_f1: dict[str, float]


@dataclass
class Teacher:
    accuracy: float
    macro_f1: float
    layers: int
    parameters: int
    per_class_f1: dict[str, float]


@dataclass
class Student:
    layers: int


@dataclass
class ModelRow:
    """One model of the comparison, all measured in one interleaved run on the build host."""
    accuracy: float
    macro_f1: float
    p50: float
    p95: float
    p95_ci: list[float]
    size_bytes: int


@dataclass
class Ratio:
    """teacher fp32 p95 / shipped p95 with its 95% bootstrap interval: 4.0 means a quarter of the latency."""
    ratio: float
    ci: list[float]


@dataclass
class Int4VsInt8:
    """int4 builds only: shipped p95 / int8 dynamic p95 of the same model, timed in the same run."""
    ratio: float
    ci: list[float]
    int8_p95: float
    int8_size_bytes: int
    int8_accuracy: float


@dataclass
class Budget:
    """A target budget judged on evidence about the target (edgetune.budgets): never "ok" from a stand-in host."""
    limit: float
    # Both absent (None) when the budget was not checked on the target: report.json leaves absent fields out.
    value: float | None = None  # the number judged against the limit
    ok: bool | None = None
    # measured on the target | estimate | host-independent | not checked on the target
    evidence: str = "measured on the target"
    host_value: float | None = None  # this host's measurement, when the value judged is not it (or there is none)


@dataclass
class RemoteRun:
    address: str
    dir: str
    python: str
    sent: list[str]
    reused: list[str]
    bytes_sent: int
    seconds: float


@dataclass
class Confidence:
    """Calibration and abstention (edgetune.confidence): fitted on validation, scored on the in-scope test texts.
    Abstention fields are present when the bundle abstains; an abstention counts as wrong in in-scope accuracy."""
    method: str
    temperature: float
    ece_bins: int
    ece_test_before: float
    ece_test_after: float
    ece_validation_before: float
    ece_validation_after: float
    nll_validation_before: float
    nll_validation_after: float
    in_scope_accuracy: float  # answering every text (no threshold)
    abstain: bool
    out_of_scope_validation_texts: int = 0
    out_of_scope_test_texts: int = 0
    abstain_label: str | None = None
    threshold: float | None = None  # on the calibrated top probability: below it the bundle answers abstain_label
    threshold_rule: str | None = None  # false_accept_rate | false_reject_rate, met on validation
    threshold_rate: float | None = None
    validation_false_reject_rate: float | None = None
    validation_false_accept_rate: float | None = None
    in_scope_accuracy_abstaining: float | None = None
    coverage: float | None = None  # share of in-scope test texts answered
    selective_accuracy: float | None = None  # accuracy on the in-scope test texts answered
    out_of_scope_recall: float | None = None  # share of out-of-scope test texts abstained on


@dataclass
class SearchCandidate:
    """One student the search tried (edgetune.search): accuracy, size, and p95 on the target by the search's source."""
    name: str
    layers: list[int]  # teacher layers kept
    method: str  # quantize.method
    validation_accuracy: float  # what the search chooses by
    test_accuracy: float  # what it reports
    size_bytes: int
    p95_ms: float | None  # on the target, by Search.latency_source; None when there is no source
    host_p95_ms: float  # this host's, all candidates timed interleaved in one run
    within_budgets: bool
    over_budget: list[str] = field(default_factory=list)
    train_seconds: float = 0.0  # distill + tune + export of its depth, as first built (shared by the depth's methods)
    quantize_seconds: float = 0.0
    reused: bool = False  # every stage came from the cache in this build


@dataclass
class Search:
    """Budget-driven student search: every candidate, the one shipped, and why."""
    chosen: str
    reason: str
    latency_source: str  # device (over SSH) | host (matches the target) | estimate (roofline) | none
    latency_note: str
    budgets: dict[str, float]
    candidates: list[SearchCandidate]
    seconds: float  # wall time of the searched build, the shipped model's bench included


@dataclass
class Report:
    """What edgetune bench measured and scored for one target: the shipped model, and its comparisons."""
    schema_version: int
    target: str
    measured_on_target: bool
    note: str
    host: Host
    quantization: str
    latency_ms: LatencyMs
    throughput_per_s: float
    cold_start_ms: float
    peak_rss_mb: float
    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float]
    agreement_with_fp32: float
    size_bytes: int
    bundle_bytes: int
    student_fp32: StudentFp32
    teacher: Teacher
    student: Student
    comparison: dict[str, ModelRow]
    speedup_vs_teacher_p95: Ratio
    test_examples: int
    budgets: dict[str, Budget]
    test_set_sha256: str | None = None
    int4_vs_int8_p95: Int4VsInt8 | None = None
    remote: RemoteRun | None = None  # benched on a device over SSH
    device_agreement: float | None = None  # share of the device's predictions equal to this host's
    comparison_note: str | None = None
    estimate: dict | None = None  # roofline estimate for a target not at hand (edgetune.roofline); never measured
    confidence: Confidence | None = None  # temperature and abstain threshold (edgetune.confidence)
    search: Search | None = None  # the candidates a searched build tried (edgetune.search)

    def to_json(self) -> dict:
        """The JSON object, optional fields left out when absent."""
        return _drop_none(dataclasses.asdict(self))


def _drop_none(value):
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def write(report: Report, path: Path) -> None:
    from edgetune.artifacts import write_json

    write_json(path, report.to_json())


def read(path: Path) -> Report:
    """The report at `path`; BadInput naming the file and what is wrong when it is not a readable report.json."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadInput(f"{path}: not a readable report.json ({err})") from None
    return parse(raw, str(path))


def parse(raw, source: str) -> Report:
    from edgetune import schema

    if not isinstance(raw, dict):
        raise BadInput(f"{source}: not an edgetune report (a JSON object was expected)")
    required = [f.name for f in dataclasses.fields(Report)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in raw]
    if missing:
        raise BadInput(f"{source}: not an edgetune report.json (missing {', '.join(missing)})")
    if raw["schema_version"] != SCHEMA_VERSION:
        raise BadInput(f"{source}: report schema_version {raw['schema_version']}, this edgetune reads "
                       f"{SCHEMA_VERSION}; rebuild it with this edgetune (edgetune bench --target {raw['target']})")
    return schema.build(Report, raw, source=f"{source} (report.json)")


# --- JSON Schema --------------------------------------------------------------------------------------------------

def json_schema() -> dict:
    definitions: dict[str, dict] = {}
    root = _object_schema(Report, definitions)
    root["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "edgetune report.json",
            "description": Report.__doc__, **root, "$defs": definitions}


def _object_schema(cls, definitions: dict) -> dict:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return {"type": "object", "properties": {f.name: _type_schema(hints[f.name], definitions) for f in fields},
            "required": required, "additionalProperties": False}


def _type_schema(hint, definitions: dict) -> dict:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if hint.__name__ not in definitions:
            definitions[hint.__name__] = {}  # placeholder: recursion stops here
            definitions[hint.__name__] = _object_schema(hint, definitions)
        return {"$ref": f"#/$defs/{hint.__name__}"}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a, definitions) for a in args]}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], definitions)}
    if origin is dict or hint is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], definitions) if args else {}}
    return {int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}, bool: {"type": "boolean"},
            type(None): {"type": "null"}}[hint]

if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
