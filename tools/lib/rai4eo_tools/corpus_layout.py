"""Layout of a RapidAI4EO-style corpus: sample ids, identifiers, paths, dates, CLC codes.

Shared by tools/synth (which writes the layout) and tools/load (which reads it), and
mirrored by sql/src/40_corpus.sql (rai4eo.patch_id_of, rai4eo.image_id_of).

Sample ids (docs/formats.md, "The RapidAI4EO corpus layout") look like 33N_16E-243N_39_05:
{UTM zone}{hemisphere}_{E}E-{N}N_{col:02d}_{row:02d}.  E and N count 24 km tiles in UTM
metres and col/row the 600 m patch inside the tile (0..39).  Our reading, which the corpus
documentation does not state outright: the patch's lower-left corner is
(E*24000 + col*600, N*24000 + row*600) in EPSG:326zz (327zz south), so col grows
eastwards and row northwards.  The loader never relies on this: it takes footprints from
the files' geotransforms.

Identifiers are derived from the sample id, never from a sequence (Citus-ready):
  patch_id = ((((zone*2 + hemi)*1024 + E)*1024 + N)*64 + col)*64 + row
             hemi = 0 north, 1 south; E, N in 0..1023; col, row in 0..39  (2^33 .. < 2^39)
  patch_id of the user's own id (any other text, e.g. tile_12_34): the first 33 bits of
             its MD5, below 2^33 (own_patch_id)
  image_id = patch_id << 24 | sensor_code << 16 | (acquired - 2000-01-01 in days)
             sensor_code from rai4eo.sensor (PF-SR = 0, S2-SR = 1; 0..255); days 0..65535  (< 2^63)
The functions below are the one Python definition of that layout (SQL: 39_corpus_keys.sql).
"""

import datetime as _dt
import hashlib
import os
import re

PATCH_M = 600
TILE_M = 24000
PATCHES_PER_TILE = TILE_M // PATCH_M          # 40

PF = "PF-SR"
S2 = "S2-SR"
SENSORS = (PF, S2)
SENSOR_CODE = {PF: 0, S2: 1}

# Pixel grid and bands of each sensor (docs/formats.md, "The RapidAI4EO corpus layout").
PF_PIXEL_M = 3.0
PF_SIZE = 200
PF_BANDS = ("blue", "green", "red", "nir")
S2_PIXEL_M = 10.0
S2_SIZE = 60
S2_BANDS = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09")
SENSOR_SHAPE = {PF: (len(PF_BANDS), PF_SIZE, PF_SIZE), S2: (len(S2_BANDS), S2_SIZE, S2_SIZE)}
SENSOR_PIXEL_M = {PF: PF_PIXEL_M, S2: S2_PIXEL_M}

ID_EPOCH = _dt.date(2000, 1, 1)
PF_FIRST = _dt.date(2018, 1, 3)
PF_STEP_DAYS = 5
PF_DATES_PER_YEAR = 73                        # 73 * 5 = 365: date i of year y+1 = date i of y + 365 days

_SAMPLE_RE = re.compile(
    r"^([1-9]|[1-5][0-9]|60)([NS])_(0|[1-9][0-9]{0,3})E-(0|[1-9][0-9]{0,3})N_([0-3][0-9])_([0-3][0-9])$")


