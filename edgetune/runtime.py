"""The torch-free runtime: what running and timing an ONNX bundle needs, on this host, a board or under emulation.

One module for: the host description, file sha256, session options, tokenizer loading and feeds, the bootstrap,
and the interleaved timing loop with its adaptive stop. bench, gate, sensitivity, the benchmarks, the bundle's
predict.py and the on-device script all call it, so the device and the host compute the same statistic by the
same rules.

It ships as it is: beside predict.py in every bundle and inlined in front of on_device.py when that is sent to a
board (edgetune.remote.device_script), both as the top-level module `edgetune_runtime`. Hence: Python 3.8+, the
standard library at import time, numpy / onnxruntime / tokenizers imported where used (a device that lacks one is
then told so by the probe instead of failing on import), and nothing from the rest of edgetune.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import random
import time
from dataclasses import dataclass

# CPU features worth reporting: the ones target profiles name (targets/*.yaml `isa`).
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "asimd",
                     "asimddp", "i8mm", "sve", "neon")
# MIDR part numbers of common Arm cores (implementer 0x41), for a readable CPU name on aarch64 Linux,
# whose /proc/cpuinfo has no "model name".
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE",
             "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd40": "Neoverse-V1",
             "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2"}


# --- files and hosts ----------------------------------------------------------------------------------------------

def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_model_and_flags(cpuinfo: str = "/proc/cpuinfo", board_model: str = "/proc/device-tree/model"):
    """(a readable CPU name, the INTERESTING_FLAGS it has). Arm boards are named by board and core type."""
    model, flags, parts = "", set(), []
    try:
        with open(cpuinfo) as handle:
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
    if not model:
        model = _arm_name(board_model, parts) or platform.processor() or platform.machine()
    if "asimd" in flags:
        flags.add("neon")  # what arm64 Linux calls asimd; target profiles say neon
    return model, sorted(f for f in flags if f in INTERESTING_FLAGS)


def _arm_name(board_model: str, parts: list) -> str:
    board = ""
    try:
        with open(board_model) as handle:
            board = handle.read().strip("\x00\n ")
    except OSError:
        pass
    cores = " + ".join(parts)
    return "%s (%s)" % (board, cores) if board and cores else board or cores


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup", own: str = "/proc/self/cgroup"):
    """The CPUs a cgroup quota allows this process (a container's --cpus), or None when there is none.
    cgroup v2 (`cpu.max`: "QUOTA PERIOD" or "max PERIOD") in this process's own group, then v1's CFS files."""
    group = ""
    try:
        with open(own) as handle:
            group = next((line.strip().split(":", 2)[2] for line in handle if line.startswith("0::")), "")
    except (OSError, IndexError):
        pass
    candidates = [(os.path.join(root, group.lstrip("/"), "cpu.max"), None), (os.path.join(root, "cpu.max"), None)]
    for v1 in ("cpu", "cpu,cpuacct"):
        candidates.append((os.path.join(root, v1, "cpu.cfs_quota_us"), os.path.join(root, v1, "cpu.cfs_period_us")))
    for path, period_path in candidates:
        try:
            with open(path) as handle:
                fields = handle.read().split()
            if period_path:
                with open(period_path) as handle:
                    fields.append(handle.read().strip())
        except OSError:
            continue
        if len(fields) < 2 or fields[0] in ("max", "-1"):
            return None
        return int(fields[0]) / int(fields[1])
    return None


def usable_cpus(root: str = "/sys/fs/cgroup", own: str = "/proc/self/cgroup") -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (rounded up); not the
    machine's count, which os.cpu_count() gives even inside a container or a taskset."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root, own)
    return max(1, min(cpus, math.ceil(quota))) if quota else max(1, cpus)


def describe_host(threads: int, provider: str) -> dict:
    """What machine a measurement runs on; `threads` (the target's) is capped at the CPUs this process may use."""
    import onnxruntime

    cpu, flags = cpu_model_and_flags()
    cores = usable_cpus()
    host = {"cpu": cpu, "arch": platform.machine(), "flags": flags, "cores": cores, "threads": min(threads, cores),
            "onnxruntime": onnxruntime.__version__, "execution_provider": provider,
            "python": platform.python_version(), "os": platform.system() + " " + platform.release()}
    if cores < threads:
        host["threads_note"] = "target has %d threads; capped at the %d CPUs this process may use here" % (threads, cores)
    return host


# --- sessions, tokenizers, feeds ----------------------------------------------------------------------------------

def session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # No spin-waiting between runs: interleaved sessions would steal each other's cores, and a device serving
    # sporadic requests sleeps between them anyway.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(model, threads: int = 1, provider: str = "CPUExecutionProvider"):
    import onnxruntime as ort

    return ort.InferenceSession(str(model), session_options(threads), providers=[provider])


def preprocess_settings(folder, max_length: int) -> dict:
    """Truncation and padding for a Hugging Face tokenizer folder (what a bundle's preprocess.json holds)."""
    with open(os.path.join(str(folder), "tokenizer_config.json")) as handle:
        pad_token = json.load(handle).get("pad_token", "[PAD]")
    with open(os.path.join(str(folder), "tokenizer.json")) as handle:
        vocab = json.load(handle)["model"]["vocab"]
    pad_id = vocab[pad_token] if isinstance(vocab, dict) else next(i for i, (t, _) in enumerate(vocab) if t == pad_token)
    return {"max_length": max_length, "pad_id": pad_id, "pad_token": pad_token}


def load_tokenizer(folder, settings: dict = None):
    """tokenizer.json with truncation and padding from `settings` (default: the folder's preprocess.json)."""
    from tokenizers import Tokenizer

    if settings is None:
        with open(os.path.join(str(folder), "preprocess.json")) as handle:
            settings = json.load(handle)
    tokenizer = Tokenizer.from_file(os.path.join(str(folder), "tokenizer.json"))
    tokenizer.enable_truncation(settings["max_length"])
    tokenizer.enable_padding(pad_id=settings["pad_id"], pad_token=settings["pad_token"])
    return tokenizer


def encode(texts, tokenizer, session) -> dict:
    """The feed for `session`: int64 arrays padded to the batch's longest text."""
    import numpy as np

    encodings = tokenizer.encode_batch(list(texts))
    arrays = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
              "token_type_ids": [e.type_ids for e in encodings]}
    return {i.name: np.array(arrays[i.name], dtype=np.int64) for i in session.get_inputs()}


def logits(texts, tokenizer, session, batch_size: int = 32):
    """The model's logits for every text, in order, `batch_size` texts a run."""
    import numpy as np

    return np.concatenate([session.run(None, encode(texts[i:i + batch_size], tokenizer, session))[0]
                           for i in range(0, len(texts), batch_size)])


def latency_feeds(texts, tokenizer, session, batch_size: int, length=None, seed: int = 0) -> list:
    """Batches of real texts in a fixed shuffled order; padded or cut to `length` when the target fixes it."""
    import numpy as np

    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    feeds = []
    for i in range(0, len(order) - batch_size + 1, batch_size):
        feed = encode([texts[j] for j in order[i:i + batch_size]], tokenizer, session)
        if length:
            feed = {k: np.pad(v[:, :length], ((0, 0), (0, max(0, length - v.shape[1])))) for k, v in feed.items()}
        feeds.append(feed)
    return feeds


# --- answers ------------------------------------------------------------------------------------------------------

def probabilities(logits, temperature: float = 1.0):
    """Softmax of logits / temperature, row by row. The one softmax: the bundle, bench and the fitting all use it."""
    import numpy as np

    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(-1, keepdims=True)


def answers(logits, labels, confidence: dict = None) -> list:
    """(label, probability) per row. `confidence` (a bundle's confidence.json, edgetune.confidence writes it):
    `temperature` calibrates the probabilities; below `threshold` the answer is `abstain_label`, with the top
    probability still given, since no known label is sure enough to act on."""
    confidence = confidence or {}
    probs = probabilities(logits, confidence.get("temperature", 1.0))
    threshold = confidence.get("threshold")
    result = []
    for row in probs:
        best = int(row.argmax())
        abstain = threshold is not None and row[best] < threshold
        result.append((confidence["abstain_label"] if abstain else labels[best], float(row[best])))
    return result


# --- the bootstrap ------------------------------------------------------------------------------------------------

def bootstrap_percentile(samples, q: float, resamples: int, rng):
    """`resamples` draws of np.percentile(resample, q), a resample being len(samples) draws with replacement.

    Drawn exactly, without materialising the resamples: a resample's k-th order statistic is
    sorted[floor(n * U_k)] with U_k the k-th order statistic of n uniforms, U_k ~ Beta(k + 1, n - k) (0-based),
    and the next one is U_k + (1 - U_k) * Beta(1, n - k - 1). np.percentile's linear interpolation between
    those two is then applied as is. Same distribution as the brute-force bootstrap, at O(resamples) cost.
    """
    import numpy as np

    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 1:
        return np.full(resamples, x[0])
    h = (n - 1) * q / 100.0
    k = min(int(math.floor(h)), n - 1)
    frac = h - k
    u_k = rng.beta(k + 1, n - k, resamples)

    def at(u):
        return x[np.minimum((u * n).astype(np.int64), n - 1)]

    low = at(u_k)
    if frac == 0 or k + 1 >= n:
        return low
    u_next = u_k + (1.0 - u_k) * rng.beta(1, n - k - 1, resamples)
    return low + frac * (at(u_next) - low)


def percentile_ci(samples, q: float = 95, resamples: int = 1000, seed: int = 0):
    """95% bootstrap interval of the q-th percentile."""
    import numpy as np

    estimates = bootstrap_percentile(samples, q, resamples, np.random.default_rng(seed))
    lo, hi = np.percentile(estimates, [2.5, 97.5])
    return float(lo), float(hi)


def ratio_interval(base, cand, q: float, resamples: int, seed: int = 0):
    """(ratio, lo, hi): percentile q of `cand` over that of `base`, and its 95% bootstrap interval."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ratio = float(np.percentile(cand, q) / np.percentile(base, q))
    draws = bootstrap_percentile(cand, q, resamples, rng) / bootstrap_percentile(base, q, resamples, rng)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return ratio, float(lo), float(hi)


def speed_verdict(lo: float, hi: float) -> str:
    """How a candidate/base latency ratio's 95% interval reads: the candidate is slower, faster, or neither."""
    return "slower" if lo > 1 else "faster" if hi < 1 else "no clear difference"


# --- timing -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StopRule:
    """When the adaptive loop stops: the p95's 95% interval within ±ci_relative_halfwidth of it, after min_runs
    per model; or max_seconds (after min_runs); or max_runs. The recipe's `bench` section, field for field."""
    warmup_runs: int = 20
    min_runs: int = 200
    max_runs: int = 5000
    max_seconds: float = 20.0
    ci_relative_halfwidth: float = 0.05

    @classmethod
    def of(cls, settings) -> "StopRule":
        """From any object or mapping with these fields (the recipe's BenchConfig, the device's settings JSON)."""
        get = settings.get if isinstance(settings, dict) else lambda name: getattr(settings, name)
        return cls(**{name: get(name) for name in cls.__dataclass_fields__})

    def __call__(self, samples: list, elapsed: float):
        """Why to stop now, or None to go on."""
        done = min(len(s) for s in samples)
        if done >= self.min_runs and all(self.narrow(s) for s in samples):
            return "p95 interval within \u00b1%.0f%%" % (self.ci_relative_halfwidth * 100)
        if elapsed > self.max_seconds and done >= self.min_runs:
            return "max_seconds (%g) reached" % self.max_seconds
        return None

    def narrow(self, samples) -> bool:
        import numpy as np

        lo, hi = percentile_ci(samples, 95, resamples=300)
        return (hi - lo) / 2 <= self.ci_relative_halfwidth * float(np.percentile(samples, 95))


@dataclass
class Latency:
    samples_ms: list
    stopped_because: str

    def summary(self) -> dict:
        import numpy as np

        s = np.asarray(self.samples_ms)
        return {"p50": float(np.percentile(s, 50)), "p95": float(np.percentile(s, 95)),
                "p99": float(np.percentile(s, 99)), "p95_ci": list(percentile_ci(s, 95, resamples=2000)),
                "p50_ci": list(percentile_ci(s, 50, resamples=2000)), "mean": float(s.mean()), "runs": len(s),
                "stopped_because": self.stopped_because}


@dataclass
class Runner:
    """One model in the loop: run(feed), and the feeds it replays in turn. `run` may be swapped between rounds."""
    run: object
    feeds: list


def time_interleaved(runners: list, stop, *, block: int, rewarm: int = 0, max_runs: int = None,
                     between=None, on_round=None):
    """Time the runners round-robin in blocks of `block` runs over their replayed feeds, so whatever else the
    machine does lands on all of them alike. Block i of every runner replays the same feed positions; the order
    rotates each round so no runner always goes first. With several runners, each block starts with `rewarm`
    untimed runs: switching models evicts the other's weights from the caches, and a device runs one model.

    stop(samples, elapsed) -> reason or None, checked after every round; `between(round, elapsed)` may swap runners'
    `run` (the gate reopens sessions); `on_round(done, elapsed)` reports progress. Returns (samples, reason).
    """
    samples = [[] for _ in runners]
    clock = time.perf_counter_ns
    position, rounds, started = 0, 0, time.perf_counter()
    rewarm = rewarm if len(runners) > 1 else 0
    while True:
        size = block if max_runs is None else min(block, max_runs - position)
        for index in _rotated(len(runners), rounds):
            run, feeds, out = runners[index].run, runners[index].feeds, samples[index]
            for i in range(rewarm):
                run(feeds[(position - rewarm + i) % len(feeds)])
            for j in range(size):
                feed = feeds[(position + j) % len(feeds)]
                t0 = clock()
                run(feed)
                out.append((clock() - t0) / 1e6)
        position, rounds = position + size, rounds + 1
        elapsed = time.perf_counter() - started
        if on_round:
            on_round(position, elapsed)
        reason = stop(samples, elapsed)
        if reason is None and max_runs is not None and position >= max_runs:
            reason = "max_runs (%d) reached" % max_runs
        if reason:
            return samples, reason
        if between:
            between(rounds, elapsed)


def _rotated(n: int, shift: int) -> list:
    order = list(range(n))
    return order[shift % n:] + order[:shift % n]


def warm_up(runners: list, runs: int) -> None:
    for i in range(runs):
        for runner in runners:
            runner.run(runner.feeds[i % len(runner.feeds)])


def measure(runners: dict, rule: StopRule, *, block: int = 50, rewarm: int = 5, on_round=None) -> dict:
    """The bench's measurement: warm-up, then time_interleaved until `rule` stops it. name -> Latency."""
    names = list(runners)
    warm_up([runners[name] for name in names], rule.warmup_runs)
    samples, reason = time_interleaved([runners[name] for name in names], rule, block=block, rewarm=rewarm,
                                       max_runs=rule.max_runs, on_round=on_round)
    return {name: Latency(s, reason) for name, s in zip(names, samples)}
