"""Helpers shared by test modules (no test module imports another; they import from here).

``tests/`` is on ``sys.path`` under pytest's default ``prepend`` import mode (rootdir-relative
test modules without ``__init__.py``), so ``from helpers.task_files import make_raw`` works.
"""
