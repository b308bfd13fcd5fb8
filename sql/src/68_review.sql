-- ============================================================================
-- review: record a verdict, the candidates to review, verdicts as calibration truth
-- ============================================================================

-- ---- verdicts -------------------------------------------------------------------

CREATE FUNCTION rai4eo_review(patch_id bigint, year integer, verdict text, model text DEFAULT NULL,
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
CREATE VIEW rai4eo.review_truth AS
SELECT DISTINCT ON (r.patch_id, r.year)
	   r.patch_id, r.year,
	   CASE r.verdict WHEN 'accept' THEN true WHEN 'reject' THEN false END AS changed,
	   r.verdict, r.model, r.reviewer, r.reviewed_at
FROM rai4eo.review r
ORDER BY r.patch_id, r.year, r.reviewed_at DESC, r.reviewer;

COMMENT ON VIEW rai4eo.review_truth IS
'Reviewed patches as calibration labels: per patch and year the latest verdict (any reviewer, any model), changed = true for accept, false for reject, NULL for unsure (calibration skips NULL). With verdicts of one year, pass it straight to rai4eo_calibrate(model, year, ''rai4eo.review_truth''); otherwise through a view of one year (WHERE year = 2019).';

-- ---- candidates -------------------------------------------------------------------

CREATE FUNCTION rai4eo_review_candidates(aoi geometry, year integer, model text DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, score float8, changed boolean, onset date, change_rate float8,
	days_compared integer, verdict text, reviewer text, reviewed_at timestamptz, geom geometry)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	m text;
BEGIN
	-- yearly_change's checks first, so that a bad argument fails as it would there.
	PERFORM rai4eo.change_args(aoi, model, NULL::float8, sensor, tolerance);
	m := rai4eo.resolve_model(model);
	-- The latest verdicts in a query of their own: on Citus rai4eo.review is
	-- distributed, and neither a SQL function nor a lateral join from
	-- yearly_change's rows to it can be planned there.
	RETURN QUERY
	WITH v AS MATERIALIZED (
		SELECT DISTINCT ON (r.patch_id) r.patch_id, r.verdict, r.reviewer, r.reviewed_at
		FROM rai4eo.review r
		WHERE r.year = rai4eo_review_candidates.year AND r.model = m
		ORDER BY r.patch_id, r.reviewed_at DESC, r.reviewer)
	SELECT y.patch_id, y.sample_id, y.score, y.changed, y.onset, y.change_rate, y.days_compared,
		   v.verdict, v.reviewer, v.reviewed_at, y.geom
	FROM @extschema@.yearly_change(aoi, year, model, NULL::float8, sensor, tolerance, srid) y
	LEFT JOIN v ON v.patch_id = y.patch_id
	WHERE y.days_compared > 0
	ORDER BY y.changed DESC NULLS LAST, y.score DESC NULLS LAST, y.patch_id;
END
$$;

COMMENT ON FUNCTION rai4eo_review_candidates(geometry, integer, text, text, integer, integer) IS
'What a reviewer works through: the patches of the AOI with compared days in the year, the model''s decision (yearly_change: score, changed, onset, change_rate) and the latest verdict on it for that model (NULL: not reviewed); the changed ones first, each group by score descending. Arguments as yearly_change.';

-- ---- vector tiles -----------------------------------------------------------------

CREATE FUNCTION rai4eo_change_tile(z integer, x integer, y integer, year integer, model text DEFAULT NULL,
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