class SampleId:
    """One 600 m patch of the grid: zone, hemisphere, 24 km tile (e, n), patch (col, row)."""

    __slots__ = ("zone", "north", "e", "n", "col", "row")

    def __init__(self, zone, north, e, n, col, row):
        if not (1 <= zone <= 60 and 0 <= e <= 1023 and 0 <= n <= 1023
                and 0 <= col < PATCHES_PER_TILE and 0 <= row < PATCHES_PER_TILE):
            raise ValueError("sample id out of range: zone=%r e=%r n=%r col=%r row=%r"
                             % (zone, e, n, col, row))
        self.zone, self.north, self.e, self.n, self.col, self.row = zone, bool(north), e, n, col, row

    @classmethod
    def parse(cls, text):
        """Parse '33N_16E-243N_39_05'; ValueError when it is not a valid id."""
        m = _SAMPLE_RE.match(text)
        if not m:
            raise ValueError("invalid sample id %r (expected like 33N_16E-243N_39_05)" % (text,))
        zone, hemi, e, n, col, row = m.groups()
        return cls(int(zone), hemi == "N", int(e), int(n), int(col), int(row))

    @classmethod
    def from_grid(cls, zone, north, gx, gy):
        """The patch at global 600 m cell (gx, gy) = (easting // 600, northing // 600)."""
        if gx < 0 or gy < 0:
            raise ValueError("negative grid cell (%d, %d)" % (gx, gy))
        return cls(zone, north, gx // PATCHES_PER_TILE, gy // PATCHES_PER_TILE,
                   gx % PATCHES_PER_TILE, gy % PATCHES_PER_TILE)

    @property
    def utm(self):
        return "%d%s" % (self.zone, "N" if self.north else "S")

    @property
    def tile(self):
        return "%dE-%dN" % (self.e, self.n)

    @property
    def gx(self):
        return self.e * PATCHES_PER_TILE + self.col

    @property
    def gy(self):
        return self.n * PATCHES_PER_TILE + self.row

    @property
    def epsg(self):
        return (32600 if self.north else 32700) + self.zone

    def origin(self):
        """Lower-left corner (x, y) in UTM metres."""
        return float(self.gx * PATCH_M), float(self.gy * PATCH_M)

    def bounds(self):
        """(xmin, ymin, xmax, ymax) in UTM metres."""
        x0, y0 = self.origin()
        return x0, y0, x0 + PATCH_M, y0 + PATCH_M

    def geotransform(self, pixel_m):
        """GDAL geotransform of a north-up image covering the patch at pixel_m metres."""
        x0, y0 = self.origin()
        return (x0, float(pixel_m), 0.0, y0 + PATCH_M, 0.0, -float(pixel_m))

    def patch_id(self):
        hemi = 0 if self.north else 1
        return ((((self.zone * 2 + hemi) * 1024 + self.e) * 1024 + self.n) * 64 + self.col) * 64 + self.row

    @classmethod
    def from_patch_id(cls, patch_id):
        row = patch_id & 63
        col = (patch_id >> 6) & 63
        n = (patch_id >> 12) & 1023
        e = (patch_id >> 22) & 1023
        zh = patch_id >> 32
        return cls(zh >> 1, (zh & 1) == 0, e, n, col, row)

    def __str__(self):
        return "%s_%s_%02d_%02d" % (self.utm, self.tile, self.col, self.row)

    def __repr__(self):
        return "SampleId(%r)" % str(self)

    def __eq__(self, other):
        return isinstance(other, SampleId) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


# ---- the image_id layout (the one Python definition; SQL: 39_corpus_keys.sql) --------

