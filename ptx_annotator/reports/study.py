"""A self-contained HTML report of one CT series: key slices with every annotator's mask, the
pneumothorax numbers (:mod:`ptx_annotator.quantify`), review progress, and where proposals came from.

Files written into the output folder (each atomically): ``index.html``, ``report.json`` (the same
numbers for programs), ``slice_NNN.png`` per key slice and ``review_states.png``. Images are shown
in the radiological convention (patient right on the viewer's left, anterior up) whatever the
array orientation, in the lung window.
"""

from __future__ import annotations

import html
import io
from collections import Counter
from pathlib import Path

import numpy as np

from ptx_annotator.atomic import write_bytes_atomic, write_json_atomic
from ptx_annotator.errors import PtxError
from ptx_annotator.export import flatten_scalars, mask_provenance
from ptx_annotator.preprocessing import LUNG_WINDOW_HU, hu_to_unit
from ptx_annotator.quantify import quantify
from ptx_annotator.review.states import STATE_COLORS, STATES, REVIEWED_STATES, review_provenance, utc_now
from ptx_annotator.review.store import AnnotationStore
from ptx_annotator.volume import Volume

#: At most this many key slices get a figure.
MAX_KEY_SLICES = 4
ANNOTATOR_COLOURS = ("#ff3b30", "#34c759", "#0a84ff", "#ffcc00", "#af52de", "#ff9500")


def collect_study(volume: Volume, store: AnnotationStore, anatomy=None) -> dict:
    """Everything the report shows, as a JSON-able dict (quantification, review, provenance)."""
    annotators = store.annotators(volume.key)
    if anatomy is None and annotators:
        from ptx_annotator.anatomy import segment_thorax

        anatomy = segment_thorax(volume)
    entries, skipped = [], []
    for name in annotators:
        try:
            annotation = store.load(volume.key, name, volume)
        except PtxError as exc:  # one unreadable mask must not hide the others
            skipped.append(f"{name}: {exc}")
            continue
        if annotation is None:
            continue
        counts = annotation.review.counts()
        provenance = mask_provenance(annotation)
        area = annotation.mask.reshape(annotation.mask.shape[0], -1).sum(axis=1)
        by_source = Counter(entry.source for entry in annotation.review if entry.source)
        times = sorted(entry.at for entry in annotation.review if entry.at)
        entries.append({
            "annotator": annotation.annotator, "version": annotation.version, "saved_at": annotation.saved_at,
            "quantification": quantify(annotation.mask, volume, anatomy).to_json(),
            "review_counts": counts,
            "reviewed_fraction": sum(counts[s] for s in REVIEWED_STATES) / max(1, len(annotation.review)),
            "review_states": annotation.review.states(),
            "provenance": review_provenance(annotation.review, annotation.mask),
            "first_review_at": times[0] if times else None, "last_review_at": times[-1] if times else None,
            "algorithm_type": provenance.algorithm_type, "main_source": provenance.main_source,
            "slices_by_source": dict(by_source),
            "proposals": [{"source": key, **(record or {})} for key, record in annotation.proposals.items()],
            "imports": annotation.extra.get("imports", []),
            "largest_area_slice": int(np.argmax(area)) if area.any() else None,
            "_mask": annotation.mask,
        })
    return {
        "series_key": volume.key, "series_uid": volume.series_uid, "study_uid": volume.study_uid,
        "description": volume.description, "source": volume.source, "shape": list(volume.shape),
        "spacing_mm": [round(float(s), 4) for s in volume.spacing], "orientation": volume.orientation,
        "generated_at": utc_now(), "annotators": entries, "skipped": skipped,
    }


