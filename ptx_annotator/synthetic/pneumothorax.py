"""Simulated pneumothorax: insert pleural air into a real CT, with its exact ground-truth mask.

The pleural air fills a rim of the hemithorax along the chest wall whose thickness grows towards
the non-dependent side (anterior when supine) and the apex, with seed-dependent smooth
irregularity. The lung is not erased: its tissue is displaced towards the hilum by a smooth radial
warp (``scipy.ndimage.map_coordinates``) and gets denser as it is compressed, so its tissue mass
is kept. The pleural space holds air at the scanner's own air level and noise, measured on the
trachea and outside air of the same CT, and a thin visceral pleural line marks the lung edge.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.anatomy import ThoraxAnatomy, segment_thorax
from ptx_annotator.geometry import bounding_box, head_step
from ptx_annotator.synthetic.slab import COVERED_SHARE, cavity_on_subslices, slab_mean, subslices, to_subslices
from ptx_annotator.synthetic.shape import (LOCATIONS, RIM_EXTENTS, adhesion_patches, nondependent_direction,  # noqa: F401
                                           normalised_along, patient_coordinates, rim_region, thickness_weight)
from ptx_annotator.volume import Volume

#: Fraction tolerance: the achieved fraction is within this (absolute) of the requested one.
FRACTION_TOLERANCE = 0.01
#: HU of the visceral pleural line at the collapsed lung's edge (partial volume of a thin membrane).
PLEURAL_LINE_HU = -150.0
#: HU of serous pleural fluid (hydropneumothorax).
FLUID_HU = 15.0
#: Depth (mm) of the dark edge-enhancement halo of sharp kernels inside the chest wall's edge.
HALO_MM = 2.5
#: Compressed parenchyma is not made denser than this (HU).
MAX_COMPRESSED_HU = -200.0

#: Accepted ranges of the options (a rim's mm of air; shares of the wall and of the pleural space).
RIM_MM_RANGE = (0.5, 20.0)
ADHESIONS_MAX = 0.7
FLUID_SHARE_MAX = 0.7

#: Air thinner than this (mm) is not laid down: no hairline rims along the dependent chest wall.
MIN_THICKNESS_MM = 2.0
#: Pleural air pockets smaller than this (mL) are not laid down (specks between hilar vessels).
MIN_POCKET_ML = 0.2
#: Concavities of the hemithorax narrower than this (mm, at the hila) do not count as chest wall.
POCKET_MM = 10.0

_IN_PLANE_4 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_4[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


@dataclass
class SimulatedPneumothorax:
    """A CT with an inserted pneumothorax and its truth.

    Attributes
    ----------
    volume : Volume
        New HU on the same grid and geometry as the source.
    mask : ndarray of uint8, shape (z, y, x)
        1 where pleural air was inserted (the air only: pleural fluid is not in it).
    side : str
        'right' or 'left' (patient side).
    fraction_achieved : float
        Pneumothorax volume / same-side hemithorax volume.
    volume_ml : float
        Pneumothorax volume in mL.
    air_hu : tuple of float
        Mean and noise SD (HU) used for the pleural air.
    fluid_mask : ndarray of uint8 or None
        Pleural fluid of a hydropneumothorax (dependent, below the air-fluid level).
    options : dict
        Every option the simulation used (seeded and recorded: same options, same result).
    air_share : ndarray of float32 or None
        Share of each voxel that is pleural air (partial volume of thick slices, see
        :mod:`ptx_annotator.synthetic.slab`); ``mask`` is where it is at least ``COVERED_SHARE``.
    """

    volume: Volume
    mask: np.ndarray
    side: str
    fraction_achieved: float
    volume_ml: float
    fraction_requested: float = 0.0
    air_hu: tuple[float, float] = (-1000.0, 0.0)
    seed: int = 0
    fluid_mask: np.ndarray | None = None
    options: dict = dataclasses.field(default_factory=dict)
    air_share: np.ndarray | None = None


def simulate_pneumothorax(volume: Volume, side: str = "right", fraction: float = 0.2, seed: int = 0,
                          anterior_bias: float = 0.9, apical_bias: float = 0.6,
                          anatomy: ThoraxAnatomy | None = None, location: str = "anterior",
                          rim_mm: float | None = None, rim_extent: str = "surface", adhesions: float = 0.0,
                          fluid_share: float = 0.0) -> SimulatedPneumothorax:
    """Insert a pneumothorax of ``fraction`` of the ``side`` hemithorax into ``volume``.

    Parameters
    ----------
    volume : Volume
        A chest CT in HU (not modified).
    side : {'right', 'left'}
        Patient side.
    fraction : float
        Requested pleural space (air, and fluid when ``fluid_share`` > 0) / hemithorax volume,
        in (0, 0.9]. Ignored for a thin rim (``rim_mm``).
    seed : int
        Seeds the shape irregularity and the air noise: same seed, same result.
    anterior_bias, apical_bias : float in [0, 1]
        How strongly the air gathers towards ``location`` (anterior: the non-dependent side) and
        at the apex; 0 gives an even rim along the whole chest wall.
    anatomy : ThoraxAnatomy, optional
        Reuse a segmentation of ``volume``.
    location : str
        One of :data:`ptx_annotator.synthetic.shape.LOCATIONS`: where the air gathers.
    rim_mm : float, optional
        A thin rim instead of a fraction: this many mm of air (1-3 mm is the occult kind) over
        ``rim_extent`` — the whole surface facing ``location``, or only the apex.
    adhesions : float in [0, 0.7]
        Share of the wall where adhesions hold the lung (a loculated pneumothorax: the air lies
        in separate pockets between them).
    fluid_share : float in [0, 0.7]
        Hydropneumothorax: this share of the pleural space, the dependent part below one
        horizontal air-fluid level, is fluid (HU of serous fluid) instead of air.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left' (patient side), not {side!r}")
    if rim_mm is None and not 0 < fraction <= 0.9:
        raise ValueError(f"fraction must be in (0, 0.9] of the hemithorax, not {fraction}")
    if rim_mm is not None and not RIM_MM_RANGE[0] <= rim_mm <= RIM_MM_RANGE[1]:
        raise ValueError(f"rim_mm must be in [{RIM_MM_RANGE[0]:g}, {RIM_MM_RANGE[1]:g}] mm, not {rim_mm}")
    for name, value, high in (("anterior_bias", anterior_bias, 1), ("apical_bias", apical_bias, 1),
                              ("adhesions", adhesions, ADHESIONS_MAX), ("fluid_share", fluid_share, FLUID_SHARE_MAX)):
        if not 0 <= value <= high:
            raise ValueError(f"{name} must be in [0, {high}], not {value}")
    if rim_extent not in RIM_EXTENTS:
        raise ValueError(f"rim_extent must be one of {', '.join(RIM_EXTENTS)}, not {rim_extent!r}")
    if location not in LOCATIONS:
        raise ValueError(f"location must be one of {', '.join(LOCATIONS)}, not {location!r}")
    anatomy = anatomy or segment_thorax(volume)
    hemithorax = anatomy.hemithorax(side)
    if hemithorax.sum() * volume.voxel_volume_ml < 100:
        from ptx_annotator.errors import StudyError

        raise StudyError(f"No {side} lung found in '{volume.source}' (hemithorax under 100 mL): a chest CT "
                         "covering the lungs is needed to simulate a pneumothorax.")
    rng = np.random.default_rng(seed)
    air_mean, air_sd = estimate_air_noise(volume, anatomy)

    box = bounding_box(hemithorax, margin=(2, 8, 8))
    hemi = hemithorax[box]
    spacing = np.asarray(volume.spacing, dtype=float)
    cavity = _close_in_plane(hemi, POCKET_MM / spacing[1])  # hilar pockets are not chest wall
    weight = thickness_weight(volume, hemi, box, side, location, anterior_bias, apical_bias, rng)
    patches = adhesion_patches(hemi.shape, spacing, adhesions, rng) if adhesions > 0 else None
    region = rim_region(volume, hemi, box, side, location, rim_extent) if rim_mm is not None else None
    n = subslices(spacing[0])  # thick slices: the air is laid down on sub-slices (partial volume)
    fine_spacing = np.array([spacing[0] / n, spacing[1], spacing[2]])
    fine_cavity = cavity_on_subslices(cavity, spacing, n)
    grid = (fine_cavity & to_subslices(hemi, n, linear=False), fine_cavity, to_subslices(weight, n),
            None if patches is None else to_subslices(patches, n, linear=False),
            None if region is None else to_subslices(region, n, linear=False), fine_spacing)
    fine_space, fine_thickness, fine_depth, held = _pleural_space(*grid, rim_mm, fraction, volume.voxel_volume_ml / n)
    if rim_mm is None and n > 1:  # the half-covered rule moves the volume a little: aim once more
        got = float(np.mean((slab_mean(fine_space, n) >= COVERED_SHARE)[hemi]))
        if got > 0:
            fine_space, fine_thickness, _, _ = _pleural_space(*grid, rim_mm, min(fraction * fraction / got, 0.95),
                                                              volume.voxel_volume_ml / n, (fine_depth, held))
    del grid, held
    share = slab_mean(fine_space, n)  # the share of each voxel that is pleural space
    thickness = slab_mean(fine_thickness, n)
    depth = fine_depth if n == 1 else _wall_depth(cavity, spacing)
    del fine_space, fine_thickness, fine_cavity, fine_depth
    space = share >= COVERED_SHARE
    below = _below_fluid_level(volume, box, space, fluid_share)
    fluid = space & below
    ptx = space & ~below

    hu = np.array(volume.hu, copy=True)
    air_share = np.where(below, 0.0, share).astype(np.float32)
    # the visceral pleura: the first lung voxels without air beside the air (partial-volume voxels are air and lung)
    line = _pleural_line(hemi & (share == 0), air_share > 0)
    new_box = _collapse_lung(volume, anatomy, side, box, hemi, space, depth, thickness, share, line)
    air = air_mean + air_sd * _correlated_noise(rng, ptx.shape)
    # a voxel with pleural space in it: that share is air (or fluid), the rest is what the voxel held before
    new_box = np.where(share > 0, volume.hu[box].astype(np.float32) * (1 - share) + air * air_share, new_box)
    if fluid.any():
        new_box += np.where(below, share, 0.0) * (FLUID_HU + air_sd * _correlated_noise(rng, ptx.shape))
    new_box[line] = np.maximum(new_box[line], PLEURAL_LINE_HU + air_sd * rng.standard_normal(int(line.sum())))
    info = np.iinfo(hu.dtype) if hu.dtype.kind in "iu" else None
    low = max(float(volume.hu.min()), info.min if info else -np.inf)
    new_box = np.clip(new_box, low, info.max if info else np.inf)
    hu[box] = np.rint(new_box).astype(hu.dtype) if info else new_box.astype(hu.dtype)

    mask = np.zeros(volume.shape, dtype=np.uint8)
    mask[box] = ptx
    full_share = np.zeros(volume.shape, dtype=np.float32)
    full_share[box] = air_share
    fluid_mask = None
    if fluid.any():
        fluid_mask = np.zeros(volume.shape, dtype=np.uint8)
        fluid_mask[box] = fluid
    achieved = float(ptx.sum() / hemithorax.sum())
    options = {"side": side, "fraction": None if rim_mm is not None else fraction, "seed": seed,
               "location": location, "anterior_bias": anterior_bias, "apical_bias": apical_bias,
               "rim_mm": rim_mm, "rim_extent": rim_extent if rim_mm is not None else None,
               "adhesions": adhesions, "fluid_share": fluid_share}
    kind = f"{rim_mm:g} mm rim" if rim_mm is not None else f"{achieved:.0%}"
    new_volume = dataclasses.replace(
        volume, hu=hu, description=f"{volume.description} + simulated {side} pneumothorax {kind}".strip(),
        warnings=list(volume.warnings) + [f"Simulated {side} pneumothorax (seed {seed}); not a real finding."])
    return SimulatedPneumothorax(volume=new_volume, mask=mask, side=side, fraction_achieved=achieved,
                                 volume_ml=float(ptx.sum() * volume.voxel_volume_ml),
                                 fraction_requested=0.0 if rim_mm is not None else fraction,
                                 air_hu=(air_mean, air_sd), seed=seed, fluid_mask=fluid_mask, options=options,
                                 air_share=full_share)


