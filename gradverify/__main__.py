"""`python -m gradverify`: the command line, or one clear line if its dependencies are missing
(run from a checkout without `pip install .`)."""
import sys

try:
    from .cli import run
except ImportError as err:  # typer, rich, numpy or pyyaml not installed in this Python
    sys.stderr.write(f"gradverify: error: {err} (install gradverify and its dependencies first: "
                     "pip install .)\n")
    sys.exit(2)

run()
