-- ============================================================================
-- models: weights (safetensors) and their configuration
-- ============================================================================

CREATE TABLE rai4eo.model (
	name		text PRIMARY KEY CHECK (name <> ''),
	arch		text NOT NULL CHECK (arch IN ('vit', 'resnet', 'external', 'lstm', 'gru')),
	config		jsonb NOT NULL DEFAULT '{}',
	weights		bytea NOT NULL,
	sha256		bytea NOT NULL CHECK (length(sha256) = 32),
	parameters	bigint CHECK (parameters >= 0),
	created		timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE rai4eo.model ALTER COLUMN weights SET STORAGE EXTERNAL;

COMMENT ON TABLE rai4eo.model IS 'Feature extractors and classifiers: safetensors weights plus the resolved configuration';
COMMENT ON COLUMN rai4eo.model.name IS 'Model name, used by rai4eo_embed(rast, model) and the embedding table';
COMMENT ON COLUMN rai4eo.model.arch IS 'Architecture: vit or resnet, or external for embeddings computed outside the database';
COMMENT ON COLUMN rai4eo.model.config IS 'Configuration: bands, scale/mean/std, input mode, feature recipe, change_threshold, ...';
COMMENT ON COLUMN rai4eo.model.weights IS 'The safetensors file, stored uncompressed';
COMMENT ON COLUMN rai4eo.model.sha256 IS 'SHA-256 of weights, kept true by a trigger: the per-backend model cache is keyed by it';
COMMENT ON COLUMN rai4eo.model.parameters IS 'Number of weights the engine uses (set by rai4eo_load_model)';
COMMENT ON COLUMN rai4eo.model.created IS 'When the model was stored';

-- The cache trusts sha256, so it is computed here, whoever writes the row.
CREATE FUNCTION rai4eo.model_set_sha256() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	-- An update that only touches config keeps the digest without rehashing
	IF TG_OP = 'INSERT' OR NEW.weights IS DISTINCT FROM OLD.weights THEN
		NEW.sha256 := sha256(NEW.weights);
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION rai4eo.model_set_sha256() IS 'Trigger: sets rai4eo.model.sha256 from the weights';

CREATE TRIGGER model_sha256 BEFORE INSERT OR UPDATE OF weights ON rai4eo.model
	FOR EACH ROW EXECUTE FUNCTION rai4eo.model_set_sha256();

CREATE VIEW rai4eo.models AS
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

CREATE FUNCTION rai4eo_load_model(name text, weights bytea, config jsonb DEFAULT '{}',
								  replace boolean DEFAULT false) RETURNS text
AS 'MODULE_PATHNAME', 'rai4eo_load_model'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION rai4eo_load_model(text, bytea, jsonb, boolean) IS
'Validate a safetensors file completely (header, offsets, dtypes, shapes, configuration) and store it as model name; config overrides the file''s __metadata__; replace => true replaces an existing model and deletes its embeddings if the weights changed';

CREATE FUNCTION rai4eo_load_model_file(name text, path text, config jsonb DEFAULT '{}',
									   replace boolean DEFAULT false) RETURNS text
AS 'MODULE_PATHNAME', 'rai4eo_load_model_file'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION rai4eo_load_model_file(text, text, jsonb, boolean) IS
'rai4eo_load_model from a file on the database server; superusers and members of pg_read_server_files only';

CREATE FUNCTION rai4eo_drop_model(name text, if_exists boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE AS $$
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

CREATE FUNCTION rai4eo_create_external_model(name text, dims integer, config jsonb DEFAULT '{}',
											 replace boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE AS $$
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
	INSERT INTO rai4eo.model AS m (name, arch, config, weights)
	VALUES (rai4eo_create_external_model.name, 'external', cfg, '')
	ON CONFLICT ON CONSTRAINT model_pkey DO UPDATE SET arch = 'external', config = EXCLUDED.config, weights = '', created = now()
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

CREATE FUNCTION rai4eo.resolve_model(model text) RETURNS text
AS 'MODULE_PATHNAME', 'rai4eo_resolve_model'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.resolve_model(text) IS
'The model a model argument names: itself, or rai4eo.default_model when NULL; errors if there is no such model';

GRANT SELECT ON rai4eo.model, rai4eo.models TO PUBLIC;
