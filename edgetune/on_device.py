"""Runs ON the device (or under emulation): needs only Python 3.8+, onnxruntime, numpy and tokenizers.

edgetune never imports this file; it sends it to the device's interpreter on stdin (`python - MODE ...`), so
the device needs no edgetune install and always runs the script that matches the host's edgetune.

    python - probe DIR SETTINGS      JSON: which packages import, sha256 of the files under DIR, free disk, host
    python - bench DIR SETTINGS      install DIR/.incoming, then latency, cold start, peak RSS, predictions
    python - logits BUNDLE TEXTS OUT SETTINGS   write the logits for TEXTS (a JSON list) to OUT (.npy); JSON summary

SETTINGS is a JSON object (see edgetune.remote.bench_settings). Every mode prints one JSON object as the last
line of stdout. Timing follows edgetune.latency: warm-up, then batches of runs until the p95's 95% bootstrap
interval is within ci_relative_halfwidth, with a floor (min_runs) and caps (max_runs, max_seconds).
"""

import hashlib
import json
import os
import platform
import random
import shutil
import sys
import time

# MIDR part numbers of common Arm cores (implementer 0x41), for a readable CPU name on aarch64 Linux,
# whose /proc/cpuinfo has no "model name".
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE",
             "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd40": "Neoverse-V1",
             "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2"}


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_under(root):
    """{relative path: sha256} of the regular files under root, .incoming excluded."""
    found = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".incoming"]
        for name in names:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = sha256(path)
    return found


def free_bytes(path):
    while not os.path.isdir(path):
        path = os.path.dirname(path) or "."
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def describe(settings):
    """The same keys as edgetune.host.describe(), measured here."""
    import onnxruntime

    model, flags, parts = "", set(), []
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key, value = key.strip().lower(), value.strip()
                if key in ("model name", "hardware") and not model:
                    model = value
                elif key in ("flags", "features"):
                    flags.update(value.split())
                elif key == "cpu part" and value in ARM_PARTS and ARM_PARTS[value] not in parts:
                    parts.append(ARM_PARTS[value])
    except OSError:
        pass
    board = ""
    try:
        with open("/proc/device-tree/model") as handle:
            board = handle.read().strip("\x00\n ")
    except OSError:
        pass
    if not model:
        cores_named = " + ".join(parts)
        model = (f"{board} ({cores_named})" if board and cores_named else board or cores_named) or platform.machine()
    if "asimd" in flags:
        flags.add("neon")  # what arm64 Linux calls asimd; target profiles say neon
    cores = os.cpu_count() or 1
    threads = min(settings["threads"], cores)
    host = {
        "cpu": model,
        "arch": platform.machine(),
        "flags": sorted(f for f in flags if f in settings.get("interesting_flags", ()) or f == "neon"),
        "cores": cores,
        "threads": threads,
        "onnxruntime": onnxruntime.__version__,
        "execution_provider": settings["provider"],
        "python": platform.python_version(),
        "os": platform.system() + " " + platform.release(),
    }
    if threads < settings["threads"]:
        host["threads_note"] = "target has %d threads; capped at this host's %d cores" % (settings["threads"], cores)
    return host


def probe(root, settings):
    missing = {}
    for module in ("numpy", "onnxruntime", "tokenizers"):
        try:
            __import__(module)
        except Exception as err:  # report every way an import can fail on the device, by name
            missing[module] = "%s: %s" % (type(err).__name__, err)
    root = os.path.expanduser(root)
    result = {"python": platform.python_version(), "executable": sys.executable, "missing": missing,
              "dir": os.path.abspath(root), "files": files_under(root) if os.path.isdir(root) else {},
              "free_bytes": free_bytes(os.path.abspath(root))}
    if not missing:
        import onnxruntime

        result["host"] = describe(settings)
        result["providers"] = onnxruntime.get_available_providers()
    return result


def install_incoming(root, expected):
    """Move DIR/.incoming/* into place (atomic renames on one filesystem); drop bundle files no longer shipped."""
    incoming = os.path.join(root, ".incoming")
    if os.path.isdir(incoming):
        for folder, _, names in os.walk(incoming):
            for name in names:
                source = os.path.join(folder, name)
                dest = os.path.join(root, os.path.relpath(source, incoming))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.replace(source, dest)
        shutil.rmtree(incoming)
    bundle = os.path.join(root, "bundle")
    for name in os.listdir(bundle):
        if "bundle/" + name not in expected and os.path.isfile(os.path.join(bundle, name)):
            os.remove(os.path.join(bundle, name))
    now = files_under(root)
    wrong = sorted(p for p, digest in expected.items() if now.get(p) != digest)
    if wrong:
        raise SystemExit("files on the device differ from the ones sent: " + ", ".join(wrong))


