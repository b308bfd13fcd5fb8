-- rai4eo upgrade 0.1.0--0.2.0, generated from sql/upgrade/0.1.0--0.2.0.sql and the code fragments of sql/src.
\echo Use "ALTER EXTENSION rai4eo UPDATE" to load this file. \quit
SET LOCAL check_function_bodies = off;

-- ---- sql/upgrade/0.1.0--0.2.0.sql
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

-- ---- sql/src/20_raster.sql
-- ============================================================================
-- reading PostGIS rasters
-- ============================================================================

CREATE OR REPLACE FUNCTION rai4eo_raster_values(rast raster, bands integer[] DEFAULT NULL) RETURNS real[]
	AS 'MODULE_PATHNAME' LANGUAGE C STABLE PARALLEL SAFE COST 500;

COMMENT ON FUNCTION rai4eo_raster_values(raster, integer[]) IS
'Pixels of the raster as real[band][row][column] (row 1 on top), NULL where a pixel is nodata; bands in the order given, all bands when NULL. Out-db bands are read through PostGIS, so postgis.enable_outdb_rasters and postgis.gdal_enabled_drivers apply. STABLE because out-db files can change.';

-- ---- sql/src/31_model_store.sql
-- ============================================================================
-- models: the models view and storing, dropping, resolving models
-- ============================================================================

CREATE OR REPLACE VIEW rai4eo.models AS
SELECT	m.name,
		m.arch,
		m.parameters,
		ARRAY(SELECT jsonb_array_elements_text(m.config -> 'bands')::int) AS input_bands,
		m.config ->> 'input' AS input_mode,
		CASE WHEN m.config ->> 'output' = 'probabilities' THEN jsonb_array_length(m.config -> 'classes')
			 ELSE (m.config ->> 'out_dim')::int END AS output_dims,
		jsonb_array_length(m.config -> 'classes') AS classes,
		length(m.weights)::bigint AS size_bytes,
		(m.config ->> 'change_threshold')::float8 AS change_threshold,
		m.created
FROM rai4eo.model m;
COMMENT ON VIEW rai4eo.models IS 'Models at a glance: architecture, parameters, input bands and mode, embedding dimensions (class probabilities for output = probabilities), number of classes of a classifier, file size';

-- ---- storing models ----------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo_load_model(name text, weights bytea, config jsonb DEFAULT '{}',
								  replace boolean DEFAULT false) RETURNS text
AS 'MODULE_PATHNAME', 'rai4eo_load_model'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION rai4eo_load_model(text, bytea, jsonb, boolean) IS
'Validate a safetensors file completely (header, offsets, dtypes, shapes, configuration) and store it as model name; config overrides the file''s __metadata__; replace => true replaces an existing model and deletes its embeddings if the weights changed';

CREATE OR REPLACE FUNCTION rai4eo_load_model_file(name text, path text, config jsonb DEFAULT '{}',
									   replace boolean DEFAULT false) RETURNS text
AS 'MODULE_PATHNAME', 'rai4eo_load_model_file'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION rai4eo_load_model_file(text, text, jsonb, boolean) IS
'rai4eo_load_model from a file on the database server; superusers and members of pg_read_server_files only';

CREATE OR REPLACE FUNCTION rai4eo_drop_model(name text, if_exists boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	DELETE FROM rai4eo.model m WHERE m.name = rai4eo_drop_model.name;
	IF NOT FOUND AND NOT coalesce(if_exists, false) THEN
		RAISE EXCEPTION 'model "%" does not exist', name
			USING ERRCODE = 'undefined_object',
				  HINT = 'Pass if_exists => true to ignore a missing model.';
	END IF;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION rai4eo_drop_model(text, boolean) IS
'Delete a model and (by cascade) its embeddings; true if it existed';

CREATE OR REPLACE FUNCTION rai4eo_create_external_model(name text, dims integer, config jsonb DEFAULT '{}',
											 replace boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cfg jsonb;
BEGIN
	IF name IS NULL OR dims IS NULL THEN
		RAISE EXCEPTION 'name and dims must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name = '' OR octet_length(name) > 200 THEN
		RAISE EXCEPTION 'model name must have 1 to 200 bytes' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF dims NOT BETWEEN 1 AND 16000 THEN
		RAISE EXCEPTION 'dims % is out of range', dims USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'An embedding has 1 to 16000 dimensions.';
	END IF;
	IF jsonb_typeof(coalesce(config, '{}')) <> 'object' THEN
		RAISE EXCEPTION 'model configuration must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	cfg := coalesce(config, '{}') || jsonb_build_object('arch', 'external', 'out_dim', dims);
	IF cfg ? 'change_threshold' AND jsonb_typeof(cfg -> 'change_threshold') NOT IN ('number', 'null') THEN
		RAISE EXCEPTION '"change_threshold" in the configuration must be a number' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- The digest of the empty weights, as the CHECK model_sha256_of_weights wants it.
	INSERT INTO rai4eo.model AS m (name, arch, config, weights, sha256)
	VALUES (rai4eo_create_external_model.name, 'external', cfg, '', sha256(''::bytea))
	ON CONFLICT ON CONSTRAINT model_pkey DO UPDATE SET arch = 'external', config = EXCLUDED.config, weights = '',
		sha256 = EXCLUDED.sha256, created = now()
		WHERE replace;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%" already exists', name USING ERRCODE = 'duplicate_object',
			HINT = 'Pass replace => true to replace it.';
	END IF;
	RETURN name;
END
$$;
COMMENT ON FUNCTION rai4eo_create_external_model(text, integer, jsonb, boolean) IS
'Register a model whose embeddings are computed outside the database (another system, a baseline): change detection and calibration work on the embeddings inserted for it; rai4eo_embed refuses it';

CREATE OR REPLACE FUNCTION rai4eo.resolve_model(model text) RETURNS text
AS 'MODULE_PATHNAME', 'rai4eo_resolve_model'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.resolve_model(text) IS
'The model a model argument names: itself, or rai4eo.default_model when NULL; errors if there is no such model';

GRANT SELECT ON rai4eo.models TO PUBLIC;

-- ---- sql/src/39_corpus_keys.sql
-- ============================================================================
-- corpus keys: patch_id and image_id derived from sample id, sensor and date
-- ============================================================================

-- Before the tables: their CHECK constraints call these functions.

-- ---- identifiers ------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo.patch_id_of(sample_id text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m text[];
	e int;
	n int;
BEGIN
	m := regexp_match(sample_id,
		'^([1-9]|[1-5][0-9]|60)([NS])_(0|[1-9][0-9]{0,3})E-(0|[1-9][0-9]{0,3})N_([0-3][0-9])_([0-3][0-9])$');
	IF m IS NOT NULL THEN
		e := m[3]::int;
		n := m[4]::int;
	END IF;
	IF m IS NULL OR e > 1023 OR n > 1023 THEN
		RAISE EXCEPTION 'invalid sample id "%"', sample_id
			USING ERRCODE = 'invalid_text_representation',
				  HINT = 'A sample id is {zone}{N|S}_{E}E-{N}N_{col}_{row} with zone 1-60, E and N 0-1023 without leading zeros, col and row 00-39, e.g. 33N_16E-243N_39_05.';
	END IF;
	RETURN (((((m[1]::int * 2 + CASE m[2] WHEN 'N' THEN 0 ELSE 1 END)::bigint * 1024 + e)
			 * 1024 + n) * 64 + m[5]::int) * 64 + m[6]::int);
END
$$;

COMMENT ON FUNCTION rai4eo.patch_id_of(text) IS
'patch_id of a RapidAI4EO sample id {zone}{N|S}_{E}E-{N}N_{col}_{row}: ((((zone*2 + hemi)*1024 + E)*1024 + N)*64 + col)*64 + row with hemi 0 for N, 1 for S; unique for valid ids, below 2^39';

CREATE OR REPLACE FUNCTION rai4eo.sample_id_of(patch_id bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN format('%s%s_%sE-%sN_%s_%s',
			  patch_id >> 33,
			  CASE (patch_id >> 32) & 1 WHEN 0 THEN 'N' ELSE 'S' END,
			  (patch_id >> 22) & 1023,
			  (patch_id >> 12) & 1023,
			  lpad(((patch_id >> 6) & 63)::text, 2, '0'),
			  lpad((patch_id & 63)::text, 2, '0'));

COMMENT ON FUNCTION rai4eo.sample_id_of(bigint) IS
'Sample id of a patch_id: the inverse of rai4eo.patch_id_of';

CREATE OR REPLACE FUNCTION rai4eo.image_id_of(patch_id bigint, sensor text, acquired date) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	days int := acquired - date '2000-01-01';
	code int := CASE sensor WHEN 'PF-SR' THEN 0 WHEN 'S2-SR' THEN 1 END;
BEGIN
	IF code IS NULL THEN
		RAISE EXCEPTION 'unknown sensor "%"', sensor
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Sensors are PF-SR and S2-SR.';
	END IF;
	IF days < 0 OR days > 65535 THEN
		RAISE EXCEPTION 'acquisition date % out of range', acquired
			USING ERRCODE = 'datetime_field_overflow', HINT = 'Dates run from 2000-01-01 to 2179-06-06.';
	END IF;
	IF patch_id < 0 OR patch_id >= (1::bigint << 39) THEN
		RAISE EXCEPTION 'patch_id % out of range', patch_id USING ERRCODE = 'numeric_value_out_of_range';
	END IF;
	RETURN (patch_id << 18) | (code::bigint << 16) | days;
END
$$;

COMMENT ON FUNCTION rai4eo.image_id_of(bigint, text, date) IS
'image_id of a patch''s image: patch_id * 2^18 + sensor code * 2^16 + days since 2000-01-01, with sensor code 0 for PF-SR and 1 for S2-SR; patch_id = image_id >> 18';

-- ---- sql/src/41_corpus_views.sql
-- ============================================================================
-- corpus views: inserting without computing keys, coarse classes per patch
-- ============================================================================

-- ---- inserting without computing keys -----------------------------------------
--
-- patch_id and image_id are functions of other columns, which a column DEFAULT
-- cannot express, and a generated column cannot be a Citus distribution column
-- (nor can a BEFORE trigger on the table fill one in: Citus routes the row by
-- its patch_id before any trigger runs).  So the derived keys are filled in by
-- INSTEAD OF INSERT triggers on two views, which work the same on one node and
-- on a Citus coordinator (the trigger's INSERT is then an ordinary distributed
-- insert), for INSERT and COPY FROM alike.  Bulk loaders that compute the keys
-- themselves (tools/load) write the tables directly.

CREATE OR REPLACE VIEW rai4eo.patch_input AS
SELECT p.patch_id, p.sample_id, p.geom, p.country FROM rai4eo.patch p;

COMMENT ON VIEW rai4eo.patch_input IS
'Insert patches without computing patch_id: INSERT INTO rai4eo.patch_input (sample_id, geom, country) ... [RETURNING patch_id]; a patch_id given must equal rai4eo.patch_id_of(sample_id); reading it reads rai4eo.patch';

CREATE OR REPLACE FUNCTION rai4eo.patch_input_insert() RETURNS trigger
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	pid bigint;
BEGIN
	IF NEW.sample_id IS NULL THEN
		RAISE EXCEPTION 'a patch needs a sample_id' USING ERRCODE = 'not_null_violation';
	END IF;
	pid := rai4eo.patch_id_of(NEW.sample_id);
	IF NEW.patch_id IS DISTINCT FROM pid AND NEW.patch_id IS NOT NULL THEN
		RAISE EXCEPTION 'patch_id % does not belong to sample id "%"', NEW.patch_id, NEW.sample_id
			USING ERRCODE = 'check_violation', DETAIL = format('rai4eo.patch_id_of(%L) = %s.', NEW.sample_id, pid);
	END IF;
	NEW.patch_id := pid;
	INSERT INTO rai4eo.patch (patch_id, sample_id, geom, country)
	VALUES (NEW.patch_id, NEW.sample_id, NEW.geom, NEW.country);
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION rai4eo.patch_input_insert() IS
'INSTEAD OF INSERT trigger of rai4eo.patch_input: derives patch_id from sample_id and inserts into rai4eo.patch';

CREATE OR REPLACE TRIGGER patch_input_insert INSTEAD OF INSERT ON rai4eo.patch_input
	FOR EACH ROW EXECUTE FUNCTION rai4eo.patch_input_insert();

CREATE OR REPLACE VIEW rai4eo.image_input AS
SELECT i.image_id, i.patch_id, rai4eo.sample_id_of(i.patch_id) AS sample_id, i.sensor, i.acquired, i.rast
FROM rai4eo.image i;

COMMENT ON VIEW rai4eo.image_input IS
'Insert images without computing image_id: INSERT INTO rai4eo.image_input (sample_id or patch_id, sensor, acquired, rast) ... [RETURNING image_id]; given ones must agree with each other and with rai4eo.image_id_of; reading it reads rai4eo.image';

CREATE OR REPLACE FUNCTION rai4eo.image_input_insert() RETURNS trigger
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	pid bigint := NEW.patch_id;
	iid bigint;
BEGIN
	IF NEW.sample_id IS NOT NULL THEN
		pid := rai4eo.patch_id_of(NEW.sample_id);
		IF NEW.patch_id IS NOT NULL AND NEW.patch_id <> pid THEN
			RAISE EXCEPTION 'patch_id % does not belong to sample id "%"', NEW.patch_id, NEW.sample_id
				USING ERRCODE = 'check_violation', DETAIL = format('rai4eo.patch_id_of(%L) = %s.', NEW.sample_id, pid);
		END IF;
	END IF;
	IF pid IS NULL OR NEW.sensor IS NULL OR NEW.acquired IS NULL THEN
		RAISE EXCEPTION 'an image needs a sample_id or patch_id, a sensor and a date'
			USING ERRCODE = 'not_null_violation';
	END IF;
	iid := rai4eo.image_id_of(pid, NEW.sensor, NEW.acquired);
	IF NEW.image_id IS NOT NULL AND NEW.image_id <> iid THEN
		RAISE EXCEPTION 'image_id % does not belong to patch %, % on %', NEW.image_id, pid, NEW.sensor, NEW.acquired
			USING ERRCODE = 'check_violation', DETAIL = format('rai4eo.image_id_of(...) = %s.', iid);
	END IF;
	INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
	VALUES (iid, pid, NEW.sensor, NEW.acquired, NEW.rast);
	NEW.image_id := iid;
	NEW.patch_id := pid;
	NEW.sample_id := rai4eo.sample_id_of(pid);
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION rai4eo.image_input_insert() IS
'INSTEAD OF INSERT trigger of rai4eo.image_input: derives image_id (and patch_id from sample_id) and inserts into rai4eo.image';

CREATE OR REPLACE TRIGGER image_input_insert INSTEAD OF INSERT ON rai4eo.image_input
	FOR EACH ROW EXECUTE FUNCTION rai4eo.image_input_insert();

-- ---- coarse classes per patch -----------------------------------------------

CREATE OR REPLACE VIEW rai4eo.patch_class7 AS
SELECT p.patch_id, p.sample_id, p.geom,
	   coalesce(f.artificial, 0)::real AS artificial,
	   coalesce(f.agricultural, 0)::real AS agricultural,
	   coalesce(f.forest, 0)::real AS forest,
	   coalesce(f.shrub, 0)::real AS shrub,
	   coalesce(f.bare, 0)::real AS bare,
	   coalesce(f.wetlands, 0)::real AS wetlands,
	   coalesce(f.water, 0)::real AS water,
	   d.dominant
FROM rai4eo.patch p
CROSS JOIN LATERAL (
	SELECT sum(pc.fraction) FILTER (WHERE c.class7 = 'artificial') AS artificial,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'agricultural') AS agricultural,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'forest') AS forest,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'shrub') AS shrub,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'bare') AS bare,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'wetlands') AS wetlands,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'water') AS water
	FROM rai4eo.patch_clc pc
	JOIN rai4eo.clc_class c ON c.code = pc.code
	WHERE pc.patch_id = p.patch_id) f
LEFT JOIN LATERAL (
	SELECT u.class7 AS dominant
	FROM unnest(ARRAY['artificial', 'agricultural', 'forest', 'shrub', 'bare', 'wetlands', 'water'],
				ARRAY[f.artificial, f.agricultural, f.forest, f.shrub, f.bare, f.wetlands, f.water])
		 WITH ORDINALITY AS u(class7, fraction, ord)
	WHERE u.fraction > 0
	ORDER BY u.fraction DESC, u.ord
	LIMIT 1) d ON true;

COMMENT ON VIEW rai4eo.patch_class7 IS
'Per patch, the share of each of the seven coarse classes (0 when absent) and the dominant one (NULL for a patch without labels; ties go to the class listed first)';

-- ---- sql/src/45_inference.sql
-- ============================================================================
-- inference: rai4eo_embed, rai4eo_model_input, rai4eo_classify
-- ============================================================================

-- ---- inference -----------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo_embed(rast raster, model text DEFAULT NULL) RETURNS embedding
AS 'MODULE_PATHNAME', 'rai4eo_embed'
LANGUAGE C STABLE PARALLEL SAFE COST 100000;
COMMENT ON FUNCTION rai4eo_embed(raster, text) IS
'Embedding of a raster by a model (NULL: rai4eo.default_model), computed in the backend, equal to PyTorch to float32 rounding';

CREATE OR REPLACE FUNCTION rai4eo_embed(rasts raster[], model text DEFAULT NULL) RETURNS embedding[]
AS 'MODULE_PATHNAME', 'rai4eo_embed_array'
LANGUAGE C STABLE PARALLEL SAFE COST 1000000;
COMMENT ON FUNCTION rai4eo_embed(raster[], text) IS
'Embeddings of an array of rasters in one batched forward pass per run of equally sized rasters; same shape and order, NULL for NULL';

CREATE OR REPLACE FUNCTION rai4eo_model_input(rast raster, model text DEFAULT NULL) RETURNS real[]
AS 'MODULE_PATHNAME', 'rai4eo_model_input'
LANGUAGE C STABLE PARALLEL SAFE COST 1000;
COMMENT ON FUNCTION rai4eo_model_input(raster, text) IS
'The tensor the model sees for a raster, real[channel][row][column]: bands picked, scaled, normalised, nodata = 0, resized in resize mode';


-- ---- classification ----------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo_classify(rast raster, model text DEFAULT NULL) RETURNS real[]
AS 'MODULE_PATHNAME', 'rai4eo_classify'
LANGUAGE C STABLE PARALLEL SAFE COST 100000;
COMMENT ON FUNCTION rai4eo_classify(raster, text) IS
'Class probabilities of a raster from a model with a classification head, in the order of the model''s classes (softmax, or a sigmoid per class for a multi-label model)';

CREATE OR REPLACE FUNCTION rai4eo_classify(rasts raster[], model text DEFAULT NULL) RETURNS embedding[]
AS 'MODULE_PATHNAME', 'rai4eo_classify_array'
LANGUAGE C STABLE PARALLEL SAFE COST 1000000;
COMMENT ON FUNCTION rai4eo_classify(raster[], text) IS
'Class probabilities of an array of rasters in batched forward passes, as probability vectors (embedding[]: same shape and order, NULL for NULL)';

CREATE OR REPLACE FUNCTION rai4eo_classify_labels(rast raster, model text DEFAULT NULL)
RETURNS TABLE (class_index integer, class text, probability real)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.i::integer, c.name, p.v
	FROM unnest(@extschema@.rai4eo_classify($1, $2)) WITH ORDINALITY AS p(v, i)
	JOIN rai4eo.model m ON m.name = rai4eo.resolve_model($2)
	CROSS JOIN LATERAL (SELECT m.config -> 'classes' ->> (p.i::integer - 1) AS name) c
	ORDER BY p.i
$$;
COMMENT ON FUNCTION rai4eo_classify_labels(raster, text) IS
'rai4eo_classify as rows: class index (1-based), class name from the model''s configuration, probability';

