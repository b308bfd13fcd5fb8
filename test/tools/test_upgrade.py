"""ALTER EXTENSION rai4eo UPDATE from every released version keeps the data and ends where a
fresh install of the current version begins.

The released version's install script is assembled from its tagged sources in git (the same
recipe its Makefile used) and put beside the current scripts; the current shared library serves
both, as it does for a real upgrade.  On a database of the old version the test loads patches,
images, a model, embeddings (computed by the old refresh and hand-made) and a calibration, then
updates, and checks:
  - the data: every row, digest, embedding and the stored threshold are unchanged (image ids
    through the renumbering of 0.3.0: patch_id << 18 became patch_id << 24);
  - the API works on it: yearly_change gives the old rows, rai4eo_embed reproduces the stored
    embeddings, a new image is embedded by the refresh;
  - the catalog: every object of the extension (routines with their definitions, views, tables,
    columns, constraints, indexes, triggers, operators, casts, comments, privileges) is what a
    fresh install of the current version has.
"""

import os
import shutil
import subprocess
import sys
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))

import psycopg                                               # noqa: E402

from r4_fixture import admin, make_db                        # noqa: E402

# Released versions and the commit each was released from.
RELEASES = {"0.1.0": "22acb4a35a53d45b3c2068bbc57404312a23e349",
            "0.2.0": "be232bef35514b4c25255a93968a5fac143acdc0"}

# The image_id each release's ids become in the current version.
RENUMBER = {"0.1.0": "((image_id >> 18) << 24) | (image_id & 262143)",
            "0.2.0": "((image_id >> 18) << 24) | (image_id & 262143)"}

AOI = "ST_MakeEnvelope(240000, 480000, 244200, 482400, 32629)"

# The extension's objects, each as (kind, identity, definition), for comparing two databases.
CATALOG = """
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'rai4eo'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT 'member', pg_describe_object(classid, objid, 0), '' FROM members
UNION ALL
SELECT 'routine', p.oid::regprocedure::text,
       CASE WHEN p.prokind = 'a' THEN '' ELSE pg_get_functiondef(p.oid) END
           || ' acl=' || coalesce(p.proacl::text, '') || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
FROM members m JOIN pg_proc p ON p.oid = m.objid WHERE m.classid = 'pg_proc'::regclass
UNION ALL
SELECT 'relation', c.oid::regclass::text,
       c.relkind::text || ' ' || coalesce(pg_get_viewdef(c.oid), '') || ' acl=' || coalesce(c.relacl::text, '')
           || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
FROM pg_class c WHERE c.relnamespace = 'rai4eo'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'S', 'p')
UNION ALL
SELECT 'column', a.attrelid::regclass::text || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull || ' storage=' || a.attstorage::text
           || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '') || ' generated=' || a.attgenerated::text
           || ' comment=' || coalesce(col_description(a.attrelid, a.attnum), '')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE c.relnamespace = 'rai4eo'::regnamespace AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', co.conrelid::regclass::text || ' ' || co.conname, pg_get_constraintdef(co.oid)
FROM pg_constraint co WHERE co.connamespace = 'rai4eo'::regnamespace
UNION ALL
SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'rai4eo'::regnamespace
UNION ALL
SELECT 'trigger', t.tgrelid::regclass::text || ' ' || t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'rai4eo'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'operator', o.oid::regoperator::text, o.oprcode::text || ' ' || coalesce(obj_description(o.oid, 'pg_operator'), '')
FROM members m JOIN pg_operator o ON o.oid = m.objid WHERE m.classid = 'pg_operator'::regclass
UNION ALL
SELECT 'type', t.oid::regtype::text, coalesce(obj_description(t.oid, 'pg_type'), '')
FROM members m JOIN pg_type t ON t.oid = m.objid WHERE m.classid = 'pg_type'::regclass
UNION ALL
SELECT 'dumped', c::regclass::text, '' FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'rai4eo'
UNION ALL
SELECT 'schema', n.nspname, coalesce(n.nspacl::text, '') || ' ' || coalesce(obj_description(n.oid, 'pg_namespace'), '')
FROM pg_namespace n WHERE n.nspname = 'rai4eo'
"""


def pg_sharedir():
    pgc = os.environ.get("PG_CONFIG") or shutil.which("pg_config")
    if not pgc:
        raise RuntimeError("test_upgrade needs pg_config (PG_CONFIG or PATH) to find the extension directory")
    return subprocess.run([pgc, "--sharedir"], capture_output=True, text=True, check=True).stdout.strip()


