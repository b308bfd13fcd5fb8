-- ============================================================================
-- change detection: pairing, daily and yearly change, heatmaps, calibration,
-- batch embedding
-- ============================================================================
--
-- The daily change of a patch on day d is the cosine distance between the
-- embedding of its image on d and the embedding of its image of the same sensor
-- nearest to d - 365 days, at most `tolerance` days away; of two equally near
-- images the earlier wins.  Only images with an embedding under the model take
-- part: an image not embedded (yet, or because its raster could not be read)
-- counts as not acquired.  A day without a partner is not compared, and neither
-- is a pair whose distance is NaN (a zero embedding has no direction).
--
-- Everything below reads rai4eo.embedding alone.  An image_id is
-- patch_id * 2^18 + sensor code * 2^16 + days since 2000-01-01 (image_id_of in
-- 40_corpus.sql), so the primary key (image_id, model) is ordered like
-- (patch_id, sensor, acquired): the images of one patch and sensor in a date
-- range are one index range, and the partner of image i lies in
-- [i - 365 - tolerance, i - 365 + tolerance].  Pairing is one btree descent per
-- compared image, all inside one set-based query, and never touches the raster
-- table.
--
-- Public SQL functions carry no rai4eo_ prefix where the design fixed their
-- names (daily_change, yearly_change, daily_heatmap, yearly_heatmap,
-- heatmap_png); helpers live in schema rai4eo.

-- ---- patches of an AOI ------------------------------------------------------

-- Patches of different UTM zones have different SRIDs; the AOI is transformed
-- into each of them, and this index lists them without reading the table.
CREATE INDEX patch_srid_idx ON rai4eo.patch (ST_SRID(geom));

CREATE FUNCTION rai4eo.patch_srids() RETURNS SETOF integer
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	WITH RECURSIVE s(srid) AS (
		SELECT min(ST_SRID(geom)) FROM rai4eo.patch
		UNION ALL
		SELECT (SELECT min(ST_SRID(p.geom)) FROM rai4eo.patch p WHERE ST_SRID(p.geom) > s.srid)
		FROM s WHERE s.srid IS NOT NULL)
	SELECT srid FROM s WHERE srid IS NOT NULL
$$;

COMMENT ON FUNCTION rai4eo.patch_srids() IS
'The distinct SRIDs of rai4eo.patch footprints, ascending (a skip scan of patch_srid_idx)';

