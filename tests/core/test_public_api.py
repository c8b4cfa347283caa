"""Core v2 item 9: plugins import only ``corekit``'s public API, and no bench script or test
reaches inside by writing a private attribute."""

import ast
from pathlib import Path

import corekit
from corekit.registry import TARGET

ROOT = Path(__file__).resolve().parents[2]


def python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py")]


def test_plugins_import_only_the_public_api():
    offenders = []
    for path in ROOT.glob("plugins/*/deepclust_*/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.startswith("corekit.")]
    assert not offenders, f"plugins may import only `corekit`: {offenders}"


def test_plugin_targets_name_corekit_only_by_its_public_api():
    """A plugin's ``"module:attr"`` targets name its own modules, another plugin's, or
    ``corekit:Name``: a string is an import too."""
    offenders = []
    for path in ROOT.glob("plugins/*/deepclust_*/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and TARGET.fullmatch(node.value) and node.value.startswith("corekit.")):
                offenders.append(f"{path.relative_to(ROOT)}: {node.value}")
    assert not offenders, f"name a core component as 'corekit:Name': {offenders}"


def test_every_exported_name_exists():
    missing = [name for name in corekit.__all__ if not hasattr(corekit, name)]
    assert not missing
    for name in ("ClusterResult", "EMA", "MemoryBank", "Queue", "PseudoLabels", "Need",
                 "Lifecycle", "StageContext", "gather", "all_reduce", "register_recipe_dir",
                 "Backbone", "Augmentation", "Head", "Loss", "PseudoLabeler", "Clusterer",
                 "State", "Schedule", "Sampler", "NeedCheck"):
        assert name in corekit.__all__, name


def test_no_bench_or_test_writes_a_private_attribute():
    offenders = []
    for path in python_files("bench", "tests") + list(ROOT.glob("plugins/*/tests/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                if (isinstance(target, ast.Attribute) and target.attr.startswith("_")
                        and not target.attr.startswith("__")
                        and not (isinstance(target.value, ast.Name)
                                 and target.value.id in ("self", "cls"))):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{target.attr}")
    assert not offenders, f"use a public seam instead: {offenders}"


def test_importing_the_cli_pulls_in_no_torch():
    """``deepclust --help`` and recipe validation stay light: corekit's exports load on first
    use (PEP 562), so importing the CLI imports neither torch nor kornia nor scikit-learn."""
    import subprocess
    import sys

    code = ("import sys, corekit.cli; heavy = [m for m in ('torch', 'kornia', 'sklearn', "
            "'timm') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"imported at start-up: {out}"
