"""Meta-tests: every hook is documented and tested; the README's commands are what CI runs."""

import re
from pathlib import Path

from corekit import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("register_"))


def test_hooks_found():
    assert len(HOOKS) == 7


def test_every_hookspec_is_documented():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    missing = [h for h in HOOKS if f"`{h}`" not in doc]
    assert not missing, f"document these hooks in docs/plugins.md: {missing}"


def test_every_hookspec_has_a_test():
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    missing = [h for h in HOOKS if h not in tests]
    assert not missing, f"test these hooks: {missing}"


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
