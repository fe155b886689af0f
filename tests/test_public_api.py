"""The public names are visible to static tools: every name in ``npc_frames.__all__`` is imported in
the package's ``TYPE_CHECKING`` block (so mypy and IDEs see its signature), resolves at runtime
through the lazy loader, and every registered component has its ``scan_<component>``."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import npc_frames as nf
from npc_frames.components import COMPONENTS

INIT = Path(nf.__file__)


def _type_checking_names() -> dict[str, str]:
    """Return name -> module of every import inside ``if TYPE_CHECKING:`` in __init__.py."""
    tree = ast.parse(INIT.read_text())
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                for alias in stmt.names:
                    out[alias.asname or alias.name] = str(stmt.module)
    return out


def test_every_public_name_is_in_the_type_checking_block() -> None:
    static = _type_checking_names()
    public = set(nf.__all__) - {"__version__"}
    assert sorted(public - set(static)) == []  # a new public name must be added there too
    assert sorted(set(static) - public) == []  # and nothing is imported there that is not public


def test_all_is_static_and_lists_one_scan_per_component() -> None:
    tree = ast.parse(INIT.read_text())
    (node,) = [
        n
        for n in tree.body
        if isinstance(n, ast.Assign) and any(ast.unparse(t) == "__all__" for t in n.targets)
    ]
    literal = ast.literal_eval(node.value)  # raises if __all__ is computed
    assert literal == nf.__all__
    scans = {n for n in literal if n.startswith("scan_")}
    assert scans >= {f"scan_{c}" for c in COMPONENTS}  # derived tables add their own scans


def test_every_public_name_resolves_at_runtime_to_what_the_block_imports() -> None:
    for name, module in _type_checking_names().items():
        value = getattr(nf, name)
        if module == "npc_frames":  # a submodule
            assert value is importlib.import_module(f"npc_frames.{name}")
        else:
            assert value is getattr(importlib.import_module(module), name), name
    assert isinstance(nf.__version__, str)
    assert sorted(dir(nf)) == sorted(nf.__all__)


def test_component_scans_have_a_signature_and_a_docstring() -> None:
    import npc_frames.cache as cache

    for component in COMPONENTS:
        assert f"scan_{component}" in vars(cache), component  # explicit, not via __getattr__
        fn = getattr(nf, f"scan_{component}")
        assert list(inspect.signature(fn).parameters) == ["cache"], component
        assert fn.__name__ == f"scan_{component}"
        assert fn.__doc__ and component in fn.__doc__.splitlines()[0]


def test_every_component_attribute_is_its_function_even_after_its_module_is_imported() -> None:
    import importlib

    from npc_frames import components

    for name, target in components.COMPONENTS.items():
        importlib.import_module(target.split(":")[0])
        assert callable(getattr(components, name)), name
        assert getattr(components, name) is components.get(name), name


def test_every_module_has_its_own_logger_and_every_component_is_timed() -> None:
    import ast
    from pathlib import Path

    import npc_frames
    from npc_frames import components

    root = Path(npc_frames.__file__).parent
    missing = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if path.name == "__init__.py" or rel.startswith(("schemas/", "synth/", "commands/")):
            continue
        if rel in ("errors.py", "_log.py"):
            continue
        tree = ast.parse(path.read_text())
        if not any(
            isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "logger" for t in n.targets)
            for n in tree.body
        ):
            missing.append(rel)
    assert missing == []
    # @timed wraps each component so its duration is logged at DEBUG on its module's logger
    untimed = [n for n in components.COMPONENTS if not hasattr(components.get(n), "__wrapped__")]
    assert untimed == []
