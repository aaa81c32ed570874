"""Air that is NOT pneumothorax, inserted into a real CT with its exact mask (the differential).

Every confounder is seeded and returns the options it used. Kinds (:data:`CONFOUNDERS`):

``bulla``
    1-3 air cysts (8-20 mm radius) with a thin wall, enclosed by aerated lung on every side.
``subpleural_bleb``
    1-2 cysts (6-14 mm) inside the lung that touch the chest wall: the real differential of a
    small pneumothorax.
``emphysema``
    Centrilobular low-attenuation clusters (a few mm) through the upper two thirds of both lungs.
``subcutaneous_emphysema``
    Air streaks in the soft tissue of one side's chest wall, outside the ribs.
``pneumomediastinum``
    Air streaks in the mediastinal fat between the lungs.
``oesophageal_gas``
    An air column (4-8 mm radius) behind the trachea, left of the midline.
``bowel_gas``
    Colon / stomach gas below the diaphragm, beside the lung base of one side.
``chest_tube``
    A drain (5 mm outer radius, air lumen) through the lateral chest wall into the pleural space.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.anatomy import ThoraxAnatomy, segment_thorax
from ptx_annotator.geometry import head_step
from ptx_annotator.synthetic.shape import patient_coordinates, smooth_noise
from ptx_annotator.volume import Volume

CONFOUNDERS = ("bulla", "subpleural_bleb", "emphysema", "subcutaneous_emphysema", "pneumomediastinum",
               "oesophageal_gas", "bowel_gas", "chest_tube")
#: HU of a bulla's wall and of a drain's plastic (partial volume of thin walls).
CYST_WALL_HU = -300.0
TUBE_WALL_HU = 150.0
#: Soft tissue (fat, muscle, mediastinum, bowel wall) lies above this HU.
SOFT_TISSUE_HU = -200.0


@dataclass
class Confounded:
    """A CT with non-pneumothorax air added: ``mask`` marks that air (never a pneumothorax)."""

    volume: Volume
    mask: np.ndarray
    kind: str
    volume_ml: float
    options: dict


def add_confounder(volume: Volume, kind: str, side: str = "right", seed: int = 0,
                   anatomy: ThoraxAnatomy | None = None, avoid: np.ndarray | None = None) -> Confounded:
    """Add the confounder ``kind`` (see :data:`CONFOUNDERS`) on patient ``side`` of ``volume``.

    ``anatomy`` is a segmentation of the untouched CT (reused); ``avoid`` marks voxels that must
    stay as they are (a simulated pneumothorax beside which the confounder is placed).
    """
    if kind not in CONFOUNDERS:
        raise ValueError(f"confounder must be one of {', '.join(CONFOUNDERS)}, not {kind!r}")
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left' (patient side), not {side!r}")
    from ptx_annotator.synthetic.pneumothorax import estimate_air_noise

    anatomy = anatomy or segment_thorax(volume)
    rng = np.random.default_rng(seed)
    air_mean, air_sd = estimate_air_noise(volume, anatomy)
    avoid = np.zeros(volume.shape, dtype=bool) if avoid is None else np.asarray(avoid) > 0
    hu = volume.hu.astype(np.float32)
    spacing = np.asarray(volume.spacing, dtype=float)
    air, wall, options = _BUILDERS[kind](volume, hu, anatomy, side, rng, spacing, avoid)
    air &= ~avoid
    wall &= ~(avoid | air)
    noise = air_sd * ndi.gaussian_filter(rng.standard_normal(volume.shape).astype(np.float32), (0, 0.7, 0.7))
    offset = float(options.pop("_air_offset_hu", 0.0))
    new = np.where(air, air_mean + offset + noise * 2.0, hu)
    wall_hu = float(options.pop("_wall_hu", CYST_WALL_HU))
    new = np.where(wall, np.maximum(new, wall_hu + noise * 2.0), new)
    if volume.hu.dtype.kind in "iu":
        info = np.iinfo(volume.hu.dtype)
        new = np.rint(np.clip(new, max(float(volume.hu.min()), info.min), info.max))
    options.update(kind=kind, side=side, seed=seed)
    new_volume = dataclasses.replace(volume, hu=new.astype(volume.hu.dtype),
                                     warnings=list(volume.warnings) + [f"Simulated {kind} (seed {seed})."])
    return Confounded(volume=new_volume, mask=air.astype(np.uint8), kind=kind,
                      volume_ml=float(air.sum() * volume.voxel_volume_ml), options=options)


def _aerated_lung(hu, anatomy, side, avoid):
    lung = anatomy.lung(side) & (hu < -500) & ~ndi.binary_dilation(avoid, iterations=2)
    return lung


def _ball(shape, spacing, centre, radii_mm) -> tuple[tuple, np.ndarray]:
    """Box around ``centre`` (index) and the boolean ellipsoid of ``radii_mm`` inside it."""
    half = np.ceil(np.asarray(radii_mm) / spacing).astype(int) + 1
    low = np.maximum(np.asarray(centre) - half, 0)
    high = np.minimum(np.asarray(centre) + half + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    grid = np.ogrid[box]
    inside = sum(((g - c) * s / r) ** 2 for g, c, s, r in zip(grid, centre, spacing, radii_mm)) <= 1.0
    return box, inside


def _cysts(volume, hu, anatomy, side, rng, spacing, avoid, count, radius_mm, touching_wall):
    from ptx_annotator.geometry import bounding_box

    lung = _aerated_lung(hu, anatomy, side, avoid)
    depth = np.zeros(volume.shape, dtype=np.float32)
    box = bounding_box(anatomy.hemithorax(side), margin=(1, 4, 4))
    if box is None:
        return np.zeros(volume.shape, bool), np.zeros(volume.shape, bool), {"radii_mm": []}
    inside = anatomy.hemithorax(side)[box] if touching_wall else ndi.binary_closing(lung[box], iterations=2)
    depth[box] = ndi.distance_transform_edt(np.pad(inside, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    air = np.zeros(volume.shape, dtype=bool)
    wall = np.zeros(volume.shape, dtype=bool)
    radii = []
    for _ in range(count):
        radius = float(rng.uniform(*radius_mm))
        if touching_wall:  # the cyst's edge reaches the pleura (within one in-plane pixel)
            where = lung & (np.abs(depth - radius) < max(spacing[1], 1.0)) & ~air
        else:
            where = lung & (depth > radius + 4.0) & ~ndi.binary_dilation(air, iterations=3)
        candidates = np.argwhere(where[:, ::2, ::2]) * [1, 2, 2]
        if not len(candidates):
            continue
        centre = candidates[int(rng.integers(len(candidates)))]
        radii_mm = radius * rng.uniform(0.85, 1.15, 3)
        box, ball = _ball(volume.shape, spacing, centre, radii_mm)
        shell = ndi.binary_dilation(ball) & ~ball
        inside = ball & anatomy.hemithorax(side)[box]
        air[box] |= inside
        wall[box] |= shell & anatomy.lung(side)[box]
        radii.append(round(radius, 1))
    return air, wall, {"radii_mm": radii, "touching_wall": touching_wall}


def _bulla(volume, hu, anatomy, side, rng, spacing, avoid):
    return _cysts(volume, hu, anatomy, side, rng, spacing, avoid, int(rng.integers(1, 4)), (8.0, 20.0), False)


def _bleb(volume, hu, anatomy, side, rng, spacing, avoid):
    return _cysts(volume, hu, anatomy, side, rng, spacing, avoid, int(rng.integers(1, 3)), (6.0, 14.0), True)


def _emphysema(volume, hu, anatomy, side, rng, spacing, avoid):
    lungs = anatomy.lungs & (hu < -500) & ~avoid
    coords = patient_coordinates(volume, tuple(slice(0, n) for n in volume.shape))[2]
    zs = coords[lungs]
    upper = coords > np.quantile(zs, 1 / 3) if zs.size else np.zeros(volume.shape, bool)
    share = float(rng.uniform(0.08, 0.25))
    noise = ndi.gaussian_filter(rng.standard_normal(volume.shape).astype(np.float32), 2.5 / spacing)
    region = lungs & upper
    level = np.quantile(noise[region], 1 - share) if region.any() else np.inf
    # emphysematous spaces read a little above pure air: partial volume with the septa left
    return region & (noise > level), np.zeros(volume.shape, bool), {"share": round(share, 3),
                                                                     "_air_offset_hu": float(rng.uniform(20, 50))}


def _outside_ribs(anatomy, spacing, mm):
    ribs = ndi.binary_dilation(anatomy.hemithoraces, iterations=max(1, int(round(mm / spacing[1]))))
    return anatomy.body & ~ribs


def _streaks(volume, region, rng, spacing, share, scale_mm=(6.0, 3.0, 3.0)):
    noise = smooth_noise(volume.shape, spacing, float(np.mean(scale_mm)), rng)
    fine = ndi.gaussian_filter(rng.standard_normal(volume.shape).astype(np.float32), 1.0)
    field = noise + 0.5 * fine / max(float(fine.std()), 1e-6)
    if not region.any():
        return np.zeros(volume.shape, bool)
    return region & (field > np.quantile(field[region], 1 - share))


def _side_mask(volume, anatomy, side):
    from ptx_annotator.anatomy import left_coordinate

    left = np.broadcast_to(left_coordinate(volume.affine, volume.shape), volume.shape)
    middle = float(np.median(left[anatomy.body])) if anatomy.body.any() else 0.0
    return left > middle if side == "left" else left <= middle


def _subcutaneous(volume, hu, anatomy, side, rng, spacing, avoid):
    skin = ndi.binary_erosion(anatomy.body, iterations=max(1, int(round(3 / spacing[1]))))
    region = _outside_ribs(anatomy, spacing, 8.0) & skin & (hu > SOFT_TISSUE_HU) & _side_mask(volume, anatomy, side)
    region &= _lung_levels(anatomy, 0.2, 0.85)
    share = float(rng.uniform(0.05, 0.15))
    return _streaks(volume, region, rng, spacing, share), np.zeros(volume.shape, bool), {"share": round(share, 3)}


def _lung_levels(anatomy, low, high):
    """Slices from ``low`` to ``high`` (shares, array order) of the lungs' z range."""
    zs = np.nonzero(anatomy.lungs.any(axis=(1, 2)))[0]
    out = np.zeros(anatomy.lungs.shape, bool)
    if zs.size:
        a, b = zs[0] + int(low * (zs[-1] - zs[0])), zs[0] + int(high * (zs[-1] - zs[0]))
        out[a: b + 1] = True
    return out


