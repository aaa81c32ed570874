"""The core never imports a GUI toolkit, and its modules import each other without a cycle
(../shared/DESIGN.md, the dependency rule)."""

import ast
import graphlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import ptx_annotator

GUI_MODULES = ("qtpy", "napari", "magicgui", "superqt", "gradio", "PyQt5", "PyQt6", "PySide6")
NOT_CORE = ("ptx_annotator.plugins", "ptx_annotator.training", "ptx_annotator.commands", "ptx_annotator.cli",
            "ptx_annotator.__main__")


def core_modules():
    names = []
    for info in pkgutil.walk_packages(ptx_annotator.__path__, prefix="ptx_annotator."):
        if not info.name.startswith(NOT_CORE):
            names.append(info.name)
    return names


def test_core_modules_import_no_gui():
    modules = core_modules()
    assert "ptx_annotator.review.store" in modules and "ptx_annotator.io.dicom_series" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = [m for m in {GUI_MODULES!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"core imported GUI modules: {proc.stdout.strip()}"


def test_napari_plugin_keeps_qt_in_its_qt_corner():
    """The reader, sample data, layer styles and launcher import no Qt; the widgets live in ``_qt/``."""
    import ptx_annotator.plugins.napari as plugin

    outside = [f"ptx_annotator.plugins.napari.{info.name}" for info in pkgutil.iter_modules(plugin.__path__)
               if info.name != "_qt"]
    widgets = [info.name for info in pkgutil.iter_modules([str(Path(plugin.__path__[0]) / "_qt")])]
    assert "ptx_annotator.plugins.napari._reader" in outside and "_review_widget" in widgets
    code = (
        "import importlib, sys\n"
        f"for name in {outside!r}: importlib.import_module(name)\n"
        "bad = [m for m in ('qtpy', 'PyQt5', 'PyQt6', 'PySide6', 'superqt', 'magicgui') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"plugin modules outside _qt/ imported Qt: {proc.stdout.strip()}"
    for name in widgets:  # and every widget module is in there, none left beside the reader
        assert not (Path(plugin.__path__[0]) / f"{name}.py").exists()


def test_cli_info_does_not_load_torch_or_gui():
    code = ("import sys\nfrom ptx_annotator.cli import build_parser\nbuild_parser()\n"
            "print(','.join(m for m in ('torch', *" + repr(GUI_MODULES) + ") if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def import_graph(package_dir: Path, excluded=()) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, top-level and in-function imports alike.

    Every ``import`` statement is read with :mod:`ast` (nothing is executed); an imported name
    resolves to the most specific module of the package that exists.
    """
    package_dir = Path(package_dir)
    modules = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if not name.startswith(tuple(excluded)):
            modules[name] = path
    root = package_dir.name

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            edges.update(t for t in map(resolve, (t for t in targets if t.split(".")[0] == root)) if t)
        edges.discard(name)
        graph[name] = edges
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated last), or None."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_core_has_no_import_cycle():
    graph = import_graph(Path(ptx_annotator.__file__).parent, excluded=NOT_CORE)
    assert "ptx_annotator.proposers.inference" in graph["ptx_annotator.proposers"]  # lazy imports count
    assert "ptx_annotator.geometry" in graph["ptx_annotator.quantify"]
    assert not any(name.startswith(NOT_CORE) for name in graph)
    cycle = import_cycle(graph)
    assert cycle is None, f"import cycle in the core: {' -> '.join(cycle)}"


def test_import_graph_finds_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .b import thing\n")
    (package / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("from .. import a\nthing = 1\n")
    (package / "c.py").write_text("import os\nfrom pkg import a\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.sub"] == {"pkg.sub.b"}
    assert set(import_cycle(graph)) == {"pkg.a", "pkg.sub.b"}
    (package / "sub" / "b.py").write_text("thing = 1\n")
    assert import_cycle(import_graph(package)) is None
