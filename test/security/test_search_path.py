"""The SQL layer under a hostile search_path (docs/sql-conventions.md).

An unprivileged role "mallory" may CREATE in schema public (PostgreSQL 14's default) and owns a
schema "evil" that a superuser's search_path lists first.  From the catalog (not from a hand-made
list) the test finds every function, aggregate and operator name that the extension's SQL and
PL/pgSQL routines mention, and plants more specific overloads of each (concrete types for
polymorphic arguments, every argument position in turn given each of a set of common types,
every operator symbol for every pair of those types).  Each planted routine raises
SQLSTATE HJ001.  Then the superuser runs the whole API with search_path = evil, public and must
get exactly what a clean database gives.

Two controls prove that the plants bite: an unpinned function written without qualification
is hijacked by them.  A coverage check (track_functions) proves the calls reached every pinned
routine of the extension, and every unpinned one (inlined helpers, the committing procedure) is
called directly by name, so that it is parsed under the hostile path.

The same API also runs with an empty search_path, and in a database where PostGIS lives in
schema gis and rai4eo in schema r4.
"""

import os
import re
import sys
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))

import psycopg                                               # noqa: E402

from r4_fixture import admin, make_db, schemas               # noqa: E402

# Argument types the plants use (format_type spelling); {x} is the extension's schema, {g} PostGIS's.
SCALARS = ["smallint", "integer", "bigint", "real", "double precision", "numeric", "text", "boolean",
           "date", "timestamp with time zone", "interval", "jsonb", "bytea", "name", "oid", "regclass",
           "{x}.embedding", "{g}.raster", "{g}.geometry"]
ARRAYS = ["integer[]", "bigint[]", "real[]", "double precision[]", "text[]", "boolean[]",
          "{x}.embedding[]", "{g}.raster[]"]
TYPES = SCALARS + ARRAYS
POLY = {"anyelement", "anynonarray", "anycompatible", "anycompatiblenonarray", "anyenum", "anyrange",
        "anycompatiblerange", "anymultirange", "anycompatiblemultirange", "\"any\""}
POLY_ARRAY = {"anyarray", "anycompatiblearray"}
# Operators the parser looks up by name for syntax: BETWEEN, IN, CASE x WHEN, LIKE, ||, IS DISTINCT FROM.
SYNTAX_OPERATORS = {"=", "<>", "<", ">", "<=", ">=", "~~", "~~*", "||"}



def _temporal_hex():
    """A tiny GRU with attention on the fixture's 2-d "ext" embeddings, as safetensors hex."""
    from rai4eo_tools import safetensors_io
    from rai4eo_tools import temporal_reference
    m = temporal_reference.random_model("gru", 2, 3, 1, 2, attention=True, seed=1)
    return safetensors_io.serialize(m.export_state(), {"arch": "gru", "classes": '["stable", "changed"]'}).hex()


TEMPORAL_HEX = _temporal_hex()
AOI = "{g}.ST_MakeEnvelope(240000::double precision, 480000::double precision, 244200::double precision, " \
      "482400::double precision, 32629)"

