"""A weight-free pneumothorax proposer: pleural air found from HU and thoracic anatomy.

Anchored on Do et al. 2012, "Automated Quantification of Pneumothorax in CT": pleural air is
air (below about -950 HU) inside the thoracic cavity, outside the lung parenchyma, along the
chest wall. The steps, all in one 3D pre-pass:

1. Anatomy (:func:`ptx_annotator.anatomy.segment_thorax`): hemithoraces, airways, body. Air
   outside the hemithoraces (outside air, bowel gas, subcutaneous emphysema beyond the rib cage)
   and the trachea and main bronchi are never candidates.
2. Cores: voxels whose smoothed HU is within a few tens of HU of this scanner's own air level
   (measured on outside air, see :func:`ptx_annotator.synthetic.pneumothorax.estimate_air_noise`;
   a noisier scan is smoothed more). Lung, even emphysematous, averages -850..-950 with vessels;
   pleural air averages the air level. Below the lung base (slices of the hemithorax that hold
   little aerated lung) a sheet of air on the cavity's floor, the costophrenic recess between the
   wall and the diaphragm, is judged by its 3x3 median: it is too thin to keep its air level
   smoothed between the soft tissue on both sides. Along the wall (the outer ``rim_zone_mm``) a voxel is
   judged by the median of its own depth layer (the voxels as deep as it within
   ``layer_window_mm``), so a rim one pixel thin keeps its air level; it counts when, layer by
   layer inwards, it is bounded by more air or by the visceral pleural line (a sharp kernel's
   dark halo along the wall has plain lung inside it). The line is looked for a little past the
   zone: where the wall runs oblique to the slices a rim is wide in-plane.
3. Only 3D core components of at least ``min_core_ml`` that touch the parietal pleura (the
   outer band of the hemithorax) and are shaped like pleural air are kept: a good share of their
   outline on the wall (a tolerance growing with slice thickness), aerated lung beside them, and
   lying to the side of the mid-sagittal plane (a sheet of air lying mostly on the cavity's
   floor, the diaphragm's soft tissue just below it, rests on the wall there). Bullae, blebs,
   bronchi, noise inside the lung and oesophageal or mediastinal gas are not; nor, where the
   kernel undershoots at the wall, air lying almost all within its halo. A blurred rim (step 6)
   touches the wall a pixel or two inside its outer layer; air resting on the wall over a long
   contact needs less lung beside it (the lung a large pneumothorax collapses is dense).
4. Growth: from the cores, in-plane (4-connected) into voxels below ``air_mean + 3 SD``, inside
   the same hemithorax, close to a core or along the chest wall, vessel-free away from the wall;
   slices without a core are seeded from a neighbouring slice's pleural air. The visceral
   pleural line (soft tissue) stops the growth at the collapsed lung.
5. Partial volume: a thin rim on thick slices is mostly voxels only partly air (the truth of a
   reader: at least half air). Beside the air found, in 3D, a voxel is taken when it reads below
   the midpoint between the air level and this side's aerated lung (the visceral side; judged on
   smoothed HU on a noisy scan), and between found air and the chest wall when it reads below the
   midpoint between air and the wall's soft tissue (the parietal side: nothing lies there but air).
6. Blurred rims: a smooth kernel mixes a thin rim with the wall and the pleural line, so that it
   reads only a little darker than the lung; a layer along the wall darker than this side's lung,
   bounded inwards by a line brighter than it, is a core too (not grown from), except where the
   kernel itself undershoots at the wall (much of its edge layer, away from air, darker than the lung).
7. Apart from the lung: air found that reads no darker than the lung just beside it, by less than
   ``MIN_CONTRAST_HU`` (and is not air-level itself), is dark lung fading into lung, such as
   emphysema along the wall, not a space between wall and lung; it is dropped.
8. Up to the pleural line: where a thin pneumothorax crosses an oblique wall (the apex, the base,
   the mediastinal surface) its slab is only partly air and reads at the lung's own level, but it
   still lies between the wall and the visceral pleural line. From the air found, growth follows
   the wall in-plane through voxels no brighter than half way between this side's lung and a
   pleural line, layer by layer bounded inwards by that line (as in step 2). Not where the kernel
   undershoots at the wall: its dark halo with the ringing inside it is that same pattern.
9. Clean-up: small holes filled, components below ``min_component_ml`` dropped.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.anatomy import left_coordinate, segment_thorax
from ptx_annotator.geometry import bounding_box, head_step, midline_left_mm
from ptx_annotator.proposers.postprocess import postprocess_mask
from ptx_annotator.proposers.contract import SliceResult, slice_order
from ptx_annotator.synthetic.pneumothorax import estimate_air_noise
from ptx_annotator.volume import Volume

_IN_PLANE_4 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_4[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
#: HU of aerated lung parenchyma (ringing pleural air on its visceral side), above air, below soft tissue.
LUNG_HU = (-930.0, -400.0)
#: Lung vessels and septa read above this HU after light smoothing; pleural air never does.
VESSEL_HU = -800.0
#: A layer along the chest wall averaging above this HU is a visceral pleural line (or wall), not lung.
PLEURAL_LINE_HU = -650.0
#: In-plane blur (mm) of the chest wall's edge per mm of slice thickness (partial volume of thick slices).
WALL_BLUR_PER_SLICE_MM = 0.25
#: Air noise SD (HU) per pixel of Gaussian smoothing, and the most smoothing a noisy scan gets.
NOISE_HU_PER_SIGMA = 25.0
MAX_SIGMA_PX = 2.0
#: HU of the chest wall's soft tissue, for air's partial volume with it (the parietal side).
WALL_HU = -50.0
#: A smooth kernel's rim: its layer reads this much darker than the lung, and its pleural line this much brighter.
REL_DARK = 20.0
REL_LINE = 150.0
#: A kernel undershoots at the wall when more than this share of the side's edge layer reads that dark.
UNDERSHOOT_SHARE = 1 / 3
#: How deep (pixels) an undershooting kernel's dark halo reaches inside the wall's edge, and the
#: share of a core's voxels that must lie deeper for it to be more than the halo.
HALO_PX = 2
HALO_DEEP_SHARE = 0.2
#: Noise SD (share of the air-lung contrast) above which partial volume is judged on smoothed HU.
PV_NOISE_SHARE = 0.125
#: How far inside the wall's outer layer (pixels) a blurred rim's outline still counts as touching the wall.
BLURRED_WALL_PX = 2
#: The diaphragm's soft tissue under the hemithorax reads above this HU; a component with at least
#: this share of its voxels on it is a sheet of air on the cavity's floor.
FLOOR_TISSUE_HU = -300.0
FLOOR_SHARE = 0.2
#: A slice of a hemithorax with less than this share of aerated lung lies below the lung base: the
#: air on its floor (the costophrenic recess) is judged by its median, not its smoothed HU.
RECESS_LUNG_SHARE = 0.5
#: A component on the wall over the large-contact length needs only this share of the lung share beside it.
COLLAPSED_LUNG_SHARE = 0.25
#: Pleural air is a space apart from the lung: its median HU lies at least this far below the median
#: of the lung just beside it (in-plane, ``LUNG_BESIDE_MM`` out: the visceral pleura and the lung it
#: bounds), partial-volume rims included (83 HU and more on the tuning CTs); dark emphysematous lung,
#: read as air along the wall, fades into the lung around it (49-51 HU there).
MIN_CONTRAST_HU = 65.0
LUNG_BESIDE_MM = (0.8, 2.5)
#: ... unless it reads air-level itself (its median within this of the scanner's air level): a
#: pneumothorax beside emphysematous lung is still air.
AIR_LEVEL_HU = 25.0


class ClassicalProposer:
    """Pleural-air detection without model weights (see the module docstring).

    Parameters
    ----------
    air_threshold_hu : float
        Upper bound for a core voxel's smoothed HU (default -950, the Do et al. level); the
        scanner's measured air level + ``core_margin_hu`` is used when that is lower.
    core_margin_hu : float
        How far above the measured air level a core voxel may be.
    min_core_ml : float
        Smallest pleural-air core (3D component touching the chest wall) kept.
    wall_band_mm : float
        Width of the parietal-pleura band inside the hemithorax.
    grow_sd : float
        Growth accepts voxels below air level + ``grow_sd`` x noise SD (capped at -900 HU).
    near_core_mm : float
        Away from the chest wall, growth reaches this far from a core.
    min_wall_share, min_lung_share, lung_ring_mm, min_contact_cm2 : float
        Shape of pleural air: share of a core's outline on the wall (or its contact with the wall,
        in-plane outline length x slice thickness, of at least ``min_contact_cm2``), share of
        aerated lung in the ring of ``lung_ring_mm`` around it.
    rim_zone_mm, layer_window_mm, line_reach_mm : float
        The outer zone judged layer by layer, the extent along the wall of a layer's median, and
        how far inwards the air or pleural line bounding wall air may lie.
    vessel_free_mm : float
        Away from the wall, growth needs no vessel within this radius.
    mediastinum_mm : float
        A core lying on average within this distance of the mid-sagittal plane is mediastinal gas.
    min_component_ml, max_hole_mm2 : float
        Clean-up of the final mask.
    pv_zone_mm, pv_near_mm : float
        Partial-volume growth (off when ``pv_zone_mm`` is 0) and how far (3D) it reaches from the air found.
    """

    #: v9: the air found is followed along the wall up to the pleural line (v8: air that fades into the
    #: lung beside it is dropped; v7: the costophrenic recess judged by its median; v6: the pleural
    #: line past the rim zone, sheets on the floor, the halo; a kept v8 proposal is not this one)
    source_id = "classical-v9"

    def __init__(self, air_threshold_hu: float = -950.0, core_margin_hu: float = 35.0, min_core_ml: float = 2.0,
                 wall_band_mm: float = 3.5, grow_sd: float = 3.0, near_core_mm: float = 7.0,
                 min_component_ml: float = 0.3, max_hole_mm2: float = 100.0, min_wall_share: float = 0.25,
                 min_lung_share: float = 0.1, lung_ring_mm: float = 3.0, rim_zone_mm: float = 5.0,
                 vessel_free_mm: float = 2.5, layer_window_mm: float = 4.0, line_reach_mm: float = 2.5,
                 mediastinum_mm: float = 12.0, min_contact_cm2: float = 20.0, pv_zone_mm: float = 5.0,
                 pv_near_mm: float = 1.0):
        self.air_threshold_hu = float(air_threshold_hu)
        self.core_margin_hu = float(core_margin_hu)
        self.min_core_ml = float(min_core_ml)
        self.wall_band_mm = float(wall_band_mm)
        self.grow_sd = float(grow_sd)
        self.near_core_mm = float(near_core_mm)
        self.min_component_ml = float(min_component_ml)
        self.max_hole_mm2 = float(max_hole_mm2)
        self.min_wall_share = float(min_wall_share)
        self.min_lung_share = float(min_lung_share)
        self.lung_ring_mm = float(lung_ring_mm)
        self.rim_zone_mm = float(rim_zone_mm)
        self.vessel_free_mm = float(vessel_free_mm)
        self.layer_window_mm = float(layer_window_mm)
        self.line_reach_mm = float(line_reach_mm)
        self.mediastinum_mm = float(mediastinum_mm)
        self.min_contact_cm2 = float(min_contact_cm2)
        self.pv_zone_mm = float(pv_zone_mm)
        self.pv_near_mm = float(pv_near_mm)

    def describe(self) -> dict:
        return {"method": "pleural air: HU cores at the chest wall + bounded growth (Do et al. 2012)",
                "air_threshold_hu": self.air_threshold_hu, "core_margin_hu": self.core_margin_hu,
                "min_core_ml": self.min_core_ml, "wall_band_mm": self.wall_band_mm, "grow_sd": self.grow_sd,
                "near_core_mm": self.near_core_mm, "min_component_ml": self.min_component_ml,
                "max_hole_mm2": self.max_hole_mm2, "min_wall_share": self.min_wall_share,
                "min_lung_share": self.min_lung_share, "lung_ring_mm": self.lung_ring_mm,
                "rim_zone_mm": self.rim_zone_mm, "vessel_free_mm": self.vessel_free_mm,
                "layer_window_mm": self.layer_window_mm, "line_reach_mm": self.line_reach_mm,
                "mediastinum_mm": self.mediastinum_mm, "min_contact_cm2": self.min_contact_cm2,
                "pv_zone_mm": self.pv_zone_mm, "pv_near_mm": self.pv_near_mm}

    def iter_slices(self, volume: Volume, first_slice: int | None = None,
                    should_cancel: Callable[[], bool] | None = None) -> Iterator[SliceResult]:
        """Yield each slice's mask, ``first_slice`` first, after one 3D pass over the volume."""
        if should_cancel is not None and should_cancel():
            return
        mask = self.segment(volume)
        order = slice_order(volume.shape[0], first_slice)
        for done, index in enumerate(order, start=1):
            if should_cancel is not None and should_cancel():
                return
            yield SliceResult(index=index, mask=mask[index], probability=None, done=done, total=len(order))

    def segment(self, volume: Volume) -> np.ndarray:
        """The pleural-air mask (uint8, z, y, x) of the whole volume."""
        anatomy = segment_thorax(volume)
        air_mean, air_sd = estimate_air_noise(volume, anatomy)
        midline = midline_left_mm(anatomy, volume.affine)
        mask = np.zeros(volume.shape, dtype=np.uint8)
        for side in ("right", "left"):
            hemithorax = anatomy.hemithorax(side)
            if hemithorax.sum() * volume.voxel_volume_ml < 50:
                continue
            box = bounding_box(hemithorax, margin=(0, 2, 2))
            found = self._side(volume, hemithorax[box], anatomy.airways[box], box, air_mean, air_sd, midline)
            mask[box] |= found
        return mask

    def _side(self, volume, hemi, airways, box, air_mean, air_sd, midline) -> np.ndarray:
        hu = volume.hu[box].astype(np.float32)
        pixel_mm = float(np.mean(volume.spacing[1:]))
        voxel_ml = volume.voxel_volume_ml
        core_hu = min(self.air_threshold_hu, air_mean + self.core_margin_hu)
        grow_hu = min(-900.0, air_mean + self.grow_sd * air_sd)
        # a noisier scan is smoothed more, so that its air still averages below the core level
        sigma = float(np.clip(air_sd / NOISE_HU_PER_SIGMA, 1.0, MAX_SIGMA_PX))
        smooth = ndi.gaussian_filter(hu, (0, sigma, sigma))
        depth = ndi.distance_transform_cdt(hemi, metric=_IN_PLANE_4)  # in-plane pixels from the chest wall, 1 at it
        candidates = hemi & ~ndi.binary_dilation(airways, _IN_PLANE_4, iterations=3)
        band = hemi & (depth <= max(1, round(self.wall_band_mm / pixel_mm)))
        layers = max(1, round(self.rim_zone_mm / pixel_mm))
        window = 2 * max(1, round(self.layer_window_mm / pixel_mm / 2)) + 1
        lung_level = _lung_level(hu, candidates, depth, layers)
        reach_px = max(1, round(self.line_reach_mm / pixel_mm))
        # a smooth kernel blurs a thin rim with the wall and the pleural line: it reads only a little
        # darker than the lung, but it still lies along the wall with the (brighter) line inside it
        # (not where the kernel itself undershoots at the wall: much of its edge layer, over the whole
        # side, reads darker than the lung, and a dark layer with bright ringing inside it is no evidence)
        # (a rim's own air, air-level even smoothed, is left out of this wall statistic)
        near_air = ndi.binary_dilation(smooth < core_hu, _IN_PLANE_4, iterations=reach_px)
        edge = hu[candidates & (depth == HALO_PX) & ~near_air]
        undershoot = edge.size > 0 and float(np.mean(edge < lung_level - REL_DARK)) > UNDERSHOOT_SHARE
        relative = lung_level - REL_DARK > grow_hu and not undershoot
        below = (core_hu, grow_hu) + ((lung_level - REL_DARK,) if relative else ())
        above = (PLEURAL_LINE_HU,) + ((lung_level + REL_LINE,) if relative else ())
        judged = _layer_medians(hu, depth, layers, window, below, above, deeper=reach_px)
        dark_core, dark_grow, line = judged[0], judged[1], judged[len(below)]
        rim_like = _wall_air(dark_core, line, depth, layers, smooth < core_hu, reach_px)
        # (the layer is judged as a whole; its pleural-line and wall voxels themselves are not air)
        core = candidates & ((smooth < core_hu) | (rim_like & (hu < grow_hu)))
        floor = _on_the_floor(hemi, hu, volume.affine)
        core |= _recess_air(hu, candidates, floor, core_hu)
        rel = np.zeros_like(core)
        if relative:  # a blurred rim is bounded inwards by its brighter line (or counted rim), not by deep air
            rel = candidates & _wall_air(judged[2], judged[-1], depth, layers, np.zeros_like(core), reach_px) & ~core
            core = core | rel
        # noise leaves pinholes in a core, which would count as outline away from the wall: fill them
        filled = postprocess_mask(core, volume.spacing, min_component_mm3=0, max_hole_mm2=self.max_hole_mm2) > 0
        labels, n = ndi.label(filled & candidates, np.ones((3, 3, 3), dtype=bool))
        if n == 0:
            return np.zeros(hemi.shape, dtype=np.uint8)
        sizes = np.bincount(labels.ravel())
        at_wall = np.unique(labels[band & (labels > 0)])
        keep = [int(i) for i in at_wall if i > 0 and sizes[i] * voxel_ml >= self.min_core_ml]
        # a thick slice averages the wall over its thickness: its edge blurs in-plane by a share of it
        contact_px = max(1, round(WALL_BLUR_PER_SLICE_MM * volume.spacing[0] / pixel_mm))
        wall = depth <= contact_px
        if undershoot and keep:
            # an undershooting kernel's halo along the wall reads air-level in stretches under noise,
            # with its ringing inside it like a pleural line: air almost all within the halo is that
            keep = _holding(labels, keep, depth > HALO_PX, HALO_DEEP_SHARE)
        if keep:
            # air over the diaphragm's dome lies away from the wall in-plane, on the cavity's floor in
            # 3D: a sheet lying mostly on the floor rests on the wall there (a bleb on the dome only
            # touches it)
            sheets = _holding(labels, keep, floor, FLOOR_SHARE)
            if sheets:
                wall = wall | (floor & np.isin(labels, sheets))
        if relative and keep:
            # a smooth kernel mixes the wall's edge with the rim: a blurred rim (mostly relative-dark
            # voxels) lies a pixel or two inside the wall's outer layer
            blurred = _holding(labels, keep, rel, 0.5)
            if blurred:
                wall = wall | ((depth <= contact_px + BLURRED_WALL_PX) & np.isin(labels, blurred))
        keep = _pleural_shaped(labels, keep, wall, hu, self.min_wall_share, self.min_lung_share,
                               max(1, round(self.lung_ring_mm / pixel_mm)),
                               self.min_contact_cm2 * 100.0 / (pixel_mm * volume.spacing[0]))
        keep = _off_midline(labels, keep, volume.affine, box, midline, self.mediastinum_mm)
        if not keep:
            return np.zeros(hemi.shape, dtype=np.uint8)
        kept = np.isin(labels, keep)
        # growth starts from air-level cores only: a blurred rim is proposed as it is, not grown from
        core = kept & core & ~rel
        rel = kept & rel

        near = ndi.binary_dilation(core, _IN_PLANE_4, iterations=max(1, round(self.near_core_mm / pixel_mm)))
        # pleural air holds no vessels: away from the wall, growth needs a vessel-free neighbourhood
        # (dark, emphysematous or noisy lung reads as air voxel by voxel, never without vessels)
        reach = max(1, round(self.vessel_free_mm / pixel_mm))
        vessel_free = ~_square_or(smooth >= VESSEL_HU, reach)
        rim_air = _wall_air(dark_grow, line, depth, layers, smooth < grow_hu, reach_px)
        allowed = candidates & (hu < grow_hu) & (band | near) & (vessel_free | rim_air)
        grown = ndi.binary_propagation(core, _IN_PLANE_4, mask=allowed)
        # slices a thin rim crosses without a core: seed them from the neighbouring slice's air
        z_seedable = allowed & (smooth < air_mean + 2 * self.core_margin_hu) & (vessel_free | rim_like)
        for _ in range(4):
            seeds = _grow_one(grown, (0,)) & z_seedable & ~grown
            if not seeds.any():
                break
            grown = ndi.binary_propagation(grown | seeds, _IN_PLANE_4, mask=allowed | grown)
        # the air's edge beside the lung lies within ``reach`` of a vessel-free voxel: take it back
        # (step by step through air, never across the pleural line into the lung behind it)
        grown = ndi.binary_dilation(grown, _IN_PLANE_4, iterations=reach, mask=candidates & (hu < grow_hu)) | rel
        if self.pv_zone_mm > 0 and grown.any():
            # a voxel is judged on its own HU where the noise is small beside the air-lung contrast,
            # on its smoothed HU on a noisy scan (lung voxels would otherwise read half air by chance)
            noisy = air_sd > PV_NOISE_SHARE * (lung_level - air_mean)
            grown = _partial_volume(grown, smooth if noisy else hu, hu, candidates, depth, air_mean, lung_level,
                                    max(1, round(self.pv_near_mm / pixel_mm)), layers)
        ring_px = [max(1, round(mm / pixel_mm)) for mm in LUNG_BESIDE_MM]
        grown = _apart_from_lung(grown, hu, candidates, air_mean, ring_px)
        if not undershoot:
            grown = _to_the_pleural_line(grown, hu, candidates, depth, line, layers, reach_px, lung_level)
        return _clean(grown, volume.spacing, self.min_component_ml, self.max_hole_mm2)


