-- ============================================================================
-- QGIS layer: the rai4eo.patch_change view
-- ============================================================================

-- ---- QGIS layer ---------------------------------------------------------------
--
-- Views are bound when created (docs/sql-conventions.md, rule 7).  The
-- decision columns follow yearly_change: the default model's stored decision
-- (rai4eo.change_decision), its score per year, changed = score > cut, onset
-- where changed.

CREATE VIEW rai4eo.patch_change AS
SELECT p.patch_id * 10000 + y.year AS id, p.patch_id, p.sample_id, y.year, c.model,
	   y.days_compared, y.days_changed, y.days_changed::float8 / y.days_compared AS change_rate,
	   y.mean_distance, p.geom, x.score, x.score > c.cut AS changed, CASE WHEN x.score > c.cut THEN x.onset END AS onset
FROM (SELECT m AS model, rai4eo.change_threshold(m) AS threshold, d.method, d.score_threshold, d.k, d.cut,
			 CASE WHEN d.method = 'cluster' THEN rai4eo.model_states(m) END AS centres
	  FROM rai4eo.resolve_model(NULL) m, rai4eo.change_decision(m) d) c
CROSS JOIN rai4eo.patch p
CROSS JOIN LATERAL (
	SELECT extract(year FROM d.acquired)::integer AS year, count(*)::integer AS days_compared,
		   count(*) FILTER (WHERE d.distance > c.threshold)::integer AS days_changed,
		   avg(d.distance) AS mean_distance
	FROM rai4eo.daily_distances(p.patch_id, c.model, 'PF-SR', date '2000-01-01', date '2179-06-06', 2) d
	GROUP BY 1) y
CROSS JOIN LATERAL rai4eo.patch_series(p.patch_id, c.model, 'PF-SR', make_date(y.year, 1, 1), make_date(y.year, 12, 31),
									   2, c.threshold, c.centres, c.method IN ('annual', 'seasonal', 'zscore')) s
CROSS JOIN LATERAL (SELECT
	CASE c.method WHEN 'rate' THEN rai4eo.change_persistence(s.distances, c.score_threshold, 1)
				  WHEN 'persistence' THEN rai4eo.change_persistence(s.distances, c.score_threshold, c.k)
				  WHEN 'annual' THEN s.composite[1] WHEN 'seasonal' THEN s.composite[2] WHEN 'zscore' THEN s.composite[3]
				  WHEN 'cluster' THEN rai4eo.change_persistence(s.state_changes, 0.5, c.k) END AS score,
	s.days[CASE c.method WHEN 'persistence' THEN rai4eo.change_onset(s.distances, c.score_threshold, c.k)
						 WHEN 'cluster' THEN rai4eo.change_onset(s.state_changes, 0.5, c.k)
						 ELSE rai4eo.change_point(s.distances) END] AS onset) x;

COMMENT ON VIEW rai4eo.patch_change IS
'QGIS-ready yearly change per patch and year for rai4eo.default_model (PF-SR, tolerance 2 days, the model''s threshold or rai4eo.change_threshold): key id = patch_id * 10000 + year, geometry geom in each patch''s own CRS; only years with compared days; score, changed and onset are the model''s change decision as in yearly_change. Filter by year and by bounding box (geom && ...): work is done per patch read.';
