-- Ensembles: ensemble_yearly_change, ensemble_yearly_heatmap and
-- rai4eo_calibrate_ensemble on hand-made embeddings of two external models,
-- with expected values worked out by hand (see the comments).
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT rai4eo_create_external_model('unsup', 2), rai4eo_create_external_model('sup', 2);

-- Three adjacent patches (cols 1..3, row 1) of tile 29N_10E-20N; lower-left = (E*24000 + col*600, N*24000 + row*600)
INSERT INTO rai4eo.patch (patch_id, sample_id, geom)
SELECT rai4eo.patch_id_of(s), s, ST_MakeEnvelope(240000 + c * 600, 480000 + 600, 240000 + c * 600 + 600, 480000 + 1200, 32629)
FROM (SELECT c, format('29N_10E-20N_%s_01', lpad(c::text, 2, '0')) AS s FROM generate_series(1, 3) c) q;

-- Four dates in 2019 and their partners 365 days earlier; embedding [1,0] in 2018.
-- In 2019 a day is "changed" (embedding [0,1], distance 1) for:
--   unsup: patch 1 days 1-2 (rate 0.5), patch 2 day 1 (0.25), patch 3 none (0)
--   sup:   patch 1 days 1-4 (rate 1.0), patch 2 none (0), patch 3: no 2019 embeddings at all
CREATE TEMP TABLE d AS SELECT k, DATE '2019-03-01' + 10 * k AS day FROM generate_series(1, 4) k;
INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
SELECT rai4eo.image_id_of(p.patch_id, 'PF-SR', x.day), p.patch_id, 'PF-SR', x.day, ST_MakeEmptyRaster(1, 1, 0, 0, 1)
FROM rai4eo.patch p, (SELECT day FROM d UNION ALL SELECT day - 365 FROM d) x;
INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb)
SELECT i.image_id, i.patch_id, m.model,
	   CASE WHEN extract(year FROM i.acquired) = 2018 THEN '[1,0]'
			WHEN (m.model = 'unsup' AND ((c = 1 AND k <= 2) OR (c = 2 AND k = 1)))
			  OR (m.model = 'sup' AND c = 1) THEN '[0,1]'
			ELSE '[1,0]' END::embedding
FROM rai4eo.image i
JOIN (SELECT patch_id, split_part(sample_id, '_', 3)::int AS c FROM rai4eo.patch) p USING (patch_id)
LEFT JOIN d ON d.day = i.acquired
CROSS JOIN (VALUES ('unsup'), ('sup')) m(model)
WHERE NOT (m.model = 'sup' AND c = 3 AND extract(year FROM i.acquired) = 2019);

\set aoi 'ST_MakeEnvelope(240000, 480000, 242400, 482400, 32629)'

-- members alone (threshold 0.5)
SELECT sample_id, days_compared, change_rate FROM yearly_change(:aoi, 2019, 'unsup', 0.5) ORDER BY 1;
SELECT sample_id, days_compared, change_rate FROM yearly_change(:aoi, 2019, 'sup', 0.5) ORDER BY 1;
-- equal weights: patch 1 (0.5 + 1)/2 = 0.75, patch 2 (0.25 + 0)/2 = 0.125, patch 3 only unsup: 0
SELECT sample_id, models_compared, change_rate, member_rates
FROM ensemble_yearly_change(:aoi, 2019, ARRAY['unsup', 'sup'], thresholds => ARRAY[0.5, 0.5]) ORDER BY 1;
-- weights 3:1: patch 1 (3*0.5 + 1)/4 = 0.625, patch 2 (3*0.25)/4 = 0.1875, patch 3 0
SELECT sample_id, change_rate
FROM ensemble_yearly_change(:aoi, 2019, ARRAY['unsup', 'sup'], ARRAY[3, 1], ARRAY[0.5, 0.5]) ORDER BY 1;
-- the decisions (uncalibrated members: rate > 0.1): unsup changes patches 1 and 2, sup patch 1
-- (patch 3: no 2019 pair, no decision); weighted votes 3:1: patch 1 (3 + 1)/4 = 1, patch 2
-- 3/4, patch 3 0/3 = 0; changed above one half; onset the earliest member onset
SELECT sample_id, score, changed, onset
FROM ensemble_yearly_change(:aoi, 2019, ARRAY['unsup', 'sup'], ARRAY[3, 1], ARRAY[0.5, 0.5]) ORDER BY 1;
-- the heatmap: 3 x 1 cells at the patches, the same values
SELECT (ST_MetaData(r)).width, (ST_MetaData(r)).height, (ST_MetaData(r)).upperleftx, (ST_MetaData(r)).upperlefty,
	   (ST_MetaData(r)).scalex, (ST_MetaData(r)).scaley, (ST_MetaData(r)).srid, ST_BandPixelType(r, 1) AS pixtype,
	   ST_BandNoDataValue(r, 1) AS nodata, (ST_DumpValues(r, 1))::text AS rates