def load(bundle, threads, provider):
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    with open(os.path.join(bundle, "preprocess.json")) as handle:
        prep = json.load(handle)
    tokenizer = Tokenizer.from_file(os.path.join(bundle, "tokenizer.json"))
    tokenizer.enable_truncation(prep["max_length"])
    tokenizer.enable_padding(pad_id=prep["pad_id"], pad_token=prep["pad_token"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(os.path.join(bundle, "model.onnx"), options, providers=[provider])
    names = [i.name for i in session.get_inputs()]

    def encode(texts):
        encodings = tokenizer.encode_batch(list(texts))
        arrays = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                  "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                  "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
        return {name: arrays[name] for name in names}

    return session, encode


def percentile_ci(samples, q, resamples, seed=0):
    import numpy as np

    samples = np.asarray(samples)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(samples), size=(resamples, len(samples)))
    lo, hi = np.percentile(np.percentile(samples[picks], q, axis=1), [2.5, 97.5])
    return float(lo), float(hi)


def feeds_for(texts, encode, batch_size, length, seed):
    """Batches of real texts in edgetune.stages.bench.latency_feeds' order; padded to `length` when fixed."""
    import numpy as np

    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    feeds = []
    for i in range(0, len(order) - batch_size + 1, batch_size):
        feed = encode([texts[j] for j in order[i:i + batch_size]])
        if length:
            feed = {k: np.pad(v[:, :length], ((0, 0), (0, max(0, length - v.shape[1])))) for k, v in feed.items()}
        feeds.append(feed)
    return feeds


def bench(root, settings):
    import numpy as np

    root = os.path.expanduser(root)
    install_incoming(root, settings["expected_files"])
    with open(os.path.join(root, "texts.json")) as handle:
        texts = json.load(handle)
    bundle = os.path.join(root, "bundle")
    host = describe(settings)

    # Cold start: tokenizer + session + first inference, in this fresh process (imports done above).
    start = time.perf_counter()
    session, encode = load(bundle, host["threads"], settings["provider"])
    session.run(None, encode(texts[:1]))
    cold_ms = (time.perf_counter() - start) * 1e3
    predictions = []
    for i in range(0, len(texts), 32):
        predictions.extend(int(x) for x in session.run(None, encode(texts[i:i + 32]))[0].argmax(-1))
    with open("/proc/self/status") as handle:  # VmHWM: this process's own peak, as bench's cold-start child
        peak_mb = next(int(l.split()[1]) for l in handle if l.startswith("VmHWM")) / 1024

    feeds = feeds_for(texts, encode, settings["batch_size"], settings["sequence_length"], settings["seed"])
    for i in range(settings["warmup_runs"]):
        session.run(None, feeds[i % len(feeds)])
    samples, started = [], time.perf_counter()
    reason = "max_runs (%d) reached" % settings["max_runs"]
    while len(samples) < settings["max_runs"]:
        for _ in range(min(10, settings["max_runs"] - len(samples))):  # edgetune.latency's blocks of 10
            feed = feeds[len(samples) % len(feeds)]
            t0 = time.perf_counter_ns()
            session.run(None, feed)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
        if len(samples) >= settings["min_runs"] and len(samples) % 100 == 0:
            lo, hi = percentile_ci(samples, 95, 300)
            if (hi - lo) / 2 <= settings["ci_relative_halfwidth"] * float(np.percentile(samples, 95)):
                reason = "p95 interval within \u00b1%.0f%%" % (settings["ci_relative_halfwidth"] * 100)
                break
        if time.perf_counter() - started > settings["max_seconds"] and len(samples) >= settings["min_runs"]:
            reason = "max_seconds (%g) reached" % settings["max_seconds"]
            break
    lengths = [int(f["input_ids"].shape[1]) for f in feeds]
    return {"host": host, "samples_ms": samples, "stopped_because": reason, "cold_start_ms": cold_ms,
            "peak_rss_mb": peak_mb, "predictions": predictions, "sequence_lengths": lengths}


def logits(bundle, texts_path, out_path, settings):
    import numpy as np
    import onnxruntime
    import tokenizers

    with open(texts_path) as handle:
        texts = json.load(handle)
    session, encode = load(bundle, settings.get("threads", 1), settings.get("provider", "CPUExecutionProvider"))
    batch = settings.get("batch_size", 16)
    out = [session.run(None, encode(texts[i:i + batch]))[0] for i in range(0, len(texts), batch)]
    np.save(out_path, np.concatenate(out).astype(np.float32))
    return {"arch": platform.machine(), "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__, "tokenizers": tokenizers.__version__, "texts": len(texts)}


def main(argv):
    mode = argv[0]
    if mode == "probe":
        result = probe(argv[1], json.loads(argv[2]))
    elif mode == "bench":
        result = bench(argv[1], json.loads(argv[2]))
    elif mode == "logits":
        result = logits(argv[1], argv[2], argv[3], json.loads(argv[4]))
    else:
        raise SystemExit("unknown mode %r; expected probe, bench or logits" % mode)
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
