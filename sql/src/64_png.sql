-- ============================================================================
-- PNG output: heatmap_png
-- ============================================================================

-- ---- PNG ----------------------------------------------------------------------
--
-- ST_AsPNG needs the GDAL PNG driver, which postgis.gdal_enabled_drivers
-- (superuser-only, DISABLE_ALL by default) keeps off.  This writer needs nothing:
-- an 8-bit palette PNG with stored (uncompressed) deflate blocks, so the only
-- arithmetic is CRC-32 and Adler-32.

CREATE FUNCTION rai4eo.crc32_table() RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	WITH RECURSIVE r(n, k, c) AS (
		SELECT n, 0, n::bigint FROM generate_series(0, 255) n
		UNION ALL
		SELECT n, k + 1, CASE c & 1 WHEN 1 THEN 3988292384 # (c >> 1) ELSE c >> 1 END FROM r WHERE k < 8)
	SELECT array_agg(c ORDER BY n) FROM r WHERE k = 8
$$;

COMMENT ON FUNCTION rai4eo.crc32_table() IS
'Lookup table of the reflected CRC-32 (polynomial 0xEDB88320) used by PNG and zlib';

CREATE FUNCTION rai4eo.crc32(data bytea) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
	-- An IMMUTABLE call without arguments is folded when this is planned, once a session.
	t CONSTANT bigint[] := rai4eo.crc32_table();
	c bigint := 4294967295;
BEGIN
	FOR i IN 0 .. length(data) - 1 LOOP
		c := t[((c # get_byte(data, i)) & 255) + 1] # (c >> 8);
	END LOOP;
	RETURN c # 4294967295;
END
$$;

COMMENT ON FUNCTION rai4eo.crc32(bytea) IS 'CRC-32 of the bytes as PNG and zlib define it (crc32(''123456789'') = 0xCBF43926)';

CREATE FUNCTION rai4eo.adler32(data bytea) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
	-- B * 65536 + A with A = 1 + sum b_i and B = sum of the running A = n + sum (n - i) b_i
	-- (i from 0), both mod 65521.
	SELECT ((length($1) + coalesce(sum(((length($1) - i) % 65521) * get_byte($1, i)), 0)) % 65521) * 65536
		   + (1 + coalesce(sum(get_byte($1, i)), 0)) % 65521
	FROM generate_series(0, length($1) - 1) i
$$;

COMMENT ON FUNCTION rai4eo.adler32(bytea) IS 'Adler-32 checksum of the bytes, as zlib defines it (adler32(''Wikipedia'') = 0x11E60398)';

CREATE FUNCTION rai4eo.png_chunk(kind text, data bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
	SELECT int4send(length($2)) || convert_to($1, 'UTF8') || $2
		   || substring(int8send(rai4eo.crc32(convert_to($1, 'UTF8') || $2)) FROM 5)
$$;

COMMENT ON FUNCTION rai4eo.png_chunk(text, bytea) IS 'One PNG chunk: big-endian length, type, data, CRC-32 of type and data';

CREATE FUNCTION heatmap_png(rast raster, band integer DEFAULT 1, min_value float8 DEFAULT 0, max_value float8 DEFAULT 1,
	ramp text DEFAULT 'heat', scale integer DEFAULT 1)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
	stops float8[];
	w integer;
	h integer;
	palette bytea := '\x000000';
	raw bytea;
	z bytea := '\x7801';	-- zlib header: deflate, 32 KiB window, no dictionary
	n integer;
	pos integer := 0;
	len integer;
	t float8;
	f float8;
	j integer;
BEGIN
	IF rast IS NULL THEN
		RETURN NULL;
	END IF;
	IF band IS NULL OR band < 1 OR band > ST_NumBands(rast) THEN
		RAISE EXCEPTION 'band % does not exist', band USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('The raster has %s bands.', ST_NumBands(rast));
	END IF;
	IF NOT (min_value < max_value) OR min_value = '-Infinity' OR max_value = 'Infinity' THEN
		RAISE EXCEPTION 'min_value % must be finite and below max_value %', min_value, max_value
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF scale IS NULL OR scale NOT BETWEEN 1 AND 64 THEN
		RAISE EXCEPTION 'scale % is out of range', scale USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'Each pixel becomes scale x scale PNG pixels; scale runs from 1 to 64.';
	END IF;
	-- Colour stops {position, red, green, blue}.
	stops := CASE ramp
		WHEN 'heat' THEN '{{0,255,255,204},{0.5,253,141,60},{1,189,0,38}}'::float8[]
		WHEN 'viridis' THEN '{{0,68,1,84},{0.25,59,82,139},{0.5,33,145,140},{0.75,94,201,98},{1,253,231,37}}'::float8[]
		WHEN 'gray' THEN '{{0,0,0,0},{1,255,255,255}}'::float8[]
	END;
	IF stops IS NULL THEN
		RAISE EXCEPTION 'unknown colour ramp "%"', ramp USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Ramps are heat (light yellow to dark red), viridis and gray.';
	END IF;
	w := ST_Width(rast);
	h := ST_Height(rast);
	-- The checksums run in PL/pgSQL at about 3 us a pixel: 2^22 pixels take some 15 s.
	IF w::bigint * h * scale * scale > 4194304 THEN
		RAISE EXCEPTION 'a PNG of % x % pixels is too large', w * scale, h * scale
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'heatmap_png writes up to 4194304 pixels (2048 x 2048); use a smaller scale, or ST_AsPNG where the GDAL PNG driver is enabled.';
	END IF;

	-- Palette: index 0 is nodata (transparent through tRNS), 1 .. 255 run from
	-- min_value to max_value along the ramp.
	FOR i IN 1 .. 255 LOOP
		t := (i - 1) / 254.0;
		j := 1;
		WHILE j < array_length(stops, 1) - 1 AND t > stops[j + 1][1] LOOP
			j := j + 1;
		END LOOP;
		f := (t - stops[j][1]) / (stops[j + 1][1] - stops[j][1]);
		palette := palette || decode(
			lpad(to_hex(round(stops[j][2] + f * (stops[j + 1][2] - stops[j][2]))::integer), 2, '0') ||
			lpad(to_hex(round(stops[j][3] + f * (stops[j + 1][3] - stops[j][3]))::integer), 2, '0') ||
			lpad(to_hex(round(stops[j][4] + f * (stops[j + 1][4] - stops[j][4]))::integer), 2, '0'), 'hex');
	END LOOP;

	-- Scanlines: filter type 0, then one palette index per pixel, scale x scale times.
	SELECT decode(string_agg(repeat('00' || r.line, scale), '' ORDER BY r.y), 'hex') INTO raw
	FROM (SELECT (u.k - 1) / w AS y,
				 string_agg(repeat(lpad(to_hex(CASE
					 WHEN u.v IS NULL OR u.v = 'NaN' THEN 0
					 ELSE 1 + round(254 * least(greatest((u.v - min_value) / (max_value - min_value), 0), 1))::integer
				 END), 2, '0'), scale), '' ORDER BY u.k) AS line
		  FROM unnest(ST_DumpValues(rast, band, true)) WITH ORDINALITY u(v, k)
		  GROUP BY 1) r;

	-- zlib stream of stored deflate blocks of at most 65535 bytes.
	n := length(raw);
	LOOP
		len := least(65535, n - pos);
		z := z || CASE WHEN pos + len >= n THEN '\x01'::bytea ELSE '\x00'::bytea END
			   || decode(lpad(to_hex(len & 255), 2, '0') || lpad(to_hex(len >> 8), 2, '0')
						 || lpad(to_hex(~len & 255), 2, '0') || lpad(to_hex((~len >> 8) & 255), 2, '0'), 'hex')
			   || substring(raw FROM pos + 1 FOR len);
		pos := pos + len;
		EXIT WHEN pos >= n;
	END LOOP;
	z := z || substring(int8send(rai4eo.adler32(raw)) FROM 5);

	RETURN '\x89504e470d0a1a0a'::bytea
		|| rai4eo.png_chunk('IHDR', int4send(w * scale) || int4send(h * scale) || '\x0803000000'::bytea)
		|| rai4eo.png_chunk('PLTE', palette)
		|| rai4eo.png_chunk('tRNS', '\x00'::bytea)
		|| rai4eo.png_chunk('IDAT', z)
		|| rai4eo.png_chunk('IEND', ''::bytea);
END
$$;

COMMENT ON FUNCTION heatmap_png(raster, integer, float8, float8, text, integer) IS
'A band of a raster as a colour PNG for dashboards, without GDAL drivers (no superuser setting needed): 8-bit palette, nodata transparent, values from min_value to max_value mapped along the ramp (heat, viridis or gray; values outside are clamped), each pixel drawn scale x scale; uncompressed (about width x height x scale^2 bytes), at most 2^22 pixels, about 3 us a pixel';
