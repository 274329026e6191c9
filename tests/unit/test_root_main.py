"""The root ``main.py`` imports the entry-point packages and nothing else.

import-linter (``make lint``) graphs packages only, so this module-level rule is held here:
``main.py`` is what ``gcloud functions deploy --source=.`` loads, and a tool or a core module
imported from it would be one more arrow the layer contracts cannot see.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT_PACKAGES = frozenset(
    {"publisher", "sync_worker", "signal_worker", "accounts", "console"}
)


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` or ``from … import`` names (relative ones as ``.name``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_imported_modules_sees_every_form_of_import() -> None:
    source = "import a.b\nfrom c import d\nfrom .e import f\nif x:\n    import g\n"
    assert imported_modules(source) == {"a.b", "c", ".e", "g"}


def test_root_main_imports_the_entry_point_packages_only() -> None:
    imported = imported_modules((ROOT / "main.py").read_text())
    stray = {name for name in imported if name.split(".")[0] not in ENTRY_POINT_PACKAGES}
    assert imported and not stray, f"main.py imports more than entry points: {sorted(stray)}"
