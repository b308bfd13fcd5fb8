-- ============================================================================
-- models: the models view and storing, dropping, resolving models
-- ============================================================================

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

CREATE FUNCTION rai4eo_create_external_model(name text, dims integer, config jsonb DEFAULT '{}',
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

CREATE FUNCTION rai4eo.resolve_model(model text) RETURNS text
AS 'MODULE_PATHNAME', 'rai4eo_resolve_model'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.resolve_model(text) IS
'The model a model argument names: itself, or rai4eo.default_model when NULL; errors if there is no such model';

GRANT SELECT ON rai4eo.models TO PUBLIC;
