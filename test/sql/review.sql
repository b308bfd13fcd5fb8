-- Verdicts (rai4eo_review, rai4eo.review_truth), the candidate list and the
-- vector tiles (rai4eo_change_tile) on hand-made 2-d embeddings:
-- against [1,0], [1,0] is 0 and [0,1] is 1 (cosine distance).
SET datestyle = ISO;
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT rai4eo_create_external_model('rv', 2, '{"change_threshold": 0.5}');
-- Four patches of UTM 29N in a row (cells 400..403 x 800), images on 4 days of 2019 and the same days of 2018.
INSERT INTO rai4eo.patch (patch_id, sample_id, geom)
SELECT rai4eo.patch_id_of(s), s, ST_MakeEnvelope(c * 600, 480000, c * 600 + 600, 480600, 32629)
FROM generate_series(400, 403) c, format('29N_10E-20N_%s_00', lpad((c % 40)::text, 2, '0')) s;
INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
SELECT rai4eo.image_id_of(p.patch_id, 'PF-SR', d), p.patch_id, 'PF-SR', d,
	   ST_AddBand(ST_MakeEmptyRaster(1, 1, 0, 0, 1, -1, 0, 0, 32629), '16BUI'::text, 0)
FROM rai4eo.patch p, generate_series(date '2019-03-01', date '2019-03-04', '1 day') g(t),
	 LATERAL (VALUES (g.t::date), (g.t::date - 365)) v(d);
-- Patch _00_00 changes on every 2019 day, _01_00 on two of four, _02_00 and _03_00 never.
INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb)
SELECT i.image_id, i.patch_id, 'rv', CASE WHEN extract(year FROM i.acquired) = 2019
	AND (p.sample_id LIKE '%\_00\_00' OR (p.sample_id LIKE '%\_01\_00' AND i.acquired >= '2019-03-03'))
	THEN '[0,1]' ELSE '[1,0]' END::embedding
FROM rai4eo.image i JOIN rai4eo.patch p USING (patch_id);
SET rai4eo.default_model = 'rv';
\set aoi 'ST_MakeEnvelope(240000, 480000, 242400, 480600, 32629)'

-- The candidate list: changed ones first by score; days without a pair leave a patch out.
SELECT sample_id, score, changed, onset, change_rate, days_compared, verdict
FROM rai4eo_review_candidates(:aoi, 2019);
SELECT count(*) FROM rai4eo_review_candidates(:aoi, 2020);

-- Verdicts: the stored row comes back; the reviewer defaults to the role.
SELECT patch_id = rai4eo.patch_id_of('29N_10E-20N_00_00') AS same_patch, year, model, verdict, reviewer = current_user AS me, note
FROM rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_00_00'), 2019, 'accept');
SELECT verdict, reviewer, note
FROM rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_01_00'), 2019, 'reject', 'rv', 'field shadow', 'ana');
SELECT verdict, reviewer FROM rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_02_00'), 2019, 'unsure', reviewer => 'ana');
-- The same reviewer again replaces the earlier verdict; another reviewer adds one.
SELECT verdict, note FROM rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_01_00'), 2019, 'accept', reviewer => 'ana');
SELECT verdict FROM rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_01_00'), 2019, 'reject', reviewer => 'ben');
SELECT p.sample_id, r.year, r.model, r.verdict, r.reviewer, r.note
FROM rai4eo.review r JOIN rai4eo.patch p USING (patch_id) ORDER BY 1, r.reviewer;
-- Truth: the latest verdict per patch and year (ben's reject), unsure is NULL.
SELECT p.sample_id, t.year, t.changed, t.verdict, t.reviewer
FROM rai4eo.review_truth t JOIN rai4eo.patch p USING (patch_id) ORDER BY 1;
-- The candidate list shows the latest verdict on each.
SELECT sample_id, changed, verdict, reviewer FROM rai4eo_review_candidates(:aoi, 2019);
-- Calibration takes the reviews as labelled truth: 1 changed, 1 unchanged (unsure left out).
SELECT threshold, precision, recall, f1, true_positives, false_positives, true_negatives, false_negatives
FROM rai4eo_calibrate_threshold('rv', 2019, 'rai4eo.review_truth', store => false) WHERE chosen;
-- A patch dropped takes its verdicts with it.
SELECT (rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_03_00'), 2019, 'reject', reviewer => 'ana')).verdict;
SELECT count(*) FROM rai4eo.review;
DELETE FROM rai4eo.patch WHERE sample_id = '29N_10E-20N_03_00';
SELECT count(*) FROM rai4eo.review;
-- Another year is another label of the same patch.
SELECT (rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_02_00'), 2018, 'accept', reviewer => 'ana')).verdict;
SELECT year, count(*), count(*) FILTER (WHERE changed) AS changed FROM rai4eo.review_truth GROUP BY 1 ORDER BY 1;

-- Errors.
SELECT pg_temp.err($$SELECT rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_00_00'), 2019, 'maybe')$$);
SELECT pg_temp.err($$SELECT rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_00_00'), 2019, NULL)$$);
SELECT pg_temp.err($$SELECT rai4eo_review(NULL, 2019, 'accept')$$);
SELECT pg_temp.err($$SELECT rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_00_00'), 1999, 'accept')$$);
SELECT pg_temp.err($$SELECT rai4eo_review(12345, 2019, 'accept')$$);
SELECT pg_temp.err($$SELECT rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_00_00'), 2019, 'accept', 'nope')$$);
SELECT pg_temp.err($$SELECT rai4eo_review(rai4eo.patch_id_of('29N_10E-20N_00_00'), 2019, 'accept', reviewer => '')$$);
SELECT pg_temp.err($$INSERT INTO rai4eo.review (patch_id, year, model, verdict) VALUES (rai4eo.patch_id_of('29N_10E-20N_00_00'), 2019, 'rv', 'yes')$$);

-- Vector tiles.  Tile 10/479/499 holds the four patches (UTM 29N near 4.3 N, 11.2 W).
SELECT length(rai4eo_change_tile(10, 479, 499, 2019)) > 100 AS has_features,
	   length(rai4eo_change_tile(10, 0, 0, 2019)) AS empty_tile;
-- The tile decodes (GeoJSON of the MVT geometry through PostGIS is not available, so the
-- layer is checked by name and the properties by their keys in the protobuf).
SELECT position('patches'::bytea IN t) > 0 AS layer, position('sample_id'::bytea IN t) > 0 AS sample_id,
	   position('score'::bytea IN t) > 0 AS score, position('verdict'::bytea IN t) > 0 AS verdict,
	   position('29N_10E-20N_00_00'::bytea IN t) > 0 AS patch
FROM rai4eo_change_tile(10, 479, 499, 2019) t;
SELECT pg_temp.err($$SELECT rai4eo_change_tile(10, 1024, 0, 2019)$$);
SELECT pg_temp.err($$SELECT rai4eo_change_tile(25, 0, 0, 2019)$$);
SELECT pg_temp.err($$SELECT rai4eo_change_tile(10, -1, 0, 2019)$$);
SELECT pg_temp.err($$SELECT rai4eo_change_tile(10, 479, 499, NULL)$$);
SELECT pg_temp.err($$SELECT rai4eo_change_tile(10, 479, 499, 2019, max_patches => 2)$$);
SELECT pg_temp.err($$SELECT rai4eo_change_tile(10, 479, 499, 2019, 'nope')$$);
