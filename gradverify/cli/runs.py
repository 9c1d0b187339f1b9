"""Several checks in one `gradverify check`: many configs (files, folders of configs), and with
`--code-dir` one run per code folder (a teacher's students). Each run is checked on its own; the
outputs are written once for all of them and the exit code is the worst run's (2 bad input >
1 mismatch > 0).

A run whose config or code is bad input is not the end of the others: its one-line error goes to
stderr, it is an error in every report, and the exit code is 2.
"""
from __future__ import annotations

import glob
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

from ..errors import GradverifyError, one_line

#: a YAML file is a gradverify config when a top-level key names its network
_CONFIG_KEY = re.compile(r"^(layers|graph|model)\s*:", re.M)


@dataclass(frozen=True)
class Planned:
    """One check to run: a config, and the folder its `file.py:name` references are read from."""

    config: Path
    code_dir: Path | None = None

    @property
    def label(self) -> str:
        return str(self.code_dir).rstrip("/") if self.code_dir is not None else str(self.config)


@dataclass
class Outcome:
    """A run's report, or its error (exit code 2)."""

    run: Planned
    report: Any = None
    error: str | None = None
    error_line: int | None = None  # the config line of a config error, for its annotation
    error_where: dict | None = None  # file, line, column and key of a config error (JSON)

    @property
    def exit_code(self) -> int:
        return 2 if self.error is not None else self.report.exit_code


def is_config(path: Path) -> bool:
    """Does this YAML file describe a network (a top-level layers:, graph: or model: key)? Only a
    regular file is read: a FIFO named *.yaml in a folder would wait for a writer forever."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return False
        with open(path, encoding="utf-8", errors="replace") as fh:
            return bool(_CONFIG_KEY.search(fh.read(1 << 20)))
    except OSError:
        return False


#: folders a search for configs never enters (besides hidden ones and virtual environments)
SKIPPED_FOLDERS = {"node_modules", "__pycache__", "site-packages"}


def _yaml_files(folder: Path):
    """Every *.yaml / *.yml file under `folder`, not looking inside hidden folders (.git, .venv),
    virtual environments (a pyvenv.cfg) or SKIPPED_FOLDERS."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED_FOLDERS
                   and not os.path.exists(os.path.join(root, d, "pyvenv.cfg"))]
        yield from (Path(root) / f for f in files if f.endswith((".yaml", ".yml")))