def _holding(labels, keep, mask, share) -> list[int]:
    """The components of ``keep`` with at least ``share`` of their voxels in ``mask``."""
    return [i for i, held in zip(keep, ndi.mean(mask, labels, keep)) if held >= share]


def _on_the_floor(hemi, hu, affine) -> np.ndarray:
    """Voxels of the hemithorax resting on the diaphragm: the voxel below (caudal) lies outside it, in soft tissue."""
    below = np.zeros(hemi.shape, dtype=bool)
    tissue = ~hemi & (hu > FLOOR_TISSUE_HU)
    if head_step(affine) > 0:  # the feet lie at lower z
        below[1:] = tissue[:-1]
    else:
        below[:-1] = tissue[1:]
    return hemi & below


def _recess_air(hu, candidates, floor, core_hu) -> np.ndarray:
    """Floor voxels whose in-plane 3x3 median reads below ``core_hu``, on the slices where fewer than
    :data:`RECESS_LUNG_SHARE` of the candidates read as aerated lung (below the lung base)."""
    lung = np.count_nonzero(candidates & (hu > LUNG_HU[0]) & (hu < LUNG_HU[1]), axis=(1, 2))
    below_lung = lung < RECESS_LUNG_SHARE * np.count_nonzero(candidates, axis=(1, 2))
    out = np.zeros(floor.shape, dtype=bool)
    for z in np.flatnonzero(below_lung & floor.any(axis=(1, 2))):
        box = bounding_box(floor[z], margin=2)
        out[z][box] = floor[z][box] & candidates[z][box] & (ndi.median_filter(hu[z][box], size=3) < core_hu)
    return out


