-- Change scores, the calibrated decision and clustering on hand-made embeddings.
-- Monthly images on the 15th (2018 against 2019: exactly 365 days apart);
-- 2-d embeddings against [1,0] give exact cosine distances:
--   [1,0] 0   [4,3] 0.2   [3,4] 0.4   [0,1] 1
SET datestyle = ISO;
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
INSERT INTO rai4eo.model (name, arch, config, weights, sha256)
VALUES ('sm', 'external', '{}', '\x00', sha256('\x00')), ('cl', 'external', '{}', '\x01', sha256('\x01'));
CREATE FUNCTION pg_temp.patch(gx int) RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO rai4eo.patch (patch_id, sample_id, geom)
	SELECT rai4eo.patch_id_of(s), s, ST_MakeEnvelope(gx * 600, 4200000, gx * 600 + 600, 4200600, 32629)
	FROM format('29N_%sE-175N_%s_00', gx / 40, lpad((gx % 40)::text, 2, '0')) s
	RETURNING patch_id $$;
-- A year of monthly embeddings: e[m] on the 15th of month m.
CREATE FUNCTION pg_temp.year(pid bigint, y int, e text[], model text DEFAULT 'sm') RETURNS void LANGUAGE sql AS $$
	INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
	SELECT rai4eo.image_id_of(pid, 'PF-SR', make_date(y, m, 15)), pid, 'PF-SR', make_date(y, m, 15),
		   ST_AddBand(ST_MakeEmptyRaster(1, 1, 0, 0, 1, -1, 0, 0, 32629), '16BUI'::text, 0)
	FROM generate_series(1, cardinality(e)) m ON CONFLICT DO NOTHING;
	INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb) SELECT rai4eo.image_id_of(pid, 'PF-SR', make_date(y, m, 15)), pid, model, e[m]::embedding
	FROM generate_series(1, cardinality(e)) m $$;
-- 2019 with [0,1] in the listed months and [1,0] elsewhere
CREATE FUNCTION pg_temp.months(high int[], hi text DEFAULT '[0,1]') RETURNS text[] LANGUAGE sql AS $$
	SELECT array_agg(CASE WHEN m = ANY (high) THEN hi ELSE '[1,0]' END ORDER BY m) FROM generate_series(1, 12) m $$;

-- ---- kernels ---------------------------------------------------------------------

-- persistence: the first run of 3 starts at position 4; from there 4 of 8 values exceed
SELECT rai4eo.change_persistence('{0,1,0,1,1,1,0,1}', 0.5, 3) AS persistence,
	   rai4eo.change_onset('{0,1,0,1,1,1,0,1}', 0.5, 3) AS onset,
	   rai4eo.change_persistence('{0,1,0,1,1,1,0,1}', 0.5, 1) AS rate_k1,
	   rai4eo.change_persistence('{0,1,0,1,1,0,0,1}', 0.5, 3) AS no_run,
	   rai4eo.change_onset('{0,1,0,1,1,0,0,1}', 0.5, 3) AS no_onset,
	   rai4eo.change_persistence('{}', 0.5, 3) AS empty;
-- change point: the first day of the higher segment; 1 when no split raises the mean
SELECT rai4eo.change_point('{0,0,0,1,1,1}') AS step, rai4eo.change_point('{0,0.1,0,0.9,1,0.8,1}') AS noisy_step,
	   rai4eo.change_point('{1,1,0}') AS falling, rai4eo.change_point('{0.3}') AS single, rai4eo.change_point('{}') AS empty;
-- step: the largest mean after - mean before with at least k values after; a burst of one
-- image at the end scores only with k = 1; k >= n leaves split 2 alone; a falling series is negative
SELECT rai4eo.change_step('{0,0,0,1,1,1}', 3) AS step, rai4eo.change_step('{0,0,0,1,1,1}', 4) AS step_k4,
	   rai4eo.change_step('{0,0,0,0,0,0,0,1}', 1) AS burst_k1, rai4eo.change_step('{0,0,0,0,0,0,0,1}', 2) AS burst_k2,
	   rai4eo.change_step('{0,0,0,1,1,1}', 366) AS short, rai4eo.change_step('{1,1,0}', 1) AS falling,
	   rai4eo.change_step('{0.3}', 1) AS single, rai4eo.change_step('{}', 1) AS empty;