def expand_configs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Files as given; a folder: every *.yaml / *.yml under it that is a gradverify config, sorted.
    Returns (configs, notes about the folders' YAML files that were skipped)."""
    configs: list[Path] = []
    notes: list[str] = []
    for p in paths:
        if not p.is_dir():
            configs.append(p)
            continue
        found = sorted(_yaml_files(p))
        mine = [q for q in found if is_config(q)]
        if not mine:
            raise GradverifyError(f"{p}: a folder with no gradverify config in it (a *.yaml or *.yml "
                                  "file with a top-level layers:, graph: or model: key)")
        skipped = len(found) - len(mine)
        if skipped:
            notes.append(f"{p}: skipped {skipped} YAML file(s) that are not gradverify configs "
                         "(no top-level layers:, graph: or model: key)")
        configs += mine
    return configs, notes


def expand_code_dirs(code_dirs: list[str], configs: list[Path]) -> tuple[list[Path], list[Path]]:
    """(the code folders, the configs). `--code-dir 'students/*/'` is expanded here; unquoted, the
    shell expands it and every folder after the first arrives as an argument: with --code-dir
    given, every argument that is a folder is one more code folder (configs are then files), so a
    student's folder that happens to hold a config is still checked as that student's code."""
    folders: list[Path] = []
    for given in code_dirs:
        matches = sorted(glob.glob(given)) if glob.has_magic(given) else [given]
        if not matches:
            raise GradverifyError(f"--code-dir {given}: no folder matches it")
        folders += [Path(m) for m in matches]
    if folders:  # every folder argument is one more code folder (an unquoted glob's), never configs
        extra = [c for c in configs if c.is_dir()]
        folders += extra
        configs = [c for c in configs if c not in extra]
    for f in folders:
        if not f.is_dir():
            raise GradverifyError(f"--code-dir {f}: not a folder")
    return folders, configs


def plan(configs: list[Path], folders: list[Path]) -> list[Planned]:
    if not folders:
        return [Planned(c) for c in configs]
    return [Planned(c, f) for c in configs for f in folders]


# ---- the outputs of many runs ----------------------------------------------------------------


def worst_exit(outcomes: list[Outcome]) -> int:
    return max(o.exit_code for o in outcomes)


def one_line_summary(o: Outcome, label: str) -> str:
    """`students/bob  FAIL  12 nodes: 10 pass, 0 kink, 2 fail · blame: …` (one line per run)."""
    if o.error is not None:
        return f"{label}  ERROR  {one_line(o.error)}"
    r = o.report
    c = r.counts()
    text = (f"{label}  {r.status.upper()}  {len(r.nodes)} nodes: {c['pass']} pass, "
            f"{c['kink']} kink, {c['fail']} fail")
    blame = [b.message for b in r.blame]
    return text + (f" · blame: {one_line(blame[0])}" if blame else "")


def labels(outcomes: list[Outcome]) -> list[str]:
    """Each run's label, padded to one width."""
    names = [o.run.label for o in outcomes]
    width = max(len(n) for n in names)
    return [n.ljust(width) for n in names]


def json_doc(outcomes: list[Outcome]) -> dict:
    """Several runs: {status, exit_code, runs: [{config, code_dir, exit_code, report | error}]}."""
    from ..render import check_json

    runs = []
    for o in outcomes:
        entry: dict = {"config": str(o.run.config),
                       "code_dir": None if o.run.code_dir is None else str(o.run.code_dir),
                       "exit_code": o.exit_code}
        if o.error is not None:
            entry.update(status="error", error=o.error)
        else:
            entry.update(status=o.report.status, report=check_json(o.report))
        runs.append(entry)
    order = ["pass", "undecided", "kink", "fail", "error"]
    status = max((r["status"] for r in runs), key=order.index)
    return {"status": status, "exit_code": worst_exit(outcomes), "runs": runs}


def junit_doc(outcomes: list[Outcome]) -> str:
    """One <testsuite> per run (per student with --code-dir) in one <testsuites>; a run that is
    bad input is a suite with one errored test case."""
    import xml.etree.ElementTree as ET

    from ..formats import junit_xml

    root = ET.Element("testsuites", name="gradverify")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for o in outcomes:
        suite_name = "gradverify." + _suite_label(o.run)
        if o.error is None:
            suites = ET.fromstring(junit_xml(o.report, suite_name).split("\n", 1)[1])
            suite = suites.find("testsuite")
        else:
            suite = _errored_suite(suite_name, o)
        assert suite is not None
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        root.append(suite)
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite_label(run: Planned) -> str:
    stem = run.config.stem
    return f"{stem}.{run.code_dir.name}" if run.code_dir is not None else stem


def _errored_suite(name: str, o: Outcome) -> ET.Element:
    import xml.etree.ElementTree as ET

    suite = ET.Element("testsuite", name=name, tests="1", failures="0", errors="1", skipped="0", time="0")
    case = ET.SubElement(suite, "testcase", classname=name, name="config", time="0")
    ET.SubElement(case, "error", message=one_line(o.error or ""), type="BadInput").text = one_line(o.error or "")
    return suite


def markdown_doc(outcomes: list[Outcome]) -> str:
    """Each run's markdown under a heading naming it, then one line per run."""
    from ..formats import _code, markdown

    parts = []
    for o in outcomes:
        parts.append(f"## {_code(o.run.label)}\n")
        parts.append(f"**Error:** {_code(o.error)}\n" if o.error is not None else markdown(o.report))
    parts.append("### Summary\n")
    parts += [f"- {_code(line.strip())}" for line in (one_line_summary(o, lab) for o, lab in
                                                      zip(outcomes, labels(outcomes)))]
    return "\n".join(parts) + "\n"


def github_doc(outcomes: list[Outcome]) -> str:
    """Every run's annotations folded together into GitHub's budget (blamed ops and bad input
    first, then root failures, inherited ones, kinks), then one summary line per run."""
    from ..formats import annotation_lines, github_items, github_summary

    items = []
    for o in outcomes:
        if o.error is not None:
            items.append(("error", (str(o.run.config), o.error_line), "gradverify: bad input", o.error))
        else:
            items += github_items(o.report, str(o.run.config))
    first = ("gradverify: bad input", "gradverify: the backward of")
    items.sort(key=lambda i: 0 if i[2].startswith(first) else 2 if "(inherited)" in i[2] else 1)
    summaries = [f"{label.strip()}: ERROR" if o.error is not None else f"{label.strip()}: {github_summary(o.report)}"
                 for o, label in zip(outcomes, labels(outcomes))]
    return "\n".join(annotation_lines(items) + summaries) + "\n"


def error_doc(o: Outcome) -> dict:
    """One config that is bad input, as --format json prints it: status "error", the message and
    where it is (file, line, column, key; null when not known)."""
    from ..render import SCHEMA_VERSION

    where = o.error_where or {}
    return {"schema_version": SCHEMA_VERSION, "status": "error", "exit_code": 2, "message": o.error,
            "file": where.get("file", str(o.run.config)), "line": where.get("line"),
            "column": where.get("column"), "key": where.get("key")}
