"""The apps depend one way: encoders → albums → workers (indexing) → search (with search.rag). A
lower app never imports a higher one, at module level or inside a function; it announces what
happened through albums/hooks.py and the higher app answers (docs/architecture.md, "Layers").

The vectors and their store belong to indexing (workers/models.py, workers/vector_store.py), which
writes them; search reads them from below."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"encoders": 0, "albums": 1, "workers": 2, "search": 3}



def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for app, layer in LAYERS.items():
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for module in _imports(path):
                top = module.split(".")[0]
                if LAYERS.get(top, -1) > layer:
                    found.add((str(path.relative_to(ROOT)), module))
    return found


def test_no_app_imports_one_above_it():
    assert upward_imports() == set(), "announce through albums/hooks.py instead of importing upward"


def test_the_walker_sees_imports_inside_functions(tmp_path):
    source = "def f():\n    from search.models import Embedding\n    import workers.tasks\n"
    path = tmp_path / "m.py"
    path.write_text(source)
    assert set(_imports(path)) == {"search.models", "workers.tasks"}
