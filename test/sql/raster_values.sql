-- rai4eo_raster_values against PostGIS's own ST_DumpValues: every pixel type,
-- with and without nodata, is-nodata bands, odd sizes, band selection, out-db.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- value ranges per pixel type; nd is the nodata value used when there is one
CREATE TEMP TABLE pixtype (pt text, lo float8, hi float8, nd float8, is_float bool);
INSERT INTO pixtype VALUES
	('1BB', 0, 1, 0, false), ('2BUI', 0, 3, 3, false), ('4BUI', 0, 15, 15, false),
	('8BSI', -128, 127, -128, false), ('8BUI', 0, 255, 255, false),
	('16BSI', -32768, 32767, -32768, false), ('16BUI', 0, 65535, 0, false),
	('32BSI', -2147483648, 2147483647, -2147483648, false), ('32BUI', 0, 4294967295, 4294967295, false),
	('32BF', -1e6, 1e6, -9999, true), ('64BF', -1e12, 1e12, 0, true);

-- A w x h raster with nb bands of one type; mode: none | nodata | isnodata (odd bands flagged).
-- Every 5th pixel is the nodata value; values cover the type's range.
CREATE FUNCTION pg_temp.make_raster(ptype text, w int, h int, nb int, mode text) RETURNS raster
LANGUAGE plpgsql AS $$
DECLARE
	r raster := ST_MakeEmptyRaster(w, h, 500000, 4400000, 3, -3, 0, 0, 32629);
	t pixtype;
	vals float8[];
BEGIN
	SELECT * INTO t FROM pixtype WHERE pt = ptype;
	FOR b IN 1..nb LOOP
		r := ST_AddBand(r, ptype, 0::float8, CASE WHEN mode = 'none' THEN NULL ELSE t.nd END);
		SELECT array_agg(rowvals ORDER BY y) INTO vals FROM (
			SELECT y, array_agg(CASE
				WHEN (x + y * w) % 5 = 0 THEN t.nd
				WHEN t.is_float THEN t.lo + (t.hi - t.lo) * (((x * 7919 + y * 104729 + b * 31) % 1000) / 999.0) + 0.123
				ELSE t.lo + mod((x * 7919 + y * 104729 + b * 31)::numeric * 2654435761, (t.hi - t.lo + 1)::numeric)
				END ORDER BY x) AS rowvals
			FROM generate_series(0, h - 1) y, generate_series(0, w - 1) x GROUP BY y) s;
		r := ST_SetValues(r, b, 1, 1, vals);
		IF mode = 'isnodata' AND b % 2 = 1 THEN
			r := ST_SetBandIsNoData(r, b);
		END IF;
	END LOOP;
	RETURN r;
END $$;

-- Compare our decode of the requested bands with ST_DumpValues band by band.
CREATE FUNCTION pg_temp.matches(r raster, bands int[]) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
	ours real[] := rai4eo_raster_values(r, bands);
	theirs float8[];
	n int := ST_Width(r) * ST_Height(r);
	same bool;
BEGIN
	IF array_ndims(ours) <> 3 OR array_length(ours, 1) <> coalesce(array_length(bands, 1), ST_NumBands(r))
	   OR array_length(ours, 2) <> ST_Height(r) OR array_length(ours, 3) <> ST_Width(r) THEN
		RETURN false;
	END IF;
	FOR i IN 1..array_length(ours, 1) LOOP
		theirs := ST_DumpValues(r, coalesce(bands[i], i));
		SELECT bool_and(o IS NOT DISTINCT FROM t::real) INTO same
		FROM unnest((SELECT array_agg(v) FROM (SELECT unnest(ours[i:i][:][:]) v) q), theirs) u(o, t);
		IF NOT same THEN RETURN false; END IF;
	END LOOP;
	RETURN true;
END $$;

CREATE TEMP TABLE cases AS
SELECT pt, w, h, nb, mode, pg_temp.make_raster(pt, w, h, nb, mode) AS r
FROM pixtype, (VALUES (1, 1, 1), (3, 2, 2), (7, 5, 3), (60, 60, 12), (200, 200, 4)) s(w, h, nb),
	(VALUES ('none'), ('nodata'), ('isnodata')) m(mode)
