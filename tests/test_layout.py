"""The project's layering, as the README's "Project layout" states it: data flows one way, no import
circles, ner_core without optuna, and each study module importing only the ones listed above it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ner_core", "study", "storage")


def imports_of(path: Path, package: str) -> set[str]:
    """The top-level names ``path`` imports, relative imports resolved (``from .x`` -> ``package.x``),
    including imports inside functions (a lazy import is still a dependency)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                # "from . import x" names modules; "from .x import y" names one
                modules = [alias.name for alias in node.names] if node.module is None else [node.module]
                names.update(f"{package}.{m.split('.')[0]}" for m in modules)
            elif node.level == 0 and node.module:
                names.add(node.module)
    return names


def project_graph() -> dict[str, set[str]]:
    """Each project module (``package.module``) -> the project modules it imports."""
    modules = {f"{p}.{f.stem}": f for p in PACKAGES for f in sorted((ROOT / p).glob("*.py"))}
    graph = {}
    for name, path in modules.items():
        package = name.split(".")[0]
        found = imports_of(path, package)
        # "from storage import X" means the package's __init__
        graph[name] = {m if m in modules else f"{m}.__init__" for m in found if m.split(".")[0] in PACKAGES}
        graph[name] = {m for m in graph[name] if m in modules and m != name}
    return graph


def layout_order(package: str) -> list[str]:
    """The modules of ``package`` in the order the README's Project layout lists them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Project layout") :]
    block = section[section.index(f"\n    {package}/") + 1 :]
    block = block[: re.search(r"\n    \S", block).start()]  # up to the next top-level entry
    return re.findall(r"^      ([a-z_]+)\.py", block, re.M)


def test_the_graph_sees_imports_of_every_form(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from __future__ import annotations\nimport json\nfrom . import a, b\nfrom .c import d\n"
        "from ner_core.e import f\n\ndef g():\n    from .h import i\n",
        encoding="utf-8",
    )
    assert imports_of(module, "study") == {
        "__future__",
        "json",
        "study.a",
        "study.b",
        "study.c",
        "ner_core.e",
        "study.h",
    }


def test_no_import_circles():
    graph = project_graph()
    assert graph["study.best"] >= {"study.retrain", "study.scores", "ner_core.train"}  # the graph is not empty
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_ner_core_imports_neither_optuna_nor_the_layers_above_it():
    for path in sorted((ROOT / "ner_core").glob("*.py")):
        above = {m for m in imports_of(path, "ner_core") if m.split(".")[0] in ("optuna", "study", "storage")}
        assert not above, f"{path.name} imports {sorted(above)}"


def test_storage_does_not_import_study():
    for path in sorted((ROOT / "storage").glob("*.py")):
        assert not {m for m in imports_of(path, "storage") if m.split(".")[0] == "study"}, path.name


def test_each_study_module_imports_only_those_listed_above_it():
    order = layout_order("study")
    on_disk = sorted(p.stem for p in (ROOT / "study").glob("*.py") if p.stem != "__init__")
    assert sorted(order) == on_disk, "the README's Project layout lists study/'s modules, every one once"
    graph = project_graph()
    for index, module in enumerate(order):
        inside = {m.split(".")[1] for m in graph[f"study.{module}"] if m.startswith("study.")}
        below = inside - set(order[:index])
        assert not below, f"study/{module}.py imports {sorted(below)}, listed below it in the README"
