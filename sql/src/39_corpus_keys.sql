-- ============================================================================
-- corpus keys: patch_id and image_id derived from sample id, sensor and date
-- ============================================================================

-- Before the tables: their CHECK constraints call these functions.

-- ---- identifiers ------------------------------------------------------------

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
'patch_id of a RapidAI4EO sample id {zone}{N|S}_{E}E-{N}N_{col}_{row}: ((((zone*2 + hemi)*1024 + E)*1024 + N)*64 + col)*64 + row with hemi 0 for N, 1 for S; unique for valid ids, below 2^39';

CREATE FUNCTION rai4eo.sample_id_of(patch_id bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN format('%s%s_%sE-%sN_%s_%s',
			  patch_id >> 33,
			  CASE (patch_id >> 32) & 1 WHEN 0 THEN 'N' ELSE 'S' END,
			  (patch_id >> 22) & 1023,
			  (patch_id >> 12) & 1023,
			  lpad(((patch_id >> 6) & 63)::text, 2, '0'),
			  lpad((patch_id & 63)::text, 2, '0'));

COMMENT ON FUNCTION rai4eo.sample_id_of(bigint) IS
'Sample id of a patch_id: the inverse of rai4eo.patch_id_of';

CREATE FUNCTION rai4eo.image_id_of(patch_id bigint, sensor text, acquired date) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	days int := acquired - date '2000-01-01';
	code int := CASE sensor WHEN 'PF-SR' THEN 0 WHEN 'S2-SR' THEN 1 END;
BEGIN
	IF code IS NULL THEN
		RAISE EXCEPTION 'unknown sensor "%"', sensor
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Sensors are PF-SR and S2-SR.';
	END IF;
	IF days < 0 OR days > 65535 THEN
		RAISE EXCEPTION 'acquisition date % out of range', acquired
			USING ERRCODE = 'datetime_field_overflow', HINT = 'Dates run from 2000-01-01 to 2179-06-06.';
	END IF;
	IF patch_id < 0 OR patch_id >= (1::bigint << 39) THEN
		RAISE EXCEPTION 'patch_id % out of range', patch_id USING ERRCODE = 'numeric_value_out_of_range';
	END IF;
	RETURN (patch_id << 18) | (code::bigint << 16) | days;
END
$$;

COMMENT ON FUNCTION rai4eo.image_id_of(bigint, text, date) IS
'image_id of a patch''s image: patch_id * 2^18 + sensor code * 2^16 + days since 2000-01-01, with sensor code 0 for PF-SR and 1 for S2-SR; patch_id = image_id >> 18';
