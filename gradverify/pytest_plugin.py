"""The pytest plugin (entry point `pytest11: gradverify`): gradverify configs as test items.

Files named `*.gradverify.yaml`, and the configs listed under `configs` in `[tool.gradverify]`,
are collected with one item per node (`test_seed.gradverify.yaml::w1`). The whole network is
checked once, when its first item runs; each item then passes or fails on its node's verdict.
A failure shows the node's worst element, the blame and the diagnosis; a kink passes (it fails
under `--gradverify-strict` or `strict = true` in the settings); a node the numbers cannot decide
is skipped with the reason (a failure under strict). A bad config is a collection error of one
line, as `gradverify check` prints it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

SUFFIX = ".gradverify.yaml"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("gradverify", "gradverify: gradient checks of *.gradverify.yaml configs")
    group.addoption("--gradverify-strict", action="store_true", default=None,
                    help="A node at a kink (or undecided) fails, as gradverify check --strict.")


def _settings(config) -> dict[str, Any]:
    """[tool.gradverify] resolved once per session, --gradverify-strict on top."""
    cached = getattr(config, "_gradverify_settings", None)
    if cached is None:
        import pytest

        from . import settings
        from .errors import GradverifyError

        strict = config.getoption("gradverify_strict", None)
        try:
            cached = settings.resolve({"strict": strict}, Path(str(config.rootpath))).values
        except GradverifyError as err:  # a bad [tool.gradverify]: pytest's usage error, one line
            raise pytest.UsageError(f"gradverify: {err}") from None
        config._gradverify_settings = cached
    return cached


def _listed(config) -> set[Path]:
    return {Path(os.path.abspath(p)) for p in _settings(config)["configs"]}


def pytest_collect_file(file_path: Path, parent):
    if file_path.name.endswith(SUFFIX) or Path(os.path.abspath(file_path)) in _listed(parent.config):
        return GradverifyFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(session, config, items) -> None:
    """A run without file arguments also checks the listed configs that lie outside the folders
    pytest walked (testpaths = ["tests"], configs = ["configs/net.yaml"])."""
    source = getattr(config, "args_source", None)
    if source is None or source.name == "ARGS":
        return
    seen = {Path(os.path.abspath(item.path)) for item in items}
    for path in sorted(_listed(config) - seen):
        collector = GradverifyFile.from_parent(session, path=path)
        report = collector.ihook.pytest_make_collect_report(collector=collector)
        if report.failed:
            session.ihook.pytest_collectreport(report=report)
            session.testsfailed += 1
            continue
        items.extend(i for i in report.result if isinstance(i, GradverifyItem))


class GradverifyFile(pytest.File):
    """A config: its nodes are the items; the check runs once for all of them."""

    def collect(self):
        from . import checker, usercode
        from .errors import GradverifyError

        s = _settings(self.config)
        try:
            with usercode.session():
                run = checker.prepare(self._load(), self._check_settings())
            names = checker.select_nodes(run.graph, None)
        except GradverifyError as err:
            raise self.CollectError(f"gradverify: error: {err}") from None
        self._report: Any = None
        self._strict = bool(s["strict"])
        for name in names:
            yield GradverifyItem.from_parent(self, name=name, line=run.line(name))

    def _load(self):
        from .api import _config

        return _config(Path(self.path))

    def _check_settings(self):
        from . import options

        s = _settings(self.config)
        return options.settings(method=s["method"], rtol=s["rtol"], atol=s["atol"], step=s["step"],
                                sample=s["sample"], seed=s["seed"], strict=s["strict"])

    def report(self):
        """The whole network checked, once."""
        if self._report is None:
            from . import checker, usercode

            with usercode.session():
                self._report = checker.run(self._load(), self._check_settings())
        return self._report


class NodeFailed(Exception):
    """A node's gradient is wrong (or, under strict, at a kink or undecided)."""


class GradverifyItem(pytest.Item):
    def __init__(self, *, line: int | None = None, **kw):
        super().__init__(**kw)
        self.line = line

    def runtest(self) -> None:
        parent: GradverifyFile = self.parent  # type: ignore[assignment]
        report = parent.report()
        node = report.node(self.name)
        self.user_properties.append(("gradverify_status", node.status))
        strict = parent._strict
        if node.status == "fail" or (strict and node.status in ("kink", "undecided")):
            raise NodeFailed(failure_text(report, node, strict))
        if node.status == "undecided":
            pytest.skip(f"gradverify: {self.name}: undecided: {'; '.join(node.notes)}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, NodeFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, (self.line - 1 if self.line else None), self.name


def failure_text(report, node, strict: bool) -> str:
    """What pytest shows for a failing node: its verdict and worst element, the blame that
    concerns it (or all blame, for an inherited failure); the first line's verdict carries the
    diagnosis when there is one."""
    from .formats import worst_text
    from .testing import verdict

    under_strict = " (a failure under strict)" if strict and node.status != "fail" else ""
    lines = [f"{node.label}: {verdict(node)}{under_strict}"]
    worst = worst_text(node)
    lines.append(f"node {node.label}: {node.kind}, op {node.op}, shape {node.shape_text}, method {node.method}"
                 + (f"; {worst}" if worst else ""))
    if node.inherited:
        lines.append("inherited: a gradient downstream of this node is wrong")
    if node.problem:
        lines.append(node.problem)
    mine = [b for b in report.blame if node.name in (b.node, b.input)]
    lines += [f"blame: {b.message}" for b in (mine or report.blame)]
    return "\n".join(lines)