def _mediastinum(volume, hu, anatomy):
    """Soft tissue between the two lungs, slice by slice (in-plane closing of both lungs)."""
    both = anatomy.hemithorax_right | anatomy.hemithorax_left
    out = np.zeros(volume.shape, bool)
    for z in np.nonzero(anatomy.hemithorax_right.any(axis=(1, 2)) & anatomy.hemithorax_left.any(axis=(1, 2)))[0]:
        hull = ndi.binary_closing(both[z], iterations=25)
        out[z] = ndi.binary_fill_holes(hull) & ~both[z]
    return out & (hu > SOFT_TISSUE_HU) & ~ndi.binary_dilation(anatomy.airways, iterations=3)


def _pneumomediastinum(volume, hu, anatomy, side, rng, spacing, avoid):
    region = _mediastinum(volume, hu, anatomy) & (hu < 60) & _lung_levels(anatomy, 0.3, 0.9)  # fat, not vessels
    share = float(rng.uniform(0.08, 0.2))
    return _streaks(volume, region, rng, spacing, share, (4.0, 2.0, 2.0)), np.zeros(volume.shape, bool), \
        {"share": round(share, 3)}


def _oesophagus(volume, hu, anatomy, side, rng, spacing, avoid):
    airway = np.argwhere(anatomy.airways)
    air = np.zeros(volume.shape, bool)
    radius = float(rng.uniform(4.0, 8.0))
    if not len(airway):
        return air, air.copy(), {"radius_mm": radius}
    centre = airway.mean(axis=0)
    step = np.linalg.solve(np.asarray(volume.affine, float)[:3, :3], np.array([8.0, 18.0, 0.0]))  # left, posterior
    y, x = centre[1] + step[1], centre[2] + step[2]
    region = _mediastinum(volume, hu, anatomy) | (hu > SOFT_TISSUE_HU) & ~anatomy.hemithoraces
    levels = _lung_levels(anatomy, 0.3, 0.8)
    yy, xx = np.ogrid[: volume.shape[1], : volume.shape[2]]
    disc = ((yy - y) * spacing[1]) ** 2 + ((xx - x) * spacing[2]) ** 2 <= radius ** 2
    air = levels & disc[None] & region & ~anatomy.hemithoraces
    return air, np.zeros(volume.shape, bool), {"radius_mm": round(radius, 1)}


