-- The hand-written part of the upgrade from 0.2.0 to 0.3.0: what changes in the state
-- fragments (tables, indexes, constraints, back-fills), and DROPs of code objects whose
-- shape changed.  Every code fragment of sql/src follows it in the generated script
-- (docs/upgrades.md).

-- citus (issue 13, the change products on Citus): the per-patch helper rai4eo.patch_series is
-- gone (rai4eo.patch_series_of pairs a set of patches in one query); the view
-- rai4eo.patch_change, which called it, is dropped first and re-created by 66_qgis.sql.
DROP VIEW IF EXISTS rai4eo.patch_change;
DROP FUNCTION IF EXISTS rai4eo.patch_series(bigint, text, text, date, date, integer, float8, @extschema@.embedding[], boolean);
