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
-- patch_id << 24 | sensor code << 16 | days since 2000-01-01 (39_corpus_keys.sql,
-- the sensor code from the registry rai4eo.sensor), so the primary key (image_id, model) is ordered like
-- (patch_id, sensor, acquired): the images of one patch and sensor in a date
-- range are one index range, and the partner of image i lies in
-- [i - 365 - tolerance, i - 365 + tolerance].  Pairing is one btree descent per
-- compared image, all inside one set-based query, and never touches the raster
-- table.

-- ---- thresholds ---------------------------------------------------------------

CREATE FUNCTION rai4eo.change_threshold(model text, threshold float8 DEFAULT NULL) RETURNS float8
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

CREATE FUNCTION rai4eo.daily_pairs(patch_id bigint, model text, sensor text, first_day date, last_day date,
	tolerance integer DEFAULT 2)
RETURNS TABLE (image_id bigint, acquired date, prior_image_id bigint, prior_acquired date, distance float8,
	emb @extschema@.embedding, prior_emb @extschema@.embedding)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	-- Inlined into its callers' plans, which a SET clause would prevent: so every
	-- function, operator and type is schema-qualified (docs/sql-conventions.md);
	-- BETWEEN and CASE x WHEN would look up >=, <= and = by name, so neither is used;
	-- OPERATOR() binds left to right at one precedence, hence the parentheses.
	SELECT c.image_id,
		   rai4eo.image_acquired(c.image_id),
		   q.image_id,
		   rai4eo.image_acquired(q.image_id),
		   q.distance, c.emb, q.emb
	FROM (SELECT rai4eo.image_id_base($1, s.code::pg_catalog.int4) AS base
		  FROM rai4eo.sensor s WHERE s.name OPERATOR(pg_catalog.=) $3) b
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

CREATE FUNCTION rai4eo.daily_distances(patch_id bigint, model text, sensor text, first_day date, last_day date,
	tolerance integer DEFAULT 2)
RETURNS TABLE (image_id bigint, acquired date, prior_image_id bigint, prior_acquired date, distance float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	-- Inlined like daily_pairs, whose columns it selects.
	SELECT d.image_id, d.acquired, d.prior_image_id, d.prior_acquired, d.distance
	FROM rai4eo.daily_pairs($1, $2, $3, $4, $5, $6) d
$$;

COMMENT ON FUNCTION rai4eo.daily_distances(bigint, text, text, date, date, integer) IS
'Daily change of one patch: for each embedded image of the sensor acquired from first_day to last_day, the image nearest to 365 days earlier within tolerance days (ties: the earlier) and their cosine distance; days without a partner or with a NaN distance give no row. model is a model name as stored (not resolved: NULL gives no rows); sensor a registered one (rai4eo.sensor; anything else: no rows).';