PATCH_SHIFT = 24                              # image_id = patch_id << 24 | code << 16 | days
CODE_SHIFT = 16
CODE_MASK = 0xFF
DAYS_MASK = 0xFFFF
PATCH_ID_LIMIT = 1 << 39
OWN_ID_LIMIT = 1 << 33                        # own ids hash below it, RapidAI4EO ids start there
_RAPID_SHAPE = re.compile(r"^[0-9]+[NS]_[0-9]+E-[0-9]+N_[0-9]+_[0-9]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def own_patch_id(text):
    """patch_id of the user's own id: the first 33 bits of md5(UTF-8 text) (rai4eo.patch_id_of)."""
    if not (1 <= len(text) <= 200) or _CONTROL.search(text) or text != text.strip(" "):
        raise ValueError("invalid patch id %r (1 to 200 characters, no control characters, "
                         "no leading or trailing spaces)" % (text,))
    return int(hashlib.md5(text.encode("utf-8")).hexdigest()[:9], 16) & (OWN_ID_LIMIT - 1)


def is_rapidai4eo_id(text):
    """Whether text is shaped like a RapidAI4EO sample id (valid or not)."""
    return bool(_RAPID_SHAPE.match(text))


def patch_id_of(sample_id):
    """patch_id of a sample id given as text or SampleId (same as SQL rai4eo.patch_id_of):
    RapidAI4EO ids by their grid position, any other text by own_patch_id."""
    if isinstance(sample_id, SampleId):
        return sample_id.patch_id()
    if not is_rapidai4eo_id(sample_id):
        return own_patch_id(sample_id)
    return SampleId.parse(sample_id).patch_id()


def sensor_code_of(sensor):
    """The code of a sensor given as a code or as PF-SR / S2-SR; other names: read the
    registry (sensor_codes(conn))."""
    if isinstance(sensor, int):
        return sensor
    try:
        return SENSOR_CODE[sensor]
    except KeyError:
        raise ValueError("sensor %r: pass its code from rai4eo.sensor (sensor_codes(conn))" % (sensor,)) from None


def sensor_codes(conn):
    """{name: code} of every registered sensor (rai4eo.sensor)."""
    return dict(conn.execute("SELECT name, code FROM rai4eo.sensor").fetchall())


def image_id_of(patch_id, sensor, acquired):
    """image_id of (patch, sensor name or code, date) (same as SQL rai4eo.image_id_of)."""
    code = sensor_code_of(sensor)
    days = (acquired - ID_EPOCH).days
    if not 0 <= days <= DAYS_MASK:
        raise ValueError("acquisition date %s outside 2000-01-01 .. 2179-06-06" % acquired)
    if not 0 <= patch_id < PATCH_ID_LIMIT:
        raise ValueError("patch_id %r out of range" % (patch_id,))
    if not 0 <= code <= CODE_MASK:
        raise ValueError("sensor code %r out of range" % (code,))
    return (patch_id << PATCH_SHIFT) | (code << CODE_SHIFT) | days


def image_patch_id(image_id):
    """The patch_id an image_id encodes (rai4eo.image_patch_id)."""
    return image_id >> PATCH_SHIFT


def image_sensor_code(image_id):
    """The sensor code an image_id encodes (rai4eo.image_sensor_code)."""
    return (image_id >> CODE_SHIFT) & CODE_MASK


def image_acquired(image_id):
    """The date an image_id encodes (rai4eo.image_acquired)."""
    return ID_EPOCH + _dt.timedelta(days=image_id & DAYS_MASK)


# ---- dates ------------------------------------------------------------------------

def pf_dates(years=(2018, 2019), step=1):
    """Planet Fusion dates: every 5 days from 2018-01-03, 73 per year, every step-th kept.

    The same indices are kept in every year, so each kept date of year y+1 has its
    partner 365 days earlier (2018-01-03 .. 2018-12-29 pairs with 2019-01-03 .. 2019-12-29).
    """
    if step < 1:
        raise ValueError("date step must be >= 1")
    out = []
    for y in sorted(set(years)):
        if y < PF_FIRST.year:
            raise ValueError("Planet Fusion dates start in 2018")
        for i in range(0, PF_DATES_PER_YEAR, step):
            k = PF_DATES_PER_YEAR * (y - PF_FIRST.year) + i
            out.append(PF_FIRST + _dt.timedelta(days=PF_STEP_DAYS * k))
    return out


def s2_months(years=(2018,)):
    """(year, month) of the monthly Sentinel-2 composites."""
    return [(y, m) for y in sorted(set(years)) for m in range(1, 13)]


def s2_date(year, month):
    """Acquisition date stored for a monthly composite: the first day of its month."""
    return _dt.date(year, month, 1)


def image_name(sensor, acquired):
    """File name of an image: YYYY-MM-DD.tif for PF-SR, YYYY-MM.tif for S2-SR."""
    if sensor == PF:
        return acquired.strftime("%Y-%m-%d.tif")
    if sensor == S2:
        return acquired.strftime("%Y-%m.tif")
    raise ValueError("unknown sensor %r" % (sensor,))


_PF_NAME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\.tif$")
_S2_NAME = re.compile(r"^(\d{4})-(\d{2})\.tif$")


def parse_image_name(sensor, name):
    """Acquisition date from an image file name; ValueError when the name does not fit."""
    try:
        if sensor == PF:
            m = _PF_NAME.match(name)
            if m:
                return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        elif sensor == S2:
            m = _S2_NAME.match(name)
            if m:
                return s2_date(int(m.group(1)), int(m.group(2)))
    except ValueError:
        pass
    raise ValueError("file name %r is not a %s date (%s)"
                     % (name, sensor, "YYYY-MM-DD.tif" if sensor == PF else "YYYY-MM.tif"))


# ---- paths ------------------------------------------------------------------------

def image_dir(root, sid, sensor):
    return os.path.join(root, "imagery", sid.utm, sid.tile, str(sid), sensor)


def image_path(root, sid, sensor, acquired):
    return os.path.join(image_dir(root, sid, sensor), image_name(sensor, acquired))


def label_path(root, sid):
    return os.path.join(root, "labels", sid.utm, sid.tile, "labels_%s.geojson" % sid)


def geometries_path(root):
    return os.path.join(root, "resources", "rapidai4eo_geometries.geojson.gz")


def _subdirs(path):
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir())
    except FileNotFoundError:
        return []