SELECT pg_temp.err($$SELECT rai4eo.change_step('{1,2}', 0)$$);
SELECT pg_temp.err($$SELECT rai4eo.change_step('{1,NULL}', 1)$$);
-- its day: the middle of the gap before the first day of the higher segment (rounded down);
-- the first day when the split is at 1
SELECT rai4eo.change_point_day('{2019-03-01,2019-03-11,2019-03-31,2019-04-05}', '{0,0,1,1}') AS mid_gap,
	   rai4eo.change_point_day('{2019-03-01,2019-03-11,2019-03-30}', '{0,0,1}') AS rounded_down,
	   rai4eo.change_point_day('{2019-03-01,2019-03-11}', '{1,0}') AS no_rise,
	   rai4eo.change_point_day('{}', '{}') AS empty;
-- robust z: (4 - 2.5) / (1.4826 * 1) ; a constant baseline uses the floor
SELECT round(rai4eo.robust_z('{3,4,5}', '{1,2,3,4}')::numeric, 9) AS z,
	   rai4eo.robust_z('{0.5}', '{0.1,0.1}') AS z_floor, rai4eo.robust_z('{0.5}', '{0.1,0.1}', 0.1) AS z_floor_01,
	   rai4eo.robust_z('{}', '{1}') AS empty;
-- nearest state by cosine, ties the first, zero vector none
SELECT rai4eo.nearest_state('[1,0]', ARRAY['[0,1]', '[1,0.1]', '[2,0.2]']::embedding[]) AS nearest,
	   rai4eo.nearest_state('[0,0]', ARRAY['[0,1]']::embedding[]) AS zero,
	   rai4eo.nearest_state('[1,0]', '{}'::embedding[]) AS none;
SELECT pg_temp.err($$SELECT rai4eo.change_persistence('{1,2}', 0.5, 0)$$);
SELECT pg_temp.err($$SELECT rai4eo.change_onset('{1,2}', 0.5, 367)$$);
SELECT pg_temp.err($$SELECT rai4eo.change_point('{1,NULL}')$$);
SELECT pg_temp.err($$SELECT rai4eo.robust_z('{1}', '{1}', 0)$$);
-- state_changed: the states of a pair differ (1) or not (0)
SELECT rai4eo.state_changed('[1,0]', '[0,1]', ARRAY['[0,1]', '[1,0.1]']::embedding[]) AS differ,
	   rai4eo.state_changed('[1,0]', '[2,0.1]', ARRAY['[0,1]', '[1,0.1]']::embedding[]) AS same,
	   rai4eo.state_changed('[1,0]', '[0,0]', ARRAY['[0,1]']::embedding[]) AS zero;
SELECT pg_temp.err($$SELECT rai4eo.state_changed('[1,0]', '[1,0,0]', ARRAY['[0,1]']::embedding[])$$);
SELECT pg_temp.err($$SELECT rai4eo.nearest_state('[1,0]', ARRAY['[1,0,0]']::embedding[])$$);
SELECT pg_temp.err($$SELECT rai4eo.nearest_state('[1,0]', ARRAY[NULL]::embedding[])$$);
SELECT pg_temp.err($$SELECT rai4eo.nearest_state('[1,0]', ARRAY['[1,0]', '[1,0,0]']::embedding[])$$);
-- composites of pairs: a day and its partner, as {annual, seasonal, zscore}
SELECT rai4eo.pair_composites(d, e, p) FROM (VALUES ('2019-01-15'::date, '[0,1]'::embedding, '[1,0]'::embedding),
	('2019-02-15', '[1,0]', '[1,0]')) v(d, e, p);
SELECT rai4eo.pair_composites(d, e, p) IS NULL AS no_pairs FROM (SELECT NULL::date, NULL::embedding, NULL::embedding) v(d, e, p);
SELECT pg_temp.err($$SELECT rai4eo.pair_composites(d, e, p) FROM (VALUES ('2019-01-15'::date, '[0,1]'::embedding, '[1,0,0]'::embedding)) v(d, e, p)$$);

