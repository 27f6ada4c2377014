"""The apps depend one way: encoders → albums → workers (indexing) → search → search.rag. A lower
app never imports a higher one, at module level or inside a function; it announces what happened
through albums/hooks.py (or asks through search/hooks.py) and the higher app answers
(docs/architecture.md, "Layers").

The vectors and their store belong to indexing (workers/models.py, workers/vector_store.py), which
writes them; search reads them from below.

An import inside a function says why it is not at the top of its module, in a comment on its line or
on the line above it (or above the run of imports it belongs to): torch kept out of the web tier, a
true cycle, models before Django is set up, an optional package."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"encoders": 0, "albums": 1, "workers": 2, "search": 3, "search.rag": 4}
PRODUCT = ("albums", "encoders", "workers", "search", "config", "bench")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def layer_of(module: str) -> int:
    """The layer of a dotted module name (-1: not an app's), the deepest app that holds it."""
    parts = module.split(".")
    return max((LAYERS[app] for app in LAYERS if parts[: app.count(".") + 1] == app.split(".")), default=-1)


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] not in LAYERS or "migrations" in relative.parts:
            continue
        layer = layer_of(".".join(relative.with_suffix("").parts))
        for module in _imports(path):
            if layer_of(module) > layer:
                found.add((str(relative), module))
    return found


def test_no_app_imports_one_above_it():
    assert upward_imports() == set(), "announce through albums/hooks.py (or ask through search/hooks.py) instead"


def test_search_rag_sits_above_search():
    assert layer_of("search.rag.models") == 4 > layer_of("search.selectors") == 3 > layer_of("workers") == 2
    assert layer_of("searching") == layer_of("django.db") == -1


def test_the_walker_sees_imports_inside_functions(tmp_path):
    source = "def f():\n    from search.models import Embedding\n    import workers.tasks\n"
    path = tmp_path / "m.py"
    path.write_text(source)
    assert set(_imports(path)) == {"search.models", "workers.tasks"}


def _function_level_imports(tree: ast.AST):
    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            yield from visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    yield from visit(tree, False)


def unexplained_imports(path: Path, root: Path = ROOT) -> list[str]:
    """`file:line: statement` for each import inside a function with no comment on its line(s) and
    none on the line above it, or above the run of imports right before it."""
    source = path.read_text()
    comments, comment_only = set(), set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            line = token.start[0]
            comments.add(line)
            if not token.line[: token.start[1]].strip():
                comment_only.add(line)
    imports = list(_function_level_imports(ast.parse(source, filename=str(path))))
    ending_at = {node.end_lineno: node for node in imports}
    found = []
    for node in imports:
        if comments & set(range(node.lineno, node.end_lineno + 1)):
            continue
        above = node.lineno - 1
        while above in ending_at:  # the run of imports right above this one
            above = ending_at[above].lineno - 1
        if above not in comment_only:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.get_source_segment(source, node)}")
    return found


def test_every_import_inside_a_function_says_why():
    found = [entry for app in PRODUCT for path in sorted((ROOT / app).rglob("*.py"))
             if "migrations" not in path.parts for entry in unexplained_imports(path)]
    assert not found, (
        "Move these imports to the top of their module, or say in a comment on the line (or the line above) "
        "why they must stay inside the function (torch kept out of the web tier, a true cycle, models before "
        "Django is set up, an optional package):\n" + "\n".join(found)
    )


def test_the_import_rule_reads_comments_on_the_line_above_and_beside(tmp_path):
    source = (
        "import os\n"
        "\n"
        "def f():\n"
        "    # torch stays out of the web tier\n"
        "    import torch\n"
        "    import numpy  # the run above shares that reason\n"
        "    x = 1\n"
        "    import json\n"
        "    from os import (\n"
        "        path,  # multi-line: a comment on any of its lines\n"
        "    )\n"
        "    s = '# not a comment'; import re\n"
    )
    path = tmp_path / "m.py"
    path.write_text(source)
    assert unexplained_imports(path, root=tmp_path) == ["m.py:8: import json", "m.py:12: import re"]
