-- ============================================================================
-- sensor registry: registering a sensor
-- ============================================================================

-- The table is rai4eo.sensor (40_corpus.sql).  Registering checks what the table's
-- CHECKs would refuse with XX-free, specific errors first, and takes the smallest
-- free code unless one is asked for.

CREATE FUNCTION @extschema@.rai4eo_register_sensor(name text, bands text[], resolution real,
	wavelengths real[] DEFAULT NULL, cadence real DEFAULT NULL, pixel_scale float8 DEFAULT 1,
	pixel_offset float8 DEFAULT 0, description text DEFAULT NULL, code integer DEFAULT NULL)
RETURNS smallint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c integer := code;
	other text;
BEGIN
	IF NOT has_table_privilege('rai4eo.sensor', 'INSERT') THEN
		RAISE EXCEPTION 'permission denied to register sensors' USING ERRCODE = 'insufficient_privilege',
			HINT = 'The owner of rai4eo.sensor can grant INSERT on it.';
	END IF;
	IF name IS NULL OR bands IS NULL OR resolution IS NULL THEN
		RAISE EXCEPTION 'a sensor needs a name, bands and a resolution' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid sensor name "%"', name USING ERRCODE = 'invalid_parameter_value',
			HINT = 'A sensor name has 1 to 63 letters, digits, _ . + -, starting with a letter or digit (e.g. L7-ETM+ or S2-L2A).';
	END IF;
	IF array_ndims(bands) IS DISTINCT FROM 1 OR cardinality(bands) > 1000 THEN
		RAISE EXCEPTION 'bands must list 1 to 1000 band names' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF array_position(bands, NULL) IS NOT NULL OR EXISTS (SELECT 1 FROM unnest(bands) b WHERE b !~ '\S') THEN
		RAISE EXCEPTION 'band names must not be NULL or blank' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF (SELECT count(DISTINCT b) FROM unnest(bands) b) <> cardinality(bands) THEN
		RAISE EXCEPTION 'band names must differ: %', bands USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF wavelengths IS NOT NULL THEN
		IF array_ndims(wavelengths) IS DISTINCT FROM 1 OR cardinality(wavelengths) <> cardinality(bands) THEN
			RAISE EXCEPTION '% wavelengths for % bands', coalesce(cardinality(wavelengths), 0), cardinality(bands)
				USING ERRCODE = 'invalid_parameter_value', HINT = 'Give one centre wavelength (nm) per band, NULL for a band that is not spectral.';
		END IF;
		IF EXISTS (SELECT 1 FROM unnest(wavelengths) w WHERE NOT (w > 0 AND w < 1e9)) THEN
			RAISE EXCEPTION 'wavelengths must be positive nanometres: %', wavelengths USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	IF NOT (resolution > 0 AND resolution < 'Infinity') THEN
		RAISE EXCEPTION 'resolution % is not a positive number of metres', resolution USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT (cadence > 0 AND cadence < 'Infinity') THEN
		RAISE EXCEPTION 'cadence % is not a positive number of days', cadence USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF pixel_scale IS NULL OR pixel_offset IS NULL OR pixel_scale = 0 OR pixel_scale IN ('Infinity', '-Infinity', 'NaN')
	   OR pixel_offset IN ('Infinity', '-Infinity', 'NaN') THEN
		RAISE EXCEPTION 'pixel_scale % and pixel_offset % must be finite, the scale non-zero', pixel_scale, pixel_offset
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- Codes are handed out under a lock so that two sessions never take the same one.
	LOCK TABLE rai4eo.sensor IN SHARE ROW EXCLUSIVE MODE;
	IF EXISTS (SELECT 1 FROM rai4eo.sensor s WHERE s.name = rai4eo_register_sensor.name) THEN
		RAISE EXCEPTION 'sensor "%" is already registered', name USING ERRCODE = 'unique_violation';
	END IF;
	IF c IS NULL THEN
		SELECT min(g) INTO c FROM generate_series(0, 255) g
		WHERE NOT EXISTS (SELECT 1 FROM rai4eo.sensor s WHERE s.code = g);
		IF c IS NULL THEN
			RAISE EXCEPTION 'all 256 sensor codes are in use' USING ERRCODE = 'program_limit_exceeded';
		END IF;
	ELSIF c NOT BETWEEN 0 AND 255 THEN
		RAISE EXCEPTION 'sensor code % out of range', c USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Sensor codes run from 0 to 255.';
	ELSE
		SELECT s.name INTO other FROM rai4eo.sensor s WHERE s.code = c;
		IF other IS NOT NULL THEN
			RAISE EXCEPTION 'sensor code % is taken by "%"', c, other USING ERRCODE = 'unique_violation';
		END IF;
	END IF;
	INSERT INTO rai4eo.sensor (name, code, band_names, wavelengths, resolution, cadence, pixel_scale, pixel_offset, description)
	VALUES (name, c, bands, wavelengths, resolution, cadence, pixel_scale, pixel_offset, description);
	RETURN c;
END
$$;

COMMENT ON FUNCTION @extschema@.rai4eo_register_sensor(text, text[], real, real[], real, float8, float8, text, integer) IS
'Register a sensor in rai4eo.sensor and return its code (the smallest free one unless code is given): bands are band names in raster band order, wavelengths centre wavelengths in nm (one per band, NULL elements allowed), resolution metres, cadence days, value = DN * pixel_scale + pixel_offset. Errors: a name or code taken 23505; bad name, bands, wavelengths, resolution, cadence or scale 22023; NULL name, bands or resolution 22004; no free code 54000; no INSERT privilege on rai4eo.sensor 42501';

CREATE FUNCTION rai4eo.sensor_of(sensor_code integer) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN (SELECT s.name FROM rai4eo.sensor s WHERE s.code = sensor_code);

COMMENT ON FUNCTION rai4eo.sensor_of(integer) IS
'The name of the registered sensor with this code (NULL when none): with rai4eo.image_sensor_code(image_id), the sensor of an image_id';