-- ---- sql/src/46_refresh.sql
-- ============================================================================
-- batch embedding: CALL rai4eo_refresh_embeddings (next to rai4eo_embed)
-- ============================================================================

-- ---- one batch: claim, embed, insert ---------------------------------------------
--
-- The unit of work of the refresh, on one node or on one Citus shard: claim up
-- to lim images of the image table that have no embedding under the model
-- (image_id > after, not in failed), embed them in one batched forward pass and
-- insert the embeddings.  On one node the tables are rai4eo.image and
-- rai4eo.embedding; on Citus the procedure runs this on each worker with a
-- co-located pair of shards, so rasters never leave their node and the claim
-- (SELECT ... FOR NO KEY UPDATE [SKIP LOCKED], which Citus refuses across
-- shards) is a local one.  Images that cannot be embedded are retried one by
-- one and returned as failures; the caller reports them.

CREATE OR REPLACE FUNCTION rai4eo.refresh_batch(image_table regclass, embedding_table regclass, model text, sensor text,
	lim integer, after bigint, failed bigint[], wait boolean) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	claimed bigint[];
	ids bigint[];
	rasts @postgis@.raster[];
	embs @extschema@.embedding[];
	one @extschema@.embedding;
	ok boolean;
	err text;
	n bigint;
	embedded bigint := 0;
	failures jsonb := '[]';
