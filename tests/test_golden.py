"""What users see must not change by accident: `gradverify check` on every bundled config and zoo
case, table and JSON, byte for byte against tests/golden (regenerate on purpose with
`python tests/golden/regen.py` and read the diff)."""
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "golden"))
import regen  # noqa: E402


@pytest.mark.parametrize("path", regen.cases(), ids=regen.golden_name)
def test_check_output_unchanged(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    got = regen.outputs(path)
    for fmt, ext in (("table", "txt"), ("json", "json")):
        want = (regen.HERE / f"{regen.golden_name(path)}.{ext}").read_text(encoding="utf-8")
        assert got[fmt] == want, f"{path.name} --format {fmt} changed; if intended, run tests/golden/regen.py"
