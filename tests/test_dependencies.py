"""Every third-party import is declared in pyproject.toml, and what the tests import at module
level is installed by the README's test command (`pip install -e ".[dev,onnx]"`).

A package installed by hand on a developer's machine hides a missing declaration until a fresh
machine fails; this reads the imports statically, so it fails here first.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hvc_runtime", "hvc_export", "hvc_train", "benchmarks", "tests")
TEST_EXTRAS = ("dev", "onnx")  # what the README's test command installs
# import name → distribution, where they differ and the package may not be installed here
ALIASES = {"PIL": "pillow", "cv2": "opencv-python", "yaml": "pyyaml", "skimage": "scikit-image"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(extras: tuple[str, ...] | None) -> set[str]:
    """Distributions of the core dependencies plus `extras` (None: every extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = project["optional-dependencies"]
    chosen = list(groups) if extras is None else extras
    requirements = project["dependencies"] + [r for extra in chosen for r in groups[extra]]
    return {_norm(re.split(r"[\s<>=!~;\[]", r.strip(), maxsplit=1)[0]) for r in requirements}


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """Top-level names of absolute imports; with `module_level_only`, only unconditional
    imports at module scope (not inside functions or `try` blocks, which guard optional ones)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in PACKAGES}


@functools.cache
def _installed() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    found = {_norm(d) for d in _installed().get(module, [])}
    return found | {_norm(ALIASES.get(module, module))}


def _sources(*packages: str) -> list[Path]:
    return [path for package in packages for path in sorted((ROOT / package).rglob("*.py"))]


def test_every_import_is_declared():
    declared = _requirements(None)
    undeclared = {
        f"{module} ({path.relative_to(ROOT)})"
        for path in _sources(*PACKAGES)
        for module in _imports(path, module_level_only=False)
        if not _distributions(module) & declared
    }
    assert not undeclared, f"imported but declared nowhere in pyproject.toml: {sorted(undeclared)}"


def test_the_test_command_installs_what_tests_and_benchmarks_import():
    installed = _requirements(TEST_EXTRAS)
    missing = {
        f"{module} ({path.relative_to(ROOT)})"
        for path in _sources("tests", "benchmarks")
        for module in _imports(path, module_level_only=True)
        if not _distributions(module) & installed
    }
    assert not missing, f"not installed by pip install -e '.[dev,onnx]': {sorted(missing)}"