WHERE (w < 60 OR mode = 'nodata');

SELECT count(*) AS cases, count(*) FILTER (WHERE pg_temp.matches(r, NULL)) AS all_bands_match,
	count(*) FILTER (WHERE nb < 2 OR pg_temp.matches(r, ARRAY[nb, 1, nb])) AS selected_bands_match
FROM cases;
-- any mismatch, named
SELECT pt, w, h, nb, mode FROM cases WHERE NOT pg_temp.matches(r, NULL) ORDER BY 1, 2, 5;

-- nodata and is-nodata really produce NULLs (the comparison above is not vacuous)
SELECT mode, count(*) FILTER (WHERE v IS NULL) AS nulls, count(*) AS pixels
FROM cases, unnest(rai4eo_raster_values(r)) v WHERE pt = '16BUI' AND w = 7 GROUP BY mode ORDER BY mode;
-- the first band of a 3 x 2 8BUI raster, exactly
SELECT rai4eo_raster_values(r, ARRAY[1]) FROM cases WHERE pt = '8BUI' AND w = 3 AND mode = 'nodata';
SELECT ST_DumpValues(r, 1) FROM cases WHERE pt = '8BUI' AND w = 3 AND mode = 'nodata';

-- PostGIS's nodata rule for floats: equal within FLT_EPSILON, absolute
SELECT rai4eo_raster_values(ST_SetValues(ST_AddBand(ST_MakeEmptyRaster(4, 1, 0, 0, 1, -1, 0, 0, 0), '64BF'::text, 0::float8, 0::float8),
	1, 1, 1, ARRAY[[1e-8, -1e-8, 1e-6, 2]]::float8[]));

-- NULL raster in, NULL out; NULL bands means all bands
SELECT rai4eo_raster_values(NULL::raster) IS NULL AS null_in_null_out;
SELECT rai4eo_raster_values(r) = rai4eo_raster_values(r, ARRAY[1, 2]) AS null_means_all FROM cases WHERE pt = '8BUI' AND w = 3 AND mode = 'none';

-- errors: band out of range and bad band lists 22023/22004/2202E; no bands or no pixels 22023
SELECT rai4eo_raster_values(r, ARRAY[3]) FROM cases WHERE pt = '8BUI' AND w = 3 AND mode = 'none';
SELECT pg_temp.err($$SELECT rai4eo_raster_values(r, ARRAY[0]) FROM cases WHERE pt = '8BUI' AND w = 3 AND mode = 'none'$$);
SELECT pg_temp.err($$SELECT rai4eo_raster_values(r, ARRAY[1, NULL]) FROM cases WHERE pt = '8BUI' AND w = 3 AND mode = 'none'$$);
SELECT pg_temp.err($$SELECT rai4eo_raster_values(r, '{}') FROM cases WHERE pt = '8BUI' AND w = 3 AND mode = 'none'$$);
SELECT pg_temp.err($$SELECT rai4eo_raster_values(r, ARRAY[[1]]) FROM cases WHERE pt = '8BUI' AND w = 3 AND mode = 'none'$$);
SELECT pg_temp.err($$SELECT rai4eo_raster_values(ST_MakeEmptyRaster(3, 2, 0, 0, 1, -1, 0, 0, 0))$$);
SELECT pg_temp.err($$SELECT rai4eo_raster_values(ST_AddBand(ST_MakeEmptyRaster(0, 0, 0, 0, 1, -1, 0, 0, 0), '8BUI'::text))$$);

-- corrupt values never reach PostGIS's own checks in a table, so fabricate them:
-- a one-column bytea table relabelled as raster (same varlena storage) holds raw serialized bytes.
CREATE TABLE corrupt (r bytea, id int);
INSERT INTO corrupt VALUES
	-- header (version, 1 band, geotransform, srid, 3 x 2) then a band of pixel type 12
	(('\x0000' || '0100' || repeat('00', 48) || '00000000' || '0300' || '0200' || '0c00' || repeat('00', 6))::bytea, 1),
	-- the same with 8BUI but only 3 of the 6 pixels present
	(('\x0000' || '0100' || repeat('00', 48) || '00000000' || '0300' || '0200' || '04' || '00' || '010203')::bytea, 2),
	-- a header cut short
	(('\x0000' || '0100' || repeat('00', 20))::bytea, 3);
