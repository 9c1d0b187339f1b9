"""Running a check: prepare the network once (`prepare` -> `Run`), compare every node's analytic
gradient with its numeric estimate (`nodes`, `compare`), point at the op whose backward is wrong
(`blame`), and return the records of results.py (`engine`)."""
from ..numeric import FLOAT32_TOLERANCE
from ..results import Blame, NodeResult, Report, RunInfo, Settings
from .compare import compare
from .engine import parse_index, run, run_node, run_prepared, run_sweep, select_nodes
from .prepare import Run, prepare

__all__ = ["FLOAT32_TOLERANCE", "Blame", "NodeResult", "Report", "Run", "RunInfo", "Settings",
           "compare", "parse_index", "prepare", "run", "run_node", "run_prepared", "run_sweep",
           "select_nodes"]
