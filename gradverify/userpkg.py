"""User files that live inside a package: imported as a module of it, so that relative imports
(`from .layers import *`, `from ..layers import *`), absolute imports of the enclosing package
(`from cs231n.layers import *`) and imports of a file beside it (`import layer_utils`) work, for
a repository checked out anywhere, without installing it.

The package root (the rule, documented in the README): walk up from the file's folder while the
folder is a package — it has an `__init__.py`, or (a namespace package) its name is a Python
identifier and it holds .py files — and its name is not a standard-library module's. The file is
then imported as `top.sub.….stem` with the root's parent on sys.path; a file whose folder is not a
package is loaded on its own (usercode.load_source), with its folder on sys.path.

Every module from the user's folders is compiled from its current source (no bytecode is read or
written), and `Sandbox.close()` (the end of one check) puts sys.modules, sys.path and
sys.meta_path back as they were: the next check imports everything afresh.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import types
from pathlib import Path


def package_chain(path: Path) -> list[str]:
    """The package names from the top-most package down to the file's folder ([] when the
    file's folder is not a package)."""
    chain: list[str] = []
    folder = path.parent
    while folder.parent != folder and _is_package(folder):
        chain.insert(0, folder.name)
        folder = folder.parent
    return chain


def _is_package(folder: Path) -> bool:
    name = folder.name
    if not name.isidentifier() or name in sys.stdlib_module_names or name == "gradverify":
        return False
    if (folder / "__init__.py").is_file():
        return True
    try:
        return any(entry.suffix == ".py" and entry.is_file() for entry in folder.iterdir())
    except OSError:
        return False


class _FreshLoader(importlib.machinery.SourceFileLoader):
    """A source file's loader that compiles the current source every time: no bytecode cache."""

    def get_code(self, fullname):
        self.source = self.get_data(self.path)  # what a worker process compiles (parallel.py)
        return compile(self.source, self.path, "exec", dont_inherit=True)


class _Finder:
    """Finds modules under the sandbox's folders as the path finder would, with _FreshLoader."""

    def __init__(self) -> None:
        self.roots: list[str] = []

    def under(self, origin: str | None) -> bool:
        """Is `origin` a file of the user's folders: under a root through folders whose names
        are identifiers (never a virtualenv's site-packages, a .venv or a python3.11)?"""
        if origin is None:
            return False
        for root in self.roots:
            if origin == root:
                return True
            if origin.startswith(root + os.sep):
                folders = origin[len(root) + 1:].split(os.sep)[:-1]
                if all(f.isidentifier() for f in folders):
                    return True
        return False

    def find_spec(self, fullname, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or not self.under(spec.origin):
            return None
        if isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = _FreshLoader(fullname, spec.origin)
        return spec


#: modules whose functions gradverify's own code calls by name while it judges: a user file that
#: replaces one (np.abs = …) would change the judge, for its own check and every later one
GUARDED_MODULES = ("numpy", "numpy.linalg", "builtins", "math")


class Sandbox:
    """sys.path, sys.meta_path, sys.modules and sys.dont_write_bytecode while user files are
    imported during one check, and the names of GUARDED_MODULES; `close()` restores them."""

    def __init__(self) -> None:
        self.names = {m: dict(vars(sys.modules[m])) for m in GUARDED_MODULES if m in sys.modules}
        self.path = list(sys.path)
        self.before = set(sys.modules)  # what may be restored from the stash
        self.stashed: dict[str, types.ModuleType] = {}
        self.finder = _Finder()
        self.flag = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        sys.meta_path.insert(0, self.finder)

    def add_folder(self, folder: Path) -> None:
        text = str(folder)
        if text not in self.finder.roots:
            self.finder.roots.append(text)
        if text not in sys.path:
            sys.path.insert(0, text)
        importlib.invalidate_caches()

    def _ours(self, module) -> bool:
        files = [getattr(module, "__file__", None)] + list(getattr(module, "__path__", None) or [])
        return any(isinstance(f, str) and self.finder.under(f) for f in files)

    def stash(self, top: str) -> None:
        """Set aside modules named `top` or `top.…` that are not from the user's folders (the
        host's own, say), so that `top` is imported from the user's folder."""
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            module = sys.modules.pop(name)
            if name in self.before and not self._ours(module):
                self.stashed.setdefault(name, module)

    def import_file(self, path: Path, chain: list[str]) -> types.ModuleType:
        folder = path.parent
        for _ in chain:  # each enclosing folder importable: `from cs231n.layers import *`
            self.add_folder(folder)
            folder = folder.parent
        sys.path.insert(0, str(folder))  # the root's parent: `top` itself
        self.stash(chain[0])
        return importlib.import_module(".".join([*chain, path.stem]))

    def restore_names(self) -> None:
        """Every name of GUARDED_MODULES that a user file rebound, back to what it was (a name it
        added stays: nothing of gradverify's calls it)."""
        for module, names in self.names.items():
            now = vars(sys.modules[module]) if module in sys.modules else {}
            for key, value in names.items():
                if now.get(key, value) is not value or key not in now:
                    setattr(sys.modules[module], key, value)

    def close(self) -> None:
        self.restore_names()
        if self.finder.roots:  # no folder of yours added: no module of yours to forget
            for name in [n for n, m in list(sys.modules.items()) if self._ours(m)]:
                sys.modules.pop(name, None)
        sys.modules.update(self.stashed)
        changed = sys.path != self.path
        sys.path[:] = self.path
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        sys.dont_write_bytecode = self.flag
        if changed or self.finder.roots:
            importlib.invalidate_caches()
