-- Change detection on hand-made embeddings (no model needed): pairing with
-- d - 365 days, tolerance edges, ties, leap years, missing dates, threshold
-- precedence, heatmap raster geometry, AOI handling, calibration, PNG.
--
-- 2-d embeddings against [1,0] give exact cosine distances:
--   [1,0] 0   [4,3] 0.2   [3,4] 0.4   [0,1] 1   [-1,0] 2
SET datestyle = ISO;
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- Errors raised by rai4eo.resolve_model (the model store's): only the SQLSTATE.
CREATE FUNCTION pg_temp.state(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;

INSERT INTO rai4eo.model (name, arch, config, weights, sha256)
VALUES ('m', 'vit', '{}', '\x00', sha256('\x00')), ('m2', 'vit', '{}', '\x01', sha256('\x01'));

-- A patch at global 600 m cell (gx, gy) of UTM zone z (north), as tools/synth lays them out.
CREATE FUNCTION pg_temp.patch(z int, gx int, gy int) RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO rai4eo.patch (patch_id, sample_id, geom)
	SELECT rai4eo.patch_id_of(s), s, ST_MakeEnvelope(gx * 600, gy * 600, gx * 600 + 600, gy * 600 + 600, 32600 + z)
	FROM format('%sN_%sE-%sN_%s_%s', z, gx / 40, gy / 40, lpad((gx % 40)::text, 2, '0'), lpad((gy % 40)::text, 2, '0')) s
	RETURNING patch_id $$;
-- An image of the patch (a 1 x 1 stand-in raster: change detection never reads pixels) and its embedding under a model.
CREATE FUNCTION pg_temp.emb(pid bigint, day date, e embedding, model text DEFAULT 'm', sensor text DEFAULT 'PF-SR')
RETURNS void LANGUAGE sql AS $$
	INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
	VALUES (rai4eo.image_id_of(pid, sensor, day), pid, sensor, day,
			ST_AddBand(ST_MakeEmptyRaster(1, 1, 0, 0, 1, -1, 0, 0, 32629), '16BUI'::text, 0))
	ON CONFLICT DO NOTHING;
	INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb) VALUES (rai4eo.image_id_of(pid, sensor, day), pid, model, e) $$;

CREATE TEMP TABLE p (name text PRIMARY KEY, id bigint);
-- A B      cells of zone 29 around (1000, 7000): row 7000 on top
-- . .
-- C D
INSERT INTO p VALUES ('A', pg_temp.patch(29, 1000, 7000)), ('B', pg_temp.patch(29, 1001, 7000)),
	('C', pg_temp.patch(29, 1000, 6998)), ('D', pg_temp.patch(29, 1001, 6998)),
	('E', pg_temp.patch(30, 700, 7000));
SELECT name, rai4eo.sample_id_of(id) FROM p ORDER BY name;

-- Patch A, 2019 against 2018:
--   2019-01-03 [0,1]  partner 2018-01-03 (exactly 365 days) [1,0]        -> 1
--   2019-02-10 [4,3]  2018-02-08 [1,0] and 2018-02-12 [-1,0], both 2 days
--                     away: the earlier wins                              -> 0.2
--   2019-03-20 [0,1]  only 2018-03-23 [0,1], 3 days away: paired from
--                     tolerance 3 on                                      -> 0
--   2019-04-15 [0,1]  nothing in 2018 near it: not compared
--   2019-05-05 [1,0]  2018-05-04 [-1,0] (1 day) beats 2018-05-07 [1,0]    -> 2
SELECT pg_temp.emb(id, d::date, e::embedding) FROM p, (VALUES
	('2018-01-03', '[1,0]'), ('2019-01-03', '[0,1]'),
	('2018-02-08', '[1,0]'), ('2018-02-12', '[-1,0]'), ('2019-02-10', '[4,3]'),
	('2018-03-23', '[0,1]'), ('2019-03-20', '[0,1]'),
	('2019-04-15', '[0,1]'),
	('2018-05-04', '[-1,0]'), ('2018-05-07', '[1,0]'), ('2019-05-05', '[1,0]')) v(d, e)
WHERE name = 'A';
-- The same dates under the other model: an image pairs only with embeddings of its own model.
SELECT pg_temp.emb(id, d::date, '[1,1]', 'm2') FROM p, (VALUES ('2018-01-03'), ('2019-01-03')) v(d) WHERE name = 'A';
-- The S2-SR image of the same day is another series.
SELECT pg_temp.emb(id, '2018-01-03', '[0,1]', 'm', 'S2-SR') FROM p WHERE name = 'A';
-- Patch B, leap year: 2020-03-01 - 365 days = 2019-03-02 (not 2019-03-01);
-- 2020-02-29 - 365 days = 2019-03-01; 2021-03-01 - 365 days = 2020-03-01.
SELECT pg_temp.emb(id, d::date, e::embedding) FROM p, (VALUES
	('2019-03-01', '[1,0]'), ('2019-03-02', '[0,1]'), ('2020-02-29', '[4,3]'), ('2020-03-01', '[1,0]'),
	('2021-03-01', '[3,4]')) v(d, e)
WHERE name = 'B';
-- Patch C has images but no pairs; D one unchanged day in 2019; E (zone 30) one changed day.
SELECT pg_temp.emb(id, '2019-06-01', '[1,0]') FROM p WHERE name = 'C';
SELECT pg_temp.emb(id, d::date, e::embedding) FROM p, (VALUES ('2018-06-01', '[1,0]'), ('2019-06-01', '[1,0]')) v(d, e)
WHERE name = 'D';
SELECT pg_temp.emb(id, d::date, e::embedding) FROM p, (VALUES ('2018-06-01', '[1,0]'), ('2019-06-01', '[-1,0]')) v(d, e)
WHERE name = 'E';

-- ---- pairing ------------------------------------------------------------------

SELECT d.acquired, d.prior_acquired, round(d.distance::numeric, 6) AS distance,
	   d.prior_image_id = rai4eo.image_id_of(p.id, 'PF-SR', d.prior_acquired) AS id_ok
FROM p, rai4eo.daily_distances(p.id, 'm', 'PF-SR', '2019-01-01', '2019-12-31', 2) d
WHERE p.name = 'A' ORDER BY 1;
-- tolerance 3 reaches 2018-03-23; tolerance 0 keeps only exact anniversaries
SELECT d.acquired, d.prior_acquired, round(d.distance::numeric, 6) AS distance
FROM p, rai4eo.daily_distances(p.id, 'm', 'PF-SR', '2019-01-01', '2019-12-31', 3) d WHERE p.name = 'A' ORDER BY 1;
SELECT d.acquired, d.prior_acquired FROM p, rai4eo.daily_distances(p.id, 'm', 'PF-SR', '2019-01-01', '2019-12-31', 0) d
WHERE p.name = 'A' ORDER BY 1;
-- leap year
SELECT d.acquired, d.prior_acquired, round(d.distance::numeric, 6) AS distance
FROM p, rai4eo.daily_distances(p.id, 'm', 'PF-SR', '2020-01-01', '2021-12-31', 2) d WHERE p.name = 'B' ORDER BY 1;
-- other model, other sensor: their own series
SELECT d.acquired, d.prior_acquired, d.distance FROM p, rai4eo.daily_distances(p.id, 'm2', 'PF-SR', '2019-01-01', '2019-12-31', 2) d
WHERE p.name = 'A';
SELECT count(*) FROM p, rai4eo.daily_distances(p.id, 'm', 'S2-SR', '2018-01-01', '2019-12-31', 2) d WHERE p.name = 'A';
-- dates outside what image ids can hold give nothing (and no error)
SELECT count(*) FROM p, rai4eo.daily_distances(p.id, 'm', 'PF-SR', '1990-01-01', '1999-12-31', 2) d WHERE p.name = 'A';
SELECT count(*) FROM p, rai4eo.daily_distances(p.id, 'm', 'PF-SR', '2180-01-01', '2199-12-31', 2) d WHERE p.name = 'A';

-- ---- yearly and daily change --------------------------------------------------

-- AOI: the four zone-29 patches (in their own CRS).
CREATE TEMP TABLE aoi AS SELECT ST_MakeEnvelope(600000, 4198800, 601200, 4200600, 32629) AS g;
-- A: compared 3 (1, 0.2, 2), changed 2 at 0.5: rate 2/3, mean 3.2/3
SELECT sample_id, days_compared, days_changed, round(change_rate::numeric, 6) AS change_rate,
	   round(mean_distance::numeric, 6) AS mean_distance, ST_SRID(geom)
FROM yearly_change((SELECT g FROM aoi), 2019, 'm', 0.5);
-- tolerance 3 adds 2019-03-20 (distance 0): 4 compared, mean 0.8
SELECT sample_id, days_compared, days_changed, change_rate, round(mean_distance::numeric, 6) AS mean_distance
FROM yearly_change((SELECT g FROM aoi), 2019, 'm', 0.5, tolerance => 3) WHERE days_compared > 0;
-- changed means distance > threshold: at 1, the day at distance exactly 1 is not changed
SELECT sample_id, days_changed FROM yearly_change((SELECT g FROM aoi), 2019, 'm', 1) WHERE days_compared > 0;
SELECT sample_id, days_compared, days_changed, round(mean_distance::numeric, 6) AS mean_distance
FROM yearly_change((SELECT g FROM aoi), 2020, 'm', 0.5) WHERE days_compared > 0;
SELECT sample_id, round(distance::numeric, 6) AS distance, changed FROM daily_change((SELECT g FROM aoi), '2019-01-03', 'm', 0.5);
SELECT sample_id, round(distance::numeric, 6) AS distance, changed FROM daily_change((SELECT g FROM aoi), '2019-02-10', 'm', 0.5, tolerance => 1);
SELECT sample_id, round(distance::numeric, 6) AS distance, changed FROM daily_change((SELECT g FROM aoi), '2020-03-01', 'm', 0.5);

-- ---- AOIs ---------------------------------------------------------------------

-- A's own footprint: neighbours that only touch it are not in it
SELECT sample_id FROM yearly_change(ST_MakeEnvelope(600000, 4200000, 600600, 4200600, 32629), 2019, 'm', 0.5);
-- a point on the edge A | B touches both
SELECT sample_id FROM yearly_change(ST_SetSRID(ST_Point(600600, 4200300), 32629), 2019, 'm', 0.5);
-- an AOI in another CRS is transformed: lon/lat box around A and B only
SELECT sample_id FROM yearly_change(ST_Transform(ST_MakeEnvelope(600010, 4200010, 601190, 4200590, 32629), 4326), 2019, 'm', 0.5);
-- patches of two UTM zones: rows come back, each geometry in its own CRS
SELECT sample_id, ST_SRID(geom), days_changed FROM yearly_change(ST_MakeEnvelope(-10, 35, 0, 45, 4326), 2019, 'm', 0.5);
SELECT sample_id FROM yearly_change(ST_MakeEnvelope(-10, 35, 0, 45, 4326), 2019, 'm', 0.5, srid => 32630);
-- no patches: no rows, NULL raster
SELECT count(*) FROM yearly_change(ST_MakeEnvelope(0, 0, 100, 100, 32629), 2019, 'm', 0.5);
SELECT count(*) FROM daily_change(ST_MakeEnvelope(0, 0, 100, 100, 32629), '2019-01-03', 'm', 0.5);
SELECT yearly_heatmap(ST_MakeEnvelope(0, 0, 100, 100, 32629), 2019, 'm', 0.5) IS NULL AS no_raster;
SELECT count(*) FROM yearly_change('POLYGON EMPTY', 2019, 'm', 0.5);
SELECT count(*) FROM yearly_change(NULL, 2019, 'm', 0.5);
SELECT pg_temp.err($$SELECT * FROM yearly_change(ST_MakeEnvelope(0, 0, 1, 1), 2019, 'm', 0.5)$$);

-- ---- heatmaps -----------------------------------------------------------------

CREATE TEMP TABLE hm AS SELECT yearly_heatmap((SELECT g FROM aoi), 2019, 'm', 0.5) AS r;
-- 2 x 3 pixels of 600 m from A's upper-left corner, zone 29's CRS
SELECT (md).upperleftx, (md).upperlefty, (md).width, (md).height, (md).scalex, (md).scaley,
	   (md).skewx, (md).skewy, (md).srid, (md).numbands
FROM (SELECT ST_MetaData(r) AS md FROM hm) s;
SELECT b, (bm).pixeltype, (bm).nodatavalue, (bm).isoutdb FROM hm, generate_series(1, 3) b, ST_BandMetaData(r, b) bm ORDER BY b;
-- band 1 rate, 2 mean distance, 3 days compared; -9999 where there is no patch
-- (middle row) or no comparison (B, C)
SELECT b, (SELECT array_agg(array_agg_row ORDER BY y) FROM (
		SELECT y, array_agg(round(ST_Value(r, b, x, y, false)::numeric, 4) ORDER BY x) AS array_agg_row
		FROM generate_series(1, 2) x, generate_series(1, 3) y GROUP BY y) s) AS v
FROM hm, generate_series(1, 3) b ORDER BY b;
SELECT ST_Value(r, 1, 1, 2) IS NULL AS nodata_is_null FROM hm;
-- bands 4-6, the decision (uncalibrated: rate > 0.1): A score 2/3, changed, onset day 83, the
-- middle of the gap between 2019-02-10 (day 41) and 2019-05-05 (day 125), the first day of the
-- higher segment (of the splits of 1, 0.2, 2 the one before the last day raises the mean most,
-- 2/3 x 1.4^2 against 2/3 x 0.1^2); D score 0, not changed, no onset
SELECT b, ST_DumpValues(r, b) FROM hm, generate_series(4, 6) b ORDER BY b;
-- 2020: B only
SELECT ST_DumpValues(yearly_heatmap((SELECT g FROM aoi), 2020, 'm', 0.5), 1) AS rate_2020;
-- daily: 1 = changed, distance, 1 comparison
SELECT b, ST_DumpValues(daily_heatmap((SELECT g FROM aoi), '2019-05-05', 'm', 0.5), b) FROM generate_series(1, 3) b ORDER BY b;
SELECT b, ST_DumpValues(daily_heatmap((SELECT g FROM aoi), '2019-06-01', 'm', 0.5), b) FROM generate_series(1, 3) b ORDER BY b;
-- patches in two CRSs cannot share a raster; srid picks one
SELECT pg_temp.err($$SELECT yearly_heatmap(ST_MakeEnvelope(-10, 35, 0, 45, 4326), 2019, 'm', 0.5)$$);
DO $$
BEGIN
	PERFORM yearly_heatmap(ST_MakeEnvelope(-10, 35, 0, 45, 4326), 2019, 'm', 0.5);
EXCEPTION WHEN invalid_parameter_value THEN
	DECLARE d text; h text;
	BEGIN
		GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
		RAISE NOTICE 'detail: %', d;
		RAISE NOTICE 'hint: %', h;
	END;
END $$;
SELECT ST_Width(r), ST_Height(r), ST_SRID(r), ST_UpperLeftX(r), ST_UpperLeftY(r), ST_Value(r, 1, 1, 1)
FROM (SELECT yearly_heatmap(ST_MakeEnvelope(-10, 35, 0, 45, 4326), 2019, 'm', 0.5, srid => 32630) r) s;
SELECT ST_Width(r), ST_Height(r), ST_SRID(r) FROM (SELECT yearly_heatmap(ST_MakeEnvelope(-10, 35, 0, 45, 4326), 2019, 'm', 0.5, srid => 32629) r) s;

-- ---- thresholds ---------------------------------------------------------------

-- none anywhere: 55000 with a hint
SELECT pg_temp.err($$SELECT * FROM yearly_change((SELECT g FROM aoi), 2019, 'm')$$);
SELECT pg_temp.err($$SELECT rai4eo.change_threshold('m')$$);
DO $$
BEGIN
	PERFORM rai4eo.change_threshold('m');
EXCEPTION WHEN object_not_in_prerequisite_state THEN
	DECLARE h text;
	BEGIN
		GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
		RAISE NOTICE 'hint: %', h;
	END;
END $$;
-- the setting: 0.1 makes every compared day of A changed
SET rai4eo.change_threshold = '0.1';
SELECT rai4eo.change_threshold('m'), days_changed FROM yearly_change((SELECT g FROM aoi), 2019, 'm') WHERE sample_id = '29N_25E-175N_00_00';
-- the model's calibrated value wins over the setting: 1.5 leaves one day
UPDATE rai4eo.model SET config = jsonb_set(config, '{change_threshold}', '1.5') WHERE name = 'm';
SELECT rai4eo.change_threshold('m'), days_changed FROM yearly_change((SELECT g FROM aoi), 2019, 'm') WHERE sample_id = '29N_25E-175N_00_00';
-- the argument wins over both
SELECT rai4eo.change_threshold('m', 0.1), days_changed FROM yearly_change((SELECT g FROM aoi), 2019, 'm', 0.1) WHERE sample_id = '29N_25E-175N_00_00';
-- a JSON null is no threshold
UPDATE rai4eo.model SET config = jsonb_set(config, '{change_threshold}', 'null') WHERE name = 'm';
SELECT rai4eo.change_threshold('m');
UPDATE rai4eo.model SET config = jsonb_set(config, '{change_threshold}', '"high"') WHERE name = 'm';
SELECT pg_temp.err($$SELECT rai4eo.change_threshold('m')$$);
UPDATE rai4eo.model SET config = '{}' WHERE name = 'm';
RESET rai4eo.change_threshold;
SELECT pg_temp.err($$SELECT * FROM yearly_change((SELECT g FROM aoi), 2019, 'm', 3)$$);
SELECT pg_temp.err($$SELECT * FROM yearly_change((SELECT g FROM aoi), 2019, 'm', 'NaN')$$);
SELECT pg_temp.err($$SELECT * FROM yearly_change((SELECT g FROM aoi), 2019, 'm', -0.5)$$);

-- ---- models and other arguments ------------------------------------------------

-- the default model
SELECT pg_temp.state($$SELECT * FROM yearly_change((SELECT g FROM aoi), 2019, NULL, 0.5)$$) AS no_default_model;
SET rai4eo.default_model = 'm';
SELECT sample_id, days_compared FROM yearly_change((SELECT g FROM aoi), 2019, threshold => 0.5) WHERE days_compared > 0;
RESET rai4eo.default_model;
SELECT pg_temp.state($$SELECT * FROM yearly_change((SELECT g FROM aoi), 2019, 'nope', 0.5)$$) AS unknown_model;
SELECT pg_temp.state($$SELECT yearly_heatmap((SELECT g FROM aoi), 2019, 'nope', 0.5)$$) AS unknown_model;
SELECT pg_temp.err($$SELECT * FROM yearly_change((SELECT g FROM aoi), 2019, 'm', 0.5, sensor => 'S1')$$);
SELECT pg_temp.err($$SELECT * FROM yearly_change((SELECT g FROM aoi), 2019, 'm', 0.5, sensor => NULL)$$);
SELECT pg_temp.err($$SELECT * FROM daily_change((SELECT g FROM aoi), '2019-01-03', 'm', 0.5, tolerance => -1)$$);
SELECT pg_temp.err($$SELECT * FROM daily_change((SELECT g FROM aoi), '2019-01-03', 'm', 0.5, tolerance => 183)$$);
SELECT pg_temp.err($$SELECT daily_heatmap((SELECT g FROM aoi), '2019-01-03', 'm', 0.5, tolerance => NULL)$$);
-- arguments are checked even when the AOI has no patch
SELECT pg_temp.err($$SELECT yearly_heatmap(ST_MakeEnvelope(0, 0, 1, 1, 32629), 2019, 'm', 0.5, 'S1')$$);
SELECT count(*) FROM yearly_change((SELECT g FROM aoi), NULL, 'm', 0.5);
SELECT count(*) FROM daily_change((SELECT g FROM aoi), NULL, 'm', 0.5);
SELECT yearly_heatmap((SELECT g FROM aoi), NULL, 'm', 0.5) IS NULL;

-- ---- the QGIS view --------------------------------------------------------------

SET rai4eo.default_model = 'm';
SET rai4eo.change_threshold = '0.5';
SELECT id, sample_id, year, model, days_compared, days_changed, round(change_rate::numeric, 6) AS change_rate,
	   round(mean_distance::numeric, 6) AS mean_distance, ST_SRID(geom)
FROM rai4eo.patch_change ORDER BY id;
SELECT count(*) = count(DISTINCT id) AS id_unique FROM rai4eo.patch_change;
RESET rai4eo.change_threshold;
RESET rai4eo.default_model;

-- ---- calibration ----------------------------------------------------------------

-- Four labelled patches, five days each in 2019 against [1,0] in 2018:
--   P1 changed    0, 0.2, 1, 1, 1
--   P2 changed    0, 0, 0.4, 0.4, 2
--   P3 unchanged  0, 0, 0, 0.2, 0.2
--   P4 unchanged  0, 0, 0, 0, 0.4
-- 20 distances: 10 x 0, 3 x 0.2, 3 x 0.4, 3 x 1, 1 x 2.  With candidates = 9 the
-- quantiles 0.1 .. 0.9 are 0, 0, 0, 0, 0, 0.2, 0.4, 0.4, 1.  rate_cut 0.1: one
-- changed day of five (0.2) flags a patch.
--   t = 0    all four flagged      tp 2 fp 2 fn 0 tn 0  P 0.5  R 1    F1 2/3
--   t = 0.2  P1 P2 P4              tp 2 fp 1 fn 0 tn 1  P 2/3  R 1    F1 0.8
--   t = 0.4  P1 P2                 tp 2 fp 0 fn 0 tn 2  P 1    R 1    F1 1   <- stored
--   t = 1    P2                    tp 1 fp 0 fn 1 tn 2  P 1    R 0.5  F1 2/3
CREATE TEMP TABLE cal (name text, id bigint, changed boolean, ds text[]);
INSERT INTO cal VALUES
	('P1', pg_temp.patch(29, 2000, 7000), true, '{"[1,0]","[4,3]","[0,1]","[0,1]","[0,1]"}'),
	('P2', pg_temp.patch(29, 2001, 7000), true, '{"[1,0]","[1,0]","[3,4]","[3,4]","[-1,0]"}'),
	('P3', pg_temp.patch(29, 2002, 7000), false, '{"[1,0]","[1,0]","[1,0]","[4,3]","[4,3]"}'),
	('P4', pg_temp.patch(29, 2003, 7000), false, '{"[1,0]","[1,0]","[1,0]","[1,0]","[3,4]"}'),
	('P5', pg_temp.patch(29, 2004, 7000), true, NULL);
SELECT pg_temp.emb(c.id, date '2018-01-03' + 5 * k, '[1,0]'), pg_temp.emb(c.id, date '2019-01-03' + 5 * k, c.ds[k + 1]::embedding)
FROM cal c, generate_series(0, 4) k WHERE c.ds IS NOT NULL;
CREATE TEMP TABLE truth AS SELECT id AS patch_id, changed FROM cal
	UNION ALL SELECT 123, true;	-- no such patch: left out like P5
SELECT round(threshold::numeric, 6) AS threshold, round(precision::numeric, 6) AS precision,
	   round(recall::numeric, 6) AS recall, round(f1::numeric, 6) AS f1,
	   true_positives, false_positives, false_negatives, true_negatives, chosen
FROM rai4eo_calibrate_threshold('m', 2019, 'truth', candidates => 9);
SELECT round((config->>'change_threshold')::numeric, 6) AS stored FROM rai4eo.model WHERE name = 'm';
-- the stored threshold is now the model's
SELECT sample_id, days_changed FROM yearly_change((SELECT g FROM aoi), 2019, 'm') WHERE days_compared > 0;
-- rate_cut 0.3 needs two changed days: the best threshold moves to 0.2; not stored
SELECT round(threshold::numeric, 6) AS threshold, round(f1::numeric, 6) AS f1, chosen
FROM rai4eo_calibrate_threshold('m', 2019, 'truth', rate_cut => 0.3, candidates => 9, store => false);
SELECT round((config->>'change_threshold')::numeric, 6) AS still_stored FROM rai4eo.model WHERE name = 'm';
UPDATE rai4eo.model SET config = '{}' WHERE name = 'm';
-- label problems
CREATE TEMP TABLE truth_pos AS SELECT patch_id, changed FROM truth WHERE changed;
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate_threshold('m', 2019, 'truth_pos')$$);
CREATE TEMP TABLE truth_both AS SELECT patch_id, changed FROM truth UNION ALL SELECT id, false FROM cal WHERE name = 'P1';
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate_threshold('m', 2019, 'truth_both')$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate_threshold('m', 2017, 'truth')$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate_threshold('m', 2019, 'truth', rate_cut => 1)$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate_threshold('m', 2019, 'truth', candidates => 0)$$);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate_threshold('m', 2019, 'no_such_table')$$);
CREATE TEMP TABLE truth_cols (id bigint, label boolean);
SELECT pg_temp.err($$SELECT * FROM rai4eo_calibrate_threshold('m', 2019, 'truth_cols')$$);
SELECT config FROM rai4eo.model WHERE name = 'm';

-- (PNG output is tested in test/sql/png.sql)

-- leave the shared regression database as we found it
DELETE FROM rai4eo.patch;
DELETE FROM rai4eo.model WHERE name IN ('m', 'm2');
SELECT (SELECT count(*) FROM rai4eo.image) AS images, (SELECT count(*) FROM rai4eo.embedding) AS embeddings;
