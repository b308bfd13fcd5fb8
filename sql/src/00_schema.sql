-- Bodies name PostGIS objects as @postgis@.name, which only bind_postgis_schema()
-- (99_bind_postgis.sql) turns into PostGIS's schema: until then they cannot be
-- checked.  SET LOCAL: CREATE EXTENSION restores the setting when the script ends.
SET LOCAL check_function_bodies = off;

-- Data tables live in schema rai4eo; functions, types and operators live in
-- the extension's schema (public by default, like PostGIS).
CREATE SCHEMA rai4eo;
COMMENT ON SCHEMA rai4eo IS 'rai4eo data: models, patches, images, embeddings, CLC labels and change results';
-- Everyone may use the schema; each table's own privileges decide the rest
-- (models and CLC reference data are readable by all, so inference works
-- for any role; writing stays with the owner and whom it grants).
GRANT USAGE ON SCHEMA rai4eo TO PUBLIC;

-- Naming, so that \df finds things by task:
--   rai4eo_*          the API in the extension's schema (rai4eo_embed, rai4eo_load_model,
--                     rai4eo_calibrate_threshold, CALL rai4eo_refresh_embeddings, ...);
--   design-card names the embedding type's functions and operators (cosine_change,
--                     l2_distance, ...) and the change products (daily_change,
--                     yearly_change, daily_heatmap, yearly_heatmap, heatmap_png,
--                     ensemble_yearly_change, ensemble_yearly_heatmap);
--   rai4eo.*          helpers and data in schema rai4eo: callable, but not the API.
-- The fragments of sql/src are assembled in name order; each holds one concept.