def _lung_level(hu, candidates, depth, layers) -> float:
    """Median HU of this hemithorax's aerated lung, away from the wall."""
    lung = candidates & (depth > layers + 2) & (hu > LUNG_HU[0] - 20) & (hu < LUNG_HU[1])
    values = hu[lung]
    return float(np.median(values[::4])) if values.size > 4000 else -850.0


def _partial_volume(grown, level_hu, hu, candidates, depth, air_mean, lung_level, near_px, layers) -> np.ndarray:
    """The air found, grown in 3D into the voxels that are at least half air (partial volume).

    A voxel half filled with air reads half way between the air level and the tissue that fills
    the rest: aerated lung (measured deeper in this hemithorax) on the visceral side.
    """
    box = bounding_box(grown, margin=near_px + 1)
    found, level_hu, hu, candidates, depth = grown[box], level_hu[box], hu[box], candidates[box], depth[box]
    mid = air_mean + 0.5 * (lung_level - air_mean)
    found = ndi.binary_dilation(found, iterations=near_px, mask=candidates & (level_hu < mid))
    # parietal side: between found air and the chest wall lies nothing but air; the voxels there
    # mix air with wall (soft tissue), and are at least half air below the midpoint of the two
    outer = candidates & (hu < air_mean + 0.5 * (WALL_HU - air_mean))
    for k in range(layers, 0, -1):
        found |= _grow_one(found & (depth == k + 1), (1, 2)) & (depth == k) & outer
    grown = grown.copy()
    grown[box] = found
    return grown