-- ---- every score on hand-made patches -----------------------------------------------

CREATE TEMP TABLE p (name text PRIMARY KEY, id bigint, high int[], hi text);
INSERT INTO p VALUES
	-- a step on 2019-07-15: distances 0 x 6 then 1 x 6
	('S', pg_temp.patch(3000), '{7,8,9,10,11,12}', '[0,1]'),
	-- phenology: two high months in spring and one 0.4 month
	('N', pg_temp.patch(3001), '{3,4}', '[0,1]'),
	-- small persistent change: 0.2 from May on
	('W', pg_temp.patch(3002), '{5,6,7,8,9,10,11,12}', '[4,3]');
SELECT pg_temp.year(id, 2018, pg_temp.months('{}')), pg_temp.year(id, 2019, pg_temp.months(high, hi)) FROM p;
-- N's September is [3,4] (0.4) instead of [1,0]
UPDATE rai4eo.embedding SET emb = '[3,4]' WHERE model = 'sm' AND image_id = rai4eo.image_id_of((SELECT id FROM p WHERE name = 'N'), 'PF-SR', '2019-09-15');
-- daily_pairs pairs exactly like daily_distances
SELECT count(*) AS pairs, bool_and(a.distance = b.distance) AS same_pairs
FROM (SELECT p.id, d.acquired, d.distance FROM p, rai4eo.daily_pairs(p.id, 'sm', 'PF-SR', '2019-01-01', '2019-12-31', 2) d) a
FULL JOIN (SELECT p.id, d.acquired, d.distance FROM p, rai4eo.daily_distances(p.id, 'sm', 'PF-SR', '2019-01-01', '2019-12-31', 2) d) b
  USING (id, acquired);
-- the pairing is written three times (daily_pairs, patch_series_of, the view patch_change):
-- patch_series_of's series are daily_pairs' pairs, patch by patch
SELECT count(*) AS patches, bool_and(s.days = d.days AND s.distances = d.distances
									 AND s.days_compared = cardinality(d.days)) AS same_pairs
FROM rai4eo.patch_series_of(ARRAY(SELECT id FROM p), 'sm', 'PF-SR', '2019-01-01', '2019-12-31', 2, 0.5::float8) s
JOIN LATERAL (SELECT array_agg(x.acquired ORDER BY x.acquired) AS days, array_agg(x.distance ORDER BY x.acquired) AS distances
			  FROM rai4eo.daily_pairs(s.patch_id, 'sm', 'PF-SR', '2019-01-01', '2019-12-31', 2) x) d ON true;
-- a patch without pairs (and an id that is no patch) gives no row
SELECT count(*) AS no_rows FROM rai4eo.patch_series_of(ARRAY[pg_temp.patch(3999), 12345::bigint], 'sm', 'PF-SR',
	'2019-01-01', '2019-12-31', 2, 0.5::float8);
-- rai4eo.day_series (under patch_series_of) against the pairing of daily_pairs reduced in SQL,
-- on irregular dates (gaps, neighbours within tolerance, ties), zero vectors (NaN distances)
-- and three tolerances, with the state series and the composites
SELECT setseed(0.25);
INSERT INTO rai4eo.model (name, arch, config, weights, sha256) VALUES ('rp', 'external', '{}', '\x02', sha256('\x02'));
CREATE TEMP TABLE rp AS SELECT pg_temp.patch(3500 + i) AS id FROM generate_series(0, 3) i;
CREATE TEMP TABLE rp_days AS
SELECT rp.id, date '2018-01-01' + k AS d,
	   CASE WHEN random() < 0.05 THEN '[0,0,0]' ELSE format('[%s,%s,%s]', random() - 0.3, random() - 0.3, random() - 0.3) END AS e
