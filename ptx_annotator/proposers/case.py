"""The case-level answer beside a proposed mask: is there a pneumothorax, on which side, how much, how sure.

:func:`case_answer` turns a proposal mask into one small JSON-able dict (``predict --json``, the
napari review widget and the study report show it):

``pneumothorax``
    True when the mask holds any voxel (a proposer's own clean-up has already removed specks).
``sides``
    The patient sides holding at least the post-processing's smallest kept component
    (``DEFAULT_MIN_COMPONENT_MM3``) of pneumothorax, right first. Sides come from
    :func:`ptx_annotator.quantify.quantify` (the hemithorax masks, then the mid-sagittal plane),
    the one side rule of this project.
``volume_ml``, ``volume_right_ml``, ``volume_left_ml``
    From the same quantification.
``confidence`` (0..1)
    How sure the answer is. With model probabilities: for a positive answer the mean
    probability over the largest component; for a negative one, 1 minus the highest probability
    anywhere in the volume. Without probabilities (the classical proposer) the evidence of the
    largest component is used: ``contrast``, how close its HU lies to this scanner's air level
    relative to the lung around it ((lung HU - component HU) / (lung HU - air HU)), times
    ``continuity``, the share of slices between its first and last slice that it occupies
    (a pleural rim is continuous in z; noise is not). A negative classical answer has
    confidence 1 minus the evidence of the strongest rejected candidate when the proposer passes
    one in ``evidence["rejected_evidence"]``, else 1.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.proposers.postprocess import DEFAULT_MIN_COMPONENT_MM3
from ptx_annotator.volume import Volume

_FULL_3D = np.ones((3, 3, 3), dtype=bool)
#: Ring (mm, in-plane) around the largest component in which the neighbouring lung's HU is measured.
LUNG_RING_MM = 6.0


def case_answer(mask: np.ndarray, volume: Volume, probabilities: np.ndarray | None = None,
                evidence: dict | None = None, anatomy=None) -> dict:
    """The case-level answer for ``mask`` on ``volume`` (see the module docstring for the keys).

    Parameters
    ----------
    mask : ndarray, shape (z, y, x)
        The proposal; non-zero voxels are pneumothorax.
    volume : Volume
        The CT the mask was proposed on.
    probabilities : ndarray, optional
        The model's per-voxel probabilities on the same grid.
    evidence : dict, optional
        Classical evidence: ``contrast`` and ``continuity`` (each 0..1) override what is measured
        here; ``rejected_evidence`` scores the strongest candidate a proposer turned down.
    anatomy : ThoraxAnatomy, optional
        Reuse a segmentation of ``volume``.
    """
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.quantify import quantify

    mask = np.asarray(mask) > 0
    evidence = dict(evidence or {})
    if anatomy is None:
        anatomy = segment_thorax(volume)
    numbers = quantify(mask, volume, anatomy=anatomy)
    smallest_ml = DEFAULT_MIN_COMPONENT_MM3 / 1000.0
    sides = [side for side in ("right", "left") if getattr(numbers, f"volume_{side}_ml") >= smallest_ml]
    answer = {"pneumothorax": bool(mask.any()), "sides": sides,
              "volume_ml": round(numbers.volume_ml, 2), "volume_right_ml": round(numbers.volume_right_ml, 2),
              "volume_left_ml": round(numbers.volume_left_ml, 2)}
    if not mask.any():
        if probabilities is not None:
            confidence = 1.0 - float(np.max(probabilities)) if np.size(probabilities) else 1.0
            basis = "1 - highest probability"
        else:
            confidence = 1.0 - float(evidence.get("rejected_evidence", 0.0))
            basis = "1 - evidence of the strongest rejected candidate" if "rejected_evidence" in evidence \
                else "no pleural-air candidate"
        answer.update(confidence=round(_unit(confidence), 3), confidence_basis=basis,
                      largest_component_ml=0.0, n_components=0)
        return answer

    labels, count = ndi.label(mask, _FULL_3D)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    answer.update(largest_component_ml=round(float(sizes.max()) * volume.voxel_volume_ml, 2), n_components=int(count))
    if probabilities is not None:
        confidence = float(np.mean(np.asarray(probabilities)[largest]))
        answer.update(confidence=round(_unit(confidence), 3), confidence_basis="mean probability of the largest component")
        return answer
    contrast = evidence.get("contrast")
    if contrast is None:
        contrast = _contrast(volume, largest, anatomy)
    continuity = evidence.get("continuity")
    if continuity is None:
        continuity = _continuity(largest)
    answer.update(confidence=round(_unit(float(contrast) * float(continuity)), 3),
                  confidence_basis="contrast against the lung x continuity in z (largest component)",
                  contrast=round(_unit(float(contrast)), 3), continuity=round(_unit(float(continuity)), 3))
    return answer


def _unit(value: float) -> float:
    return float(min(max(value, 0.0), 1.0)) if np.isfinite(value) else 0.0


def _contrast(volume: Volume, component: np.ndarray, anatomy) -> float:
    """(lung HU - component HU) / (lung HU - air HU), the lung taken in a ring around the component."""
    from ptx_annotator.synthetic.pneumothorax import estimate_air_noise

    air_hu, _ = estimate_air_noise(volume, anatomy)
    zs, ys, xs = (np.nonzero(component.any(axis=axes))[0] for axes in ((1, 2), (0, 2), (0, 1)))
    ring_px = int(np.ceil(LUNG_RING_MM / float(min(volume.spacing[1:]))))
    box = (slice(zs[0], zs[-1] + 1), slice(max(ys[0] - ring_px, 0), ys[-1] + ring_px + 1),
           slice(max(xs[0] - ring_px, 0), xs[-1] + ring_px + 1))
    part = component[box]
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = True
    ring = ndi.binary_dilation(part, in_plane, iterations=ring_px) & ~part & anatomy.lungs[box]
    hu = volume.hu[box]
    component_hu = float(np.median(hu[part]))
    if not ring.any():
        return 1.0 if component_hu <= air_hu else 0.0
    lung_hu = float(np.median(hu[ring]))
    return (lung_hu - component_hu) / max(lung_hu - air_hu, 1.0)


def _continuity(component: np.ndarray) -> float:
    occupied = component.any(axis=(1, 2))
    z = np.nonzero(occupied)[0]
    return float(occupied.sum()) / float(z[-1] - z[0] + 1)