def _apart_from_lung(grown, hu, candidates, air_mean, ring_px) -> np.ndarray:
    """``grown`` without the 3D components that read less than :data:`MIN_CONTRAST_HU` darker than
    the lung beside them (the in-plane ring ``ring_px`` pixels out, lung-level voxels of the
    candidates not in ``grown``), unless they read air-level themselves."""
    if not grown.any():
        return grown
    near, far = ring_px
    box = bounding_box(grown, margin=(0, far, far))
    found, hu, candidates = grown[box], hu[box], candidates[box]
    labels, n = ndi.label(found, np.ones((3, 3, 3), dtype=bool))
    beside = ~ndi.binary_dilation(found, _in_plane_diamond(near)) & candidates & (hu < LUNG_HU[1])
    ring = ndi.grey_dilation(labels, footprint=_in_plane_diamond(far)) * beside
    inside, around = _medians(hu, labels, n), _medians(hu, ring, n)  # NaN: no lung beside it
    dark_lung = np.flatnonzero((around - inside < MIN_CONTRAST_HU) & (inside > air_mean + AIR_LEVEL_HU)) + 1
    if dark_lung.size == 0:
        return grown
    grown = grown.copy()
    grown[box] &= ~np.isin(labels, dark_lung)
    return grown


def _to_the_pleural_line(grown, hu, candidates, depth, line, layers, reach_px, lung_level) -> np.ndarray:
    """``grown`` followed in-plane along the wall (the outer ``layers``) through the voxels that read
    below the midpoint of ``lung_level`` and :data:`PLEURAL_LINE_HU` and are bounded inwards, layer
    by layer within ``reach_px``, by the pleural ``line`` (:func:`_wall_air`).

    A thin pneumothorax where the wall runs oblique to the slices fills only part of each slab, so
    it reads like the lung; it is still a space between the wall and the visceral pleura. Grown
    only from air found: a lung-level band along a line elsewhere (a vessel beside the wall) is
    no evidence on its own.
    """
    if not grown.any():
        return grown
    band = candidates & (depth <= layers) & (hu < 0.5 * (lung_level + PLEURAL_LINE_HU))
    bounded = _wall_air(band, line, depth, layers, np.zeros_like(grown), reach_px)
    return ndi.binary_propagation(grown, _IN_PLANE_4, mask=grown | bounded)


