-- PNG output in C (heatmap_png, rai4eo_quicklook): the bytes are read back in
-- SQL — chunk layout, every CRC against an independent CRC-32 written here,
-- IHDR, the palette against the ramp stops — and the exact bytes of tiny
-- images (zlib's output at level 2 is deterministic; its pixels are decoded
-- with zlib in test/unit/test_png.c and test/tools/test_refresh.py).
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- CRC-32 (reflected, polynomial 0xEDB88320) bit by bit, as PNG defines it
CREATE FUNCTION pg_temp.crc32(data bytea) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	c bigint := 4294967295;
BEGIN
	FOR i IN 0 .. length(data) - 1 LOOP
		c := c # get_byte(data, i);
		FOR k IN 1 .. 8 LOOP
			c := CASE c & 1 WHEN 1 THEN 3988292384 # (c >> 1) ELSE c >> 1 END;
		END LOOP;
	END LOOP;
	RETURN c # 4294967295;
END $$;
SELECT to_hex(pg_temp.crc32('123456789')) AS crc_check;
-- every chunk of a PNG: type, length, CRC ok
CREATE FUNCTION pg_temp.chunks(b bytea) RETURNS TABLE (kind text, len integer, crc_ok boolean) LANGUAGE sql AS $$
	WITH RECURSIVE c(pos, kind, len, crc_ok) AS (
		SELECT 9, NULL::text COLLATE "C", 0, NULL::boolean
		UNION ALL
		SELECT c.pos + 12 + l.len, convert_from(substring(b FROM c.pos + 4 FOR 4), 'UTF8'), l.len,
			   substring(b FROM c.pos + 8 + l.len FOR 4)
				 = substring(int8send(pg_temp.crc32(substring(b FROM c.pos + 4 FOR 4 + l.len))) FROM 5)
		FROM c, LATERAL (SELECT ('x' || encode(substring(b FROM c.pos FOR 4), 'hex'))::bit(32)::integer AS len) l
		WHERE c.pos < length(b))
	SELECT kind, len, crc_ok FROM c WHERE kind IS NOT NULL $$;
-- IHDR fields
CREATE FUNCTION pg_temp.ihdr(b bytea) RETURNS TABLE (width integer, height integer, depth integer, colour_type integer)
LANGUAGE sql AS $$
	SELECT ('x' || encode(substring(b FROM 17 FOR 4), 'hex'))::bit(32)::integer,
		   ('x' || encode(substring(b FROM 21 FOR 4), 'hex'))::bit(32)::integer,
		   get_byte(b, 24), get_byte(b, 25) $$;
-- the data of the first chunk of a kind
CREATE FUNCTION pg_temp.chunk(b bytea, k text) RETURNS bytea LANGUAGE sql AS $$
	SELECT substring(b FROM p + 4 FOR ('x' || encode(substring(b FROM p - 4 FOR 4), 'hex'))::bit(32)::integer)
	FROM (SELECT position(convert_to(k, 'UTF8') IN b) AS p) s $$;

-- 4 x 3 pixels: a nodata pixel (-9999), NaN, values below 0, above 1 and inside
CREATE TEMP TABLE r AS
SELECT ST_SetValues(ST_AddBand(ST_MakeEmptyRaster(4, 3, 0, 0, 1, -1, 0, 0, 32629), '32BF'::text, 0, -9999), 1, 1, 1,
	   ARRAY[[0, 0.25, -9999, 1], [2, -1, 'NaN', 0.5], [0.1, 0.2, 0.3, 0.4]]::float8[]) AS r;

-- ---- heatmap_png ----------------------------------------------------------------

-- signature, IHDR (12 x 9 at scale 3, 8-bit palette), the chunk sequence, every CRC
SELECT encode(substring(png FROM 1 FOR 8), 'hex') AS signature, (pg_temp.ihdr(png)).*
FROM (SELECT heatmap_png(r, scale => 3) AS png FROM r) s;
SELECT c.* FROM r, pg_temp.chunks(heatmap_png(r, scale => 3)) c;
-- tRNS: palette index 0 (nodata) fully transparent
SELECT encode(pg_temp.chunk(heatmap_png(r), 'tRNS'), 'hex') AS trns FROM r;
-- the palette of each ramp equals the stops interpolated here: entry 0 black,
-- 1 .. 255 linear between stops at t = (i - 1) / 254, rounded half to even
WITH ramps(ramp, stops) AS (VALUES
	('heat', '{{0,255,255,204},{0.5,253,141,60},{1,189,0,38}}'::float8[]),
	('viridis', '{{0,68,1,84},{0.25,59,82,139},{0.5,33,145,140},{0.75,94,201,98},{1,253,231,37}}'),
	('gray', '{{0,0,0,0},{1,255,255,255}}')),
