"""Correctness of an aarch64 bundle without a board: run it under qemu user-mode emulation, compare with this host.

What runs is what ships: the aarch64 onnxruntime wheel (the same version as this host's) and its ARM int8/fp32
kernels, inside a minimal Debian arm64 userland, on the target's CPU model (qemu -cpu, with a matching fake
/proc/cpuinfo). The same texts run through the same script (edgetune/on_device.py, mode `logits`) here, and the
two sets of logits are compared: prediction agreement, max |logit difference|, which predictions change.
Emulated time means nothing, so nothing here is timed: correctness only.

Needs root, qemu-user-static, mmdebstrap and unshare (util-linux). The userland and the wheels are downloaded
once and cached under $EDGETUNE_CACHE/arm64 (default ~/.cache/edgetune/arm64). Why it is done this way
(onnxruntime >= 1.2x segfaults at import when it reads the host's x86 /proc/cpuinfo,
hence the private mount namespace with an ARM one bound over it).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgetune import artifacts
from edgetune.errors import BadInput, StageFailed
from edgetune.runtime import cpu_model_and_flags, file_sha256
from edgetune.remote import device_script
from edgetune.targets import Target

SUITE = "trixie"  # Debian 13: python3.13; pinned so a cache entry means one userland
PACKAGES = ("python3", "libgomp1", "libstdc++6")
NOTE = ("Correctness only, no timing: the bundle ran under qemu user-mode emulation of the target's CPU "
        "(aarch64 onnxruntime wheel, ARM kernels); emulated time says nothing about the device's latency.")

# qemu -cpu models to try for each core, best first: same ISA level and features (user mode has no timing,
# so only the instruction set matters). qemu has no Cortex-A78AE; Cortex-A76 is ARMv8.2-A + dot-product too.
QEMU_CPUS = {
    "cortex-a76": ("cortex-a76", "neoverse-n1"),
    "cortex-a78ae": ("cortex-a78ae", "cortex-a78", "cortex-a76", "neoverse-n1"),
    "cortex-a78": ("cortex-a78", "cortex-a76", "neoverse-n1"),
    "cortex-a72": ("cortex-a72",),
    "cortex-a55": ("cortex-a55", "cortex-a76"),
    "cortex-a53": ("cortex-a53",),
    "neoverse-n1": ("neoverse-n1", "cortex-a76"),
}
# The fake /proc/cpuinfo shows the real core's MIDR (onnxruntime picks some kernels by core) and the Linux
# feature names of its ISA.
MIDR = {"cortex-a53": ("0xd03", 4), "cortex-a55": ("0xd05", 2), "cortex-a72": ("0xd08", 3),
        "cortex-a76": ("0xd0b", 1), "neoverse-n1": ("0xd0c", 1), "cortex-a78": ("0xd41", 1), "cortex-a78ae": ("0xd42", 1)}
V80_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
V82_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"


def cache_root() -> Path:
    return Path(os.environ.get("EDGETUNE_CACHE", "~/.cache/edgetune")).expanduser() / "arm64"


def mirror() -> str:
    return os.environ.get("EDGETUNE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


# --- tools ------------------------------------------------------------------------------------------------

def qemu_binary() -> str | None:
    return shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")


def missing_tools() -> list[str]:
    """What this host lacks to emulate, each with how to get it; empty when everything is there."""
    missing = []
    if not qemu_binary():
        missing.append("qemu-aarch64-static (apt-get install qemu-user-static)")
    if not shutil.which("mmdebstrap") and not (cache_root() / f"rootfs-{SUITE}").is_dir():
        missing.append("mmdebstrap (apt-get install mmdebstrap)")
    if not shutil.which("unshare") or not shutil.which("mount"):
        missing.append("unshare and mount (apt-get install util-linux mount)")
    if os.geteuid() != 0:
        missing.append("root (the fake /proc/cpuinfo is bind-mounted in a private mount namespace: run as root)")
    return missing


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise BadInput("aarch64 emulation needs " + "; ".join(missing) +
                       ". On Debian/Ubuntu: `sudo apt-get install qemu-user-static mmdebstrap util-linux`, then rerun as root.")


def qemu_cpus() -> list[str]:
    out = subprocess.run([qemu_binary(), "-cpu", "help"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]


def pick_cpu(target: Target) -> tuple[str, str, str | None]:
    """(the target's core, the qemu CPU model used, a note when that is not the core itself)."""
    core = (target.cpu or ("cortex-a76" if "asimddp" in target.isa else "cortex-a72")).lower()
    available = qemu_cpus()
    for model in QEMU_CPUS.get(core, (core,)):
        if model in available:
            note = None if model == core else f"qemu has no {core}; emulating {model}, the closest model it has (same ISA level)"
            if target.cpu is None:
                note = f"{target.name} names no cpu; assumed {core} from its isa {list(target.isa)}" + (f"; {note}" if note else "")
            return core, model, note
    raise BadInput(f"qemu ({qemu_binary()}) supports none of {', '.join(QEMU_CPUS.get(core, (core,)))} for {core}; "
                   f"it has: {', '.join(available)}. Set `cpu:` in {target.source or 'the target profile'} to one of those.")


# --- the cached userland and wheels -----------------------------------------------------------------------

def userland() -> Path:
    """A minimal Debian arm64 root with python3 (mmdebstrap --variant=extract: no emulation needed to make it)."""
    final = cache_root() / f"rootfs-{SUITE}"
    if (final / "usr" / "bin" / "python3").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    artifacts.remove_stale_staging(final.parent)
    with artifacts.staging(final) as tmp:
        root = tmp / "root"
        command = ["mmdebstrap", "--arch=arm64", "--variant=extract", f"--include={','.join(PACKAGES)}", SUITE, str(root), mirror()]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise StageFailed(f"making the arm64 userland failed ({' '.join(command)}):\n{proc.stderr.strip()[-1500:]}\n"
                              "Check that the Debian mirror is reachable (set EDGETUNE_DEBIAN_MIRROR to another one).")
        for link in ("lib", "bin", "sbin"):  # extract makes no merged-/usr links; qemu looks for /lib/ld-linux-aarch64.so.1
            if not (root / link).exists():
                (root / link).symlink_to(f"usr/{link}")
        os.rename(root, tmp / "rootfs")
        artifacts.publish(tmp / "rootfs", final)
    return final


def guest_python(root: Path) -> str:
    """'3.13' for the userland's /usr/bin/python3."""
    target = os.readlink(root / "usr" / "bin" / "python3")
    match = re.search(r"python(\d+\.\d+)", target)
    if not match:
        raise StageFailed(f"{root}/usr/bin/python3 -> {target}: cannot tell the Python version; remove {root} and rerun")
    return match.group(1)


def wheels(python: str) -> tuple[Path, dict[str, str]]:
    """aarch64 wheels of this host's onnxruntime, numpy and tokenizers versions, for the guest's Python."""
    pins = {name: importlib.metadata.version(name) for name in ("onnxruntime", "numpy", "tokenizers")}
    tag = hashlib.sha256(json.dumps([python, pins], sort_keys=True).encode()).hexdigest()[:12]
    final = cache_root() / f"site-cp{python.replace('.', '')}-{tag}"
    if (final / "onnxruntime").is_dir():
        return final, pins
    with artifacts.staging(final) as tmp:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64",
                   "--platform", "manylinux_2_17_aarch64", "--only-binary=:all:", "--python-version", python,
                   "--implementation", "cp", "--target", str(tmp / "site")]
        # This host's exact versions first; when numpy/tokenizers have no wheel for the guest's Python, only
        # onnxruntime stays pinned (it is what runs the kernels; the others only feed it).
        for wanted in ([f"{n}=={v}" for n, v in pins.items()], [f"onnxruntime=={pins['onnxruntime']}", "numpy", "tokenizers"]):
            shutil.rmtree(tmp / "site", ignore_errors=True)
            proc = subprocess.run(command + wanted, capture_output=True, text=True, timeout=1800)
            if proc.returncode == 0:
                break
        else:
            raise StageFailed(f"downloading aarch64 wheels for Python {python} failed ({' '.join(command[3:] + wanted)}):\n"
                              f"{proc.stderr.strip()[-1500:]}")
        artifacts.publish(tmp / "site", final)
    return final, pins


