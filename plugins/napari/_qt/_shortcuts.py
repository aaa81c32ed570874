"""The review widget's keys, in one table: the bindings and the shortcut help panel both read it."""

from __future__ import annotations

#: (napari key, what it does, the ReviewWidget method it calls)
SHORTCUTS = (
    ("a", "accept the slice as shown", "accept_slice"),
    ("Shift-a", "accept every proposed slice in the range (asks first)", "accept_range"),
    ("Shift-e", "accept the empty proposed slices (asks first)", "accept_empty"),
    ("f", "flag the slice for a second look", "flag_slice"),
    ("n", "next slice that needs attention (ranked by need)", "next_needing_review"),
    ("p", "previous slice that needs attention (ranked by need)", "previous_needing_review"),
    ("Shift-n", "next slice needing review, in slice order", "next_in_slice_order"),
    ("Shift-p", "previous slice needing review, in slice order", "previous_in_slice_order"),
    ("i", "fill between slices of the range (interpolate the drawn ones)", "fill_between"),
    ("c", "copy the proposal into the range", "copy_proposal_range"),
    ("u", "HU-limited brush on / off (paints air only)", "toggle_hu_brush"),
    ("g", "grow region: the next click grows the pleural air from there", "toggle_grow"),
    ("Control-z", "undo (mask and slice state)", "undo"),
    ("Control-Shift-z", "redo", "redo"),
    ("w", "lung / mediastinal window", "toggle_window"),
    ("F1", "show / hide this help", "toggle_help"),
)


def help_text() -> str:
    """The shortcut table as rich text for the help panel."""
    rows = "".join(f"<tr><td><b>{key.replace('Control', 'Ctrl').replace('-', '+')}</b>&nbsp;&nbsp;</td>"
                   f"<td>{text}</td></tr>" for key, text, _ in SHORTCUTS)
    return ("<table>" + rows + "</table><p>Paint with the brush (1 erase, 2 paint); the proposal is the "
            "amber outline, your mask the red fill. The range is the From/To fields.</p>")