FROM (SELECT ensemble_yearly_heatmap(:aoi, 2019, ARRAY['unsup', 'sup'], ARRAY[3, 1], ARRAY[0.5, 0.5]) AS r) q;
-- bands 2 and 3: the weighted vote and the majority decision
SELECT ST_NumBands(r), (ST_DumpValues(r, 2))::text AS votes, (ST_DumpValues(r, 3))::text AS changed
FROM (SELECT ensemble_yearly_heatmap(:aoi, 2019, ARRAY['unsup', 'sup'], ARRAY[3, 1], ARRAY[0.5, 0.5]) AS r) q;
-- an AOI with no patches: no rows, NULL raster
SELECT count(*) AS rows_far_away FROM ensemble_yearly_change(ST_MakeEnvelope(0, 0, 600, 600, 32629), 2019, ARRAY['unsup'], thresholds => ARRAY[0.5]);
SELECT ensemble_yearly_heatmap(ST_MakeEnvelope(0, 0, 600, 600, 32629), 2019, ARRAY['unsup'], thresholds => ARRAY[0.5]) IS NULL AS null_raster;

-- calibration of the rate cut: truth patch 1 changed, 2 and 3 not.
-- Ensemble rates (equal weights) 0.75, 0.125, 0: cuts 0 / 0.125 / 0.75 give
--   cut 0:     predicted {1,2}: tp 1 fp 1 fn 0 -> p 0.5, r 1, f1 0.667
--   cut 0.125: predicted {1}:   tp 1 fp 0 fn 0 -> f1 1 (chosen)
--   cut 0.75:  predicted {}:    tp 0 -> f1 0
CREATE TEMP TABLE truth AS
SELECT patch_id, sample_id LIKE '%_01_01' AS changed FROM rai4eo.patch;
SELECT rate_cut, round(precision::numeric, 3) AS precision, round(recall::numeric, 3) AS recall, round(f1::numeric, 3) AS f1,
	   true_positives, false_positives, false_negatives, true_negatives, chosen
FROM rai4eo_calibrate_ensemble(ARRAY['unsup', 'sup'], 2019, 'truth', thresholds => ARRAY[0.5, 0.5]);

-- errors
SELECT pg_temp.err($$SELECT * FROM ensemble_yearly_change(ST_MakeEnvelope(0, 0, 1, 1, 32629), 2019, ARRAY[]::text[])$$);
SELECT pg_temp.err($$SELECT * FROM ensemble_yearly_change(ST_MakeEnvelope(0, 0, 1, 1, 32629), 2019, ARRAY['unsup', 'sup'], ARRAY[1])$$);
SELECT pg_temp.err($$SELECT * FROM ensemble_yearly_change(ST_MakeEnvelope(0, 0, 1, 1, 32629), 2019, ARRAY['unsup'], ARRAY[-1])$$);
SELECT pg_temp.err($$SELECT * FROM ensemble_yearly_change(ST_MakeEnvelope(0, 0, 1, 1, 32629), 2019, ARRAY['unsup', 'sup'], ARRAY[0, 0])$$);
SELECT pg_temp.err($$SELECT * FROM ensemble_yearly_change(ST_MakeEnvelope(0, 0, 1, 1, 32629), 2019, ARRAY['unsup', 'sup'], thresholds => ARRAY[0.5])$$);
SELECT pg_temp.err($$SELECT * FROM ensemble_yearly_change(ST_MakeEnvelope(0, 0, 1, 1, 32629), 2019, ARRAY['unsup', 'nope'])$$);
SELECT pg_temp.err($$SELECT * FROM ensemble_yearly_change(ST_MakeEnvelope(0, 0, 1, 1, 32629), 2019, ARRAY['unsup'])$$);

-- leave the tables empty for the next test
DELETE FROM rai4eo.patch;
SELECT rai4eo_drop_model('unsup'), rai4eo_drop_model('sup');
