"""What users see must not change by accident: `gradverify check` on every bundled config and zoo
case, table and JSON, byte for byte against tests/golden (regenerate on purpose with
`python tests/golden/regen.py` and read the diff).

Byte for byte holds for the numpy the files were made with (tests/golden/NUMPY): another numpy
may round the last digits of an error column differently. With another numpy the verdicts are
compared instead: exit code, every node's status, the blame, the loss to 1e-12."""
import json
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "golden"))
import regen  # noqa: E402

SAME_NUMPY = (regen.HERE / "NUMPY").read_text().strip() == np.__version__


def verdicts(doc: dict) -> tuple:
    return (doc["status"], doc["exit_code"], [(n["name"], n["status"]) for n in doc["nodes"]],
            [b["node"] for b in doc["blame"]])


@pytest.mark.parametrize("path", regen.cases(), ids=regen.golden_name)
def test_check_output_unchanged(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    got = regen.outputs(path)
    name = regen.golden_name(path)
    want = {fmt: (regen.HERE / f"{name}.{ext}").read_text(encoding="utf-8")
            for fmt, ext in (("table", "txt"), ("json", "json"))}
    if SAME_NUMPY:
        for fmt in ("table", "json"):
            assert got[fmt] == want[fmt], f"{path.name} --format {fmt} changed; if intended, run tests/golden/regen.py"
        return
    new, old = (json.loads(text.split("\n", 1)[1]) for text in (got["json"], want["json"]))
    assert verdicts(new) == verdicts(old)
    rel = 1e-6 if old["settings"]["dtype"] == "float32" else 1e-12
    assert new["loss"] == pytest.approx(old["loss"], rel=rel)
    assert got["table"].split("\n", 1)[0] == want["table"].split("\n", 1)[0]  # the exit code