def key_slices(summary: dict, n_slices: int) -> list[int]:
    """Largest-area and widest-rim slices of each annotator (at most MAX_KEY_SLICES), else the middle."""
    chosen: list[int] = []
    for entry in summary["annotators"]:
        for z in (entry["largest_area_slice"], entry["quantification"]["max_rim_slice"]):
            if z is not None and z not in chosen:
                chosen.append(int(z))
    return sorted(chosen[:MAX_KEY_SLICES]) or [n_slices // 2]


def radiological(image: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A (y, x) slice flipped so patient right is on the left and anterior at the top."""
    affine = np.asarray(affine, dtype=float)
    if affine[0, 2] < 0:  # columns run towards patient right: flip to put right on the left
        image = image[:, ::-1]
    if affine[1, 1] < 0:  # rows run towards anterior: flip to put anterior on top
        image = image[::-1, :]
    return image


def _new_figure(size):
    """A matplotlib Figure on its own Agg canvas: no pyplot, so no GUI backend is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _figure_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def slice_figure(volume: Volume, entries: list[dict], z: int) -> bytes:
    """PNG of slice ``z``: the CT in the lung window, then one panel per annotator with their mask."""
    from matplotlib.colors import ListedColormap

    ct = radiological(hu_to_unit(volume.hu[z], LUNG_WINDOW_HU), volume.affine)
    aspect = volume.spacing[1] / volume.spacing[2]
    panels = 1 + len(entries)
    fig = _new_figure((3.4 * panels, 3.6))
    axes = fig.subplots(1, panels, squeeze=False)
    axes[0, 0].imshow(ct, cmap="gray", vmin=0, vmax=1, aspect=aspect)
    axes[0, 0].set_title(f"slice {z} (lung window)", fontsize=9)
    for i, entry in enumerate(entries):
        ax = axes[0, i + 1]
        colour = ANNOTATOR_COLOURS[i % len(ANNOTATOR_COLOURS)]
        mask = radiological(entry["_mask"][z] > 0, volume.affine)
        ax.imshow(ct, cmap="gray", vmin=0, vmax=1, aspect=aspect)
        ax.imshow(np.ma.masked_where(~mask, mask), cmap=ListedColormap([colour]), alpha=0.45, aspect=aspect,
                  interpolation="nearest")
        if mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=0.8)
        state = entry["review_states"][z]
        ax.set_title(f"{entry['annotator']} ({state}, {int(mask.sum())} px)", fontsize=9)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.02, 0.5, "R", color="yellow", transform=ax.transAxes, fontsize=9, va="center")
        ax.text(0.95, 0.5, "L", color="yellow", transform=ax.transAxes, fontsize=9, va="center")
    fig.tight_layout()
    return _figure_bytes(fig)


