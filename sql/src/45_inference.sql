-- ============================================================================
-- inference: rai4eo_embed, rai4eo_model_input, rai4eo_classify
-- ============================================================================

-- ---- inference -----------------------------------------------------------------

CREATE FUNCTION rai4eo_embed(rast raster, model text DEFAULT NULL) RETURNS embedding
AS 'MODULE_PATHNAME', 'rai4eo_embed'
LANGUAGE C STABLE PARALLEL SAFE COST 100000;
COMMENT ON FUNCTION rai4eo_embed(raster, text) IS
'Embedding of a raster by a model (NULL: rai4eo.default_model), computed in the backend, equal to PyTorch to float32 rounding';

CREATE FUNCTION rai4eo_embed(rasts raster[], model text DEFAULT NULL) RETURNS embedding[]
AS 'MODULE_PATHNAME', 'rai4eo_embed_array'
LANGUAGE C STABLE PARALLEL SAFE COST 1000000;
COMMENT ON FUNCTION rai4eo_embed(raster[], text) IS
'Embeddings of an array of rasters in one batched forward pass per run of equally sized rasters; same shape and order, NULL for NULL';

CREATE FUNCTION rai4eo_model_input(rast raster, model text DEFAULT NULL) RETURNS real[]
AS 'MODULE_PATHNAME', 'rai4eo_model_input'
LANGUAGE C STABLE PARALLEL SAFE COST 1000;
COMMENT ON FUNCTION rai4eo_model_input(raster, text) IS
'The tensor the model sees for a raster, real[channel][row][column]: bands picked, scaled, normalised, nodata = 0, resized in resize mode';


-- ---- classification ----------------------------------------------------------------

CREATE FUNCTION rai4eo_classify(rast raster, model text DEFAULT NULL) RETURNS real[]
AS 'MODULE_PATHNAME', 'rai4eo_classify'
LANGUAGE C STABLE PARALLEL SAFE COST 100000;
COMMENT ON FUNCTION rai4eo_classify(raster, text) IS
'Class probabilities of a raster from a model with a classification head, in the order of the model''s classes (softmax, or a sigmoid per class for a multi-label model)';

CREATE FUNCTION rai4eo_classify(rasts raster[], model text DEFAULT NULL) RETURNS embedding[]
AS 'MODULE_PATHNAME', 'rai4eo_classify_array'
LANGUAGE C STABLE PARALLEL SAFE COST 1000000;
COMMENT ON FUNCTION rai4eo_classify(raster[], text) IS
'Class probabilities of an array of rasters in batched forward passes, as probability vectors (embedding[]: same shape and order, NULL for NULL)';

CREATE FUNCTION rai4eo_classify_labels(rast raster, model text DEFAULT NULL)
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
