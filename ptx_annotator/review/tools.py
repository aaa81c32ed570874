"""Labour-cutting tools of the review room: brush, HU-limited brush, fill between slices, region
growing and copying the proposal into a range.

The pure functions compute new mask contents from arrays; :class:`ReviewTools` (mixed into
:class:`~ptx_annotator.review.session.ReviewSession`) applies them as one undoable edit each,
marking every slice whose mask it changed ``edited``.

Fill between slices
    Shape-based interpolation (Raya & Udupa 1990): the signed distance maps of the two nearest
    key slices are blended linearly and the blend's positive part is the interpolated mask. A key
    slice is an end of the range or a slice a person reviewed; every other slice in the range is
    filled. (SimpleITK's ``MorphologicalContourInterpolator`` is an ITK remote module that the
    SimpleITK wheels do not ship, so the same job is done here with SciPy's distance transform.)
    A shape facing an empty key slice tapers off and vanishes halfway; two shapes that do not
    overlap are first moved towards their common centre, so the blend travels between them.
Region growing
    The 6-connected component around the seed of voxels within ``hu_range`` (default
    :data:`GROW_CORE_HU`, the pleural-air level of Do et al. 2012: growth through the looser brush
    range leaks into low-density lung), airways and air outside the body left out; then one
    in-plane step into neighbours within :data:`PLEURAL_AIR_HU` (noisy edge voxels of the air).
    When it holds more than ``max_ml``, the voxels nearest the seed (in mm) up to ``max_ml`` that
    stay connected to it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.errors import PtxError
from ptx_annotator.geometry import bounding_box
from ptx_annotator.geometry import voxel_volume_ml
from ptx_annotator.review.states import EDITED, REVIEWED_STATES

#: Air in the pleural space: from below the air level of any scanner up to where the aerated lung
#: starts (lung parenchyma averages -850..-950 HU, see proposers/classical.py).
PLEURAL_AIR_HU = (-1100.0, -900.0)
#: Voxels whose HU lies here seed and carry region growing (Do et al. 2012: below about -950 HU).
GROW_CORE_HU = (-1100.0, -950.0)
#: Brush diameter in pixels: the review widget's Labels layer starts with this size.
DEFAULT_BRUSH_SIZE = 8
#: Pixels kept around the key masks when interpolating (the edge of the box is outside both).
INTERPOLATION_MARGIN_PX = 2
#: Region growing stops at this volume (a large pneumothorax is a few hundred mL; a whole
#: hemithorax holds about 2-3 L).
DEFAULT_GROW_MAX_ML = 1500.0


def disk_stroke(shape: tuple[int, int], points, size: int = DEFAULT_BRUSH_SIZE) -> np.ndarray:
    """Pixels a round brush of diameter ``size`` covers along the polyline ``points`` ((y, x) pairs)."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    radius = max(size, 1) / 2.0
    covered = np.zeros(shape, dtype=bool)
    steps = [points[:1]]
    for a, b in zip(points[:-1], points[1:]):
        n = max(int(np.ceil(np.linalg.norm(b - a) / max(radius / 2, 0.5))), 1)
        steps.append(a + (b - a) * (np.arange(1, n + 1)[:, None] / n))
    centres = np.concatenate(steps)
    low = np.maximum(np.floor(centres.min(axis=0) - radius).astype(int), 0)
    high = np.minimum(np.ceil(centres.max(axis=0) + radius).astype(int) + 1, shape)
    if np.any(high <= low):
        return covered
    yy, xx = np.ogrid[low[0]: high[0], low[1]: high[1]]
    window = covered[low[0]: high[0], low[1]: high[1]]
    for y, x in centres:
        window |= (yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2
    return covered


def limit_to_hu(before: np.ndarray, after: np.ndarray, hu: np.ndarray, hu_range=PLEURAL_AIR_HU) -> np.ndarray:
    """``after`` with the pixels it added outside ``hu_range`` taken back (erasing is kept)."""
    before, after = np.asarray(before) > 0, np.asarray(after) > 0
    low, high = hu_range
    added = after & ~before
    keep = added & (hu >= low) & (hu <= high)
    return ((after & ~added) | keep).astype(np.uint8)


def signed_distance(mask_slice: np.ndarray, spacing_yx) -> np.ndarray:
    """Distance (mm) to the mask's edge: positive inside, negative outside."""
    inside = np.asarray(mask_slice) > 0
    if not inside.any():
        return np.full(inside.shape, -np.inf)
    if inside.all():
        return np.full(inside.shape, np.inf)
    return ndi.distance_transform_edt(inside, sampling=spacing_yx) - ndi.distance_transform_edt(~inside, sampling=spacing_yx)


def interpolate_slices(first: np.ndarray, last: np.ndarray, n_between: int, spacing_yx) -> list[np.ndarray]:
    """``n_between`` masks blending ``first`` into ``last`` (shape-based interpolation).

    Worked out in the box around both masks (the blend never leaves it), so a fill stays quick.
    """
    first, last = np.asarray(first) > 0, np.asarray(last) > 0
    out = [np.zeros(first.shape, np.uint8) for _ in range(n_between)]
    box = bounding_box(first | last, margin=INTERPOLATION_MARGIN_PX)
    if box is None:
        return out
    for full, part in zip(out, _interpolate_in_box(first[box], last[box], n_between, spacing_yx)):
        full[box] = part
    return out


def _interpolate_in_box(first: np.ndarray, last: np.ndarray, n_between: int, spacing_yx) -> list[np.ndarray]:
    a, b = signed_distance(first, spacing_yx), signed_distance(last, spacing_yx)
    if np.isinf(a).all() and np.isinf(b).all():
        fill = bool(a.flat[0] > 0 and b.flat[0] > 0)
        return [np.full(first.shape, fill, np.uint8) for _ in range(n_between)]
    # an empty end stands at minus the other's depth: the shape shrinks to vanish halfway
    if np.isinf(a).all():
        a = np.full(a.shape, -np.max(b[np.isfinite(b)]) if a.flat[0] < 0 else np.max(np.abs(b)))
    if np.isinf(b).all():
        b = np.full(b.shape, -np.max(a[np.isfinite(a)]) if b.flat[0] < 0 else np.max(np.abs(a)))
    # shapes that do not overlap would blend into nothing: move both towards their common centre
    apart = first.any() and last.any() and not np.logical_and(first > 0, last > 0).any()
    centres = (np.array(ndi.center_of_mass(first > 0)), np.array(ndi.center_of_mass(last > 0))) if apart else None
    out = []
    for i in range(1, n_between + 1):
        w = i / (n_between + 1)
        if centres is not None:
            target = (1 - w) * centres[0] + w * centres[1]
            blend = (1 - w) * ndi.shift(a, target - centres[0], order=1, mode="nearest") \
                + w * ndi.shift(b, target - centres[1], order=1, mode="nearest")
        else:
            blend = (1 - w) * a + w * b
        out.append((blend > 0).astype(np.uint8))
    return out


def check_seed(hu: np.ndarray, seed_zyx, hu_range, allowed: np.ndarray | None = None) -> tuple[int, int, int]:
    """The seed as a (z, y, x) tuple, or a one-line :class:`PtxError` saying why it cannot seed growth."""
    seed = tuple(int(v) for v in seed_zyx)
    if len(seed) != 3 or not all(0 <= s < n for s, n in zip(seed, hu.shape)):
        raise PtxError(f"The seed {seed} lies outside the CT {tuple(hu.shape)}; click inside the image.")
    value, (low, high) = float(hu[seed]), hu_range
    if not low <= value <= high:
        raise PtxError(f"The seed voxel {seed} has {value:.0f} HU, outside the air range {low:.0f}..{high:.0f} HU: "
                       "click inside the pleural air.")
    if allowed is not None and not allowed[seed]:
        raise PtxError(f"The seed voxel {seed} lies in an airway: click inside the pleural air.")
    return seed


def grow_air_region(hu: np.ndarray, seed_zyx, hu_range=GROW_CORE_HU, max_ml: float = DEFAULT_GROW_MAX_ML,
                    spacing=(1.0, 1.0, 1.0), allowed: np.ndarray | None = None,
                    edge_range=PLEURAL_AIR_HU) -> np.ndarray:
    """The air region around ``seed_zyx`` (see the module doc); a boolean volume.

    ``allowed`` (bool volume) limits where it may grow (the session leaves out airways and
    outside air); ``edge_range`` is the range of the one in-plane step at its edge.
    """
    allowed = np.ones(hu.shape, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    seed = check_seed(hu, seed_zyx, (min(hu_range[0], edge_range[0]), max(hu_range[1], edge_range[1])), allowed)
    core = (hu >= hu_range[0]) & (hu <= hu_range[1]) & allowed
    core[seed] = True
    labels, _ = ndi.label(core)
    region = labels == labels[seed]
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndi.generate_binary_structure(2, 1)
    region |= ndi.binary_dilation(region, in_plane) & (hu >= edge_range[0]) & (hu <= edge_range[1]) & allowed
    spacing = np.asarray(spacing, dtype=float)
    limit = int(max_ml * 1000.0 / float(np.prod(spacing)))
    if int(region.sum()) > limit:
        points = np.argwhere(region)
        distance = np.sum(((points - np.asarray(seed)) * spacing) ** 2, axis=1)
        nearest = points[np.argpartition(distance, max(limit - 1, 0))[: max(limit, 1)]]
        region = np.zeros(hu.shape, dtype=bool)
        region[tuple(nearest.T)] = True
        labels, _ = ndi.label(region)
        region = labels == labels[seed]
    return region


class ReviewTools:
    """The tools as session methods (each one undoable edit; slices it changed become ``edited``)."""

    def brush(self, points, index: int | None = None, size: int = DEFAULT_BRUSH_SIZE, erase: bool = False,
              hu_range=None) -> int:
        """Paint (or erase) a round-brush stroke along ``points`` on one slice; returns pixels changed.

        With ``hu_range`` the stroke paints only pixels in that HU range (the HU-limited brush).
        """
        z = self._index(index)
        covered = disk_stroke(self.annotation.mask.shape[1:], points, size)
        before = self.annotation.mask[z] > 0
        after = before & ~covered if erase else before | covered
        if hu_range is not None and not erase:
            after = limit_to_hu(before, after, np.asarray(self.volume.hu[z]), hu_range) > 0
        changed = int(np.count_nonzero(after != before))
        if changed:
            with self._edit("erase" if erase else "brush"):
                self._set_mask_slice(z, after.astype(np.uint8))
                self._mark(z, EDITED)
        return changed

    def limit_stroke_to_hu(self, before=None, after=None, hu_range=PLEURAL_AIR_HU, index: int | None = None) -> np.ndarray:
        """Keep a stroke's painting only where the CT is air (``hu_range``); the slice becomes ``edited``.

        ``before`` defaults to the slice as the session last knew it and ``after`` to the mask now,
        so a viewer that painted into the shared mask array just calls this after the stroke.
        """
        z = self._index(index)
        before = self._known_mask[z] if before is None else before
        after = self.annotation.mask[z] if after is None else after
        limited = limit_to_hu(before, after, np.asarray(self.volume.hu[z]), hu_range)
        with self._edit("HU-limited brush"):
            self._set_mask_slice(z, limited)
            self._mark(z, EDITED)
        return limited

    def fill_between(self, z0: int, z1: int) -> list[int]:
        """Interpolate the mask across the slices between ``z0`` and ``z1``; returns those filled.

        The ends and every slice a person reviewed in between are kept as drawn; the others get
        the interpolation of their nearest kept slices and become ``edited``.
        """
        a, b = sorted((self._index(z0), self._index(z1)))
        keys = [z for z in range(a, b + 1) if z in (a, b) or self.state(z) in REVIEWED_STATES]
        spacing_yx = tuple(float(s) for s in self.volume.spacing[1:])
        filled = []
        with self._edit("fill between slices"):
            for low, high in zip(keys[:-1], keys[1:]):
                if high - low < 2:
                    continue
                between = interpolate_slices(self.annotation.mask[low], self.annotation.mask[high], high - low - 1, spacing_yx)
                for z, values in zip(range(low + 1, high), between):
                    self._set_mask_slice(z, values)
                    self._mark(z, EDITED)
                    filled.append(z)
        return filled

    def grow_region(self, seed_zyx, hu_range=GROW_CORE_HU, max_ml: float = DEFAULT_GROW_MAX_ML) -> list[int]:
        """Add the 3D air region grown from ``seed_zyx`` to the mask; returns the slices it changed.

        Airways and air outside the body (the session's anatomy) are never grown into, unless the
        click itself is in what the anatomy called outside air; a seed in a hemithorax grows
        within that hemithorax only. ``max_ml`` bounds it always.
        """
        anatomy = self._sides.anatomy
        hu = np.asarray(self.volume.hu)
        air_range = (min(hu_range[0], PLEURAL_AIR_HU[0]), max(hu_range[1], PLEURAL_AIR_HU[1]))
        seed = check_seed(hu, seed_zyx, air_range)
        outside = np.asarray(anatomy.outside_air, dtype=bool)
        # the click is trusted over the anatomy: pleural air it counted as outside air still grows
        allowed = ~(np.asarray(anatomy.airways, dtype=bool) | (outside if not outside[seed] else False))
        seed = check_seed(hu, seed, air_range, allowed)
        box = tuple(slice(0, n) for n in self.volume.shape)
        cavity = next((c for c in (anatomy.hemithorax_right, anatomy.hemithorax_left) if c[seed]), None)
        if cavity is not None:  # pleural air stays in its own hemithorax: grow there only
            allowed &= cavity
            box = bounding_box(cavity)
        local = tuple(v - b.start for v, b in zip(seed, box))
        grown = grow_air_region(hu[box], local, hu_range, max_ml, self.volume.spacing,
                                allowed[box])
        region = np.zeros(self.volume.shape, dtype=bool)
        region[box] = grown
        changed = []
        with self._edit("grow region"):
            for z in np.flatnonzero(region.any(axis=(1, 2))):
                z = int(z)
                new = (self.annotation.mask[z] > 0) | region[z]
                if np.array_equal(new, self.annotation.mask[z] > 0):
                    continue
                self._set_mask_slice(z, new.astype(np.uint8))
                self._mark(z, EDITED)
                changed.append(z)
        return changed

    def copy_proposal(self, z0: int | None = None, z1: int | None = None) -> list[int]:
        """Put the proposal into the slices ``z0..z1`` (default: the current slice) as a person's edit."""
        a = self._index(z0)
        b = a if z1 is None else self._index(z1)
        a, b = sorted((a, b))
        missing = [z for z in range(a, b + 1) if z not in self.proposal_indices]
        if missing:
            raise PtxError(f"Slice {missing[0]} has no proposal yet: run Propose first.")
        with self._edit("copy proposal"):
            for z in range(a, b + 1):
                self._set_mask_slice(z, self.proposal_mask[z])
                self._mark(z, EDITED, source=self.proposal_source)
        return list(range(a, b + 1))