def _medians(values, labels, n) -> np.ndarray:
    """Median of ``values`` over each label 1..n (NaN for a label with no voxel), sorting only the labelled voxels."""
    where = labels > 0
    label, value = labels[where], values[where]
    order = np.lexsort((value, label))
    label, value = label[order], value[order].astype(np.float64)
    counts = np.bincount(label, minlength=n + 1)[1:]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.full(n, np.nan)
    has = counts > 0
    low = starts[has] + (counts[has] - 1) // 2
    high = starts[has] + counts[has] // 2
    out[has] = 0.5 * (value[low] + value[high])
    return out


def _in_plane_diamond(radius: int) -> np.ndarray:
    """The in-plane (4-connected) diamond of ``radius`` pixels, as a 3D footprint one slice thick."""
    yy, xx = np.ogrid[-radius: radius + 1, -radius: radius + 1]
    return (np.abs(yy) + np.abs(xx) <= radius)[None]


def _off_midline(labels, keep, affine, box, midline, mediastinum_mm) -> list[int]:
    """The components lying, on average, more than ``mediastinum_mm`` to the side of the mid-sagittal plane.

    The pleural cavities lie either side of the mediastinum: gas centred on the midline is in the
    oesophagus or the mediastinum (merged into a lung's outline where it touches it), whereas even
    a medial pneumothorax spreads over the lung's mediastinal surface, well to its side.
    """
    if not keep:
        return []
    affine = np.array(affine, dtype=float)
    affine[:3, 3] += affine[:3, :3] @ np.array([b.start for b in box], dtype=float)
    offset = np.abs(np.broadcast_to(left_coordinate(affine, labels.shape), labels.shape) - midline)
    mean_offset = ndi.mean(offset, labels, keep)
    return [i for i, mm in zip(keep, mean_offset) if mm > mediastinum_mm]


