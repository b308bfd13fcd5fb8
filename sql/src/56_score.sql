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
--   step         the change point as a score: the largest rise of the mean
--                daily distance after a day over its mean before, among the
--                days followed by at least k compared days (a change must
--                persist k images; a burst at the year's end cannot score
--                alone); unweighted, so it measures the size of the shift
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

CREATE FUNCTION rai4eo.change_persistence(distances float8[], threshold float8, k integer) RETURNS float8
AS 'MODULE_PATHNAME', 'rai4eo_change_persistence' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.change_persistence(float8[], float8, integer) IS
'Persistence score of a day series in date order: from the first run of k consecutive values greater than threshold (the onset), the share of all values that are greater; 0 without such a run, NULL for an empty series. k = 1 gives the plain share of values above threshold (the rate). k outside 1 .. 366: 22023; NULL elements: 22004.';

CREATE FUNCTION rai4eo.change_onset(distances float8[], threshold float8, k integer) RETURNS integer
AS 'MODULE_PATHNAME', 'rai4eo_change_onset' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.change_onset(float8[], float8, integer) IS
'1-based position of the first of k consecutive values greater than threshold (the onset of a confirmed change), NULL when there is none';

CREATE FUNCTION rai4eo.change_point(distances float8[]) RETURNS integer
AS 'MODULE_PATHNAME', 'rai4eo_change_point' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.change_point(float8[]) IS
'Least-squares single change point of a series: the 1-based position s maximising (s-1)(n-s+1)/n (mean after - mean before)^2 over the splits where the mean rises (ties: the earliest); 1 when none rises; NULL for an empty series';

-- The change happened between the last image before the split and the first after it:
-- the middle of that gap is the estimate with the smallest worst-case error (at a 20-day
-- revisit the first image after the split alone is up to 20 days late).
CREATE FUNCTION rai4eo.change_step(distances float8[], k integer) RETURNS float8
AS 'MODULE_PATHNAME', 'rai4eo_change_step' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.change_step(float8[], integer) IS
'Step score of a series in date order: the largest mean(values from position s on) - mean(values before s) over the splits s = 2 .. n - k + 1 that leave at least k values after (s = 2 only when n <= k); may be negative; NULL for fewer than 2 values. k outside 1 .. 366: 22023; NULL elements: 22004.';

CREATE FUNCTION rai4eo.change_point_day(days date[], distances float8[]) RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN c.p > 1 THEN days[c.p - 1] + (days[c.p] - days[c.p - 1]) / 2 ELSE days[c.p] END
	FROM (SELECT rai4eo.change_point(distances) AS p) c
$$;
COMMENT ON FUNCTION rai4eo.change_point_day(date[], float8[]) IS
'Onset date of the least-squares change point of a day series (days in date order, distances their values): the middle of the gap between days[p - 1] and days[p], p = change_point(distances) (rounded down); days[1] when p is 1; NULL for an empty series';

CREATE FUNCTION rai4eo.robust_z(test float8[], base float8[], scale_floor float8 DEFAULT 0.001) RETURNS float8
AS 'MODULE_PATHNAME', 'rai4eo_robust_z' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.robust_z(float8[], float8[], float8) IS
'Robust z of a sample against a baseline: (median(test) - median(base)) / greatest(1.4826 MAD(base), scale_floor); NULL when either is empty; scale_floor must be positive (22023)';

CREATE FUNCTION rai4eo.nearest_state(e embedding, centres embedding[]) RETURNS integer
AS 'MODULE_PATHNAME', 'rai4eo_nearest_state' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION rai4eo.state_changed(e embedding, prior embedding, centres embedding[]) RETURNS integer
AS 'MODULE_PATHNAME', 'rai4eo_state_changed' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.state_changed(embedding, embedding, embedding[]) IS
'1 when nearest_state(e, centres) and nearest_state(prior, centres) differ, 0 when they are the same, NULL when either is a zero vector or there are no centres: the cluster score''s day series';

COMMENT ON FUNCTION rai4eo.nearest_state(embedding, embedding[]) IS
'1-based position of the centre most similar in cosine to e (ties: the first); NULL for a zero vector or no centres; dimensions differing: 22000';

