"""report.json's one typed definition: the shipped JSON Schema is generated from it, and bad files say what is wrong."""

from __future__ import annotations

import json

import pytest

from edgetune import report_json
from edgetune.errors import BadInput
from helpers import report_dict


def test_the_shipped_json_schema_is_the_dataclasses():
    assert json.loads(report_json.SCHEMA_FILE.read_text()) == report_json.json_schema(), \
        "regenerate it: python -m edgetune.report_json > edgetune/report.schema.json"


def test_a_report_round_trips_through_the_definition(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report_dict()))
    report = report_json.read(path)
    assert report.comparison["shipped"].p95_ci == [0.97, 1.03] and report.host.threads == 1
    report_json.write(report, tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == report_dict() | {
        "latency_ms": report_dict()["latency_ms"] | {"samples": []}}


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("accuracy"), "missing accuracy"),
    (lambda r: r["latency_ms"].pop("p95"), "missing required key 'latency_ms.p95'"),
    (lambda r: r["budgets"]["p95_ms"].update(ok="yes"), "'budgets.p95_ms.ok' must be bool"),
    (lambda r: r.update(schema_version=99), "schema_version 99"),
])
def test_a_bad_report_names_the_file_and_what_is_wrong(tmp_path, change, message):
    raw = report_dict()
    change(raw)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(BadInput) as err:
        report_json.read(path)
    assert str(path) in str(err.value) and message in str(err.value)