def _wall_air(dark, line, depth, layers, deep_air, reach_px) -> np.ndarray:
    """Voxels along the wall that are pleural air: dark along their layer, bounded inwards by air or a pleural line.

    Worked from the deepest layer outwards: a ``dark`` voxel of layer ``k`` counts when, within
    ``reach_px`` pixels, a deeper layer holds counted air, the visceral pleural ``line`` or, past
    the layers, ``deep_air``. Pleural air is a space between the wall and the lung, seen as a line;
    a sharp kernel's dark halo along the wall is not: plain lung lies inside it.
    """
    air = np.zeros(depth.shape, dtype=bool)
    rows = np.nonzero((dark & (depth <= layers)).any(axis=(1, 2)))[0]  # the work is in-plane: only slices with dark layers
    if rows.size == 0:
        return air
    dark, line, depth = dark[rows], line[rows], depth[rows]
    found = np.zeros(depth.shape, dtype=bool)
    history = [deep_air[rows] & (depth > layers)]
    for k in range(layers, 0, -1):
        layer_dark = dark & (depth == k)
        if not layer_dark.any():
            history.insert(0, np.zeros(depth.shape, dtype=bool))
            continue
        support = line & (depth > k) & (depth <= k + reach_px)
        for counted in history[:reach_px]:
            support |= counted
        layer_air = layer_dark & _square_or(support, reach_px)
        found |= layer_air
        history.insert(0, layer_air)
    air[rows] = found
    return air


