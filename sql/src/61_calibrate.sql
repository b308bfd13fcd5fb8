-- ============================================================================
-- calibration of the change decision: method and parameters by cross-validated F1
-- ============================================================================
--
-- rai4eo_calibrate scores every labelled patch with every method of
-- 56_score.sql over a grid of parameters (day threshold = quantiles of the
-- labelled patches' daily distances, run length k: persistence 2, 3, 4, 6,
-- cluster 1, 2, 3; step's days after the split 1, 2, 3, 4, 6) and chooses, for each
-- method, the parameters and the cut (changed = score > cut; cuts are the
-- midpoints between consecutive distinct scores) with the best F1.  The
-- method is chosen by k-fold cross-validated F1: the labels are split into
-- folds, stratified by label, in patch_id order (deterministic); each fold is
-- predicted with the parameters and cut chosen on the other folds, and the
-- pooled predictions give the method's cv F1.  The stored parameters are the
-- ones chosen on all labels.  Ties: higher fit F1, then the simpler method
-- (rai4eo.change_methods order); within a method the middle of the tied
-- parameters, then the middle of the tied cuts.

CREATE FUNCTION rai4eo_calibrate(model text, year integer, truth regclass, sensor text DEFAULT 'PF-SR',
	tolerance integer DEFAULT 2, folds integer DEFAULT 5, methods text[] DEFAULT NULL, candidates integer DEFAULT 19,
	store boolean DEFAULT true)
RETURNS TABLE (method text, threshold float8, k integer, cut float8, cv_f1 float8, fit_f1 float8,
	fit_precision float8, fit_recall float8, labelled integer, chosen boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
DECLARE
	m text;
	v_sensor text := sensor;
	v_tol integer := tolerance;
	v_year integer := year;
	ms text[];
	centres @extschema@.embedding[];
	lp bigint[];
	lc boolean[];
	n_labelled integer;
	n_used integer;
	n_pos integer;
	nf integer;
	levels float8[];
	best text;
	result jsonb;
BEGIN
	m := rai4eo.resolve_model(model);
	PERFORM rai4eo.change_args(NULL, m, 0, v_sensor, v_tol);
	IF v_year IS NULL OR truth IS NULL THEN
		RAISE EXCEPTION 'year and truth must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF folds IS NULL OR folds NOT BETWEEN 2 AND 20 THEN
		RAISE EXCEPTION 'folds % is out of range', folds USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'Cross-validation uses 2 to 20 folds.';
	END IF;
	IF candidates IS NULL OR candidates NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'candidates % is out of range', candidates USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The candidate day thresholds are the quantiles 1/(n+1) .. n/(n+1) of the observed daily distances, n from 1 to 200.';
	END IF;
	IF store AND NOT has_table_privilege('rai4eo.model', 'UPDATE') THEN
		RAISE EXCEPTION 'permission denied to store the decision of model "%"', m USING ERRCODE = 'insufficient_privilege',
			HINT = 'Pass store => false to see the table without storing, or ask the owner of rai4eo.model for UPDATE.';
	END IF;
	centres := rai4eo.model_states(m);
	IF methods IS NULL THEN
		ms := ARRAY(SELECT u FROM unnest(rai4eo.change_methods()) u WHERE u <> 'cluster' OR centres IS NOT NULL);
	ELSE
		IF cardinality(methods) = 0 OR EXISTS (SELECT 1 FROM unnest(methods) u WHERE u IS NULL OR NOT u = ANY (rai4eo.change_methods())) THEN
			RAISE EXCEPTION 'unknown change method in %', methods USING ERRCODE = 'invalid_parameter_value',
				HINT = format('Methods are %s.', array_to_string(rai4eo.change_methods(), ', '));
		END IF;
		IF 'cluster' = ANY (methods) AND centres IS NULL THEN
			RAISE EXCEPTION 'model "%" has no cluster states', m USING ERRCODE = 'object_not_in_prerequisite_state',
				HINT = format('Fit them first with rai4eo_cluster(%L).', m);
		END IF;
		ms := ARRAY(SELECT DISTINCT u FROM unnest(methods) u);
	END IF;
	-- On Citus, writing the reference table rai4eo.model (which distributed tables
	-- reference) after reading the shards over parallel connections is refused: read
	-- them over one connection per worker, for the rest of this transaction.
	IF store AND EXISTS (SELECT 1 FROM pg_extension x WHERE x.extname = 'citus') THEN
		PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
	END IF;
	SELECT t.patch_ids, t.changed INTO lp, lc FROM rai4eo.truth_labels(truth) t;
	n_labelled := coalesce(cardinality(lp), 0);

	-- The labelled patches' series and composites (patches without a compared day are left out).
	IF to_regclass('pg_temp.r4_cal_series') IS NOT NULL THEN
		DROP TABLE pg_temp.r4_cal_series;
	END IF;
	CREATE TEMP TABLE r4_cal_series ON COMMIT DROP AS
	SELECT l.patch_id, l.changed, s.distances, s.state_changes, s.composite[1] AS annual, s.composite[2] AS seasonal,
		   s.composite[3] AS zscore, 0 AS fold
	FROM unnest(lp, lc) l(patch_id, changed)
	JOIN rai4eo.patch_series_of(lp, m, v_sensor, make_date(v_year, 1, 1), make_date(v_year, 12, 31),
								v_tol, 0::float8, centres, ms && ARRAY['annual', 'seasonal', 'zscore']) s ON s.patch_id = l.patch_id
	WHERE s.days_compared > 0;
	SELECT count(*), count(*) FILTER (WHERE s.changed) INTO n_used, n_pos FROM r4_cal_series s;
	IF n_used < n_labelled THEN
		RAISE NOTICE '% of % labelled patches have no compared day in % and are left out', n_labelled - n_used, n_labelled, v_year;
	END IF;
	IF n_used = 0 THEN
		RAISE EXCEPTION 'no labelled patch has a compared day in %', v_year
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = format('Embed the images of both %s and %s with CALL rai4eo_refresh_embeddings(%L).', v_year - 1, v_year, m);
	END IF;
	nf := least(folds, n_pos, n_used - n_pos);
	IF nf < 2 THEN
		RAISE EXCEPTION 'cross-validation needs at least 2 changed and 2 unchanged labelled patches with compared days'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('%s changed and %s unchanged.', n_pos, n_used - n_pos);
	END IF;
	IF nf < folds THEN
		RAISE NOTICE 'using % folds: the smaller class has % labelled patches', nf, least(n_pos, n_used - n_pos);
	END IF;
	-- Stratified folds: the i-th patch of each label (in patch_id order) goes to fold i mod nf + 1.
	UPDATE r4_cal_series s SET fold = f.fold
	FROM (SELECT x.patch_id, (row_number() OVER (PARTITION BY x.changed ORDER BY x.patch_id) - 1) % nf + 1 AS fold
		  FROM r4_cal_series x) f
	WHERE f.patch_id = s.patch_id;

	-- The parameter grid.
	levels := ARRAY(SELECT g::float8 / (candidates + 1) FROM generate_series(1, candidates) g);
	IF to_regclass('pg_temp.r4_cal_param') IS NOT NULL THEN
		DROP TABLE pg_temp.r4_cal_param;
	END IF;
	CREATE TEMP TABLE r4_cal_param ON COMMIT DROP AS
	WITH t AS (SELECT DISTINCT unnest(percentile_disc(levels) WITHIN GROUP (ORDER BY d)) AS t
			   FROM r4_cal_series s, unnest(s.distances) d),
	p AS (SELECT 'rate' AS method, t.t AS threshold, 1 AS k FROM t
		  UNION ALL SELECT 'persistence', t.t, r.k FROM t, unnest(ARRAY[2, 3, 4, 6]) r(k)
		  UNION ALL SELECT u, NULL, NULL FROM unnest(ARRAY['annual', 'seasonal', 'zscore']) u
		  UNION ALL SELECT 'step', NULL, r.k FROM unnest(ARRAY[1, 2, 3, 4, 6]) r(k)
		  UNION ALL SELECT 'cluster', NULL, r.k FROM unnest(ARRAY[1, 2, 3]) r(k))
	SELECT p.method, row_number() OVER (PARTITION BY p.method ORDER BY p.threshold, p.k)::integer AS param, p.threshold, p.k
	FROM p WHERE p.method = ANY (ms);

	IF to_regclass('pg_temp.r4_cal_score') IS NOT NULL THEN
		DROP TABLE pg_temp.r4_cal_score;
	END IF;
	CREATE TEMP TABLE r4_cal_score ON COMMIT DROP AS
	SELECT p.method, p.param, s.patch_id, s.changed, s.fold,
		   CASE p.method WHEN 'rate' THEN rai4eo.change_persistence(s.distances, p.threshold, 1)
						 WHEN 'persistence' THEN rai4eo.change_persistence(s.distances, p.threshold, p.k)
						 WHEN 'annual' THEN s.annual WHEN 'seasonal' THEN s.seasonal WHEN 'zscore' THEN s.zscore
						 WHEN 'step' THEN rai4eo.change_step(s.distances, p.k)
						 WHEN 'cluster' THEN rai4eo.change_persistence(s.state_changes, 0.5, p.k) END AS score
	FROM r4_cal_param p CROSS JOIN r4_cal_series s;

	-- Training sets: 0 = every label (the fit), f = every fold but f.
	IF to_regclass('pg_temp.r4_cal_best') IS NOT NULL THEN
		DROP TABLE pg_temp.r4_cal_best;
	END IF;
	CREATE TEMP TABLE r4_cal_best ON COMMIT DROP AS
	WITH tr AS (SELECT generate_series(0, nf) AS tr),
	sc AS (SELECT s.*, t.tr FROM r4_cal_score s CROSS JOIN tr t WHERE t.tr = 0 OR s.fold <> t.tr),
	-- F1 at every cut from cumulative counts (one sort per parameter and training set): the
	-- cut between consecutive distinct scores s < s' predicts changed for the scores >= s'.
	pos AS (SELECT sc.method, sc.param, sc.tr, count(*) FILTER (WHERE sc.changed) AS p FROM sc GROUP BY 1, 2, 3),
	g AS (SELECT sc.method, sc.param, sc.tr, sc.score, count(*) FILTER (WHERE sc.changed) AS np,
				 count(*) FILTER (WHERE NOT sc.changed) AS nn
		  FROM sc WHERE sc.score IS NOT NULL GROUP BY 1, 2, 3, 4),
	cum AS (SELECT g.method, g.param, g.tr, g.score,
				   sum(g.np) OVER w AS tp, sum(g.nn) OVER w AS fp,
				   lag(g.score) OVER (PARTITION BY g.method, g.param, g.tr ORDER BY g.score) AS below,
				   count(*) OVER (PARTITION BY g.method, g.param, g.tr) AS n
			FROM g WINDOW w AS (PARTITION BY g.method, g.param, g.tr ORDER BY g.score DESC)),
	-- One distinct score: nothing separates; the cut at it predicts no change.
	ev AS (SELECT c.method, c.param, c.tr,
				  CASE WHEN c.below IS NULL THEN c.score ELSE (c.below + c.score) / 2 END AS cut,
				  CASE WHEN c.below IS NULL THEN 0 ELSE c.tp END AS tp,
				  CASE WHEN c.below IS NULL THEN 0 ELSE c.fp END AS fp,
				  o.p - CASE WHEN c.below IS NULL THEN 0 ELSE c.tp END AS fn
		   FROM cum c JOIN pos o ON o.method = c.method AND o.param = c.param AND o.tr = c.tr
		   WHERE c.below IS NOT NULL OR c.n = 1),
	f AS (SELECT ev.*, 2.0::float8 * ev.tp / (2 * ev.tp + ev.fp + ev.fn) AS f1 FROM ev),
	top AS (SELECT f.method, f.tr, max(f.f1) AS f1 FROM f GROUP BY 1, 2),
	bp AS (SELECT t.method, t.tr, t.f1, percentile_disc(0.5) WITHIN GROUP (ORDER BY f.param) AS param
		   FROM top t JOIN f ON f.method = t.method AND f.tr = t.tr AND f.f1 = t.f1 GROUP BY 1, 2, 3)
	SELECT b.method, b.tr, b.param, b.f1,
		   (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY f.cut) FROM f
			WHERE f.method = b.method AND f.tr = b.tr AND f.param = b.param AND f.f1 = b.f1) AS cut
	FROM bp b;

	IF to_regclass('pg_temp.r4_cal_result') IS NOT NULL THEN
		DROP TABLE pg_temp.r4_cal_result;
	END IF;
	CREATE TEMP TABLE r4_cal_result ON COMMIT DROP AS
	WITH cv AS (
		SELECT b.method,
			   count(*) FILTER (WHERE s.score > b.cut AND s.changed) AS tp,
			   count(*) FILTER (WHERE s.score > b.cut AND NOT s.changed) AS fp,
			   count(*) FILTER (WHERE NOT coalesce(s.score > b.cut, false) AND s.changed) AS fn
		FROM r4_cal_best b JOIN r4_cal_score s ON s.method = b.method AND s.param = b.param AND s.fold = b.tr
		WHERE b.tr > 0 GROUP BY 1),
	fit AS (
		SELECT b.method, b.param, b.cut, b.f1,
			   count(*) FILTER (WHERE s.score > b.cut AND s.changed) AS tp,
			   count(*) FILTER (WHERE s.score > b.cut) AS pp
		FROM r4_cal_best b JOIN r4_cal_score s ON s.method = b.method AND s.param = b.param
		WHERE b.tr = 0 GROUP BY 1, 2, 3, 4)
	SELECT f.method, p.threshold, p.k, f.cut, 2.0::float8 * cv.tp / (2 * cv.tp + cv.fp + cv.fn) AS cv_f1, f.f1 AS fit_f1,
		   f.tp::float8 / NULLIF(f.pp, 0) AS fit_precision, f.tp::float8 / n_pos AS fit_recall,
		   array_position(rai4eo.change_methods(), f.method) AS ord
	FROM fit f JOIN cv USING (method) JOIN r4_cal_param p ON p.method = f.method AND p.param = f.param;

	SELECT r.method INTO best FROM r4_cal_result r ORDER BY r.cv_f1 DESC, r.fit_f1 DESC, r.ord LIMIT 1;

	IF store THEN
		SELECT jsonb_build_object(
				   'change_decision', (SELECT jsonb_strip_nulls(jsonb_build_object('method', r.method, 'threshold', r.threshold,
						'k', r.k, 'cut', r.cut, 'cv_f1', r.cv_f1, 'fit_f1', r.fit_f1, 'year', v_year, 'sensor', v_sensor,
						'tolerance', v_tol, 'labelled', n_used, 'folds', nf))
									   FROM r4_cal_result r WHERE r.method = best),
				   'change_scores', (SELECT jsonb_object_agg(r.method, jsonb_strip_nulls(jsonb_build_object('threshold', r.threshold,
						'k', r.k, 'cut', r.cut, 'cv_f1', r.cv_f1, 'fit_f1', r.fit_f1)))
									 FROM r4_cal_result r))
			   || coalesce((SELECT jsonb_build_object('change_threshold', r.threshold) FROM r4_cal_result r
							WHERE r.method = 'rate'), '{}')
		  INTO result;
		UPDATE rai4eo.model mo SET config = mo.config || result WHERE mo.name = m;
	END IF;

	RETURN QUERY
		SELECT r.method, r.threshold, r.k, r.cut, r.cv_f1, r.fit_f1, r.fit_precision, r.fit_recall, n_used, r.method = best
		FROM r4_cal_result r ORDER BY r.ord;
END
$$;

COMMENT ON FUNCTION rai4eo_calibrate(text, integer, regclass, text, integer, integer, text[], integer, boolean) IS
'Choose a model''s change decision on labelled patches (truth: patch_id, changed boolean): every score method (rate, persistence, annual, seasonal, zscore, step, and cluster when the model has states; or those in methods) over a grid of day thresholds (the quantiles 1/(n+1) .. n/(n+1) of the labelled daily distances, n = candidates), run lengths k (persistence 2, 3, 4, 6; step 1, 2, 3, 4, 6; cluster 1, 2, 3) and cuts (midpoints between consecutive scores); per method the best-F1 parameters on all labels (fit) and the k-fold cross-validated F1 (stratified folds in patch_id order; each fold predicted with what the other folds chose). The method with the best cv F1 (ties: fit F1, then the simpler) is chosen; when store, it is written to config->''change_decision'' (every method''s choice to config->''change_scores'', the rate threshold to change_threshold) and yearly_change''s score, changed and onset follow it. One row per method.';
