"""A small database with rai4eo for tests that need the whole API: 6 patches of UTM 29N, a
PF-SR image on 4 days of 2019 and on the same days of 2018 (40 x 40 px, 4 bands), a tiny ViT
("tiny"), a tiny classifier ("cls"), two external 2-d models ("ext", "ext3") with hand-made
embeddings (patches 1 and 2 changed in 2019), and a truth table public.truth saying so.

The server comes from the PG* variables.
"""

import os
import sys

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import psycopg                                               # noqa: E402

from rai4eo_tools import safetensors_io                      # noqa: E402
from rai4eo_tools import vit_reference as ref                # noqa: E402


def admin():
    try:
        return psycopg.connect("dbname=postgres", autocommit=True)
    except psycopg.Error as e:
        raise RuntimeError("the rai4eo tests need a PostgreSQL server named by PG* variables: %s" % e)


def make_db(name, ext_schema=None, gis_schema=None, version=None):
    """Create database name with rai4eo (in ext_schema, PostGIS in gis_schema; version: that
    version's install script) and the fixture; returns an autocommit connection."""
    with admin() as a:
        a.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        a.execute('CREATE DATABASE "%s"' % name)
    conn = psycopg.connect("dbname=%s" % name, autocommit=True)
    if gis_schema:
        conn.execute("CREATE SCHEMA %s" % gis_schema)
        conn.execute("CREATE EXTENSION postgis SCHEMA %s" % gis_schema)
        conn.execute("CREATE EXTENSION postgis_raster SCHEMA %s" % gis_schema)
    if ext_schema:
        conn.execute("CREATE SCHEMA %s" % ext_schema)
    conn.execute("CREATE EXTENSION rai4eo%s%s CASCADE" % (" SCHEMA " + ext_schema if ext_schema else "",
                                                          " VERSION '%s'" % version if version else ""))
    x, g = schemas(conn)
    conn.execute("SET search_path = %s, %s" % (x, g))
    state = ref.random_vit_state(embed_dim=16, depth=1, patch_size=20, in_chans=4, img_size=40, seed=3)
    conn.execute("SELECT rai4eo_load_model('tiny', %s::bytea, %s::jsonb)",
                 (safetensors_io.serialize(state), '{"bands": [1, 2, 3, 4], "num_heads": 2, "scale": 0.0001}'))
    import torch
    g_ = torch.Generator().manual_seed(4)
    state["head.weight"] = torch.randn(3, 16, generator=g_)
    state["head.bias"] = torch.randn(3, generator=g_)
    conn.execute("SELECT rai4eo_load_model('cls', %s::bytea, %s::jsonb)",
                 (safetensors_io.serialize(state), '{"bands": [1, 2, 3, 4], "num_heads": 2, "scale": 0.0001, '
                                                    '"classes": ["forest", "water", "urban"]}'))
    conn.execute("SELECT rai4eo_create_external_model('ext', 2), rai4eo_create_external_model('ext3', 2)")
    has_patch_id = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'rai4eo' "
                                "AND table_name = 'embedding' AND column_name = 'patch_id'").fetchone()[0] == 1
    conn.execute("""
        INSERT INTO rai4eo.patch (patch_id, sample_id, geom)
        SELECT rai4eo.patch_id_of(s), s, ST_MakeEnvelope(240000 + c * 600, 480600, 240600 + c * 600, 481200, 32629)
        FROM (SELECT c, format('29N_10E-20N_%s_01', lpad(c::text, 2, '0')) AS s FROM generate_series(1, 6) c) q""")
    # 40 x 40 px, 4 bands; pixel values differ by patch and year so that the tiny ViT sees change.
    conn.execute("CREATE TEMP TABLE d AS SELECT k, DATE '2019-03-01' + 10 * k AS day FROM generate_series(1, 4) k")
    conn.execute("""
        INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
        SELECT rai4eo.image_id_of(p.patch_id, 'PF-SR', x.day), p.patch_id, 'PF-SR', x.day,
               ST_AddBand(ST_MakeEmptyRaster(40, 40, ST_XMin(p.geom), ST_YMax(p.geom), 15, -15, 0, 0, 32629),
                          ARRAY[ROW(1, '16BUI', 1000 + 300 * (p.patch_id % 3) * x.y, 0),
                                ROW(2, '16BUI', 1200, 0), ROW(3, '16BUI', 900 + 500 * x.y, 0),
                                ROW(4, '16BUI', 3000 - 700 * x.y * (p.patch_id % 2), 0)]::addbandarg[])
        FROM rai4eo.patch p, (SELECT day, 1 AS y FROM d UNION ALL SELECT day - 365, 0 FROM d) x""")
    cols = "image_id, model, emb" + (", patch_id" if has_patch_id else "")
    vals = "i.image_id, m.model, e" + (", i.patch_id" if has_patch_id else "")
    conn.execute("""
        INSERT INTO rai4eo.embedding (%s)
        SELECT %s FROM rai4eo.image i
        JOIN (SELECT patch_id, split_part(sample_id, '_', 3)::int AS c FROM rai4eo.patch) p USING (patch_id)
        LEFT JOIN d ON d.day = i.acquired
        CROSS JOIN (VALUES ('ext'), ('ext3')) m(model)
        CROSS JOIN LATERAL (SELECT CASE WHEN extract(year FROM i.acquired) = 2018 THEN '[1,0]'
                   WHEN (m.model = 'ext' AND ((c = 1 AND k <= 2) OR (c = 2 AND k = 1)))
                     OR (m.model = 'ext3' AND c = 1) THEN '[0,1]' ELSE '[1,0]' END::embedding AS e) q""" % (cols, vals))
    conn.execute("CREATE TABLE public.truth AS SELECT patch_id, split_part(sample_id, '_', 3)::int <= 2 AS changed "
                 "FROM rai4eo.patch")
    conn.execute("RESET search_path")
    return conn


def schemas(conn):
    return conn.execute("SELECT (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'rai4eo'), "
                        "(SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'postgis')").fetchone()
