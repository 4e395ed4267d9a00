"""EDGETUNE_REQUIRE turns the skip of a required test group into a failure that gives the skip's reason."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
SUITE = '''
import pytest
from required_groups import needs

@needs("ssh")
@pytest.mark.skipif(True, reason="no sshd here")
def test_ssh():
    pass

@needs("ssh", "tmpfs")
def test_ssh_on_a_small_disk():
    pytest.skip("cannot mount a tmpfs here")

def test_plain():
    pytest.skip("nothing to do with a group")
'''


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                          "from required_groups import (pytest_configure, pytest_report_header,\n"
                          "                             pytest_runtest_makereport)\n")
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_without_the_variable_group_tests_skip_and_say_why(suite, monkeypatch):
    monkeypatch.delenv("EDGETUNE_REQUIRE", raising=False)
    result = suite.runpytest_inprocess("-rfEs")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["EDGETUNE_REQUIRE: none*", "SKIPPED*no sshd here"])


def test_a_required_groups_skip_fails_with_the_reason(suite, monkeypatch):
    monkeypatch.setenv("EDGETUNE_REQUIRE", "ssh, emulation")
    result = suite.runpytest_inprocess("-rfEs")
    # test_ssh fails (an error: its skipif acts at setup); the tmpfs test may skip (tmpfs is not required), as
    # may a test in no group.
    result.assert_outcomes(errors=1, skipped=2)
    result.stdout.fnmatch_lines(["ERROR test_suite.py::test_ssh - EDGETUNE_REQUIRE requires the ssh tests to run, "
                                 "but this one skipped: Skipped: no sshd here*"])
    assert result.ret == 1


def test_every_group_of_a_test_required_fails_its_skip(suite, monkeypatch):
    monkeypatch.setenv("EDGETUNE_REQUIRE", "ssh,tmpfs")
    suite.runpytest_inprocess().assert_outcomes(errors=1, failed=1, skipped=1)


def test_an_unknown_group_is_a_usage_error_not_ignored(suite, monkeypatch):
    monkeypatch.setenv("EDGETUNE_REQUIRE", "ssh,emulaton")
    result = suite.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown group(s) emulaton*known: ssh, emulation, tmpfs, data*"])
