"""The review widget's questions to the annotator (tests replace these functions) and how slice lists read."""

from __future__ import annotations

from qtpy.QtWidgets import QFileDialog, QMessageBox


def confirm(parent, title: str, text: str) -> bool:
    """Ask a yes/no question (tests replace this function)."""
    return QMessageBox.question(parent, title, text) == QMessageBox.Yes


def choose_store(parent, proposed: str) -> str | None:
    """Ask where to save annotations of a layer's study: ``proposed``, another folder, or None (memory only)."""
    box = QMessageBox(parent)
    box.setWindowTitle("Where to save annotations")
    box.setText(f"Your mask and review states will be saved to\n{proposed}\n(inside the study folder).")
    save = box.addButton("Save there", QMessageBox.AcceptRole)
    other = box.addButton("Choose another folder…", QMessageBox.ActionRole)
    box.addButton("Keep in memory only", QMessageBox.RejectRole)
    box.exec()
    if box.clickedButton() is save:
        return proposed
    if box.clickedButton() is other:
        return QFileDialog.getExistingDirectory(parent, "Folder for the annotations") or None
    return None


def compact(indices) -> str:
    """``[1, 2, 3, 7]`` -> ``"1–3, 7"``."""
    runs, start, previous = [], None, None
    for z in sorted(indices):
        if start is None:
            start = previous = z
        elif z == previous + 1:
            previous = z
        else:
            runs.append((start, previous))
            start = previous = z
    if start is not None:
        runs.append((start, previous))
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in runs)
