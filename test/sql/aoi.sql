-- The patches of an AOI (rai4eo.aoi_patches) across UTM zones: a world-sized
-- AOI finds every patch (it used to collapse to a line when projected into a
-- zone), polar and out-of-zone parts find nothing, and bad AOIs raise 22023
-- instead of PostGIS's XX000.
SET datestyle = ISO;
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE FUNCTION pg_temp.ids(aoi geometry) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(sample_id, ' ' ORDER BY sample_id), '-') FROM rai4eo.aoi_patches(aoi) $$;

-- Five patches on the 600 m grid: two in UTM 29N (Portugal, about 7.85 W 37.94 N),
-- two in 33N (Adriatic, about 14.76 E 43.36 N), one in 33S (Angola, about 14.8 E 9.6 S).
INSERT INTO rai4eo.patch (patch_id, sample_id, geom)
SELECT rai4eo.patch_id_of(s), s, ST_MakeEnvelope(gx * 600, gy * 600, gx * 600 + 600, gy * 600 + 600, srid)
FROM (VALUES (32629, 29, 1000, 7000), (32629, 29, 1001, 7000), (32633, 33, 800, 8000), (32633, 33, 801, 8001),
			 (32733, 33, 800, 15000)) v(srid, z, gx, gy),
LATERAL format('%sN_%sE-%sN_%s_%s', z, gx / 40, gy / 40, lpad((gx % 40)::text, 2, '0'), lpad((gy % 40)::text, 2, '0')) s;
SELECT sample_id, ST_SRID(geom) AS srid, round(ST_X(c)::numeric, 2) AS lon, round(ST_Y(c)::numeric, 2) AS lat
FROM rai4eo.patch, ST_Transform(ST_Centroid(geom), 4326) c ORDER BY sample_id;

-- the world, in longitude / latitude and in web Mercator: every patch
SELECT pg_temp.ids(ST_MakeEnvelope(-180, -90, 180, 90, 4326)) AS world_4326;
SELECT pg_temp.ids(ST_MakeEnvelope(-20037508, -20037508, 20037508, 20037508, 3857)) AS world_3857;
-- the world as a polygon with a hole over the Adriatic patches
SELECT pg_temp.ids(ST_Difference(ST_MakeEnvelope(-180, -90, 180, 90, 4326), ST_MakeEnvelope(14, 43, 15, 44, 4326))) AS world_but_adriatic;
-- hemispheres and bands of longitude
SELECT pg_temp.ids(ST_MakeEnvelope(-180, 0, 180, 90, 4326)) AS north, pg_temp.ids(ST_MakeEnvelope(-180, -90, 180, 0, 4326)) AS south;
SELECT pg_temp.ids(ST_MakeEnvelope(-180, -90, 0, 90, 4326)) AS west, pg_temp.ids(ST_MakeEnvelope(0, -90, 180, 90, 4326)) AS east;
-- far from every zone's meridian (Pacific), and the polar caps: nothing
SELECT pg_temp.ids(ST_MakeEnvelope(120, -90, 180, 90, 4326)) AS pacific,
	   pg_temp.ids(ST_MakeEnvelope(-180, 85, 180, 90, 4326)) AS arctic,
	   pg_temp.ids(ST_MakeEnvelope(-180, -90, 180, -85, 4326)) AS antarctic;
-- small AOIs inside a zone keep the direct projection: a point, a patch-sized box
SELECT pg_temp.ids(ST_SetSRID(ST_MakePoint(-7.8585, 37.9448), 4326)) AS point,
	   pg_temp.ids(ST_Buffer(ST_SetSRID(ST_MakePoint(14.76, 43.358), 4326), 0.01)) AS small_circle;
-- the same AOI in a patch CRS is used as it is (no transform), and srid => picks one CRS
SELECT pg_temp.ids(ST_MakeEnvelope(600000, 4199400, 601200, 4200600, 32629)) AS own_crs;
SELECT string_agg(sample_id, ' ' ORDER BY sample_id) AS zone_33n
FROM rai4eo.aoi_patches(ST_MakeEnvelope(-180, -90, 180, 90, 4326), 32633);
-- the projected world is a proper polygon in each zone, not the old line
SELECT s.srid, GeometryType(g) AS type, ST_IsValid(g) AS valid, ST_Area(g) > 1e13 AS large,
	   ST_Covers(g, ST_Transform(ST_SetSRID(ST_MakePoint(-9 + 6 * (s.srid % 100 - 29) + 19, 60), 4326), s.srid)) AS covers_19deg_east
FROM rai4eo.patch_srids() s(srid), rai4eo.aoi_in_srid(ST_MakeEnvelope(-180, -90, 180, 90, 4326), s.srid) g;
-- NULL and empty AOIs: nothing
SELECT pg_temp.ids(NULL) AS null_aoi, pg_temp.ids('SRID=4326;POLYGON EMPTY') AS empty_aoi;
-- the change functions get the world too (here: no embeddings, so nothing compared)
INSERT INTO rai4eo.model (name, arch, config, weights, sha256) VALUES ('aoi_m', 'vit', '{}', '\x00', sha256('\x00'));
SELECT count(*) AS patches, sum(days_compared) AS compared
FROM yearly_change(ST_MakeEnvelope(-180, -90, 180, 90, 4326), 2019, 'aoi_m', 0.5);

-- bad AOIs: 22023 with a message, never XX000
SELECT pg_temp.err($$SELECT pg_temp.ids(ST_MakeEnvelope(-200, -90, 180, 90, 4326))$$);
SELECT pg_temp.err($$SELECT pg_temp.ids(ST_SetSRID(ST_MakePoint(45, 95), 4326))$$);
SELECT pg_temp.err($$SELECT pg_temp.ids(ST_SetSRID(ST_MakePoint(10, 50), 4258))$$) AS etrs89_is_fine;
SELECT pg_temp.err($$SELECT pg_temp.ids(ST_SetSRID(ST_MakePoint(0, 0), 999999))$$);
SELECT pg_temp.err($$SELECT pg_temp.ids(ST_SetSRID(ST_MakePoint(1e9, 45), 32629))$$);
SELECT pg_temp.err($$SELECT * FROM yearly_change(ST_SetSRID(ST_MakePoint(45, 95), 4326), 2019, 'aoi_m', 0.5)$$);
-- what PostGIS itself says, and what rai4eo.aoi_transform turns it into
SELECT pg_temp.err($$SELECT ST_Transform(ST_SetSRID(ST_MakePoint(1e9, 45), 32629), 4326)$$);
SELECT pg_temp.err($$SELECT rai4eo.aoi_transform(ST_SetSRID(ST_MakePoint(1e9, 45), 32629), 4326)$$);
SELECT ST_AsText(rai4eo.aoi_transform(ST_SetSRID(ST_MakePoint(500000, 0), 32629), 4326)) AS zone_origin;

-- aoi_patches transforms the AOI once per SRID of the corpus, not once per patch
SET track_functions = 'all';
BEGIN;
SELECT count(*) AS world_patches, (SELECT count(*) FROM rai4eo.patch_srids()) AS srids
FROM rai4eo.aoi_patches(ST_MakeEnvelope(-180, -90, 180, 90, 4326));
SELECT calls AS aoi_in_srid_calls FROM pg_stat_xact_user_functions WHERE schemaname = 'rai4eo' AND funcname = 'aoi_in_srid';
COMMIT;
RESET track_functions;

-- leave the shared regression database as we found it
DELETE FROM rai4eo.patch;
DELETE FROM rai4eo.model WHERE name = 'aoi_m';
