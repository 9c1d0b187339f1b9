"""Where every value of a config is: key path -> (line, column), 1-based."""
from __future__ import annotations

from array import array
from typing import Any

from ..errors import KeyPath
from . import fastflow


class Positions(dict):
    """Key path -> (line, column), 1-based. The items of a list are kept in two int arrays per
    list (a 2,000,000-number array costs 16 MB here, not a dict entry per number)."""

    def __init__(self) -> None:
        super().__init__()
        self.lists: dict[KeyPath, tuple[array, array]] = {}  # the items of each list
        self.fast: dict[KeyPath, fastflow.Region] = {}  # lists read by fastflow: places found on demand

    def _item(self, path: Any) -> tuple[int, int] | None:
        if isinstance(path, tuple) and path and isinstance(path[-1], int):
            lines_cols = self.lists.get(path[:-1])
            if lines_cols is not None and 0 <= path[-1] < len(lines_cols[0]):
                return lines_cols[0][path[-1]], lines_cols[1][path[-1]]
            for root, region in self.fast.items():
                if len(path) > len(root) and path[:len(root)] == root:
                    return region.place_of_item(path[len(root):])
        return None

    def __contains__(self, path: object) -> bool:
        return dict.__contains__(self, path) or self._item(path) is not None

    def __getitem__(self, path: Any) -> tuple[int, int]:
        if dict.__contains__(self, path):
            return dict.__getitem__(self, path)
        found = self._item(path)
        if found is None:
            raise KeyError(path)
        return found

    def get(self, path: Any, default: Any = None) -> Any:
        return self[path] if path in self else default
