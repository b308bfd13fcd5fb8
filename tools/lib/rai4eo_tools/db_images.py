"""Read training images out of rai4eo.image, decoded by the extension itself.

Pixels always come through `rai4eo_raster_values(rast, bands)` (in-db and out-db
rasters alike, the same decoding inference uses), fetched in binary and turned into
float32 numpy arrays [band][row][column] with NaN where a pixel is nodata.  Nothing
here holds the corpus: callers ask for one patch's images at a time (a server-side
cursor streams them), and PatchStream walks the patches in a seeded random order in
a background thread so that reading overlaps training.

Used by tools/train (all trainers); needs python3-psycopg (psycopg 3) and numpy.
"""

import datetime as dt
import queue
import threading
import time

import numpy as np

# Band counts of the two pre-registered sensors (rai4eo.sensor); others: sensor_band_count.
SENSOR_BANDS = {"PF-SR": 4, "S2-SR": 12}
DAY0 = dt.date(2000, 1, 1)             # the same epoch as rai4eo.image_id_of

_FLOAT4_ARRAY_OID = 1021
RETRIES = 6                            # reconnects per patch read: waits 1+2+...+30 s
_CELL = np.dtype([("len", ">i4"), ("val", ">f4")])

# Nodata comes back as NULL; NaN instead keeps every element 8 bytes long on the
# wire, so the whole array decodes with one numpy view.
_VALUES = "array_replace(rai4eo_raster_values(rast, %s::int[]), NULL, 'NaN'::real)"


class DatabaseError(Exception):
    """The database cannot serve training images (message says why)."""


