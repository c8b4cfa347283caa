"""``deepclust new-plugin NAME``: a ready-to-install plugin with one loss, a recipe and a test."""

from __future__ import annotations

import re
from pathlib import Path

from corekit.errors import UserError

TEMPLATES = Path(__file__).parent


def new_plugin(name: str, where: Path) -> Path:
    """Write ``where/deepclust-plugin-NAME`` from the templates; refuse to overwrite."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise UserError(f"plugin name {name!r}: use lower-case letters, digits and '_'")
    root = where / f"deepclust-plugin-{name}"
    if root.exists():
        raise UserError(f"{root} already exists; choose another name or folder")
    package = root / f"deepclust_{name}"
    files = {
        root / "pyproject.toml": "pyproject.toml.tmpl",
        package / "__init__.py": "init.py.tmpl",
        package / "plugin.py": "plugin.py.tmpl",
        package / "recipes" / f"{name}.toml": "recipe.toml.tmpl",
        root / "tests" / f"test_{name}.py": "test.py.tmpl",
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (TEMPLATES / template).read_text().replace("{name}", name)
        path.write_text(text)
    return root
