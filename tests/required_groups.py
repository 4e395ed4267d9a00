"""Test groups that need something outside Python: a real SSH server, aarch64 emulation, a tmpfs, the shared data.

Where a group's tools are missing its tests skip and say why (pytest prints the reasons: `-rfEs` in addopts).
EDGETUNE_REQUIRE names the groups that must run (comma-separated, e.g. `ssh,emulation`): there a skip of one of
their tests is a failure, so a CI machine that installed those tools cannot pass with the group quietly gone.
.ci/run sets it for what it installed. A test needing several groups fails only when all of them are required.
"""

from __future__ import annotations

import os

import pytest

ENV = "EDGETUNE_REQUIRE"
GROUPS = {
    "ssh": "the remote runner against a throwaway OpenSSH server (openssh-server, openssh-client)",
    "emulation": "aarch64 user-mode emulation (root, qemu-user-static, mmdebstrap; downloads a Debian userland)",
    "tmpfs": "a small tmpfs mounted as a full disk (root, and a system that allows mounting)",
    "data": "the real data sets in ../shared/data (slow tests)",
}


def needs(*groups: str) -> pytest.MarkDecorator:
    """Mark a test (or, as pytestmark, a module) as needing these groups."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown test group(s) {sorted(unknown)}; known: {', '.join(GROUPS)}")
    return pytest.mark.needs(*groups)


def required() -> set[str]:
    """The groups EDGETUNE_REQUIRE names; a name not in GROUPS is a usage error, not silently ignored."""
    names = {n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()}
    unknown = names - set(GROUPS)
    if unknown:
        raise pytest.UsageError(f"{ENV}={os.environ[ENV]}: unknown group(s) {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(GROUPS)}")
    return names


def groups_of(item: pytest.Item) -> set[str]:
    return {g for mark in item.iter_markers("needs") for g in mark.args}


def skip_is_failure(item: pytest.Item, required_groups: set[str]) -> set[str] | None:
    """The required groups a skip of `item` would leave untested, or None when the skip is allowed."""
    groups = groups_of(item)
    return groups if groups and groups <= required_groups else None


# --- pytest hooks (conftest.py imports them) -----------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*groups): needs system tools (tests/required_groups.py); "
                                       f"{ENV}=group,... turns their skips into failures")
    config.edgetune_required = required()


def pytest_report_header(config):
    groups = ", ".join(sorted(config.edgetune_required)) or "none"
    return f"{ENV}: {groups} (a skipped test of these groups fails)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test of a required group is reported as failed, with the skip's reason."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    groups = skip_is_failure(item, item.config.edgetune_required)
    if groups:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{ENV} requires the {', '.join(sorted(groups))} tests to run, but this one skipped: {reason}"