def _grow_one(mask: np.ndarray, axes) -> np.ndarray:
    """``mask`` grown by one voxel along each of ``axes``, both ways (a binary dilation by that cross, by shifts)."""
    out = mask.copy()
    for axis in axes:
        lower = [slice(None)] * mask.ndim
        upper = [slice(None)] * mask.ndim
        lower[axis], upper[axis] = slice(0, -1), slice(1, None)
        out[tuple(upper)] |= mask[tuple(lower)]
        out[tuple(lower)] |= mask[tuple(upper)]
    return out


def _square_or(mask: np.ndarray, radius: int) -> np.ndarray:
    """Per voxel: whether ``mask`` holds anywhere in its in-plane square of ``2 * radius + 1`` pixels.

    (A binary dilation by the square, done as shifted ORs along y then x, span doubling: several
    times faster than a maximum filter here.)
    """
    out = mask
    width = 2 * radius + 1
    for axis in (1, 2):
        pad = [(0, 0)] * mask.ndim
        pad[axis] = (radius, radius)
        grown = np.pad(out, pad)
        span = 1  # grown[i] holds the OR over [i, i + span)
        while span < width:
            step = min(span, width - span)
            head = [slice(None)] * mask.ndim
            tail = [slice(None)] * mask.ndim
            head[axis], tail[axis] = slice(0, grown.shape[axis] - step), slice(step, None)
            shifted = grown.copy()
            shifted[tuple(head)] |= grown[tuple(tail)]
            grown, span = shifted, span + step
        keep = [slice(None)] * mask.ndim
        keep[axis] = slice(0, mask.shape[axis])
        out = grown[tuple(keep)]
    return out