def decode_float4_array(data):
    """Decode PostgreSQL's binary real[] into a float32 array of its shape (NULL -> NaN)."""
    buf = bytes(data)
    if len(buf) < 12:
        raise ValueError("binary array shorter than its header")
    ndim, has_null, _oid = (int(v) for v in np.frombuffer(buf, ">i4", 3))
    if ndim == 0:
        return np.zeros(0, np.float32)
    dims = [int(v) for v in np.frombuffer(buf, ">i4", 2 * ndim, 12)[0::2]]
    off = 12 + 8 * ndim
    n = int(np.prod(dims))
    if not has_null:
        cells = np.frombuffer(buf, _CELL, n, off)
        return cells["val"].astype(np.float32).reshape(dims)
    # Slow path, only for arrays that still hold NULLs.
    out = np.empty(n, np.float32)
    words = np.frombuffer(buf, ">i4", (len(buf) - off) // 4, off)
    floats = words.view(">f4")
    w = 0
    for i in range(n):
        if words[w] < 0:
            out[i] = np.nan
            w += 1
        else:
            out[i] = floats[w + 1]
            w += 2
    return out.reshape(dims)


def connect(dsn=None):
    """Open a connection (libpq dsn, default PG* variables) that reads real[] as numpy."""
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    class _Float4ArrayLoader(Loader):
        format = Format.BINARY

        def load(self, data):
            return decode_float4_array(data)

    conn = psycopg.connect(dsn or "", autocommit=True)
    conn.adapters.register_loader(_FLOAT4_ARRAY_OID, _Float4ArrayLoader)
    row = conn.execute("SELECT to_regclass('rai4eo.image') IS NOT NULL, "
                       "to_regprocedure('rai4eo_raster_values(raster, integer[])') IS NOT NULL").fetchone()
    if not row[0] or not row[1]:
        conn.close()
        raise DatabaseError("rai4eo is not installed in this database (CREATE EXTENSION rai4eo CASCADE)")
    return conn


def day_number(d):
    """Days since 2000-01-01 (rai4eo.image_id_of's epoch)."""
    return (d - DAY0).days


def patch_ids(conn, sensor, page=100000):
    """Sorted ids of the patches that have images of the sensor, read in keyset pages."""
    out = []
    last = -1
    while True:
        rows = conn.execute(
            "SELECT DISTINCT patch_id FROM rai4eo.image WHERE sensor = %s AND patch_id > %s "
            "ORDER BY patch_id LIMIT %s", (sensor, last, page)).fetchall()
        out.extend(r[0] for r in rows)
        if len(rows) < page:
            break
        last = rows[-1][0]
    return np.array(out, dtype=np.int64)


def sensor_band_count(conn, sensor):
    """Number of bands the registry (rai4eo.sensor) gives the sensor (None when not registered)."""
    row = conn.execute("SELECT cardinality(band_names) FROM rai4eo.sensor WHERE name = %s", (sensor,)).fetchone()
    return None if row is None else row[0]


def band_count(conn, sensor):
    """Number of bands of one image of the sensor (None when there is none)."""
    row = conn.execute("SELECT ST_NumBands(rast) FROM rai4eo.image WHERE sensor = %s LIMIT 1",
                       (sensor,)).fetchone()
    return None if row is None else row[0]


def image_size(conn, sensor):
    """(width, height) of one image of the sensor (None when there is none)."""
    row = conn.execute("SELECT ST_Width(rast), ST_Height(rast) FROM rai4eo.image WHERE sensor = %s LIMIT 1",
                       (sensor,)).fetchone()
    return None if row is None else (row[0], row[1])


def _stream_rows(conn, sql, params, batch=16):
    """Yield rows of a query through a server-side cursor (binary results)."""
    with conn.transaction():
        with conn.cursor(name="rai4eo_train_images", binary=True) as cur:
            cur.itersize = batch
            cur.execute(sql, params)
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                yield from rows


def patch_images(conn, patch_id, sensor, bands):
    """All images of one patch and sensor, oldest first: (days int64[n], [C x H x W float32]).

    days are day numbers (day_number); pixels are raw values with NaN for nodata.
    """
    days, images = [], []
    sql = ("SELECT acquired, " + _VALUES + " FROM rai4eo.image "
           "WHERE patch_id = %s AND sensor = %s ORDER BY acquired")
    for acquired, values in _stream_rows(conn, sql, (list(bands), patch_id, sensor)):
        if values.ndim != 3 or values.shape[0] != len(bands):
            raise DatabaseError("image of patch %d on %s decoded to shape %s, not %d bands"
                                % (patch_id, acquired, values.shape, len(bands)))
        days.append(day_number(acquired))
        images.append(values)
    return np.array(days, dtype=np.int64), images


def images_by_id(conn, image_ids, bands):
    """Yield (image_id, C x H x W float32) for the given images, in image_id order."""
    sql = ("SELECT image_id, " + _VALUES + " FROM rai4eo.image "
           "WHERE image_id = ANY(%s) ORDER BY image_id")
    yield from _stream_rows(conn, sql, (list(bands), [int(i) for i in image_ids]))


def sample_image_ids(conn, sensor, pids, count, rng):
    """Pick `count` images of the sensor spread over the patches (seeded by rng).

    Patches are visited in a random order, one image each, round after round,
    so a sample smaller than the corpus touches as many patches as it can.
    """
    if count <= 0 or len(pids) == 0:
        return []
    chosen = rng.permutation(pids)[:count]
    rows = conn.execute("SELECT patch_id, image_id FROM rai4eo.image WHERE sensor = %s "
                        "AND patch_id = ANY(%s) ORDER BY patch_id, image_id",
                        (sensor, [int(p) for p in chosen])).fetchall()
    by_patch = {}
    for pid, iid in rows:
        by_patch.setdefault(pid, []).append(iid)
    picked = []
    rounds = -(-count // len(chosen))
    for _ in range(rounds):
        for pid in chosen:
            left = [i for i in by_patch.get(int(pid), []) if i not in picked]
            if left and len(picked) < count:
                picked.append(left[int(rng.integers(len(left)))])
    return picked


def band_statistics(conn, sensor, bands, scale, pids, count, rng):
    """Per-band mean and standard deviation of raw * scale over a sample of images.

    Nodata (NaN) pixels are left out.  Images are combined with Chan's parallel
    update in float64, so the result does not depend on how many were read.
    Returns (mean list, std list, number of images read).
    """
    ids = sample_image_ids(conn, sensor, pids, count, rng)
    C = len(bands)
    n = np.zeros(C)
    mean = np.zeros(C)
    m2 = np.zeros(C)
    read = 0
    for _iid, values in images_by_id(conn, ids, bands):
        x = values.reshape(C, -1).astype(np.float64) * scale
        ok = np.isfinite(x)
        nb = ok.sum(axis=1).astype(np.float64)
        xs = np.where(ok, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mb = np.where(nb > 0, xs.sum(axis=1) / np.maximum(nb, 1), 0.0)
        m2b = (np.where(ok, x - mb[:, None], 0.0) ** 2).sum(axis=1)
        tot = n + nb
        delta = mb - mean
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(tot > 0, nb / np.maximum(tot, 1), 0.0)
        mean = mean + delta * frac
        m2 = m2 + m2b + delta ** 2 * n * frac
        n = tot
        read += 1
    std = np.sqrt(np.where(n > 1, m2 / np.maximum(n - 1, 1), 0.0))
    return [float(v) for v in mean], [float(v) for v in std], read


class PatchStream:
    """The sensor's patches in a seeded random order, epoch after epoch, read ahead.

    Epoch e visits every patch once in the order permutation(seed, e); the state
    (epoch, position) names the next patch to hand out, so a stream rebuilt from a
    saved state continues exactly where the old one stopped, whatever the reader
    thread had already fetched.  The reader has its own connection.
    """

    def __init__(self, dsn, sensor, bands, pids, seed, epoch=0, pos=0, ahead=2):
        if len(pids) == 0:
            raise DatabaseError("no patch has %s images" % sensor)
        self.sensor, self.bands = sensor, list(bands)
        self.pids = np.asarray(pids, dtype=np.int64)
        self.seed = int(seed)
        self.epoch, self.pos = int(epoch), int(pos)
        self._queue = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self._dsn = dsn
        self._thread = threading.Thread(target=self._read, args=(self.epoch, self.pos),
                                        name="rai4eo-patch-reader", daemon=True)
        self._thread.start()

    def order(self, epoch):
        """Patch ids in the order epoch `epoch` visits them."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.pids)

    def _fetch(self, conn, pid):
        """One patch's images; a lost connection (a server restart) is reopened and the
        read retried a few times, so a long training survives it."""
        import psycopg
        for attempt in range(RETRIES + 1):
            try:
                if conn is None or conn.closed:
                    conn = connect(self._dsn)
                return conn, patch_images(conn, pid, self.sensor, self.bands)
            except psycopg.OperationalError:
                if attempt == RETRIES or self._stop.is_set():
                    raise
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(min(2 ** attempt, 30))

    def _read(self, epoch, pos):
        conn = None
        try:
            order = self.order(epoch)
            while not self._stop.is_set():
                if pos >= len(order):
                    epoch, pos = epoch + 1, 0
                    order = self.order(epoch)
                pid = int(order[pos])
                conn, (days, images) = self._fetch(conn, pid)
                item = (epoch, pos, pid, days, images)
                pos += 1
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except Exception as e:                        # noqa: BLE001 - handed to the consumer
            self._queue.put(e)
        finally:
            if conn is not None:
                conn.close()

    def next(self):
        """The next patch: (patch_id, days, images); advances the state."""
        item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        epoch, pos, pid, days, images = item
        self.epoch, self.pos = epoch, pos + 1
        if self.pos >= len(self.pids):
            self.epoch, self.pos = self.epoch + 1, 0
        return pid, days, images

    def state(self):
        """(epoch, position) of the next patch next() returns."""
        return self.epoch, self.pos

    def close(self):
        """Stop the reader thread."""
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)
