"""A parametric chest CT phantom (HU + six-label map) shared by the nsclc and ctseg demo cohorts.

Array axes follow MONAI / ``read_series``: x = columns toward the patient's left, y = rows toward posterior,
z = slices toward superior; the RAS affine is ``diag(-dx, -dy, dz)`` around the volume centre.
Label values are the ctstyle paper's: see ``LABELS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter

LABELS = {
    0: "background: air outside the body",
    50: "body: muscle, fat, mediastinal and other soft tissue",
    100: "lungs, with their vessels",
    150: "heart and great mediastinal vessels (aorta)",
    200: "bone: vertebra, ribs, sternum",
    230: "spinal cord",
}

HU = {"air": -1000.0, "fat": -100.0, "muscle": 45.0, "lung": -850.0, "blood": 40.0, "myocardium": 50.0,
      "cortical": 700.0, "cancellous": 220.0, "cord": 30.0}


@dataclass
class Chest:
    """One phantom before finishing (no blur, no noise).

    Attributes:
        hu: (X, Y, Z) float32 noise-free HU.
        labels: (X, Y, Z) uint8 in ``LABELS``.
        lungs: (X, Y, Z) int8: 0 outside the lungs, 1 right lung, 2 left lung.
        affine: 4x4 RAS mm.
        params: the anatomy parameters drawn (mm).
    """

    hu: np.ndarray
    labels: np.ndarray
    lungs: np.ndarray
    affine: np.ndarray
    params: dict


def chest_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float], z0: float = 0.0) -> np.ndarray:
    """RAS affine of an axial volume centred on x = y = 0, its middle slice at height ``z0`` mm."""
    dx, dy, dz = spacing
    affine = np.diag([-dx, -dy, dz, 1.0])
    centre = (np.asarray(shape, dtype=np.float64) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ centre + np.array([0.0, 0.0, z0])
    return affine


def _inside_ellipse(x, y, cx, cy, ax, ay, angle=0.0):
    """Points (x, y) inside an ellipse (semi-axes may vary with z); bool, broadcast shape."""
    if angle == 0.0:
        u, v = x - cx, y - cy
    else:
        c, s = np.cos(angle), np.sin(angle)
        u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (u * u) / (ax * ax) + (v * v) / (ay * ay) < 1


def _draw_tube(field, grid, p0, p1, radius_mm):
    """Raise ``field`` (X, Y, Z occupancy) to 1 inside a tube from p0 to p1 (mm), with a 1 mm soft edge."""
    x, y, z = grid
    lo = np.minimum(p0, p1) - radius_mm - 1.5
    hi = np.maximum(p0, p1) + radius_mm + 1.5
    ix = np.nonzero((x[:, 0, 0] >= lo[0]) & (x[:, 0, 0] <= hi[0]))[0]
    iy = np.nonzero((y[0, :, 0] >= lo[1]) & (y[0, :, 0] <= hi[1]))[0]
    iz = np.nonzero((z[0, 0, :] >= lo[2]) & (z[0, 0, :] <= hi[2]))[0]
    if ix.size == 0 or iy.size == 0 or iz.size == 0:
        return
    box = np.ix_(ix, iy, iz)
    px, py, pz = x[:, 0, 0][ix][:, None, None], y[0, :, 0][iy][None, :, None], z[0, 0, :][iz][None, None, :]
    d = p1 - p0
    t = np.clip(((px - p0[0]) * d[0] + (py - p0[1]) * d[1] + (pz - p0[2]) * d[2]) / max(d @ d, 1e-9), 0, 1)
    dist = np.sqrt((px - p0[0] - t * d[0]) ** 2 + (py - p0[1] - t * d[1]) ** 2 + (pz - p0[2] - t * d[2]) ** 2)
    field[box] = np.maximum(field[box], np.clip(radius_mm + 0.5 - dist, 0, 1))


def make_chest(rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple[float, float, float],
               z0: float = 0.0) -> Chest:
    """Draw one chest: body with fat layer, ribs, sternum, vertebra and cord, lungs with vessels, heart, aorta.

    Anatomy varies per call: body half-width 125-165 mm and half-depth 85-120 mm, fat 5-25 mm, lung size,
    heart centre 0-35 mm left of the midline and its size and angle, vessel trees.
    """
    dx, dy, dz = spacing
    affine = chest_affine(shape, spacing, z0)
    xs = (-affine[0, 3] + np.arange(shape[0]) * dx).astype(np.float32)  # mm toward the patient's left
    ys = (-affine[1, 3] + np.arange(shape[1]) * dy).astype(np.float32)  # mm toward posterior
    zs = (affine[2, 3] + np.arange(shape[2]) * dz).astype(np.float32)  # mm toward superior
    x, y, z = xs[:, None, None], ys[None, :, None], zs[None, None, :]
    p = {
        "body_a": rng.uniform(125, 165), "body_b": rng.uniform(85, 120), "fat": rng.uniform(5, 25),
        "lung_scale": rng.uniform(0.8, 1.0), "heart_x": rng.uniform(0, 35), "heart_a": rng.uniform(45, 62),
        "heart_b": rng.uniform(33, 45), "heart_angle": rng.uniform(0.3, 0.8), "heart_z": rng.uniform(-60, -10),
    }
    taper = 1.0 - 0.04 * (z - z0) / 50.0  # the chest narrows slightly toward the apex
    body_a, body_b = p["body_a"] * taper, p["body_b"] * taper
    body = _inside_ellipse(x, y, 0, 0, body_a, body_b)
    inner = _inside_ellipse(x, y, 0, 0, body_a - p["fat"], body_b - p["fat"])
    cav_a, cav_b = body_a - p["fat"] - 14, body_b - p["fat"] - 12
    cavity = _inside_ellipse(x, y, 0, 0, cav_a, cav_b)

    hu = np.where(body, np.where(inner, HU["muscle"], HU["fat"]), HU["air"]).astype(np.float32)
    labels = np.where(body, 50, 0).astype(np.uint8)
    hu[cavity & body] = HU["fat"] * 0.8  # mediastinal fat, overwritten below by organs

    # Vertebra (body + ring + spinous process) and cord, posterior midline.
    vb_r = rng.uniform(14, 19)
    vb_y = cav_b - 0.6 * vb_r
    vertebra = np.hypot(x, y - vb_y) < vb_r
    canal_y = vb_y + vb_r + 8.0
    canal = np.hypot(x, y - canal_y) < 6.5
    arch = (np.hypot(x, y - canal_y) < 11.0) | ((np.abs(x) < 4.0) & (y > canal_y) & (y < canal_y + 28.0))
    bone_cortex = (vertebra & (np.hypot(x, y - vb_y) > vb_r - 3.0)) | (arch & ~canal)
    # Ribs: oblique tubes just outside the cavity, drifting around it with z, with intercostal gaps.
    rib_field = np.zeros(hu.shape, dtype=np.float32)
    cav_a0, cav_b0 = p["body_a"] - p["fat"] - 14, p["body_b"] - p["fat"] - 12  # at z0
    for k, theta0 in enumerate(np.linspace(0.35, np.pi - 0.35, 7)):
        for side in (-1.0, 1.0):
            phase = rng.uniform(0, 28.0)
            for za in np.arange(zs[0] - 28.0 + phase, zs[-1] + 1.0, 28.0):
                ends = []
                for zz in (za, za + 14.0):
                    theta = theta0 + 0.006 * (zz - z0) + 0.02 * k
                    scale = 1.0 - 0.04 * (zz - z0) / 50.0
                    ends.append(np.array([side * (cav_a0 * scale + 6.0) * np.sin(theta),
                                          -(cav_b0 * scale + 6.0) * np.cos(theta), zz]))
                _draw_tube(rib_field, (x, y, z), ends[0], ends[1], 4.0)
    ribs = rib_field > 0.5
    sternum = (np.abs(x) < 13.0) & (y > -cav_b - 11.0) & (y < -cav_b - 2.0)
    bone = vertebra | (arch & ~canal) | ribs | sternum
    hu[bone] = HU["cancellous"]
    hu[bone_cortex | ribs] = HU["cortical"] * 0.8
    labels[bone] = 200
    hu[canal] = HU["cord"]
    labels[canal] = 230

    # Heart: an ellipsoid, anterior and left, in the lower part of the chest; aorta: descending, plus
    # ascending above the heart.
    hz = (z - p["heart_z"]) / 55.0
    hscale = np.sqrt(np.clip(1 - hz**2, 0, 1))
    heart = _inside_ellipse(x, y, p["heart_x"], -0.25 * cav_b, p["heart_a"] * hscale + 1e-3,
                            p["heart_b"] * hscale + 1e-3, p["heart_angle"])
    aorta = np.hypot(x - 18.0, y - (vb_y - 8.0)) < 11.0
    aorta |= (np.hypot(x + 8.0, y + 0.2 * cav_b) < 14.0) & (z > p["heart_z"] + 35.0)
    aorta &= ~heart
    hu[heart] = HU["myocardium"]
    hu[aorta] = HU["blood"]
    labels[heart | aorta] = 150

    # Lungs: two ellipses in the cavity, kept clear of the mediastinum, heart, aorta and spine.
    ls = p["lung_scale"]
    lung_ax, lung_ay = 0.5 * cav_a * ls, 0.88 * cav_b
    lung_cx, lung_cy = 0.5 * cav_a, 0.04 * cav_b
    keep_out = (np.abs(x) < 16.0) | heart | aorta | vertebra
    keep_out = binary_dilation(keep_out, iterations=2)
    lung_r = _inside_ellipse(x, y, -lung_cx, lung_cy, lung_ax, lung_ay) & cavity & ~keep_out
    lung_l = _inside_ellipse(x, y, lung_cx, lung_cy, lung_ax * 0.95, lung_ay) & cavity & ~keep_out
    lungs = np.zeros(hu.shape, dtype=np.int8)
    lungs[lung_r], lungs[lung_l] = 1, 2
    lung = lungs > 0
    texture = gaussian_filter(rng.standard_normal(hu.shape, dtype=np.float32), 1.5, truncate=2.0) * 60.0
    hu[lung] = (HU["lung"] + 25.0 * (y / cav_b) + texture)[lung]  # dependent (posterior) lung is denser
    labels[lung] = 100

    # Pulmonary vessels: trees of tubes from each hilum, kept inside the lungs.
    vessels = np.zeros(hu.shape, dtype=np.float32)
    grid = (x, y, z)
    for side in (-1.0, 1.0):
        hilum = np.array([side * 0.5 * cav_a0 * (1 - 0.55 * 0.5 * ls), 0.04 * cav_b0, z0])
        for _ in range(10):
            start, radius = hilum.copy(), rng.uniform(2.5, 4.0)
            direction = np.array([side * rng.uniform(0.3, 1.0), rng.uniform(-1, 1), rng.uniform(-0.8, 0.8)])
            for _ in range(3):
                direction = direction / np.linalg.norm(direction)
                end = start + direction * rng.uniform(20, 40)
                _draw_tube(vessels, grid, start, end, radius)
                start, radius = end, radius * 0.65
                direction = direction + rng.normal(0, 0.5, 3)
    vessels *= lung
    hu[:] = hu * (1 - vessels) + HU["blood"] * vessels
    return Chest(hu=hu, labels=labels, lungs=lungs, affine=affine, params=p)


def finish(
    hu: np.ndarray, rng: np.random.Generator, noise_hu: float = 15.0, blur_px: float = 0.7, grain_px: float = 0.6
) -> np.ndarray:
    """Scanner look: in-plane blur (partial volume, ``blur_px``) and noise of standard deviation about
    ``noise_hu`` correlated over ``grain_px`` (dose and reconstruction kernel); (X, Y, Z) float32 HU."""
    out = gaussian_filter(hu, (blur_px, blur_px, 0.4), truncate=2.0)
    noise = gaussian_filter(rng.standard_normal(hu.shape, dtype=np.float32), (grain_px, grain_px, 0), truncate=2.0)
    noise *= noise_hu / noise.std()
    return np.clip(out + noise, -1024, 3071).astype(np.float32)
