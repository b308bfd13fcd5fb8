-- ============================================================================
-- calibration against labelled patches
-- ============================================================================

-- ---- calibration --------------------------------------------------------------

-- ---- labelled patches ---------------------------------------------------------

CREATE FUNCTION rai4eo.truth_labels(truth regclass, OUT patch_ids bigint[], OUT changed boolean[])
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n_both integer;
BEGIN
	IF (SELECT count(*) FROM pg_attribute a
		WHERE a.attrelid = truth AND a.attname IN ('patch_id', 'changed') AND a.attnum > 0 AND NOT a.attisdropped) < 2 THEN
		RAISE EXCEPTION 'truth table % has no columns patch_id and changed', truth USING ERRCODE = 'undefined_column',
			HINT = 'Give a table or view with patch_id bigint and changed boolean, e.g. a view renaming your columns.';
	END IF;
	-- One label per patch; NULL labels are ignored.
	EXECUTE format('SELECT array_agg(patch_id ORDER BY patch_id), array_agg(changed ORDER BY patch_id), '
				   'count(*) FILTER (WHERE n > 1) FROM (SELECT t.patch_id::bigint AS patch_id, bool_or(t.changed::boolean) AS changed, '
				   'count(DISTINCT t.changed::boolean) AS n FROM %s t WHERE t.changed IS NOT NULL GROUP BY 1) s', truth)
		INTO patch_ids, changed, n_both;
	IF n_both > 0 THEN
		RAISE EXCEPTION '% labels patches both changed and unchanged', truth
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('%s patch(es) have both labels.', n_both);
	END IF;
END
$$;

COMMENT ON FUNCTION rai4eo.truth_labels(regclass) IS
'The labels of a truth table or view (columns patch_id and changed), one per patch in patch_id order, NULL labels ignored: ERROR 42703 without those columns, 22023 for a patch labelled both ways. Read by the calibration functions.';

CREATE FUNCTION rai4eo_calibrate_threshold(model text, year integer, truth regclass, sensor text DEFAULT 'PF-SR',
	tolerance integer DEFAULT 2, rate_cut float8 DEFAULT 0.1, candidates integer DEFAULT 99, store boolean DEFAULT true)
