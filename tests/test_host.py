"""Whether a measurement ran on the target: this host's description, and the mismatch note for each case."""

from __future__ import annotations

import os
import platform
from dataclasses import replace

import pytest

from edgetune import host as hostinfo
from edgetune.runtime import cgroup_cpu_quota, usable_cpus
from edgetune.targets import load_target

# /proc/cpuinfo "Features" of a Raspberry Pi 5 (Cortex-A76) under a 64-bit kernel. arm64 kernels report
# Advanced SIMD as "asimd"; the 32-bit name "neon" never appears there.
PI5_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"


def host_like(arch: str, features: str, cores: int, cpu: str = "test cpu") -> dict:
    """The fields target_mismatch reads, filtered the way host.describe() filters /proc/cpuinfo flags."""
    flags = sorted(f for f in features.split() if f in hostinfo.INTERESTING_FLAGS)
    return {"cpu": cpu, "arch": arch, "flags": flags, "cores": cores}


def test_describe_reports_this_host_and_caps_threads_at_its_cores():
    target = replace(load_target("x86-avx512-vnni"), threads=16)
    host = hostinfo.describe(target)
    cores = usable_cpus()
    assert cores <= (os.cpu_count() or 1)
    assert host["arch"] == platform.machine()
    assert host["cores"] == cores
    assert host["threads"] == min(16, cores)
    assert ("threads_note" in host) == (cores < 16)
    assert host["execution_provider"] == "CPUExecutionProvider"
    assert set(host["flags"]) <= set(hostinfo.INTERESTING_FLAGS)


def test_other_architecture_is_never_the_target():
    note = hostinfo.target_mismatch(load_target("rpi5"), host_like("x86_64", "avx2 fma", 64, cpu="Big Xeon"))
    assert note is not None
    assert "NOT on the target rpi5" in note and "aarch64" in note and "x86_64" in note and "Big Xeon" in note


def test_fewer_cores_than_the_target_is_a_stand_in():
    note = hostinfo.target_mismatch(load_target("x86-avx2"), host_like("x86_64", "sse4_2 avx2 fma", 2))
    assert note is not None and "2 of the target's 4 cores" in note and "stand-in for x86-avx2" in note


def test_missing_isa_feature_is_named():
    note = hostinfo.target_mismatch(load_target("x86-avx512-vnni"), host_like("x86_64", "avx2 fma avx512f", 32))
    assert note is not None and "lacks avx512_vnni" in note


def test_matching_x86_host_is_the_target():
    host = host_like("x86_64", "sse4_2 avx2 fma", 4)
    assert hostinfo.target_mismatch(load_target("x86-avx2"), host) is None


@pytest.mark.parametrize(("target", "cores", "cpu"), [("rpi5", 4, "Cortex-A76"), ("jetson-orin", 6, "Cortex-A78AE")])
def test_the_arm_board_itself_is_recognised_as_its_target(target, cores, cpu):
    """On the real board (ARMv8.2-A: the Pi 5's feature names) the report must say it ran on the target."""
    host = host_like("aarch64", PI5_FEATURES, cores, cpu=cpu)
    assert hostinfo.target_mismatch(load_target(target), host) is None


def write_cgroup(tmp_path, files: dict, own: str = "0::/job\n"):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "self-cgroup").write_text(own)
    return str(tmp_path), str(tmp_path / "self-cgroup")


def test_a_cgroup_v2_quota_caps_the_usable_cpus(tmp_path):
    root, own = write_cgroup(tmp_path, {"job/cpu.max": "150000 100000\n", "cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, own) == 1.5
    assert usable_cpus(root, own) == min(2, len(os.sched_getaffinity(0)))  # 1.5 CPUs: two threads, not the machine's


def test_an_unlimited_or_absent_cgroup_leaves_the_affinity_mask(tmp_path):
    root, own = write_cgroup(tmp_path, {"job/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, own) is None
    assert usable_cpus(root, own) == len(os.sched_getaffinity(0))
    assert cgroup_cpu_quota(str(tmp_path / "none"), own) is None


def test_a_cgroup_v1_quota_is_read_too(tmp_path):
    root, own = write_cgroup(tmp_path, {"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"},
                             own="4:cpu,cpuacct:/\n")
    assert cgroup_cpu_quota(root, own) == 1.0
    assert usable_cpus(root, own) == 1