FROM rp, generate_series(0, 729) k WHERE random() < 0.3;
INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
SELECT rai4eo.image_id_of(id, 'PF-SR', d), id, 'PF-SR', d, ST_AddBand(ST_MakeEmptyRaster(1, 1, 0, 0, 1, -1, 0, 0, 32629), '16BUI'::text, 0)
FROM rp_days ON CONFLICT DO NOTHING;
INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb) SELECT rai4eo.image_id_of(id, 'PF-SR', d), id, 'rp', e::embedding FROM rp_days;
SELECT tol, count(*) AS patches, sum(s.days_compared) > 100 AS many_pairs,
	   bool_and(s.days = r.days AND s.distances = r.distances AND s.days_compared = r.n AND s.days_changed = r.k
				AND abs(s.mean_distance - r.mean) < 1e-12 AND s.state_changes = r.states
				AND s.composite = r.composite) AS same_series
FROM unnest('{0,2,7}'::int[]) tol
CROSS JOIN LATERAL rai4eo.patch_series_of(ARRAY(SELECT id FROM rp), 'rp', 'PF-SR', '2019-01-01', '2019-12-31', tol, 0.4::float8,
	ARRAY['[1,0,0]', '[0,1,0]', '[0,0,1]']::embedding[], true) s
JOIN LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE x.distance > 0.4) AS k, avg(x.distance) AS mean,
					 array_agg(x.acquired ORDER BY x.acquired) AS days, array_agg(x.distance ORDER BY x.acquired) AS distances,
					 array_agg(coalesce(rai4eo.state_changed(x.emb, x.prior_emb, ARRAY['[1,0,0]', '[0,1,0]', '[0,0,1]']::embedding[]), 0)::float8
							   ORDER BY x.acquired) AS states,
					 rai4eo.pair_composites(x.acquired, x.emb, x.prior_emb) AS composite
			  FROM rai4eo.daily_pairs(s.patch_id, 'rp', 'PF-SR', '2019-01-01', '2019-12-31', tol) x) r ON true
GROUP BY tol ORDER BY tol;
-- without centres and composites those two are NULL; the aggregate alone: no pair gives NULL
SELECT bool_and(state_changes IS NULL AND composite IS NULL) AS nulls
FROM rai4eo.patch_series_of(ARRAY(SELECT id FROM rp), 'rp', 'PF-SR', '2019-01-01', '2019-12-31', 2, 0.4::float8);
SELECT rai4eo.day_series(i, e, 1000, 2000, 2, 0.5, NULL, false) IS NULL AS no_pair
FROM (VALUES (1000::bigint, '[1,0]'::embedding), (1100, '[0,1]')) v(i, e);
SELECT (rai4eo.day_series(i, e, 1000, 2000, 2, 0.5, NULL, false)).* FROM (VALUES (1366::bigint, '[0,1]'::embedding), (1000, '[1,0]'), (1002, '[0,1]')) v(i, e);
SELECT pg_temp.err($$SELECT rai4eo.day_series(i, e, 1000, 2000, 2, 0.5, NULL, false) FROM (VALUES (1366::bigint, '[0,1]'::embedding), (1000, '[1,0,0]')) v(i, e)$$);
DELETE FROM rai4eo.patch WHERE patch_id IN (SELECT id FROM rp);
DELETE FROM rai4eo.model WHERE name = 'rp';

-- S: rate 6/12, persistence (k 3) 6/12 from 2019-07-15, change point 2019-06-30 (the middle of
--    2019-06-15 .. 2019-07-15, the gap before the higher segment),
--    annual 1 - 6/sqrt(72) = 0.292893, seasonal 6/12, zscore (0.5 - 0) / 0.001 = 500
-- N: rate 2/12 (0.4 is below 0.5), no run of 3, change point 2019-03-01 (middle of the gap before
--    2019-03-15), annual 1 - 12/sqrt(180),
--    seasonal (1 + 1 + 0.4)/12, zscore (median 0 - 0) = 0
-- W: annual 1 - 36/sqrt(36^2 + 24^2) = 0.167950, seasonal 8 x 0.2/12, zscore 0.2 / 0.001
-- W: rate 0 at 0.5; at 0.1 rate and persistence 8/12 from 2019-05-15
-- step (k 3): S 1 - 0 (split at July); N 2.4/10 - 0 (split at March: the spring burst and the
--    0.4 September against two quiet months); W 0.2 - 0 (split at May)
SELECT p.name, s.days_compared, s.days_changed, round(s.rate::numeric, 6) AS rate, round(s.persistence::numeric, 6) AS persistence,
	   s.persistence_onset, s.change_point, round(s.annual::numeric, 6) AS annual, round(s.seasonal::numeric, 6) AS seasonal,
	   round(s.zscore::numeric, 6) AS zscore, round(s.step::numeric, 6) AS step, s.cluster
