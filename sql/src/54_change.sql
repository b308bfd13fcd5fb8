-- ============================================================================
-- change rows: daily_change, yearly_change
-- ============================================================================

-- ---- per-patch change over a period -------------------------------------------
--
-- The entry points run with jit = off: the planner cannot estimate the
-- per-patch index ranges (rows=16222 for 73), so the costs pass jit_above_cost
-- by orders of magnitude, and compiling with inlining and optimisation costs
-- 0.4 to 0.9 s per call for no gain in an index-lookup-bound plan.

CREATE FUNCTION rai4eo.change_args(aoi geometry, model text, threshold float8, sensor text, tolerance integer,
	OUT model_name text, OUT threshold_value float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM rai4eo.sensor_code(sensor);		-- NULL 22004, not registered 22023
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

CREATE FUNCTION rai4eo.patch_change_stats(aoi geometry, srid integer, first_day date, last_day date,
	model text, threshold float8, sensor text, tolerance integer)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, days_compared integer, days_changed integer,
	change_rate float8, mean_distance float8)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
	-- The AOI's patches first, then their series in one query (on Citus: on the shards).
	WITH p AS MATERIALIZED (SELECT * FROM rai4eo.aoi_patches($1, $2))
	SELECT p.patch_id, p.sample_id, p.geom, coalesce(s.days_compared, 0), coalesce(s.days_changed, 0),
		   s.days_changed::float8 / NULLIF(s.days_compared, 0), s.mean_distance
	FROM p
	LEFT JOIN rai4eo.patch_series_of(ARRAY(SELECT p.patch_id FROM p), $5, $7, $3, $4, $8, $6, NULL::@extschema@.embedding[],
								false) s ON s.patch_id = p.patch_id
$$;

COMMENT ON FUNCTION rai4eo.patch_change_stats(geometry, integer, date, date, text, float8, text, integer) IS
'Change of every patch of an AOI over first_day .. last_day with an already resolved model and threshold: days compared, days changed (distance > threshold), their ratio and the mean distance (NULL when nothing was compared). The AOI''s patches (rai4eo.aoi_patches), then their series (rai4eo.patch_series_of): the engine under daily_change and daily_heatmap.';

CREATE FUNCTION daily_change(aoi geometry, day date, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
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

CREATE FUNCTION yearly_change(aoi geometry, year integer, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
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
						  WHEN 'seasonal' THEN s.seasonal WHEN 'zscore' THEN s.zscore WHEN 'step' THEN s.step
						  WHEN 'cluster' THEN s.cluster END AS score,
			CASE d.method WHEN 'persistence' THEN s.persistence_onset WHEN 'cluster' THEN s.cluster_onset
						  ELSE s.change_point END AS onset) x
		ORDER BY s.patch_id;
END
$$;

COMMENT ON FUNCTION yearly_change(geometry, integer, text, float8, text, integer, integer) IS
'Yearly change per patch of the AOI: of the days of the year with an image paired one year earlier (see daily_change), how many were compared, how many changed (distance > threshold), change_rate = days_changed / days_compared and the mean distance; 0 compared and NULL rate and mean where nothing was compared. Then the model''s decision (rai4eo_calibrate; uncalibrated: change_rate > 0.1): score of the chosen method, changed = score > its cut, onset = the estimated first day of the change where changed. No patch: no rows.';