def _bowel(volume, hu, anatomy, side, rng, spacing, avoid):
    lung_z = np.nonzero(anatomy.lung(side).any(axis=(1, 2)))[0]
    air = np.zeros(volume.shape, bool)
    if not lung_z.size:
        return air, air.copy(), {}
    up = head_step(volume.affine)
    base = lung_z[0] if up > 0 else lung_z[-1]
    near_base = np.zeros(volume.shape, bool)
    reach = int(round(40.0 / spacing[0]))
    lo, hi = sorted((base - up * reach, base + up * int(round(25.0 / spacing[0]))))
    near_base[max(int(lo), 0): int(hi) + 1] = True
    below = anatomy.body & ~ndi.binary_dilation(anatomy.hemithoraces, iterations=3) & (hu > SOFT_TISSUE_HU)
    below &= near_base & _side_mask(volume, anatomy, side) & ~_outside_ribs(anatomy, spacing, 25.0)
    radii = []
    for _ in range(int(rng.integers(2, 5))):
        candidates = np.argwhere(below[:, ::3, ::3]) * [1, 3, 3]
        if not len(candidates):
            break
        centre = candidates[int(rng.integers(len(candidates)))]
        radius = float(rng.uniform(10.0, 22.0))
        box, ball = _ball(volume.shape, spacing, centre, radius * rng.uniform(0.7, 1.3, 3))
        air[box] |= ball & below[box]
        radii.append(round(radius, 1))
    return air, ndi.binary_dilation(air) & ~air & below, {"radii_mm": radii, "_wall_hu": 30.0}


