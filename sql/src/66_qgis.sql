-- ============================================================================
-- QGIS layer: the rai4eo.patch_change view
-- ============================================================================

-- ---- QGIS layer ---------------------------------------------------------------
--
-- Views are bound when created (docs/sql-conventions.md, rule 7).  The
-- decision columns follow yearly_change: the default model's stored decision
-- (rai4eo.change_decision), its score per year, changed = score > cut, onset
-- where changed.

-- The key id stays what 0.2.0 made it for PF-SR (code 0): patch_id * 10000 + year;
-- another sensor adds code * 2^39 to patch_id (patch ids are below 2^39, so ids of
-- different sensors never meet, and the largest, 2^47 * 10000, fits a bigint).
--
-- The pairing is written out here as in rai4eo.patch_series_of (52_pairing.sql),
-- every join on patch_id: a view calling a function that reads the distributed
-- tables cannot run on Citus, and written out, Citus runs the view's query on
-- the shards.  One pass over a patch's pairs gives every year's series.  The
-- model and its decision are one row computed first (a materialized CTE: on
-- Citus, on the coordinator, where rai4eo.default_model is set; the lateral
-- subqueries refer to it only where Citus allows: not below the LIMIT).
CREATE VIEW rai4eo.patch_change AS
WITH c AS MATERIALIZED (
	SELECT m AS model, rai4eo.change_threshold(m) AS threshold, d.method, d.score_threshold, d.k, d.cut,
		   CASE WHEN d.method = 'cluster' THEN rai4eo.model_states(m) END AS centres,
		   d.method IN ('annual', 'seasonal', 'zscore') AS composites
	FROM rai4eo.resolve_model(NULL) m, rai4eo.change_decision(m) d)
SELECT (s.code::bigint * 549755813888 + p.patch_id) * 10000 + y.year AS id, p.patch_id, p.sample_id, s.name AS sensor, y.year, c.model,
	   y.days_compared, y.days_changed, y.days_changed::float8 / y.days_compared AS change_rate,
	   y.mean_distance, p.geom, x.score, x.score > c.cut AS changed, CASE WHEN x.score > c.cut THEN x.onset END AS onset
FROM c
CROSS JOIN rai4eo.patch p
-- every registered sensor: a patch has rows for the sensors the model embedded
CROSS JOIN rai4eo.sensor s
CROSS JOIN LATERAL (
	-- the sensor's images of the patch (its code in the image_id), tolerance 2
	-- days as the change functions' default, every date (days 0 .. 65535)
	SELECT extract(year FROM rai4eo.image_acquired(e.image_id))::integer AS year,
		   count(*)::integer AS days_compared,
		   count(*) FILTER (WHERE q.distance > c.threshold)::integer AS days_changed,
		   avg(q.distance) AS mean_distance,
		   array_agg(rai4eo.image_acquired(e.image_id) ORDER BY e.image_id) AS days,
		   array_agg(q.distance ORDER BY e.image_id) AS distances,
		   array_agg(coalesce(rai4eo.state_changed(e.emb, q.emb, c.centres), 0)::float8 ORDER BY e.image_id)
			   FILTER (WHERE c.centres IS NOT NULL) AS state_changes,
		   rai4eo.pair_composites(rai4eo.image_acquired(e.image_id), e.emb, q.emb)
			   FILTER (WHERE c.composites) AS composite
	FROM rai4eo.embedding e
	CROSS JOIN LATERAL (
		SELECT f.emb, @extschema@.cosine_change(e.emb, f.emb) AS distance
		FROM rai4eo.embedding f
		WHERE f.patch_id = e.patch_id AND f.model = e.model
		  AND f.image_id >= greatest(e.image_id - 365 - 2, rai4eo.image_id_base(p.patch_id, s.code))
		  AND f.image_id <= least(e.image_id - 365 + 2, e.image_id - 1)
		ORDER BY abs(f.image_id - (e.image_id - 365)), f.image_id
		LIMIT 1) q
	WHERE e.patch_id = p.patch_id AND e.model = c.model
	  AND e.image_id >= rai4eo.image_id_base(p.patch_id, s.code) AND e.image_id <= rai4eo.image_id_base(p.patch_id, s.code) + 65535
	  AND q.distance <> 'NaN'::float8
	-- (patch_id too: Citus pushes down a grouping only with the distribution column in it)
	GROUP BY e.patch_id, 1) y
CROSS JOIN LATERAL (SELECT
	CASE c.method WHEN 'rate' THEN rai4eo.change_persistence(y.distances, c.score_threshold, 1)
				  WHEN 'persistence' THEN rai4eo.change_persistence(y.distances, c.score_threshold, c.k)
				  WHEN 'annual' THEN y.composite[1] WHEN 'seasonal' THEN y.composite[2] WHEN 'zscore' THEN y.composite[3]
				  WHEN 'step' THEN rai4eo.change_step(y.distances, c.k)
				  WHEN 'cluster' THEN rai4eo.change_persistence(y.state_changes, 0.5, c.k) END AS score,
	CASE c.method WHEN 'persistence' THEN y.days[rai4eo.change_onset(y.distances, c.score_threshold, c.k)]
				  WHEN 'cluster' THEN y.days[rai4eo.change_onset(y.state_changes, 0.5, c.k)]
				  ELSE rai4eo.change_point_day(y.days, y.distances) END AS onset) x;

COMMENT ON VIEW rai4eo.patch_change IS
'QGIS-ready yearly change per patch, sensor and year for rai4eo.default_model (every registered sensor the model embedded, tolerance 2 days, the model''s threshold or rai4eo.change_threshold): key id = (sensor code * 2^39 + patch_id) * 10000 + year (patch_id * 10000 + year for PF-SR), geometry geom in each patch''s own CRS; only years with compared days; score, changed and onset are the model''s change decision as in yearly_change. Filter by year and by bounding box (geom && ...): work is done per patch read.';
