"""Tables of rows from where labeled text lives: CSV, JSON Lines and Parquet files, Hugging Face datasets.

One reader per format, each returning a Table (its column names and its rows as dicts); edgetune/data.py picks
the recipe's columns out of it. Every problem is a BadInput naming the file (or dataset) and the fix.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from edgetune.errors import BadInput

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Table:
    source: str  # the file, or `dataset id [config] split`, for messages
    columns: tuple[str, ...]
    rows: list[dict]


def read_csv_table(path: Path) -> Table:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            reader = csv.DictReader(handle)
            header = tuple(reader.fieldnames or ())
            rows = []
            for line, row in enumerate(reader, start=2):
                if None in row.values():
                    raise BadInput(f"{path}:{line}: row has fewer fields than the header; fix the quoting")
                rows.append(row)
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8 CSV") from None
    except csv.Error as err:
        raise BadInput(f"{path}: not a valid CSV ({err})") from None
    return Table(str(path), header, rows)


def read_jsonl_table(path: Path) -> Table:
    """One JSON object per line; blank lines are skipped. The columns are every key any row has."""
    rows, columns = [], {}
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for line, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except ValueError as err:
                    raise BadInput(f"{path}:{line}: not valid JSON ({err}); JSON Lines has one object per line"
                                   ) from None
                if not isinstance(row, dict):
                    raise BadInput(f"{path}:{line}: a JSON {type(row).__name__}, not an object; "
                                   "write one object per line, e.g. {\"text\": ..., \"label\": ...}")
                columns.update(dict.fromkeys(row))
                rows.append(row)
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    return Table(str(path), tuple(columns), rows)


def read_parquet_table(path: Path) -> Table:
    require("pyarrow", f"{path}: Parquet")
    import pyarrow.parquet as pq
    from pyarrow import ArrowException

    try:
        table = pq.read_table(path)
    except (ArrowException, OSError) as err:
        raise BadInput(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None
    return Table(str(path), tuple(table.column_names), table.to_pylist())


def require(module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise BadInput(f"{what} needs the {module} package: pip install 'edgetune[data]'")


READERS = {".csv": read_csv_table, ".jsonl": read_jsonl_table, ".parquet": read_parquet_table}


def read_table(path: str | Path) -> Table:
    """The reader for the file's suffix: .csv, .jsonl or .parquet."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: file not found")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise BadInput(f"{path}: unknown data format '{path.suffix}'; use {', '.join(READERS)} files")
    return reader(path)


def split_files(folder: Path) -> dict[str, str]:
    """train/validation/test files of a folder, by name (train.csv, train.jsonl or train.parquet, ...)."""
    found = {}
    for split in SPLITS:
        candidates = [folder / f"{split}{suffix}" for suffix in READERS if (folder / f"{split}{suffix}").is_file()]
        if len(candidates) > 1:
            raise BadInput(f"--data {folder}: {' and '.join(c.name for c in candidates)} both hold the {split} split; "
                           "keep one of them")
        if candidates:
            found[split] = str(candidates[0].resolve())
    for split in ("train", "test"):
        if split not in found:
            *first, last = [f"{split}{suffix}" for suffix in READERS]
            raise BadInput(f"--data {folder}: missing {', '.join(first)} or {last} "
                           "(one file per split, with a text and a label column)")
    return found


def hub_table(dataset: str, config: str | None, split: str) -> Table:
    """A split of a Hugging Face dataset through `datasets` (its cache; offline when the Hub is unreachable).
    Class-label columns come back as their names, so labels read the same as in a file."""
    ds = load_hub_split(dataset, config, split)
    rows = ds.to_list()
    for name, feature in ds.features.items():
        if type(feature).__name__ == "ClassLabel":
            for row in rows:
                if row[name] is not None:
                    row[name] = feature.int2str(row[name])
    return Table(f"dataset {dataset}{f' ({config})' if config else ''} split {split}", tuple(ds.column_names), rows)


def hub_splits(dataset: str, config: str | None) -> tuple[str, ...]:
    return tuple(_load(dataset, config))


def hub_fingerprint(dataset: str, config: str | None) -> str:
    """What identifies the cached copy's content: the datasets library's fingerprints of its splits (a hash of
    the files it was built from, which `datasets` keeps on each split and uses for its own cache)."""
    loaded = _load(dataset, config)
    return json.dumps({split: loaded[split]._fingerprint for split in sorted(loaded)})


def load_hub_split(dataset: str, config: str | None, split: str):
    loaded = _load(dataset, config)
    if split not in loaded:
        raise BadInput(f"dataset {dataset}: no '{split}' split (it has {', '.join(loaded)}); "
                       "give a dataset with train and test splits, or a folder of files")
    return loaded[split]


_LOADED: dict = {}


def _load(dataset: str, config: str | None):
    """Loaded once per process: fingerprinting, the preflight and each stage read the same dataset."""
    if (dataset, config) in _LOADED:
        return _LOADED[(dataset, config)]
    require("datasets", f"dataset {dataset}: a Hugging Face dataset")
    import datasets
    import huggingface_hub.constants

    from edgetune.console import log
    from edgetune.models import hub_reachable

    local = Path(dataset).expanduser().is_dir()  # a folder `datasets` itself loads (its own layout rules)
    offline = not local and not hub_reachable()
    if offline:
        log(f"Hugging Face Hub unreachable: reading dataset {dataset} from the datasets cache")
    flags = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    try:
        # Offline mode makes an uncached dataset fail at once instead of after the Hub's retries (~20 s).
        datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = offline or flags[0]
        loaded = datasets.load_dataset(dataset, config)
    except (ConnectionError, OSError, ValueError) as err:
        hint = ("the Hugging Face Hub is unreachable and the dataset is not in the datasets cache "
                f"({datasets.config.HF_DATASETS_CACHE}); load it once where the Hub is reachable (the cache is "
                "then used offline), or save its splits as train/test .csv, .jsonl or .parquet files in a folder "
                "and pass that folder") if offline else \
            "check the dataset id (and data.dataset_config for datasets with several configurations)"
        reason, where = str(err).splitlines()[0][:200], "" if local else "no folder of that name here, and "
        raise BadInput(f"dataset {dataset}: {where}`datasets` cannot load it ({reason}); {hint}") from None
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = flags
    _LOADED[(dataset, config)] = loaded
    return loaded
