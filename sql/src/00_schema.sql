-- Data tables live in schema rai4eo; functions, types and operators live in
-- the extension's schema (public by default, like PostGIS).
CREATE SCHEMA rai4eo;
COMMENT ON SCHEMA rai4eo IS 'rai4eo data: models, patches, images, embeddings, CLC labels and change results';
-- Everyone may use the schema; each table's own privileges decide the rest
-- (models and CLC reference data are readable by all, so inference works
-- for any role; writing stays with the owner and whom it grants).
GRANT USAGE ON SCHEMA rai4eo TO PUBLIC;
