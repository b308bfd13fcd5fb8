"""Synthetic land cover, phenology and planted change over an AOI of 600 m patches.

The AOI is one continuous 3 m mosaic (200 px per patch), so land cover is mixed inside
patches and continuous across their edges.  It is built once (static layers), then
rendered per date by vectorised numpy over the whole mosaic:

  reflectance = base * (1 - v - s) + green * v + dry * s

per pixel and band, where base is the pixel's soil/rock/roof/water spectrum times a
brightness texture, green its vegetation spectrum times a canopy shading texture, dry a
senescent-vegetation spectrum, and v (green cover) and s (dry cover) come from the
pixel's unit (a field, forest stand, town, ...) through a phenology model whose timing
and amplitude change per unit and per year, blended per pixel by a static canopy cover
texture c:  v = v_under + c * (v_top - v_under).  Basins (a reservoir on the river and a
farm pond) and planted 2019 changes are "regions" whose pixels are re-evaluated per date.

Nothing here writes files; tools/synth cuts the mosaics into patches and writes them.
"""

import datetime as _dt
import math

import numpy as np
from osgeo import gdal, gdal_array

from . import corpus_layout as L

# ---- spectra: surface reflectance x 10000 in S2 file band order -------------------
# B02 B03 B04 B08 B05 B06 B07 B8A B11 B12 B01 B09; Planet Fusion BGRN = the first four
# (Planet Fusion is harmonised with Sentinel-2).

def _spec(*vals):
    return np.array(vals, np.float32) * 10000.0


SOIL, SAND, ROCK, WATER, ASPHALT, CONCRETE, RED_ROOF, MUD, BUILD_SOIL, PANEL, PLASTIC, CHAR = range(12)
BASE = np.stack([
    _spec(0.085, 0.120, 0.165, 0.260, 0.195, 0.215, 0.235, 0.270, 0.340, 0.290, 0.070, 0.265),  # soil
    _spec(0.140, 0.185, 0.240, 0.330, 0.270, 0.290, 0.310, 0.340, 0.420, 0.360, 0.120, 0.330),  # sand
    _spec(0.150, 0.170, 0.195, 0.265, 0.215, 0.235, 0.250, 0.270, 0.310, 0.270, 0.140, 0.260),  # rock
    _spec(0.050, 0.060, 0.035, 0.012, 0.025, 0.015, 0.013, 0.010, 0.004, 0.002, 0.060, 0.008),  # water
    _spec(0.070, 0.078, 0.085, 0.105, 0.090, 0.095, 0.100, 0.108, 0.120, 0.110, 0.065, 0.100),  # asphalt
    _spec(0.160, 0.180, 0.195, 0.240, 0.205, 0.215, 0.225, 0.245, 0.290, 0.250, 0.150, 0.235),  # concrete
    _spec(0.070, 0.085, 0.180, 0.300, 0.240, 0.265, 0.280, 0.305, 0.360, 0.300, 0.065, 0.290),  # red roof
    _spec(0.055, 0.070, 0.090, 0.150, 0.110, 0.125, 0.140, 0.155, 0.180, 0.140, 0.050, 0.150),  # wet mud
    _spec(0.165, 0.195, 0.230, 0.285, 0.250, 0.262, 0.272, 0.290, 0.360, 0.310, 0.150, 0.280),  # graded fill
    _spec(0.052, 0.058, 0.050, 0.062, 0.054, 0.057, 0.060, 0.063, 0.072, 0.062, 0.050, 0.062),  # PV panel
    _spec(0.300, 0.330, 0.350, 0.420, 0.370, 0.390, 0.410, 0.420, 0.400, 0.330, 0.280, 0.410),  # greenhouse film
    _spec(0.030, 0.032, 0.035, 0.050, 0.040, 0.045, 0.048, 0.052, 0.090, 0.085, 0.028, 0.050),  # char, ash
])
# Snow (PF bands B, G, R, N), blended over whatever lies beneath.
SNOW_PF = np.array([0.82, 0.80, 0.77, 0.66], np.float32) * 10000.0
G_CROP, G_BROAD, G_CONIFER, G_SHRUB = range(4)
GREEN = np.stack([
    _spec(0.030, 0.080, 0.035, 0.480, 0.120, 0.320, 0.420, 0.480, 0.230, 0.110, 0.025, 0.470),  # crop, grass
    _spec(0.025, 0.060, 0.030, 0.380, 0.095, 0.250, 0.330, 0.385, 0.190, 0.085, 0.020, 0.370),  # broadleaf
    _spec(0.020, 0.040, 0.022, 0.240, 0.060, 0.160, 0.210, 0.245, 0.130, 0.055, 0.018, 0.235),  # conifer
    _spec(0.030, 0.055, 0.040, 0.280, 0.085, 0.190, 0.245, 0.285, 0.210, 0.110, 0.025, 0.275),  # shrub
])
DRY = _spec(0.065, 0.090, 0.120, 0.250, 0.160, 0.200, 0.225, 0.255, 0.330, 0.260, 0.060, 0.245)
PF_BAND_INDEX = (0, 1, 2, 3)
NBANDS_S2 = 12

# ---- unit kinds (phenology models) and their CLC codes ----------------------------
(K_ARABLE, K_PASTURE, K_OLIVE, K_VINE, K_BROAD, K_DECID, K_CONIFER, K_MIXED, K_SHRUB,
 K_GRASS, K_ROCK, K_QUARRY, K_TRACK, K_URBAN, K_ROAD, K_WATER) = range(16)
FOREST_KINDS = (K_BROAD, K_DECID, K_CONIFER, K_MIXED)
AGRI_KINDS = (K_ARABLE, K_PASTURE, K_OLIVE, K_VINE, K_TRACK)
CROP_CEREAL, CROP_MAIZE, CROP_FALLOW = range(3)

CHANGE_KINDS = ("forest_to_shrub", "agriculture_to_construction", "water_to_bare", "bare_to_water",
                "agriculture_to_solar", "agriculture_to_greenhouse", "vegetation_to_burnt",
                "shrub_to_quarry")
EVENT_KINDS = ("forest_to_shrub", "agriculture_to_construction", "agriculture_to_solar",
               "agriculture_to_greenhouse", "vegetation_to_burnt", "shrub_to_quarry")

# Regions: land-cover mix of the lowlands (cumulative share, kind, CLC code), the
# relief quantiles splitting lowland / forest belt / upland, and the climate and the
# sensor's nuisances: inter-annual phenology shift (sd of each year's spring shift in
# days), the chance of a dry year, snow episodes, river floods, haze/shadow rate,
# gap-fill copies (share of dates repeating an earlier one) and the seasonal level
# swing of the basins (share of their depth).
REGIONS = {
    "iberia": {"low": ((0.35, K_ARABLE, 211), (0.55, K_ARABLE, 212), (0.77, K_PASTURE, 231),
                       (0.87, K_OLIVE, 223), (0.95, K_VINE, 221), (1.01, K_ARABLE, 242)),
               "zones": (0.45, 0.8), "shift_sd": 10.0, "dry_prob": 0.5, "snow": 0.0, "flood": 0.3,
               "clouds": 1.0, "gapfill": 0.05, "lake_amp": 0.12, "mow2": 0.1},
    "atlantic": {"low": ((0.25, K_ARABLE, 211), (0.3, K_ARABLE, 212), (0.85, K_PASTURE, 231),
                         (0.9, K_VINE, 221), (1.01, K_ARABLE, 242)),
                 "zones": (0.4, 0.85), "shift_sd": 12.0, "dry_prob": 0.3, "snow": 0.3, "flood": 0.8,
                 "clouds": 2.2, "gapfill": 0.1, "lake_amp": 0.08, "mow2": 0.6},
    "continental": {"low": ((0.5, K_ARABLE, 211), (0.72, K_ARABLE, 212), (0.86, K_PASTURE, 231),
                            (0.93, K_VINE, 221), (1.01, K_ARABLE, 242)),
                    "zones": (0.55, 0.85), "shift_sd": 14.0, "dry_prob": 0.4, "snow": 1.0, "flood": 0.5,
                    "clouds": 1.5, "gapfill": 0.08, "lake_amp": 0.2, "mow2": 0.3},
}