BEGIN
	EXECUTE format(
		'SELECT array_agg(c.image_id ORDER BY c.image_id) FROM (
			SELECT i.image_id FROM %s i
			WHERE i.image_id > $1 AND ($2::text IS NULL OR i.sensor = $2)
			  AND NOT EXISTS (SELECT 1 FROM %s e WHERE e.image_id = i.image_id AND e.patch_id = i.patch_id AND e.model = $3)
			  AND i.image_id <> ALL ($4)
			ORDER BY i.image_id LIMIT $5
			FOR NO KEY UPDATE OF i%s) c',
		image_table, embedding_table, CASE WHEN wait THEN '' ELSE ' SKIP LOCKED' END)
	INTO claimed USING after, sensor, model, coalesce(failed, '{}'), lim;
	IF claimed IS NULL THEN
		RETURN jsonb_build_object('claimed', 0, 'after', after, 'embedded', 0, 'failed', failures);
	END IF;

	-- A claim's snapshot predates the lock: another session may have committed
	-- embeddings of these images in between, which this fresh statement sees.
	EXECUTE format(
		'SELECT array_agg(i.image_id ORDER BY i.image_id), array_agg(i.rast ORDER BY i.image_id)
		 FROM %s i
		 WHERE i.image_id = ANY ($1)
		   AND NOT EXISTS (SELECT 1 FROM %s e WHERE e.image_id = i.image_id AND e.patch_id = i.patch_id AND e.model = $2)',
		image_table, embedding_table)
	INTO ids, rasts USING claimed, model;

	IF ids IS NOT NULL THEN
		ok := true;
		BEGIN
			embs := @extschema@.rai4eo_embed(rasts, model);
			IF array_position(embs, NULL) IS NOT NULL THEN
				RAISE EXCEPTION 'rai4eo_embed returned NULL for an image';
			END IF;
			EXECUTE format('INSERT INTO %s (image_id, patch_id, model, emb)
							SELECT u.id, u.id >> 18, $1, u.e FROM unnest($2, $3) u(id, e)
							ON CONFLICT DO NOTHING', embedding_table)
			USING model, ids, embs;
			GET DIAGNOSTICS n = ROW_COUNT;
			embedded := embedded + n;
		EXCEPTION WHEN OTHERS THEN
			ok := false;
		END;
		-- Image by image, each in its own subtransaction, to find the culprits.
		IF NOT ok THEN
			FOR k IN 1 .. cardinality(ids) LOOP
				BEGIN
					one := @extschema@.rai4eo_embed(rasts[k], model);
					IF one IS NULL THEN
						RAISE EXCEPTION 'rai4eo_embed returned NULL' USING ERRCODE = 'null_value_not_allowed';
					END IF;
					EXECUTE format('INSERT INTO %s (image_id, patch_id, model, emb) VALUES ($1, $1 >> 18, $2, $3)
									ON CONFLICT DO NOTHING', embedding_table)
					USING ids[k], model, one;
					GET DIAGNOSTICS n = ROW_COUNT;
					embedded := embedded + n;
				EXCEPTION WHEN OTHERS THEN
					GET STACKED DIAGNOSTICS err = MESSAGE_TEXT;
					failures := failures || jsonb_build_array(jsonb_build_array(ids[k], SQLSTATE, err));
				END;
			END LOOP;
		END IF;
	END IF;
	RETURN jsonb_build_object('claimed', cardinality(claimed), 'after', claimed[cardinality(claimed)],
							  'embedded', embedded, 'failed', failures);
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_batch(regclass, regclass, text, text, integer, bigint, bigint[], boolean) IS
'One batch of rai4eo_refresh_embeddings on an image table and its embedding table (the tables, or a co-located pair of Citus shards): claims up to lim images after image_id after without an embedding under model (skipping locked ones unless wait), embeds and inserts them; returns {claimed, after, embedded, failed: [[image_id, sqlstate, message], ...]}';

-- ---- the refresh's steps ----------------------------------------------------------
--
-- The procedure commits after every step, so it cannot pin its search_path
-- (docs/sql-conventions.md); it only passes a jsonb state between these pinned
-- functions, which do the work.

CREATE OR REPLACE FUNCTION rai4eo.refresh_start(model text, sensor text, batch_size integer, max_images bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m text;
	total bigint;
	shards jsonb := rai4eo.citus_shard_pairs();
BEGIN
	m := rai4eo.resolve_model(model);
	IF (SELECT x.arch FROM rai4eo.model x WHERE x.name = m) = 'external' THEN
		RAISE EXCEPTION 'model "%" holds external embeddings: the database cannot compute them', m
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Insert its embeddings into rai4eo.embedding directly.';
	END IF;
	IF (SELECT x.arch FROM rai4eo.model x WHERE x.name = m) IN ('lstm', 'gru') THEN
		RAISE EXCEPTION 'model "%" is a temporal classifier: it reads sequences of embeddings, not images', m
			USING ERRCODE = 'wrong_object_type',
				  HINT = 'Use rai4eo_classify_series() or rai4eo_classify_sequence().';
	END IF;
	IF sensor IS NOT NULL AND sensor NOT IN ('PF-SR', 'S2-SR') THEN
		RAISE EXCEPTION 'unknown sensor "%"', sensor USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Sensors are PF-SR and S2-SR, or NULL for both.';
	END IF;
	IF batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 4096 THEN
		RAISE EXCEPTION 'batch_size % is out of range', batch_size USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'batch_size runs from 1 to 4096 images.';
	END IF;
	IF max_images < 0 THEN
		RAISE EXCEPTION 'max_images must not be negative' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT count(*) INTO total FROM (
		SELECT 1 FROM rai4eo.image i
		WHERE (refresh_start.sensor IS NULL OR i.sensor = refresh_start.sensor)
		  AND NOT EXISTS (SELECT 1 FROM rai4eo.embedding e
						  WHERE e.image_id = i.image_id AND e.patch_id = i.patch_id AND e.model = m)
		LIMIT max_images) s;
	RETURN jsonb_build_object('model', m, 'sensor', sensor, 'batch', batch_size, 'cap', max_images,
		'total', total, 'embedded', 0, 'skipped', 0, 'failed', '[]'::jsonb, 'after', -1, 'sweeping', false,
		'finished', false, 't0', clock_timestamp(), 'shown', NULL, 'shards', shards);
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_start(text, text, integer, bigint) IS
'rai4eo_refresh_embeddings: check the arguments, count the images to embed and return the state the steps pass on (with the Citus shard pairs when rai4eo.image is distributed)';

-- Report the images of one batch that could not be embedded and add them to the state.
CREATE OR REPLACE FUNCTION rai4eo.refresh_note_failures(st jsonb, r jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	f jsonb;
	id bigint;
BEGIN
	FOR f IN SELECT x FROM jsonb_array_elements(r -> 'failed') x LOOP
		id := (f ->> 0)::bigint;
		RAISE WARNING 'rai4eo_refresh_embeddings: image % skipped: %', id, f ->> 2
			USING DETAIL = format('Image %s of patch %s, %s, acquired %s; SQLSTATE %s.', id,
								  rai4eo.sample_id_of(id >> 18),
								  CASE (id >> 16) & 3 WHEN 0 THEN 'PF-SR' ELSE 'S2-SR' END,
								  date '2000-01-01' + (id & 65535)::integer, f ->> 1);
		st := jsonb_set(st, '{failed}', (st -> 'failed') || to_jsonb(id));
		st := jsonb_set(st, '{skipped}', to_jsonb((st ->> 'skipped')::bigint + 1));
	END LOOP;
	RETURN jsonb_set(st, '{embedded}', to_jsonb((st ->> 'embedded')::bigint + (r ->> 'embedded')::bigint));
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_note_failures(jsonb, jsonb) IS
'rai4eo_refresh_embeddings: WARNING for each image a batch could not embed; adds the batch''s counts to the state';

CREATE OR REPLACE FUNCTION rai4eo.refresh_step(st jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m text := st ->> 'model';
	sens text := st ->> 'sensor';
	batch integer := (st ->> 'batch')::integer;
	cap bigint := (st ->> 'cap')::bigint;
	sweeping boolean := (st ->> 'sweeping')::boolean;
	failed bigint[] := ARRAY(SELECT jsonb_array_elements_text(st -> 'failed')::bigint);
	remaining bigint;
	r jsonb;
	picked integer[];
	nodes text[];
	ports integer[];
	cmds text[];
	lims bigint[];
	which integer[];
	k integer;
	res record;
	done_ boolean;
	rate float8;
	total bigint := (st ->> 'total')::bigint;
	n bigint;
BEGIN
	remaining := cap - (st ->> 'embedded')::bigint - (st ->> 'skipped')::bigint;
	IF remaining <= 0 THEN
		RETURN jsonb_set(st, '{finished}', 'true');
	END IF;

	IF st -> 'shards' = 'null'::jsonb THEN
		-- One node: one batch after the cursor.
		r := rai4eo.refresh_batch('rai4eo.image'::regclass, 'rai4eo.embedding'::regclass, m, sens,
								  least(batch, remaining)::integer, (st ->> 'after')::bigint, failed, sweeping);
		IF (r ->> 'claimed')::integer = 0 THEN
			IF sweeping THEN
				RETURN jsonb_set(st, '{finished}', 'true');
			END IF;
			-- Pass 2 starts over and waits for claims (see the procedure's comment).
			RETURN jsonb_set(jsonb_set(st, '{sweeping}', 'true'), '{after}', '-1');
		END IF;
		st := jsonb_set(st, '{after}', r -> 'after');
		st := rai4eo.refresh_note_failures(st, r);
	ELSE
		-- Citus: one batch on one shard of every worker at once, run on the worker
		-- itself (master_run_on_worker), each committed there.
		SELECT array_agg(x.ord ORDER BY x.ord) INTO picked FROM (
			SELECT DISTINCT ON (s ->> 'node', s ->> 'port') o.ord::integer AS ord
			FROM jsonb_array_elements(st -> 'shards') WITH ORDINALITY o(s, ord)
			WHERE NOT (s ->> 'done')::boolean
			ORDER BY s ->> 'node', s ->> 'port', o.ord) x;
		IF picked IS NULL THEN
			IF sweeping THEN
				RETURN jsonb_set(st, '{finished}', 'true');
			END IF;
			st := jsonb_set(st, '{sweeping}', 'true');
			st := jsonb_set(st, '{shards}', (SELECT jsonb_agg(s || '{"after": -1, "done": false}' ORDER BY o)
											 FROM jsonb_array_elements(st -> 'shards') WITH ORDINALITY q(s, o)));
			RETURN st;
		END IF;
		-- Split what max_images leaves over the shards picked, so that no round overshoots it.
		FOR k IN 1 .. cardinality(picked) LOOP
			n := least(batch, coalesce(remaining / cardinality(picked) + CASE WHEN k <= remaining % cardinality(picked) THEN 1 ELSE 0 END, batch));
			CONTINUE WHEN n <= 0;
			lims := lims || n;
			which := which || picked[k];
			nodes := nodes || (st -> 'shards' -> (picked[k] - 1) ->> 'node');
			ports := ports || (st -> 'shards' -> (picked[k] - 1) ->> 'port')::integer;
			cmds := cmds || format('SELECT rai4eo.refresh_batch(%L, %L, %L, %L, %s, %s, %L, %L)::text',
								   st -> 'shards' -> (picked[k] - 1) ->> 'image', st -> 'shards' -> (picked[k] - 1) ->> 'embedding',
								   m, sens, n, st -> 'shards' -> (picked[k] - 1) ->> 'after', failed, sweeping);
		END LOOP;
		k := 0;
		FOR res IN EXECUTE 'SELECT w.success, w.result FROM pg_catalog.master_run_on_worker($1, $2, $3, true) w'
				   USING nodes, ports, cmds LOOP
			k := k + 1;
			IF NOT res.success THEN
				RAISE EXCEPTION 'rai4eo_refresh_embeddings: a batch on %:% failed: %', nodes[k], ports[k], res.result
					USING ERRCODE = 'external_routine_exception';
			END IF;
			r := res.result::jsonb;
			n := which[k];		-- results come back in the order of the commands
			done_ := (r ->> 'claimed')::integer = 0;
			st := jsonb_set(st, ARRAY['shards', (n - 1)::text],
							(st -> 'shards' -> (n::integer - 1)) || jsonb_build_object('after', r -> 'after', 'done', done_));
			st := rai4eo.refresh_note_failures(st, r);
		END LOOP;
	END IF;

	IF st ->> 'shown' IS NULL OR clock_timestamp() - (st ->> 'shown')::timestamptz >= interval '10 seconds' THEN
		n := (st ->> 'embedded')::bigint + (st ->> 'skipped')::bigint;
		rate := n / greatest(extract(epoch FROM clock_timestamp() - (st ->> 't0')::timestamptz), 1e-3);
		RAISE NOTICE 'rai4eo_refresh_embeddings(%): %/% images (% %%), % images/s, ETA %', m,
			n, total, round(100.0 * n / greatest(total, 1), 1), round(rate::numeric, 1),
			justify_hours(make_interval(secs => round(greatest(total - n, 0) / greatest(rate, 1e-9))));
		st := jsonb_set(st, '{shown}', to_jsonb(clock_timestamp()));
	END IF;
	RETURN st;
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_step(jsonb) IS
'rai4eo_refresh_embeddings: one step (one batch on one node; on Citus one batch on a shard of every worker, run there), with the progress NOTICE every 10 s; returns the new state';

CREATE OR REPLACE FUNCTION rai4eo.refresh_finish(st jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RAISE NOTICE 'rai4eo_refresh_embeddings(%): finished: % embedded, % skipped, in % s', st ->> 'model',
		st ->> 'embedded', st ->> 'skipped',
		round(extract(epoch FROM clock_timestamp() - (st ->> 't0')::timestamptz)::numeric, 1);
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_finish(jsonb) IS 'rai4eo_refresh_embeddings: the closing NOTICE';

-- ---- the procedure ------------------------------------------------------------------

-- Commits between steps, so no SET clause: only qualified names (docs/sql-conventions.md).
CREATE OR REPLACE PROCEDURE rai4eo_refresh_embeddings(model text, sensor text DEFAULT NULL, batch_size integer DEFAULT 32,
	max_images bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
	st pg_catalog.jsonb;
BEGIN
	-- Batches are committed one by one, which a transaction block forbids: fail now, not after the first batch.
	COMMIT;
	st := rai4eo.refresh_start(model, sensor, batch_size, max_images);
	COMMIT;
	-- Pass 1 walks the images in image_id order (per shard on Citus) and skips those
	-- other sessions have claimed.  Pass 2 starts over and waits for claims: it picks
	-- up images behind the cursor (claims rolled back, images loaded meanwhile) and
	-- those a refresh of another model holds, so that the procedure returns only when
	-- every image is embedded or reported.  Within one call a failed image is never
	-- tried again.
	LOOP
		st := rai4eo.refresh_step(st);
		COMMIT;
		EXIT WHEN (st OPERATOR(pg_catalog.->>) 'finished'::pg_catalog.text)::pg_catalog.bool;
	END LOOP;
	PERFORM rai4eo.refresh_finish(st);
END
$$;

COMMENT ON PROCEDURE rai4eo_refresh_embeddings(text, text, integer, bigint) IS
'Embed every image (of one sensor, or both when NULL) that has no embedding under the model (NULL: rai4eo.default_model), batch_size images per batched forward pass and per commit, at most max_images; NOTICE progress (done/total, images/s, ETA) every 10 s and a summary. Images whose raster cannot be embedded get a WARNING and are skipped. Sessions running it at once share the work (claims: SELECT ... FOR NO KEY UPDATE SKIP LOCKED); only at the end does a session wait for images still claimed by others. Interrupted, it keeps every committed batch: run it again. Call it outside a transaction block. On Citus (rai4eo_distribute()) the batches run on the workers, one shard of each worker at a time, each on the shard''s own rasters.';

-- ---- sql/src/48_temporal.sql
-- ============================================================================
-- temporal classifiers: class probabilities of a patch's embedding sequence,
-- and from -> to class transitions of changed patches
-- ============================================================================

-- ---- one sequence ---------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo_classify_sequence(seq embedding[], model text DEFAULT NULL) RETURNS real[]
AS 'MODULE_PATHNAME', 'rai4eo_classify_sequence'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo_classify_sequence(embedding[], text) IS
'Class probabilities of a temporal classifier (an lstm or gru model) over a sequence of embeddings, oldest first, in the model''s class order; NULL for a NULL or empty sequence';

CREATE OR REPLACE FUNCTION rai4eo.temporal_input(model text, OUT model_name text, OUT input_model text, OUT sensor text,
	OUT classes jsonb)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m record;
BEGIN
	model_name := rai4eo.resolve_model(model);
	SELECT r.arch, r.config INTO m FROM rai4eo.model r WHERE r.name = model_name;
	IF m.arch NOT IN ('lstm', 'gru') THEN
		RAISE EXCEPTION 'model "%" is not a temporal classifier', model_name USING ERRCODE = 'wrong_object_type',
			DETAIL = format('Its architecture is %s; a sequence classifier is an lstm or gru model.', m.arch);
	END IF;
	input_model := m.config ->> 'input_model';
	IF input_model IS NULL THEN
		RAISE EXCEPTION 'temporal classifier "%" names no input model', model_name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Store it with the configuration key "input_model": the model whose embeddings it reads.';
	END IF;
	sensor := m.config ->> 'sensor';
	classes := m.config -> 'classes';
END
$$;
COMMENT ON FUNCTION rai4eo.temporal_input(text) IS
'A temporal classifier''s inputs: its resolved name, the model whose embeddings it reads, their sensor and the class names; 42809 for another architecture, 22023 without input_model';

CREATE OR REPLACE FUNCTION rai4eo.series_embeddings(patch_id bigint, input_model text, sensor text, first_day date, last_day date)
RETURNS embedding[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	-- an image_id orders a patch's images of one sensor by date: one primary-key range
	SELECT array_agg(e.emb ORDER BY e.image_id)
	FROM rai4eo.embedding e
	WHERE e.image_id BETWEEN rai4eo.image_id_of($1, $3, $4) AND rai4eo.image_id_of($1, $3, $5)
	  AND e.model = $2 AND e.patch_id = $1
$$;
COMMENT ON FUNCTION rai4eo.series_embeddings(bigint, text, text, date, date) IS
'The stored embeddings of a patch''s images of one sensor acquired first_day .. last_day under input_model, oldest first; NULL when there are none';

CREATE OR REPLACE FUNCTION rai4eo.top_class(probs real[], classes jsonb, OUT class text, OUT probability real)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT classes ->> (k.i - 1)::integer, k.p
	FROM unnest(probs) WITH ORDINALITY k(p, i)
	ORDER BY k.p DESC, k.i
	LIMIT 1
$$;
COMMENT ON FUNCTION rai4eo.top_class(real[], jsonb) IS
'The most probable class of a probability vector (the first on ties) and its probability; NULLs for NULL';

CREATE OR REPLACE FUNCTION rai4eo.class_shift(before real[], after real[], classes jsonb, OUT from_class text,
	OUT to_class text, OUT from_probability real, OUT to_probability real)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT (SELECT classes ->> (k.i - 1)::integer FROM unnest(before, after) WITH ORDINALITY k(b, a, i)
			ORDER BY k.b - k.a DESC, k.i LIMIT 1),
		   (SELECT classes ->> (k.i - 1)::integer FROM unnest(before, after) WITH ORDINALITY k(b, a, i)
			ORDER BY k.a - k.b DESC, k.i LIMIT 1),
		   (SELECT k.b FROM unnest(before, after) WITH ORDINALITY k(b, a, i) ORDER BY k.b - k.a DESC, k.i LIMIT 1),
		   (SELECT k.a FROM unnest(before, after) WITH ORDINALITY k(b, a, i) ORDER BY k.a - k.b DESC, k.i LIMIT 1)
	WHERE before IS NOT NULL AND after IS NOT NULL
$$;
COMMENT ON FUNCTION rai4eo.class_shift(real[], real[], jsonb) IS
'The class whose probability fell most from before to after (from, with its probability before) and the one that rose most (to, with its probability after; the first on ties); NULLs when either is NULL';

-- ---- a patch over a period ------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo_classify_series(patch_id bigint, model text, first_day date, last_day date) RETURNS real[]
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c record;
BEGIN
	SELECT * INTO c FROM rai4eo.temporal_input(model);
	IF patch_id IS NULL OR first_day IS NULL OR last_day IS NULL THEN
		RETURN NULL;
	END IF;
	IF first_day > last_day THEN
		RAISE EXCEPTION 'first_day % is after last_day %', first_day, last_day USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN @extschema@.rai4eo_classify_sequence(
		rai4eo.series_embeddings(patch_id, c.input_model, c.sensor, first_day, last_day), c.model_name);
END
$$;
COMMENT ON FUNCTION rai4eo_classify_series(bigint, text, date, date) IS
'Class probabilities of a temporal classifier over the sequence of a patch''s images acquired first_day .. last_day (their embeddings under the classifier''s input_model, oldest first); NULL when the period has none. model NULL: rai4eo.default_model';

CREATE OR REPLACE FUNCTION rai4eo_classify_series_labels(patch_id bigint, model text, first_day date, last_day date)
RETURNS TABLE (class_index integer, class text, probability real)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT k.i::integer, c.classes ->> (k.i - 1)::integer, k.p
	FROM rai4eo.temporal_input($2) c
	CROSS JOIN LATERAL unnest(@extschema@.rai4eo_classify_series($1, c.model_name, $3, $4)) WITH ORDINALITY k(p, i)
	ORDER BY k.i
$$;
COMMENT ON FUNCTION rai4eo_classify_series_labels(bigint, text, date, date) IS
'rai4eo_classify_series with the class names: one row per class (1-based index, name, probability)';

-- ---- transitions -------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION class_transitions(aoi geometry, year integer, classifier text, model text DEFAULT NULL,
	threshold float8 DEFAULT NULL, sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL,
	after_onset boolean DEFAULT true, rule text DEFAULT 'top')
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, from_class text, to_class text,
	from_probability real, to_probability real, onset date)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	c record;
BEGIN
	IF classifier IS NULL THEN
		RAISE EXCEPTION 'classifier must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO c FROM rai4eo.temporal_input(classifier);
	IF rule IS NULL OR rule NOT IN ('top', 'shift') THEN
		RAISE EXCEPTION 'unknown transition rule "%"', rule USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Rules are top (the most probable class of each period) and shift (the class that lost most, the one that gained most).';
	END IF;
	IF year IS NULL THEN
		RETURN;
	END IF;
	IF year NOT BETWEEN 2001 AND 2178 THEN
		RAISE EXCEPTION 'year % is out of range', year USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'Images are dated 2000-01-01 to 2179-06-06; a transition needs the year before.';
	END IF;
	RETURN QUERY
		SELECT y.patch_id, y.sample_id, y.geom,
			   CASE rule WHEN 'top' THEN f.class ELSE d.from_class END,
			   CASE rule WHEN 'top' THEN t.class ELSE d.to_class END,
			   CASE rule WHEN 'top' THEN f.probability ELSE d.from_probability END,
			   CASE rule WHEN 'top' THEN t.probability ELSE d.to_probability END,
			   y.onset
		FROM @extschema@.yearly_change(aoi, year, coalesce(model, c.input_model), threshold, sensor, tolerance, srid) y
		CROSS JOIN LATERAL (SELECT
			@extschema@.rai4eo_classify_sequence(rai4eo.series_embeddings(y.patch_id, c.input_model, c.sensor,
				make_date(year - 1, 1, 1), make_date(year - 1, 12, 31)), c.model_name) AS before,
			@extschema@.rai4eo_classify_sequence(rai4eo.series_embeddings(y.patch_id, c.input_model, c.sensor,
				CASE WHEN after_onset AND y.onset IS NOT NULL THEN y.onset ELSE make_date(year, 1, 1) END,
				make_date(year, 12, 31)), c.model_name) AS after
			WHERE y.changed OFFSET 0) q
		LEFT JOIN LATERAL rai4eo.top_class(q.before, c.classes) f ON true
		LEFT JOIN LATERAL rai4eo.top_class(q.after, c.classes) t ON true
		LEFT JOIN LATERAL rai4eo.class_shift(q.before, q.after, c.classes) d ON true
		ORDER BY y.patch_id;
END
$$;
COMMENT ON FUNCTION class_transitions(geometry, integer, text, text, float8, text, integer, integer, boolean, text) IS
'From -> to classes of the patches of an AOI whose yearly change decision (yearly_change with model, NULL: the classifier''s input_model) is changed: from = the most probable class of the temporal classifier over the year before, to = over the year from the change''s onset (after_onset, when an onset is known) or the whole year; rule top: the most probable class of each period, rule shift: the class whose probability fell most (from) and the one that rose most (to); with both probabilities and the onset. Join patch_id with rai4eo.patch_clc for the CLC labels.';

-- ---- QGIS layer -----------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo.patch_transitions(patch_id bigint, classifier text)
RETURNS TABLE (year integer, from_class text, to_class text, from_probability real, to_probability real, onset date)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	c record;
	span record;
	g @postgis@.geometry;
BEGIN
	SELECT * INTO c FROM rai4eo.temporal_input(classifier);
	SELECT @postgis@.ST_PointOnSurface(p.geom) INTO g FROM rai4eo.patch p WHERE p.patch_id = patch_transitions.patch_id;
	-- The years with embeddings: the first and last image of the patch, one index range
	SELECT min(e.image_id) AS lo, max(e.image_id) AS hi INTO span
	FROM rai4eo.embedding e
	WHERE e.image_id BETWEEN rai4eo.image_id_of(patch_transitions.patch_id, c.sensor, date '2000-01-01')
						 AND rai4eo.image_id_of(patch_transitions.patch_id, c.sensor, date '2179-06-06')
	  AND e.model = c.input_model AND e.patch_id = patch_transitions.patch_id;
	IF g IS NULL OR span.lo IS NULL THEN
		RETURN;
	END IF;
	RETURN QUERY
		SELECT y.y, t.from_class, t.to_class, t.from_probability, t.to_probability, t.onset
		FROM generate_series(extract(year FROM date '2000-01-01' + (span.lo & 65535)::integer)::integer + 1,
							 extract(year FROM date '2000-01-01' + (span.hi & 65535)::integer)::integer) y(y)
		CROSS JOIN LATERAL @extschema@.class_transitions(g, y.y, c.model_name, NULL::text, NULL::float8,
														 c.sensor, 2, @postgis@.ST_SRID(g)) t
		WHERE t.patch_id = patch_transitions.patch_id;
END
$$;
COMMENT ON FUNCTION rai4eo.patch_transitions(bigint, text) IS
'class_transitions of one patch for every year that has a year before it, with the classifier''s input_model and calibrated decision (sensor of the classifier, tolerance 2)';

CREATE OR REPLACE VIEW rai4eo.class_transition AS
SELECT p.patch_id * 10000 + t.year AS id, p.patch_id, p.sample_id, t.year, c.name AS classifier,
	   t.from_class, t.to_class, t.from_probability, t.to_probability, t.onset, p.geom
FROM (SELECT m.name FROM rai4eo.model m WHERE m.arch IN ('lstm', 'gru') AND m.config ? 'input_model'
	  AND jsonb_typeof(m.config -> 'input_model') = 'string'
	  ORDER BY m.created DESC, m.name LIMIT 1) c
CROSS JOIN rai4eo.patch p
CROSS JOIN LATERAL rai4eo.patch_transitions(p.patch_id, c.name) t;
COMMENT ON VIEW rai4eo.class_transition IS
'QGIS-ready from -> to class transitions of the changed patches, per patch and year, by the most recently stored temporal classifier with an input_model: key id = patch_id * 10000 + year, geometry geom in each patch''s CRS. Filter by bounding box (geom && ...) and year: work is done per patch read.';

-- ---- sql/src/50_aoi.sql
-- ============================================================================
-- patches of an AOI (the first step of every change function)
-- ============================================================================

-- ---- patches of an AOI ------------------------------------------------------

-- Patches of different UTM zones have different SRIDs; the AOI is transformed
-- into each of them, listed by patch_srid_idx (40_corpus.sql) without reading the table.

CREATE OR REPLACE FUNCTION rai4eo.patch_srids() RETURNS SETOF integer
LANGUAGE sql STABLE PARALLEL SAFE ROWS 10 SET search_path = pg_catalog, pg_temp AS $$
	WITH RECURSIVE s(srid) AS (
		SELECT min(@postgis@.ST_SRID(geom)) FROM rai4eo.patch
		UNION ALL
		SELECT (SELECT min(@postgis@.ST_SRID(p.geom)) FROM rai4eo.patch p WHERE @postgis@.ST_SRID(p.geom) > s.srid)
		FROM s WHERE s.srid IS NOT NULL)
	SELECT srid FROM s WHERE srid IS NOT NULL
$$;

COMMENT ON FUNCTION rai4eo.patch_srids() IS
'The distinct SRIDs of rai4eo.patch footprints, ascending (a skip scan of patch_srid_idx)';

CREATE OR REPLACE FUNCTION rai4eo.aoi_transform(aoi geometry, srid integer) RETURNS geometry
	AS 'MODULE_PATHNAME', 'rai4eo_aoi_transform' LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION rai4eo.aoi_transform(geometry, integer) IS
'PostGIS''s ST_Transform(aoi, srid), raising 22023 (with PostGIS''s message as the detail) where PostGIS would fail with an internal error (XX000) on coordinates the projection cannot take';

-- A transverse Mercator CRS (every UTM zone) is only usable near its central
-- meridian: far from it the projection folds over (90 degrees away it sends the
-- whole of a meridian to one point, so a world envelope collapses to a line).
-- An AOI reaching further than this from the meridian is clipped to the band
-- of longitudes within it, and to latitudes -89 .. 89, before it is projected.
-- 20 degrees covers every patch a UTM zone can hold (zones are 6 wide) with
-- room for patches filed under a neighbouring zone.
CREATE OR REPLACE FUNCTION rai4eo.aoi_in_srid(aoi geometry, srid integer) RETURNS geometry
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	half_width CONSTANT float8 := 20;
	src integer;
	src_proj text;
	dst_proj text;
	meridian float8;
	geo @postgis@.geometry;
	band @postgis@.geometry;
BEGIN
	IF aoi IS NULL OR srid IS NULL OR @postgis@.ST_IsEmpty(aoi) THEN
		RETURN NULL;
	END IF;
	src := @postgis@.ST_SRID(aoi);
	IF src = srid THEN
		RETURN aoi;
	END IF;
	SELECT r.proj4text INTO src_proj FROM @postgis@.spatial_ref_sys r WHERE r.srid = src;
	IF src_proj IS NULL THEN
		RAISE EXCEPTION 'the AOI has SRID %, which is not in spatial_ref_sys', src
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give the AOI a known SRID, e.g. ST_SetSRID(aoi, 4326) for longitude / latitude.';
	END IF;
	-- PROJ takes longitudes and latitudes out of range without an error and
	-- returns nonsense: check them here.
	IF src_proj ~ '\+proj=longlat\M'
	   -- ST_XMin takes a box3d: convert explicitly, so that no overload taking a
	   -- geometry (planted where PostGIS lives) is a better match.
	   AND (@postgis@.ST_XMin(@postgis@.Box3D(aoi)) < -180 OR @postgis@.ST_XMax(@postgis@.Box3D(aoi)) > 180
			OR @postgis@.ST_YMin(@postgis@.Box3D(aoi)) < -90 OR @postgis@.ST_YMax(@postgis@.Box3D(aoi)) > 90) THEN
		RAISE EXCEPTION 'the AOI''s coordinates are outside longitude -180 .. 180 and latitude -90 .. 90'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Its extent is %s (SRID %s).', @postgis@.Box2D(aoi)::text, src),
				  HINT = 'Longitude comes first: ST_MakePoint(lon, lat), ST_MakeEnvelope(lon_min, lat_min, lon_max, lat_max, 4326).';
	END IF;

	SELECT r.proj4text INTO dst_proj FROM @postgis@.spatial_ref_sys r WHERE r.srid = aoi_in_srid.srid;
	IF dst_proj ~ '\+proj=utm\M' THEN
		meridian := 6 * substring(dst_proj FROM '\+zone=([0-9]+)')::integer - 183;
	ELSIF dst_proj ~ '\+proj=e?tmerc\M' THEN
		meridian := coalesce(substring(dst_proj FROM '\+lon_0=([-+0-9.eE]+)')::float8, 0);
	END IF;
	IF meridian IS NULL THEN
		RETURN rai4eo.aoi_transform(aoi, srid);
	END IF;

	geo := CASE WHEN src = 4326 THEN aoi ELSE rai4eo.aoi_transform(aoi, 4326) END;
	band := @postgis@.ST_MakeEnvelope(meridian - half_width, -89, meridian + half_width, 89, 4326);
	IF @postgis@.ST_Envelope(geo) OPERATOR(@postgis@.@) band THEN
		-- Within the band: projected as given (vertices only, as ST_Transform does).
		RETURN rai4eo.aoi_transform(aoi, srid);
	END IF;
	geo := @postgis@.ST_ClipByBox2D(geo, band::@postgis@.box2d);
	IF @postgis@.ST_IsEmpty(geo) THEN
		RETURN NULL;
	END IF;
	-- Edges of a degree at most, so that the projected outline follows the curves.
	RETURN rai4eo.aoi_transform(@postgis@.ST_Segmentize(geo, 1.0::float8), srid);
END
$$;

COMMENT ON FUNCTION rai4eo.aoi_in_srid(geometry, integer) IS
'The AOI in the CRS srid, for matching patches there: as given when the SRIDs agree; for a transverse Mercator CRS (UTM) first clipped to the longitudes within 20 degrees of its central meridian (latitudes -89 .. 89) when it reaches beyond them, then projected; NULL when nothing is left. Unknown SRIDs, longitudes/latitudes out of range and coordinates the projection cannot take raise 22023';

-- Inlined into its callers for speed, so it carries no SET clause and every
-- name is qualified (docs/sql-conventions.md, the second exception).
CREATE OR REPLACE FUNCTION rai4eo.aoi_patches(aoi geometry, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT p.patch_id, p.sample_id, p.geom
	FROM rai4eo.patch_srids() s(srid)
	-- OFFSET 0 keeps the transform once per SRID instead of once per patch.
	CROSS JOIN LATERAL (SELECT rai4eo.aoi_in_srid($1, s.srid) AS g WHERE NOT @postgis@.ST_IsEmpty($1) OFFSET 0) a
	JOIN rai4eo.patch p ON p.geom OPERATOR(@postgis@.&&) a.g
	WHERE ($2 IS NULL OR s.srid OPERATOR(pg_catalog.=) $2)
	  -- The bounding boxes of other SRIDs' patches may overlap by accident, and
	  -- ST_Intersects refuses mixed SRIDs: test the SRID first.
	  AND CASE WHEN @postgis@.ST_SRID(p.geom) OPERATOR(pg_catalog.<>) s.srid THEN false
			   -- A polygon AOI keeps the patches whose interior it overlaps: the
			   -- neighbours that only touch its boundary (e.g. of an envelope
			   -- drawn on the 600 m grid) are not in it.
			   WHEN @postgis@.ST_Dimension(a.g) OPERATOR(pg_catalog.=) 2
					AND @postgis@.GeometryType(a.g) OPERATOR(pg_catalog.<>) 'GEOMETRYCOLLECTION'::pg_catalog.text
			   THEN @postgis@.ST_Intersects(p.geom, a.g) AND NOT @postgis@.ST_Touches(p.geom, a.g)
			   ELSE @postgis@.ST_Intersects(p.geom, a.g) END
$$;

COMMENT ON FUNCTION rai4eo.aoi_patches(geometry, integer) IS
'Patches of an AOI: the AOI is brought into each patch CRS by rai4eo.aoi_in_srid (a world-sized AOI works: it is clipped to each UTM zone''s usable band first; otherwise vertices only, so segmentize long edges first); a polygon AOI keeps the patches whose interior it overlaps (not those touching only its boundary), a point or line AOI every patch it intersects; srid keeps only the patches of that CRS; NULL or empty AOI: no rows; a bad AOI (unknown SRID, coordinates out of range) raises 22023';

-- ---- sql/src/52_pairing.sql
-- ============================================================================
-- pairing: thresholds and the daily distances of one patch
-- ============================================================================

-- The daily change of a patch on day d is the cosine distance between the
-- embedding of its image on d and the embedding of its image of the same sensor
-- nearest to d - 365 days, at most `tolerance` days away; of two equally near
-- images the earlier wins.  Only images with an embedding under the model take
-- part: an image not embedded (yet, or because its raster could not be read)
-- counts as not acquired.  A day without a partner is not compared, and neither
-- is a pair whose distance is NaN (a zero embedding has no direction).
--
-- Everything below reads rai4eo.embedding alone.  An image_id is
-- patch_id * 2^18 + sensor code * 2^16 + days since 2000-01-01 (image_id_of in
-- 40_corpus.sql), so the primary key (image_id, model) is ordered like
-- (patch_id, sensor, acquired): the images of one patch and sensor in a date
-- range are one index range, and the partner of image i lies in
-- [i - 365 - tolerance, i - 365 + tolerance].  Pairing is one btree descent per
-- compared image, all inside one set-based query, and never touches the raster
-- table.

-- ---- thresholds ---------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo.change_threshold(model text, threshold float8 DEFAULT NULL) RETURNS float8
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	j jsonb;
	v float8 := threshold;
	source text := 'argument';
BEGIN
	IF v IS NULL THEN
		SELECT m.config -> 'change_threshold' INTO j FROM rai4eo.model m WHERE m.name = model;
		IF jsonb_typeof(j) = 'number' THEN
			v := j::float8;
			source := format('change_threshold of model "%s"', model);
		ELSIF j IS NOT NULL AND jsonb_typeof(j) <> 'null' THEN
			RAISE EXCEPTION 'change_threshold of model "%" is not a number: %', model, j
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Calibrate it again with rai4eo_calibrate_threshold.';
		END IF;
	END IF;
	IF v IS NULL THEN
		v := NULLIF(current_setting('rai4eo.change_threshold', true), '')::float8;
		source := 'rai4eo.change_threshold';
	END IF;
	IF v IS NULL THEN
		-- 55000 object_not_in_prerequisite_state: every argument is valid; what is
		-- missing is state that must be set up first (a calibration or a setting),
		-- as for currval() before nextval().
		RAISE EXCEPTION 'no change threshold for model "%"', model
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'No threshold was given, the model has no calibrated change_threshold and rai4eo.change_threshold is not set.',
				  HINT = 'Calibrate the model with rai4eo_calibrate_threshold(model, year, truth_table), pass threshold => 0.3, or SET rai4eo.change_threshold = ''0.3''.';
	END IF;
	IF NOT (v >= 0 AND v <= 2) THEN
		RAISE EXCEPTION 'change threshold % (%) is not a cosine distance in [0, 2]', v, source
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN v;
END
$$;

COMMENT ON FUNCTION rai4eo.change_threshold(text, float8) IS
'The change threshold in force for a model: the argument when given, else the model''s calibrated config->''change_threshold'', else the setting rai4eo.change_threshold; none: ERROR 55000. A day is changed when its distance is greater than the threshold.';

-- ---- pairing ------------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo.daily_pairs(patch_id bigint, model text, sensor text, first_day date, last_day date,
	tolerance integer DEFAULT 2)
RETURNS TABLE (image_id bigint, acquired date, prior_image_id bigint, prior_acquired date, distance float8,
	emb @extschema@.embedding, prior_emb @extschema@.embedding)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	-- Inlined into its callers' plans, which a SET clause would prevent: so every
	-- function, operator and type is schema-qualified (docs/sql-conventions.md);
	-- BETWEEN and CASE x WHEN would look up >=, <= and = by name, so neither is used;
	-- OPERATOR() binds left to right at one precedence, hence the parentheses.
	SELECT c.image_id,
		   '2000-01-01'::pg_catalog.date OPERATOR(pg_catalog.+) (c.image_id OPERATOR(pg_catalog.&) 65535)::pg_catalog.int4,
		   q.image_id,
		   '2000-01-01'::pg_catalog.date OPERATOR(pg_catalog.+) (q.image_id OPERATOR(pg_catalog.&) 65535)::pg_catalog.int4,
		   q.distance, c.emb, q.emb
	FROM (SELECT ($1 OPERATOR(pg_catalog.<<) 18) OPERATOR(pg_catalog.+)
				 ((CASE WHEN $3 OPERATOR(pg_catalog.=) 'PF-SR'::pg_catalog.text THEN 0
						WHEN $3 OPERATOR(pg_catalog.=) 'S2-SR'::pg_catalog.text THEN 1 END)::pg_catalog.int8
				  OPERATOR(pg_catalog.<<) 16) AS base) b
	JOIN rai4eo.embedding c
	  ON c.model OPERATOR(pg_catalog.=) $2
	 -- Dates outside 2000-01-01 .. 2179-06-06 have no image: clamp to the days field.
	 AND c.image_id OPERATOR(pg_catalog.>=)
			(b.base OPERATOR(pg_catalog.+) greatest($4 OPERATOR(pg_catalog.-) '2000-01-01'::pg_catalog.date, 0))
	 AND c.image_id OPERATOR(pg_catalog.<=)
			(b.base OPERATOR(pg_catalog.+) least($5 OPERATOR(pg_catalog.-) '2000-01-01'::pg_catalog.date, 65535))
	CROSS JOIN LATERAL (
		SELECT e.image_id, e.emb, @extschema@.cosine_change(c.emb, e.emb) AS distance
		FROM rai4eo.embedding e
		WHERE e.model OPERATOR(pg_catalog.=) $2
		  -- Same patch and sensor (never below the group's day 0), strictly earlier.
		  AND e.image_id OPERATOR(pg_catalog.>=)
				greatest((c.image_id OPERATOR(pg_catalog.-) 365) OPERATOR(pg_catalog.-) $6, b.base)
		  AND e.image_id OPERATOR(pg_catalog.<=)
				least((c.image_id OPERATOR(pg_catalog.-) 365) OPERATOR(pg_catalog.+) $6, c.image_id OPERATOR(pg_catalog.-) 1)
		ORDER BY pg_catalog.abs(e.image_id OPERATOR(pg_catalog.-) (c.image_id OPERATOR(pg_catalog.-) 365)), e.image_id
		LIMIT 1) q
	WHERE q.distance OPERATOR(pg_catalog.<>) 'NaN'::pg_catalog.float8
$$;

COMMENT ON FUNCTION rai4eo.daily_pairs(bigint, text, text, date, date, integer) IS
'The pairs of one patch with both embeddings: for each embedded image of the sensor acquired from first_day to last_day, the image nearest to 365 days earlier within tolerance days (ties: the earlier), their cosine distance, emb (the day''s) and prior_emb (its partner''s); days without a partner or with a NaN distance give no row. The pairing under every change function.';

CREATE OR REPLACE FUNCTION rai4eo.daily_distances(patch_id bigint, model text, sensor text, first_day date, last_day date,
	tolerance integer DEFAULT 2)
RETURNS TABLE (image_id bigint, acquired date, prior_image_id bigint, prior_acquired date, distance float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	-- Inlined like daily_pairs, whose columns it selects.
	SELECT d.image_id, d.acquired, d.prior_image_id, d.prior_acquired, d.distance
	FROM rai4eo.daily_pairs($1, $2, $3, $4, $5, $6) d
$$;

COMMENT ON FUNCTION rai4eo.daily_distances(bigint, text, text, date, date, integer) IS
'Daily change of one patch: for each embedded image of the sensor acquired from first_day to last_day, the image nearest to 365 days earlier within tolerance days (ties: the earlier) and their cosine distance; days without a partner or with a NaN distance give no row. model is a model name as stored (not resolved: NULL gives no rows); sensor PF-SR or S2-SR (anything else: no rows).';

-- ---- sql/src/54_change.sql
-- ============================================================================
-- change rows: daily_change, yearly_change
-- ============================================================================

-- ---- per-patch change over a period -------------------------------------------
--
-- The entry points run with jit = off: the planner cannot estimate the
-- per-patch index ranges (rows=16222 for 73), so the costs pass jit_above_cost
-- by orders of magnitude, and compiling with inlining and optimisation costs
-- 0.4 to 0.9 s per call for no gain in an index-lookup-bound plan.

CREATE OR REPLACE FUNCTION rai4eo.change_args(aoi geometry, model text, threshold float8, sensor text, tolerance integer,
	OUT model_name text, OUT threshold_value float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF sensor IS NULL THEN
		RAISE EXCEPTION 'sensor must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Sensors are PF-SR and S2-SR.';
	ELSIF sensor NOT IN ('PF-SR', 'S2-SR') THEN
		RAISE EXCEPTION 'unknown sensor "%"', sensor USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Sensors are PF-SR and S2-SR.';
	END IF;
	IF tolerance IS NULL THEN
		RAISE EXCEPTION 'tolerance must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	ELSIF tolerance NOT BETWEEN 0 AND 182 THEN
		RAISE EXCEPTION 'tolerance % is out of range', tolerance USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The partner of day d is searched within d - 365 days +/- tolerance; tolerance runs from 0 to 182 days.';
	END IF;
	IF @postgis@.ST_SRID(aoi) = 0 AND NOT @postgis@.ST_IsEmpty(aoi) THEN
		RAISE EXCEPTION 'the AOI has no SRID' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Give it its coordinate reference system, e.g. ST_SetSRID(aoi, 4326) or ST_MakeEnvelope(xmin, ymin, xmax, ymax, 32633).';
	END IF;
	model_name := rai4eo.resolve_model(model);
	threshold_value := rai4eo.change_threshold(model_name, threshold);
END
$$;

COMMENT ON FUNCTION rai4eo.change_args(geometry, text, float8, text, integer) IS
'Check the common arguments of the change functions and resolve the model (rai4eo.resolve_model) and threshold (rai4eo.change_threshold)';

CREATE OR REPLACE FUNCTION rai4eo.patch_change_stats(aoi geometry, srid integer, first_day date, last_day date,
	model text, threshold float8, sensor text, tolerance integer)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, days_compared integer, days_changed integer,
	change_rate float8, mean_distance float8)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.patch_id, p.sample_id, p.geom, s.n::integer, s.k::integer, s.k::float8 / NULLIF(s.n, 0), s.mean
	FROM rai4eo.aoi_patches($1, $2) p
	CROSS JOIN LATERAL (
		SELECT count(*) AS n, count(*) FILTER (WHERE d.distance > $6) AS k, avg(d.distance) AS mean
		FROM rai4eo.daily_pairs(p.patch_id, $5, $7, $3, $4, $8) d) s
$$;

COMMENT ON FUNCTION rai4eo.patch_change_stats(geometry, integer, date, date, text, float8, text, integer) IS
'Change of every patch of an AOI over first_day .. last_day with an already resolved model and threshold: days compared, days changed (distance > threshold), their ratio and the mean distance (NULL when nothing was compared). One set-based query; the engine under daily_change, yearly_change and the heatmaps.';

CREATE OR REPLACE FUNCTION daily_change(aoi geometry, day date, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, distance float8, changed boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	a record;
BEGIN
	SELECT * INTO a FROM rai4eo.change_args(aoi, model, threshold, sensor, tolerance);
	IF day IS NULL THEN
		RETURN;
	END IF;
	RETURN QUERY
		SELECT s.patch_id, s.sample_id, s.geom, s.mean_distance, CASE WHEN s.days_compared > 0 THEN s.days_changed > 0 END
		FROM rai4eo.patch_change_stats(aoi, srid, day, day, a.model_name, a.threshold_value, sensor, tolerance) s
		ORDER BY s.patch_id;
END
$$;

COMMENT ON FUNCTION daily_change(geometry, date, text, float8, text, integer, integer) IS
'Daily change map: one row per patch of the AOI with the cosine distance between its image on day and its image nearest to day - 365 days (within tolerance days; ties: the earlier), and changed = distance > threshold; distance and changed are NULL where the day has no pair. model NULL: rai4eo.default_model; threshold NULL: the model''s calibrated one, else rai4eo.change_threshold. The AOI is transformed into the patches'' CRS; srid keeps the patches of one CRS; no patch: no rows.';

CREATE OR REPLACE FUNCTION yearly_change(aoi geometry, year integer, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, days_compared integer, days_changed integer,
	change_rate float8, mean_distance float8, score float8, changed boolean, onset date)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	a record;
	d record;
	centres @extschema@.embedding[];
BEGIN
	SELECT * INTO a FROM rai4eo.change_args(aoi, model, threshold, sensor, tolerance);
	SELECT * INTO d FROM rai4eo.change_decision(a.model_name, threshold);
	IF d.method = 'cluster' THEN
		centres := rai4eo.model_states(a.model_name);
		IF centres IS NULL THEN
			RAISE EXCEPTION 'model "%" decides by cluster states but has none', a.model_name
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = format('Fit them with rai4eo_cluster(%L) and calibrate again.', a.model_name);
		END IF;
	END IF;
	IF year IS NULL THEN
		RETURN;
	END IF;
	RETURN QUERY
		SELECT s.patch_id, s.sample_id, s.geom, s.days_compared, s.days_changed, s.change_rate, s.mean_distance,
			   x.score, x.score > d.cut, CASE WHEN x.score > d.cut THEN x.onset END
		FROM rai4eo.patch_scores(aoi, srid, year, a.model_name, sensor, tolerance, a.threshold_value,
								 d.score_threshold, d.k, d.method IN ('annual', 'seasonal', 'zscore'), centres) s
		CROSS JOIN LATERAL (SELECT
			CASE d.method WHEN 'rate' THEN s.rate WHEN 'persistence' THEN s.persistence WHEN 'annual' THEN s.annual
						  WHEN 'seasonal' THEN s.seasonal WHEN 'zscore' THEN s.zscore WHEN 'cluster' THEN s.cluster END AS score,
			CASE d.method WHEN 'persistence' THEN s.persistence_onset WHEN 'cluster' THEN s.cluster_onset
						  ELSE s.change_point END AS onset) x
		ORDER BY s.patch_id;
END
$$;

COMMENT ON FUNCTION yearly_change(geometry, integer, text, float8, text, integer, integer) IS
'Yearly change per patch of the AOI: of the days of the year with an image paired one year earlier (see daily_change), how many were compared, how many changed (distance > threshold), change_rate = days_changed / days_compared and the mean distance; 0 compared and NULL rate and mean where nothing was compared. Then the model''s decision (rai4eo_calibrate; uncalibrated: change_rate > 0.1): score of the chosen method, changed = score > its cut, onset = the estimated first day of the change where changed. No patch: no rows.';

-- ---- sql/src/56_score.sql
-- ============================================================================
-- change scores of a patch over a year, from its stored embeddings
-- ============================================================================
--
-- Every score reads rai4eo.embedding alone, so it works for any model,
-- external ones included.  A score is high where the patch changed:
--
--   rate         the seeds' rule: share of the year's compared days whose
--                distance to the image one year earlier (daily_distances'
--                pairing) is greater than the day threshold t
--   persistence  CCDC-like: a change is confirmed after k consecutive
--                exceeding compared days; the score is the share of the
--                year's compared days that exceed from that onset on (0 when
--                no run of k exists).  A structural change keeps exceeding,
--                phenology shifts and noise give short runs.
--   annual       cosine distance between the mean embedding of Y's compared
--                days and of their partners in Y - 1 (AlphaEarth-style annual
--                composites, season-aligned: the same days of both years)
--   seasonal     mean over the calendar months with pairs of the cosine
--                distance between the two years' monthly mean embeddings
--   zscore       robust z of year Y against the patch's own variability: the
--                cosine distances of Y's days to the mean embedding of their
--                Y - 1 partners, their median minus the median of the
--                partners' own distances to that mean, over 1.4826 x the MAD
--                of the latter (at least 0.001): land-cover types differ in
--                scale
--
-- The composites come from the pairs in the same pass (the C aggregate
-- rai4eo.pair_composites), so every score reads each pair once.
--   cluster      k-means states (58_cluster.sql): the persistence score of the
--                days whose state differs from the state of their partner one
--                year earlier, run length k
--
-- The onset of a change is the first day of the confirming run (persistence,
-- cluster) or the least-squares change point of the daily distances (the
-- others: the first day of the later, higher segment).

-- ---- series kernels (C, src/core/change_score.c) ------------------------------

CREATE OR REPLACE FUNCTION rai4eo.change_persistence(distances float8[], threshold float8, k integer) RETURNS float8
AS 'MODULE_PATHNAME', 'rai4eo_change_persistence' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.change_persistence(float8[], float8, integer) IS
'Persistence score of a day series in date order: from the first run of k consecutive values greater than threshold (the onset), the share of all values that are greater; 0 without such a run, NULL for an empty series. k = 1 gives the plain share of values above threshold (the rate). k outside 1 .. 366: 22023; NULL elements: 22004.';

CREATE OR REPLACE FUNCTION rai4eo.change_onset(distances float8[], threshold float8, k integer) RETURNS integer
AS 'MODULE_PATHNAME', 'rai4eo_change_onset' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.change_onset(float8[], float8, integer) IS
'1-based position of the first of k consecutive values greater than threshold (the onset of a confirmed change), NULL when there is none';

CREATE OR REPLACE FUNCTION rai4eo.change_point(distances float8[]) RETURNS integer
AS 'MODULE_PATHNAME', 'rai4eo_change_point' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.change_point(float8[]) IS
'Least-squares single change point of a series: the 1-based position s maximising (s-1)(n-s+1)/n (mean after - mean before)^2 over the splits where the mean rises (ties: the earliest); 1 when none rises; NULL for an empty series';

CREATE OR REPLACE FUNCTION rai4eo.robust_z(test float8[], base float8[], scale_floor float8 DEFAULT 0.001) RETURNS float8
AS 'MODULE_PATHNAME', 'rai4eo_robust_z' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.robust_z(float8[], float8[], float8) IS
'Robust z of a sample against a baseline: (median(test) - median(base)) / greatest(1.4826 MAD(base), scale_floor); NULL when either is empty; scale_floor must be positive (22023)';

CREATE OR REPLACE FUNCTION rai4eo.nearest_state(e embedding, centres embedding[]) RETURNS integer
AS 'MODULE_PATHNAME', 'rai4eo_nearest_state' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OR REPLACE FUNCTION rai4eo.state_changed(e embedding, prior embedding, centres embedding[]) RETURNS integer
AS 'MODULE_PATHNAME', 'rai4eo_state_changed' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.state_changed(embedding, embedding, embedding[]) IS
'1 when nearest_state(e, centres) and nearest_state(prior, centres) differ, 0 when they are the same, NULL when either is a zero vector or there are no centres: the cluster score''s day series';

COMMENT ON FUNCTION rai4eo.nearest_state(embedding, embedding[]) IS
'1-based position of the centre most similar in cosine to e (ties: the first); NULL for a zero vector or no centres; dimensions differing: 22000';

CREATE OR REPLACE FUNCTION rai4eo.pair_composites_accum(internal, date, embedding, embedding) RETURNS internal
AS 'MODULE_PATHNAME', 'rai4eo_pair_accum' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.pair_composites_accum(internal, date, embedding, embedding) IS
'Transition function of rai4eo.pair_composites: keeps the pairs';
CREATE OR REPLACE FUNCTION rai4eo.pair_composites_final(internal) RETURNS float8[]
AS 'MODULE_PATHNAME', 'rai4eo_pair_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.pair_composites_final(internal) IS
'Final function of rai4eo.pair_composites: {annual, seasonal, zscore}';
CREATE OR REPLACE AGGREGATE rai4eo.pair_composites(date, embedding, embedding) (
	SFUNC = rai4eo.pair_composites_accum,
	STYPE = internal,
	FINALFUNC = rai4eo.pair_composites_final,
	-- Safe in a parallel worker; there is no combine function, so never split.
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE rai4eo.pair_composites(date, embedding, embedding) IS
'Composites of a patch''s pairs (day, its embedding, its partner''s one year earlier), as {annual, seasonal, zscore}: annual the cosine distance between the mean embeddings of the days and of their partners; seasonal the mean over calendar months of that distance within the month; zscore the robust z (scale floor 0.001) of the days'' distances to the partners'' mean against the partners'' own; NULL elements where a mean is a zero vector, NULL without pairs';

-- The pairs of a patch with their embeddings come from rai4eo.daily_pairs (52_pairing.sql).

-- ---- per-patch series -----------------------------------------------------------

-- The day series of one patch in first_day .. last_day: counts at threshold t,
-- the distances and dates in date order, and when centres are given the 0/1
-- series "state differs from the partner's state".  Inlined (exception 2).
CREATE OR REPLACE FUNCTION rai4eo.patch_series(patch_id bigint, model text, sensor text, first_day date, last_day date,
	tolerance integer, t float8, centres @extschema@.embedding[], composites boolean DEFAULT false)
RETURNS TABLE (days_compared integer, days_changed integer, mean_distance float8, days date[], distances float8[],
	state_changes float8[], composite float8[])
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT pg_catalog.count(*)::integer,
		   pg_catalog.count(*) FILTER (WHERE d.distance OPERATOR(pg_catalog.>) $7)::integer,
		   pg_catalog.avg(d.distance),
		   pg_catalog.array_agg(d.acquired ORDER BY d.acquired),
		   pg_catalog.array_agg(d.distance ORDER BY d.acquired),
		   -- (a zero vector has a NaN distance: daily_pairs already left it out)
		   pg_catalog.array_agg(coalesce(rai4eo.state_changed(d.emb, d.prior_emb, $8), 0)::float8
								ORDER BY d.acquired) FILTER (WHERE $8 IS NOT NULL),
		   rai4eo.pair_composites(d.acquired, d.emb, d.prior_emb) FILTER (WHERE $9)
	FROM rai4eo.daily_pairs($1, $2, $3, $4, $5, $6) d
$$;

COMMENT ON FUNCTION rai4eo.patch_series(bigint, text, text, date, date, integer, float8, embedding[], boolean) IS
'Day series of one patch: days compared, days changed (distance > t), mean distance, the dates and distances in date order, with centres the 0/1 series "the day''s cluster state differs from its partner''s" (NULL without centres), with composites {annual, seasonal, zscore} of rai4eo.pair_composites (else NULL)';

-- ---- every score of every patch of an AOI ------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo.patch_scores(aoi geometry, srid integer, year integer, model text, sensor text, tolerance integer,
	threshold float8, score_threshold float8, k integer, composites boolean, centres embedding[])
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, days_compared integer, days_changed integer,
	change_rate float8, mean_distance float8, rate float8, persistence float8, persistence_onset date,
	change_point date, annual float8, seasonal float8, zscore float8, cluster float8, cluster_onset date)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
	-- jit = off: see 54_change.sql (the planner's costs pass jit_above_cost for an index-bound plan)
	SELECT p.patch_id, p.sample_id, p.geom, s.days_compared, s.days_changed,
		   s.days_changed::float8 / NULLIF(s.days_compared, 0), s.mean_distance,
		   rai4eo.change_persistence(s.distances, $8, 1),
		   rai4eo.change_persistence(s.distances, $8, $9),
		   s.days[rai4eo.change_onset(s.distances, $8, $9)],
		   s.days[rai4eo.change_point(s.distances)],
		   s.composite[1], s.composite[2], s.composite[3],
		   rai4eo.change_persistence(s.state_changes, 0.5, $9),
		   s.days[rai4eo.change_onset(s.state_changes, 0.5, $9)]
	FROM rai4eo.aoi_patches($1, $2) p
	CROSS JOIN LATERAL rai4eo.patch_series(p.patch_id, $4, $5, make_date($3, 1, 1), make_date($3, 12, 31), $6, $7, $11, $10) s
$$;

COMMENT ON FUNCTION rai4eo.patch_scores(geometry, integer, integer, text, text, integer, float8, float8, integer, boolean, embedding[]) IS
'Every change score of every patch of an AOI for a year (see 56_score.sql): days compared and changed at threshold, change_rate and mean distance as yearly_change, rate and persistence at score_threshold (run length k) with the persistence onset, the change point of the daily distances, the composites when composites is true (else NULL), the cluster score and onset when centres are given (else NULL)';

-- ---- the decision stored by rai4eo_calibrate ---------------------------------------

CREATE OR REPLACE FUNCTION rai4eo.change_methods() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT ARRAY['rate', 'persistence', 'annual', 'seasonal', 'zscore', 'cluster']
$$;
COMMENT ON FUNCTION rai4eo.change_methods() IS
'The change score methods, simplest first (the order that breaks ties in rai4eo_calibrate)';

CREATE OR REPLACE FUNCTION rai4eo.change_decision(model text, threshold float8 DEFAULT NULL,
	OUT method text, OUT score_threshold float8, OUT k integer, OUT cut float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	d jsonb;
BEGIN
	SELECT m.config -> 'change_decision' INTO d FROM rai4eo.model m WHERE m.name = model;
	IF d IS NULL OR jsonb_typeof(d) = 'null' THEN
		-- The seeds' rule: more than 10 % of the compared days changed.
		method := 'rate';
		k := 1;
		cut := 0.1;
	ELSE
		IF jsonb_typeof(d) <> 'object' OR NOT (d ->> 'method') = ANY (rai4eo.change_methods())
		   OR jsonb_typeof(d -> 'cut') IS DISTINCT FROM 'number' THEN
			RAISE EXCEPTION 'change_decision of model "%" is not valid: %', model, d
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Calibrate it again with rai4eo_calibrate(model, year, truth).';
		END IF;
		method := d ->> 'method';
		cut := (d ->> 'cut')::float8;
		k := coalesce((d ->> 'k')::integer, 1);
		score_threshold := (d ->> 'threshold')::float8;
	END IF;
	IF method IN ('rate', 'persistence') THEN
		-- An explicit threshold wins; else the decision's own; else the model's.
		score_threshold := coalesce(threshold, score_threshold, rai4eo.change_threshold(model, NULL));
	END IF;
END
$$;

COMMENT ON FUNCTION rai4eo.change_decision(text, float8) IS
'The change decision in force for a model (resolved name): method, day threshold (rate and persistence: the argument, else the calibrated one, else rai4eo.change_threshold), run length k and cut (changed = score > cut), from config->''change_decision'' written by rai4eo_calibrate; uncalibrated: the seeds'' rule, rate > 0.1 at the threshold in force';

-- ---- sql/src/58_cluster.sql
-- ============================================================================
-- clustering in embedding space: k-means states of a model's embeddings
-- ============================================================================
--
-- The seeds' refinement: a patch is a sequence of states (the nearest of k
-- centres of a model's embeddings), and a change is a persistent transition
-- to another state.  rai4eo_cluster fits the centres (spherical k-means:
-- cosine similarity, unit-norm centres) on a deterministic sample of the
-- model's embeddings and stores them here; the "cluster" score
-- (56_score.sql) uses them.

-- The centres live in rai4eo.state (30_model.sql: a table, so a state fragment).


CREATE OR REPLACE FUNCTION rai4eo.model_states(model text) RETURNS embedding[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT array_agg(s.centre ORDER BY s.state) FROM rai4eo.state s WHERE s.model = $1
$$;
COMMENT ON FUNCTION rai4eo.model_states(text) IS 'The state centres of a model in state order; NULL when it has none';

CREATE OR REPLACE FUNCTION rai4eo_cluster(model text, k integer DEFAULT 8, sensor text DEFAULT 'PF-SR',
	sample_size integer DEFAULT 20000, iterations integer DEFAULT 30)
RETURNS TABLE (state integer, members bigint, centre embedding)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
DECLARE
	m text;
	code integer;
	x @extschema@.embedding[];
	c @extschema@.embedding[];
	nc @extschema@.embedding[];
	counts bigint[];
	far @extschema@.embedding;
BEGIN
	m := rai4eo.resolve_model(model);
	IF k IS NULL OR k NOT BETWEEN 2 AND 256 THEN
		RAISE EXCEPTION 'k % is out of range', k USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'k-means takes 2 to 256 states.';
	END IF;
	IF sample_size IS NULL OR sample_size NOT BETWEEN 2 AND 1000000 THEN
		RAISE EXCEPTION 'sample_size % is out of range', sample_size USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'From 2 to 1,000,000 embeddings are sampled.';
	END IF;
	IF iterations IS NULL OR iterations NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'iterations % is out of range', iterations USING ERRCODE = 'invalid_parameter_value';
	END IF;
	code := CASE sensor WHEN 'PF-SR' THEN 0 WHEN 'S2-SR' THEN 1 END;
	IF code IS NULL THEN
		RAISE EXCEPTION 'unknown sensor "%"', sensor USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Sensors are PF-SR and S2-SR.';
	END IF;
	IF NOT (has_table_privilege('rai4eo.state', 'INSERT') AND has_table_privilege('rai4eo.state', 'DELETE')) THEN
		RAISE EXCEPTION 'permission denied to store states for model "%"', m USING ERRCODE = 'insufficient_privilege',
			HINT = 'The owner of rai4eo.state can grant INSERT and DELETE on it.';
	END IF;

	-- A deterministic sample: the embeddings of the sensor in hash order of image_id.
	x := ARRAY(SELECT @extschema@.l2_normalize(e.emb) FROM rai4eo.embedding e
			   WHERE e.model = m AND (e.image_id >> 16) & 3 = code
				 AND @extschema@.embedding_norm(e.emb) > 0
			   ORDER BY hashint8(e.image_id), e.image_id LIMIT sample_size);
	IF cardinality(x) < k THEN
		RAISE EXCEPTION 'model "%" has % non-zero % embeddings, fewer than k = %', m, cardinality(x), sensor, k
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = format('Embed more images (CALL rai4eo_refresh_embeddings(%L)) or choose a smaller k.', m);
	END IF;

	-- Farthest-point start: the first sampled embedding, then each time the one
	-- least similar to its nearest centre so far (deterministic, spreads the centres).
	c := ARRAY[x[1]];
	FOR i IN 2 .. k LOOP
		SELECT u.e INTO far FROM unnest(x) WITH ORDINALITY u(e, n)
		ORDER BY (SELECT max(@extschema@.cosine_similarity(u.e, v)) FROM unnest(c) v), u.n LIMIT 1;
		c := c || far;
	END LOOP;

	-- Lloyd iterations until the centres stop moving; an emptied state keeps its centre.
	FOR it IN 1 .. iterations LOOP
		SELECT array_agg(coalesce(a.s, c[i]) ORDER BY i), array_agg(coalesce(a.n, 0) ORDER BY i) INTO nc, counts
		FROM generate_series(1, k) i
		LEFT JOIN (SELECT rai4eo.nearest_state(u.e, c) AS st, @extschema@.l2_normalize(@extschema@.avg(u.e)) AS s, count(*) AS n
				   FROM unnest(x) u(e) GROUP BY 1) a ON a.st = i;
		EXIT WHEN nc = c;
		c := nc;
	END LOOP;

	DELETE FROM rai4eo.state s WHERE s.model = m;
	INSERT INTO rai4eo.state (model, state, centre, members)
	SELECT m, i, c[i], counts[i] FROM generate_series(1, k) i;
	RETURN QUERY SELECT s.state, s.members, s.centre FROM rai4eo.state s WHERE s.model = m ORDER BY s.state;
END
$$;

COMMENT ON FUNCTION rai4eo_cluster(text, integer, text, integer, integer) IS
'Fit k states to a model''s embeddings by spherical k-means (cosine; unit-norm centres) on a deterministic sample of sample_size non-zero embeddings of the sensor (hash order of image_id), farthest-point start, at most iterations Lloyd steps; replaces the model''s rows of rai4eo.state and returns them. The cluster change score then counts persistent transitions between states.';

-- ---- sql/src/60_calibration.sql
-- ============================================================================
-- calibration against labelled patches
-- ============================================================================

-- ---- calibration --------------------------------------------------------------

-- ---- labelled patches ---------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo.truth_labels(truth regclass, OUT patch_ids bigint[], OUT changed boolean[])
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n_both integer;
BEGIN
	IF (SELECT count(*) FROM pg_attribute a
		WHERE a.attrelid = truth AND a.attname IN ('patch_id', 'changed') AND a.attnum > 0 AND NOT a.attisdropped) < 2 THEN
		RAISE EXCEPTION 'truth table % has no columns patch_id and changed', truth USING ERRCODE = 'undefined_column',
			HINT = 'Give a table or view with patch_id bigint and changed boolean, e.g. a view renaming your columns.';
	END IF;
	-- One label per patch; NULL labels are ignored.
	EXECUTE format('SELECT array_agg(patch_id ORDER BY patch_id), array_agg(changed ORDER BY patch_id), '
				   'count(*) FILTER (WHERE n > 1) FROM (SELECT t.patch_id::bigint AS patch_id, bool_or(t.changed::boolean) AS changed, '
				   'count(DISTINCT t.changed::boolean) AS n FROM %s t WHERE t.changed IS NOT NULL GROUP BY 1) s', truth)
		INTO patch_ids, changed, n_both;
	IF n_both > 0 THEN
		RAISE EXCEPTION '% labels patches both changed and unchanged', truth
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('%s patch(es) have both labels.', n_both);
	END IF;
END
$$;

COMMENT ON FUNCTION rai4eo.truth_labels(regclass) IS
'The labels of a truth table or view (columns patch_id and changed), one per patch in patch_id order, NULL labels ignored: ERROR 42703 without those columns, 22023 for a patch labelled both ways. Read by the calibration functions.';

CREATE OR REPLACE FUNCTION rai4eo_calibrate_threshold(model text, year integer, truth regclass, sensor text DEFAULT 'PF-SR',
	tolerance integer DEFAULT 2, rate_cut float8 DEFAULT 0.1, candidates integer DEFAULT 99, store boolean DEFAULT true)
RETURNS TABLE (threshold float8, "precision" float8, recall float8, f1 float8, true_positives integer,
	false_positives integer, false_negatives integer, true_negatives integer, chosen boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
DECLARE
	m text;
	v_sensor text := sensor;
	v_tol integer := tolerance;
	v_cut float8 := rate_cut;
	lp bigint[];
	lc boolean[];
	pp bigint[];
	pd float8[];
	n_labelled integer;
	n_used integer;
	n_pos integer;
	levels float8[];
	s_t float8[];
	s_tp integer[];
	s_fp integer[];
	s_fn integer[];
	s_tn integer[];
	best float8;
BEGIN
	m := rai4eo.resolve_model(model);
	PERFORM rai4eo.change_args(NULL, m, 0, v_sensor, v_tol);
	IF year IS NULL OR truth IS NULL THEN
		RAISE EXCEPTION 'year and truth must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF store AND NOT has_table_privilege('rai4eo.model', 'UPDATE') THEN
		RAISE EXCEPTION 'permission denied to store the threshold of model "%"', m USING ERRCODE = 'insufficient_privilege',
			HINT = 'Pass store => false to see the table without storing, or ask the owner of rai4eo.model for UPDATE.';
	END IF;
	IF v_cut IS NULL OR NOT (v_cut >= 0 AND v_cut < 1) THEN
		RAISE EXCEPTION 'rate_cut % is out of range', v_cut USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'A patch is predicted changed when its change_rate is greater than rate_cut, from 0 (any changed day) to below 1.';
	END IF;
	IF candidates IS NULL OR candidates NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'candidates % is out of range', candidates USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The candidate thresholds are the quantiles 1/(n+1) .. n/(n+1) of the observed daily distances, n from 1 to 1000.';
	END IF;

	SELECT t.patch_ids, t.changed INTO lp, lc FROM rai4eo.truth_labels(truth) t;

	-- Daily distances of the labelled patches in the year.
	SELECT array_agg(l.patch_id), array_agg(d.distance) INTO pp, pd
	FROM unnest(lp) l(patch_id)
	CROSS JOIN LATERAL rai4eo.daily_pairs(l.patch_id, m, v_sensor, make_date(year, 1, 1),
										  make_date(year, 12, 31), v_tol) d;

	n_labelled := coalesce(cardinality(lp), 0);
	SELECT count(*), count(*) FILTER (WHERE l.changed) INTO n_used, n_pos
	FROM unnest(lp, lc) l(patch_id, changed)
	WHERE l.patch_id = ANY (pp);
	IF n_used < n_labelled THEN
		RAISE NOTICE '% of % labelled patches have no compared day in % and are left out', n_labelled - n_used, n_labelled, year;
	END IF;
	IF n_used = 0 THEN
		RAISE EXCEPTION 'no labelled patch has a compared day in %', year
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = format('Embed the images of both %s and %s with CALL rai4eo_refresh_embeddings(%L).', year - 1, year, m);
	END IF;
	IF n_pos = 0 OR n_pos = n_used THEN
		RAISE EXCEPTION 'the labelled patches with compared days are all %', CASE WHEN n_pos = 0 THEN 'unchanged' ELSE 'changed' END
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Precision and recall need both changed and unchanged patches.';
	END IF;

	-- Candidates: quantiles of the observed distances, each an observed value.
	levels := ARRAY(SELECT k::float8 / (candidates + 1) FROM generate_series(1, candidates) k);
	WITH pairs AS (SELECT * FROM unnest(pp, pd) u(patch_id, distance)),
	labels AS (SELECT * FROM unnest(lp, lc) u(patch_id, changed)),
	cand AS (SELECT DISTINCT unnest(percentile_disc(levels) WITHIN GROUP (ORDER BY distance)) AS t FROM pairs),
	pred AS (
		SELECT c.t, l.changed,
			   count(*) FILTER (WHERE p.distance > c.t)::float8 / count(*) > v_cut AS predicted
		FROM cand c CROSS JOIN pairs p JOIN labels l USING (patch_id)
		GROUP BY c.t, p.patch_id, l.changed),
	score AS (
		SELECT t,
			   count(*) FILTER (WHERE predicted AND changed)::integer AS tp,
			   count(*) FILTER (WHERE predicted AND NOT changed)::integer AS fp,
			   count(*) FILTER (WHERE NOT predicted AND changed)::integer AS fn,
			   count(*) FILTER (WHERE NOT predicted AND NOT changed)::integer AS tn
		FROM pred GROUP BY t)
	SELECT array_agg(t ORDER BY t), array_agg(tp ORDER BY t), array_agg(fp ORDER BY t),
		   array_agg(fn ORDER BY t), array_agg(tn ORDER BY t)
	  INTO s_t, s_tp, s_fp, s_fn, s_tn
	FROM score;

	-- Best F1; a tie picks the middle of the tied thresholds (the widest margin on
	-- both sides when they form a plateau).
	SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY u.t) INTO best
	FROM unnest(s_t, s_tp, s_fp, s_fn) u(t, tp, fp, fn)
	WHERE 2.0 * u.tp / (2 * u.tp + u.fp + u.fn) = (
		SELECT max(2.0 * v.tp / (2 * v.tp + v.fp + v.fn)) FROM unnest(s_tp, s_fp, s_fn) v(tp, fp, fn));

	IF store THEN
		UPDATE rai4eo.model SET config = jsonb_set(config, '{change_threshold}', to_jsonb(best)) WHERE name = m;
	END IF;

	RETURN QUERY
		SELECT u.t, u.tp::float8 / NULLIF(u.tp + u.fp, 0), u.tp::float8 / (u.tp + u.fn),
			   2.0::float8 * u.tp / (2 * u.tp + u.fp + u.fn), u.tp, u.fp, u.fn, u.tn, u.t = best
		FROM unnest(s_t, s_tp, s_fp, s_fn, s_tn) u(t, tp, fp, fn, tn)
		ORDER BY u.t;
END
$$;

COMMENT ON FUNCTION rai4eo_calibrate_threshold(text, integer, regclass, text, integer, float8, integer, boolean) IS
'Calibrate a model''s change threshold on labelled patches: truth is a table or view with patch_id and changed boolean. Candidate thresholds are the quantiles 1/(n+1) .. n/(n+1) (n = candidates) of the daily distances observed on those patches in the year; at each, a patch is predicted changed when its yearly change_rate is greater than rate_cut (default 0.1: a lasting change changes every later day, noise only scattered ones); one row per candidate with precision, recall, F1 and the confusion counts; the best F1 (ties: the middle one) is chosen and, when store, written to rai4eo.model.config->''change_threshold''. rai4eo_calibrate chooses the whole decision (method, day threshold and cut jointly) by cross-validated F1.';

-- ---- sql/src/61_calibrate.sql
-- ============================================================================
-- calibration of the change decision: method and parameters by cross-validated F1
-- ============================================================================
--
-- rai4eo_calibrate scores every labelled patch with every method of
-- 56_score.sql over a grid of parameters (day threshold = quantiles of the
-- labelled patches' daily distances, run length k) and chooses, for each
-- method, the parameters and the cut (changed = score > cut; cuts are the
-- midpoints between consecutive distinct scores) with the best F1.  The
-- method is chosen by k-fold cross-validated F1: the labels are split into
-- folds, stratified by label, in patch_id order (deterministic); each fold is
-- predicted with the parameters and cut chosen on the other folds, and the
-- pooled predictions give the method's cv F1.  The stored parameters are the
-- ones chosen on all labels.  Ties: higher fit F1, then the simpler method
-- (rai4eo.change_methods order); within a method the middle of the tied
-- parameters, then the middle of the tied cuts.

CREATE OR REPLACE FUNCTION rai4eo_calibrate(model text, year integer, truth regclass, sensor text DEFAULT 'PF-SR',
	tolerance integer DEFAULT 2, folds integer DEFAULT 5, methods text[] DEFAULT NULL, candidates integer DEFAULT 19,
	store boolean DEFAULT true)
RETURNS TABLE (method text, threshold float8, k integer, cut float8, cv_f1 float8, fit_f1 float8,
	fit_precision float8, fit_recall float8, labelled integer, chosen boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
DECLARE
	m text;
	v_sensor text := sensor;
	v_tol integer := tolerance;
	v_year integer := year;
	ms text[];
	centres @extschema@.embedding[];
	lp bigint[];
	lc boolean[];
	n_labelled integer;
	n_used integer;
	n_pos integer;
	nf integer;
	levels float8[];
	best text;
	result jsonb;
BEGIN
	m := rai4eo.resolve_model(model);
	PERFORM rai4eo.change_args(NULL, m, 0, v_sensor, v_tol);
	IF v_year IS NULL OR truth IS NULL THEN
		RAISE EXCEPTION 'year and truth must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF folds IS NULL OR folds NOT BETWEEN 2 AND 20 THEN
		RAISE EXCEPTION 'folds % is out of range', folds USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'Cross-validation uses 2 to 20 folds.';
	END IF;
	IF candidates IS NULL OR candidates NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'candidates % is out of range', candidates USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The candidate day thresholds are the quantiles 1/(n+1) .. n/(n+1) of the observed daily distances, n from 1 to 200.';
	END IF;
	IF store AND NOT has_table_privilege('rai4eo.model', 'UPDATE') THEN
		RAISE EXCEPTION 'permission denied to store the decision of model "%"', m USING ERRCODE = 'insufficient_privilege',
			HINT = 'Pass store => false to see the table without storing, or ask the owner of rai4eo.model for UPDATE.';
	END IF;
	centres := rai4eo.model_states(m);
	IF methods IS NULL THEN
		ms := ARRAY(SELECT u FROM unnest(rai4eo.change_methods()) u WHERE u <> 'cluster' OR centres IS NOT NULL);
	ELSE
		IF cardinality(methods) = 0 OR EXISTS (SELECT 1 FROM unnest(methods) u WHERE u IS NULL OR NOT u = ANY (rai4eo.change_methods())) THEN
			RAISE EXCEPTION 'unknown change method in %', methods USING ERRCODE = 'invalid_parameter_value',
				HINT = format('Methods are %s.', array_to_string(rai4eo.change_methods(), ', '));
		END IF;
		IF 'cluster' = ANY (methods) AND centres IS NULL THEN
			RAISE EXCEPTION 'model "%" has no cluster states', m USING ERRCODE = 'object_not_in_prerequisite_state',
				HINT = format('Fit them first with rai4eo_cluster(%L).', m);
		END IF;
		ms := ARRAY(SELECT DISTINCT u FROM unnest(methods) u);
	END IF;
	SELECT t.patch_ids, t.changed INTO lp, lc FROM rai4eo.truth_labels(truth) t;
	n_labelled := coalesce(cardinality(lp), 0);

	-- The labelled patches' series and composites (patches without a compared day are left out).
	IF to_regclass('pg_temp.r4_cal_series') IS NOT NULL THEN
		DROP TABLE pg_temp.r4_cal_series;
	END IF;
	CREATE TEMP TABLE r4_cal_series ON COMMIT DROP AS
	SELECT l.patch_id, l.changed, s.distances, s.state_changes, s.composite[1] AS annual, s.composite[2] AS seasonal,
		   s.composite[3] AS zscore, 0 AS fold
	FROM unnest(lp, lc) l(patch_id, changed)
	CROSS JOIN LATERAL rai4eo.patch_series(l.patch_id, m, v_sensor, make_date(v_year, 1, 1), make_date(v_year, 12, 31),
										   v_tol, 0, centres, ms && ARRAY['annual', 'seasonal', 'zscore']) s
	WHERE s.days_compared > 0;
	SELECT count(*), count(*) FILTER (WHERE s.changed) INTO n_used, n_pos FROM r4_cal_series s;
	IF n_used < n_labelled THEN
		RAISE NOTICE '% of % labelled patches have no compared day in % and are left out', n_labelled - n_used, n_labelled, v_year;
	END IF;
	IF n_used = 0 THEN
		RAISE EXCEPTION 'no labelled patch has a compared day in %', v_year
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = format('Embed the images of both %s and %s with CALL rai4eo_refresh_embeddings(%L).', v_year - 1, v_year, m);
	END IF;
	nf := least(folds, n_pos, n_used - n_pos);
	IF nf < 2 THEN
		RAISE EXCEPTION 'cross-validation needs at least 2 changed and 2 unchanged labelled patches with compared days'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('%s changed and %s unchanged.', n_pos, n_used - n_pos);
	END IF;
	IF nf < folds THEN
		RAISE NOTICE 'using % folds: the smaller class has % labelled patches', nf, least(n_pos, n_used - n_pos);
	END IF;
	-- Stratified folds: the i-th patch of each label (in patch_id order) goes to fold i mod nf + 1.
	UPDATE r4_cal_series s SET fold = f.fold
	FROM (SELECT x.patch_id, (row_number() OVER (PARTITION BY x.changed ORDER BY x.patch_id) - 1) % nf + 1 AS fold
		  FROM r4_cal_series x) f
	WHERE f.patch_id = s.patch_id;

	-- The parameter grid.
	levels := ARRAY(SELECT g::float8 / (candidates + 1) FROM generate_series(1, candidates) g);
	IF to_regclass('pg_temp.r4_cal_param') IS NOT NULL THEN
		DROP TABLE pg_temp.r4_cal_param;
	END IF;
	CREATE TEMP TABLE r4_cal_param ON COMMIT DROP AS
	WITH t AS (SELECT DISTINCT unnest(percentile_disc(levels) WITHIN GROUP (ORDER BY d)) AS t
			   FROM r4_cal_series s, unnest(s.distances) d),
	p AS (SELECT 'rate' AS method, t.t AS threshold, 1 AS k FROM t
		  UNION ALL SELECT 'persistence', t.t, r.k FROM t, unnest(ARRAY[2, 3, 4, 6]) r(k)
		  UNION ALL SELECT u, NULL, NULL FROM unnest(ARRAY['annual', 'seasonal', 'zscore']) u
		  UNION ALL SELECT 'cluster', NULL, r.k FROM unnest(ARRAY[1, 2, 3]) r(k))
	SELECT p.method, row_number() OVER (PARTITION BY p.method ORDER BY p.threshold, p.k)::integer AS param, p.threshold, p.k
	FROM p WHERE p.method = ANY (ms);

	IF to_regclass('pg_temp.r4_cal_score') IS NOT NULL THEN
		DROP TABLE pg_temp.r4_cal_score;
	END IF;
	CREATE TEMP TABLE r4_cal_score ON COMMIT DROP AS
	SELECT p.method, p.param, s.patch_id, s.changed, s.fold,
		   CASE p.method WHEN 'rate' THEN rai4eo.change_persistence(s.distances, p.threshold, 1)
						 WHEN 'persistence' THEN rai4eo.change_persistence(s.distances, p.threshold, p.k)
						 WHEN 'annual' THEN s.annual WHEN 'seasonal' THEN s.seasonal WHEN 'zscore' THEN s.zscore
						 WHEN 'cluster' THEN rai4eo.change_persistence(s.state_changes, 0.5, p.k) END AS score
	FROM r4_cal_param p CROSS JOIN r4_cal_series s;

	-- Training sets: 0 = every label (the fit), f = every fold but f.
	IF to_regclass('pg_temp.r4_cal_best') IS NOT NULL THEN
		DROP TABLE pg_temp.r4_cal_best;
	END IF;
	CREATE TEMP TABLE r4_cal_best ON COMMIT DROP AS
	WITH tr AS (SELECT generate_series(0, nf) AS tr),
	sc AS (SELECT s.*, t.tr FROM r4_cal_score s CROSS JOIN tr t WHERE t.tr = 0 OR s.fold <> t.tr),
	-- F1 at every cut from cumulative counts (one sort per parameter and training set): the
	-- cut between consecutive distinct scores s < s' predicts changed for the scores >= s'.
	pos AS (SELECT sc.method, sc.param, sc.tr, count(*) FILTER (WHERE sc.changed) AS p FROM sc GROUP BY 1, 2, 3),
	g AS (SELECT sc.method, sc.param, sc.tr, sc.score, count(*) FILTER (WHERE sc.changed) AS np,
				 count(*) FILTER (WHERE NOT sc.changed) AS nn
		  FROM sc WHERE sc.score IS NOT NULL GROUP BY 1, 2, 3, 4),
	cum AS (SELECT g.method, g.param, g.tr, g.score,
				   sum(g.np) OVER w AS tp, sum(g.nn) OVER w AS fp,
				   lag(g.score) OVER (PARTITION BY g.method, g.param, g.tr ORDER BY g.score) AS below,
				   count(*) OVER (PARTITION BY g.method, g.param, g.tr) AS n
			FROM g WINDOW w AS (PARTITION BY g.method, g.param, g.tr ORDER BY g.score DESC)),
	-- One distinct score: nothing separates; the cut at it predicts no change.
	ev AS (SELECT c.method, c.param, c.tr,
				  CASE WHEN c.below IS NULL THEN c.score ELSE (c.below + c.score) / 2 END AS cut,
				  CASE WHEN c.below IS NULL THEN 0 ELSE c.tp END AS tp,
				  CASE WHEN c.below IS NULL THEN 0 ELSE c.fp END AS fp,
				  o.p - CASE WHEN c.below IS NULL THEN 0 ELSE c.tp END AS fn
		   FROM cum c JOIN pos o ON o.method = c.method AND o.param = c.param AND o.tr = c.tr
		   WHERE c.below IS NOT NULL OR c.n = 1),
	f AS (SELECT ev.*, 2.0::float8 * ev.tp / (2 * ev.tp + ev.fp + ev.fn) AS f1 FROM ev),
	top AS (SELECT f.method, f.tr, max(f.f1) AS f1 FROM f GROUP BY 1, 2),
	bp AS (SELECT t.method, t.tr, t.f1, percentile_disc(0.5) WITHIN GROUP (ORDER BY f.param) AS param
		   FROM top t JOIN f ON f.method = t.method AND f.tr = t.tr AND f.f1 = t.f1 GROUP BY 1, 2, 3)
	SELECT b.method, b.tr, b.param, b.f1,
		   (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY f.cut) FROM f
			WHERE f.method = b.method AND f.tr = b.tr AND f.param = b.param AND f.f1 = b.f1) AS cut
	FROM bp b;

	IF to_regclass('pg_temp.r4_cal_result') IS NOT NULL THEN
		DROP TABLE pg_temp.r4_cal_result;
	END IF;
	CREATE TEMP TABLE r4_cal_result ON COMMIT DROP AS
	WITH cv AS (
		SELECT b.method,
			   count(*) FILTER (WHERE s.score > b.cut AND s.changed) AS tp,
			   count(*) FILTER (WHERE s.score > b.cut AND NOT s.changed) AS fp,
			   count(*) FILTER (WHERE NOT coalesce(s.score > b.cut, false) AND s.changed) AS fn
		FROM r4_cal_best b JOIN r4_cal_score s ON s.method = b.method AND s.param = b.param AND s.fold = b.tr
		WHERE b.tr > 0 GROUP BY 1),
	fit AS (
		SELECT b.method, b.param, b.cut, b.f1,
			   count(*) FILTER (WHERE s.score > b.cut AND s.changed) AS tp,
			   count(*) FILTER (WHERE s.score > b.cut) AS pp
		FROM r4_cal_best b JOIN r4_cal_score s ON s.method = b.method AND s.param = b.param
		WHERE b.tr = 0 GROUP BY 1, 2, 3, 4)
	SELECT f.method, p.threshold, p.k, f.cut, 2.0::float8 * cv.tp / (2 * cv.tp + cv.fp + cv.fn) AS cv_f1, f.f1 AS fit_f1,
		   f.tp::float8 / NULLIF(f.pp, 0) AS fit_precision, f.tp::float8 / n_pos AS fit_recall,
		   array_position(rai4eo.change_methods(), f.method) AS ord
	FROM fit f JOIN cv USING (method) JOIN r4_cal_param p ON p.method = f.method AND p.param = f.param;

	SELECT r.method INTO best FROM r4_cal_result r ORDER BY r.cv_f1 DESC, r.fit_f1 DESC, r.ord LIMIT 1;

	IF store THEN
		SELECT jsonb_build_object(
				   'change_decision', (SELECT jsonb_strip_nulls(jsonb_build_object('method', r.method, 'threshold', r.threshold,
						'k', r.k, 'cut', r.cut, 'cv_f1', r.cv_f1, 'fit_f1', r.fit_f1, 'year', v_year, 'sensor', v_sensor,
						'tolerance', v_tol, 'labelled', n_used, 'folds', nf))
									   FROM r4_cal_result r WHERE r.method = best),
				   'change_scores', (SELECT jsonb_object_agg(r.method, jsonb_strip_nulls(jsonb_build_object('threshold', r.threshold,
						'k', r.k, 'cut', r.cut, 'cv_f1', r.cv_f1, 'fit_f1', r.fit_f1)))
									 FROM r4_cal_result r))
			   || coalesce((SELECT jsonb_build_object('change_threshold', r.threshold) FROM r4_cal_result r
							WHERE r.method = 'rate'), '{}')
		  INTO result;
		UPDATE rai4eo.model mo SET config = mo.config || result WHERE mo.name = m;
	END IF;

	RETURN QUERY
		SELECT r.method, r.threshold, r.k, r.cut, r.cv_f1, r.fit_f1, r.fit_precision, r.fit_recall, n_used, r.method = best
		FROM r4_cal_result r ORDER BY r.ord;
END
$$;

COMMENT ON FUNCTION rai4eo_calibrate(text, integer, regclass, text, integer, integer, text[], integer, boolean) IS
'Choose a model''s change decision on labelled patches (truth: patch_id, changed boolean): every score method (rate, persistence, annual, seasonal, zscore, and cluster when the model has states; or those in methods) over a grid of day thresholds (the quantiles 1/(n+1) .. n/(n+1) of the labelled daily distances, n = candidates), run lengths k (persistence 2, 3, 4, 6; cluster 1, 2, 3) and cuts (midpoints between consecutive scores); per method the best-F1 parameters on all labels (fit) and the k-fold cross-validated F1 (stratified folds in patch_id order; each fold predicted with what the other folds chose). The method with the best cv F1 (ties: fit F1, then the simpler) is chosen; when store, it is written to config->''change_decision'' (every method''s choice to config->''change_scores'', the rate threshold to change_threshold) and yearly_change''s score, changed and onset follow it. One row per method.';

-- ---- sql/src/62_heatmap.sql
-- ============================================================================
-- heatmap rasters: daily_heatmap, yearly_heatmap
-- ============================================================================

-- ---- heatmaps -----------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo.change_heatmap(aoi geometry, first_day date, last_day date, model text, threshold float8,
	sensor text, tolerance integer, srid integer, year integer DEFAULT NULL)
RETURNS raster
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	cell CONSTANT float8 := 600;	-- one pixel per RapidAI4EO patch
	nodata CONSTANT float8 := -9999;
	a record;
	srids integer[];
	counts bigint[];
	ulx float8;
	uly float8;
	lrx float8;
	lry float8;
	w bigint;
	h bigint;
	cols integer[];
	rows_ integer[];
	rates float8[];
	means float8[];
	ns float8[];
	scores float8[];
	changes float8[];
	onsets float8[];
	b1 float8[];
	b2 float8[];
	b3 float8[];
	b4 float8[];
	b5 float8[];
	b6 float8[];
	d1 bytea;
	d2 bytea;
	d3 bytea;
	d4 bytea;
	d5 bytea;
	d6 bytea;
	band bytea;
	nbands integer := CASE WHEN year IS NULL THEN 3 ELSE 6 END;
BEGIN
	SELECT * INTO a FROM rai4eo.change_args(aoi, model, threshold, sensor, tolerance);
	IF first_day IS NULL OR last_day IS NULL THEN
		RETURN NULL;
	END IF;

	-- The grid first, from the footprints alone, so that a bad AOI fails before the work.
	SELECT array_agg(t.s ORDER BY t.s), array_agg(t.n ORDER BY t.s), min(t.x0), max(t.y1), max(t.x1), min(t.y0)
	  INTO srids, counts, ulx, uly, lrx, lry
	FROM (SELECT @postgis@.ST_SRID(p.geom) AS s, count(*) AS n,
				 min(@postgis@.ST_XMin(@postgis@.Box3D(p.geom))) AS x0, max(@postgis@.ST_YMax(@postgis@.Box3D(p.geom))) AS y1,
				 max(@postgis@.ST_XMin(@postgis@.Box3D(p.geom))) AS x1, min(@postgis@.ST_YMax(@postgis@.Box3D(p.geom))) AS y0
		  FROM rai4eo.aoi_patches(aoi, srid) p GROUP BY 1) t;
	IF srids IS NULL THEN
		RETURN NULL;
	END IF;
	IF cardinality(srids) > 1 THEN
		RAISE EXCEPTION 'the AOI covers patches in % coordinate reference systems', cardinality(srids)
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Patches per SRID: %s.',
								  (SELECT string_agg(format('%s: %s', u.s, u.n), ', ') FROM unnest(srids, counts) u(s, n))),
				  HINT = format('A raster has one CRS: pass srid => %s (or another of them) to map the patches of one CRS, or clip the AOI to one UTM zone.', srids[1]);
	END IF;
	-- Pixel (1, 1) is the upper-left patch; every patch lands on the cell of its upper-left corner.
	w := round((lrx - ulx) / cell) + 1;
	h := round((uly - lry) / cell) + 1;
	-- 2^24 cells (three 128 MiB arrays on the way) covers a UTM zone of scattered samples.
	IF w > 65535 OR h > 65535 OR w * h > 16777216 THEN
		RAISE EXCEPTION 'a heatmap of % x % pixels is too large', w, h
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Use a smaller AOI, or yearly_change() rows for scattered patches.';
	END IF;

	-- Patches sharing a cell (overlapping footprints) pool their compared days; of
	-- their decisions the cell keeps the highest score, changed if any, the earliest onset.
	IF year IS NULL THEN
		SELECT array_agg(c.cx), array_agg(c.cy), array_agg(c.k / c.n), array_agg(c.sd / c.n), array_agg(c.n)
		  INTO cols, rows_, rates, means, ns
		FROM (SELECT round((@postgis@.ST_XMin(@postgis@.Box3D(s.geom)) - ulx) / cell)::integer + 1 AS cx,
					 round((uly - @postgis@.ST_YMax(@postgis@.Box3D(s.geom))) / cell)::integer + 1 AS cy,
					 sum(s.days_compared)::float8 AS n, sum(s.days_changed)::float8 AS k,
					 sum(s.mean_distance * s.days_compared) AS sd
			  FROM rai4eo.patch_change_stats(aoi, srid, first_day, last_day, a.model_name, a.threshold_value,
											 sensor, tolerance) s
			  WHERE s.days_compared > 0
			  GROUP BY 1, 2) c;
	ELSE
		SELECT array_agg(c.cx), array_agg(c.cy), array_agg(c.k / c.n), array_agg(c.sd / c.n), array_agg(c.n),
			   array_agg(c.score), array_agg(c.changed), array_agg(c.onset)
		  INTO cols, rows_, rates, means, ns, scores, changes, onsets
		FROM (SELECT round((@postgis@.ST_XMin(@postgis@.Box3D(s.geom)) - ulx) / cell)::integer + 1 AS cx,
					 round((uly - @postgis@.ST_YMax(@postgis@.Box3D(s.geom))) / cell)::integer + 1 AS cy,
					 sum(s.days_compared)::float8 AS n, sum(s.days_changed)::float8 AS k,
					 sum(s.mean_distance * s.days_compared) AS sd,
					 max(s.score) AS score, max(s.changed::integer)::float8 AS changed,
					 min(extract(doy FROM s.onset))::float8 AS onset
			  FROM @extschema@.yearly_change(aoi, year, a.model_name, threshold, sensor, tolerance, srid) s
			  WHERE s.days_compared > 0
			  GROUP BY 1, 2) c;
	END IF;

	b1 := array_fill(NULL::float8, ARRAY[h::integer, w::integer]);
	b2 := b1;
	b3 := b1;
	b4 := b1;
	b5 := b1;
	b6 := b1;
	FOR i IN 1 .. coalesce(cardinality(cols), 0) LOOP
		b1[rows_[i]][cols[i]] := rates[i];
		b2[rows_[i]][cols[i]] := means[i];
		b3[rows_[i]][cols[i]] := ns[i];
		IF year IS NOT NULL THEN
			b4[rows_[i]][cols[i]] := scores[i];
			b5[rows_[i]][cols[i]] := changes[i];
			b6[rows_[i]][cols[i]] := onsets[i];
		END IF;
	END LOOP;

	-- Written as big-endian WKB (postgis-raster-format.md section 2) and parsed once:
	-- ST_SetValues costs about 10 us a pixel, this about 0.5 us.  A function scan
	-- returns unnest's rows in array (row-major) order.
	SELECT string_agg(float4send(coalesce(u.v1, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v2, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v3, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v4, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v5, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v6, nodata)::real), ''::bytea)
	  INTO d1, d2, d3, d4, d5, d6
	FROM unnest(b1, b2, b3, b4, b5, b6) u(v1, v2, v3, v4, v5, v6);
	band := '\x4a'::bytea || float4send(nodata::real);	-- 32BF (10) with a nodata value (0x40)
	RETURN @postgis@.ST_RastFromWKB('\x00'::bytea || int2send(0::smallint) || int2send(nbands::smallint)
		|| float8send(cell) || float8send(-cell) || float8send(ulx) || float8send(uly)
		|| float8send(0) || float8send(0) || int4send(srids[1])
		|| substring(int4send(w::integer) FROM 3) || substring(int4send(h::integer) FROM 3)
		|| band || d1 || band || d2 || band || d3
		|| CASE WHEN year IS NULL THEN ''::bytea ELSE band || d4 || band || d5 || band || d6 END);
END
$$;

COMMENT ON FUNCTION rai4eo.change_heatmap(geometry, date, date, text, float8, text, integer, integer, integer) IS
'The raster under daily_heatmap and yearly_heatmap: change over first_day .. last_day, one 600 m pixel per patch cell; with year, three more bands from yearly_change''s decision (score, changed, onset day of year)';

CREATE OR REPLACE FUNCTION daily_heatmap(aoi geometry, day date, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS raster
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT rai4eo.change_heatmap($1, $2, $2, $3, $4, $5, $6, $7)
$$;

COMMENT ON FUNCTION daily_heatmap(geometry, date, text, float8, text, integer, integer) IS
'Daily change map of an AOI as a raster: one 600 m pixel per patch, in the patches'' CRS, aligned to their grid (upper-left = the upper-left patch corner); three 32BF bands, nodata -9999 where there is no patch or no pair: 1 changed (1) or not (0), 2 the distance, 3 the number of comparisons (1). Arguments as daily_change. No patch in the AOI: NULL; patches in several CRSs: ERROR 22023 (pass srid).';

CREATE OR REPLACE FUNCTION yearly_heatmap(aoi geometry, year integer, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS raster
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT rai4eo.change_heatmap($1, make_date($2, 1, 1), make_date($2, 12, 31), $3, $4, $5, $6, $7, $2)
$$;

COMMENT ON FUNCTION yearly_heatmap(geometry, integer, text, float8, text, integer, integer) IS
'Yearly change heatmap of an AOI: one 600 m pixel per patch, in the patches'' CRS, aligned to their grid; six 32BF bands, nodata -9999 where there is no patch or no compared day: 1 change_rate (share of compared days that changed), 2 mean distance, 3 days compared, and the model''s decision as in yearly_change: 4 score, 5 changed (1) or not (0), 6 onset as day of the year (nodata where not changed). Arguments as yearly_change. No patch in the AOI: NULL; patches in several CRSs: ERROR 22023 (pass srid).';

-- ---- sql/src/64_png.sql
-- ============================================================================
-- PNG output: heatmap_png, rai4eo_quicklook
-- ============================================================================

-- ---- PNG ----------------------------------------------------------------------
--
-- ST_AsPNG needs the GDAL PNG driver, which postgis.gdal_enabled_drivers
-- (superuser-only, DISABLE_ALL by default) keeps off.  These are written in C
-- on zlib (src/core/png.c) and need nothing: the bands are read by the
-- extension's own raster decoder (out-db bands through PostGIS).

CREATE OR REPLACE FUNCTION heatmap_png(rast raster, band integer DEFAULT 1, min_value float8 DEFAULT 0, max_value float8 DEFAULT 1,
	ramp text DEFAULT 'heat', scale integer DEFAULT 1, legend boolean DEFAULT false)
RETURNS bytea
	AS 'MODULE_PATHNAME', 'rai4eo_heatmap_png' LANGUAGE C STABLE PARALLEL SAFE COST 1000;

COMMENT ON FUNCTION heatmap_png(raster, integer, float8, float8, text, integer, boolean) IS
'A band of a raster as a colour PNG for dashboards, without GDAL drivers (no superuser setting needed): values from min_value to max_value mapped along the ramp (heat, viridis or gray; values outside are clamped; palette index 1 + round(254 t)), nodata and NaN transparent, each pixel drawn scale x scale (1 .. 64), zlib-compressed, at most 8192 x 8192 pixels. Without a legend an 8-bit palette PNG (index 0 transparent); legend => true gives RGBA with a white strip below: the colour bar, ticks and the min, middle and max values. NULL raster: NULL';

CREATE OR REPLACE FUNCTION rai4eo_quicklook(rast raster, bands integer[] DEFAULT NULL, stretch text DEFAULT 'percentile',
	scale integer DEFAULT 1, low float8 DEFAULT NULL, high float8 DEFAULT NULL)
RETURNS bytea
	AS 'MODULE_PATHNAME', 'rai4eo_quicklook' LANGUAGE C STABLE PARALLEL SAFE COST 1000;

COMMENT ON FUNCTION rai4eo_quicklook(raster, integer[], text, integer, float8, float8) IS
'A quicklook PNG of any image: 3 bands as red, green, blue (RGBA PNG) or 1 band as grey (grey + alpha PNG); bands NULL means 3, 2, 1 (true colour of PF-SR BGRN and S2-SR) or band 1 when there are fewer than 3. Each band is stretched to 0 .. 255 between low and high: stretch percentile (default; low, high are percentiles of the band''s valid pixels, default 2 and 98, linear between ranks as numpy.percentile), minmax (the band''s own minimum and maximum), or fixed (low, high are values, the same for every band and image: comparable before/after pictures). A pixel nodata in any band is transparent; scale 1 .. 64; at most 8192 x 8192 pixels. NULL raster: NULL';

-- ---- sql/src/66_qgis.sql
-- ============================================================================
-- QGIS layer: the rai4eo.patch_change view
-- ============================================================================

-- ---- QGIS layer ---------------------------------------------------------------
--
-- Views are bound when created (docs/sql-conventions.md, rule 7).  The
-- decision columns follow yearly_change: the default model's stored decision
-- (rai4eo.change_decision), its score per year, changed = score > cut, onset
-- where changed.

CREATE OR REPLACE VIEW rai4eo.patch_change AS
SELECT p.patch_id * 10000 + y.year AS id, p.patch_id, p.sample_id, y.year, c.model,
	   y.days_compared, y.days_changed, y.days_changed::float8 / y.days_compared AS change_rate,
	   y.mean_distance, p.geom, x.score, x.score > c.cut AS changed, CASE WHEN x.score > c.cut THEN x.onset END AS onset
FROM (SELECT m AS model, rai4eo.change_threshold(m) AS threshold, d.method, d.score_threshold, d.k, d.cut,
			 CASE WHEN d.method = 'cluster' THEN rai4eo.model_states(m) END AS centres
	  FROM rai4eo.resolve_model(NULL) m, rai4eo.change_decision(m) d) c
CROSS JOIN rai4eo.patch p
CROSS JOIN LATERAL (
	SELECT extract(year FROM d.acquired)::integer AS year, count(*)::integer AS days_compared,
		   count(*) FILTER (WHERE d.distance > c.threshold)::integer AS days_changed,
		   avg(d.distance) AS mean_distance
	FROM rai4eo.daily_distances(p.patch_id, c.model, 'PF-SR', date '2000-01-01', date '2179-06-06', 2) d
	GROUP BY 1) y
CROSS JOIN LATERAL rai4eo.patch_series(p.patch_id, c.model, 'PF-SR', make_date(y.year, 1, 1), make_date(y.year, 12, 31),
									   2, c.threshold, c.centres, c.method IN ('annual', 'seasonal', 'zscore')) s
CROSS JOIN LATERAL (SELECT
	CASE c.method WHEN 'rate' THEN rai4eo.change_persistence(s.distances, c.score_threshold, 1)
				  WHEN 'persistence' THEN rai4eo.change_persistence(s.distances, c.score_threshold, c.k)
				  WHEN 'annual' THEN s.composite[1] WHEN 'seasonal' THEN s.composite[2] WHEN 'zscore' THEN s.composite[3]
				  WHEN 'cluster' THEN rai4eo.change_persistence(s.state_changes, 0.5, c.k) END AS score,
	s.days[CASE c.method WHEN 'persistence' THEN rai4eo.change_onset(s.distances, c.score_threshold, c.k)
						 WHEN 'cluster' THEN rai4eo.change_onset(s.state_changes, 0.5, c.k)
						 ELSE rai4eo.change_point(s.distances) END] AS onset) x;

COMMENT ON VIEW rai4eo.patch_change IS
'QGIS-ready yearly change per patch and year for rai4eo.default_model (PF-SR, tolerance 2 days, the model''s threshold or rai4eo.change_threshold): key id = patch_id * 10000 + year, geometry geom in each patch''s own CRS; only years with compared days; score, changed and onset are the model''s change decision as in yearly_change. Filter by year and by bounding box (geom && ...): work is done per patch read.';

-- ---- sql/src/68_review.sql
-- ============================================================================
-- review: record a verdict, the candidates to review, verdicts as calibration truth
-- ============================================================================

-- ---- verdicts -------------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo_review(patch_id bigint, year integer, verdict text, model text DEFAULT NULL,
	note text DEFAULT NULL, reviewer text DEFAULT NULL)
RETURNS rai4eo.review
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
	m text;
	who text := coalesce(reviewer, current_user::text);
	r rai4eo.review;
BEGIN
	IF patch_id IS NULL OR year IS NULL OR verdict IS NULL THEN
		RAISE EXCEPTION 'patch_id, year and verdict must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF verdict NOT IN ('accept', 'reject', 'unsure') THEN
		RAISE EXCEPTION 'unknown verdict "%"', verdict USING ERRCODE = 'invalid_parameter_value',
			HINT = 'A verdict is accept (the place changed that year), reject (it did not) or unsure.';
	END IF;
	IF year < 2000 OR year > 2179 THEN
		RAISE EXCEPTION 'year % is out of range', year USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'Images are dated from 2000-01-01 to 2179-06-06.';
	END IF;
	IF who = '' THEN
		RAISE EXCEPTION 'reviewer must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	m := rai4eo.resolve_model(model);
	IF NOT EXISTS (SELECT 1 FROM rai4eo.patch p WHERE p.patch_id = patch_id) THEN
		RAISE EXCEPTION 'no patch %', patch_id USING ERRCODE = 'foreign_key_violation';
	END IF;
	INSERT INTO rai4eo.review AS v (patch_id, year, model, verdict, reviewer, reviewed_at, note)
	VALUES (patch_id, year, m, verdict, who, now(), note)
	ON CONFLICT ON CONSTRAINT review_pkey
	DO UPDATE SET verdict = EXCLUDED.verdict, reviewed_at = EXCLUDED.reviewed_at, note = EXCLUDED.note
	RETURNING v.* INTO r;
	RETURN r;
END
$$;

COMMENT ON FUNCTION rai4eo_review(bigint, integer, text, text, text, text) IS
'Record an analyst''s verdict on a patch''s change in a year: accept (it changed), reject (a false alarm) or unsure, for the candidates of model (NULL: rai4eo.default_model), by reviewer (NULL: current_user); the same reviewer''s earlier verdict on the same patch, year and model is replaced. Returns the stored row. Runs as the caller: needs INSERT and UPDATE on rai4eo.review.';

-- The labels calibration reads (rai4eo_calibrate, rai4eo_calibrate_threshold: a table
-- or view with patch_id and changed): the latest verdict on a patch and year wins,
-- whoever gave it and whatever model proposed it, because it is about the place.
CREATE OR REPLACE VIEW rai4eo.review_truth AS
SELECT DISTINCT ON (r.patch_id, r.year)
	   r.patch_id, r.year,
	   CASE r.verdict WHEN 'accept' THEN true WHEN 'reject' THEN false END AS changed,
	   r.verdict, r.model, r.reviewer, r.reviewed_at
FROM rai4eo.review r
ORDER BY r.patch_id, r.year, r.reviewed_at DESC, r.reviewer;

COMMENT ON VIEW rai4eo.review_truth IS
'Reviewed patches as calibration labels: per patch and year the latest verdict (any reviewer, any model), changed = true for accept, false for reject, NULL for unsure (calibration skips NULL). With verdicts of one year, pass it straight to rai4eo_calibrate(model, year, ''rai4eo.review_truth''); otherwise through a view of one year (WHERE year = 2019).';

-- ---- candidates -------------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo_review_candidates(aoi geometry, year integer, model text DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, score float8, changed boolean, onset date, change_rate float8,
	days_compared integer, verdict text, reviewer text, reviewed_at timestamptz, geom geometry)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
	SELECT y.patch_id, y.sample_id, y.score, y.changed, y.onset, y.change_rate, y.days_compared,
		   v.verdict, v.reviewer, v.reviewed_at, y.geom
	FROM @extschema@.yearly_change($1, $2, $3, NULL::float8, $4, $5, $6) y
	LEFT JOIN LATERAL (
		SELECT r.verdict, r.reviewer, r.reviewed_at FROM rai4eo.review r
		WHERE r.patch_id = y.patch_id AND r.year = $2 AND r.model = rai4eo.resolve_model($3)
		ORDER BY r.reviewed_at DESC, r.reviewer LIMIT 1) v ON true
	WHERE y.days_compared > 0
	ORDER BY y.changed DESC NULLS LAST, y.score DESC NULLS LAST, y.patch_id
$$;

COMMENT ON FUNCTION rai4eo_review_candidates(geometry, integer, text, text, integer, integer) IS
'What a reviewer works through: the patches of the AOI with compared days in the year, the model''s decision (yearly_change: score, changed, onset, change_rate) and the latest verdict on it for that model (NULL: not reviewed); the changed ones first, each group by score descending. Arguments as yearly_change.';

-- ---- vector tiles -----------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo_change_tile(z integer, x integer, y integer, year integer, model text DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, max_patches integer DEFAULT 20000)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	env @postgis@.geometry;
	aoi @postgis@.geometry;
	n bigint;
	tile bytea;
BEGIN
	IF z IS NULL OR x IS NULL OR y IS NULL OR year IS NULL THEN
		RAISE EXCEPTION 'z, x, y and year must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF z < 0 OR z > 24 OR x < 0 OR y < 0 OR x >= (1::bigint << z) OR y >= (1::bigint << z) THEN
		RAISE EXCEPTION 'no tile %/%/%', z, x, y USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Zoom runs from 0 to 24 and x, y from 0 to 2^zoom - 1 (XYZ scheme, y down).';
	END IF;
	env := @postgis@.ST_TileEnvelope(z, x, y);
	-- The AOI goes into each patch CRS vertex by vertex: densify the edges first (16
	-- segments a side; a tile's side is the Web Mercator world width / 2^z).
	aoi := @postgis@.ST_Segmentize(env, 40075016.685578488::float8 / (1::bigint << z)::float8 / 16::float8);
	-- The limit before the work: counting footprints is an index scan.
	SELECT count(*) INTO n FROM rai4eo.aoi_patches(aoi, NULL::integer);
	IF n > max_patches THEN
		RAISE EXCEPTION 'tile %/%/% covers % patches, more than %', z, x, y, n, max_patches
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Zoom in (serve this layer from a higher minimum zoom), or raise max_patches.';
	END IF;
	SELECT @postgis@.ST_AsMVT(t, 'patches', 4096, 'geom', 'id') INTO tile
	FROM (SELECT c.patch_id AS id, c.patch_id::text AS patch_key, c.sample_id, c.score, c.changed,
				 c.onset::text AS onset, c.change_rate, c.days_compared, c.verdict,
				 @postgis@.ST_AsMVTGeom(@postgis@.ST_Transform(c.geom, 3857), @postgis@.Box2D(env),
										4096, 64, true) AS geom
		  FROM @extschema@.rai4eo_review_candidates(aoi, year, model, sensor, tolerance, NULL::integer) c) t
	WHERE t.geom IS NOT NULL;
	RETURN coalesce(tile, ''::bytea);
END
$$;

COMMENT ON FUNCTION rai4eo_change_tile(integer, integer, integer, integer, text, text, integer, integer) IS
'A Mapbox vector tile (ST_AsMVT, EPSG:3857, XYZ scheme, extent 4096) of tile z/x/y with layer "patches": each patch of the tile with compared days in the year as a polygon with feature id patch_id and properties patch_key (patch_id as text), sample_id, score, changed, onset (text), change_rate, days_compared and verdict (rai4eo_review_candidates); empty bytea for an empty tile. A tile over more than max_patches patches fails with 54000 before any change is computed.';

-- ---- sql/src/70_ensemble.sql
-- ============================================================================
-- ensembles: several models' yearly change combined per patch
-- ============================================================================
--
-- The seeds' future work: combine unsupervised (embedding) and supervised
-- (class-probability) change to cut false positives.  Each member keeps its
-- own pairing and threshold (argument, calibrated, or GUC, as for
-- yearly_change); the ensemble's change rate of a patch is the weighted mean
-- of the members' change rates over the members that compared at least one
-- day there.  A supervised member is a classifier stored with
-- "output": "probabilities", whose embeddings are class-probability vectors.

CREATE OR REPLACE FUNCTION rai4eo.ensemble_args(models text[], weights float8[], thresholds float8[])
RETURNS TABLE (member integer, model text, weight float8, threshold float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF models IS NULL OR cardinality(models) = 0 THEN
		RAISE EXCEPTION 'an ensemble needs at least one model' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF array_ndims(models) > 1 OR array_ndims(weights) > 1 OR array_ndims(thresholds) > 1 THEN
		RAISE EXCEPTION 'models, weights and thresholds must be one-dimensional arrays' USING ERRCODE = 'array_subscript_error';
	END IF;
	IF weights IS NOT NULL AND cardinality(weights) <> cardinality(models) THEN
		RAISE EXCEPTION '% weights for % models', cardinality(weights), cardinality(models)
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Give one weight per model, or NULL for equal weights.';
	END IF;
	IF thresholds IS NOT NULL AND cardinality(thresholds) <> cardinality(models) THEN
		RAISE EXCEPTION '% thresholds for % models', cardinality(thresholds), cardinality(models)
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Give one threshold per model (NULL entries use the model''s own), or NULL.';
	END IF;
	IF EXISTS (SELECT 1 FROM unnest(weights) w WHERE w IS NULL OR w < 0 OR w = 'NaN' OR w = 'Infinity')
	   OR (weights IS NOT NULL AND (SELECT sum(w) FROM unnest(weights) w) = 0) THEN
		RAISE EXCEPTION 'ensemble weights must be finite, non-negative and not all zero' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN QUERY
	SELECT i, rai4eo.resolve_model(models[i]), coalesce(weights[i], 1.0), thresholds[i]
	FROM generate_subscripts(models, 1) i;
END
$$;
COMMENT ON FUNCTION rai4eo.ensemble_args(text[], float8[], float8[]) IS
'Check an ensemble''s arrays and list its members: position, resolved model, weight (default 1), threshold (NULL: the model''s own)';

CREATE OR REPLACE FUNCTION ensemble_yearly_change(aoi geometry, year integer, models text[], weights float8[] DEFAULT NULL,
	thresholds float8[] DEFAULT NULL, sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, models_compared integer, change_rate float8,
	member_rates float8[], score float8, changed boolean, onset date)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
BEGIN
	RETURN QUERY
	WITH m AS (SELECT * FROM rai4eo.ensemble_args(models, weights, thresholds)),
	y AS (SELECT m.member, m.weight, c.patch_id, c.sample_id, c.geom, c.days_compared, c.change_rate, c.changed, c.onset
		  FROM m CROSS JOIN LATERAL @extschema@.yearly_change(aoi, year, m.model, m.threshold, sensor, tolerance, srid) c),
	e AS (SELECT y.patch_id, min(y.sample_id) AS sample_id, (array_agg(y.geom))[1] AS geom,
				 count(*) FILTER (WHERE y.days_compared > 0)::integer AS n,
				 sum(y.weight * y.change_rate) FILTER (WHERE y.days_compared > 0)
					 / NULLIF(sum(y.weight) FILTER (WHERE y.days_compared > 0), 0) AS rate,
				 array_agg(y.change_rate ORDER BY y.member) AS rates,
				 sum(y.weight * y.changed::integer) FILTER (WHERE y.changed IS NOT NULL)
					 / NULLIF(sum(y.weight) FILTER (WHERE y.changed IS NOT NULL), 0) AS vote,
				 min(y.onset) FILTER (WHERE y.changed) AS first_onset
		  FROM y GROUP BY y.patch_id)
	SELECT e.patch_id, e.sample_id, e.geom, e.n, e.rate, e.rates, e.vote, e.vote > 0.5,
		   CASE WHEN e.vote > 0.5 THEN e.first_onset END
	FROM e;
END
$$;
COMMENT ON FUNCTION ensemble_yearly_change(geometry, integer, text[], float8[], float8[], text, integer, integer) IS
'Yearly change of several models combined per patch: the weighted mean of the members'' change rates over the members that compared at least one day there; member_rates in model order (NULL where a member compared nothing); score = the weighted share of the members whose own decision (yearly_change''s changed) says changed, changed = score > 0.5 (a weighted majority), onset = the earliest onset of those members';

-- ST_MapAlgebra callback: the weighted mean of the non-nodata member values of one cell
CREATE OR REPLACE FUNCTION rai4eo.ensemble_cell(value double precision[][][], pos integer[][], VARIADIC weights text[])
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT sum(value[i][1][1] * weights[i]::float8) / NULLIF(sum(weights[i]::float8), 0)
	FROM generate_subscripts(value, 1) i
	WHERE value[i][1][1] IS NOT NULL
$$;
COMMENT ON FUNCTION rai4eo.ensemble_cell(double precision[], integer[], text[]) IS
'ST_MapAlgebra callback for ensemble_yearly_heatmap: weighted mean of the members'' values of one cell, NULL when none has one';

-- ST_MapAlgebra callback: 1 where the weighted vote is a majority (> 0.5), else 0
CREATE OR REPLACE FUNCTION rai4eo.ensemble_majority(value double precision[][][], pos integer[][], VARIADIC userargs text[] DEFAULT NULL)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN value[1][1][1] > 0.5 THEN 1 ELSE 0 END::float8
$$;
COMMENT ON FUNCTION rai4eo.ensemble_majority(double precision[], integer[], text[]) IS
'ST_MapAlgebra callback for ensemble_yearly_heatmap: 1 where the members'' weighted vote is above one half, else 0 (NULL stays nodata)';

CREATE OR REPLACE FUNCTION ensemble_yearly_heatmap(aoi geometry, year integer, models text[], weights float8[] DEFAULT NULL,
	thresholds float8[] DEFAULT NULL, sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS raster
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	heat @postgis@.raster[];
	rates @postgis@.rastbandarg[];
	votes @postgis@.rastbandarg[];
	w text[];
	r @postgis@.raster;
	v @postgis@.raster;
BEGIN
	-- Every member's heatmap covers the same patches of the AOI, so the grids coincide.
	SELECT array_agg(@extschema@.yearly_heatmap(aoi, year, m.model, m.threshold, sensor, tolerance, srid) ORDER BY m.member),
		   array_agg(m.weight::text ORDER BY m.member)
	  INTO heat, w
	FROM rai4eo.ensemble_args(models, weights, thresholds) m;
	IF (SELECT bool_or(h IS NULL) FROM unnest(heat) h) THEN
		RETURN NULL;
	END IF;
	-- band 1 of the members: change rate; band 5: their decision (changed 1, not 0)
	rates := ARRAY(SELECT ROW(h, 1)::@postgis@.rastbandarg FROM unnest(heat) WITH ORDINALITY u(h, i) ORDER BY i);
	votes := ARRAY(SELECT ROW(h, 5)::@postgis@.rastbandarg FROM unnest(heat) WITH ORDINALITY u(h, i) ORDER BY i);
	r := @postgis@.ST_MapAlgebra(rates, 'rai4eo.ensemble_cell(double precision[], integer[], text[])'::regprocedure,
								 '32BF'::text, 'FIRST'::text, NULL::@postgis@.raster, 0, 0, VARIADIC w);
	v := @postgis@.ST_MapAlgebra(votes, 'rai4eo.ensemble_cell(double precision[], integer[], text[])'::regprocedure,
								 '32BF'::text, 'FIRST'::text, NULL::@postgis@.raster, 0, 0, VARIADIC w);
	-- Every argument given, exactly typed: a call that relies on defaults could be
	-- outmatched by an overload without them planted where PostGIS lives.
	RETURN @postgis@.ST_AddBand(r, ARRAY[v, @postgis@.ST_MapAlgebra(ARRAY[ROW(v, 1)::@postgis@.rastbandarg],
		'rai4eo.ensemble_majority(double precision[], integer[], text[])'::regprocedure, '32BF'::text, 'FIRST'::text,
		NULL::@postgis@.raster, 0, 0, VARIADIC ARRAY[]::text[])]::@postgis@.raster[], 1, NULL::integer);
END
$$;
COMMENT ON FUNCTION ensemble_yearly_heatmap(geometry, integer, text[], float8[], float8[], text, integer, integer) IS
'The ensemble as a raster on yearly_heatmap''s grid (one 600 m pixel per patch, 32BF, nodata -9999 where no member compared anything): band 1 the ensemble change rate, band 2 its score (the weighted share of members deciding changed), band 3 changed (score > 0.5: 1, else 0), as ensemble_yearly_change';

CREATE OR REPLACE FUNCTION rai4eo_calibrate_ensemble(models text[], year integer, truth regclass, weights float8[] DEFAULT NULL,
	thresholds float8[] DEFAULT NULL, sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2)
RETURNS TABLE (rate_cut float8, "precision" float8, recall float8, f1 float8, true_positives integer,
	false_positives integer, false_negatives integer, true_negatives integer, chosen boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
BEGIN
	RETURN QUERY EXECUTE format($q$
		WITH t AS (SELECT patch_id, changed FROM %s WHERE changed IS NOT NULL),
		e AS (SELECT t.changed, y.change_rate
			  FROM t JOIN rai4eo.patch p USING (patch_id)
			  CROSS JOIN LATERAL @extschema@.ensemble_yearly_change(p.geom, $1, $2, $3, $4, $5, $6) y
			  WHERE y.patch_id = t.patch_id AND y.change_rate IS NOT NULL),
		c AS (SELECT DISTINCT change_rate AS cut FROM e UNION SELECT 0),
		s AS (SELECT c.cut,
					 count(*) FILTER (WHERE e.change_rate > c.cut AND e.changed)::integer AS tp,
					 count(*) FILTER (WHERE e.change_rate > c.cut AND NOT e.changed)::integer AS fp,
					 count(*) FILTER (WHERE e.change_rate <= c.cut AND e.changed)::integer AS fn,
					 count(*) FILTER (WHERE e.change_rate <= c.cut AND NOT e.changed)::integer AS tn
			  FROM c CROSS JOIN e GROUP BY c.cut),
		r AS (SELECT cut, tp::float8 / NULLIF(tp + fp, 0) AS p, tp::float8 / NULLIF(tp + fn, 0) AS r, tp, fp, fn, tn FROM s),
		f AS (SELECT *, coalesce(2 * p * r / NULLIF(p + r, 0), 0) AS f1 FROM r)
		SELECT cut, p, r, f1, tp, fp, fn, tn,
			   row_number() OVER (ORDER BY f1 DESC, cut) = 1
		FROM f ORDER BY cut$q$, truth)
	USING year, models, weights, thresholds, sensor, tolerance;
END
$$;
COMMENT ON FUNCTION rai4eo_calibrate_ensemble(text[], integer, regclass, float8[], float8[], text, integer) IS
'Precision, recall and F1 of "ensemble change rate > rate_cut" on labelled patches (a table of patch_id, changed) for every observed rate; chosen marks the best F1 (ties: the lowest cut). The members'' own thresholds are calibrated with rai4eo_calibrate_threshold.';

-- ---- sql/src/90_citus.sql
-- ============================================================================
-- Citus: distributing the corpus, and what runs on the workers
-- ============================================================================
--
-- Citus is optional: nothing here needs it at install time (it is looked up
-- when called).  Order on a Citus cluster, as the database owner on the
-- coordinator: CREATE EXTENSION citus on every node, add the workers, then
-- CREATE EXTENSION rai4eo CASCADE on the coordinator (Citus creates it on the
-- workers too, which gives them the tables' shells), then
-- SELECT * FROM rai4eo_distribute().

-- ---- where this node reads rai4eo.model -------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo.model_relation() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	shard text;
BEGIN
	-- Without Citus in this database, or before rai4eo_distribute(): the table.
	IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RETURN 'rai4eo.model';
	END IF;
	EXECUTE $q$
		SELECT pg_catalog.shard_name(p.logicalrelid, s.shardid)
		FROM pg_catalog.pg_dist_partition p
		JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid = p.logicalrelid
		JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = s.shardid
		WHERE p.logicalrelid = 'rai4eo.model'::regclass AND p.partmethod = 'n'
		  AND pl.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)$q$ INTO shard;
	IF shard IS NULL OR to_regclass(shard) IS NULL THEN
		RETURN 'rai4eo.model';
	END IF;
	RETURN shard;
END
$$;

COMMENT ON FUNCTION rai4eo.model_relation() IS
'The table the model cache reads: rai4eo.model, or on a Citus node with a placement of it (a reference table) that local shard, which holds every row; reading rai4eo.model itself from inside a query on a shard is refused by Citus ("cannot execute a distributed query from a query on a shard")';

-- ---- the shards the refresh works on -------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo.citus_shard_pairs() RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	pairs jsonb;
BEGIN
	IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RETURN NULL;
	END IF;
	EXECUTE $q$
		SELECT jsonb_agg(jsonb_build_object(
				   'image', pg_catalog.shard_name(si.logicalrelid, si.shardid),
				   'embedding', pg_catalog.shard_name(se.logicalrelid, se.shardid),
				   'node', n.nodename, 'port', n.nodeport, 'after', -1, 'done', false)
			   ORDER BY si.shardid)
		FROM pg_catalog.pg_dist_partition pi
		JOIN pg_catalog.pg_dist_partition pe
		  ON pe.logicalrelid = 'rai4eo.embedding'::regclass AND pe.colocationid = pi.colocationid
		JOIN pg_catalog.pg_dist_shard si ON si.logicalrelid = pi.logicalrelid
		JOIN pg_catalog.pg_dist_shard se
		  ON se.logicalrelid = pe.logicalrelid AND se.shardminvalue = si.shardminvalue
		JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = si.shardid
		JOIN pg_catalog.pg_dist_node n ON n.groupid = pl.groupid AND n.noderole = 'primary' AND n.isactive
		WHERE pi.logicalrelid = 'rai4eo.image'::regclass AND pi.partmethod = 'h'$q$ INTO pairs;
	IF pairs IS NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
								 WHERE p.logicalrelid IN ('rai4eo.image'::regclass, 'rai4eo.embedding'::regclass)) THEN
		RAISE EXCEPTION 'rai4eo.image and rai4eo.embedding are not co-located hash-distributed tables'
			USING ERRCODE = 'feature_not_supported', HINT = 'Distribute them with rai4eo_distribute().';
	END IF;
	RETURN pairs;
END
$$;

COMMENT ON FUNCTION rai4eo.citus_shard_pairs() IS
'On Citus: the co-located shards of rai4eo.image and rai4eo.embedding with the worker holding them, as a jsonb array; NULL when rai4eo.image is not distributed';

-- ---- distributing ------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION rai4eo_distribute(shard_count integer DEFAULT NULL)
RETURNS TABLE (table_name regclass, kind text, colocation_id integer)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t regclass;
	fk record;
	fks text[] := '{}';
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_extension x WHERE x.extname = 'citus') THEN
		RAISE EXCEPTION 'rai4eo_distribute() needs the extension citus in this database'
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'On a Citus coordinator: CREATE EXTENSION citus on every node, add the workers, then create rai4eo.';
	END IF;
	IF NOT pg_catalog.citus_is_coordinator() THEN
		RAISE EXCEPTION 'rai4eo_distribute() runs on the Citus coordinator' USING ERRCODE = 'feature_not_supported';
	END IF;
	IF shard_count IS NOT NULL AND shard_count NOT BETWEEN 1 AND 64000 THEN
		RAISE EXCEPTION 'shard_count % is out of range', shard_count USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF shard_count IS NOT NULL THEN
		PERFORM set_config('citus.shard_count', shard_count::text, true);
	END IF;
	-- One transaction both distributes tables and adds foreign keys to reference
	-- tables, which Citus allows only over one connection per node.
	PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);

	IF NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = 'rai4eo.model'::regclass) THEN
		-- A reference table that local tables point at makes Citus convert those into
		-- Citus local tables, which fails for tables and views of an extension.  So the
		-- two foreign keys into the reference tables go first, on every node (the
		-- workers' copies of the tables come from CREATE EXTENSION), and come back,
		-- propagated, once the referencing tables are distributed.
		FOR fk IN
			SELECT c.conname, c.conrelid::regclass AS rel, pg_get_constraintdef(c.oid) AS def
			FROM pg_constraint c
			WHERE c.contype = 'f' AND c.confrelid IN ('rai4eo.model'::regclass, 'rai4eo.clc_class'::regclass)
			ORDER BY c.conname
		LOOP
			EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.rel, fk.conname);
			PERFORM 1 FROM run_command_on_workers(format(
				'SET citus.enable_ddl_propagation TO off; ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I',
				fk.rel, fk.conname)) w WHERE NOT w.success;
			IF FOUND THEN
				RAISE EXCEPTION 'could not drop % on a worker', fk.conname USING ERRCODE = 'external_routine_exception';
			END IF;
			fks := fks || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.rel, fk.conname, fk.def);
		END LOOP;
		PERFORM create_reference_table('rai4eo.model');
		PERFORM create_reference_table('rai4eo.clc_class');
	END IF;
	-- A model's k-means states (rai4eo_cluster) are small and read with the model: a reference table.
	IF NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = 'rai4eo.state'::regclass) THEN
		PERFORM create_reference_table('rai4eo.state');
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = 'rai4eo.patch'::regclass) THEN
		PERFORM create_distributed_table('rai4eo.patch', 'patch_id');
	END IF;
	FOREACH t IN ARRAY ARRAY['rai4eo.patch_clc', 'rai4eo.image', 'rai4eo.embedding', 'rai4eo.review']::regclass[] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = t) THEN
			PERFORM create_distributed_table(t, 'patch_id', colocate_with => 'rai4eo.patch');
		END IF;
	END LOOP;
	FOR i IN 1 .. cardinality(fks) LOOP
		EXECUTE fks[i];
	END LOOP;
	-- The coordinator's own copies of rows now held by the shards.
	FOREACH t IN ARRAY ARRAY['rai4eo.review', 'rai4eo.embedding', 'rai4eo.image', 'rai4eo.patch_clc', 'rai4eo.patch',
							 'rai4eo.state', 'rai4eo.model', 'rai4eo.clc_class']::regclass[] LOOP
		PERFORM truncate_local_data_after_distributing_table(t);
	END LOOP;

	RETURN QUERY
	SELECT p.logicalrelid::regclass,
		   CASE p.partmethod WHEN 'n' THEN 'reference' WHEN 'h' THEN 'distributed by ' || p.partkey_name END,
		   p.colocationid
	FROM (SELECT x.logicalrelid, x.partmethod, x.colocationid,
				 pg_catalog.column_to_column_name(x.logicalrelid, x.partkey) AS partkey_name
		  FROM pg_dist_partition x) p
	WHERE p.logicalrelid IN ('rai4eo.model'::regclass, 'rai4eo.clc_class'::regclass, 'rai4eo.state'::regclass,
							 'rai4eo.patch'::regclass,
							 'rai4eo.patch_clc'::regclass, 'rai4eo.image'::regclass, 'rai4eo.embedding'::regclass,
							 'rai4eo.review'::regclass)
	ORDER BY p.partmethod DESC, p.logicalrelid::regclass::text;
END
$$;

COMMENT ON FUNCTION rai4eo_distribute(integer) IS
'On a Citus coordinator: make rai4eo.model and rai4eo.clc_class reference tables and distribute rai4eo.patch, patch_clc, image, embedding and review by patch_id, co-located (shard_count shards, default citus.shard_count); keeps every foreign key; idempotent; returns each table''s kind and co-location group';

-- ---- sql/src/99_bind_postgis.sql
-- ============================================================================
-- the install's last step: bind @postgis@ to PostGIS's schema
-- ============================================================================
--
-- PostgreSQL 15 substitutes only @extschema@ in extension scripts, but our
-- routines run with search_path = pg_catalog, pg_temp (docs/sql-conventions.md)
-- and so must name PostGIS's objects by schema.  They are written
-- @postgis@.name; here every routine of the extension that contains the
-- token is re-created with PostGIS's schema in its place, now with body
-- checking on, so a misspelt name still fails the install.  Upgrade scripts
-- end with the same call.

CREATE OR REPLACE FUNCTION rai4eo.bind_postgis_schema() RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	-- Spelt in pieces, or this body would hold the token and rewrite itself.
	token CONSTANT text := '@' || 'postgis' || '@';
	gis name;
	rast name;
	f oid;
	n integer := 0;
BEGIN
	SELECT x.extnamespace::regnamespace::name INTO gis FROM pg_extension x WHERE x.extname = 'postgis';
	SELECT x.extnamespace::regnamespace::name INTO rast FROM pg_extension x WHERE x.extname = 'postgis_raster';
	IF gis IS NULL OR rast IS NULL THEN
		RAISE EXCEPTION 'rai4eo needs the extensions postgis and postgis_raster'
			USING ERRCODE = 'undefined_object', HINT = 'CREATE EXTENSION rai4eo CASCADE installs them.';
	END IF;
	IF gis <> rast THEN
		RAISE EXCEPTION 'postgis is in schema "%" but postgis_raster in "%"', gis, rast
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'rai4eo names both through one schema: install postgis_raster into the schema of postgis.';
	END IF;
	SET LOCAL check_function_bodies = on;
	FOR f IN
		SELECT p.oid FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
		WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
		  AND d.refobjid = (SELECT x.oid FROM pg_extension x WHERE x.extname = 'rai4eo')
		  AND strpos(p.prosrc, token) > 0
		ORDER BY p.oid
	LOOP
		EXECUTE replace(pg_get_functiondef(f), token, quote_ident(gis));
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

COMMENT ON FUNCTION rai4eo.bind_postgis_schema() IS
'Install step: replace the token @postgis@ in the extension''s routines by the schema of PostGIS (run by the install and upgrade scripts); returns how many routines it re-created';
REVOKE ALL ON FUNCTION rai4eo.bind_postgis_schema() FROM PUBLIC;

SELECT rai4eo.bind_postgis_schema();