def _drop_specks(space: np.ndarray, voxel_ml: float) -> np.ndarray:
    """``space`` without pockets under ``MIN_POCKET_ML`` (26-connected): no air specks at the hilum."""
    labels, count = ndi.label(space, np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return space
    keep = np.bincount(labels.ravel()) * voxel_ml >= MIN_POCKET_ML
    keep[0] = False
    return keep[labels]


def _below_fluid_level(volume: Volume, box, space: np.ndarray, share: float) -> np.ndarray:
    """Where the box lies below one horizontal level that leaves the dependent ``share`` of ``space`` under it."""
    if share <= 0 or not space.any():
        return np.zeros(space.shape, dtype=bool)
    height = normalised_along(patient_coordinates(volume, box), nondependent_direction(volume), space)
    level = float(np.quantile(height[space], share))
    return height < level


def _wall_depth(cavity: np.ndarray, spacing, return_indices: bool = False):
    """Distance (mm) of each voxel of ``cavity`` to the nearest voxel outside it (outside the array too)."""
    result = ndi.distance_transform_edt(np.pad(cavity, 1), sampling=spacing, return_indices=return_indices)
    if not return_indices:
        return result[1:-1, 1:-1, 1:-1]
    return result[0][1:-1, 1:-1, 1:-1], result[1]


def _pleural_space(hemi, cavity, weight, patches, region, spacing, rim_mm, fraction, voxel_ml, depth_held=None):
    """The pleural space on one grid (the CT's slices or sub-slices), the air thickness at the wall,
    and the wall depth and adhesion-held voxels (pass them back as ``depth_held`` to aim again)."""
    if depth_held is not None:
        depth, held = depth_held
    elif patches is not None:  # an adhesion holds the lung at a patch of the wall: every voxel whose nearest wall is there
        depth, nearest = _wall_depth(cavity, spacing, return_indices=True)
        held = np.pad(patches, 1)[tuple(nearest)][1:-1, 1:-1, 1:-1]
        del nearest
    else:
        depth = _wall_depth(cavity, spacing)
        held = np.zeros(hemi.shape, dtype=bool)
    if rim_mm is not None:  # a thin rim of even thickness (+-20 %) over its region
        scale = max(float(np.median(weight[hemi])), 1e-3)
        thickness = np.where(region & ~held, rim_mm * np.clip(weight / scale, 0.8, 1.2), 0.0).astype(np.float32)
    else:
        weight = np.where(held, 0.0, weight).astype(np.float32)
        inside = (depth[hemi] + MIN_THICKNESS_MM) / np.maximum(weight[hemi], 1e-6)
        thickness = (float(np.quantile(inside, fraction)) * weight - MIN_THICKNESS_MM).astype(np.float32)
    return _drop_specks(hemi & (depth < thickness), voxel_ml), thickness, depth, held


def estimate_air_noise(volume: Volume, anatomy: ThoraxAnatomy) -> tuple[float, float]:
    """Mean and SD (HU) of air on this CT, measured on outside air well away from the patient.

    Only air inside the reconstructed field of view is used (the scanner's padding outside it is
    a flat floor value), and the statistics are robust ones (median, interquartile range), so
    blankets, tubes and values clipped at the floor do not bias them.
    """
    hu = volume.hu
    floor = float(hu.min())
    clear = int(np.ceil(10.0 / max(min(volume.spacing[1:]), 1e-3)))
    step = 2
    sub = (slice(None), slice(None, None, step), slice(None, None, step))
    away = ~ndi.binary_dilation(~anatomy.outside_air[sub], _IN_PLANE_4, iterations=max(clear // step, 1))
    in_view = ndi.uniform_filter((hu[sub] == floor).astype(np.float32), (1, 5, 5)) < 0.5
    values = hu[sub][away & in_view].astype(np.float32)
    if values.size < 500:
        values = hu[ndi.binary_erosion(anatomy.airways, _IN_PLANE_4, iterations=2)].astype(np.float32)
    if values.size < 100:
        return -1000.0, 20.0
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return float(median), max(float(q75 - q25) / 1.349, 1.0)


def _collapse_lung(volume, anatomy, side, box, hemi, ptx, depth, thickness, share, line) -> np.ndarray:
    """HU of the box with the lung pulled in radially towards the hilum, compressed lung denser.

    A voxel ``p`` of the new lung takes the value found at ``c + (p - c) * k`` with ``c`` near
    the hilum and ``k = (r + d) / (r + d - t)`` (``r`` distance to ``c``, ``d`` depth below the
    pleura, ``t`` local air thickness): the new lung surface samples the old pleural surface.
    Voxels with some pleural space in them (``share`` > 0) and the pleural ``line`` are written by the
    caller; the rest of the lung is made denser so that the hemithorax keeps its tissue mass.
    """
    spacing = np.asarray(volume.spacing, dtype=np.float32)
    source = volume.hu[box].astype(np.float32)
    lung = anatomy.lung(side)[box]
    lung_median = float(np.median(source[lung])) if lung.any() else -850.0
    source = np.where(hemi, source, lung_median)  # never sample chest wall into the lung
    # a sharp kernel's dark halo beside the chest wall belongs to the wall's edge, not to the lung:
    # it must not move inwards with the lung (the new lung edge borders air, not bone)
    halo = hemi & (depth < HALO_MM) & (source < lung_median)
    source = np.where(halo, lung_median, source)

    grid = np.indices(hemi.shape, dtype=np.float32)
    centre = _hilum_point(volume, lung if lung.any() else hemi, side, box)
    offsets = [(grid[a] - centre[a]) * spacing[a] for a in range(3)]
    radius = np.sqrt(sum(o * o for o in offsets))
    new_lung = hemi & ~ptx
    # the air thickness that matters is the one where this voxel's ray from the hilum meets the wall
    reach = depth / np.maximum(radius, 1e-3)
    at_wall = np.stack([grid[a] + offsets[a] * reach / spacing[a] for a in range(3)])
    wall_thickness = ndi.map_coordinates(np.maximum(thickness, 0).astype(np.float32), at_wall, order=1, mode="nearest")
    del at_wall, reach
    wall_thickness = np.where(new_lung, np.maximum(wall_thickness, 0.0), 0.0)
    ratio = (radius + depth) / np.maximum(radius + depth - wall_thickness, 1.0)
    ratio = np.where(new_lung, ratio, 0.0)
    smooth_sigma = 3.0 / spacing
    weight = ndi.gaussian_filter(new_lung.astype(np.float32), smooth_sigma)
    ratio = ndi.gaussian_filter(ratio.astype(np.float32), smooth_sigma) / np.maximum(weight, 1e-3)
    ratio = np.where(new_lung, np.maximum(ratio, 1.0), 1.0).astype(np.float32)
    # below the hilum the lung rests on the diaphragm: it shrinks in-plane there, not upwards
    superior = (grid[0] - centre[0]) * np.float64(head_step(volume.affine))  # sampled in double precision
    z_share = 1.0 / (1.0 + np.exp(-superior / 2.0))
    sample_at = np.stack([centre[0] + (grid[0] - centre[0]) * (1.0 + (ratio - 1.0) * z_share)]
                         + [centre[a] + (grid[a] - centre[a]) * ratio for a in (1, 2)])
    del z_share, superior
    warped = ndi.map_coordinates(source, sample_at, order=1, mode="nearest")
    del sample_at
    # compressed parenchyma keeps its tissue mass: its excess over air grows with the compression
    compressible = new_lung & (warped < MAX_COMPRESSED_HU)
    excess = warped + 1000.0
    original_excess = float((source[hemi] + 1000.0).sum())
    # the pleural line (soft tissue at the lung edge) and what stays of the voxels that got some air
    # (their share without air keeps its own tissue) are part of the lung's mass budget
    partial = share > 0
    kept_excess = (float(excess[new_lung & ~partial & ~compressible & ~line].sum())
                   + float(np.maximum(excess[line], PLEURAL_LINE_HU + 1000.0).sum())
                   + float(((1 - share[partial]) * (volume.hu[box][partial].astype(np.float32) + 1000.0)).sum()))
    compressible &= ~line & ~partial
    scale = (original_excess - kept_excess) / max(float(excess[compressible].sum()), 1.0)
    denser = -1000.0 + excess * max(scale, 1.0)
    warped = np.where(compressible, np.minimum(denser, MAX_COMPRESSED_HU), warped)
    return np.where(hemi, warped, volume.hu[box].astype(np.float32))


def _hilum_point(volume, lung, side, box) -> np.ndarray:
    """A point (box index coordinates) between the lung's centre and its medial edge."""
    centre = np.array(ndi.center_of_mass(lung), dtype=np.float32)
    left_step = np.asarray(volume.affine, dtype=float)[0, :3]  # LPS x per index step
    medial = np.sign(left_step) * (1.0 if side == "right" else -1.0)  # towards the midline
    axis_x = int(np.argmax(np.abs(left_step)))
    extent = np.nonzero(lung.any(axis=tuple(a for a in range(3) if a != axis_x)))[0]
    half_width = (extent[-1] - extent[0]) / 2.0 if extent.size else 0.0
    centre[axis_x] += medial[axis_x] * 0.35 * half_width
    return centre


def _close_in_plane(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Per-slice morphological closing with a disc, via distance transforms."""
    pad = int(np.ceil(radius_px)) + 2
    padded = np.pad(mask, ((0, 0), (pad, pad), (pad, pad)))
    closed = np.zeros_like(padded)
    for z in range(padded.shape[0]):
        if padded[z].any():
            grown = ndi.distance_transform_edt(~padded[z]) <= radius_px
            closed[z] = ndi.distance_transform_edt(grown) > radius_px
    return (closed[:, pad:-pad, pad:-pad] | mask)


def _correlated_noise(rng, shape) -> np.ndarray:
    """Unit-SD noise with a short in-plane correlation, like reconstructed CT noise."""
    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), (0, 0.7, 0.7))
    return noise / max(float(noise.std()), 1e-6)


def _pleural_line(new_lung: np.ndarray, ptx: np.ndarray) -> np.ndarray:
    """The lung voxels that touch pleural air in-plane: the visceral pleura, one voxel thick."""
    return new_lung & ndi.binary_dilation(ptx, _IN_PLANE_4)