CREATE FUNCTION rai4eo.pair_composites_accum(internal, date, embedding, embedding) RETURNS internal
AS 'MODULE_PATHNAME', 'rai4eo_pair_accum' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.pair_composites_accum(internal, date, embedding, embedding) IS
'Transition function of rai4eo.pair_composites: keeps the pairs';
CREATE FUNCTION rai4eo.pair_composites_final(internal) RETURNS float8[]
AS 'MODULE_PATHNAME', 'rai4eo_pair_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rai4eo.pair_composites_final(internal) IS
'Final function of rai4eo.pair_composites: {annual, seasonal, zscore}';
CREATE AGGREGATE rai4eo.pair_composites(date, embedding, embedding) (
	SFUNC = rai4eo.pair_composites_accum,
	STYPE = internal,
	FINALFUNC = rai4eo.pair_composites_final,
	-- Safe in a parallel worker; there is no combine function, so never split.
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE rai4eo.pair_composites(date, embedding, embedding) IS
'Composites of a patch''s pairs (day, its embedding, its partner''s one year earlier), as {annual, seasonal, zscore}: annual the cosine distance between the mean embeddings of the days and of their partners; seasonal the mean over calendar months of that distance within the month; zscore the robust z (scale floor 0.001) of the days'' distances to the partners'' mean against the partners'' own; NULL elements where a mean is a zero vector, NULL without pairs';

-- The pairs of a patch with their embeddings come from rai4eo.daily_pairs, the
-- day series of a set of patches from rai4eo.patch_series_of (52_pairing.sql).

-- ---- every score of every patch of an AOI ------------------------------------------

CREATE FUNCTION rai4eo.patch_scores(aoi geometry, srid integer, year integer, model text, sensor text, tolerance integer,
	threshold float8, score_threshold float8, k integer, composites boolean, centres embedding[])
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, days_compared integer, days_changed integer,
	change_rate float8, mean_distance float8, rate float8, persistence float8, persistence_onset date,
	change_point date, annual float8, seasonal float8, zscore float8, step float8, cluster float8, cluster_onset date)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
	-- jit = off: see 54_change.sql (the planner's costs pass jit_above_cost for an index-bound plan).
	-- The AOI's patches first, then their series in one query (on Citus: on the shards).
	WITH p AS MATERIALIZED (SELECT * FROM rai4eo.aoi_patches($1, $2))
	SELECT p.patch_id, p.sample_id, p.geom, coalesce(s.days_compared, 0), coalesce(s.days_changed, 0),
		   s.days_changed::float8 / NULLIF(s.days_compared, 0), s.mean_distance,
		   rai4eo.change_persistence(s.distances, $8, 1),
		   rai4eo.change_persistence(s.distances, $8, $9),
		   s.days[rai4eo.change_onset(s.distances, $8, $9)],
		   rai4eo.change_point_day(s.days, s.distances),
		   s.composite[1], s.composite[2], s.composite[3],
		   rai4eo.change_step(s.distances, $9),
		   rai4eo.change_persistence(s.state_changes, 0.5, $9),
		   s.days[rai4eo.change_onset(s.state_changes, 0.5, $9)]
	FROM p
	LEFT JOIN rai4eo.patch_series_of(ARRAY(SELECT p.patch_id FROM p), $4, $5, make_date($3, 1, 1), make_date($3, 12, 31), $6, $7,
								$11, $10) s ON s.patch_id = p.patch_id
$$;

COMMENT ON FUNCTION rai4eo.patch_scores(geometry, integer, integer, text, text, integer, float8, float8, integer, boolean, embedding[]) IS
'Every change score of every patch of an AOI for a year (see 56_score.sql): days compared and changed at threshold, change_rate and mean distance as yearly_change, rate and persistence at score_threshold (run length k) with the persistence onset, the change point of the daily distances, the composites when composites is true (else NULL), the step score (at least k days after the split), the cluster score and onset when centres are given (else NULL)';

-- ---- the decision stored by rai4eo_calibrate ---------------------------------------

CREATE FUNCTION rai4eo.change_methods() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT ARRAY['rate', 'persistence', 'annual', 'seasonal', 'zscore', 'step', 'cluster']
$$;
COMMENT ON FUNCTION rai4eo.change_methods() IS
'The change score methods, simplest first (the order that breaks ties in rai4eo_calibrate)';

CREATE FUNCTION rai4eo.change_decision(model text, threshold float8 DEFAULT NULL,
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
'The change decision in force for a model (resolved name): method, day threshold (rate and persistence: the argument, else the calibrated one, else rai4eo.change_threshold), run length k (persistence, cluster; step: the days needed after the split) and cut (changed = score > cut), from config->''change_decision'' written by rai4eo_calibrate; uncalibrated: the seeds'' rule, rate > 0.1 at the threshold in force';
