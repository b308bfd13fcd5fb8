-- ============================================================================
-- QGIS layer: the rai4eo.patch_change view
-- ============================================================================

-- ---- QGIS layer ---------------------------------------------------------------

CREATE VIEW rai4eo.patch_change AS
SELECT p.patch_id * 10000 + y.year AS id, p.patch_id, p.sample_id, y.year, c.model,
	   y.days_compared, y.days_changed, y.days_changed::float8 / y.days_compared AS change_rate,
	   y.mean_distance, p.geom
FROM (SELECT m AS model, rai4eo.change_threshold(m) AS threshold FROM rai4eo.resolve_model(NULL) m) c
CROSS JOIN rai4eo.patch p
CROSS JOIN LATERAL (
	SELECT extract(year FROM d.acquired)::integer AS year, count(*)::integer AS days_compared,
		   count(*) FILTER (WHERE d.distance > c.threshold)::integer AS days_changed,
		   avg(d.distance) AS mean_distance
	FROM rai4eo.daily_distances(p.patch_id, c.model, 'PF-SR', date '2000-01-01', date '2179-06-06', 2) d
	GROUP BY 1) y;

COMMENT ON VIEW rai4eo.patch_change IS
'QGIS-ready yearly change per patch and year for rai4eo.default_model (PF-SR, tolerance 2 days, the model''s threshold or rai4eo.change_threshold): key id = patch_id * 10000 + year, geometry geom in each patch''s own CRS; only years with compared days. Filter by year and by bounding box (geom && ...): work is done per patch read.';
