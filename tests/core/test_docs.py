"""Meta-tests: every hook is tested; the README's commands are what CI runs (that every hook
is a kind and documented: test_kinds.py)."""

import ast
import importlib
import re
from pathlib import Path

import pluggy

from corekit import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(name for name, obj in vars(hookspecs).items()
               if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec"))
TEST_ROOTS = [ROOT / "tests", *sorted((ROOT / "plugins").glob("*/tests"))]


# -- which hooks the tests register through ---------------------------------------------------

def _sources() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path))
            for root in TEST_ROOTS for path in sorted(root.rglob("*.py"))}


def _is_hookimpl(node: ast.expr) -> bool:
    """``hookimpl``, ``corekit.hookimpl`` or ``hookimpl(...)`` (a marker with options)."""
    if isinstance(node, ast.Call):
        node = node.func
    return (isinstance(node, ast.Name) and node.id == "hookimpl") or (
        isinstance(node, ast.Attribute) and node.attr == "hookimpl")


def _calls_its_register(fn: ast.FunctionDef | ast.Lambda) -> bool:
    """The function calls its first parameter (the ``register`` callback)."""
    params = fn.args.args
    if not params:
        return False
    name = params[0].arg
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
               for n in ast.walk(fn))


def registering_hookimpls(tree: ast.Module) -> set[str]:
    """Hooks a test file implements with a function that registers something: a function
    named after the hook and decorated ``@hookimpl`` (or passed to ``hookimpl(...)``), or
    ``hook_name=hookimpl(f)`` with ``f`` a lambda or function, whose body calls its
    ``register`` argument. A hookimpl that never calls ``register`` does not count."""
    defs: dict[str, list[ast.FunctionDef]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            defs.setdefault(node.name, []).append(node)
    wrapped = {arg.id for node in ast.walk(tree)
               if isinstance(node, ast.Call) and _is_hookimpl(node.func)
               for arg in node.args if isinstance(arg, ast.Name)}
    found = {name for name, fns in defs.items() if name in HOOKS for fn in fns
             if (name in wrapped or any(_is_hookimpl(d) for d in fn.decorator_list))
             and _calls_its_register(fn)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            value = keyword.value
            if keyword.arg not in HOOKS or not (isinstance(value, ast.Call)
                                                and _is_hookimpl(value.func) and value.args):
                continue
            target = value.args[0]
            if isinstance(target, ast.Lambda) and _calls_its_register(target):
                found.add(keyword.arg)
            elif isinstance(target, ast.Name) and any(
                    _calls_its_register(fn) for fn in defs.get(target.id, [])):
                found.add(keyword.arg)
    return found


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_plugin_modules_register_through_their_hooks():
    """A test plugin module (a helper next to the tests with module-level hookimpls) is loaded
    by pluggy against the hookspecs, and calling each hookimpl registers something."""
    sources = _sources()
    plugin_modules = {path: tree for path, tree in sources.items()
                      if not path.name.startswith("test_") and path.name != "conftest.py"
                      and any(isinstance(n, ast.FunctionDef)
                              and any(_is_hookimpl(d) for d in n.decorator_list)
                              for n in tree.body)}
    assert plugin_modules, "expected a test plugin module such as tests/core/toy_plugin.py"
    for path in plugin_modules:
        hooks = _pluggy_registrations(importlib.import_module(_module_name(path)))
        assert hooks, f"{path}: no hookimpl registers anything"


def _pluggy_registrations(module) -> set[str]:
    """The hooks through which ``module``'s hookimpls register at least one component, as
    pluggy dispatches them (``check_pending`` fails an impl that matches no hookspec)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(module)
    pm.check_pending()
    hooks = set()
    for name in HOOKS:
        for impl in getattr(pm.hook, name).get_hookimpls():
            calls: list[tuple] = []
            impl.function(register=lambda *args, _calls=calls, **kwargs: _calls.append(args))
            if calls:
                hooks.add(name)
    return hooks


def hooks_with_tests() -> dict[str, list[str]]:
    """Each hook, and the test files that register through it: directly (a hookimpl in the
    test file, found in its syntax tree) or by loading a test plugin module they import (its
    hookimpls registered with pluggy and called)."""
    sources = _sources()
    tests = {path: tree for path, tree in sources.items() if path.name.startswith("test_")}
    found: dict[str, list[str]] = {}
    for path, tree in tests.items():
        for hook in registering_hookimpls(tree):
            found.setdefault(hook, []).append(str(path.relative_to(ROOT)))
    for path, tree in sources.items():
        if path in tests or path.name == "conftest.py":
            continue
        name = _module_name(path)
        users = [p for p, t in tests.items() if name in _imported(t)]
        if not users or not registering_hookimpls(tree):
            continue
        for hook in _pluggy_registrations(importlib.import_module(name)):
            found.setdefault(hook, []).extend(str(p.relative_to(ROOT)) for p in users)
    return found


def test_every_hookspec_has_a_test():
    """Each hookspec of corekit/hookspecs.py has a test that registers a component through it
    (a name in a comment or a string does not count)."""
    found = hooks_with_tests()
    missing = [h for h in HOOKS if h not in found]
    assert not missing, f"test these hooks (register a component through each): {missing}"


def test_test_module_names_are_unique():
    """pytest imports the test folders (no ``__init__.py``) by file name (``prepend`` mode), so
    two test files of one name, in tests/ or any plugin's tests/, would clash at collection."""
    names: dict[str, list[str]] = {}
    for root in TEST_ROOTS:
        for path in root.rglob("test_*.py"):
            names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    clashes = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert not clashes, f"rename these test files: {clashes}"


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert "deepclust train" in commands[0] and "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_every_builtin_component_is_documented():
    from corekit.plugins import load_plugins

    doc = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    core = load_plugins().plugin("core")
    missing = [n for kind, names in core.components.items() if kind != "recipe"
               for n in names if f"`{n}`" not in doc]
    assert not missing, f"document these components in docs/components.md: {missing}"