# The API as a superuser would call it: every name qualified and every argument exactly typed, so
# that only the extension's own bodies are on trial.  Run in order; later calls see earlier effects.
CALLS = [
    ("patch_id_of", "SELECT rai4eo.patch_id_of('29N_10E-20N_01_01'::pg_catalog.text)"),
    ("sample_id_of", "SELECT rai4eo.sample_id_of(1234567::bigint)"),
    ("image_id_of", "SELECT rai4eo.image_id_of(1234567::bigint, 'S2-SR'::pg_catalog.text, '2019-05-01'::pg_catalog.date)"),
    ("image_id_of code", "SELECT rai4eo.image_id_of(1234567::bigint, 7, '2019-05-01'::pg_catalog.date)"),
    ("own patch id", "SELECT rai4eo.patch_id_of('tile_12_34'::pg_catalog.text)"),
    ("image_patch_id", "SELECT rai4eo.image_patch_id(20712916189020160::bigint)"),
    ("image_sensor_code", "SELECT rai4eo.image_sensor_code(20712916189020160::bigint)"),
    ("image_acquired", "SELECT rai4eo.image_acquired(20712916189020160::bigint)"),
    ("image_id_base", "SELECT rai4eo.image_id_base(1234567::bigint, 7)"),
    ("sensor code", "SELECT rai4eo.sensor_code('S2-SR'::pg_catalog.text), rai4eo.sensor_of(1)"),
    ("register sensor", "SELECT {x}.rai4eo_register_sensor('SP-TEST'::pg_catalog.text, '{{a,b}}'::pg_catalog.text[], 5::real, "
                        "'{{500,600}}'::real[], 10::real, 0.5::double precision, 1::double precision, 'x'::pg_catalog.text, 9)"),
    ("external model", "SELECT {x}.rai4eo_create_external_model('ext2'::pg_catalog.text, 3, '{{}}'::pg_catalog.jsonb, false)"),
    ("drop model", "SELECT {x}.rai4eo_drop_model('ext2'::pg_catalog.text, false)"),
    ("models view", "SELECT name, arch, output_dims FROM rai4eo.models ORDER BY name"),
    ("refresh", "CALL {x}.rai4eo_refresh_embeddings('tiny'::pg_catalog.text)"),
    # a Citus worker's round, here on the tables themselves (the refresh above left nothing to do)
    ("refresh round", "SELECT rai4eo.refresh_shards('[{{\"image\": \"rai4eo.image\", \"embedding\": \"rai4eo.embedding\", "
                      "\"after\": -1, \"ord\": 1}}]'::pg_catalog.jsonb, 'tiny'::pg_catalog.text, NULL::pg_catalog.text, 4, "
                      "2::bigint, '{{}}'::bigint[], false, 1::double precision)::pg_catalog.text"),
    ("embeddings", "SELECT image_id, model, emb::pg_catalog.text FROM rai4eo.embedding ORDER BY image_id, model"),
    ("embed", "SELECT {x}.rai4eo_embed(i.rast, 'tiny'::pg_catalog.text)::pg_catalog.text FROM rai4eo.image i "
              "ORDER BY i.image_id LIMIT 2"),
    ("classify labels", "SELECT * FROM {x}.rai4eo_classify_labels((SELECT i.rast FROM rai4eo.image i ORDER BY i.image_id "
                        "LIMIT 1), 'cls'::pg_catalog.text)"),
    ("raster values", "SELECT pg_catalog.cardinality({x}.rai4eo_raster_values(i.rast, NULL::integer[])) FROM rai4eo.image i "
                      "ORDER BY i.image_id LIMIT 1"),
    ("patch_srids", "SELECT * FROM rai4eo.patch_srids()"),
    ("aoi_patches", "SELECT patch_id FROM rai4eo.aoi_patches(" + AOI + ", NULL::integer) ORDER BY 1"),
    ("daily_distances", "SELECT * FROM rai4eo.daily_distances(rai4eo.patch_id_of('29N_10E-20N_01_01'::pg_catalog.text), "
                        "'ext'::pg_catalog.text, 'PF-SR'::pg_catalog.text, '2019-01-01'::pg_catalog.date, "
                        "'2019-12-31'::pg_catalog.date, 2) ORDER BY 1"),
    ("patch_change_stats", "SELECT * FROM rai4eo.patch_change_stats(" + AOI + ", NULL::integer, '2019-01-01'::pg_catalog.date, "
                           "'2019-12-31'::pg_catalog.date, 'ext'::pg_catalog.text, 0.5::double precision, "
                           "'PF-SR'::pg_catalog.text, 2) ORDER BY 1"),
    ("daily_change", "SELECT * FROM {x}.daily_change(" + AOI + ", '2019-03-11'::pg_catalog.date, 'ext'::pg_catalog.text, "
                     "0.5::double precision) ORDER BY 1"),
    ("yearly_change", "SELECT * FROM {x}.yearly_change(" + AOI + ", 2019, 'ext'::pg_catalog.text, 0.5::double precision) "
                      "ORDER BY 1"),
    ("yearly_change tiny", "SELECT * FROM {x}.yearly_change(" + AOI + ", 2019, 'tiny'::pg_catalog.text, "
                           "0.01::double precision) ORDER BY 1"),
    ("daily_heatmap", "SELECT {x}.daily_heatmap(" + AOI + ", '2019-03-11'::pg_catalog.date, 'ext'::pg_catalog.text, "
                      "0.5::double precision)::pg_catalog.text"),
    ("yearly_heatmap", "SELECT {x}.yearly_heatmap(" + AOI + ", 2019, 'ext'::pg_catalog.text, 0.5::double precision)"
                       "::pg_catalog.text"),
    ("heatmap_png", "SELECT pg_catalog.md5({x}.heatmap_png({x}.yearly_heatmap(" + AOI + ", 2019, 'ext'::pg_catalog.text, "
                    "0.5::double precision)))"),
    ("heatmap legend", "SELECT pg_catalog.md5({x}.heatmap_png({x}.yearly_heatmap(" + AOI + ", 2019, 'ext'::pg_catalog.text, "
                       "0.5::double precision), 1, 0::double precision, 1::double precision, 'viridis'::pg_catalog.text, "
                       "4, true))"),
    ("quicklook", "SELECT pg_catalog.md5({x}.rai4eo_quicklook(i.rast)) FROM rai4eo.image i ORDER BY i.image_id LIMIT 1"),
    ("world aoi", "SELECT patch_id FROM rai4eo.aoi_patches({g}.ST_MakeEnvelope(-180::double precision, "
                  "-90::double precision, 180::double precision, 90::double precision, 4326), NULL::integer) ORDER BY 1"),
    ("aoi in srid", "SELECT {g}.ST_AsText(rai4eo.aoi_in_srid({g}.ST_MakeEnvelope(-10::double precision, "
                    "40::double precision, -9::double precision, 41::double precision, 4326), 32629))"),
    ("calibrate", "SELECT * FROM {x}.rai4eo_calibrate_threshold('ext'::pg_catalog.text, 2019, 'public.truth'::pg_catalog.regclass)"),
    ("threshold", "SELECT rai4eo.change_threshold('ext'::pg_catalog.text, NULL::double precision)"),
    # The review calls below must not depend on the calibration above having stored a threshold.
    ("fallback threshold", "SELECT pg_catalog.set_config('rai4eo.change_threshold'::pg_catalog.text, "
                           "'0.5'::pg_catalog.text, false)"),
    ("review", "SELECT patch_id, year, model, verdict, reviewer, note FROM {x}.rai4eo_review("
               "rai4eo.patch_id_of('29N_10E-20N_01_01'::pg_catalog.text), 2019, 'accept'::pg_catalog.text, "
               "'ext'::pg_catalog.text, NULL::pg_catalog.text, 'ana'::pg_catalog.text)"),
    ("review 2", "SELECT patch_id, verdict, reviewer, note FROM {x}.rai4eo_review("
                 "rai4eo.patch_id_of('29N_10E-20N_02_01'::pg_catalog.text), 2019, 'reject'::pg_catalog.text, "
                 "NULL::pg_catalog.text, 'shadow'::pg_catalog.text, NULL::pg_catalog.text)"),
    ("review truth", "SELECT patch_id, year, changed, verdict, model, reviewer FROM rai4eo.review_truth ORDER BY 1, 2"),
    ("calibrate on reviews", "SELECT * FROM {x}.rai4eo_calibrate_threshold('ext'::pg_catalog.text, 2019, "
                             "'rai4eo.review_truth'::pg_catalog.regclass, store => false)"),
    ("review candidates", "SELECT patch_id, sample_id, score, changed, onset, change_rate, days_compared, verdict, reviewer "
                          "FROM {x}.rai4eo_review_candidates(" + AOI + ", 2019, 'ext'::pg_catalog.text, "
                          "'PF-SR'::pg_catalog.text, 2, NULL::integer)"),
    ("change tile", "SELECT pg_catalog.md5({x}.rai4eo_change_tile(10, 479, 499, 2019, 'ext'::pg_catalog.text, "
                    "'PF-SR'::pg_catalog.text, 2, 20000))"),
    ("qgis view", "SELECT * FROM rai4eo.patch_change ORDER BY id"),
    ("ensemble change", "SELECT * FROM {x}.ensemble_yearly_change(" + AOI + ", 2019, ARRAY['ext', 'ext3']::pg_catalog.text[], "
                        "NULL::double precision[], ARRAY[0.5, 0.5]::double precision[]) ORDER BY 1"),
    ("ensemble heatmap", "SELECT {x}.ensemble_yearly_heatmap(" + AOI + ", 2019, ARRAY['ext', 'ext3']::pg_catalog.text[], "
                         "NULL::double precision[], ARRAY[0.5, 0.5]::double precision[])::pg_catalog.text"),
    ("ensemble calibrate", "SELECT * FROM {x}.rai4eo_calibrate_ensemble(ARRAY['ext', 'ext3']::pg_catalog.text[], 2019, "
                           "'public.truth'::pg_catalog.regclass, NULL::double precision[], ARRAY[0.5, 0.5]::double precision[])"),
    ("temporal load", "SELECT {x}.rai4eo_load_model('seq'::pg_catalog.text, pg_catalog.decode('" + TEMPORAL_HEX
                      + "'::pg_catalog.text, 'hex'::pg_catalog.text), '{{\"input_model\": \"ext\"}}'::pg_catalog.jsonb, true)"),
    ("temporal sequence", "SELECT {x}.rai4eo_classify_sequence(ARRAY['[1,0]', '[0,1]']::{x}.embedding[], 'seq'::pg_catalog.text)"),
    ("temporal series", "SELECT {x}.rai4eo_classify_series(rai4eo.patch_id_of('29N_10E-20N_01_01'::pg_catalog.text), "
                        "'seq'::pg_catalog.text, '2019-01-01'::pg_catalog.date, '2019-12-31'::pg_catalog.date)"),
    ("temporal labels", "SELECT * FROM {x}.rai4eo_classify_series_labels(rai4eo.patch_id_of('29N_10E-20N_01_01'::pg_catalog.text), "
                        "'seq'::pg_catalog.text, '2018-01-01'::pg_catalog.date, '2018-12-31'::pg_catalog.date)"),
    ("class transitions", "SELECT * FROM {x}.class_transitions(" + AOI + ", 2019, 'seq'::pg_catalog.text, 'ext'::pg_catalog.text, "
                          "0.5::double precision) ORDER BY 1"),
    ("class transitions shift", "SELECT * FROM {x}.class_transitions(" + AOI + ", 2019, 'seq'::pg_catalog.text, "
                                "'ext'::pg_catalog.text, 0.5::double precision, 'PF-SR'::pg_catalog.text, 2, NULL::integer, "
                                "true, 'shift'::pg_catalog.text) ORDER BY 1"),
    ("transition threshold", "SET rai4eo.change_threshold = '0.5'"),
    ("transition view", "SELECT id, from_class, to_class, onset FROM rai4eo.class_transition ORDER BY id"),
    ("transition reset", "RESET rai4eo.change_threshold"),
    ("daily_pairs", "SELECT acquired, distance, emb::pg_catalog.text FROM rai4eo.daily_pairs("
                    "rai4eo.patch_id_of('29N_10E-20N_01_01'::pg_catalog.text), 'ext'::pg_catalog.text, "
                    "'PF-SR'::pg_catalog.text, '2019-01-01'::pg_catalog.date, '2019-12-31'::pg_catalog.date, 2) ORDER BY 1"),
    ("cluster", "SELECT state, members FROM {x}.rai4eo_cluster('ext'::pg_catalog.text, 2) ORDER BY 1"),
    ("model states", "SELECT rai4eo.model_states('ext'::pg_catalog.text)::pg_catalog.text"),
    ("patch_series_of", "SELECT * FROM rai4eo.patch_series_of(ARRAY[rai4eo.patch_id_of('29N_10E-20N_01_01'::pg_catalog.text)], "
                     "'ext'::pg_catalog.text, 'PF-SR'::pg_catalog.text, '2019-01-01'::pg_catalog.date, "
                     "'2019-12-31'::pg_catalog.date, 2, 0.5::double precision, "
                     "rai4eo.model_states('ext'::pg_catalog.text), true)"),
    ("calibrate decision", "SELECT method, threshold, k, cut, cv_f1, fit_f1, chosen FROM {x}.rai4eo_calibrate("
                           "'ext'::pg_catalog.text, 2019, 'public.truth'::pg_catalog.regclass) ORDER BY 1"),
    ("yearly decision", "SELECT patch_id, score, changed, onset FROM {x}.yearly_change(" + AOI + ", 2019, "
                        "'ext'::pg_catalog.text) ORDER BY 1"),
    ("patch input", "INSERT INTO rai4eo.patch_input (sample_id, geom) VALUES ('29N_10E-20N_09_01'::pg_catalog.text, "
                    "{g}.ST_MakeEnvelope(245400::double precision, 480600::double precision, 246000::double precision, "
                    "481200::double precision, 32629)) RETURNING patch_id"),
    ("image input", "INSERT INTO rai4eo.image_input (sample_id, sensor, acquired, rast) VALUES ('29N_10E-20N_09_01'::pg_catalog.text, "
                    "'PF-SR'::pg_catalog.text, '2019-03-11'::pg_catalog.date, {g}.ST_MakeEmptyRaster(40, 40, "
                    "245400::double precision, 481200::double precision, 15::double precision, -15::double precision, "
                    "0::double precision, 0::double precision, 32629)) RETURNING image_id, patch_id"),
    ("own patch input", "INSERT INTO rai4eo.patch_input (sample_id, geom) VALUES ('field-0042'::pg_catalog.text, "
                        "{g}.ST_MakeEnvelope(0::double precision, 0::double precision, 100::double precision, "
                        "100::double precision, 3035)) RETURNING patch_id"),
    ("own image input", "INSERT INTO rai4eo.image_input (sample_id, sensor, acquired, rast) VALUES ('field-0042'::pg_catalog.text, "
                        "'SP-TEST'::pg_catalog.text, '2019-03-11'::pg_catalog.date, {g}.ST_MakeEmptyRaster(20, 20, "
                        "0::double precision, 100::double precision, 5::double precision, -5::double precision, "
                        "0::double precision, 0::double precision, 3035)) RETURNING image_id, patch_id, sample_id"),
    ("distribute", "SELECT * FROM {x}.rai4eo_distribute()"),
    # so that the list can run again on the same database
    ("input cleanup", "DELETE FROM rai4eo.patch WHERE sample_id OPERATOR(pg_catalog.=) ANY ('{{29N_10E-20N_09_01,field-0042}}'::pg_catalog.text[])"),
    ("sensor cleanup", "DELETE FROM rai4eo.sensor WHERE name OPERATOR(pg_catalog.=) 'SP-TEST'::pg_catalog.text"),
    ("model stored", "SELECT name, config::pg_catalog.text FROM rai4eo.model ORDER BY name"),
    # last, so that running the list again starts from the same models
    ("temporal drop", "SELECT {x}.rai4eo_drop_model('seq'::pg_catalog.text, false)"),
]