def fake_cpuinfo(core: str, cores: int) -> Path:
    part, revision = MIDR.get(core, ("0xd0b", 1))
    features = V80_FEATURES if core in ("cortex-a53", "cortex-a72") else V82_FEATURES
    blocks = [f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
              f"CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: {part}\nCPU revision\t: {revision}\n" for i in range(cores)]
    path = cache_root() / f"cpuinfo-{core}-{cores}"
    path.write_text("\n".join(blocks) + "\n")
    return path


def emulated_command(root: Path, site: Path, qemu_cpu: str, cpuinfo: Path, args: list[str]) -> list[str]:
    """argv that runs the guest python3 with `args` under qemu, with `cpuinfo` bound over /proc/cpuinfo."""
    inner = [qemu_binary(), "-cpu", qemu_cpu, "-L", str(root), "-E", f"PYTHONPATH={site}", "-E", "OMP_NUM_THREADS=1",
             "-E", "PYTHONDONTWRITEBYTECODE=1", str(root / "usr" / "bin" / "python3"), *args]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /proc/cpuinfo && exec "$@"', str(cpuinfo), *inner]


# --- verify -----------------------------------------------------------------------------------------------

def host_logits(bundle: Path, texts: list[str], settings: dict) -> tuple[np.ndarray, dict]:
    from edgetune import on_device

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "texts.json").write_text(json.dumps(texts))
        info = on_device.logits(str(bundle), str(Path(tmp) / "texts.json"), str(Path(tmp) / "host.npy"), settings)
        return np.load(Path(tmp) / "host.npy"), info


