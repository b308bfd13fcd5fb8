-- The hand-written part of the upgrade from 0.2.0 to 0.3.0: what changes in the state
-- fragments (tables, indexes, constraints, back-fills), and DROPs of code objects whose
-- shape changed.  Every code fragment of sql/src follows it in the generated script
-- (docs/upgrades.md).

-- ---- sensor (issue 15): the sensor registry; image_id = patch_id << 24 | code << 16 | days ----
--
-- 0.2.0 packed image_id as patch_id << 18 | code << 16 | days (codes 0, 1: PF-SR, S2-SR).
-- 0.3.0 gives the sensor code 8 bits, so every image and embedding is renumbered:
-- new = (old >> 18) << 24 | (old & 262143), which keeps the code and the days.  No new id
-- can meet an old one during the UPDATE (that needs patch_id 0, which no 0.2.0 patch has:
-- RapidAI4EO ids start at 2^33), so the primary keys stay checked row by row.

CREATE TABLE rai4eo.sensor (
	name text PRIMARY KEY,
	code smallint NOT NULL,
	band_names text[] NOT NULL,
	wavelengths real[],
	resolution real NOT NULL,
	cadence real,
	pixel_scale float8 NOT NULL DEFAULT 1,
	pixel_offset float8 NOT NULL DEFAULT 0,
	description text,
	CONSTRAINT sensor_code_key UNIQUE (code),
	CONSTRAINT sensor_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$'),
	CONSTRAINT sensor_code_check CHECK (code BETWEEN 0 AND 255),
	CONSTRAINT sensor_bands_check CHECK (array_ndims(band_names) = 1 AND cardinality(band_names) BETWEEN 1 AND 1000
		AND array_position(band_names, NULL) IS NULL),
	CONSTRAINT sensor_wavelengths_check CHECK (array_ndims(wavelengths) = 1
		AND cardinality(wavelengths) = cardinality(band_names)),
	CONSTRAINT sensor_resolution_check CHECK (resolution > 0 AND resolution < 'Infinity'),
	CONSTRAINT sensor_cadence_check CHECK (cadence > 0 AND cadence < 'Infinity'),
	CONSTRAINT sensor_scale_check CHECK (pixel_scale <> 0 AND pixel_scale > '-Infinity' AND pixel_scale < 'Infinity'
		AND pixel_offset > '-Infinity' AND pixel_offset < 'Infinity')
);

COMMENT ON TABLE rai4eo.sensor IS
'The sensors images come from: name, code (inside image_id), bands, resolution, cadence and pixel scale; register one with rai4eo_register_sensor()';
COMMENT ON COLUMN rai4eo.sensor.name IS 'Sensor name as rai4eo.image.sensor holds it, e.g. PF-SR';
COMMENT ON COLUMN rai4eo.sensor.code IS
'0 .. 255, the sensor''s bits in image_id (image_id = patch_id << 24 | code << 16 | days); never changes once images use it';
COMMENT ON COLUMN rai4eo.sensor.band_names IS 'Band names in raster band order (band 1 first)';
COMMENT ON COLUMN rai4eo.sensor.wavelengths IS
'Centre wavelength of each band in nm, in band order; NULL for the whole sensor or an element NULL for a band that is not spectral (e.g. an embedding product)';
COMMENT ON COLUMN rai4eo.sensor.resolution IS 'Ground sampling distance of the stored pixels, metres';
COMMENT ON COLUMN rai4eo.sensor.cadence IS 'Nominal days between acquisitions (NULL: irregular)';
COMMENT ON COLUMN rai4eo.sensor.pixel_scale IS 'Reflectance (or physical value) = DN * pixel_scale + pixel_offset';
COMMENT ON COLUMN rai4eo.sensor.pixel_offset IS 'Reflectance (or physical value) = DN * pixel_scale + pixel_offset';
COMMENT ON COLUMN rai4eo.sensor.description IS 'Free text: the product and its source';

-- The two sensors of the RapidAI4EO corpus (its data description; tools/synth writes these
-- bands).  PF-SR: Planet Fusion surface reflectance, PlanetScope-derived 4 bands at 3 m,
-- a daily product of which the corpus keeps every 5th day.  S2-SR: Sentinel-2 L2A
-- monthly composites, 12 bands resampled to 10 m (S2A centre wavelengths).
INSERT INTO rai4eo.sensor (name, code, band_names, wavelengths, resolution, cadence, pixel_scale, pixel_offset, description)
VALUES
	('PF-SR', 0, '{blue,green,red,nir}', '{485,545,630,820}', 3, 5, 1e-4, 0,
	 'Planet Fusion surface reflectance (RapidAI4EO): daily, 200 x 200 px patches at 3 m, every 5th day kept; uint16 reflectance x 10000'),
	('S2-SR', 1, '{B02,B03,B04,B08,B05,B06,B07,B8A,B11,B12,B01,B09}',
	 '{492.4,559.8,664.6,832.8,704.1,740.5,782.8,864.7,1613.7,2202.4,442.7,945.1}', 10, 30, 1e-4, 0,
	 'Sentinel-2 L2A monthly composites (RapidAI4EO): 60 x 60 px patches resampled to 10 m, dated the first of the month; uint16 reflectance x 10000');

SELECT pg_catalog.pg_extension_config_dump('rai4eo.sensor', 'WHERE code > 1');
GRANT SELECT ON rai4eo.sensor TO PUBLIC;