# Routines reached only at install time, or only with Citus (test/citus runs rai4eo_distribute; here
# it fails at once, before the statistics count a call, which its entry in CALLS still checks).
NOT_CALLED = {"bind_postgis_schema", "rai4eo_distribute"}


def run_calls(conn, x, g):
    """Run CALLS; a result is the rows as text, or the error's SQLSTATE and message."""
    out = {}
    conn.execute("SET rai4eo.default_model = 'ext'")
    for name, sql in CALLS:
        try:
            cur = conn.execute(sql.format(x=x, g=g))
            out[name] = repr(cur.fetchall()) if cur.description else "ok"
        except psycopg.Error as e:
            out[name] = "ERROR %s: %s" % (e.sqlstate, e.diag.message_primary)
    return out


def extension_routines(conn):
    """(name, language, pinned, source) of the extension's SQL and PL/pgSQL routines."""
    return conn.execute("""
        SELECT p.proname, l.lanname, p.proconfig IS NOT NULL AND
               EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\\_path=%%'), p.prosrc, p.oid
        FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid JOIN pg_language l ON l.oid = p.prolang
        WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
          AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'rai4eo')
          AND l.lanname IN ('sql', 'plpgsql')""").fetchall()


def strip_comments_and_strings(src):
    src = re.sub(r"--[^\n]*", " ", src)
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    return re.sub(r"'(?:[^']|'')*'", "''", src)


