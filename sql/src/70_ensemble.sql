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

CREATE FUNCTION rai4eo.ensemble_args(models text[], weights float8[], thresholds float8[])
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

CREATE FUNCTION ensemble_yearly_change(aoi geometry, year integer, models text[], weights float8[] DEFAULT NULL,
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
CREATE FUNCTION rai4eo.ensemble_cell(value double precision[][][], pos integer[][], VARIADIC weights text[])
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT sum(value[i][1][1] * weights[i]::float8) / NULLIF(sum(weights[i]::float8), 0)
	FROM generate_subscripts(value, 1) i
	WHERE value[i][1][1] IS NOT NULL
$$;
COMMENT ON FUNCTION rai4eo.ensemble_cell(double precision[], integer[], text[]) IS
'ST_MapAlgebra callback for ensemble_yearly_heatmap: weighted mean of the members'' values of one cell, NULL when none has one';

-- ST_MapAlgebra callback: 1 where the weighted vote is a majority (> 0.5), else 0
CREATE FUNCTION rai4eo.ensemble_majority(value double precision[][][], pos integer[][], VARIADIC userargs text[] DEFAULT NULL)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN value[1][1][1] > 0.5 THEN 1 ELSE 0 END::float8
$$;
COMMENT ON FUNCTION rai4eo.ensemble_majority(double precision[], integer[], text[]) IS
'ST_MapAlgebra callback for ensemble_yearly_heatmap: 1 where the members'' weighted vote is above one half, else 0 (NULL stays nodata)';

CREATE FUNCTION ensemble_yearly_heatmap(aoi geometry, year integer, models text[], weights float8[] DEFAULT NULL,
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

CREATE FUNCTION rai4eo_calibrate_ensemble(models text[], year integer, truth regclass, weights float8[] DEFAULT NULL,
	thresholds float8[] DEFAULT NULL, sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2)
RETURNS TABLE (rate_cut float8, "precision" float8, recall float8, f1 float8, true_positives integer,
	false_positives integer, false_negatives integer, true_negatives integer, chosen boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
DECLARE
	truth_ids bigint[];
	truth_changed boolean[];
	ids bigint[];
	geoms @postgis@.geometry[];
BEGIN
	EXECUTE format('SELECT array_agg(t.patch_id::bigint), array_agg(t.changed::boolean) FROM %s t '
				   'WHERE t.changed IS NOT NULL', truth) INTO truth_ids, truth_changed;
	-- The labelled patches' footprints first, in a query of their own: on Citus a
	-- query joining rai4eo.patch to the ensemble would run it on the shards, where
	-- it cannot read the distributed tables.
	SELECT array_agg(p.patch_id), array_agg(p.geom) INTO ids, geoms FROM rai4eo.patch p WHERE p.patch_id = ANY (truth_ids);
	RETURN QUERY
	WITH e AS (SELECT t.changed, y.change_rate
			   FROM unnest(truth_ids, truth_changed) t(patch_id, changed)
			   JOIN unnest(ids, geoms) p(patch_id, geom) ON p.patch_id = t.patch_id
			   CROSS JOIN LATERAL @extschema@.ensemble_yearly_change(p.geom, year, models, weights, thresholds, sensor,
																	 tolerance, NULL::integer) y
			   WHERE y.patch_id = t.patch_id AND y.change_rate IS NOT NULL),
	c AS (SELECT DISTINCT e.change_rate AS cut FROM e UNION SELECT 0),
	s AS (SELECT c.cut,
				 count(*) FILTER (WHERE e.change_rate > c.cut AND e.changed)::integer AS tp,
				 count(*) FILTER (WHERE e.change_rate > c.cut AND NOT e.changed)::integer AS fp,
				 count(*) FILTER (WHERE e.change_rate <= c.cut AND e.changed)::integer AS fn,
				 count(*) FILTER (WHERE e.change_rate <= c.cut AND NOT e.changed)::integer AS tn
		  FROM c CROSS JOIN e GROUP BY c.cut),
	r AS (SELECT s.cut, s.tp::float8 / NULLIF(s.tp + s.fp, 0) AS p, s.tp::float8 / NULLIF(s.tp + s.fn, 0) AS r,
				 s.tp, s.fp, s.fn, s.tn FROM s),
	f AS (SELECT r.*, coalesce(2 * r.p * r.r / NULLIF(r.p + r.r, 0), 0) AS f1 FROM r)
	SELECT f.cut, f.p, f.r, f.f1, f.tp, f.fp, f.fn, f.tn,
		   row_number() OVER (ORDER BY f.f1 DESC, f.cut) = 1
	FROM f ORDER BY f.cut;
END
$$;
COMMENT ON FUNCTION rai4eo_calibrate_ensemble(text[], integer, regclass, float8[], float8[], text, integer) IS
'Precision, recall and F1 of "ensemble change rate > rate_cut" on labelled patches (a table of patch_id, changed) for every observed rate; chosen marks the best F1 (ties: the lowest cut). The members'' own thresholds are calibrated with rai4eo_calibrate_threshold.';