CREATE FUNCTION rai4eo.aoi_patches(aoi geometry, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT p.patch_id, p.sample_id, p.geom
	FROM rai4eo.patch_srids() s(srid)
	-- OFFSET 0 keeps the transform once per SRID instead of once per patch.
	CROSS JOIN LATERAL (SELECT ST_Transform($1, s.srid) AS g WHERE NOT ST_IsEmpty($1) OFFSET 0) a
	JOIN rai4eo.patch p ON p.geom && a.g
	WHERE ($2 IS NULL OR s.srid = $2)
	  -- The bounding boxes of other SRIDs' patches may overlap by accident, and
	  -- ST_Intersects refuses mixed SRIDs: test the SRID first.
	  AND CASE WHEN ST_SRID(p.geom) <> s.srid THEN false
			   -- A polygon AOI keeps the patches whose interior it overlaps: the
			   -- neighbours that only touch its boundary (e.g. of an envelope
			   -- drawn on the 600 m grid) are not in it.
			   WHEN ST_Dimension(a.g) = 2 AND GeometryType(a.g) <> 'GEOMETRYCOLLECTION'
			   THEN ST_Intersects(p.geom, a.g) AND NOT ST_Touches(p.geom, a.g)
			   ELSE ST_Intersects(p.geom, a.g) END
$$;

COMMENT ON FUNCTION rai4eo.aoi_patches(geometry, integer) IS
'Patches of an AOI: the AOI is transformed into each patch CRS (vertices only: segmentize long edges first); a polygon AOI keeps the patches whose interior it overlaps (not those touching only its boundary), a point or line AOI every patch it intersects; srid keeps only the patches of that CRS; NULL or empty AOI: no rows';

-- ---- thresholds ---------------------------------------------------------------

CREATE FUNCTION rai4eo.change_threshold(model text, threshold float8 DEFAULT NULL) RETURNS float8
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
	j jsonb;
	v float8 := threshold;
	source text := 'argument';
BEGIN
	IF v IS NULL THEN
		SELECT m.config -> 'change_threshold' INTO j FROM rai4eo.model m WHERE m.name = model;
		IF jsonb_typeof(j) = 'number' THEN
			v := j::float8;
			source := format('change_threshold of model "%s"', model);
		ELSIF j IS NOT NULL AND jsonb_typeof(j) <> 'null' THEN
			RAISE EXCEPTION 'change_threshold of model "%" is not a number: %', model, j
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Calibrate it again with rai4eo_calibrate_threshold.';
		END IF;
	END IF;
	IF v IS NULL THEN
		v := NULLIF(current_setting('rai4eo.change_threshold', true), '')::float8;
		source := 'rai4eo.change_threshold';
	END IF;
	IF v IS NULL THEN
		-- 55000 object_not_in_prerequisite_state: every argument is valid; what is
		-- missing is state that must be set up first (a calibration or a setting),
		-- as for currval() before nextval().
		RAISE EXCEPTION 'no change threshold for model "%"', model
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'No threshold was given, the model has no calibrated change_threshold and rai4eo.change_threshold is not set.',
				  HINT = 'Calibrate the model with rai4eo_calibrate_threshold(model, year, truth_table), pass threshold => 0.3, or SET rai4eo.change_threshold = ''0.3''.';
	END IF;
	IF NOT (v >= 0 AND v <= 2) THEN
		RAISE EXCEPTION 'change threshold % (%) is not a cosine distance in [0, 2]', v, source
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN v;
END
$$;

COMMENT ON FUNCTION rai4eo.change_threshold(text, float8) IS
'The change threshold in force for a model: the argument when given, else the model''s calibrated config->''change_threshold'', else the setting rai4eo.change_threshold; none: ERROR 55000. A day is changed when its distance is greater than the threshold.';

-- ---- pairing ------------------------------------------------------------------

CREATE FUNCTION rai4eo.daily_distances(patch_id bigint, model text, sensor text, first_day date, last_day date,
	tolerance integer DEFAULT 2)
RETURNS TABLE (image_id bigint, acquired date, prior_image_id bigint, prior_acquired date, distance float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT c.image_id, date '2000-01-01' + (c.image_id & 65535)::integer,
		   q.image_id, date '2000-01-01' + (q.image_id & 65535)::integer, q.distance
	FROM (SELECT ($1 << 18) + ((CASE $3 WHEN 'PF-SR' THEN 0 WHEN 'S2-SR' THEN 1 END)::bigint << 16) AS base) b
	JOIN rai4eo.embedding c
	  ON c.model = $2
	 -- Dates outside 2000-01-01 .. 2179-06-06 have no image: clamp to the days field.
	 AND c.image_id BETWEEN b.base + greatest($4 - date '2000-01-01', 0)
						AND b.base + least($5 - date '2000-01-01', 65535)
	CROSS JOIN LATERAL (
		SELECT e.image_id, cosine_change(c.emb, e.emb) AS distance
		FROM rai4eo.embedding e
		WHERE e.model = $2
		  -- Same patch and sensor (never below the group's day 0), strictly earlier.
		  AND e.image_id BETWEEN greatest(c.image_id - 365 - $6, b.base)
							 AND least(c.image_id - 365 + $6, c.image_id - 1)
		ORDER BY abs(e.image_id - (c.image_id - 365)), e.image_id
		LIMIT 1) q
	WHERE q.distance <> 'NaN'
$$;

COMMENT ON FUNCTION rai4eo.daily_distances(bigint, text, text, date, date, integer) IS
'Daily change of one patch: for each embedded image of the sensor acquired from first_day to last_day, the image nearest to 365 days earlier within tolerance days (ties: the earlier) and their cosine distance; days without a partner or with a NaN distance give no row. model is a model name as stored (not resolved: NULL gives no rows); sensor PF-SR or S2-SR (anything else: no rows).';

-- ---- per-patch change over a period -------------------------------------------
--
-- The entry points run with jit = off: the planner cannot estimate the
-- per-patch index ranges (rows=16222 for 73), so the costs pass jit_above_cost
-- by orders of magnitude, and compiling with inlining and optimisation costs
-- 0.4 to 0.9 s per call for no gain in an index-lookup-bound plan.

CREATE FUNCTION rai4eo.change_args(aoi geometry, model text, threshold float8, sensor text, tolerance integer,
	OUT model_name text, OUT threshold_value float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
	IF sensor IS NULL THEN
		RAISE EXCEPTION 'sensor must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Sensors are PF-SR and S2-SR.';
	ELSIF sensor NOT IN ('PF-SR', 'S2-SR') THEN
		RAISE EXCEPTION 'unknown sensor "%"', sensor USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Sensors are PF-SR and S2-SR.';
	END IF;
	IF tolerance IS NULL THEN
		RAISE EXCEPTION 'tolerance must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	ELSIF tolerance NOT BETWEEN 0 AND 182 THEN
		RAISE EXCEPTION 'tolerance % is out of range', tolerance USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The partner of day d is searched within d - 365 days +/- tolerance; tolerance runs from 0 to 182 days.';
	END IF;
	IF ST_SRID(aoi) = 0 AND NOT ST_IsEmpty(aoi) THEN
		RAISE EXCEPTION 'the AOI has no SRID' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Give it its coordinate reference system, e.g. ST_SetSRID(aoi, 4326) or ST_MakeEnvelope(xmin, ymin, xmax, ymax, 32633).';
	END IF;
	model_name := rai4eo.resolve_model(model);
	threshold_value := rai4eo.change_threshold(model_name, threshold);
END
$$;

COMMENT ON FUNCTION rai4eo.change_args(geometry, text, float8, text, integer) IS
'Check the common arguments of the change functions and resolve the model (rai4eo.resolve_model) and threshold (rai4eo.change_threshold)';

CREATE FUNCTION rai4eo.patch_change_stats(aoi geometry, srid integer, first_day date, last_day date,
	model text, threshold float8, sensor text, tolerance integer)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, days_compared integer, days_changed integer,
	change_rate float8, mean_distance float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT p.patch_id, p.sample_id, p.geom, s.n::integer, s.k::integer, s.k::float8 / NULLIF(s.n, 0), s.mean
	FROM rai4eo.aoi_patches($1, $2) p
	CROSS JOIN LATERAL (
		SELECT count(*) AS n, count(*) FILTER (WHERE d.distance > $6) AS k, avg(d.distance) AS mean
		FROM rai4eo.daily_distances(p.patch_id, $5, $7, $3, $4, $8) d) s
$$;

COMMENT ON FUNCTION rai4eo.patch_change_stats(geometry, integer, date, date, text, float8, text, integer) IS
'Change of every patch of an AOI over first_day .. last_day with an already resolved model and threshold: days compared, days changed (distance > threshold), their ratio and the mean distance (NULL when nothing was compared). One set-based query; the engine under daily_change, yearly_change and the heatmaps.';

CREATE FUNCTION daily_change(aoi geometry, day date, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, distance float8, changed boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET jit = off AS $$
DECLARE
	a record;
BEGIN
	SELECT * INTO a FROM rai4eo.change_args(aoi, model, threshold, sensor, tolerance);
	IF day IS NULL THEN
		RETURN;
	END IF;
	RETURN QUERY
		SELECT s.patch_id, s.sample_id, s.geom, s.mean_distance, CASE WHEN s.days_compared > 0 THEN s.days_changed > 0 END
		FROM rai4eo.patch_change_stats(aoi, srid, day, day, a.model_name, a.threshold_value, sensor, tolerance) s
		ORDER BY s.patch_id;
END
$$;

COMMENT ON FUNCTION daily_change(geometry, date, text, float8, text, integer, integer) IS
'Daily change map: one row per patch of the AOI with the cosine distance between its image on day and its image nearest to day - 365 days (within tolerance days; ties: the earlier), and changed = distance > threshold; distance and changed are NULL where the day has no pair. model NULL: rai4eo.default_model; threshold NULL: the model''s calibrated one, else rai4eo.change_threshold. The AOI is transformed into the patches'' CRS; srid keeps the patches of one CRS; no patch: no rows.';

CREATE FUNCTION yearly_change(aoi geometry, year integer, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry, days_compared integer, days_changed integer,
	change_rate float8, mean_distance float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET jit = off AS $$
DECLARE
	a record;
BEGIN
	SELECT * INTO a FROM rai4eo.change_args(aoi, model, threshold, sensor, tolerance);
	IF year IS NULL THEN
		RETURN;
	END IF;
	RETURN QUERY
		SELECT s.*
		FROM rai4eo.patch_change_stats(aoi, srid, make_date(year, 1, 1), make_date(year, 12, 31),
									   a.model_name, a.threshold_value, sensor, tolerance) s
		ORDER BY s.patch_id;
END
$$;

COMMENT ON FUNCTION yearly_change(geometry, integer, text, float8, text, integer, integer) IS
'Yearly change per patch of the AOI: of the days of the year with an image paired one year earlier (see daily_change), how many were compared, how many changed (distance > threshold), change_rate = days_changed / days_compared and the mean distance; 0 compared and NULL rate and mean where nothing was compared. No patch: no rows.';

-- ---- heatmaps -----------------------------------------------------------------

CREATE FUNCTION rai4eo.change_heatmap(aoi geometry, first_day date, last_day date, model text, threshold float8,
	sensor text, tolerance integer, srid integer)
RETURNS raster
LANGUAGE plpgsql STABLE PARALLEL SAFE SET jit = off AS $$
DECLARE
	cell CONSTANT float8 := 600;	-- one pixel per RapidAI4EO patch
	nodata CONSTANT float8 := -9999;
	a record;
	srids integer[];
	counts bigint[];
	ulx float8;
	uly float8;
	lrx float8;
	lry float8;
	w bigint;
	h bigint;
	cols integer[];
	rows_ integer[];
	rates float8[];
	means float8[];
	ns float8[];
	b1 float8[];
	b2 float8[];
	b3 float8[];
	d1 bytea;
	d2 bytea;
	d3 bytea;
	band bytea;
BEGIN
	SELECT * INTO a FROM rai4eo.change_args(aoi, model, threshold, sensor, tolerance);
	IF first_day IS NULL OR last_day IS NULL THEN
		RETURN NULL;
	END IF;

	-- The grid first, from the footprints alone, so that a bad AOI fails before the work.
	SELECT array_agg(t.s ORDER BY t.s), array_agg(t.n ORDER BY t.s), min(t.x0), max(t.y1), max(t.x1), min(t.y0)
	  INTO srids, counts, ulx, uly, lrx, lry
	FROM (SELECT ST_SRID(p.geom) AS s, count(*) AS n,
				 min(ST_XMin(p.geom)) AS x0, max(ST_YMax(p.geom)) AS y1,
				 max(ST_XMin(p.geom)) AS x1, min(ST_YMax(p.geom)) AS y0
		  FROM rai4eo.aoi_patches(aoi, srid) p GROUP BY 1) t;
	IF srids IS NULL THEN
		RETURN NULL;
	END IF;
	IF cardinality(srids) > 1 THEN
		RAISE EXCEPTION 'the AOI covers patches in % coordinate reference systems', cardinality(srids)
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Patches per SRID: %s.',
								  (SELECT string_agg(format('%s: %s', u.s, u.n), ', ') FROM unnest(srids, counts) u(s, n))),
				  HINT = format('A raster has one CRS: pass srid => %s (or another of them) to map the patches of one CRS, or clip the AOI to one UTM zone.', srids[1]);
	END IF;
	-- Pixel (1, 1) is the upper-left patch; every patch lands on the cell of its upper-left corner.
	w := round((lrx - ulx) / cell) + 1;
	h := round((uly - lry) / cell) + 1;
	-- 2^24 cells (three 128 MiB arrays on the way) covers a UTM zone of scattered samples.
	IF w > 65535 OR h > 65535 OR w * h > 16777216 THEN
		RAISE EXCEPTION 'a heatmap of % x % pixels is too large', w, h
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Use a smaller AOI, or yearly_change() rows for scattered patches.';
	END IF;

	-- Patches sharing a cell (overlapping footprints) pool their compared days.
	SELECT array_agg(c.cx), array_agg(c.cy), array_agg(c.k / c.n), array_agg(c.sd / c.n), array_agg(c.n)
	  INTO cols, rows_, rates, means, ns
	FROM (SELECT round((ST_XMin(s.geom) - ulx) / cell)::integer + 1 AS cx,
				 round((uly - ST_YMax(s.geom)) / cell)::integer + 1 AS cy,
				 sum(s.days_compared)::float8 AS n, sum(s.days_changed)::float8 AS k,
				 sum(s.mean_distance * s.days_compared) AS sd
		  FROM rai4eo.patch_change_stats(aoi, srid, first_day, last_day, a.model_name, a.threshold_value,
										 sensor, tolerance) s
		  WHERE s.days_compared > 0
		  GROUP BY 1, 2) c;

	b1 := array_fill(NULL::float8, ARRAY[h::integer, w::integer]);
	b2 := b1;
	b3 := b1;
	FOR i IN 1 .. coalesce(cardinality(cols), 0) LOOP
		b1[rows_[i]][cols[i]] := rates[i];
		b2[rows_[i]][cols[i]] := means[i];
		b3[rows_[i]][cols[i]] := ns[i];
	END LOOP;

	-- Written as big-endian WKB (postgis-raster-format.md section 2) and parsed once:
	-- ST_SetValues costs about 10 us a pixel, this about 0.5 us.  A function scan
	-- returns unnest's rows in array (row-major) order.
	SELECT string_agg(float4send(coalesce(u.v1, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v2, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v3, nodata)::real), ''::bytea)
	  INTO d1, d2, d3
	FROM unnest(b1, b2, b3) u(v1, v2, v3);
	band := '\x4a'::bytea || float4send(nodata::real);	-- 32BF (10) with a nodata value (0x40)
	RETURN ST_RastFromWKB('\x00'::bytea || int2send(0::smallint) || int2send(3::smallint)
		|| float8send(cell) || float8send(-cell) || float8send(ulx) || float8send(uly)
		|| float8send(0) || float8send(0) || int4send(srids[1])
		|| substring(int4send(w::integer) FROM 3) || substring(int4send(h::integer) FROM 3)
		|| band || d1 || band || d2 || band || d3);
END
$$;

COMMENT ON FUNCTION rai4eo.change_heatmap(geometry, date, date, text, float8, text, integer, integer) IS
'The raster under daily_heatmap and yearly_heatmap: change over first_day .. last_day, one 600 m pixel per patch cell';

CREATE FUNCTION daily_heatmap(aoi geometry, day date, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS raster
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT rai4eo.change_heatmap($1, $2, $2, $3, $4, $5, $6, $7)
$$;

COMMENT ON FUNCTION daily_heatmap(geometry, date, text, float8, text, integer, integer) IS
'Daily change map of an AOI as a raster: one 600 m pixel per patch, in the patches'' CRS, aligned to their grid (upper-left = the upper-left patch corner); three 32BF bands, nodata -9999 where there is no patch or no pair: 1 changed (1) or not (0), 2 the distance, 3 the number of comparisons (1). Arguments as daily_change. No patch in the AOI: NULL; patches in several CRSs: ERROR 22023 (pass srid).';

CREATE FUNCTION yearly_heatmap(aoi geometry, year integer, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS raster
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT rai4eo.change_heatmap($1, make_date($2, 1, 1), make_date($2, 12, 31), $3, $4, $5, $6, $7)
$$;

COMMENT ON FUNCTION yearly_heatmap(geometry, integer, text, float8, text, integer, integer) IS
'Yearly change heatmap of an AOI: one 600 m pixel per patch, in the patches'' CRS, aligned to their grid; three 32BF bands, nodata -9999 where there is no patch or no compared day: 1 change_rate (share of compared days that changed), 2 mean distance, 3 days compared. Arguments as yearly_change. No patch in the AOI: NULL; patches in several CRSs: ERROR 22023 (pass srid).';

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

-- ---- calibration --------------------------------------------------------------

CREATE FUNCTION rai4eo_calibrate_threshold(model text, year integer, truth regclass, sensor text DEFAULT 'PF-SR',
	tolerance integer DEFAULT 2, rate_cut float8 DEFAULT 0.1, candidates integer DEFAULT 99, store boolean DEFAULT true)
RETURNS TABLE (threshold float8, "precision" float8, recall float8, f1 float8, true_positives integer,
	false_positives integer, false_negatives integer, true_negatives integer, chosen boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET jit = off AS $$
#variable_conflict use_column
DECLARE
	m text;
	v_sensor text := sensor;
	v_tol integer := tolerance;
	v_cut float8 := rate_cut;
	lp bigint[];
	lc boolean[];
	pp bigint[];
	pd float8[];
	n_labelled integer;
	n_used integer;
	n_pos integer;
	levels float8[];
	s_t float8[];
	s_tp integer[];
	s_fp integer[];
	s_fn integer[];
	s_tn integer[];
	best float8;
BEGIN
	m := rai4eo.resolve_model(model);
	PERFORM rai4eo.change_args(NULL, m, 0, v_sensor, v_tol);
	IF year IS NULL OR truth IS NULL THEN
		RAISE EXCEPTION 'year and truth must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF v_cut IS NULL OR NOT (v_cut >= 0 AND v_cut < 1) THEN
		RAISE EXCEPTION 'rate_cut % is out of range', v_cut USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'A patch is predicted changed when its change_rate is greater than rate_cut, from 0 (any changed day) to below 1.';
	END IF;
	IF candidates IS NULL OR candidates NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'candidates % is out of range', candidates USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'The candidate thresholds are the quantiles 1/(n+1) .. n/(n+1) of the observed daily distances, n from 1 to 1000.';
	END IF;

	IF (SELECT count(*) FROM pg_attribute a
		WHERE a.attrelid = truth AND a.attname IN ('patch_id', 'changed') AND a.attnum > 0 AND NOT a.attisdropped) < 2 THEN
		RAISE EXCEPTION 'truth table % has no columns patch_id and changed', truth USING ERRCODE = 'undefined_column',
			HINT = 'Give a table or view with patch_id bigint and changed boolean, e.g. a view renaming your columns.';
	END IF;
	-- The labels: one per patch; NULL labels are ignored.
	EXECUTE format('SELECT array_agg(patch_id ORDER BY patch_id), array_agg(changed ORDER BY patch_id), '
				   'count(*) FILTER (WHERE n > 1) FROM (SELECT t.patch_id::bigint AS patch_id, bool_or(t.changed::boolean) AS changed, '
				   'count(DISTINCT t.changed::boolean) AS n FROM %s t WHERE t.changed IS NOT NULL GROUP BY 1) s', truth)
		INTO lp, lc, n_labelled;
	IF n_labelled > 0 THEN
		RAISE EXCEPTION '% labels patches both changed and unchanged', truth
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('%s patch(es) have both labels.', n_labelled);
	END IF;

	-- Daily distances of the labelled patches in the year.
	SELECT array_agg(l.patch_id), array_agg(d.distance) INTO pp, pd
	FROM unnest(lp) l(patch_id)
	CROSS JOIN LATERAL rai4eo.daily_distances(l.patch_id, m, v_sensor, make_date(year, 1, 1),
											  make_date(year, 12, 31), v_tol) d;

	n_labelled := coalesce(cardinality(lp), 0);
	SELECT count(*), count(*) FILTER (WHERE l.changed) INTO n_used, n_pos
	FROM unnest(lp, lc) l(patch_id, changed)
	WHERE l.patch_id = ANY (pp);
	IF n_used < n_labelled THEN
		RAISE NOTICE '% of % labelled patches have no compared day in % and are left out', n_labelled - n_used, n_labelled, year;
	END IF;
	IF n_used = 0 THEN
		RAISE EXCEPTION 'no labelled patch has a compared day in %', year
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = format('Embed the images of both %s and %s with CALL rai4eo_refresh_embeddings(%L).', year - 1, year, m);
	END IF;
	IF n_pos = 0 OR n_pos = n_used THEN
		RAISE EXCEPTION 'the labelled patches with compared days are all %', CASE WHEN n_pos = 0 THEN 'unchanged' ELSE 'changed' END
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Precision and recall need both changed and unchanged patches.';
	END IF;

	-- Candidates: quantiles of the observed distances, each an observed value.
	levels := ARRAY(SELECT k::float8 / (candidates + 1) FROM generate_series(1, candidates) k);
	WITH pairs AS (SELECT * FROM unnest(pp, pd) u(patch_id, distance)),
	labels AS (SELECT * FROM unnest(lp, lc) u(patch_id, changed)),
	cand AS (SELECT DISTINCT unnest(percentile_disc(levels) WITHIN GROUP (ORDER BY distance)) AS t FROM pairs),
	pred AS (
		SELECT c.t, l.changed,
			   count(*) FILTER (WHERE p.distance > c.t)::float8 / count(*) > v_cut AS predicted
		FROM cand c CROSS JOIN pairs p JOIN labels l USING (patch_id)
		GROUP BY c.t, p.patch_id, l.changed),
	score AS (
		SELECT t,
			   count(*) FILTER (WHERE predicted AND changed)::integer AS tp,
			   count(*) FILTER (WHERE predicted AND NOT changed)::integer AS fp,
			   count(*) FILTER (WHERE NOT predicted AND changed)::integer AS fn,
			   count(*) FILTER (WHERE NOT predicted AND NOT changed)::integer AS tn
		FROM pred GROUP BY t)
	SELECT array_agg(t ORDER BY t), array_agg(tp ORDER BY t), array_agg(fp ORDER BY t),
		   array_agg(fn ORDER BY t), array_agg(tn ORDER BY t)
	  INTO s_t, s_tp, s_fp, s_fn, s_tn
	FROM score;

	-- Best F1; a tie picks the middle of the tied thresholds (the widest margin on
	-- both sides when they form a plateau).
	SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY u.t) INTO best
	FROM unnest(s_t, s_tp, s_fp, s_fn) u(t, tp, fp, fn)
	WHERE 2.0 * u.tp / (2 * u.tp + u.fp + u.fn) = (
		SELECT max(2.0 * v.tp / (2 * v.tp + v.fp + v.fn)) FROM unnest(s_tp, s_fp, s_fn) v(tp, fp, fn));

	IF store THEN
		UPDATE rai4eo.model SET config = jsonb_set(config, '{change_threshold}', to_jsonb(best)) WHERE name = m;
	END IF;

	RETURN QUERY
		SELECT u.t, u.tp::float8 / NULLIF(u.tp + u.fp, 0), u.tp::float8 / (u.tp + u.fn),
			   2.0::float8 * u.tp / (2 * u.tp + u.fp + u.fn), u.tp, u.fp, u.fn, u.tn, u.t = best
		FROM unnest(s_t, s_tp, s_fp, s_fn, s_tn) u(t, tp, fp, fn, tn)
		ORDER BY u.t;
END
$$;

COMMENT ON FUNCTION rai4eo_calibrate_threshold(text, integer, regclass, text, integer, float8, integer, boolean) IS
'Calibrate a model''s change threshold on labelled patches: truth is a table or view with patch_id and changed boolean. Candidate thresholds are the quantiles 1/(n+1) .. n/(n+1) (n = candidates) of the daily distances observed on those patches in the year; at each, a patch is predicted changed when its yearly change_rate is greater than rate_cut (default 0.1: a lasting change changes every later day, noise only scattered ones); one row per candidate with precision, recall, F1 and the confusion counts; the best F1 (ties: the middle one) is chosen and, when store, written to rai4eo.model.config->''change_threshold''.';

-- ---- batch embedding ----------------------------------------------------------

CREATE PROCEDURE rai4eo_refresh_embeddings(model text, sensor text DEFAULT NULL, batch_size integer DEFAULT 32,
	max_images bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
	sens text := sensor;
	batch integer := batch_size;
	cap bigint := max_images;
	m text;
	total bigint;
	embedded bigint := 0;
	skipped bigint := 0;
	failed bigint[] := '{}';
	after bigint := -1;
	sweeping boolean := false;
	lim integer;
	claimed bigint[];
	ids bigint[];
	rasts raster[];
	embs embedding[];
	one embedding;
	ok boolean;
	err text;
	n bigint;
	t0 timestamptz;
	shown timestamptz;
	rate float8;
BEGIN
	-- Batches are committed one by one, which a transaction block forbids: fail now, not after the first batch.
	COMMIT;
	m := rai4eo.resolve_model(model);
	IF (SELECT x.arch FROM rai4eo.model x WHERE x.name = m) = 'external' THEN
		RAISE EXCEPTION 'model "%" holds external embeddings: the database cannot compute them', m
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Insert its embeddings into rai4eo.embedding directly.';
	END IF;
	IF sens IS NOT NULL AND sens NOT IN ('PF-SR', 'S2-SR') THEN
		RAISE EXCEPTION 'unknown sensor "%"', sens USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Sensors are PF-SR and S2-SR, or NULL for both.';
	END IF;
	IF batch IS NULL OR batch NOT BETWEEN 1 AND 4096 THEN
		RAISE EXCEPTION 'batch_size % is out of range', batch USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'batch_size runs from 1 to 4096 images.';
	END IF;
	IF cap < 0 THEN
		RAISE EXCEPTION 'max_images must not be negative' USING ERRCODE = 'invalid_parameter_value';
	END IF;

	SELECT count(*) INTO total FROM (
		SELECT 1 FROM rai4eo.image i
		WHERE (sens IS NULL OR i.sensor = sens)
		  AND NOT EXISTS (SELECT 1 FROM rai4eo.embedding e WHERE e.image_id = i.image_id AND e.model = m)
		LIMIT cap) s;
	t0 := clock_timestamp();
	COMMIT;

	-- Pass 1 walks the images in image_id order and skips those other sessions have
	-- claimed.  Pass 2 starts over and waits for claims: it picks up images behind
	-- the cursor (claims rolled back, images loaded meanwhile) and those a refresh of
	-- another model holds, so that the procedure returns only when every image is
	-- embedded or reported.  Within one call a failed image is never tried again.
	LOOP
		lim := least(batch, cap - embedded - skipped);
		EXIT WHEN lim <= 0;
		IF NOT sweeping THEN
			SELECT array_agg(c.image_id ORDER BY c.image_id) INTO claimed FROM (
				SELECT i.image_id FROM rai4eo.image i
				WHERE i.image_id > after AND (sens IS NULL OR i.sensor = sens)
				  AND NOT EXISTS (SELECT 1 FROM rai4eo.embedding e WHERE e.image_id = i.image_id AND e.model = m)
				  AND i.image_id <> ALL (failed)
				ORDER BY i.image_id LIMIT lim
				FOR NO KEY UPDATE OF i SKIP LOCKED) c;
		ELSE
			SELECT array_agg(c.image_id ORDER BY c.image_id) INTO claimed FROM (
				SELECT i.image_id FROM rai4eo.image i
				WHERE i.image_id > after AND (sens IS NULL OR i.sensor = sens)
				  AND NOT EXISTS (SELECT 1 FROM rai4eo.embedding e WHERE e.image_id = i.image_id AND e.model = m)
				  AND i.image_id <> ALL (failed)
				ORDER BY i.image_id LIMIT lim
				FOR NO KEY UPDATE OF i) c;
		END IF;
		IF claimed IS NULL THEN
			EXIT WHEN sweeping;
			sweeping := true;
			after := -1;
			COMMIT;
			CONTINUE;
		END IF;
		after := claimed[cardinality(claimed)];

		-- A claim's snapshot predates the lock: another session may have committed
		-- embeddings of these images in between, which this fresh statement sees.
		SELECT array_agg(i.image_id ORDER BY i.image_id), array_agg(i.rast ORDER BY i.image_id) INTO ids, rasts
		FROM rai4eo.image i
		WHERE i.image_id = ANY (claimed)
		  AND NOT EXISTS (SELECT 1 FROM rai4eo.embedding e WHERE e.image_id = i.image_id AND e.model = m);

		IF ids IS NOT NULL THEN
			ok := true;
			BEGIN
				embs := rai4eo_embed(rasts, m);
				IF array_position(embs, NULL) IS NOT NULL THEN
					RAISE EXCEPTION 'rai4eo_embed returned NULL for an image';
				END IF;
				INSERT INTO rai4eo.embedding (image_id, model, emb)
				SELECT u.id, m, u.e FROM unnest(ids, embs) u(id, e)
				ON CONFLICT DO NOTHING;
				GET DIAGNOSTICS n = ROW_COUNT;
				embedded := embedded + n;
			EXCEPTION WHEN OTHERS THEN
				ok := false;
			END;
			-- Image by image, each in its own subtransaction, to find the culprits.
			IF NOT ok THEN
				FOR k IN 1 .. cardinality(ids) LOOP
					BEGIN
						one := rai4eo_embed(rasts[k], m);
						IF one IS NULL THEN
							RAISE EXCEPTION 'rai4eo_embed returned NULL' USING ERRCODE = 'null_value_not_allowed';
						END IF;
						INSERT INTO rai4eo.embedding (image_id, model, emb) VALUES (ids[k], m, one)
						ON CONFLICT DO NOTHING;
						GET DIAGNOSTICS n = ROW_COUNT;
						embedded := embedded + n;
					EXCEPTION WHEN OTHERS THEN
						GET STACKED DIAGNOSTICS err = MESSAGE_TEXT;
						RAISE WARNING 'rai4eo_refresh_embeddings: image % skipped: %', ids[k], err
							USING DETAIL = format('Image %s of patch %s, %s, acquired %s; SQLSTATE %s.', ids[k],
												  rai4eo.sample_id_of(ids[k] >> 18),
												  CASE (ids[k] >> 16) & 3 WHEN 0 THEN 'PF-SR' ELSE 'S2-SR' END,
												  date '2000-01-01' + (ids[k] & 65535)::integer, SQLSTATE);
						failed := failed || ids[k];
						skipped := skipped + 1;
					END;
				END LOOP;
			END IF;
		END IF;
		COMMIT;

		IF shown IS NULL OR clock_timestamp() - shown >= interval '10 seconds' THEN
			rate := (embedded + skipped) / greatest(extract(epoch FROM clock_timestamp() - t0), 1e-3);
			RAISE NOTICE 'rai4eo_refresh_embeddings(%): %/% images (% %%), % images/s, ETA %', m,
				embedded + skipped, total, round(100.0 * (embedded + skipped) / greatest(total, 1), 1),
				round(rate::numeric, 1),
				justify_hours(make_interval(secs => round(greatest(total - embedded - skipped, 0) / greatest(rate, 1e-9))));
			shown := clock_timestamp();
		END IF;
	END LOOP;

	RAISE NOTICE 'rai4eo_refresh_embeddings(%): finished: % embedded, % skipped, in % s', m, embedded, skipped,
		round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);
END
$$;

COMMENT ON PROCEDURE rai4eo_refresh_embeddings(text, text, integer, bigint) IS
'Embed every image (of one sensor, or both when NULL) that has no embedding under the model (NULL: rai4eo.default_model), batch_size images per batched forward pass and per commit, at most max_images; NOTICE progress (done/total, images/s, ETA) every 10 s and a summary. Images whose raster cannot be embedded get a WARNING and are skipped. Sessions running it at once share the work (claims: SELECT ... FOR NO KEY UPDATE SKIP LOCKED); only at the end does a session wait for images still claimed by others. Interrupted, it keeps every committed batch: run it again. Call it outside a transaction block.';
