"""Thread-safe parsing: ``ast.literal_eval``, ``ast.parse`` and ``np.load`` (which parses each ``.npy``
header with ``ast.literal_eval``) under one process-wide lock.

CPython 3.11 keeps the AST builder's recursion counter in interpreter-wide state. Two threads
building ASTs at once (``convert`` on a thread executor, a Dask worker's threads) can fail with
"SystemError: AST constructor recursion depth mismatch" when one thread is switched out inside the
builder (e.g. while the garbage collector runs a finalizer). The texts parsed here are small (a
sync file's meta dict, a ``.npy`` header), so serializing them costs nothing measurable; with
``mmap_mode`` only the header is read under the lock.
"""

from __future__ import annotations

import ast
import logging
import threading
from typing import Any, Literal

import numpy as np

__all__ = ["AST_LOCK", "literal_eval", "load_npy", "parse_source"]

logger = logging.getLogger(__name__)

#: held while this process builds an AST through these helpers
AST_LOCK = threading.Lock()


def literal_eval(text: str) -> Any:
    """Return ``ast.literal_eval(text)``, parsed under :data:`AST_LOCK` (never executes code)."""
    with AST_LOCK:
        return ast.literal_eval(text)


def parse_source(text: str) -> ast.Module:
    """Return ``ast.parse(text)`` (a module's syntax tree, never executed), under :data:`AST_LOCK`."""
    with AST_LOCK:
        return ast.parse(text)


def load_npy(
    path: str, *, mmap_mode: Literal["r"] | None = None, allow_pickle: bool = False
) -> Any:
    """Return ``np.load(path, mmap_mode=..., allow_pickle=...)``, its header parsed under
    :data:`AST_LOCK` (the same errors as ``np.load``)."""
    with AST_LOCK:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=allow_pickle)
