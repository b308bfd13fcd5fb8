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
-- [i - 365 - tolerance, i - 365 + tolerance].  Pairing one patch (daily_pairs) is
-- one btree descent per compared image; pairing a set of patches
-- (patch_series_of) one range scan per patch.  Neither touches the raster table.

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
--
-- On Citus the corpus tables are distributed by patch_id, and Citus plans a
-- query only when it names the distributed tables itself: a SQL function
-- inlined into a query hides them until PostgreSQL's planner has run, and
-- Citus then refuses the query ("parameterized queries for SQL functions
-- referencing distributed tables are not supported").  So the pairing is
-- written out in the PL/pgSQL routines below (and in the view
-- rai4eo.patch_change, 66_qgis.sql), each join pinned to one patch_id, the
-- distribution column: Citus sends the whole query to the shards, each shard
-- pairs and aggregates its own patches, and only per-patch results come back.
-- On one node the same query is the index-range plan described above.  The
-- three copies of the pairing are kept the same; test/sql/change_scores.sql
-- compares them.

CREATE FUNCTION rai4eo.daily_pairs(patch_id bigint, model text, sensor text, first_day date, last_day date,
	tolerance integer DEFAULT 2)
RETURNS TABLE (image_id bigint, acquired date, prior_image_id bigint, prior_acquired date, distance float8,
	emb @extschema@.embedding, prior_emb @extschema@.embedding)
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100 SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	-- image_id of day 0 of the patch's sensor (NULL for an unregistered sensor: no rows)
	base bigint := rai4eo.image_id_base(daily_pairs.patch_id,
		(SELECT s.code FROM rai4eo.sensor s WHERE s.name = daily_pairs.sensor));
BEGIN
	-- One patch: on Citus a query routed to the shard holding it.
	RETURN QUERY
	SELECT c.image_id, rai4eo.image_acquired(c.image_id),
		   q.image_id, rai4eo.image_acquired(q.image_id),
		   q.distance, c.emb, q.emb
	FROM rai4eo.embedding c
	CROSS JOIN LATERAL (
		SELECT e.image_id, e.emb, @extschema@.cosine_change(c.emb, e.emb) AS distance
		FROM rai4eo.embedding e
		-- Same patch and sensor (never below the group's day 0), strictly earlier.
		WHERE e.patch_id = c.patch_id AND e.model = daily_pairs.model
		  AND e.image_id >= greatest(c.image_id - 365 - daily_pairs.tolerance, base)
		  AND e.image_id <= least(c.image_id - 365 + daily_pairs.tolerance, c.image_id - 1)
		ORDER BY abs(e.image_id - (c.image_id - 365)), e.image_id
		LIMIT 1) q
	WHERE c.patch_id = daily_pairs.patch_id AND c.model = daily_pairs.model
	  -- Dates outside 2000-01-01 .. 2179-06-06 have no image: clamp to the days field.
	  AND c.image_id >= base + greatest(first_day - date '2000-01-01', 0)
	  AND c.image_id <= base + least(last_day - date '2000-01-01', 65535)
	  AND q.distance <> 'NaN'::float8
	ORDER BY c.image_id;
END
$$;

COMMENT ON FUNCTION rai4eo.daily_pairs(bigint, text, text, date, date, integer) IS
'The pairs of one patch with both embeddings, in date order: for each embedded image of the sensor acquired from first_day to last_day, the image nearest to 365 days earlier within tolerance days (ties: the earlier), their cosine distance, emb (the day''s) and prior_emb (its partner''s); days without a partner or with a NaN distance give no row. The pairing under every change function (rai4eo.patch_series_of pairs a set of patches the same way).';

CREATE FUNCTION rai4eo.daily_distances(patch_id bigint, model text, sensor text, first_day date, last_day date,
	tolerance integer DEFAULT 2)
RETURNS TABLE (image_id bigint, acquired date, prior_image_id bigint, prior_acquired date, distance float8)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 100 SET search_path = pg_catalog, pg_temp AS $$
	SELECT d.image_id, d.acquired, d.prior_image_id, d.prior_acquired, d.distance
	FROM rai4eo.daily_pairs($1, $2, $3, $4, $5, $6) d
$$;

COMMENT ON FUNCTION rai4eo.daily_distances(bigint, text, text, date, date, integer) IS
'Daily change of one patch: for each embedded image of the sensor acquired from first_day to last_day, the image nearest to 365 days earlier within tolerance days (ties: the earlier) and their cosine distance; days without a partner or with a NaN distance give no row. model is a model name as stored (not resolved: NULL gives no rows); sensor a registered one (rai4eo.sensor; anything else: no rows).';

-- ---- the day series of a set of patches ---------------------------------------------

-- Every change product reads the pairs through this: one range scan of each
-- patch's embeddings (the year and its partners' year), reduced to its series
-- by the C aggregate rai4eo.day_series, which pairs the days as daily_pairs
-- does (the same rule, src/core/change_score.c r4_pair_days) -- a partner
-- lookup per day costs a btree descent each, this costs one per patch -- so
-- pairs and embeddings never leave the scan (on Citus: never leave their
-- shard).  The patches come as ids (the AOI is resolved first by
-- rai4eo.aoi_patches).

CREATE FUNCTION rai4eo.day_series_accum(internal, bigint, @extschema@.embedding, bigint, bigint, integer, float8,
	@extschema@.embedding[], boolean) RETURNS internal
AS 'MODULE_PATHNAME', 'rai4eo_series_accum' LANGUAGE C PARALLEL SAFE;

CREATE FUNCTION rai4eo.day_series_final(internal) RETURNS rai4eo.day_series
AS 'MODULE_PATHNAME', 'rai4eo_series_final' LANGUAGE C PARALLEL SAFE;

COMMENT ON FUNCTION rai4eo.day_series_accum(internal, bigint, embedding, bigint, bigint, integer, float8, embedding[], boolean) IS
'Transition function of the aggregate rai4eo.day_series: keeps a copy of each row''s embedding and its image_id';
COMMENT ON FUNCTION rai4eo.day_series_final(internal) IS
'Final function of the aggregate rai4eo.day_series: pairs the days (r4_pair_days) and reduces them to a rai4eo.day_series';

CREATE AGGREGATE rai4eo.day_series(image_id bigint, emb @extschema@.embedding, first_id bigint, last_id bigint,
	tolerance integer, t float8, centres @extschema@.embedding[], composites boolean) (
	SFUNC = rai4eo.day_series_accum,
	STYPE = internal,
	FINALFUNC = rai4eo.day_series_final,
	PARALLEL = SAFE
);

COMMENT ON AGGREGATE rai4eo.day_series(bigint, embedding, bigint, bigint, integer, float8, embedding[], boolean) IS
'One patch''s embeddings of one sensor (image_id, emb; any order) reduced to its day series: each day from first_id to last_id paired with the embedding nearest to 365 days earlier within tolerance days (ties: the earlier; the rule of rai4eo.daily_pairs), pairs with a NaN distance left out; days changed counts distances > t; centres (or NULL) give the state series, composites the {annual, seasonal, zscore} of rai4eo.pair_composites. NULL without a pair. The arguments after emb are read from the first row.';

CREATE FUNCTION rai4eo.patch_series_of(patch_ids bigint[], model text, sensor text, first_day date, last_day date,
	tolerance integer, t float8, centres @extschema@.embedding[] DEFAULT NULL, composites boolean DEFAULT false)
RETURNS TABLE (patch_id bigint, days_compared integer, days_changed integer, mean_distance float8, days date[],
	distances float8[], state_changes float8[], composite float8[])
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	-- the sensor's code inside an image_id (NULL for an unregistered sensor: no pairs)
	code integer := (SELECT s.code FROM rai4eo.sensor s WHERE s.name = patch_series_of.sensor);
	first_days integer := greatest(first_day - date '2000-01-01', 0);
	last_days integer := least(last_day - date '2000-01-01', 65535);
	-- the partners of the first day lie from a year and tolerance days before it
	scan_days integer := greatest(first_days - 365 - tolerance, 0);
BEGIN
	-- Driven by the ids, not by rai4eo.patch (a caller may read the embeddings
	-- alone).  On Citus every shard runs it; the GROUP BY on the distribution
	-- column is what lets Citus push a per-id aggregate down.  No row for a
	-- patch without pairs (the aggregate's NULL), which the callers take as 0
	-- days compared.
	RETURN QUERY
	SELECT x.patch_id, (x.s).days_compared, (x.s).days_changed, (x.s).mean_distance, (x.s).days,
		   (x.s).distances, (x.s).state_changes, (x.s).composite
	FROM unnest(patch_ids) l(patch_id)
	CROSS JOIN LATERAL (
		SELECT c.patch_id,
			   rai4eo.day_series(c.image_id, c.emb, rai4eo.image_id_base(l.patch_id, code) + first_days,
								 rai4eo.image_id_base(l.patch_id, code) + last_days, patch_series_of.tolerance,
								 patch_series_of.t, patch_series_of.centres, patch_series_of.composites) AS s
		FROM rai4eo.embedding c
		WHERE c.patch_id = l.patch_id AND c.model = patch_series_of.model
		  AND c.image_id >= rai4eo.image_id_base(l.patch_id, code) + scan_days
		  AND c.image_id <= rai4eo.image_id_base(l.patch_id, code) + last_days
		GROUP BY c.patch_id) x
	WHERE (x.s).days_compared IS NOT NULL;
END
$$;

COMMENT ON FUNCTION rai4eo.patch_series_of(bigint[], text, text, date, date, integer, float8, embedding[], boolean) IS
'Day series of each patch of patch_ids with at least one pair (pairs as rai4eo.daily_pairs; model as stored, not resolved; no row for a patch without pairs): days compared, days changed (distance > t), mean distance, the dates and distances in date order, with centres the 0/1 series "the day''s cluster state differs from its partner''s" (NULL without centres), with composites {annual, seasonal, zscore} of rai4eo.pair_composites (else NULL). One query, which Citus runs on the shards.';