def find_samples(root):
    """Sample ids present under imagery/ or labels/ (sorted), plus names that do not parse.

    Returns (samples, bad) where bad lists (path, reason) for directories or label files
    whose names are not valid sample ids.
    """
    found, bad = set(), []
    img = os.path.join(root, "imagery")
    for utm in _subdirs(img):
        for tile in _subdirs(os.path.join(img, utm)):
            for name in _subdirs(os.path.join(img, utm, tile)):
                try:
                    sid = SampleId.parse(name)
                except ValueError as e:
                    bad.append((os.path.join(img, utm, tile, name), str(e)))
                    continue
                found.add(sid)
    lab = os.path.join(root, "labels")
    for utm in _subdirs(lab):
        for tile in _subdirs(os.path.join(lab, utm)):
            for e in sorted(os.scandir(os.path.join(lab, utm, tile)), key=lambda e: e.name):
                if not (e.name.startswith("labels_") and e.name.endswith(".geojson")):
                    continue
                try:
                    found.add(SampleId.parse(e.name[len("labels_"):-len(".geojson")]))
                except ValueError as ex:
                    bad.append((e.path, str(ex)))
    return sorted(found, key=lambda s: (s.zone, not s.north, s.e, s.n, s.col, s.row)), bad


# ---- CORINE Land Cover --------------------------------------------------------------

CLC_LEVEL1 = {
    1: "Artificial surfaces",
    2: "Agricultural areas",
    3: "Forest and semi-natural areas",
    4: "Wetlands",
    5: "Water bodies",
}

CLC_LEVEL2 = {
    11: "Urban fabric",
    12: "Industrial, commercial and transport units",
    13: "Mine, dump and construction sites",
    14: "Artificial, non-agricultural vegetated areas",
    21: "Arable land",
    22: "Permanent crops",
    23: "Pastures",
    24: "Heterogeneous agricultural areas",
    31: "Forests",
    32: "Scrub and/or herbaceous vegetation associations",
    33: "Open spaces with little or no vegetation",
    41: "Inland wetlands",
    42: "Maritime wetlands",
    51: "Inland waters",
    52: "Marine waters",
}

CLC_LEVEL3 = {
    111: "Continuous urban fabric",
    112: "Discontinuous urban fabric",
    121: "Industrial or commercial units",
    122: "Road and rail networks and associated land",
    123: "Port areas",
    124: "Airports",
    131: "Mineral extraction sites",
    132: "Dump sites",
    133: "Construction sites",
    141: "Green urban areas",
    142: "Sport and leisure facilities",
    211: "Non-irrigated arable land",
    212: "Permanently irrigated land",
    213: "Rice fields",
    221: "Vineyards",
    222: "Fruit trees and berry plantations",
    223: "Olive groves",
    231: "Pastures",
    241: "Annual crops associated with permanent crops",
    242: "Complex cultivation patterns",
    243: "Land principally occupied by agriculture, with significant areas of natural vegetation",
    244: "Agro-forestry areas",
    311: "Broad-leaved forest",
    312: "Coniferous forest",
    313: "Mixed forest",
    321: "Natural grasslands",
    322: "Moors and heathland",
    323: "Sclerophyllous vegetation",
    324: "Transitional woodland-shrub",
    331: "Beaches, dunes, sands",
    332: "Bare rocks",
    333: "Sparsely vegetated areas",
    334: "Burnt areas",
    335: "Glaciers and perpetual snow",
    411: "Inland marshes",
    412: "Peat bogs",
    421: "Salt marshes",
    422: "Salines",
    423: "Intertidal flats",
    511: "Water courses",
    512: "Water bodies",
    521: "Coastal lagoons",
    522: "Estuaries",
    523: "Sea and ocean",
}

CLC_CODES = tuple(sorted(CLC_LEVEL3))
CLASS7 = ("artificial", "agricultural", "forest", "shrub", "bare", "wetlands", "water")


def class7_of(code):
    """The seven poster classes: 1xx artificial, 2xx agricultural, 31x forest, 32x shrub
    (324 transitional woodland-shrub too), 33x bare (335 glaciers too), 4xx wetlands, 5xx water."""
    if code not in CLC_LEVEL3:
        raise ValueError("not a CLC level-3 code: %r" % (code,))
    l1, l2 = code // 100, code // 10
    if l1 == 3:
        return {31: "forest", 32: "shrub", 33: "bare"}[l2]
    return {1: "artificial", 2: "agricultural", 4: "wetlands", 5: "water"}[l1]


def clc_key(code):
    """Property name of a CLC code in a label file: clc_111 ... clc_523."""
    return "clc_%d" % code