def emulated_logits(bundle: Path, texts: list[str], settings: dict, target: Target) -> tuple[np.ndarray, dict]:
    require_tools()
    core, qemu_cpu, cpu_note = pick_cpu(target)
    root = userland()
    python = guest_python(root)
    site, _ = wheels(python)
    cpuinfo = fake_cpuinfo(core, target.cores)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "texts.json").write_text(json.dumps(texts))
        out = Path(tmp) / "arm.npy"
        script = Path(tmp) / "on_device.py"  # the one file a board gets: on_device.py with the runtime inlined
        script.write_bytes(device_script())
        command = emulated_command(root, site, qemu_cpu, cpuinfo, [str(script), "logits", str(bundle.resolve()),
                                                                    str(Path(tmp) / "texts.json"), str(out), json.dumps(settings)])
        proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0 or not out.exists():
            raise StageFailed(f"the bundle failed under aarch64 emulation (qemu -cpu {qemu_cpu}, exit {proc.returncode}):\n"
                              f"{proc.stderr.strip()[-2000:]}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        info |= {"qemu": subprocess.run([qemu_binary(), "--version"], capture_output=True, text=True).stdout.splitlines()[0],
                 "cpu": core, "qemu_cpu": qemu_cpu, "userland": f"Debian {SUITE} arm64 ({root})", "wheels": str(site)}
        if cpu_note:
            info["cpu_note"] = cpu_note
        return np.load(out), info


def compare(host: np.ndarray, arm: np.ndarray, texts: list[str], label_names: list[str],
            truth: list[int] | None = None) -> dict:
    """Agreement of two logit matrices for the same texts: argmax, logit differences, per-class changes."""
    diff = np.abs(host.astype(np.float64) - arm.astype(np.float64))
    host_pred, arm_pred = host.argmax(-1), arm.argmax(-1)
    changed = np.flatnonzero(host_pred != arm_pred)
    per_class = {}
    for i, name in enumerate(label_names):
        entry = {"host": int((host_pred == i).sum()), "arm": int((arm_pred == i).sum()),
                 "lost": int(((host_pred == i) & (arm_pred != i)).sum()),
                 "gained": int(((host_pred != i) & (arm_pred == i)).sum())}
        per_class[name] = entry
    top2 = np.sort(host, axis=-1)[:, -2:]
    result = {
        "texts": len(texts),
        "agreement": float(np.mean(host_pred == arm_pred)),
        "changed_predictions": int(len(changed)),
        "max_abs_logit_diff": float(diff.max()),
        "mean_abs_logit_diff": float(diff.mean()),
        "p99_abs_logit_diff": float(np.percentile(diff.max(-1), 99)),
        "per_class": per_class,
        "changed": [{"text": texts[i], "host": label_names[host_pred[i]], "arm": label_names[arm_pred[i]],
                     "host_margin": float(top2[i, 1] - top2[i, 0]), "max_abs_logit_diff": float(diff[i].max())}
                    for i in changed[:50]],
    }
    if truth is not None:
        truth_arr = np.asarray(truth)
        result["accuracy"] = {"host": float(np.mean(host_pred == truth_arr)), "arm": float(np.mean(arm_pred == truth_arr))}
    return result


def check_arch(target: Target) -> None:
    if target.arch != "aarch64":
        raise BadInput(f"edgetune verify emulates aarch64 targets; {target.name} is {target.arch}: its bundle runs on "
                       "an x86-64 host as it is (edgetune bench measures it)")


def verify_bundle(bundle: Path, target: Target, texts: list[str], truth: list[int] | None = None,
                  *, texts_source: str = "") -> dict:
    """Run `bundle` here and under aarch64 emulation of `target` on `texts`; the verify.json content."""
    check_arch(target)
    bundle = artifacts.require_bundle(bundle, target.name, texts, "verify")
    require_tools()
    labels = json.loads((bundle / "labels.json").read_text())
    settings = {"threads": 1, "batch_size": 16, "provider": "CPUExecutionProvider"}  # identical feeds on both sides
    started = time.perf_counter()
    arm, arm_info = emulated_logits(bundle, texts, settings, target)
    host, host_info = host_logits(bundle, texts, settings)
    if host.shape != arm.shape:
        raise StageFailed(f"logit shapes differ: host {host.shape}, aarch64 {arm.shape}")
    return {
        "schema_version": 1,
        "kind": "emulated-correctness",
        "note": NOTE,
        "target": target.name,
        "bundle": str(bundle.resolve()),
        "model_sha256": file_sha256(bundle / "model.onnx"),
        "texts_source": texts_source,
        "texts_sha256": hashlib.sha256(json.dumps(texts).encode()).hexdigest(),
        "settings": settings,
        "emulated": arm_info,
        "host": host_info | {"cpu": cpu_model_and_flags()[0], "machine": platform.machine()},
        **compare(host, arm, texts, labels, truth),
        "seconds": round(time.perf_counter() - started, 1),
    }