PX = L.PF_PIXEL_M
PATCH_PX = L.PF_SIZE


def logistic(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40.0, 40.0)))


def bump(t, centre, width):
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


def smooth_noise(rng, h, w, cell):
    """Zero-mean, unit-variance random field of shape (h, w) with features about cell px wide."""
    if cell <= 1:
        return rng.standard_normal((h, w), dtype=np.float32)
    cell = int(round(cell))
    lh, lw = h // cell + 4, w // cell + 4
    low = rng.standard_normal((lh, lw), dtype=np.float32)
    ds = gdal_array.OpenArray(low)
    up = ds.ReadAsArray(buf_xsize=lw * cell, buf_ysize=lh * cell, resample_alg=gdal.GRIORA_CubicSpline)
    oy, ox = int(rng.integers(0, cell)) + cell, int(rng.integers(0, cell)) + cell
    out = np.ascontiguousarray(up[oy:oy + h, ox:ox + w], dtype=np.float32)
    out -= out.mean()
    sd = float(out.std())
    if sd > 0:
        out /= sd
    return out


def _s2_weights():
    """Overlap of 10 m pixel i (of 3) with 3 m pixel j (of 10) in a 30 m block, / 10/3."""
    m = np.zeros((3, 10), np.float32)
    for i in range(3):
        lo, hi = i * 10.0 / 3.0, (i + 1) * 10.0 / 3.0
        for j in range(10):
            m[i, j] = max(0.0, min(hi, j + 1.0) - max(lo, float(j))) * 0.3
    return m


_S2W = _s2_weights()


def aggregate_to_s2(x):
    """Area-weighted 3 m -> 10 m resampling: each 10 x 10 px block becomes 3 x 3 px."""
    h, w = x.shape
    hb, wb = h // 10, w // 10
    cols = np.matmul(x.reshape(h * wb, 10), _S2W.T)          # (h * wb, 3)
    out = np.matmul(_S2W, cols.reshape(hb, 10, wb * 3))      # (hb, 3, wb * 3)
    return out.reshape(hb * 3, wb * 3)


def _voronoi(rng, h, w, cell):
    """Units of a jittered-grid Voronoi partition (cell px per seed); ids row-major."""
    nuy, nux = h // cell, w // cell
    sy = (np.arange(nuy)[:, None] + rng.uniform(0.15, 0.85, (nuy, nux))) * cell
    sx = (np.arange(nux)[None, :] + rng.uniform(0.15, 0.85, (nuy, nux))) * cell
    far = np.float32(1e7)
    py = np.full((nuy + 2, nux + 2), far, np.float32)
    px = np.full((nuy + 2, nux + 2), far, np.float32)
    py[1:-1, 1:-1], px[1:-1, 1:-1] = sy, sx
    ids = np.full((nuy + 2, nux + 2), -1, np.int32)
    ids[1:-1, 1:-1] = np.arange(nuy * nux, dtype=np.int32).reshape(nuy, nux)
    loc = np.arange(cell, dtype=np.float32) + 0.5
    oy = (np.arange(nuy) * cell).astype(np.float32)
    ox = (np.arange(nux) * cell).astype(np.float32)
    best = np.full((nuy, cell, nux, cell), np.inf, np.float32)
    bid = np.zeros((nuy, cell, nux, cell), np.int32)
    with np.errstate(over="ignore"):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                sl = (slice(1 + di, 1 + di + nuy), slice(1 + dj, 1 + dj + nux))
                ry = py[sl] - oy[:, None]
                rx = px[sl] - ox[None, :]
                dy2 = (loc[None, :, None] - ry[:, None, :]) ** 2          # (nuy, cell, nux)
                dx2 = (loc[None, None, :] - rx[:, :, None]) ** 2          # (nuy, nux, cell)
                d = dy2[:, :, :, None] + dx2[:, None, :, :]
                closer = d < best
                np.minimum(best, d, out=best)
                np.copyto(bid, ids[sl][:, None, :, None], where=closer)
    return bid.reshape(h, w), sy, sx


class Basin:
    """A water body whose level moves: a seasonal drawdown plus, in 2019, a planted change.

    depth is in metres below full supply level; a pixel is water when depth > drop(t).
    Pixels with season_amp < depth <= delta are the planted change: water all of 2018 and
    bare after the drawdown ('water_to_bare'), or bare all of 2018 and water after the
    filling ('bare_to_water').
    """

    def __init__(self, idx, depth, kind, date, delta, season_amp):
        self.idx, self.depth = idx, depth
        self.kind, self.date = kind, date
        self.delta, self.season_amp = float(delta), float(season_amp)

    def drop(self, d):
        doy = d.timetuple().tm_yday
        drop = self.season_amp * 0.5 * (1.0 - math.cos(2.0 * math.pi * (doy - 60) / 365.0))
        dt = (d - self.date).days
        ramp = 0.0 if dt < 0 else min(1.0, (dt + 5) / (30.0 if self.kind == "water_to_bare" else 45.0))
        if self.kind == "water_to_bare":
            return drop + self.delta * ramp
        return drop + self.delta * (1.0 - ramp)

    def changed(self):
        """Boolean over idx: the pixels the planted change turns over for good."""
        return (self.depth > self.season_amp) & (self.depth <= self.delta)


class Event:
    """A planted change confined to one patch: clear-cut or construction."""

    def __init__(self, kind, date, idx, attrs):
        self.kind, self.date, self.idx, self.attrs = kind, date, idx, attrs


class Region:
    """Per-pixel state of region pixels on one date (overrides the static layers)."""

    __slots__ = ("idx", "bm", "btex", "gm", "gtex", "v", "s")

    def __init__(self, idx, bm, btex, gm, gtex, v, s):
        self.idx, self.bm, self.btex, self.gm, self.gtex, self.v, self.s = idx, bm, btex, gm, gtex, v, s