FROM rai4eo.patch_scores(ST_MakeEnvelope(1800000, 4200000, 1801800, 4200600, 32629), NULL, 2019, 'sm', 'PF-SR', 2,
						 0.5, 0.5, 3, true, NULL) s JOIN p ON p.id = s.patch_id ORDER BY p.name;
SELECT p.name, round(s.rate::numeric, 6) AS rate, round(s.persistence::numeric, 6) AS persistence, s.persistence_onset
FROM rai4eo.patch_scores(ST_MakeEnvelope(1800000, 4200000, 1801800, 4200600, 32629), NULL, 2019, 'sm', 'PF-SR', 2,
						 0.5, 0.1, 3, false, NULL) s JOIN p ON p.id = s.patch_id ORDER BY p.name;

-- ---- clustering ------------------------------------------------------------------------

-- Two separable groups under model cl: near [1,0] and near [0,1], 12 each.
CREATE TEMP TABLE cp AS SELECT pg_temp.patch(3100) AS id;
SELECT pg_temp.year(id, 2018, ARRAY(SELECT format('[1,%s]', 0.01 * m) FROM generate_series(1, 12) m), 'cl'),
	   pg_temp.year(id, 2019, ARRAY(SELECT format('[%s,1]', 0.01 * m) FROM generate_series(1, 12) m), 'cl') FROM cp;
