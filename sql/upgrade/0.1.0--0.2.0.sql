-- The hand-written part of the upgrade from 0.1.0 to 0.2.0: what changes in the state
-- fragments (tables, the type), and the code objects whose shape changed (a routine's
-- return type, a view's columns) or that are gone; they are dropped here and the code
-- fragments appended after this part create them anew (docs/upgrades.md).  Types are
-- named plainly: the script runs with the extension's and PostGIS's schemas on its path.

-- yearly_change gains the decision columns score, changed and onset.
DROP FUNCTION @extschema@.yearly_change(geometry, integer, text, double precision, text, integer, integer);

-- heatmap_png is C now, with a legend argument; its PL/pgSQL helpers are gone.
DROP FUNCTION @extschema@.heatmap_png(raster, integer, double precision, double precision, text, integer);
DROP FUNCTION rai4eo.png_chunk(text, bytea);
DROP FUNCTION rai4eo.adler32(bytea);
DROP FUNCTION rai4eo.crc32(bytea);
DROP FUNCTION rai4eo.crc32_table();

-- ---- state: keys Citus accepts (every unique key holds patch_id), the digest by CHECK ----

-- The model digest: a CHECK keeps every row honest (Citus refuses triggers on reference tables).
DROP TRIGGER model_sha256 ON rai4eo.model;
DROP FUNCTION rai4eo.model_set_sha256();
ALTER TABLE rai4eo.model DROP CONSTRAINT model_sha256_check,
	ADD CONSTRAINT model_sha256_of_weights CHECK (sha256 = pg_catalog.sha256(weights));

ALTER TABLE rai4eo.patch DROP CONSTRAINT patch_sample_id_key,
	ADD CONSTRAINT patch_sample_id_key UNIQUE (sample_id, patch_id);

-- The embedding's foreign key points at the image's primary key, which gains patch_id.
ALTER TABLE rai4eo.embedding DROP CONSTRAINT embedding_image_id_fkey;
ALTER TABLE rai4eo.image DROP CONSTRAINT image_pkey,
	ADD CONSTRAINT image_pkey PRIMARY KEY (image_id, patch_id);

-- embedding.patch_id: on an upgraded database it is the last column (a fresh install has
-- it second); name the columns when inserting.
ALTER TABLE rai4eo.embedding ADD COLUMN patch_id bigint;
UPDATE rai4eo.embedding SET patch_id = image_id >> 18;
ALTER TABLE rai4eo.embedding ALTER COLUMN patch_id SET NOT NULL,
	ADD CONSTRAINT embedding_patch_id_of_image CHECK (patch_id = image_id >> 18),
	DROP CONSTRAINT embedding_pkey,
	ADD CONSTRAINT embedding_pkey PRIMARY KEY (image_id, model, patch_id),
	ADD CONSTRAINT embedding_image_fkey FOREIGN KEY (image_id, patch_id)
		REFERENCES rai4eo.image (image_id, patch_id) ON DELETE CASCADE;

-- Loaded data belongs in pg_dump output.
SELECT pg_catalog.pg_extension_config_dump('rai4eo.patch', '');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.image', '');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.embedding', '');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.patch_clc', '');

-- Column comments of the state fragments that changed.
COMMENT ON COLUMN rai4eo.embedding.patch_id IS 'The image''s patch, image_id >> 18 (CHECKed): the distribution key';
COMMENT ON COLUMN rai4eo.embedding.model IS 'The model (rai4eo.model.name) that produced it';
COMMENT ON COLUMN rai4eo.model.sha256 IS 'sha256(weights), kept true by the CHECK model_sha256_of_weights (writers set it: rai4eo_load_model does); the per-backend model cache is keyed by it';

-- rai4eo.model accepts the temporal classifiers (lstm, gru).
ALTER TABLE rai4eo.model DROP CONSTRAINT model_arch_check,
	ADD CONSTRAINT model_arch_check CHECK (arch IN ('vit', 'resnet', 'external', 'lstm', 'gru'));

-- ---- state: the analysts' verdicts (43_review.sql)

CREATE TABLE rai4eo.review (
	patch_id bigint NOT NULL REFERENCES rai4eo.patch ON DELETE CASCADE,
	year integer NOT NULL CHECK (year BETWEEN 2000 AND 2179),
	model text NOT NULL CHECK (model <> ''),
	verdict text NOT NULL CHECK (verdict IN ('accept', 'reject', 'unsure')),
	reviewer text NOT NULL DEFAULT current_user CHECK (reviewer <> ''),
	reviewed_at timestamptz NOT NULL DEFAULT now(),
	note text,
	PRIMARY KEY (patch_id, year, model, reviewer)
);

CREATE INDEX review_year_idx ON rai4eo.review (year, reviewed_at);

COMMENT ON TABLE rai4eo.review IS
'Analysts'' verdicts on candidate changes: one row per patch, year, model and reviewer (a new verdict of the same reviewer replaces the old one); rai4eo.review_truth turns them into calibration labels';
COMMENT ON COLUMN rai4eo.review.patch_id IS 'The reviewed patch';
COMMENT ON COLUMN rai4eo.review.year IS 'The year whose change was reviewed (yearly_change(aoi, year))';
COMMENT ON COLUMN rai4eo.review.model IS 'The model whose candidate was reviewed (a name of rai4eo.model when it was written)';
COMMENT ON COLUMN rai4eo.review.verdict IS 'accept: the place changed in that year; reject: it did not (a false alarm); unsure: no label';
COMMENT ON COLUMN rai4eo.review.reviewer IS 'Who gave the verdict (the database role by default)';
COMMENT ON COLUMN rai4eo.review.reviewed_at IS 'When the verdict was given';
COMMENT ON COLUMN rai4eo.review.note IS 'Free text of the reviewer';

-- Verdicts are data people made: pg_dump keeps their rows like the corpus's.
SELECT pg_catalog.pg_extension_config_dump('rai4eo.review', '');
COMMENT ON COLUMN rai4eo.model.arch IS 'Architecture: vit or resnet (images), lstm or gru (temporal classifiers over embedding sequences), or external for embeddings computed outside the database';

-- ---- state: k-means states of a model (30_model.sql); models kept by pg_dump

CREATE TABLE rai4eo.state (
	model		text NOT NULL REFERENCES rai4eo.model (name) ON DELETE CASCADE ON UPDATE CASCADE,
	state		integer NOT NULL CHECK (state >= 1),
	centre		embedding NOT NULL,
	members		bigint NOT NULL CHECK (members >= 0),
	PRIMARY KEY (model, state)
);
COMMENT ON TABLE rai4eo.state IS 'k-means states of a model''s embeddings (rai4eo_cluster): the cluster change score reads them';
COMMENT ON COLUMN rai4eo.state.model IS 'The model whose embeddings were clustered';
COMMENT ON COLUMN rai4eo.state.state IS 'State number, 1 .. k';
COMMENT ON COLUMN rai4eo.state.centre IS 'Unit-norm centre: an embedding''s state is the centre most similar in cosine';
COMMENT ON COLUMN rai4eo.state.members IS 'Sampled embeddings assigned to the state in the last iteration';
GRANT SELECT ON rai4eo.state TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('rai4eo.state', '');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.model', '');

-- ---- code whose shape changed: the ensemble's rows gain the decision columns

DROP FUNCTION @extschema@.ensemble_yearly_change(geometry, integer, text[], double precision[], double precision[], text, integer, integer);
-- change_heatmap gains the year whose decision bands it writes.
DROP FUNCTION rai4eo.change_heatmap(geometry, date, date, text, double precision, text, integer, integer);