def released_script(version):
    """The install script of a released version, assembled from its commit's sql/src."""
    commit = RELEASES[version]
    git = ["git", "-C", ROOT]
    r = subprocess.run(git + ["ls-tree", "--name-only", commit, "sql/src/"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("the sources of rai4eo %s (commit %s) are not in this repository's history: %s"
                           % (version, commit, r.stderr.strip()))
    parts = ["-- rai4eo %s install script, generated from sql/src/*.sql: edit those." % version,
             '\\echo Use "CREATE EXTENSION rai4eo CASCADE" to load this file. \\quit']
    for f in sorted(r.stdout.split()):
        text = subprocess.run(git + ["show", "%s:%s" % (commit, f)], capture_output=True, text=True,
                              check=True).stdout
        parts += ["", "-- ---- " + f, text.rstrip("\n")]
    return "\n".join(parts) + "\n"


class UpgradeTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.installed = []
        ext = os.path.join(pg_sharedir(), "extension")
        for v in RELEASES:
            # Always written: a stale file of an unreleased build would not be the release.
            path = os.path.join(ext, "rai4eo--%s.sql" % v)
            if not os.path.exists(path):
                cls.installed.append(path)
            with open(path, "w") as f:
                f.write(released_script(v))
        with admin() as a:
            cls.current = a.execute("SELECT default_version FROM pg_available_extensions "
                                    "WHERE name = 'rai4eo'").fetchone()[0]
        cls.dbs = []

    @classmethod
    def tearDownClass(cls):
        with admin() as a:
            for d in cls.dbs:
                a.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % d)
        for p in cls.installed:
            os.remove(p)

    def db(self, tag, version=None):
        name = "r4_upgrade_%s_%d" % (tag, os.getpid())
        self.dbs.append(name)
        return make_db(name, version=version)

    def state(self, c, renumber=""):
        """Everything the data holds, as text.  renumber: an SQL expression of image_id giving
        the id the upgrade turns it into (the image_id layouts of the versions differ)."""
        q = lambda sql: repr(c.execute(sql).fetchall())          # noqa: E731
        iid = renumber or "image_id"
        return {
            "patches": q("SELECT patch_id, sample_id, ST_AsText(geom), country FROM rai4eo.patch ORDER BY 1"),
            "images": q("SELECT %s, patch_id, sensor, acquired, md5(rast::text) FROM rai4eo.image ORDER BY 1" % iid),
            "embeddings": q("SELECT %s, model, emb::text FROM rai4eo.embedding ORDER BY 1, 2" % iid),
            "models": q("SELECT name, arch, sha256 = sha256(weights), encode(sha256, 'hex'), parameters, "
                        "config->'change_threshold' FROM rai4eo.model ORDER BY 1"),
            "labels": q("SELECT count(*) FROM rai4eo.clc_class"),
            "yearly ext": q("SELECT patch_id, days_compared, days_changed, change_rate, mean_distance "
                            "FROM yearly_change(%s, 2019, 'ext') ORDER BY 1" % AOI),
            "yearly tiny": q("SELECT patch_id, days_compared, days_changed, change_rate, mean_distance "
                             "FROM yearly_change(%s, 2019, 'tiny', 0.01) ORDER BY 1" % AOI),
        }

    def test_upgrade_from_every_release(self):
        for v in RELEASES:
            with self.subTest(release=v):
                old = self.db("from_" + v.replace(".", "_"), version=v)
                self.assertEqual(old.execute("SELECT extversion FROM pg_extension WHERE extname = 'rai4eo'")
                                 .fetchone()[0], v)
                old.execute("CALL rai4eo_refresh_embeddings('tiny')")
                cal = old.execute("SELECT threshold FROM rai4eo_calibrate_threshold('ext', 2019, 'public.truth') "
                                  "WHERE chosen").fetchone()[0]
                # 0.1.0 and 0.2.0 pack image_id as patch_id << 18 | code << 16 | days; 0.3.0 as
                # patch_id << 24 | code << 16 | days: the data must come back through that mapping.
                before = self.state(old, RENUMBER[v])
                self.assertIn("'tiny'", before["embeddings"])
                self.assertEqual(old.execute("SELECT (config->'change_threshold')::float8 FROM rai4eo.model "
                                             "WHERE name = 'ext'").fetchone()[0], cal)

                old.execute("ALTER EXTENSION rai4eo UPDATE")
                self.assertEqual(old.execute("SELECT extversion FROM pg_extension WHERE extname = 'rai4eo'")
                                 .fetchone()[0], self.current)
                self.assertEqual(self.state(old), before)
                # Every renumbered id is the one the current key function derives.
                self.assertEqual(old.execute(
                    "SELECT count(*), count(*) FILTER (WHERE image_id = rai4eo.image_id_of(patch_id, sensor, acquired) "
                    "AND patch_id = rai4eo.image_patch_id(image_id)) FROM rai4eo.image").fetchone(), (48, 48))
                self.assertEqual(old.execute("SELECT count(*) FROM rai4eo.embedding e LEFT JOIN rai4eo.image i "
                                             "USING (image_id, patch_id) WHERE i.image_id IS NULL").fetchone()[0], 0)

                # The API on the upgraded data: embeddings reproduce (a batch of one image is not
                # bitwise a batch of 16: float32 rounding), a new image gets embedded.
                same = old.execute("SELECT max(e.emb <=> rai4eo_embed(i.rast, 'tiny')), count(*) "
                                   "FROM rai4eo.image i JOIN rai4eo.embedding e USING (image_id) "
                                   "WHERE e.model = 'tiny'").fetchone()
                self.assertLess(same[0], 1e-6)
                self.assertEqual(same[1], 48)
                first, emb = old.execute("DELETE FROM rai4eo.embedding WHERE model = 'tiny' AND image_id = "
                                         "(SELECT min(image_id) FROM rai4eo.image) RETURNING image_id, emb").fetchone()
                old.execute("CALL rai4eo_refresh_embeddings('tiny')")
                self.assertLess(old.execute("SELECT emb <=> %s::embedding FROM rai4eo.embedding "
                                            "WHERE model = 'tiny' AND image_id = %s", (emb, first)).fetchone()[0], 1e-6)

                fresh = self.db("fresh_" + v.replace(".", "_"))
                got = sorted(old.execute(CATALOG).fetchall())
                want = sorted(fresh.execute(CATALOG).fetchall())
                only_upgraded = [r for r in got if r not in want]
                only_fresh = [r for r in want if r not in got]
                self.assertEqual((only_upgraded, only_fresh), ([], []))
                old.close()
                fresh.close()


if __name__ == "__main__":
    unittest.main()
