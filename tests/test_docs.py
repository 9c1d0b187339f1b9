"""The docs show real output: every `$ gradverify …` block in README.md and docs/*.md matches a
fresh run (regenerate with `python docs/regen.py`), and the README points at nothing a person
who cloned only this repository lacks."""
import importlib.util
import re
from pathlib import Path

import pytest

from conftest import ROOT

# docs/regen.py, loaded under its own name (tests/golden/regen.py is `regen` on sys.path)
_spec = importlib.util.spec_from_file_location("docs_regen", ROOT / "docs" / "regen.py")
assert _spec is not None and _spec.loader is not None
regen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regen)


@pytest.mark.parametrize("page", regen.PAGES, ids=lambda p: p.name)
def test_shown_output_is_real(page, monkeypatch):
    import numpy as np

    made_with = (ROOT / "tests" / "golden" / "NUMPY").read_text().strip()
    if np.__version__ != made_with:  # another numpy rounds the last digits of errors differently
        pytest.skip(f"the docs' output was made with numpy {made_with}, this is {np.__version__}")
    monkeypatch.chdir(ROOT)
    text = page.read_text(encoding="utf-8")
    assert regen.regenerate(text) == text, f"{page.name} is out of date: run python docs/regen.py"


@pytest.mark.parametrize("page", regen.PAGES, ids=lambda p: p.name)
def test_no_pointers_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text
    assert not re.search(r"(?<![\w.])/(work|root|home|tmp)/", text), "a machine's absolute path"
    for path in re.findall(r"`((?:configs|examples|tests|docs|bench)/[\w./-]+\.(?:yaml|py|md|json))`", text):
        assert (ROOT / path).exists(), f"{page.name} names {path}, which is not in the repository"


def test_version_agrees_with_pyproject_and_changelog():
    import gradverify

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{gradverify.__version__}"' in pyproject
    assert f"## [{gradverify.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


#: pages other engineers write; the README and the index link them before they land here
def test_readme_is_short_and_has_what_a_newcomer_needs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= 15_000, f"README.md is {len(text):,} characters"
    ci = (ROOT / ".ci" / "run").read_text() if (ROOT / ".ci" / "run").exists() else ""
    assert 'pip install -e ".[test]" && python -m pytest -q' in text
    for command in ('-e ".[test]"', "python -m pytest -q"):  # what .ci/run runs (with pip's --quiet)
        assert not ci or command in ci, command
    assert "pip install . && gradverify check configs/seed.yaml" in text
    assert "$ gradverify check configs/seed.yaml\n" in text and "blame: the backward of" in text


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", regen.PAGES + [ROOT / "docs" / "README.md"], ids=lambda p: p.name)
def test_links_resolve(page):
    """Every relative markdown link names a file in the repository, and its #anchor a heading."""
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text(encoding="utf-8")):
        assert not target.startswith(("http://", "https://", "/")), f"{page.name} links outside: {target}"
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name} links {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{page.name} links {target}#{anchor}: no such heading"


def test_every_docs_page_is_in_the_index():
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert {p for p in pages if f"]({p})" not in index} == set()


def test_license_matches_pyproject():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "gradverify" / "py.typed").exists()


def test_readme_config_is_the_bundled_file():
    """The README's config is a real file, shown as it is."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    conf = (ROOT / "examples" / "cs231n" / "configs" / "conv.yaml").read_text(encoding="utf-8")
    assert "```yaml\n" + conf + "```" in text