SELECT state, members, (SELECT array_agg(round(x::numeric, 4)) FROM unnest(centre::real[]) x) AS centre
FROM rai4eo_cluster('cl', 2, iterations => 10);
-- every embedding of a group lands in its group's state
SELECT extract(year FROM i.acquired) AS year, array_agg(DISTINCT rai4eo.nearest_state(e.emb, rai4eo.model_states('cl'))) AS states
FROM rai4eo.embedding e JOIN rai4eo.image i USING (image_id) WHERE e.model = 'cl' GROUP BY 1 ORDER BY 1;
-- the cluster score of sm: states of [1,0] and [0,1] (k = 2 on sm's embeddings)
SELECT state, members FROM rai4eo_cluster('sm', 2);
SELECT p.name, round(s.cluster::numeric, 6) AS cluster, s.cluster_onset
FROM rai4eo.patch_scores(ST_MakeEnvelope(1800000, 4200000, 1801800, 4200600, 32629), NULL, 2019, 'sm', 'PF-SR', 2,
						 0.5, 0.5, 3, false, rai4eo.model_states('sm')) s JOIN p ON p.id = s.patch_id ORDER BY p.name;
SELECT pg_temp.err($$SELECT * FROM rai4eo_cluster('cl', 1)$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_cluster('cl', 25)$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_cluster('cl', 2, 'S1')$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_cluster('cl', 2, sample_size => 1)$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_cluster('cl', 2, iterations => 0)$$);
DELETE FROM rai4eo.state WHERE model = 'sm';

-- ---- calibration on a table whose best answer is known -----------------------------------

-- Four changed patches with persistent steps (4 to 10 months) and four unchanged with
-- phenology bursts of at most 3 months.  By rate U1 (5 high months) sits between C1
-- (4) and C3 (6): no rate cut is perfect; persistence with k = 4 at t = 0 is, but the
-- folds without C1 choose k and cut that miss it (cv F1 0.75); step separates at every
-- run length (changed 1 against at most U1's 5/9 at k 3, the middle of the tied k) and
-- is chosen with the cut between 5/9 and 1.
CREATE TEMP TABLE cal (name text, id bigint, changed boolean, high int[]);
INSERT INTO cal VALUES
	('C1', pg_temp.patch(3200), true, '{9,10,11,12}'), ('C2', pg_temp.patch(3201), true, '{5,6,7,8,9,10,11,12}'),
	('C3', pg_temp.patch(3202), true, '{7,8,9,10,11,12}'), ('C4', pg_temp.patch(3203), true, '{3,4,5,6,7,8,9,10,11,12}'),
	('U1', pg_temp.patch(3204), false, '{4,5,6,9,11}'), ('U2', pg_temp.patch(3205), false, '{6,7,8}'),
	('U3', pg_temp.patch(3206), false, '{2}'), ('U4', pg_temp.patch(3207), false, '{}');
SELECT pg_temp.year(id, 2018, pg_temp.months('{}')), pg_temp.year(id, 2019, pg_temp.months(high)) FROM cal;
CREATE TEMP TABLE truth AS SELECT id AS patch_id, changed FROM cal;
SELECT method, threshold, k, round(cut::numeric, 6) AS cut, round(cv_f1::numeric, 6) AS cv_f1, round(fit_f1::numeric, 6) AS fit_f1,
	   round(fit_precision::numeric, 6) AS fit_precision, round(fit_recall::numeric, 6) AS fit_recall, labelled, chosen
FROM rai4eo_calibrate('sm', 2019, 'truth', candidates => 3);
SELECT jsonb_pretty(config -> 'change_decision') AS decision, config -> 'change_threshold' AS change_threshold
FROM rai4eo.model WHERE name = 'sm';
-- yearly_change follows the decision: score, changed and the onset of the step
SELECT c.name, y.days_changed, round(y.score::numeric, 6) AS score, y.changed, y.onset
FROM yearly_change(ST_MakeEnvelope(1920000, 4200000, 1924800, 4200600, 32629), 2019, 'sm') y JOIN cal c ON c.id = y.patch_id
ORDER BY c.name;
-- the QGIS view carries the same decision (default model)
SET rai4eo.default_model = 'sm';
SELECT c.name, v.year, v.days_changed, round(v.score::numeric, 6) AS score, v.changed, v.onset
FROM rai4eo.patch_change v JOIN cal c ON c.id = v.patch_id ORDER BY c.name, v.year;
-- the view's own copy of the pairing gives yearly_change's rows exactly
SELECT count(*) AS patches,
	   bool_and(v.days_compared = y.days_compared AND v.days_changed = y.days_changed AND v.mean_distance = y.mean_distance
				AND v.score = y.score AND v.changed = y.changed AND v.onset IS NOT DISTINCT FROM y.onset) AS same_as_yearly_change
FROM rai4eo.patch_change v
JOIN yearly_change(ST_MakeEnvelope(1920000, 4200000, 1924800, 4200600, 32629), 2019, 'sm') y USING (patch_id)
WHERE v.year = 2019;
RESET rai4eo.default_model;
-- restricted to rate: the best rate cut misclassifies U1 or C1
SELECT method, threshold, round(cut::numeric, 6) AS cut, round(cv_f1::numeric, 6) AS cv_f1, round(fit_f1::numeric, 6) AS fit_f1, chosen
FROM rai4eo_calibrate('sm', 2019, 'truth', methods => '{rate}', store => false);
-- two folds
SELECT method, round(cv_f1::numeric, 6) AS cv_f1, chosen FROM rai4eo_calibrate('sm', 2019, 'truth', folds => 2, store => false);
-- restricted to rate and persistence: persistence (k 4 at t 0) is chosen and stored;
-- yearly_change decides by it, the onset the first day of the confirming run
SELECT method, threshold, k, round(cut::numeric, 6) AS cut, round(cv_f1::numeric, 6) AS cv_f1, round(fit_f1::numeric, 6) AS fit_f1, chosen
FROM rai4eo_calibrate('sm', 2019, 'truth', methods => '{rate,persistence}');
SELECT c.name, y.days_changed, round(y.score::numeric, 6) AS score, y.changed, y.onset
FROM yearly_change(ST_MakeEnvelope(1920000, 4200000, 1924800, 4200600, 32629), 2019, 'sm') y JOIN cal c ON c.id = y.patch_id
ORDER BY c.name;
SET rai4eo.default_model = 'sm';
SELECT count(*) AS patches, bool_and(v.score = y.score AND v.changed = y.changed AND v.onset IS NOT DISTINCT FROM y.onset) AS view_same
FROM rai4eo.patch_change v
JOIN yearly_change(ST_MakeEnvelope(1920000, 4200000, 1924800, 4200600, 32629), 2019, 'sm') y USING (patch_id)
WHERE v.year = 2019;
RESET rai4eo.default_model;
-- an ensemble of the model with itself (weights 3 and 1; the second at threshold 1, where no day
-- exceeds, decides unchanged): the weighted share of members
-- deciding changed, changed above one half, the earliest member onset
SELECT c.name, round(e.score::numeric, 6) AS score, e.changed, e.onset
FROM ensemble_yearly_change(ST_MakeEnvelope(1920000, 4200000, 1924800, 4200600, 32629), 2019, '{sm,sm}', '{3,1}', '{NULL,1}') e
JOIN cal c ON c.id = e.patch_id ORDER BY c.name;
-- uncalibrated: the seeds' rule (rate > 0.1 at the threshold in force)
UPDATE rai4eo.model SET config = '{}' WHERE name = 'sm';
SELECT * FROM rai4eo.change_decision('sm', 0.5);
SELECT c.name, round(y.score::numeric, 6) AS score, y.changed, y.onset
FROM yearly_change(ST_MakeEnvelope(1920000, 4200000, 1924800, 4200600, 32629), 2019, 'sm', 0.5) y JOIN cal c ON c.id = y.patch_id
ORDER BY c.name;
UPDATE rai4eo.model SET config = '{"change_decision": {"method": "magic", "cut": 1}}' WHERE name = 'sm';
SELECT pg_temp.err($$SELECT * FROM yearly_change(ST_MakeEnvelope(1920000, 4200000, 1924800, 4200600, 32629), 2019, 'sm', 0.5)$$);
UPDATE rai4eo.model SET config = '{"change_decision": {"method": "cluster", "cut": 0.1, "k": 2}}' WHERE name = 'sm';
SELECT pg_temp.err($$SELECT * FROM yearly_change(ST_MakeEnvelope(1920000, 4200000, 1924800, 4200600, 32629), 2019, 'sm', 0.5)$$);
UPDATE rai4eo.model SET config = '{}' WHERE name = 'sm';
-- errors
CREATE TEMP TABLE truth_few AS SELECT * FROM truth WHERE changed OR patch_id = (SELECT id FROM cal WHERE name = 'U1');
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate('sm', 2019, 'truth_few')$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate('sm', 2019, 'truth', folds => 1)$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate('sm', 2019, 'truth', candidates => 0)$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate('sm', 2019, 'truth', methods => '{rate,magic}')$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate('sm', 2019, 'truth', methods => '{cluster}')$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate('sm', 2017, 'truth')$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate('sm', NULL, 'truth')$$);
CREATE TEMP TABLE truth_cols (id bigint, label boolean);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate('sm', 2019, 'truth_cols')$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate('sm', 2019, 'truth', sensor => 'S1')$$);
-- privileges before work: a role that may read but not update models, nor write states
CREATE ROLE r4_score_reader;
GRANT SELECT ON truth, rai4eo.embedding TO r4_score_reader;
SET ROLE r4_score_reader;
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate('sm', 2019, 'truth')$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate_threshold('sm', 2019, 'truth')$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_cluster('cl', 2)$$);
SELECT method, chosen FROM rai4eo_calibrate('sm', 2019, 'truth', store => false) WHERE chosen;
RESET ROLE;
DROP OWNED BY r4_score_reader;
DROP ROLE r4_score_reader;

-- leave the shared regression database as we found it
DELETE FROM rai4eo.patch;
DELETE FROM rai4eo.model WHERE name IN ('sm', 'cl');
SELECT (SELECT count(*) FROM rai4eo.image) AS images, (SELECT count(*) FROM rai4eo.embedding) AS embeddings,
	   (SELECT count(*) FROM rai4eo.state) AS states;