want AS (
	SELECT ramp, '\x000000'::bytea || string_agg(
		set_byte(set_byte(set_byte('\x000000'::bytea,
			0, round(s[j][2] + f * (s[j + 1][2] - s[j][2]))::integer),
			1, round(s[j][3] + f * (s[j + 1][3] - s[j][3]))::integer),
			2, round(s[j][4] + f * (s[j + 1][4] - s[j][4]))::integer), ''::bytea ORDER BY i) AS plte
	FROM ramps CROSS JOIN LATERAL (SELECT stops AS s) x
	CROSS JOIN generate_series(1, 255) i
	CROSS JOIN LATERAL (SELECT (i - 1) / 254.0::float8 AS t) tt
	CROSS JOIN LATERAL (SELECT coalesce(max(k) FILTER (WHERE t > s[k][1]), 1) AS j
						FROM generate_series(1, array_length(s, 1) - 1) k) jj
	CROSS JOIN LATERAL (SELECT (t - s[j][1]) / (s[j + 1][1] - s[j][1]) AS f) ff
	GROUP BY ramp)
SELECT w.ramp, pg_temp.chunk(heatmap_png(r, ramp => w.ramp), 'PLTE') = w.plte AS palette_ok,
	   encode(substring(w.plte FROM 4 FOR 3), 'hex') AS entry_1, encode(substring(w.plte FROM 3 * 128 + 1 FOR 3), 'hex') AS entry_128,
	   encode(substring(w.plte FROM 3 * 255 + 1 FOR 3), 'hex') AS entry_255
FROM want w, r ORDER BY w.ramp;
-- the exact bytes of the 4 x 3 PNG: scanlines 00 | 01 41 00 ff | 00 ff 01 00 80 | 00 1a 34 4d 67
-- (filter byte, then 1 + round(254 t); nodata and NaN 0), deflated by zlib at level 2
SELECT encode(pg_temp.chunk(heatmap_png(r), 'IDAT'), 'hex') AS idat, length(heatmap_png(r)) AS bytes FROM r;
-- min_value / max_value move the ramp: values at or below 0.4 all take index 1 here
SELECT encode(pg_temp.chunk(heatmap_png(r, 1, 0.4, 0.5), 'IDAT'), 'hex') AS idat FROM r;
-- legend: RGBA, at least 160 px wide, the 29-row strip under the map
SELECT (pg_temp.ihdr(png)).*, (SELECT string_agg(kind, ' ') FROM pg_temp.chunks(png)) AS chunks,
	   (SELECT bool_and(crc_ok) FROM pg_temp.chunks(png)) AS crc_ok
FROM (SELECT heatmap_png(r, scale => 3, legend => true) AS png FROM r) s;
-- a wide map keeps its width; the legend grows with it (2 units from 640 px)
SELECT (pg_temp.ihdr(heatmap_png(ST_AddBand(ST_MakeEmptyRaster(80, 10, 0, 0, 1, -1, 0, 0, 32629), '32BF'::text, 0.5, -9999),
							 scale => 8, legend => true))).*;
-- a zlib stream of many rows: 300 x 300 pixels of one value compress to almost nothing
SELECT length(heatmap_png(ST_AddBand(ST_MakeEmptyRaster(300, 300, 0, 0, 1, -1, 0, 0, 32629), '32BF'::text, 0.5, -9999))) < 2000 AS small,
	   (pg_temp.ihdr(heatmap_png(ST_AddBand(ST_MakeEmptyRaster(300, 300, 0, 0, 1, -1, 0, 0, 32629), '32BF'::text, 0.5, -9999)))).width;
-- integer bands work the same (16BUI)
SELECT encode(pg_temp.chunk(heatmap_png(ST_AddBand(ST_MakeEmptyRaster(2, 1, 0, 0, 1, -1, 0, 0, 32629), '16BUI'::text, 3, 0), 1, 0, 6), 'IDAT'), 'hex') AS idat_16bui;

