"""Runs ON the device (or under emulation): needs only Python 3.8+, onnxruntime, numpy and tokenizers.

edgetune sends it to the device's interpreter on stdin (`python - MODE ...`) with edgetune/runtime.py inlined in
front of it as the module `edgetune_runtime` (edgetune.remote.device_script), so the device needs no edgetune
install and always runs the script, and the timing rules, that match the host's edgetune.

    python - probe DIR SETTINGS      JSON: which packages import, sha256 of the files under DIR, free disk, host
    python - bench DIR SETTINGS      install DIR/.incoming, then latency, cold start, peak RSS, predictions
    python - logits BUNDLE TEXTS OUT SETTINGS   write the logits for TEXTS (a JSON list) to OUT (.npy); JSON summary

SETTINGS is a JSON object (see edgetune.remote.bench_settings). Every mode prints one JSON object as the last
line of stdout. Timing is edgetune.runtime.measure, the bench's own: warm-up, then blocks of runs until the
p95's 95% bootstrap interval is within ci_relative_halfwidth, with a floor (min_runs) and caps (max_runs,
max_seconds); the summary is the runtime's too, so the device and the host give one statistic.
"""

import json
import os
import platform
import shutil
import sys
import time

try:
    import edgetune_runtime as runtime  # inlined in front of this script by edgetune.remote.device_script
except ImportError:
    from edgetune import runtime  # run from an edgetune checkout (verify's host side, tests)


def files_under(root):
    """{relative path: sha256} of the regular files under root, .incoming excluded."""
    found = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".incoming"]
        for name in names:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = runtime.file_sha256(path)
    return found


def free_bytes(path):
    while not os.path.isdir(path):
        path = os.path.dirname(path) or "."
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


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

        result["host"] = runtime.describe_host(settings["threads"], settings["provider"])
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


def bench(root, settings):
    root = os.path.expanduser(root)
    install_incoming(root, settings["expected_files"])
    with open(os.path.join(root, "texts.json")) as handle:
        texts = json.load(handle)
    bundle = os.path.join(root, "bundle")
    host = runtime.describe_host(settings["threads"], settings["provider"])

    # Cold start: tokenizer + session + first inference, in this fresh process (imports done above).
    start = time.perf_counter()
    tokenizer = runtime.load_tokenizer(bundle)
    session = runtime.open_session(os.path.join(bundle, "model.onnx"), host["threads"], settings["provider"])
    session.run(None, runtime.encode(texts[:1], tokenizer, session))
    cold_ms = (time.perf_counter() - start) * 1e3
    predictions = [int(x) for x in runtime.logits(texts, tokenizer, session).argmax(-1)]
    with open("/proc/self/status") as handle:  # VmHWM: this process's own peak, as bench's cold-start child
        peak_mb = next(int(l.split()[1]) for l in handle if l.startswith("VmHWM")) / 1024

    feeds = runtime.latency_feeds(texts, tokenizer, session, settings["batch_size"], settings["sequence_length"],
                                  settings["seed"])
    rule = runtime.StopRule.of(settings)
    latency = runtime.measure({"shipped": runtime.Runner(lambda feed: session.run(None, feed), feeds)}, rule)["shipped"]
    lengths = [int(f["input_ids"].shape[1]) for f in feeds]
    return {"host": host, "samples_ms": latency.samples_ms, "stopped_because": latency.stopped_because,
            "latency_ms": latency.summary(), "cold_start_ms": cold_ms, "peak_rss_mb": peak_mb,
            "predictions": predictions, "sequence_lengths": lengths}


def logits(bundle, texts_path, out_path, settings):
    import numpy as np
    import onnxruntime
    import tokenizers

    with open(texts_path) as handle:
        texts = json.load(handle)
    tokenizer = runtime.load_tokenizer(bundle)
    session = runtime.open_session(os.path.join(bundle, "model.onnx"), settings.get("threads", 1),
                                   settings.get("provider", "CPUExecutionProvider"))
    out = runtime.logits(texts, tokenizer, session, settings.get("batch_size", 16))
    np.save(out_path, out.astype(np.float32))
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
