-- Data tables live in schema rai4eo; functions, types and operators live in
-- the extension's schema (public by default, like PostGIS).
CREATE SCHEMA rai4eo;
COMMENT ON SCHEMA rai4eo IS 'rai4eo data: models, patches, images, embeddings, CLC labels and change results';