SELECT heatmap_png(NULL) IS NULL AS null_raster;
SELECT pg_temp.err($$SELECT heatmap_png(r, 4) FROM r$$);
SELECT pg_temp.err($$SELECT heatmap_png(r, 0) FROM r$$);
SELECT pg_temp.err($$SELECT heatmap_png(r, NULL) FROM r$$);
SELECT pg_temp.err($$SELECT heatmap_png(r, 1, 1, 1) FROM r$$);
SELECT pg_temp.err($$SELECT heatmap_png(r, 1, 0, 'Infinity') FROM r$$);
SELECT pg_temp.err($$SELECT heatmap_png(r, 1, NULL) FROM r$$);
SELECT pg_temp.err($$SELECT heatmap_png(r, ramp => 'rainbow') FROM r$$);
SELECT pg_temp.err($$SELECT heatmap_png(r, scale => 0) FROM r$$);
SELECT pg_temp.err($$SELECT heatmap_png(r, scale => 65) FROM r$$);
SELECT pg_temp.err($$SELECT heatmap_png(r, scale => NULL) FROM r$$);
-- 1025 x 1024 at scale 8 is over 8192 x 8192: refused from the header, before the pixels are read
SELECT pg_temp.err($$SELECT heatmap_png(ST_AddBand(ST_MakeEmptyRaster(1025, 1024, 0, 0, 1, -1, 0, 0, 32629), '8BUI'::text, 1, 0), scale => 8)$$);
SELECT pg_temp.err($$SELECT heatmap_png(ST_MakeEmptyRaster(2, 2, 0, 0, 1, -1, 0, 0, 32629))$$);

-- ---- rai4eo_quicklook -------------------------------------------------------------

-- 3 x 2 pixels, 4 bands like PF-SR (blue, green, red, nir); pixel (3, 1) is nodata in green
CREATE TEMP TABLE img AS
SELECT ST_SetValues(ST_SetValues(ST_SetValues(ST_SetValues(
	ST_AddBand(ST_MakeEmptyRaster(3, 2, 0, 0, 3, -3, 0, 0, 32629), ARRAY[
		ROW(1, '16BUI', 0, 0), ROW(2, '16BUI', 0, 0), ROW(3, '16BUI', 0, 0), ROW(4, '16BUI', 0, 0)]::addbandarg[]),
	1, 1, 1, ARRAY[[100, 200, 300], [400, 500, 600]]::float8[]),
	2, 1, 1, ARRAY[[10, 20, 0], [40, 50, 60]]::float8[]),
	3, 1, 1, ARRAY[[1000, 1000, 1000], [1000, 3000, 2000]]::float8[]),
	4, 1, 1, ARRAY[[7, 7, 7], [7, 7, 7]]::float8[]) AS r;
-- default: bands 3, 2, 1 as RGBA, percentile 2 .. 98
SELECT (pg_temp.ihdr(png)).*, (SELECT string_agg(kind, ' ') FROM pg_temp.chunks(png)) AS chunks,
	   (SELECT bool_and(crc_ok) FROM pg_temp.chunks(png)) AS crc_ok
FROM (SELECT rai4eo_quicklook(r) AS png FROM img) s;
-- minmax over the 5 pixels valid in all three bands, then exact bytes: red 1000 .. 3000,
-- green 10 .. 60, blue 100 .. 600; scanlines 00 | 00 00 00 ff  00 33 33 ff  00 00 00 00 | ...
SELECT encode(pg_temp.chunk(rai4eo_quicklook(r, stretch => 'minmax'), 'IDAT'), 'hex') AS idat FROM img;
-- the same pixels from the explicit bands and limits (fixed is one stretch for every band)
SELECT rai4eo_quicklook(r, '{3,2,1}', 'minmax') = rai4eo_quicklook(r, NULL, 'minmax') AS explicit_bands,
	   rai4eo_quicklook(r, '{4}', 'fixed', 2, 0, 14) <> rai4eo_quicklook(r, '{4}', 'minmax') AS fixed_differs
FROM img;
-- one band: grey + alpha; 7 of 0 .. 14 is grey 128 (127.5 to even)
SELECT (pg_temp.ihdr(rai4eo_quicklook(r, '{4}', 'fixed', 1, 0, 14))).*,
	   encode(pg_temp.chunk(rai4eo_quicklook(r, '{4}', 'fixed', 1, 0, 14), 'IDAT'), 'hex') AS idat
FROM img;
-- fewer than 3 bands: band 1 as grey; scale 4 gives 12 x 8
SELECT (pg_temp.ihdr(rai4eo_quicklook(ST_Band(r, 1), scale => 4))).* FROM img;

SELECT rai4eo_quicklook(NULL) IS NULL AS null_raster;
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, '{3,2}') FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, '{5,2,1}') FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, '{3,NULL,1}') FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, '{{3,2,1}}') FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, stretch => 'gamma') FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, stretch => 'fixed') FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, stretch => 'fixed', low => 5, high => 5) FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, low => 50, high => 40) FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, low => -1) FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, stretch => 'minmax', high => 40) FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(r, scale => 0) FROM img$$);
SELECT pg_temp.err($$SELECT rai4eo_quicklook(ST_AddBand(ST_MakeEmptyRaster(1025, 1024, 0, 0, 1, -1, 0, 0, 32629), '8BUI'::text, 1, 0), scale => 8)$$);