def referenced_names(conn):
    """Function names and operator symbols the extension's bodies mention and the catalog knows."""
    words, symbols = set(), set(SYNTAX_OPERATORS)
    for _, _, _, src, _ in extension_routines(conn):
        body = strip_comments_and_strings(src)
        words |= {w.lower() for w in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", body)}
        symbols |= set(re.findall(r"[+\-*/<>=~!@#%^&|`?]+", body))
    funcs = {r[0] for r in conn.execute("SELECT DISTINCT proname FROM pg_proc WHERE proname = ANY(%s)", (sorted(words),))}
    ops = {r[0] for r in conn.execute("SELECT DISTINCT oprname FROM pg_operator WHERE oprname = ANY(%s)", (sorted(symbols),))}
    return funcs, ops


def plant(conn, x, g, funcs, ops):
    """As mallory: plant overloads in evil (first on the victim's path) and in public. Returns counts."""
    types = [t.format(x=x, g=g) for t in TYPES]
    scalars = [t.format(x=x, g=g) for t in SCALARS]
    arrays = [t.format(x=x, g=g) for t in ARRAYS]
    sigs = conn.execute("""
        SELECT p.proname, p.pronamespace::regnamespace::text, p.prokind,
               ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t),
               format_type(p.prorettype, NULL), p.proretset, p.provariadic <> 0
        FROM pg_proc p
        WHERE p.proname = ANY(%s) AND p.pronamespace::regnamespace::text IN ('pg_catalog', %s, %s)
          AND p.pronargs <= 4""", (sorted(funcs), x, g)).fetchall()
    planted = {"function": 0, "aggregate": 0, "operator": 0}
    done = set()
    stmts = []

    def concrete(t):
        return t not in POLY and t not in POLY_ARRAY and t not in ("internal", "cstring", "record", "trigger", "void")

    for name, schema, kind, args, ret, retset, variadic in sigs:
        if kind not in ("f", "a") or variadic or not all(concrete(a) or a in POLY or a in POLY_ARRAY for a in args):
            continue
        variants = set()
        if any(a in POLY or a in POLY_ARRAY for a in args):
            for s, arr in zip(scalars, [a + "[]" if not a.endswith("[]") else None for a in scalars]):
                if arr is None:
                    continue
                variants.add(tuple(s if a in POLY else arr if a in POLY_ARRAY else a for a in args))
        for i in range(len(args)):
            for t in types:
                v = list(args)
                v[i] = t
                if all(concrete(a) for a in v):
                    variants.add(tuple(v))
        ret_t = ret if concrete(ret) and ret != "void" else "text"
        # Overloads in pg_catalog can only be outdone from a schema on the path: evil.  Those of our
        # schema and PostGIS's can also be outdone next to them: public, where mallory may CREATE.
        targets = ["evil"] + (["public"] if schema != "pg_catalog" else [])
        for v in variants:
            for tgt in targets:
                key = (tgt, name, v, kind)
                if key in done:
                    continue
                done.add(key)
                argl = ", ".join(v)
                if kind == "a":
                    if len(v) != 1:
                        continue
                    stmts.append("CREATE AGGREGATE %s.%s(%s) (SFUNC = evil.hj_sfunc, STYPE = %s)"
                                 % (tgt, quote(name), argl, v[0]))
                    planted["aggregate"] += 1
                else:
                    stmts.append("CREATE FUNCTION %s.%s(%s) RETURNS %s%s LANGUAGE plpgsql AS "
                                 "$b$BEGIN RAISE EXCEPTION 'hijacked: %s' USING ERRCODE = 'HJ001'; END$b$"
                                 % (tgt, quote(name), argl, "SETOF " if retset else "", ret_t, name))
                    planted["function"] += 1
    # Aggregate transition functions, one per type, polymorphic-free.
    pre = ["CREATE FUNCTION evil.hj_sfunc(%s, %s) RETURNS %s LANGUAGE plpgsql AS "
           "$b$BEGIN RAISE EXCEPTION 'hijacked: aggregate' USING ERRCODE = 'HJ001'; END$b$" % (t, t, t) for t in types]
    for i, l_ in enumerate(types):
        pre.append("CREATE FUNCTION evil.hj_op%d(%s) RETURNS boolean LANGUAGE plpgsql AS "
                   "$b$BEGIN RAISE EXCEPTION 'hijacked: prefix operator' USING ERRCODE = 'HJ001'; END$b$" % (i, l_))
        for j, r in enumerate(types):
            pre.append("CREATE FUNCTION evil.hj_op%d_%d(%s, %s) RETURNS boolean LANGUAGE plpgsql AS "
                       "$b$BEGIN RAISE EXCEPTION 'hijacked: operator' USING ERRCODE = 'HJ001'; END$b$" % (i, j, l_, r))
    for op in sorted(ops):
        for tgt in ("evil", "public"):
            for i, l_ in enumerate(types):
                stmts.append("CREATE OPERATOR %s.%s (RIGHTARG = %s, FUNCTION = evil.hj_op%d)" % (tgt, op, l_, i))
                planted["operator"] += 1
                for j, r in enumerate(types):
                    stmts.append("CREATE OPERATOR %s.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.hj_op%d_%d)"
                                 % (tgt, op, l_, r, i, j))
                    planted["operator"] += 1
    with psycopg.connect(conn.info.dsn + " user=mallory") as m:
        m.execute("SET check_function_bodies = off")
        for s in pre:
            m.execute(s)
        for s in stmts:
            m.execute("SAVEPOINT p")
            try:
                m.execute(s)
            except psycopg.Error:
                # An identical signature already exists there (or a shell type clash): nothing to plant.
                m.execute("ROLLBACK TO SAVEPOINT p")
            m.execute("RELEASE SAVEPOINT p")
        m.commit()
    return planted


def quote(name):
    return '"%s"' % name.replace('"', '""')


class SearchPathTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        pid = os.getpid()
        cls.names = ["r4_sp_clean_%d" % pid, "r4_sp_hostile_%d" % pid, "r4_sp_schema_%d" % pid]
        cls.clean = make_db(cls.names[0])
        cls.cx, cls.cg = schemas(cls.clean)
        cls.expected = run_calls(cls.clean, cls.cx, cls.cg)

        cls.hostile = make_db(cls.names[1])
        x, g = schemas(cls.hostile)
        with admin() as a:
            a.execute("DROP ROLE IF EXISTS mallory")
            a.execute("CREATE ROLE mallory LOGIN")
        cls.hostile.execute("GRANT CREATE ON SCHEMA public TO mallory")
        cls.hostile.execute("CREATE SCHEMA evil AUTHORIZATION mallory")
        cls.funcs, cls.ops = referenced_names(cls.hostile)
        cls.planted = plant(cls.hostile, x, g, cls.funcs, cls.ops)
        cls.hostile.execute("SET search_path = evil, public")
        cls.hostile.execute("SET track_functions = 'all'")
        cls.got = run_calls(cls.hostile, x, g)
        cls.hostile.execute("SELECT pg_stat_force_next_flush()")
        cls.hostile.execute("SELECT 1")

    @classmethod
    def tearDownClass(cls):
        for c in ("clean", "hostile"):
            if getattr(cls, c, None) is not None:
                getattr(cls, c).close()
        with admin() as a:
            for n in cls.names:
                a.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % n)
            a.execute("DROP ROLE IF EXISTS mallory")

    def test_fixture_is_meaningful(self):
        # The calls must do real work, or equality below would prove nothing.
        for name in ("refresh", "daily_change", "yearly_change", "yearly_heatmap", "calibrate", "ensemble change",
                     "cluster", "calibrate decision", "yearly decision", "patch input", "image input",
                     "qgis view", "embed", "classify labels", "review", "review truth", "calibrate on reviews",
                     "review candidates", "change tile"):
            self.assertNotIn("ERROR", self.expected[name], name)
        self.assertIn("0.5", self.expected["yearly_change"])
        self.assertGreater(self.expected["embeddings"].count("'tiny'"), 20)
        self.assertIn("forest", self.expected["classify labels"])

    def test_plants_cover_what_the_bodies_use(self):
        for f in ("unnest", "array_agg", "cardinality", "jsonb_build_object", "st_xmin", "count", "format"):
            self.assertIn(f, self.funcs)
        for op in (">=", "&", "<<", "+", "||"):
            self.assertIn(op, self.ops)
        self.assertGreater(self.planted["function"], 1000)
        self.assertGreater(self.planted["operator"], 10000)

    def test_controls_are_hijacked(self):
        # Unpinned, unqualified code is what the plants are for: it must fall to them.
        c = self.hostile
        c.execute("CREATE FUNCTION pg_temp.probe_sql(v double precision) RETURNS boolean LANGUAGE sql "
                  "AS 'SELECT v >= 1'")
        c.execute("CREATE FUNCTION pg_temp.probe_plpgsql(v bigint[]) RETURNS bigint LANGUAGE plpgsql "
                  "AS 'BEGIN RETURN (SELECT count(*) FROM unnest(v)); END'")
        for q in ("SELECT pg_temp.probe_sql(2::double precision)", "SELECT pg_temp.probe_plpgsql('{1,2}'::bigint[])"):
            with self.assertRaises(psycopg.Error) as e:
                c.execute(q)
            self.assertEqual(e.exception.sqlstate, "HJ001", q)

    def test_api_is_not_hijacked(self):
        wrong = ["%s: %s" % (n, self.got[n][:200]) for n, _ in CALLS if self.got[n] != self.expected[n]]
        self.assertEqual(wrong, [])

    def test_every_routine_is_reached(self):
        # Catalog queries of the test itself run on a connection with an ordinary path.
        with psycopg.connect(self.hostile.info.dsn, autocommit=True, options="-c search_path=pg_catalog") as plain:
            called = {r[0]: r[1] for r in plain.execute("SELECT funcid, calls FROM pg_stat_user_functions")}
            routines = extension_routines(plain)
        direct = {re.search(r"(?:\{x\}|rai4eo)\.(\w+)\(", sql).group(1) for _, sql in CALLS
                  if re.search(r"(?:\{x\}|rai4eo)\.(\w+)\(", sql)}
        missing = []
        for name, lang, pinned, _, oid in routines:
            if name in NOT_CALLED:
                continue
            if pinned and not called.get(oid):
                missing.append("%s (pinned, never called)" % name)
            elif not pinned and name not in direct:
                missing.append("%s (unpinned: call it directly in CALLS)" % name)
        self.assertEqual(missing, [])

    def test_empty_search_path(self):
        conn = psycopg.connect("dbname=%s" % self.names[0], autocommit=True)
        try:
            for path in ("''", "pg_temp"):
                conn.execute("SET search_path = " + path)
                got = run_calls(conn, self.cx, self.cg)
                wrong = ["%s: %s" % (n, got[n][:200]) for n, _ in CALLS if got[n] != self.expected[n]]
                self.assertEqual(wrong, [], "search_path = " + path)
        finally:
            conn.close()

    def test_non_default_schemas(self):
        conn = make_db(self.names[2], ext_schema="r4", gis_schema="gis")
        try:
            x, g = schemas(conn)
            self.assertEqual((x, g), ("r4", "gis"))
            conn.execute("SET search_path = ''")
            got = run_calls(conn, x, g)
            wrong = ["%s: %s" % (n, got[n][:200]) for n, _ in CALLS if got[n] != self.expected[n]]
            self.assertEqual(wrong, [])
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main()
