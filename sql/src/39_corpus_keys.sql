-- ============================================================================
-- corpus keys: patch_id from a sample id, image_id from patch, sensor and date
-- ============================================================================

-- Before the tables: their CHECK constraints call these functions.
--
-- The one definition of the image_id layout (tools/lib/rai4eo_tools/corpus_layout.py
-- mirrors it for the Python tools):
--
--   image_id = patch_id << 24 | sensor code << 16 | days since 2000-01-01
--
-- patch_id < 2^39, code 0 .. 255 (rai4eo.sensor), days 0 .. 65535, so an image_id
-- is below 2^63.  The primary key on image_id is ordered like (patch_id, sensor,
-- acquired): the images of one patch and sensor in a date range are one index range
-- (the pairing, 52_pairing.sql, relies on it).  The small functions below are
-- inlined into their callers (CHECKs, the pairing), which a SET clause would
-- prevent: they qualify every operator instead (docs/sql-conventions.md, the
-- second exception).

-- ---- the image_id layout ------------------------------------------------------

CREATE FUNCTION rai4eo.image_id_base(patch_id bigint, sensor_code integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- Inlined (no SET clause): every operator qualified.
RETURN (patch_id OPERATOR(pg_catalog.<<) 24) OPERATOR(pg_catalog.|)
	   (sensor_code::pg_catalog.int8 OPERATOR(pg_catalog.<<) 16);

COMMENT ON FUNCTION rai4eo.image_id_base(bigint, integer) IS
'The image_id of a patch''s image of a sensor on day 0 (2000-01-01): patch_id << 24 | sensor code << 16; the images of the patch and sensor are image_id_base + days since 2000-01-01 (0 .. 65535)';

CREATE FUNCTION rai4eo.image_patch_id(image_id bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- Inlined (no SET clause): every operator qualified.
RETURN image_id OPERATOR(pg_catalog.>>) 24;

COMMENT ON FUNCTION rai4eo.image_patch_id(bigint) IS
'The patch_id an image_id encodes (image_id >> 24)';

CREATE FUNCTION rai4eo.image_sensor_code(image_id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- Inlined (no SET clause): every operator qualified.
RETURN ((image_id OPERATOR(pg_catalog.>>) 16) OPERATOR(pg_catalog.&) 255)::pg_catalog.int4;

COMMENT ON FUNCTION rai4eo.image_sensor_code(bigint) IS
'The sensor code (rai4eo.sensor.code) an image_id encodes ((image_id >> 16) & 255)';

CREATE FUNCTION rai4eo.image_acquired(image_id bigint) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- Inlined (no SET clause): every operator qualified.
RETURN '2000-01-01'::pg_catalog.date OPERATOR(pg_catalog.+)
	   (image_id OPERATOR(pg_catalog.&) 65535)::pg_catalog.int4;

COMMENT ON FUNCTION rai4eo.image_acquired(bigint) IS
'The acquisition date an image_id encodes (2000-01-01 + (image_id & 65535) days)';

CREATE FUNCTION rai4eo.image_id_of(patch_id bigint, sensor_code integer, acquired date) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	days int := acquired - date '2000-01-01';
BEGIN
	IF sensor_code < 0 OR sensor_code > 255 THEN
		RAISE EXCEPTION 'sensor code % out of range', sensor_code
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Sensor codes run from 0 to 255.';
	END IF;
	IF days < 0 OR days > 65535 THEN
		RAISE EXCEPTION 'acquisition date % out of range', acquired
			USING ERRCODE = 'datetime_field_overflow', HINT = 'Dates run from 2000-01-01 to 2179-06-06.';
	END IF;
	IF patch_id < 0 OR patch_id >= (1::bigint << 39) THEN
		RAISE EXCEPTION 'patch_id % out of range', patch_id USING ERRCODE = 'numeric_value_out_of_range';
	END IF;
	RETURN rai4eo.image_id_base(patch_id, sensor_code) | days;
END
$$;

COMMENT ON FUNCTION rai4eo.image_id_of(bigint, integer, date) IS
'image_id of a patch''s image by sensor code: patch_id << 24 | sensor code << 16 | days since 2000-01-01; patch_id 0 .. 2^39 - 1 (22003 outside), code 0 .. 255 (22023), dates 2000-01-01 .. 2179-06-06 (22008)';

-- ---- sensors ----------------------------------------------------------------------

CREATE FUNCTION rai4eo.sensor_code(sensor text) RETURNS integer
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c integer;
BEGIN
	IF sensor IS NULL THEN
		RAISE EXCEPTION 'sensor must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT s.code INTO c FROM rai4eo.sensor s WHERE s.name = sensor;
	IF c IS NULL THEN
		RAISE EXCEPTION 'unknown sensor "%"', sensor USING ERRCODE = 'invalid_parameter_value',
			HINT = format('Registered sensors: %s; register one with rai4eo_register_sensor().',
						  (SELECT string_agg(s.name, ', ' ORDER BY s.code) FROM rai4eo.sensor s));
	END IF;
	RETURN c;
END
$$;

COMMENT ON FUNCTION rai4eo.sensor_code(text) IS
'The code of a registered sensor (rai4eo.sensor.code); NULL: 22004, not registered: 22023 naming the registered ones';

CREATE FUNCTION rai4eo.image_id_of(patch_id bigint, sensor text, acquired date) RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN rai4eo.image_id_of(patch_id, rai4eo.sensor_code(sensor), acquired);

COMMENT ON FUNCTION rai4eo.image_id_of(bigint, text, date) IS
'image_id of a patch''s image: patch_id << 24 | sensor code << 16 | days since 2000-01-01, the code from the registry rai4eo.sensor (PF-SR 0, S2-SR 1); patch_id = rai4eo.image_patch_id(image_id)';

-- ---- patch ids --------------------------------------------------------------------
--
-- RapidAI4EO sample ids map to patch_ids from 2^33 up (the zone field is 1 .. 60):
-- ((((zone*2 + hemi)*1024 + E)*1024 + N)*64 + col)*64 + row.  Any other id the user
-- chooses ('tile_12_34', 'field-0042') maps to a stable hash below 2^33: the first 33
-- bits of its MD5 (of the UTF-8 text in a UTF-8 database), so the two ranges never
-- meet and every loader derives the same id without coordination (Citus-ready).  Two
-- own ids can share a hash (about n^2 / 2^34 for n own ids: 1 % at 13,000); the
-- patch's primary key refuses the second one (23505) and the user renames it.

CREATE FUNCTION rai4eo.patch_id_of(sample_id text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m text[];
	e int;
	n int;
BEGIN
	m := regexp_match(sample_id,
		'^([1-9]|[1-5][0-9]|60)([NS])_(0|[1-9][0-9]{0,3})E-(0|[1-9][0-9]{0,3})N_([0-3][0-9])_([0-3][0-9])$');
	IF m IS NOT NULL THEN
		e := m[3]::int;
		n := m[4]::int;
	END IF;
	IF m IS NULL AND sample_id !~ '^[0-9]+[NS]_[0-9]+E-[0-9]+N_[0-9]+_[0-9]+$' THEN
		-- The user's own id.
		IF length(sample_id) NOT BETWEEN 1 AND 200 OR sample_id ~ '[[:cntrl:]]'
		   OR sample_id <> btrim(sample_id) THEN
			RAISE EXCEPTION 'invalid patch id "%"', sample_id
				USING ERRCODE = 'invalid_text_representation',
					  HINT = 'An own patch id has 1 to 200 characters, no control characters and no leading or trailing spaces.';
		END IF;
		RETURN ('x' || substr(md5(sample_id), 1, 9))::bit(36)::bigint & ((1::bigint << 33) - 1);
	END IF;
	IF m IS NULL OR e > 1023 OR n > 1023 THEN
		RAISE EXCEPTION 'invalid sample id "%"', sample_id
			USING ERRCODE = 'invalid_text_representation',
				  HINT = 'A sample id is {zone}{N|S}_{E}E-{N}N_{col}_{row} with zone 1-60, E and N 0-1023 without leading zeros, col and row 00-39, e.g. 33N_16E-243N_39_05.';
	END IF;
	RETURN (((((m[1]::int * 2 + CASE m[2] WHEN 'N' THEN 0 ELSE 1 END)::bigint * 1024 + e)
			 * 1024 + n) * 64 + m[5]::int) * 64 + m[6]::int);
END
$$;

COMMENT ON FUNCTION rai4eo.patch_id_of(text) IS
'patch_id of a sample id. A RapidAI4EO id {zone}{N|S}_{E}E-{N}N_{col}_{row}: ((((zone*2 + hemi)*1024 + E)*1024 + N)*64 + col)*64 + row with hemi 0 for N, 1 for S, from 2^33 to below 2^39; an id shaped like one but out of range: 22P02. Any other id (the user''s own, 1 to 200 characters): the first 33 bits of md5(id), below 2^33';

CREATE FUNCTION rai4eo.sample_id_of(patch_id bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN patch_id >= (1::bigint << 33) THEN
	format('%s%s_%sE-%sN_%s_%s',
		   patch_id >> 33,
		   CASE (patch_id >> 32) & 1 WHEN 0 THEN 'N' ELSE 'S' END,
		   (patch_id >> 22) & 1023,
		   (patch_id >> 12) & 1023,
		   lpad(((patch_id >> 6) & 63)::text, 2, '0'),
		   lpad((patch_id & 63)::text, 2, '0')) END;

COMMENT ON FUNCTION rai4eo.sample_id_of(bigint) IS
'RapidAI4EO sample id of a patch_id: the inverse of rai4eo.patch_id_of; NULL for a hashed own id (below 2^33: read rai4eo.patch.sample_id)';