def _layer_medians(hu, depth, layers, window, below, above, deeper=0) -> list[np.ndarray]:
    """Per level: the voxels up to ``layers`` pixels deep whose own depth layer mostly lies below it
    (the levels of ``below``), then above it (those of ``above``, judged ``deeper`` pixels further:
    a line bounding the deepest dark layer lies past it).

    A voxel's layer is the voxels at its depth within ``window`` pixels: a median along the wall,
    never across it, keeps a rim one pixel thin at the air level while its noise averages out (a
    Gaussian or median across the wall mixes it with wall and lung) and a rib's partial volume does
    not outweigh it. A voxel's counts are packed into one float64 code; layers ``window`` apart
    share one filter (a window never reaches from one to the other: depth changes by at most one
    pixel per pixel).
    """
    tests = [(level, False) for level in below] + [(level, True) for level in above]
    base = float(window * window + 1)
    out = [np.zeros(hu.shape, dtype=bool) for _ in tests]
    deepest = layers + deeper
    shell = np.flatnonzero((depth >= 1) & (depth <= deepest))  # the work is along the wall only
    if shell.size == 0:
        return out
    shell_depth = depth.ravel()[shell]
    code = np.ones(shell.size, dtype=np.float64)  # 1 for the voxel, base ** i for each level it lies beyond
    shell_hu = hu.ravel()[shell]
    for i, (level, is_above) in enumerate(tests, start=1):
        code[(shell_hu > level) if is_above else (shell_hu < level)] += base ** i
    counts = np.empty(shell.size, dtype=np.float64)
    packed = np.zeros(hu.shape, dtype=np.float64)
    for first_layer in range(1, min(window, deepest) + 1):
        members = np.flatnonzero(shell_depth % window == first_layer % window)
        packed.ravel()[shell[members]] = code[members]
        counts[members] = ndi.uniform_filter(packed, (1, window, window)).ravel()[shell[members]]
        packed.ravel()[shell[members]] = 0.0
    counts = np.rint(counts * window * window)
    total = np.maximum(np.mod(counts, base), 1)
    within = shell_depth <= layers  # past the layers: lines only
    for i in range(1, len(tests) + 1):
        judged = np.mod(np.floor_divide(counts, base ** i), base) / total > 0.5
        out[i - 1].ravel()[shell] = judged & within if i <= len(below) else judged
    return out


def _pleural_shaped(labels, keep, wall, hu, min_wall_share, min_lung_share, ring_px,
                    min_contact_px) -> list[int]:
    """The core components shaped like pleural air: along the chest wall, with aerated lung beside them.

    Pleural air lies between the parietal pleura (chest wall) and the visceral pleura (lung): a
    good share of its in-plane outline touches the wall, and the tissue just around it is partly
    aerated lung. A bulla or subpleural bleb is round and lung-bound (it touches the wall at a
    point); bowel gas under the diaphragm is ringed by bowel wall and organs, not lung. ``wall`` is
    where an outline voxel counts as touching the chest wall (the hemithorax's outer pixels). A
    large pneumothorax may have a long ragged outline against the collapsed lung: resting on the
    wall over ``min_contact_px`` outline pixels (many times the contact of the largest bleb) is
    enough on its own, and it needs less lung beside it (``COLLAPSED_LUNG_SHARE`` of
    ``min_lung_share``): the lung it collapses is dense, and most of its ring is chest wall.
    """
    if not keep:
        return []
    index = np.asarray(keep)
    footprint = np.zeros((1, 3, 3), dtype=bool)
    footprint[0] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    inner = ndi.grey_erosion(labels, footprint=footprint)
    outline = (labels > 0) & (inner != labels)
    contact = ndi.sum(outline & wall, labels, index)
    wall_share = contact / np.maximum(ndi.sum(outline, labels, index), 1)
    ring_footprint = np.zeros((1, 2 * ring_px + 1, 2 * ring_px + 1), dtype=bool)
    yy, xx = np.ogrid[-ring_px: ring_px + 1, -ring_px: ring_px + 1]
    ring_footprint[0] = yy ** 2 + xx ** 2 <= ring_px ** 2
    ring = ndi.grey_dilation(labels, footprint=ring_footprint) * (labels == 0)
    lung = (hu > LUNG_HU[0]) & (hu < LUNG_HU[1])
    lung_share = ndi.mean(lung, ring, index) if index.size else []
    return [int(i) for i, c, w, g in zip(index, contact, wall_share, lung_share)
            if (w >= min_wall_share and g >= min_lung_share)
            or (c >= min_contact_px and g >= COLLAPSED_LUNG_SHARE * min_lung_share)]


def _clean(mask: np.ndarray, spacing, min_component_ml: float, max_hole_mm2: float) -> np.ndarray:
    """Fill small in-plane holes, drop small 3D components."""
    return postprocess_mask(mask, spacing, min_component_mm3=min_component_ml * 1000.0,
                            max_hole_mm2=max_hole_mm2).astype(np.uint8)
