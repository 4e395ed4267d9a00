"""What is reused is what was built: cache entries and bundles are checked against their manifest (sizes, sha256)."""

from __future__ import annotations

import shutil

from edgetune import artifacts, report_json
from helpers import build, cache_entries, entries_of, expected, invoke, plain, stage_statuses, status_predictions


def entry(out, stage: str):
    (name,) = entries_of(cache_entries(out), stage)
    return out / "cache" / name


def truncate(path, keep: int = 100) -> None:
    data = path.read_bytes()
    assert len(data) > keep
    path.write_bytes(data[:keep])


def test_damage_names_the_file_by_size_then_by_hash(tmp_path):
    folder = tmp_path / "entry"
    (folder / "model").mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"weights" * 100)
    (folder / "model" / "config.json").write_text("{}")
    manifest = {"files": artifacts.folder_hashes(folder), "sizes": artifacts.folder_sizes(folder)}
    assert artifacts.damage(folder, manifest) is None

    (folder / "model.onnx").write_bytes(b"weights" * 99)
    assert artifacts.damage(folder, manifest) == "model.onnx is 693 bytes, the manifest records 700"
    (folder / "model.onnx").write_bytes(b"Weights" + b"weights" * 99)  # same size, other bytes
    assert artifacts.damage(folder, manifest) == "model.onnx differs from the sha256 the manifest records"
    (folder / "model.onnx").write_bytes(b"weights" * 100)
    (folder / "model" / "config.json").unlink()
    assert artifacts.damage(folder, manifest) == "model/config.json is missing"
    # A manifest written before sizes were recorded is still checked, by hash.
    assert "model/config.json" in artifacts.damage(folder, {"files": manifest["files"]})


def test_truncated_cached_model_is_named_and_rebuilt(built):
    quantized = entry(built.out, "quantize")
    truncate(quantized / "model.onnx")

    status = invoke("status", "--out", built.out, "--target", "rpi5", "--recipe", built.recipe)
    assert status.exit_code == 0, status.output
    assert "damaged: model.onnx is 100 bytes" in plain(status.output)
    assert status_predictions(status.output).get("quantize") is None  # not "cached": "to build (... damaged ...)"
    assert "quantize to build (cache entry damaged: model.onnx" in plain(status.output)

    result = build(built.recipe, built.out)

    assert result.exit_code == 0, result.output
    out = plain(result.output)
    assert f"quantize: cache entry {quantized} is damaged (model.onnx is 100 bytes, the manifest records" in out
    assert stage_statuses(result.output) == expected(built=("quantize",), bench="up to date")
    assert artifacts.damage(quantized, artifacts.read_manifest(quantized)) is None  # rebuilt whole, same key
    report = report_json.read(built.out / "rpi5" / "report.json")
    assert report.target == "rpi5" and report.size_bytes == (built.out / "rpi5" / "bundle" / "model.onnx").stat().st_size
    assert "Traceback" not in result.output


def test_damaged_bundle_is_rebuilt_and_measured_again(built):
    bundle = built.out / "rpi5" / "bundle"
    (bundle / "labels.json").write_text('["lights_on"]')

    result = build(built.recipe, built.out)

    assert result.exit_code == 0, result.output
    assert f"bench: bundle {bundle} is damaged (labels.json is" in plain(result.output)
    assert stage_statuses(result.output) == expected()  # everything cached, the bundle measured again
    assert artifacts.damage(bundle, artifacts.read_manifest(bundle)) is None
    report_json.read(built.out / "rpi5" / "report.json")


def test_gate_refuses_a_damaged_bundle(base_build, tmp_path):
    candidate = tmp_path / "rpi5"
    shutil.copytree(base_build.out / "rpi5", candidate)
    truncate(candidate / "bundle" / "model.onnx")

    result = invoke("gate", "--baseline", base_build.out / "rpi5", candidate, "--max-seconds", "1")

    assert result.exit_code == 2, result.output
    assert f"candidate bundle {candidate / 'bundle'} is damaged (model.onnx is 100 bytes" in plain(result.output)
    assert "Traceback" not in result.output


def test_publishers_of_one_entry_racing_each_other_all_succeed(tmp_path):
    """Processes that built the same entry publish it at once: each keeps a whole folder, none fails."""
    import threading

    final = tmp_path / "cache" / "quantize-0123456789abcdef"
    errors = []

    def publisher(n: int) -> None:
        try:
            for i in range(100):
                with artifacts.staging(final) as tmp:
                    (tmp / "model.onnx").write_bytes(b"same content")
                    artifacts.publish(tmp, final)
        except Exception as err:  # collected: the assertion below names it
            errors.append(err)

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(p.name for p in final.iterdir()) == ["model.onnx"]
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # no staging or old folders left