RETURNS TABLE (threshold float8, "precision" float8, recall float8, f1 float8, true_positives integer,
	false_positives integer, false_negatives integer, true_negatives integer, chosen boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
DECLARE
	m text;
	v_sensor text := sensor;
	v_tol integer := tolerance;
	v_cut float8 := rate_cut;
	lp bigint[];
	lc boolean[];
	pp bigint[];
	pd float8[];
	n_labelled integer;
	n_used integer;
	n_pos integer;
	levels float8[];
	s_t float8[];
	s_tp integer[];
	s_fp integer[];
	s_fn integer[];
	s_tn integer[];
	best float8;
BEGIN
	m := rai4eo.resolve_model(model);
	PERFORM rai4eo.change_args(NULL, m, 0, v_sensor, v_tol);
	IF year IS NULL OR truth IS NULL THEN
		RAISE EXCEPTION 'year and truth must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF store AND NOT has_table_privilege('rai4eo.model', 'UPDATE') THEN
		RAISE EXCEPTION 'permission denied to store the threshold of model "%"', m USING ERRCODE = 'insufficient_privilege',
			HINT = 'Pass store => false to see the table without storing, or ask the owner of rai4eo.model for UPDATE.';
	END IF;
	IF v_cut IS NULL OR NOT (v_cut >= 0 AND v_cut < 1) THEN
		RAISE EXCEPTION 'rate_cut % is out of range', v_cut USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'A patch is predicted changed when its change_rate is greater than rate_cut, from 0 (any changed day) to below 1.';
	END IF;
	IF candidates IS NULL OR candidates NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'candidates % is out of range', candidates USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The candidate thresholds are the quantiles 1/(n+1) .. n/(n+1) of the observed daily distances, n from 1 to 1000.';
	END IF;

	-- On Citus, writing the reference table rai4eo.model (which distributed tables
	-- reference) after reading the shards over parallel connections is refused: read
	-- them over one connection per worker, for the rest of this transaction.
	IF store AND EXISTS (SELECT 1 FROM pg_extension x WHERE x.extname = 'citus') THEN
		PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
	END IF;
	SELECT t.patch_ids, t.changed INTO lp, lc FROM rai4eo.truth_labels(truth) t;

	-- Daily distances of the labelled patches in the year.
	SELECT array_agg(s.patch_id), array_agg(d.distance) INTO pp, pd
	FROM rai4eo.patch_series_of(lp, m, v_sensor, make_date(year, 1, 1), make_date(year, 12, 31), v_tol, 0::float8) s
	CROSS JOIN LATERAL unnest(s.distances) d(distance);

	n_labelled := coalesce(cardinality(lp), 0);
	SELECT count(*), count(*) FILTER (WHERE l.changed) INTO n_used, n_pos
	FROM unnest(lp, lc) l(patch_id, changed)
	WHERE l.patch_id = ANY (pp);
	IF n_used < n_labelled THEN
		RAISE NOTICE '% of % labelled patches have no compared day in % and are left out', n_labelled - n_used, n_labelled, year;
	END IF;
	IF n_used = 0 THEN
		RAISE EXCEPTION 'no labelled patch has a compared day in %', year
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = format('Embed the images of both %s and %s with CALL rai4eo_refresh_embeddings(%L).', year - 1, year, m);
	END IF;
	IF n_pos = 0 OR n_pos = n_used THEN
		RAISE EXCEPTION 'the labelled patches with compared days are all %', CASE WHEN n_pos = 0 THEN 'unchanged' ELSE 'changed' END
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Precision and recall need both changed and unchanged patches.';
	END IF;

	-- Candidates: quantiles of the observed distances, each an observed value.
	levels := ARRAY(SELECT k::float8 / (candidates + 1) FROM generate_series(1, candidates) k);
	WITH pairs AS (SELECT * FROM unnest(pp, pd) u(patch_id, distance)),
	labels AS (SELECT * FROM unnest(lp, lc) u(patch_id, changed)),
	cand AS (SELECT DISTINCT unnest(percentile_disc(levels) WITHIN GROUP (ORDER BY distance)) AS t FROM pairs),
	pred AS (
		SELECT c.t, l.changed,
			   count(*) FILTER (WHERE p.distance > c.t)::float8 / count(*) > v_cut AS predicted
		FROM cand c CROSS JOIN pairs p JOIN labels l USING (patch_id)
		GROUP BY c.t, p.patch_id, l.changed),
	score AS (
		SELECT t,
			   count(*) FILTER (WHERE predicted AND changed)::integer AS tp,
			   count(*) FILTER (WHERE predicted AND NOT changed)::integer AS fp,
			   count(*) FILTER (WHERE NOT predicted AND changed)::integer AS fn,
			   count(*) FILTER (WHERE NOT predicted AND NOT changed)::integer AS tn
		FROM pred GROUP BY t)
	SELECT array_agg(t ORDER BY t), array_agg(tp ORDER BY t), array_agg(fp ORDER BY t),
		   array_agg(fn ORDER BY t), array_agg(tn ORDER BY t)
	  INTO s_t, s_tp, s_fp, s_fn, s_tn
	FROM score;

	-- Best F1; a tie picks the middle of the tied thresholds (the widest margin on
	-- both sides when they form a plateau).
	SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY u.t) INTO best
	FROM unnest(s_t, s_tp, s_fp, s_fn) u(t, tp, fp, fn)
	WHERE 2.0 * u.tp / (2 * u.tp + u.fp + u.fn) = (
		SELECT max(2.0 * v.tp / (2 * v.tp + v.fp + v.fn)) FROM unnest(s_tp, s_fp, s_fn) v(tp, fp, fn));

	IF store THEN
		UPDATE rai4eo.model SET config = jsonb_set(config, '{change_threshold}', to_jsonb(best)) WHERE name = m;
	END IF;

	RETURN QUERY
		SELECT u.t, u.tp::float8 / NULLIF(u.tp + u.fp, 0), u.tp::float8 / (u.tp + u.fn),
			   2.0::float8 * u.tp / (2 * u.tp + u.fp + u.fn), u.tp, u.fp, u.fn, u.tn, u.t = best
		FROM unnest(s_t, s_tp, s_fp, s_fn, s_tn) u(t, tp, fp, fn, tn)
		ORDER BY u.t;
END
$$;

COMMENT ON FUNCTION rai4eo_calibrate_threshold(text, integer, regclass, text, integer, float8, integer, boolean) IS
'Calibrate a model''s change threshold on labelled patches: truth is a table or view with patch_id and changed boolean. Candidate thresholds are the quantiles 1/(n+1) .. n/(n+1) (n = candidates) of the daily distances observed on those patches in the year; at each, a patch is predicted changed when its yearly change_rate is greater than rate_cut (default 0.1: a lasting change changes every later day, noise only scattered ones); one row per candidate with precision, recall, F1 and the confusion counts; the best F1 (ties: the middle one) is chosen and, when store, written to rai4eo.model.config->''change_threshold''. rai4eo_calibrate chooses the whole decision (method, day threshold and cut jointly) by cross-validated F1.';
