"""`ptx_annotator.training` imports only the core: no GUI toolkit, no plugin."""

import pkgutil
import subprocess
import sys

FORBIDDEN = ("qtpy", "napari", "magicgui", "superqt", "gradio", "PyQt5", "PyQt6", "PySide6",
             "ptx_annotator.plugins")


def test_training_modules_import_only_the_core():
    import ptx_annotator.training as training

    names = [f"ptx_annotator.training.{m.name}" for m in pkgutil.iter_modules(training.__path__)]
    assert "ptx_annotator.training.trainer" in names and "ptx_annotator.training.registry" in names
    code = ("import importlib, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"training imported: {proc.stdout.strip()}"