UPDATE pg_attribute SET atttypid = 'raster'::regtype WHERE attrelid = 'corrupt'::regclass AND attname = 'r';
SELECT pg_temp.err($$SELECT rai4eo_raster_values(r) FROM corrupt WHERE id = 1$$) AS bad_pixel_type;
SELECT pg_temp.err($$SELECT rai4eo_raster_values(r) FROM corrupt WHERE id = 2$$) AS truncated_pixels;
SELECT pg_temp.err($$SELECT rai4eo_raster_values(r) FROM corrupt WHERE id = 3$$) AS truncated_header;
DROP TABLE corrupt;

-- ---- out-db bands: a GeoTIFF written by the server, registered as out-db bands ----
SELECT postgis_raster_lib_version() IS NOT NULL AS raster_lib_loaded;
SET postgis.gdal_enabled_drivers = 'GTiff';
CREATE TEMP TABLE tif AS SELECT pg_temp.make_raster('16BSI', 9, 7, 3, 'nodata') AS r;
SELECT lo_from_bytea(424250, ST_AsGDALRaster(r, 'GTiff')) > 0 AS ok FROM tif;
SELECT lo_export(424250, '/tmp/rai4eo_regress_outdb.tif') = 1 AS exported;
SELECT lo_unlink(424250);
-- the whole file as three out-db bands (in a different order), and a 4 x 3 window of it
CREATE TEMP TABLE outdb AS
SELECT 'whole' AS kind, ST_AddBand(ST_MakeEmptyRaster(9, 7, 500000, 4400000, 3, -3, 0, 0, 32629), '/tmp/rai4eo_regress_outdb.tif'::text, ARRAY[3, 1, 2]) AS r
UNION ALL
SELECT 'window', ST_AddBand(ST_MakeEmptyRaster(4, 3, 500006, 4399997, 3, -3, 0, 0, 32629), '/tmp/rai4eo_regress_outdb.tif'::text, ARRAY[1, 2, 3]);
SELECT kind, ST_BandIsNoData(r, 1) IS NOT NULL AS registered, (ST_BandMetaData(r, 1)).isoutdb FROM outdb ORDER BY kind;

-- with PostGIS's settings off, a clear error with a hint: 42501
SET postgis.enable_outdb_rasters = off;
SELECT rai4eo_raster_values(r) FROM outdb WHERE kind = 'whole';
SELECT pg_temp.err($$SELECT rai4eo_raster_values(r, ARRAY[2]) FROM outdb WHERE kind = 'window'$$);
SET postgis.enable_outdb_rasters = on;
SET postgis.gdal_enabled_drivers = 'DISABLE_ALL';
SELECT pg_temp.err($$SELECT rai4eo_raster_values(r) FROM outdb WHERE kind = 'whole'$$);
SET postgis.gdal_enabled_drivers = 'GTiff';

-- with them on, the same values as ST_DumpValues, whole file and window
SELECT kind, pg_temp.matches(r, NULL) AS all_bands_match, pg_temp.matches(r, ARRAY[2, 3]) AS selected_match FROM outdb ORDER BY kind;
-- and the whole-file bands equal the in-db raster they were written from (band order 3, 1, 2)
SELECT rai4eo_raster_values(o.r) = rai4eo_raster_values(t.r, ARRAY[3, 1, 2]) AS same_as_source FROM outdb o, tif t WHERE o.kind = 'whole';
-- the window starts two columns right and one row down
SELECT rai4eo_raster_values(o.r, ARRAY[1]) = (rai4eo_raster_values(t.r, ARRAY[1]))[1:1][2:4][3:6] AS window_ok FROM outdb o, tif t WHERE o.kind = 'window';
RESET postgis.enable_outdb_rasters;
RESET postgis.gdal_enabled_drivers;