-- The layout functions the new constraints call: the same as 39_corpus_keys.sql, which
-- replaces them (CREATE OR REPLACE) further down this script.
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

ALTER TABLE rai4eo.embedding DROP CONSTRAINT embedding_image_fkey,
	DROP CONSTRAINT embedding_patch_id_of_image;
ALTER TABLE rai4eo.image DROP CONSTRAINT image_sensor_check, DROP CONSTRAINT image_id_from_key;

UPDATE rai4eo.image SET image_id = ((image_id >> 18) << 24) | (image_id & 262143);
UPDATE rai4eo.embedding SET image_id = ((image_id >> 18) << 24) | (image_id & 262143);

ALTER TABLE rai4eo.image
	ADD CONSTRAINT image_sensor_fkey FOREIGN KEY (sensor) REFERENCES rai4eo.sensor (name),
	ADD CONSTRAINT image_id_from_key CHECK (image_id = rai4eo.image_id_of(patch_id, rai4eo.image_sensor_code(image_id), acquired));
ALTER TABLE rai4eo.embedding
	ADD CONSTRAINT embedding_patch_id_of_image CHECK (patch_id = rai4eo.image_patch_id(image_id)),
	ADD CONSTRAINT embedding_image_fkey FOREIGN KEY (image_id, patch_id)
		REFERENCES rai4eo.image (image_id, patch_id) ON DELETE CASCADE;

COMMENT ON TABLE rai4eo.patch IS
'One patch: a RapidAI4EO 600 m sample location, or a tile of the user''s own grid (tools/load --scene: any size, the scene''s CRS)';
COMMENT ON COLUMN rai4eo.patch.sample_id IS
'RapidAI4EO sample id {zone}{N|S}_{E}E-{N}N_{col}_{row}, e.g. 33N_16E-243N_39_05 (24 km tile E, N; 600 m patch col, row), or the user''s own id (e.g. tile_12_34; patch_id a hash below 2^33, rai4eo.patch_id_of)';
COMMENT ON COLUMN rai4eo.patch.geom IS
'Footprint in the images'' native CRS (RapidAI4EO: UTM, SRID 326zz/327zz; own grids: the scene''s CRS); CRSs differ between patches, so the column has no SRID typmod';
COMMENT ON TABLE rai4eo.image IS
'One image of a patch by a registered sensor (rai4eo.sensor): e.g. Planet Fusion (PF-SR, 4 bands BGRN, 200 x 200 px at 3 m, every 5 days) or Sentinel-2 (S2-SR, 12 bands, 60 x 60 px at 10 m, monthly)';
COMMENT ON COLUMN rai4eo.image.patch_id IS 'The patch (rai4eo.image_patch_id(image_id), image_id >> 24)';
COMMENT ON COLUMN rai4eo.image.sensor IS
'A registered sensor (rai4eo.sensor.name), e.g. PF-SR (Planet Fusion surface reflectance) or S2-SR (Sentinel-2 L2A monthly composite)';
COMMENT ON COLUMN rai4eo.image.rast IS
'The pixels, in-db or out-db (a GeoTIFF path on the server), bands as the sensor''s band_names; value = DN * pixel_scale + pixel_offset of the sensor (PF-SR and S2-SR: uint16 surface reflectance x 10000)';
COMMENT ON COLUMN rai4eo.embedding.image_id IS 'The image (its patch is rai4eo.image_patch_id(image_id))';
COMMENT ON COLUMN rai4eo.embedding.patch_id IS 'The image''s patch, rai4eo.image_patch_id(image_id) (CHECKed): the distribution key';
-- ---- end of sensor (issue 15)

-- citus (issue 13, the change products on Citus): the per-patch helper rai4eo.patch_series is
-- gone (rai4eo.patch_series_of pairs a set of patches in one query); the view
-- rai4eo.patch_change, which called it, is dropped first and re-created by 66_qgis.sql.
DROP VIEW IF EXISTS rai4eo.patch_change;
DROP FUNCTION IF EXISTS rai4eo.patch_series(bigint, text, text, date, date, integer, float8, @extschema@.embedding[], boolean);

-- day series (issue 12, the scores' cost): rai4eo.patch_series_of pairs each patch in one
-- range scan through the aggregate rai4eo.day_series, whose result type is new
-- (51_day_series_type.sql, a state fragment).
CREATE TYPE rai4eo.day_series AS (
	days_compared integer,
	days_changed integer,
	mean_distance float8,
	days date[],
	distances float8[],
	state_changes float8[],
	composite float8[]
);

COMMENT ON TYPE rai4eo.day_series IS
'One patch''s pairs in date order (rai4eo.day_series aggregate): days compared, days changed (distance > t), mean distance, dates, distances, the 0/1 series "state differs from the partner''s" (NULL without centres), the composites {annual, seasonal, zscore} (NULL unless asked)';

-- step score (issue 12): rai4eo.patch_scores returns the new step column, so the 0.2.0
-- function (its return type) is dropped and re-created by 56_score.sql.  Nothing in the
-- catalog depends on it (yearly_change calls it from PL/pgSQL).
DROP FUNCTION IF EXISTS rai4eo.patch_scores(geometry, integer, integer, text, text, integer, float8, float8,
	integer, boolean, @extschema@.embedding[]);
