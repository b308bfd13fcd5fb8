-- ============================================================================
-- temporal classifiers: class probabilities of a patch's embedding sequence,
-- and from -> to class transitions of changed patches
-- ============================================================================

-- ---- one sequence ---------------------------------------------------------------

CREATE FUNCTION rai4eo_classify_sequence(seq embedding[], model text DEFAULT NULL) RETURNS real[]
AS 'MODULE_PATHNAME', 'rai4eo_classify_sequence'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo_classify_sequence(embedding[], text) IS
'Class probabilities of a temporal classifier (an lstm or gru model) over a sequence of embeddings, oldest first, in the model''s class order; NULL for a NULL or empty sequence';

CREATE FUNCTION rai4eo.temporal_input(model text, OUT model_name text, OUT input_model text, OUT sensor text,
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

CREATE FUNCTION rai4eo.series_embeddings(patch_id bigint, input_model text, sensor text, first_day date, last_day date)
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

CREATE FUNCTION rai4eo.top_class(probs real[], classes jsonb, OUT class text, OUT probability real)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT classes ->> (k.i - 1)::integer, k.p
	FROM unnest(probs) WITH ORDINALITY k(p, i)
	ORDER BY k.p DESC, k.i
	LIMIT 1
$$;
COMMENT ON FUNCTION rai4eo.top_class(real[], jsonb) IS
'The most probable class of a probability vector (the first on ties) and its probability; NULLs for NULL';

CREATE FUNCTION rai4eo.class_shift(before real[], after real[], classes jsonb, OUT from_class text,
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

CREATE FUNCTION rai4eo_classify_series(patch_id bigint, model text, first_day date, last_day date) RETURNS real[]
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

CREATE FUNCTION rai4eo_classify_series_labels(patch_id bigint, model text, first_day date, last_day date)
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

CREATE FUNCTION class_transitions(aoi geometry, year integer, classifier text, model text DEFAULT NULL,
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

CREATE FUNCTION rai4eo.patch_transitions(patch_id bigint, classifier text)
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
		FROM generate_series(extract(year FROM rai4eo.image_acquired(span.lo))::integer + 1,
							 extract(year FROM rai4eo.image_acquired(span.hi))::integer) y(y)
		CROSS JOIN LATERAL @extschema@.class_transitions(g, y.y, c.model_name, NULL::text, NULL::float8,
														 c.sensor, 2, @postgis@.ST_SRID(g)) t
		WHERE t.patch_id = patch_transitions.patch_id;
END
$$;
COMMENT ON FUNCTION rai4eo.patch_transitions(bigint, text) IS
'class_transitions of one patch for every year that has a year before it, with the classifier''s input_model and calibrated decision (sensor of the classifier, tolerance 2)';

CREATE VIEW rai4eo.class_transition AS
SELECT p.patch_id * 10000 + t.year AS id, p.patch_id, p.sample_id, t.year, c.name AS classifier,
	   t.from_class, t.to_class, t.from_probability, t.to_probability, t.onset, p.geom
FROM (SELECT m.name FROM rai4eo.model m WHERE m.arch IN ('lstm', 'gru') AND m.config ? 'input_model'
	  AND jsonb_typeof(m.config -> 'input_model') = 'string'
	  ORDER BY m.created DESC, m.name LIMIT 1) c
CROSS JOIN rai4eo.patch p
CROSS JOIN LATERAL rai4eo.patch_transitions(p.patch_id, c.name) t;
COMMENT ON VIEW rai4eo.class_transition IS
'QGIS-ready from -> to class transitions of the changed patches, per patch and year, by the most recently stored temporal classifier with an input_model: key id = patch_id * 10000 + year, geometry geom in each patch''s CRS. Filter by bounding box (geom && ...) and year: work is done per patch read.';
