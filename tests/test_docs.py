"""Documentation is tested: every ```python and ```sql block of README.md and docs/*.md runs, in
file order, against the shared synthetic workspace (``raw/`` + ``cache/``, tests/helpers/
docs_workspace.py) with that workspace as the current folder.

Conventions (kept simple on purpose):
- The blocks of one file share one namespace, like notebook cells.
- A block claims its results with ``assert`` lines; every file with Python blocks must have some.
- A ```sql block runs through ``nf.sql(block, cache="cache/", params=...)``; its text is bound to
  ``QUERY`` and its result to ``sql_result`` for the blocks that follow, and it must return rows.
  A ``<!-- params: {"name": value} -->`` line right before the block gives its parameters.
- The block after ``<!-- setup -->`` must be tests/helpers/docs_workspace.py's SETUP verbatim:
  the workspace fixture has run exactly that code (once per test session), and its names
  (``nf``, ``pl``, ``truth``) start every file's namespace.
- A block is skipped only after an explicit ``<!-- no-test: reason -->`` line; the reason is
  required.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.docs_workspace import SETUP, Workspace

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*(no-test|params|setup):?\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    text: str
    skip: str | None  # the no-test reason
    params: dict[str, Any] | None
    setup: bool = False


def blocks(path: Path) -> list[Block]:
    """Return the fenced blocks of a Markdown file with the marker line before each."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        skip, params, setup = None, None, False
        k = i - 1
        while k >= 0 and (mm := MARKER.match(lines[k])):
            if mm.group(1) == "no-test":
                skip = mm.group(2)
                assert skip, f"{path.name}:{k + 1}: a no-test marker needs a reason"
            elif mm.group(1) == "setup":
                setup = True
            else:
                params = json.loads(mm.group(2))
            k -= 1
        text = "\n".join(lines[i + 1 : j]) + "\n"
        out.append(Block(m.group(1), i + 1, text, skip, params, setup))
        i = j + 1
    return out


def test_block_extraction_reads_fences_markers_and_params(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text(
        "text\n```python\nx = 1\n```\n<!-- no-test: placeholder bucket -->\n```python\nraise\n```\n"
        '<!-- params: {"a": 1} -->\n```sql\nSELECT $a\n```\n```bash\nls\n```\n'
        "<!-- setup -->\n```python\nimport os\n```\n"
    )
    got = [(b.lang, b.line, b.text, b.skip, b.params, b.setup) for b in blocks(md)]
    assert got == [
        ("python", 2, "x = 1\n", None, None, False),
        ("python", 6, "raise\n", "placeholder bucket", None, False),
        ("sql", 10, "SELECT $a\n", None, {"a": 1}, False),
        ("bash", 13, "ls\n", None, None, False),
        ("python", 17, "import os\n", None, None, True),
    ]
    (tmp_path / "y.md").write_text("<!-- no-test: -->\n```python\nx\n```\n")
    with pytest.raises(AssertionError, match="needs a reason"):
        blocks(tmp_path / "y.md")


def _has_assert(text: str) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(text)))


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_doc_blocks_run_and_assert_their_results(
    doc: Path, docs_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import npc_frames as nf

    runnable = [b for b in blocks(doc) if b.lang in ("python", "sql") and b.skip is None]
    if not runnable:
        pytest.skip(f"{doc.name} has no Python or SQL blocks")
    monkeypatch.chdir(docs_workspace.root)
    monkeypatch.delenv("NPC_FRAMES_CACHE", raising=False)
    namespace: dict[str, Any] = {**docs_workspace.namespace, "__name__": f"doc_{doc.stem}"}
    for b in runnable:
        where = f"{doc.name}:{b.line}"
        if b.setup:
            assert b.text == SETUP, f"{where}: the setup block must be docs_workspace.SETUP"
            continue
        try:
            if b.lang == "python":
                exec(compile(b.text, where, "exec"), namespace)
            else:
                result = nf.sql(b.text, cache="cache/", params=b.params)
                assert result.height > 0, f"{where}: the query returned no rows"
                namespace["QUERY"], namespace["sql_result"] = b.text, result
        except Exception as exc:
            raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc
    python = [b.text for b in runnable if b.lang == "python"]
    if python:
        assert any(_has_assert(t) for t in python), f"{doc.name}: no block asserts its result"
