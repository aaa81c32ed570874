"""The core never imports a GUI toolkit (../shared/DESIGN.md, the dependency rule)."""

import pkgutil
import subprocess
import sys

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


def test_cli_info_does_not_load_torch_or_gui():
    code = ("import sys\nfrom ptx_annotator.cli import build_parser\nbuild_parser()\n"
            "print(','.join(m for m in ('torch', *" + repr(GUI_MODULES) + ") if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