def summary_line(result: dict) -> str:
    cpu = result["emulated"]["qemu_cpu"]
    line = (f"{result['target']} verify (aarch64 emulation, qemu -cpu {cpu}, onnxruntime {result['emulated']['onnxruntime']}): "
            f"{result['texts'] - result['changed_predictions']}/{result['texts']} identical predictions "
            f"({result['agreement']:.1%}), max |logit diff| {result['max_abs_logit_diff']:.2e}")
    if "accuracy" in result:
        line += f", accuracy arm {result['accuracy']['arm']:.4f} vs host {result['accuracy']['host']:.4f}"
    return line + ". Correctness only, no timing."


def verify_texts(bundle: Path, inputs: Path | None, recipe_path: Path | None, data: Path | None,
                 overrides: tuple[str, ...]) -> tuple[list[str], list[int] | None, str]:
    """The texts to verify on: --inputs CSV, else the recipe/--data test split (as build reads it), else the
    test split the bundle's manifest names, else the default recipe's."""
    from edgetune.data import table_rows
    from edgetune.readers import read_table

    labels = json.loads((bundle / "labels.json").read_text())
    path, columns = None, ("text", "label")
    if inputs is not None:
        path = Path(inputs)
    elif recipe_path is not None or data is not None or overrides:
        from edgetune.recipe import load_recipe

        data_cfg = load_recipe(recipe_path, overrides=tuple(overrides), data_dir=data).data
        path, columns = Path(data_cfg.test), (data_cfg.text_column, data_cfg.label_column)
    else:
        manifest = artifacts.read_manifest(bundle) or {}
        named = manifest.get("material", {}).get("config", {}).get("data", {})
        if named.get("test") and Path(named["test"]).is_file():
            path = Path(named["test"])
            columns = (named.get("text_column", "text"), named.get("label_column", "label"))
        else:
            from edgetune.recipe import load_recipe

            path = Path(load_recipe().data.test)
    table = read_table(path)
    rows = table_rows(table, columns if columns[1] in table.columns else columns[:1])
    texts = [r[columns[0]].strip() for r in rows]
    truth = None
    if rows and columns[1] in rows[0] and all(r[columns[1]].strip() in labels for r in rows):
        truth = [labels.index(r[columns[1]].strip()) for r in rows]
    return texts, truth, str(path)


def run_verify(target_name: str, out: Path, *, recipe: Path | None = None, data: Path | None = None,
               overrides: tuple[str, ...] = (), inputs: Path | None = None, min_agreement: float = 0.99) -> dict:
    """`edgetune verify`: writes OUT/<target>/verify.json, prints one line; StageFailed below min_agreement."""
    from edgetune.console import console, log
    from edgetune.targets import load_target

    target = load_target(target_name)
    bundle = Path(out) / target.name / "bundle"
    check_arch(target)
    if not (bundle / "model.onnx").is_file():
        raise BadInput(f"{bundle}: no bundle; build it first: edgetune build --target {target_name} --out {out}")
    texts, truth, source = verify_texts(bundle, inputs, recipe, data, overrides)
    require_tools()
    log(f"running {len(texts)} texts from {source} under aarch64 emulation (first run downloads the arm64 userland "
        f"and wheels into {cache_root()})")
    result = verify_bundle(bundle, target, texts, truth, texts_source=source)
    result["min_agreement"] = min_agreement
    result["ok"] = result["agreement"] >= min_agreement
    artifacts.write_json(Path(out) / target.name / "verify.json", result)
    console.print(summary_line(result))
    for change in result["changed"][:5]:
        console.print(f"  changed: {change['text']!r}: host {change['host']} -> arm {change['arm']} "
                      f"(host margin {change['host_margin']:.3f})")
    console.print(f"verify: {Path(out) / target.name / 'verify.json'}")
    if not result["ok"]:
        raise StageFailed(f"{target.name}: only {result['agreement']:.1%} of predictions agree between this host and "
                          f"aarch64 emulation (minimum {min_agreement:.1%}); see the changed texts in verify.json")
    return result