def _chest_tube(volume, hu, anatomy, side, rng, spacing, avoid):
    hemi = anatomy.hemithorax(side)
    zs = np.nonzero(hemi.any(axis=(1, 2)))[0]
    air = np.zeros(volume.shape, bool)
    wall = np.zeros(volume.shape, bool)
    if not zs.size:
        return air, wall, {}
    z = int(zs[0] + (zs[-1] - zs[0]) * rng.uniform(0.35, 0.6))
    ys, xs = np.nonzero(hemi[z])
    lateral = -1.0 if side == "right" else 1.0
    left_per_x = float(volume.affine[0, 2])
    x_out = xs.max() if np.sign(left_per_x) == np.sign(lateral) else xs.min()
    y_mid = int(np.median(ys[np.abs(xs - x_out) < 10])) if np.any(np.abs(xs - x_out) < 10) else int(ys.mean())
    inward = -np.sign(x_out - xs.mean())
    depth_px = int(round(40.0 / spacing[2]))
    path = [(z, y_mid, x_out + inward * k) for k in range(-int(30 / spacing[2]), depth_px)]
    up = head_step(volume.affine)
    climb = int(round(rng.uniform(40.0, 90.0) / spacing[0]))
    end = path[-1]
    path += [(end[0] + up * k, end[1], end[2]) for k in range(1, climb) if 0 <= end[0] + up * k < volume.shape[0]]
    outer, lumen = 5.0, 3.0
    for point in path[:: max(1, int(round(1.0 / spacing[2])))]:
        if not all(0 <= p < n for p, n in zip(point, volume.shape)):
            continue
        box, tube = _ball(volume.shape, spacing, point, (max(outer, spacing[0] / 2), outer, outer))
        box2, hole = _ball(volume.shape, spacing, point, (max(lumen, spacing[0] / 2), lumen, lumen))
        wall[box] |= tube
        air[box2] |= hole & anatomy.body[box2]
    return air, wall & ~air, {"z": z, "climb_mm": round(climb * spacing[0], 1), "_wall_hu": TUBE_WALL_HU}


_BUILDERS = {"bulla": _bulla, "subpleural_bleb": _bleb, "emphysema": _emphysema,
             "subcutaneous_emphysema": _subcutaneous, "pneumomediastinum": _pneumomediastinum,
             "oesophageal_gas": _oesophagus, "bowel_gas": _bowel, "chest_tube": _chest_tube}