def review_states_figure(entries: list[dict], n_slices: int) -> bytes:
    """PNG of every annotator's review state along z (one row per annotator)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    codes = np.array([[STATES.index(s) for s in entry["review_states"]] for entry in entries], dtype=float)
    fig = _new_figure((8, 0.5 + 0.4 * len(entries)))
    ax = fig.subplots()
    ax.imshow(codes, cmap=ListedColormap([STATE_COLORS[s] for s in STATES]), vmin=-0.5, vmax=len(STATES) - 0.5,
              aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(entries)), [e["annotator"] for e in entries], fontsize=8)
    ax.set_xlabel(f"slice (0..{n_slices - 1})", fontsize=8)
    ax.legend(handles=[Patch(color=STATE_COLORS[s], label=s) for s in STATES], fontsize=7, ncol=len(STATES),
              loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return _figure_bytes(fig)


def _fmt(value, unit="", digits=1, percent=False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if percent:
        return f"{100 * value:.{digits}f}%"
    return f"{value:.{digits}f}{unit}"


def _reviewed_text(provenance: dict) -> str:
    """'2 of 64 slices (62 proposed, not reviewed)'."""
    text = f"{provenance['reviewed_slices']} of {provenance['n_slices']} slices"
    return text + (f" ({provenance['proposed_slices']} proposed, not reviewed)" if provenance["proposed_slices"] else "")


def _table(header: list[str], rows: list[list]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(summary: dict, figures: list[tuple[str, str]]) -> str:
    """The report page; ``figures`` is a list of (file name, caption)."""
    esc = html.escape
    entries = summary["annotators"]
    numbers = [[e["annotator"], f"v{e['version']}", _fmt(q["volume_ml"], " mL"), _fmt(q["volume_right_ml"], " mL"),
                _fmt(q["volume_left_ml"], " mL"), _fmt(q["hemithorax_share_right"], percent=True),
                _fmt(q["hemithorax_share_left"], percent=True), _fmt(q["max_rim_mm"], " mm"),
                "n/a" if q["max_rim_slice"] is None else f"{q['max_rim_slice']} ({q['max_rim_side']})",
                _fmt(q["bts_large"]), _reviewed_text(e["provenance"])] for e in entries for q in [e["quantification"]]]
    progress = [[e["annotator"], *[e["review_counts"][s] for s in STATES], _fmt(e["reviewed_fraction"], percent=True),
                 e["first_review_at"] or "", e["last_review_at"] or "", e["saved_at"] or ""] for e in entries]
    origins = []
    for e in entries:
        for p in e["proposals"]:
            params = ", ".join(f"{k}={v}" for k, v in flatten_scalars(p.get("params") or {}).items())
            origins.append([e["annotator"], p["source"], p.get("created", ""), _fmt(p.get("completed")),
                            e["slices_by_source"].get(p["source"], 0), params[:200]])
        for record in e["imports"]:
            origins.append([e["annotator"], f"import:{record.get('file')}", record.get("at", ""), "yes",
                            record.get("slices_with_content", ""), f"format={record.get('format')}"])
    notes = sorted({f"{e['annotator']}: {n}" for e in entries for n in e["quantification"]["notes"]})
    made_by = [[e["annotator"], e["algorithm_type"].lower(), e["main_source"] or "manual drawing",
                _reviewed_text(e["provenance"])] for e in entries]
    warnings = [f"{e['annotator']}: {100 * e['provenance']['unreviewed_share']:.0f}% of this mask lies on slices no "
                f"person reviewed ({_reviewed_text(e['provenance'])}): its numbers are mostly the proposer's, "
                "not the reader's." for e in entries if e["algorithm_type"] == "AUTOMATIC"]
    sections = [
        f"<h1>Pneumothorax report</h1><p>Series <code>{esc(str(summary['series_uid'] or summary['series_key']))}</code>"
        f" &middot; {esc(summary['description'])} &middot; {summary['shape'][0]} slices, "
        f"{summary['shape'][2]}&times;{summary['shape'][1]} px, spacing (z, y, x) {summary['spacing_mm']} mm, "
        f"orientation {esc(summary['orientation'])} &middot; generated {esc(summary['generated_at'])}</p>",
    ]
    sections += [f"<p class=note>Left out: {esc(line)}</p>" for line in summary.get("skipped", [])]
    if not entries:
        sections.append("<p><b>No annotator has a readable saved mask of this series.</b></p>")
    else:
        sections += [
            "<h2>Pneumothorax size</h2>",
            _table(["annotator", "version", "volume", "right", "left", "share of right hemithorax",
                    "share of left hemithorax", "widest rim", "rim slice (side)", "large (rim >= 2 cm)",
                    "reviewed by a person"], numbers),
            "".join(f"<p class=warn>{esc(w)}</p>" for w in warnings),
            "<p class=note>Sides are patient sides from the image geometry. Share: pneumothorax volume / same-side "
            "hemithorax volume (Do et al. 2012). Widest rim: largest 3D distance from the chest wall to the lung "
            "surface across the pleural air (BTS 2 cm rule).</p>",
            "".join(f"<p class=note>{esc(n)}</p>" for n in notes),
            "<h2>Review progress</h2>",
            _table(["annotator", *STATES, "reviewed", "first review", "last review", "saved"], progress),
            "<h2>Where the masks came from</h2>",
            _table(["annotator", "mask type", "main proposer", "reviewed by a person"], made_by),
            _table(["annotator", "proposer / checkpoint", "proposed at", "completed", "slices", "parameters"], origins)
            if origins else "<p>No proposals or imports are recorded.</p>",
        ]
    sections.append("<h2>Key slices</h2>")
    sections += [f"<figure><img src='{esc(name)}' alt='{esc(caption)}'><figcaption>{esc(caption)}</figcaption></figure>"
                 for name, caption in figures]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}th{background:#eee}"
             ".note{color:#555;font-size:12px}.warn{color:#b00020;font-weight:bold}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Pneumothorax report "
            f"{esc(summary['series_key'])}</title><style>{style}</style></head><body>"
            + "\n".join(sections) + "</body></html>\n")


def write_study_report(volume: Volume, store: AnnotationStore, out_dir, anatomy=None) -> Path:
    """Write the report of ``volume`` into ``out_dir``; returns the path of ``index.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = collect_study(volume, store, anatomy)
    entries = summary["annotators"]
    figures = []
    for z in key_slices(summary, volume.shape[0]):
        name = f"slice_{z:03d}.png"
        write_bytes_atomic(out / name, slice_figure(volume, entries, z))
        reasons = [f"{e['annotator']}: largest area" for e in entries if e["largest_area_slice"] == z]
        reasons += [f"{e['annotator']}: widest rim {e['quantification']['max_rim_mm']:.1f} mm" for e in entries
                    if e["quantification"]["max_rim_slice"] == z]
        figures.append((name, f"Slice {z}" + (f" ({'; '.join(reasons)})" if reasons else "")))
    if entries:
        write_bytes_atomic(out / "review_states.png", review_states_figure(entries, volume.shape[0]))
        figures.append(("review_states.png", "Review state of every slice, per annotator"))
    public = {**summary, "annotators": [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries]}
    write_json_atomic(out / "report.json", public)
    page = out / "index.html"
    write_bytes_atomic(page, render_html(summary, figures).encode("utf-8"))
    return page