class Scene:
    """The static landscape of an AOI of nx x ny patches and its per-date rendering."""

    def __init__(self, seed, nx, ny, region="iberia", change_share=0.125):
        self.seed, self.nx, self.ny = int(seed), int(nx), int(ny)
        if region not in REGIONS:
            raise ValueError("unknown region %r (known: %s)" % (region, ", ".join(sorted(REGIONS))))
        self.region, self.rp = region, REGIONS[region]
        self.change_share = float(change_share)
        self.h, self.w = ny * PATCH_PX, nx * PATCH_PX
        self._year_cache = {}
        self._pf_static = None
        self._bufs = {}
        rng = np.random.default_rng([self.seed, 1])
        self._build_units(rng)
        self._build_features(rng)
        self._build_textures(rng)
        self._build_clc()
        self._plant_changes(np.random.default_rng([self.seed, 2]))
        self._build_weather(np.random.default_rng([self.seed, 4]))
        self.unit = self.unit.astype(np.intp)        # np.take is fastest with native indices

    # ---- static layers --------------------------------------------------------

    def _build_units(self, rng):
        h, w = self.h, self.w
        cell = 50                                   # 150 m: fields, stands
        self.unit, sy, sx = _voronoi(rng, h, w, cell)
        nuy, nux = sy.shape
        nu = nuy * nux
        self.unit_sy, self.unit_sx = sy.ravel(), sx.ravel()
        # A smooth "relief" decides what grows where: crops low, forest mid-slope, shrub on top.
        relief = smooth_noise(rng, nuy, nux, max(2, max(nuy, nux) / 3)) \
            + 0.5 * smooth_noise(rng, nuy, nux, max(2, max(nuy, nux) / 8))
        relief = relief.ravel()
        # Forest species and upland cover come in stands larger than one unit.
        sp = smooth_noise(rng, nuy, nux, max(2, max(nuy, nux) / 5)).ravel()
        up = smooth_noise(rng, nuy, nux, max(2, max(nuy, nux) / 6)).ravel()
        q45, q80 = np.quantile(relief, list(self.rp["zones"]))
        r = rng.random(nu)
        kind = np.empty(nu, np.int8)
        clc = np.empty(nu, np.int16)
        low, mid, high = relief <= q45, (relief > q45) & (relief <= q80), relief > q80
        lo = 0.0
        for hi, k, c in self.rp["low"]:
            sel = low & (r >= lo) & (r < hi)
            kind[sel], clc[sel] = k, c
            lo = hi
        forest = [(sp < -0.35, K_CONIFER, 312), ((sp >= -0.35) & (sp < -0.15), K_MIXED, 313),
                  ((sp >= -0.15) & (sp < 0.6), K_BROAD, 311), (sp >= 0.6, K_DECID, 311)]
        for cond, k, c in forest:
            sel = mid & cond
            kind[sel], clc[sel] = k, c
        sel = mid & (r < 0.08)
        kind[sel], clc[sel] = K_SHRUB, 324                 # young stands, transitional
        upland = [(up < -0.4, K_GRASS, 321), ((up >= -0.4) & (up < 0.9), K_SHRUB, 323), (up >= 0.9, K_ROCK, 332)]
        for cond, k, c in upland:
            sel = high & cond
            kind[sel], clc[sel] = k, c
        sel = high & (r < 0.1) & (up < 0.9)
        kind[sel], clc[sel] = K_CONIFER, 312
        # Special units after the Voronoi ones.
        self.U_TRACK, self.U_URBAN, self.U_ROAD, self.U_WATER = nu, nu + 1, nu + 2, nu + 3
        self.nunits = nu + 4
        self.kind = np.concatenate([kind, np.array([K_TRACK, K_URBAN, K_ROAD, K_WATER], np.int8)])
        self.unit_clc = np.concatenate([clc, np.array([0, 112, 122, 511], np.int16)])
        self.beta = rng.uniform(0.8, 1.2, self.nunits).astype(np.float32)     # soil brightness
        self.irrigated = (self.unit_clc == 212)
        self.angle = rng.uniform(0, np.pi, self.nunits).astype(np.float32)    # row direction

    def _build_features(self, rng):
        """Town, river, reservoir, farm pond, main road, quarry, field tracks."""
        h, w = self.h, self.w
        size = min(h, w) * PX
        unit = self.unit
        # Field borders become tracks before anything overrides the units.
        agri = np.isin(self.kind, AGRI_KINDS)
        border = np.zeros((h, w), bool)
        border[:, :-1] |= unit[:, :-1] != unit[:, 1:]
        border[:-1, :] |= unit[:-1, :] != unit[1:, :]
        border &= agri[unit]
        self.pixel_clc = self.unit_clc[unit]          # CLC before tracks: tracks are part of fields
        unit[border] = self.U_TRACK

        # Town: a disc with a ragged edge around a street grid.
        self.bm = np.full((h, w), SOIL, np.uint8)
        self.town_c = (w * rng.uniform(0.25, 0.4), h * rng.uniform(0.5, 0.7))
        rt = min(1500.0, max(250.0, 0.12 * size)) / PX
        tx, ty = self.town_c
        y0, y1 = max(0, int(ty - 1.4 * rt)), min(h, int(ty + 1.4 * rt) + 1)
        x0, x1 = max(0, int(tx - 1.4 * rt)), min(w, int(tx + 1.4 * rt) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dist = np.hypot(xx - tx, yy - ty) / rt
        ragged = dist + 0.22 * smooth_noise(rng, y1 - y0, x1 - x0, max(2, rt / 2))
        town = ragged < 1.0
        th = rng.uniform(0, np.pi / 2)
        u = (xx - tx) * math.cos(th) + (yy - ty) * math.sin(th)
        v = -(xx - tx) * math.sin(th) + (yy - ty) * math.cos(th)
        ang = (np.degrees(np.arctan2(yy - ty, xx - tx)) - rng.uniform(0, 360)) % 360
        industrial = town & (ang < 70) & (dist > 0.45)
        core = town & (dist < 0.5) & ~industrial
        period = np.where(industrial, 28, 14)
        lot = period // 2
        street = ((u % period) < 2) | ((v % period) < 2)
        lu = np.floor(u / lot).astype(np.int64)
        lv = np.floor(v / lot).astype(np.int64)
        hsh = ((lu * 73856093) ^ (lv * 19349663) ^ (lu * lv * 83492791)) & 0xFFFFFF
        h1 = (hsh & 0xFFF) / 4096.0
        h2 = (hsh >> 12) / 4096.0
        p_build = np.where(core, 0.85, np.where(industrial, 0.7, 0.55))
        building = town & ~street & (h1 < p_build) & ((u % lot) >= 1) & ((v % lot) >= 1)
        garden = town & ~street & ~building
        bm = np.where(street, ASPHALT, np.where(building, np.where(industrial | (h2 >= 0.65), CONCRETE, RED_ROOF), SOIL))
        sub = (slice(y0, y1), slice(x0, x1))
        self.bm[sub][town] = bm[town]
        self.unit[sub][town] = self.U_URBAN
        self.pixel_clc[sub][town] = np.where(industrial, 121, np.where(core, 111, 112))[town]
        self._town_garden = np.zeros((h, w), bool)
        self._town_garden[sub][garden] = True
        self._roof_bright = np.ones((h, w), np.float32)
        self._roof_bright[sub][building] = (0.85 + 0.3 * ((hsh >> 6) & 0x3F) / 64.0)[building]
        del yy, xx, dist, ragged, u, v, ang, street, lu, lv, hsh, h1, h2, bm

        # Main road through the town centre.
        rth = rng.uniform(0, np.pi)
        yy = np.arange(h, dtype=np.float32)[:, None]
        xx = np.arange(w, dtype=np.float32)[None, :]
        road = np.abs((xx - tx) * math.sin(rth) - (yy - ty) * math.cos(rth)) < 1.6
        road &= self.unit != self.U_URBAN
        self.unit[road] = self.U_ROAD
        self.bm[road] = ASPHALT
        self.pixel_clc[road] = 122

        # River: west-east meander through the reservoir centre.
        rx, ry = w * rng.uniform(0.62, 0.8), h * rng.uniform(0.25, 0.4)
        amp, lam, phase = h * rng.uniform(0.05, 0.1), w * rng.uniform(0.6, 1.0), 0.0
        xs = np.arange(w, dtype=np.float32)
        wobble = np.interp(xs, np.linspace(0, w, 12), rng.normal(0, 0.02 * h, 12)).astype(np.float32)
        wobble -= wobble[int(min(w - 1, rx))]
        centre = ry + amp * np.sin(2 * np.pi * (xs - rx) / lam + phase) + wobble
        half = 4.0 + 1.5 * np.sin(xs / 97.0)
        self._river = (centre.astype(np.float32), half.astype(np.float32))     # floods spread from it
        river = np.abs(yy - centre[None, :]) < half[None, :]
        self.unit[river] = self.U_WATER
        self.bm[river] = WATER
        self.pixel_clc[river] = 511

        # Basins: the reservoir on the river and a farm pond; one drains, the other fills.
        kinds = ["water_to_bare", "bare_to_water"]
        if rng.random() < 0.5:
            kinds.reverse()
        rr = min(1200.0, max(150.0, 0.08 * size)) / PX
        self.basins = []
        specs = [(rx, ry, 1.6 * rr, 0.8 * rr, 30.0, kinds[0])]
        pond_r = min(200.0, max(90.0, 0.03 * size)) / PX
        cand = np.flatnonzero(np.isin(self.kind[:-4], (K_ARABLE, K_PASTURE)))
        if cand.size:
            d_town = np.hypot(self.unit_sx[cand] - tx, self.unit_sy[cand] - ty)
            d_res = np.hypot((self.unit_sx[cand] - rx) / 1.6, self.unit_sy[cand] - ry)
            ok = cand[(d_town > rt + 2 * pond_r) & (d_res > rr + 2 * pond_r)]
            if ok.size:
                k = int(rng.choice(ok))
                specs.append((float(self.unit_sx[k]), float(self.unit_sy[k]), pond_r, 0.8 * pond_r, 8.0, kinds[1]))
        for bx, by, ax, ay, dmax, bkind in specs:
            y0, y1 = max(0, int(by - 1.4 * ay)), min(h, int(by + 1.4 * ay) + 1)
            x0, x1 = max(0, int(bx - 1.4 * ax)), min(w, int(bx + 1.4 * ax) + 1)
            if y1 <= y0 or x1 <= x0:
                continue
            gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            rho = np.hypot((gx - bx) / ax, (gy - by) / ay)
            rho += 0.15 * smooth_noise(rng, y1 - y0, x1 - x0, max(2, ay / 3))
            depth = dmax * np.clip(1.0 - rho, 0, None) ** 1.3
            inside = depth > 0.05
            if inside.sum() < 50:
                continue
            flat = (gy[inside].astype(np.int64) * w + gx[inside].astype(np.int64))
            season_amp = self.rp["lake_amp"] * dmax
            delta = dmax * rng.uniform(0.3, 0.4)
            date = _pick_change_date(rng)
            self.basins.append(Basin(flat, depth[inside].astype(np.float32), bkind, date, delta, season_amp))
            self.unit.ravel()[flat] = self.U_WATER
            self.bm.ravel()[flat] = WATER
            filled_2018 = depth[inside] > (delta if bkind == "bare_to_water" else 0.0)
            self.pixel_clc.ravel()[flat] = np.where(filled_2018, 512, 333)

        # Quarry: one high unit away from the town.
        hi = np.flatnonzero((self.kind[:-4] == K_SHRUB) | (self.kind[:-4] == K_ROCK))
        if hi.size and self.nx * self.ny >= 9:
            far = hi[np.hypot(self.unit_sx[hi] - tx, self.unit_sy[hi] - ty) > rt * 1.5]
            if far.size:
                q = int(rng.choice(far))
                self.kind[q], self.unit_clc[q] = K_QUARRY, 131
                sel = self.unit == q
                self.pixel_clc[sel] = 131
                self.bm[sel] = SAND

    def _build_textures(self, rng):
        """Canopy cover, soil brightness and crown shading textures per pixel."""
        h, w = self.h, self.w
        kind = self.kind[self.unit]
        fine = smooth_noise(rng, h, w, 1)
        crown = smooth_noise(rng, h, w, 2)
        clump = smooth_noise(rng, h, w, 5)
        field = smooth_noise(rng, h, w, 14)
        c = np.full((h, w), 0.97, np.float32)
        c += 0.04 * field
        forest = np.isin(kind, FOREST_KINDS)
        c[forest] = np.clip(0.84 + 0.2 * crown[forest] + 0.05 * field[forest], 0.2, 1.0)
        con = kind == K_CONIFER
        c[con] = np.clip(0.78 + 0.25 * crown[con], 0.15, 1.0)
        shrub = (kind == K_SHRUB) | (kind == K_GRASS) & (clump > 1.2)
        c[shrub] = np.clip(0.55 + 0.35 * clump[shrub], 0.05, 1.0)
        rock = kind == K_ROCK
        c[rock] = np.clip(0.2 + 0.25 * clump[rock], 0.0, 0.8)
        c[kind == K_QUARRY] = 0.0
        c[(kind == K_ROAD) | (kind == K_WATER)] = 0.0
        c[kind == K_TRACK] = np.clip(0.45 + 0.3 * fine[kind == K_TRACK], 0, 1)
        urban = kind == K_URBAN
        c[urban] = np.where(self._town_garden[urban], np.clip(0.75 + 0.2 * clump[urban], 0, 1), 0.0)
        rows = (kind == K_OLIVE) | (kind == K_VINE)
        if rows.any():
            ry, rx = np.nonzero(rows)
            th = self.angle[self.unit[ry, rx]]
            uu = rx * np.cos(th) + ry * np.sin(th)
            vv = -rx * np.sin(th) + ry * np.cos(th)
            olive = kind[ry, rx] == K_OLIVE
            pat = np.where(olive,
                           0.35 + 0.4 * np.cos(2 * np.pi * uu / 3.4) * np.cos(2 * np.pi * vv / 3.4),
                           0.5 + 0.3 * np.sin(2 * np.pi * uu / 2.6))
            c[ry, rx] = np.clip(pat + 0.05 * fine[ry, rx], 0.05, 0.95)
        np.clip(c, 0.0, 1.0, out=c)
        self.c = c
        btex = self.beta[self.unit] * (1.0 + 0.05 * field + 0.03 * fine)
        btex *= self._roof_bright
        self.btex = btex.astype(np.float32)
        gtex = np.where(forest | con, 0.88 + 0.1 * crown, 1.0 + 0.03 * fine).astype(np.float32)
        self.gtex = gtex
        gm = np.full((h, w), G_CROP, np.uint8)
        gm[np.isin(kind, (K_BROAD, K_DECID, K_MIXED))] = G_BROAD
        gm[con] = G_CONIFER
        gm[np.isin(kind, (K_SHRUB, K_ROCK, K_OLIVE))] = G_SHRUB
        self.gm = gm
        bm = self.bm
        bm[rock] = ROCK
        del self._town_garden, self._roof_bright

    def _build_clc(self):
        """Index into CLC_CODES per pixel (2018 land cover) for labels."""
        lut = np.zeros(600, np.uint8)
        for i, code in enumerate(L.CLC_CODES):
            lut[code] = i
        self.clc_idx = lut[self.pixel_clc]
        del self.pixel_clc

    # ---- patches and labels ----------------------------------------------------

    def patch_slice(self, col, row):
        """Mosaic slice of AOI patch (col, row); row 0 is the southernmost patch row."""
        r0 = (self.ny - 1 - row) * PATCH_PX
        return slice(r0, r0 + PATCH_PX), slice(col * PATCH_PX, (col + 1) * PATCH_PX)

    def patch_clc_fractions(self, col, row):
        """Fraction of each of the 44 CLC codes in the patch (2018), in CLC_CODES order."""
        ys, xs = self.patch_slice(col, row)
        counts = np.bincount(self.clc_idx[ys, xs].ravel(), minlength=len(L.CLC_CODES))
        return counts / float(PATCH_PX * PATCH_PX)

    # ---- planted changes ----------------------------------------------------

    def _plant_changes(self, rng):
        npatch = self.nx * self.ny
        target = min(max(3, int(round(self.change_share * npatch))), max(1, npatch // 2))
        changed = {}
        self.truth = []
        self.truth_masks = {}
        for b in self.basins:
            mask = b.changed()
            if not mask.any():
                continue
            idx = b.idx[mask]
            r, c = idx // self.w, idx % self.w
            pcol, prow = c // PATCH_PX, (self.ny - 1) - r // PATCH_PX
            key = pcol * self.ny + prow
            for k in np.unique(key):
                col, row = int(k // self.ny), int(k % self.ny)
                sel = key == k
                frac = sel.sum() / float(PATCH_PX * PATCH_PX)
                m = np.zeros((PATCH_PX, PATCH_PX), np.uint8)
                ys, xs = self.patch_slice(col, row)
                m[r[sel] - ys.start, c[sel] - xs.start] = 1
                self._add_truth(col, row, b.date, b.kind, frac, m)
                changed[(col, row)] = True
        big = sum(1 for t in self.truth if t[3] >= 0.05)
        others = max(2, target - big)
        kind_px = self.kind[self.unit]
        forest = np.isin(kind_px, FOREST_KINDS)
        agri = np.isin(kind_px, AGRI_KINDS)
        elig_px = {"forest_to_shrub": forest,
                   "agriculture_to_construction": agri,
                   "agriculture_to_solar": np.isin(kind_px, (K_ARABLE, K_PASTURE, K_TRACK)),
                   "agriculture_to_greenhouse": np.isin(kind_px, (K_ARABLE, K_TRACK, K_VINE)),
                   "vegetation_to_burnt": forest | np.isin(kind_px, (K_SHRUB, K_GRASS)),
                   "shrub_to_quarry": np.isin(kind_px, (K_SHRUB, K_ROCK, K_GRASS))}
        cands = {k: [] for k in elig_px}
        for col in range(self.nx):
            for row in range(self.ny):
                if (col, row) in changed:
                    continue
                ys, xs = self.patch_slice(col, row)
                for k, px in elig_px.items():
                    if px[ys, xs].mean() >= 0.3:
                        cands[k].append((col, row))
        self.events = []
        made = {k: 0 for k in cands}
        for _ in range(others):
            # Balance the kinds; ties go to a random one.
            open_kinds = [k for k in sorted(cands) if any(p not in changed for p in cands[k])]
            if not open_kinds:
                break
            least = min(made[k] for k in open_kinds)
            open_kinds = [k for k in open_kinds if made[k] == least]
            kind = open_kinds[int(rng.integers(len(open_kinds)))]
            pool = [p for p in cands[kind] if p not in changed]
            col, row = pool[int(rng.integers(len(pool)))]
            ys, xs = self.patch_slice(col, row)
            elig = elig_px[kind][ys, xs]
            for _ in range(20):
                m = _event_region(rng) & elig
                if m.sum() >= 0.05 * PATCH_PX * PATCH_PX:
                    break
            else:
                m = elig
            date = _pick_change_date(rng)
            ly, lx = np.nonzero(m)
            idx = (ly + ys.start).astype(np.int64) * self.w + (lx + xs.start)
            attrs = _event_attrs(rng, kind, ly, lx, (_dt.date(2019, 12, 31) - date).days)
            if "grow_day" in attrs:
                # Only what has turned over by the end of the series counts as changed.
                done = attrs["grow_day"] <= (_dt.date(2019, 12, 31) - date).days
                m = np.zeros_like(m)
                m[ly[done], lx[done]] = True
            frac = m.sum() / float(PATCH_PX * PATCH_PX)
            self.events.append(Event(kind, date, idx, attrs))
            self._add_truth(col, row, date, kind, frac, m.astype(np.uint8))
            changed[(col, row)] = True
            made[kind] += 1
        self.truth.sort(key=lambda t: (t[0], t[1]))

    def _add_truth(self, col, row, date, kind, frac, mask):
        self.truth.append(((col, row), date, kind, float(frac)))
        if (col, row) in self.truth_masks:
            mask = mask | self.truth_masks[(col, row)]
        self.truth_masks[(col, row)] = mask

    # ---- weather: snow, floods, gap-fill copies (no truth: none of it lasts) -------

    def _build_weather(self, rng):
        """Static per-pixel susceptibility to snow and river floods."""
        h, w = self.h, self.w
        c = self.c
        kind = self.kind[self.unit]
        forest = np.isin(kind, FOREST_KINDS)
        # Snow lies thinner under canopy and unevenly (drifts, south slopes).
        sus = 0.75 + 0.25 * smooth_noise(rng, h, w, 40)
        sus[forest] *= 1.0 - 0.7 * c[forest]
        self.snow_sus = np.clip(sus, 0.0, 1.0).astype(np.float32)
        # Flood plain: pixels up to ~200 m beside the river, ragged by micro-relief.
        centre, half = self._river
        yy = np.arange(h, dtype=np.float32)[:, None]
        dist = np.abs(yy - centre[None, :]) - half[None, :]
        dist *= 1.0 + 0.35 * smooth_noise(rng, h, w, 25)
        near = (dist > 0) & (dist < 70)
        self.flood_idx = np.flatnonzero(near.ravel())
        self.flood_dist = dist.ravel()[self.flood_idx].astype(np.float32) / 70.0
        del self._river

    def _weather(self, year):
        """This year's snow episodes and flood (from the seed, the year and the region)."""
        key = ("weather", year)
        p = self._year_cache.get(key)
        if p is None:
            rng = np.random.default_rng([self.seed, 10, year])
            snow = []
            for _ in range(int(rng.poisson(3.0 * self.rp["snow"]))):
                start = rng.uniform(-35, 70) % 365 + 1               # December to mid-March
                snow.append((start, rng.uniform(4, 18), rng.uniform(0.4, 1.0)))
            flood = None
            if rng.random() < self.rp["flood"]:
                start = rng.uniform(15, 100) if rng.random() < 0.7 else rng.uniform(300, 340)
                flood = (start, rng.uniform(8, 25), rng.uniform(0.4, 1.0))
            p = self._year_cache[key] = {"snow": snow, "flood": flood}
        return p

    def snow_level(self, d):
        """Snow depth index 0..1 on date d (melting linearly through each episode)."""
        t = float(d.timetuple().tm_yday)
        lev = 0.0
        for start, length, depth in self._weather(d.year)["snow"]:
            if start <= t < start + length:
                lev = max(lev, depth * (1.0 - (t - start) / length))
        return lev

    def flood_level(self, d):
        """Share 0..1 of the flood plain under water on date d (rises fast, recedes slowly)."""
        f = self._weather(d.year)["flood"]
        if f is None:
            return 0.0
        start, length, peak = f
        t = float(d.timetuple().tm_yday) - start
        if t < 0 or t >= length:
            return 0.0
        rise = 0.25 * length
        return peak * (t / rise if t < rise else 1.0 - (t - rise) / (length - rise))

    def gapfill_source(self, d):
        """The date whose image date d repeats (a gap-fill copy), or d itself."""
        rng = np.random.default_rng([self.seed, 9, d.toordinal()])
        if rng.random() < self.rp["gapfill"]:
            return d - _dt.timedelta(days=5 * int(rng.integers(1, 4)))
        return d

    # ---- phenology ------------------------------------------------------------

    def _year(self, year):
        """Per-unit, per-year parameters (drawn from the seed and the year only)."""
        p = self._year_cache.get(year)
        if p is not None:
            return p
        rng = np.random.default_rng([self.seed, 3, year])
        n = self.nunits
        p = {
            "shift": float(rng.normal(0, self.rp["shift_sd"])),   # spring earlier/later this year
            "drought": float(rng.uniform(0.55, 0.75) if rng.random() < self.rp["dry_prob"]
                             else rng.uniform(0.85, 1.05)),     # summer greenness (a dry year)
            "jit": rng.normal(0, 8, n).astype(np.float32),
            "amp": rng.uniform(0.85, 1.1, n).astype(np.float32),
            "harvest": rng.uniform(0, 12, n).astype(np.float32),
            "plough": rng.uniform(25, 90, n).astype(np.float32),
            "mow": np.where(rng.random(n) < 0.5, rng.normal(140, 15, n), 999).astype(np.float32),
        }
        # A second cut in some meadows, 45-70 days after the first.
        p["mow2"] = np.where((rng.random(n) < self.rp["mow2"]) & (p["mow"] < 999),
                             p["mow"] + rng.uniform(45, 70, n), 999).astype(np.float32)
        r = rng.random(n)
        crop = np.where(r < 0.65, CROP_CEREAL, np.where(r < 0.9, CROP_FALLOW, CROP_MAIZE))
        crop = np.where(self.irrigated, np.where(r < 0.7, CROP_MAIZE, CROP_CEREAL), crop)
        p["crop"] = crop.astype(np.int8)
        self._year_cache[year] = p
        return p

    def phenology(self, d):
        """Per-unit (v_under, v_top - v_under, s_under, s_top - s_under) on date d."""
        y, t = d.year, float(d.timetuple().tm_yday)
        p, nxt = self._year(y), self._year(y + 1)
        sh, dr = p["shift"], p["drought"]
        jit, amp = p["jit"], p["amp"]
        n = self.nunits
        kind = self.kind

        def grassy(a=0.35, base=0.2, dry=0.35):
            v = base + a * amp * dr * bump(t, 92 + sh + jit * 0.5, 45) \
                + 0.12 * bump(t, 330, 35) + 0.12 * bump(t, -35, 35)
            s = dry * bump(t, 212, 45) / dr
            return v, s

        # Arable: winter cereal, maize or fallow depending on this year's crop.
        crop, ncrop = p["crop"], nxt["crop"]
        g = 52 + sh + jit
        hs = 138 + sh + 0.7 * jit
        hv = hs + 30 + p["harvest"]
        cv = 0.18 + (0.8 * amp - 0.18) * logistic((t - g) / 9) * (1 - logistic((t - hs) / 7))
        cs = 0.55 * logistic((t - hs) / 7)
        after = t >= hv
        stub = 0.4 * np.exp(-np.clip(t - hv, 0, None) / 40.0) * (t < hv + p["plough"])
        cv = np.where(after, 0.04, cv)
        cs = np.where(after, stub, cs)
        ms = 118 + jit
        mg = ms + 35
        mh = 238 + jit
        mhv = mh + 28 + p["harvest"]
        mv = 0.86 * amp * logistic((t - mg) / 7) * (1 - logistic((t - mh) / 8))
        mv = np.maximum(mv, 0.1 * (t < ms))
        msn = 0.5 * logistic((t - mh) / 8) * (t < mhv)
        mstub = 0.35 * np.exp(-np.clip(t - mhv, 0, None) / 35.0) * (t >= mhv)
        ms_ = msn + mstub
        fv, fs = grassy(a=0.28, base=0.1, dry=0.3)
        av = np.where(crop == CROP_CEREAL, cv, np.where(crop == CROP_MAIZE, mv, fv))
        as_ = np.where(crop == CROP_CEREAL, cs, np.where(crop == CROP_MAIZE, ms_, fs))
        # Next year's winter cereal is sown in the autumn, whatever grew this year.
        sow = 300 + jit
        autumn = (ncrop == CROP_CEREAL) & (t > sow)
        av = np.where(autumn, np.maximum(av, 0.18 * logistic((t - sow - 20) / 6)), av)
        as_ = np.where(autumn, np.minimum(as_, 0.1), as_)

        pv, ps = grassy(a=0.4, base=0.28, dry=0.35)
        mowed = (t >= p["mow"]) & (t < p["mow"] + 60)
        pv = np.where(mowed, pv * (1 - 0.55 * np.exp(-(t - p["mow"]) / 18.0)), pv)
        mowed2 = (t >= p["mow2"]) & (t < p["mow2"] + 60)
        pv = np.where(mowed2, pv * (1 - 0.5 * np.exp(-(t - p["mow2"]) / 18.0)), pv)
        nv, ns = grassy(a=0.32, base=0.12, dry=0.45)

        bro_v = 0.72 + 0.06 * amp * bump(t, 120 + sh, 70) - 0.04 * bump(t, 240, 40) * (2 - dr)
        dec_on = logistic((t - (105 + sh + jit)) / 7) * (1 - logistic((t - (305 + jit)) / 9))
        dec_v = 0.15 + 0.65 * amp * dec_on
        dec_s = 0.25 * logistic((t - (290 + jit)) / 8) * (1 - logistic((t - 345) / 8))
        con_v = 0.66 + 0.04 * bump(t, 150, 60) + 0 * jit
        shr_v = 0.45 + 0.15 * amp * dr * bump(t, 110 + sh, 60) - 0.08 * bump(t, 225, 40)
        shr_s = 0.12 * bump(t, 225, 50) / dr
        vine_v = 0.05 + 0.55 * amp * logistic((t - (110 + sh + jit)) / 8) * (1 - logistic((t - (290 + jit)) / 10))
        vine_s = 0.3 * logistic((t - (270 + jit)) / 8) * (1 - logistic((t - 320) / 10))
        gard_v = 0.42 + 0.15 * bump(t, 110, 60) + 0 * jit

        zero = np.zeros(n, np.float32)
        vu = np.zeros(n, np.float32)
        vt = np.zeros(n, np.float32)
        su = np.zeros(n, np.float32)
        st = np.zeros(n, np.float32)

        def put(k, v_under, v_top, s_under, s_top):
            m = kind == k
            for arr, val in ((vu, v_under), (vt, v_top), (su, s_under), (st, s_top)):
                arr[m] = (val[m] if np.ndim(val) else val)

        put(K_ARABLE, av, av, as_, as_)
        put(K_PASTURE, pv, pv, ps, ps)
        put(K_GRASS, nv, nv, ns, ns)
        put(K_TRACK, 0.03 + zero, pv, 0.05 + zero, ps)
        put(K_OLIVE, fv, 0.55 + 0.03 * bump(t, 120, 50) + zero, fs, zero)
        put(K_VINE, 0.08 + 0.15 * bump(t, 80, 30) + zero, vine_v, 0.2 * bump(t, 220, 40) + zero, vine_s)
        put(K_BROAD, nv, bro_v, ns, zero)
        put(K_DECID, nv, dec_v, ns, dec_s)
        put(K_CONIFER, shr_v * 0.6, con_v, shr_s, zero)
        put(K_MIXED, nv, 0.5 * (bro_v + dec_v), ns, 0.5 * dec_s)
        put(K_SHRUB, 0.05 + 0.2 * bump(t, 95 + sh, 40) + zero, shr_v, 0.3 * bump(t, 210, 50) + zero, shr_s)
        put(K_ROCK, 0.02 + zero, shr_v * 0.8, 0.03 + zero, shr_s)
        put(K_URBAN, zero, gard_v, zero, 0.04 + zero)
        for k in (K_QUARRY, K_ROAD, K_WATER):
            put(k, zero, zero, zero, zero)
        for v_, s_ in ((vu, su), (vt, st)):
            np.clip(v_, 0.0, 1.0, out=v_)
            np.clip(s_, 0.0, None, out=s_)
            np.minimum(s_, 1.0 - v_, out=s_)
        return vu, vt - vu, su, st - su

    # ---- regions: basins and planted changes -------------------------------------

    def regions(self, d):
        """Region overrides active on date d."""
        out = []
        for b in self.basins:
            drop = b.drop(d)
            above = drop - b.depth                       # > 0: exposed by that many metres
            water = above < 0
            n = b.idx.size
            bm = np.where(water, WATER, np.where(above < 0.7, MUD, SOIL)).astype(np.uint8)
            turb = 1.0 + 0.15 * math.sin(2 * math.pi * (d.timetuple().tm_yday - 30) / 365.0)
            shallow = np.exp(np.clip(above, -30, 0) / 1.2)
            btex = np.where(water, turb * (1.0 + 1.6 * shallow), 1.1).astype(np.float32)
            doy = d.timetuple().tm_yday
            weeds = (0.3 * logistic((above - 2.5) / 0.6) * bump(doy, 110, 50)).astype(np.float32)
            v = np.where(water, 0.0, weeds).astype(np.float32)
            s = np.where(water, 0.0, 0.05 + 0.3 * logistic((above - 2.5) / 0.6) * bump(doy, 220, 40)).astype(np.float32)
            out.append(Region(b.idx, bm, btex, np.full(n, G_CROP, np.uint8), np.ones(n, np.float32), v, s))
        for e in self.events:
            dt = (d - e.date).days
            if dt < 0:
                continue
            out.append(_event_state(e, dt, d))
        return out

    # ---- rendering --------------------------------------------------------------

    def cover(self, d):
        """Per-pixel green cover v, dry cover s and bare share w0 = 1 - v - s on date d.

        The per-unit values are already in [0, 1] with v + s <= 1 for both layers, so
        their blend by the canopy cover c needs no per-pixel clipping.
        """
        vu, vd, su, sd = self.phenology(d)
        unit, c = self.unit, self.c
        v, s, tmp = self._buf("v"), self._buf("s"), self._buf("w0")
        np.take(vu, unit, out=v, mode="clip")        # "clip" avoids buffering into out
        np.take(vd, unit, out=tmp, mode="clip")
        tmp *= c
        v += tmp
        np.take(su, unit, out=s, mode="clip")
        np.take(sd, unit, out=tmp, mode="clip")
        tmp *= c
        s += tmp
        np.subtract(1.0, v, out=tmp)
        tmp -= s
        return v, s, tmp

    def _buf(self, name, shape=None, dtype=np.float32):
        """A work array kept between dates (fresh pages for every date cost system time)."""
        shape = shape or (self.h, self.w)
        b = self._bufs.get(name)
        if b is None or b.shape != shape or b.dtype != dtype:
            b = self._bufs[name] = np.empty(shape, dtype)
        return b

    def pf_static(self):
        """Base and green reflectance per pixel of the four PF bands (cached, shared by forks)."""
        if self._pf_static is None:
            st = []
            for b in PF_BAND_INDEX:
                base = BASE[:, b][self.bm]
                base *= self.btex
                green = GREEN[:, b][self.gm]
                green *= self.gtex
                st.append((base, green))
            self._pf_static = st
        return self._pf_static

    def render_pf(self, d, noise_bank):
        """Planet Fusion BGRN on date d (uint16, 4 x H x W), with sensor and gap-fill artefacts,
        haze, cloud shadows, snow and floods."""
        src = self.gapfill_source(d)
        if src != d:
            return self.render_pf(src, noise_bank)
        rng = np.random.default_rng([self.seed, 7, d.toordinal()])
        v, s, w0 = self.cover(d)
        regions = self.regions(d)
        static = self.pf_static()
        out = self._buf("pf_out", (4, self.h, self.w), np.uint16)
        # Radiometric jitter between dates: a common gain and offset plus per-band parts.
        gain = rng.normal(1.0, 0.012, 4) * rng.normal(1.0, 0.025)
        offset = rng.normal(0.0, 12.0, 4) + rng.normal(0.0, 25.0)
        sigma = (25.0, 25.0, 30.0, 45.0)
        haze_spec = np.array([400.0, 300.0, 220.0, 120.0], np.float32) * rng.uniform(0.5, 1.5)
        blobs = _blobs(rng, self.h, self.w, self.rp["clouds"])
        shadows = _blobs(rng, self.h, self.w, 0.6 * self.rp["clouds"], (15, 70))
        snow = self.snow_level(d)
        flood = self.flood_level(d)
        if snow > 0:
            fsnow = np.clip(1.6 * snow * self.snow_sus - 0.15, 0.0, 1.0)
        if flood > 0:
            fl = self.flood_idx[self.flood_dist < flood]
        tmp, r = self._buf("tmp"), self._buf("r")
        for i, b in enumerate(PF_BAND_INDEX):
            base, green = static[i]
            np.multiply(base, w0, out=r)
            np.multiply(green, v, out=tmp)
            r += tmp
            np.multiply(s, DRY[b], out=tmp)
            r += tmp
            flat = r.ravel()
            for g in regions:
                flat[g.idx] = (BASE[g.bm, b] * g.btex * (1.0 - g.v - g.s)
                               + GREEN[g.gm, b] * g.gtex * g.v + DRY[b] * g.s)
            if flood > 0:
                flat[fl] = BASE[WATER, b] * 1.8 + DRY[b] * 0.15       # turbid flood water
            if snow > 0:
                r += fsnow * (SNOW_PF[i] - r)
            for (y0, y1, x0, x1, hmap) in blobs:
                sub = r[y0:y1, x0:x1]
                blur = _block_blur(sub, 4)
                sub += hmap * (0.6 * (blur - sub) + haze_spec[i])
            for (y0, y1, x0, x1, smap) in shadows:
                r[y0:y1, x0:x1] *= 1.0 - 0.6 * smap                  # diffuse light only
            k, oy, ox = noise_bank.window(rng)
            np.multiply(k[oy:oy + self.h, ox:ox + self.w], sigma[i] / gain[i], out=tmp)
            r += tmp
            r *= gain[i]
            r += offset[i] + 0.5
            np.clip(r, 1.0, 65535.0, out=r)
            out[i] = r                                 # truncation of x + 0.5: rounding
        return out

    def render_s2(self, year, month, noise_bank=None):
        """Sentinel-2 monthly composite (uint16, 12 x H*0.3 x W*0.3): the state mid-month at 10 m.

        Reflectance is linear in the material spectra, so the 3 m -> 10 m area average is
        taken of each material's abundance once, and the 12 bands are mixed at 10 m.
        """
        d = _dt.date(year, month, 15)
        rng = np.random.default_rng([self.seed, 8, year, month])
        v, s, w0 = self.cover(d)
        regions = self.regions(d)
        xb = w0
        xb *= self.btex                              # base abundance x brightness
        xg = v
        xg *= self.gtex                              # green abundance x shading
        bm, gm = self.bm, self.gm
        if regions:
            bm, gm = bm.copy(), gm.copy()
            fb, fg, fs, fbm, fgm = xb.ravel(), xg.ravel(), s.ravel(), bm.ravel(), gm.ravel()
            for g in regions:
                fb[g.idx] = g.btex * (1.0 - g.v - g.s)
                fg[g.idx] = g.gtex * g.v
                fs[g.idx] = g.s
                fbm[g.idx] = g.bm
                fgm[g.idx] = g.gm
        h10, w10 = self.h * 3 // 10, self.w * 3 // 10
        acc = self._buf("s2_acc", (NBANDS_S2, h10, w10))
        acc.fill(0.0)
        tmp = self._buf("tmp")
        for table, mat, x in ((BASE, bm, xb), (GREEN, gm, xg)):
            counts = np.bincount(mat.ravel(), minlength=len(table))
            for m in np.flatnonzero(counts):
                np.multiply(x, mat == m, out=tmp)
                a = aggregate_to_s2(tmp)
                acc += table[m][:, None, None] * a[None]
        acc += DRY[:, None, None] * aggregate_to_s2(s)[None]
        acc *= rng.normal(1.0, 0.01, NBANDS_S2).astype(np.float32)[:, None, None]
        acc += 0.5
        if noise_bank is not None:
            for b in range(NBANDS_S2):
                k, oy, ox = noise_bank.window(rng)
                acc[b] += 35.0 * k[oy:oy + h10, ox:ox + w10]
        np.clip(acc, 1.0, 65535.0, out=acc)
        return acc.astype(np.uint16)


class NoiseBank:
    """A few standard-normal fields larger than the mosaic; each date reads shifted windows."""

    PAD = 64

    def __init__(self, seed, h, w, count=3, stream=5):
        rng = np.random.default_rng([seed, stream])
        self.fields = [rng.standard_normal((h + self.PAD, w + self.PAD), dtype=np.float32) for _ in range(count)]

    def window(self, rng):
        k = self.fields[int(rng.integers(len(self.fields)))]
        return k, int(rng.integers(self.PAD)), int(rng.integers(self.PAD))


def _block_blur(a, k):
    """Block means of k x k blocks, expanded back (a gap-fill from coarser data)."""
    h, w = a.shape
    hh, ww = h - h % k, w - w % k
    out = a.copy()
    if hh and ww:
        m = a[:hh, :ww].reshape(hh // k, k, ww // k, k).mean(axis=(1, 3))
        out[:hh, :ww] = np.repeat(np.repeat(m, k, axis=0), k, axis=1)
    return out


def _blobs(rng, h, w, rate=1.0, size=(30, 140)):
    """Smooth blotches of this date (gap-fill haze, cloud shadows): (y0, y1, x0, x1, weight map).
    rate scales how many there are, size their width in px."""
    area_km2 = h * w * PX * PX / 1e6
    out = []
    for _ in range(int(rng.poisson(rate * (0.05 * area_km2 + 0.15)))):
        sig = rng.uniform(size[0], size[1])
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        a = rng.uniform(0.2, 0.8)
        y0, y1 = max(0, int(cy - 2.5 * sig)), min(h, int(cy + 2.5 * sig) + 1)
        x0, x1 = max(0, int(cx - 2.5 * sig)), min(w, int(cx + 2.5 * sig) + 1)
        if y1 <= y0 or x1 <= x0:
            continue
        yy = (np.arange(y0, y1, dtype=np.float32) - cy)[:, None]
        xx = (np.arange(x0, x1, dtype=np.float32) - cx)[None, :]
        out.append((y0, y1, x0, x1, (a * np.exp(-(yy * yy + xx * xx) / (2 * sig * sig))).astype(np.float32)))
    return out


def _pick_change_date(rng):
    """A Planet Fusion date between February and mid-October 2019."""
    dates = [d for d in L.pf_dates((2019,)) if _dt.date(2019, 2, 1) <= d <= _dt.date(2019, 10, 15)]
    return dates[int(rng.integers(len(dates)))]


def _event_region(rng):
    """Where in the patch a change happens: all of it, one half, or a block."""
    n = PATCH_PX
    m = np.zeros((n, n), bool)
    r = rng.random()
    if r < 0.2:
        m[:] = True
    elif r < 0.45:
        side = int(rng.integers(4))
        half = n // 2
        [m[:half, :], m[half:, :], m[:, :half], m[:, half:]][side] = True
    else:
        bh, bw = int(rng.integers(n * 2 // 10, n * 7 // 10)), int(rng.integers(n * 2 // 10, n * 7 // 10))
        y0, x0 = int(rng.integers(0, n - bh + 1)), int(rng.integers(0, n - bw + 1))
        m[y0:y0 + bh, x0:x0 + bw] = True
    return m


def _event_attrs(rng, kind, ly, lx, days_left=365):
    """Per-pixel attributes of a planted change (ly, lx: pixel rows/cols inside the patch;
    days_left: days from its date to the end of the series)."""
    patch_noise = smooth_noise(rng, PATCH_PX, PATCH_PX, 5)[ly, lx]
    btex = (1.0 + 0.05 * patch_noise).astype(np.float32)
    if kind == "forest_to_shrub":
        return {"cover": np.clip(0.8 + 0.3 * patch_noise, 0.2, 1.3).astype(np.float32),
                "btex": (1.0 + 0.06 * patch_noise).astype(np.float32)}
    if kind == "vegetation_to_burnt":
        return {"cover": np.clip(0.8 + 0.3 * patch_noise, 0.2, 1.3).astype(np.float32),
                "btex": (1.0 + 0.12 * patch_noise).astype(np.float32)}
    th = rng.uniform(0, np.pi / 2)
    u = lx * math.cos(th) + ly * math.sin(th)
    v = -lx * math.sin(th) + ly * math.cos(th)
    if kind == "agriculture_to_solar":
        # Rows of panels (4 px of 6) installed strip by strip over 20-90 days.
        panel = (u % 6.0) < 4.0
        span = rng.uniform(20, 90)
        vn = (v - v.min()) / max(1e-6, float(v.max() - v.min()))
        return {"panel": panel, "install_day": (vn * span).astype(np.float32), "btex": btex}
    if kind == "agriculture_to_greenhouse":
        # Tunnels 10 x 30 px with 2 px paths, covered one by one over 0-60 days.
        path = ((u % 12.0) < 2.0) | ((v % 32.0) < 2.0)
        lu, lv = np.floor(u / 12).astype(np.int64), np.floor(v / 32).astype(np.int64)
        hsh = ((lu * 73856093) ^ (lv * 19349663)) & 0xFFFF
        return {"path": path, "build_day": (hsh / 65536.0 * 60).astype(np.float32), "btex": btex}
    if kind == "shrub_to_quarry":
        # The pit grows from one side at a steady rate; pixels it reaches after the end
        # of the series are not part of the change.
        span = rng.uniform(0.5, 1.3) * max(30.0, days_left)
        un = (u - u.min()) / max(1e-6, float(u.max() - u.min()))
        if rng.random() < 0.5:
            un = 1.0 - un
        return {"grow_day": (un * span).astype(np.float32),
                "bm": np.where(patch_noise > 0.8, ROCK, SAND).astype(np.uint8), "btex": btex}
    # Construction: streets every 16 px, buildings on lots, yards between.
    period = 16
    th = rng.uniform(0, np.pi / 2)
    u = lx * math.cos(th) + ly * math.sin(th)
    v = -lx * math.sin(th) + ly * math.cos(th)
    street = ((u % period) < 2) | ((v % period) < 2)
    lu, lv = np.floor(u / 8).astype(np.int64), np.floor(v / 8).astype(np.int64)
    hsh = ((lu * 73856093) ^ (lv * 19349663)) & 0xFFFF
    building = ~street & ((hsh & 0xFF) < 180) & ((u % 8) >= 1) & ((v % 8) >= 1)
    role = np.where(street, 1, np.where(building, 2, 0)).astype(np.int8)
    build_day = (60 + (hsh >> 8) / 256.0 * 180).astype(np.float32)
    roof = np.where((hsh >> 4) & 1, RED_ROOF, CONCRETE).astype(np.uint8)
    return {"role": role, "build_day": build_day, "roof": roof,
            "btex": (1.0 + 0.05 * patch_noise).astype(np.float32)}


def _event_state(e, dt, d):
    """Region state of a planted change dt >= 0 days after it started."""
    n = e.idx.size
    a = e.attrs
    doy = d.timetuple().tm_yday
    if e.kind == "vegetation_to_burnt":
        # Char and ash at once, greening slowly from the roots (30 days on).
        regrow = 0.02 + 0.3 * (1.0 - math.exp(-max(0.0, dt - 30) / 200.0))
        v = np.clip(regrow * (1.0 + 0.2 * bump(doy, 110, 60)) * a["cover"], 0, 1).astype(np.float32)
        s = np.minimum(0.05 + 0.1 * (1.0 - math.exp(-dt / 90.0)), 1.0 - v).astype(np.float32)
        return Region(e.idx, np.full(n, CHAR, np.uint8), a["btex"], np.full(n, G_SHRUB, np.uint8),
                      np.ones(n, np.float32), v, s)
    if e.kind == "agriculture_to_solar":
        bm = np.full(n, BUILD_SOIL, np.uint8)
        on = a["panel"] & (dt >= a["install_day"])
        bm[on] = PANEL
        v = np.where(on, 0.0, 0.05 + (0.25 * bump(doy, 100, 45) if dt > 60 else 0.0)).astype(np.float32)
        s = np.where(on, 0.0, 0.05).astype(np.float32)
        return Region(e.idx, bm, a["btex"], np.full(n, G_CROP, np.uint8), np.ones(n, np.float32), v, s)
    if e.kind == "agriculture_to_greenhouse":
        bm = np.full(n, SOIL, np.uint8)
        on = ~a["path"] & (dt >= a["build_day"])
        bm[on] = PLASTIC
        v = np.where(on, 0.0, 0.05).astype(np.float32)
        s = np.full(n, 0.04, np.float32)
        return Region(e.idx, bm, a["btex"], np.full(n, G_CROP, np.uint8), np.ones(n, np.float32), v, s)
    if e.kind == "shrub_to_quarry":
        sel = dt >= a["grow_day"]
        k = int(sel.sum())
        z = np.zeros(k, np.float32)
        return Region(e.idx[sel], a["bm"][sel], a["btex"][sel], np.full(k, G_SHRUB, np.uint8),
                      np.ones(k, np.float32), z, z)
    if e.kind == "forest_to_shrub":
        regrow = 0.04 + 0.32 * (1.0 - math.exp(-max(0.0, dt - 20) / 140.0))
        v = np.clip(regrow * (1.0 + 0.15 * bump(doy, 110, 60)) * a["cover"], 0, 1).astype(np.float32)
        s = np.minimum(0.1 + 0.5 * math.exp(-dt / 120.0), 1.0 - v).astype(np.float32)
        return Region(e.idx, np.full(n, SOIL, np.uint8), a["btex"], np.full(n, G_SHRUB, np.uint8),
                      np.ones(n, np.float32), v, s)
    role = a["role"]
    bm = np.full(n, BUILD_SOIL, np.uint8)
    if dt >= 40:
        bm[role == 1] = ASPHALT
    built = (role == 2) & (dt >= a["build_day"])
    bm[built] = a["roof"][built]
    v = np.zeros(n, np.float32)
    if dt >= 220:
        v[role == 0] = 0.3
    s = np.full(n, 0.03, np.float32)
    s[role == 0] = np.minimum(s[role == 0], 1.0 - v[role == 0])
    return Region(e.idx, bm, a["btex"], np.full(n, G_CROP, np.uint8), np.ones(n, np.float32), v, s)
