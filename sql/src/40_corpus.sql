-- ============================================================================
-- corpus: patches, images, embeddings and CORINE Land Cover labels
-- ============================================================================
--
-- Every key is derived from the sample id (RapidAI4EO's or the user's own), never
-- drawn from a sequence, so loaders need no coordination and the tables can be distributed
-- by patch_id (Citus, sql/src/90_citus.sql): patch, patch_clc, image and
-- embedding rows of one patch share it, every unique key and foreign key
-- between them includes it (Citus refuses any other), and the only other
-- foreign keys point at small reference tables (model, clc_class, sensor).  image_id
-- stays the leading key column: the pairing's range scans over one patch's
-- images are one index range.

-- ---- patches ----------------------------------------------------------------

CREATE TABLE rai4eo.patch (
	patch_id bigint PRIMARY KEY,
	sample_id text NOT NULL,
	geom geometry(Polygon) NOT NULL,
	country text,
	CONSTRAINT patch_id_from_sample_id CHECK (patch_id = rai4eo.patch_id_of(sample_id)),
	CONSTRAINT patch_geom_has_srid CHECK (ST_SRID(geom) <> 0),
	-- patch_id is a function of sample_id, so this is UNIQUE (sample_id) in a form
	-- Citus accepts (the distribution column in every unique key).
	CONSTRAINT patch_sample_id_key UNIQUE (sample_id, patch_id)
);

CREATE INDEX patch_geom_idx ON rai4eo.patch USING gist (geom);
-- The change functions transform an AOI into each SRID of the patches: this index
-- lists the SRIDs without reading the table (rai4eo.patch_srids, 50_aoi.sql).
CREATE INDEX patch_srid_idx ON rai4eo.patch (ST_SRID(geom));

COMMENT ON TABLE rai4eo.patch IS
'One patch: a RapidAI4EO 600 m sample location, or a tile of the user''s own grid (tools/load --scene: any size, the scene''s CRS)';
COMMENT ON COLUMN rai4eo.patch.patch_id IS
'rai4eo.patch_id_of(sample_id): derived, never from a sequence; the distribution key';
COMMENT ON COLUMN rai4eo.patch.sample_id IS
'RapidAI4EO sample id {zone}{N|S}_{E}E-{N}N_{col}_{row}, e.g. 33N_16E-243N_39_05 (24 km tile E, N; 600 m patch col, row), or the user''s own id (e.g. tile_12_34; patch_id a hash below 2^33, rai4eo.patch_id_of)';
COMMENT ON COLUMN rai4eo.patch.geom IS
'Footprint in the images'' native CRS (RapidAI4EO: UTM, SRID 326zz/327zz; own grids: the scene''s CRS); CRSs differ between patches, so the column has no SRID typmod';
COMMENT ON COLUMN rai4eo.patch.country IS
'ISO 3166-1 alpha-2 code from the label file when it has one, else NULL';

-- ---- sensors ----------------------------------------------------------------
--
-- The registry of what images can come from.  code is the small integer inside
-- image_id (39_corpus_keys.sql), so a sensor's name and code never change once
-- images use it (the foreign key from rai4eo.image keeps a used sensor).  Functions
-- that work per sensor read their band count and pixel scale here.

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

-- ---- images -----------------------------------------------------------------

CREATE TABLE rai4eo.image (
	image_id bigint NOT NULL,
	patch_id bigint NOT NULL REFERENCES rai4eo.patch ON DELETE CASCADE,
	sensor text NOT NULL,
	acquired date NOT NULL,
	rast raster NOT NULL,
	CONSTRAINT image_sensor_fkey FOREIGN KEY (sensor) REFERENCES rai4eo.sensor (name),
	CONSTRAINT image_key UNIQUE (patch_id, sensor, acquired),
	-- The patch and date parts of image_id; its sensor code is written from the
	-- registry by every insert path (rai4eo.image_id_of, image_input, tools/load): a
	-- CHECK cannot read the registry.
	CONSTRAINT image_id_from_key CHECK (image_id = rai4eo.image_id_of(patch_id, rai4eo.image_sensor_code(image_id), acquired)),
	-- image_id alone is unique (it encodes patch_id); patch_id is in the key for Citus.
	CONSTRAINT image_pkey PRIMARY KEY (image_id, patch_id)
);

-- Reflectance pixels hardly compress with pglz, so trying only costs time: out of line
-- without compression loads about twice as fast (tools/load, bench/load_bench.py), reads
-- need no decompression, and header reads can fetch just the first TOAST chunk.
ALTER TABLE rai4eo.image ALTER COLUMN rast SET STORAGE EXTERNAL;

-- Daily maps read one date of one sensor across many patches.
CREATE INDEX image_sensor_acquired_idx ON rai4eo.image (sensor, acquired);

COMMENT ON TABLE rai4eo.image IS
'One image of a patch by a registered sensor (rai4eo.sensor): e.g. Planet Fusion (PF-SR, 4 bands BGRN, 200 x 200 px at 3 m, every 5 days) or Sentinel-2 (S2-SR, 12 bands, 60 x 60 px at 10 m, monthly)';
COMMENT ON COLUMN rai4eo.image.image_id IS
'rai4eo.image_id_of(patch_id, sensor, acquired): derived, never from a sequence';
COMMENT ON COLUMN rai4eo.image.patch_id IS 'The patch (rai4eo.image_patch_id(image_id), image_id >> 24)';
COMMENT ON COLUMN rai4eo.image.sensor IS
'A registered sensor (rai4eo.sensor.name), e.g. PF-SR (Planet Fusion surface reflectance) or S2-SR (Sentinel-2 L2A monthly composite)';
COMMENT ON COLUMN rai4eo.image.acquired IS
'Acquisition date; the first day of the month for S2-SR monthly composites';
COMMENT ON COLUMN rai4eo.image.rast IS
'The pixels, in-db or out-db (a GeoTIFF path on the server), bands as the sensor''s band_names; value = DN * pixel_scale + pixel_offset of the sensor (PF-SR and S2-SR: uint16 surface reflectance x 10000)';

-- ---- embeddings -------------------------------------------------------------

CREATE TABLE rai4eo.embedding (
	image_id bigint NOT NULL,
	-- The image's patch, stored so that the table can be distributed like the others;
	-- writers set it to rai4eo.image_patch_id(image_id).
	patch_id bigint NOT NULL,
	model text NOT NULL REFERENCES rai4eo.model (name) ON DELETE CASCADE ON UPDATE CASCADE,
	emb @extschema@.embedding NOT NULL,
	CONSTRAINT embedding_patch_id_of_image CHECK (patch_id = rai4eo.image_patch_id(image_id)),
	CONSTRAINT embedding_pkey PRIMARY KEY (image_id, model, patch_id),
	CONSTRAINT embedding_image_fkey FOREIGN KEY (image_id, patch_id)
		REFERENCES rai4eo.image (image_id, patch_id) ON DELETE CASCADE
);

-- Dropping a model cascades here, and refreshes scan one model's embeddings.
CREATE INDEX embedding_model_idx ON rai4eo.embedding (model);

COMMENT ON TABLE rai4eo.embedding IS 'The embedding of an image under a model';
COMMENT ON COLUMN rai4eo.embedding.image_id IS 'The image (its patch is rai4eo.image_patch_id(image_id))';
COMMENT ON COLUMN rai4eo.embedding.patch_id IS 'The image''s patch, rai4eo.image_patch_id(image_id) (CHECKed): the distribution key';
COMMENT ON COLUMN rai4eo.embedding.model IS 'The model (rai4eo.model.name) that produced it';
COMMENT ON COLUMN rai4eo.embedding.emb IS 'The feature vector';

-- ---- CORINE Land Cover classes ----------------------------------------------

CREATE TABLE rai4eo.clc_class (
	code smallint PRIMARY KEY,
	name text NOT NULL,
	level2 smallint NOT NULL,
	level2_name text NOT NULL,
	level1 smallint NOT NULL,
	level1_name text NOT NULL,
	class7 text NOT NULL CHECK (class7 IN ('artificial', 'agricultural', 'forest', 'shrub', 'bare', 'wetlands', 'water')),
	CHECK (level2 = code / 10 AND level1 = code / 100)
);

COMMENT ON TABLE rai4eo.clc_class IS
'The 44 CORINE Land Cover level-3 classes with their level-2 and level-1 groups and the seven coarse classes of the RapidAI4EO BYOL poster';
COMMENT ON COLUMN rai4eo.clc_class.code IS 'CLC level-3 code (111 .. 523); label files name it clc_<code>';
COMMENT ON COLUMN rai4eo.clc_class.name IS 'Official EEA level-3 name';
COMMENT ON COLUMN rai4eo.clc_class.level2 IS 'CLC level-2 code (code / 10)';
COMMENT ON COLUMN rai4eo.clc_class.level1 IS 'CLC level-1 code (code / 100)';
COMMENT ON COLUMN rai4eo.clc_class.class7 IS
'Seven coarse classes: 1xx artificial; 2xx agricultural (243, 244 included); 311-313 forest; 321-324 shrub (324 transitional woodland-shrub included); 331-335 bare (335 glaciers included); 4xx wetlands; 5xx water';

INSERT INTO rai4eo.clc_class (code, name, level2, level2_name, level1, level1_name, class7)
SELECT c.code, c.name, c.code / 10, l2.name, c.code / 100, l1.name,
	   CASE
		   WHEN c.code / 100 = 1 THEN 'artificial'
		   WHEN c.code / 100 = 2 THEN 'agricultural'
		   WHEN c.code / 10 = 31 THEN 'forest'
		   WHEN c.code / 10 = 32 THEN 'shrub'
		   WHEN c.code / 10 = 33 THEN 'bare'
		   WHEN c.code / 100 = 4 THEN 'wetlands'
		   ELSE 'water'
	   END
FROM (VALUES
	(111::smallint, 'Continuous urban fabric'),
	(112, 'Discontinuous urban fabric'),
	(121, 'Industrial or commercial units'),
	(122, 'Road and rail networks and associated land'),
	(123, 'Port areas'),
	(124, 'Airports'),
	(131, 'Mineral extraction sites'),
	(132, 'Dump sites'),
	(133, 'Construction sites'),
	(141, 'Green urban areas'),
	(142, 'Sport and leisure facilities'),
	(211, 'Non-irrigated arable land'),
	(212, 'Permanently irrigated land'),
	(213, 'Rice fields'),
	(221, 'Vineyards'),
	(222, 'Fruit trees and berry plantations'),
	(223, 'Olive groves'),
	(231, 'Pastures'),
	(241, 'Annual crops associated with permanent crops'),
	(242, 'Complex cultivation patterns'),
	(243, 'Land principally occupied by agriculture, with significant areas of natural vegetation'),
	(244, 'Agro-forestry areas'),
	(311, 'Broad-leaved forest'),
	(312, 'Coniferous forest'),
	(313, 'Mixed forest'),
	(321, 'Natural grasslands'),
	(322, 'Moors and heathland'),
	(323, 'Sclerophyllous vegetation'),
	(324, 'Transitional woodland-shrub'),
	(331, 'Beaches, dunes, sands'),
	(332, 'Bare rocks'),
	(333, 'Sparsely vegetated areas'),
	(334, 'Burnt areas'),
	(335, 'Glaciers and perpetual snow'),
	(411, 'Inland marshes'),
	(412, 'Peat bogs'),
	(421, 'Salt marshes'),
	(422, 'Salines'),
	(423, 'Intertidal flats'),
	(511, 'Water courses'),
	(512, 'Water bodies'),
	(521, 'Coastal lagoons'),
	(522, 'Estuaries'),
	(523, 'Sea and ocean')) AS c(code, name)
JOIN (VALUES
	(11, 'Urban fabric'),
	(12, 'Industrial, commercial and transport units'),
	(13, 'Mine, dump and construction sites'),
	(14, 'Artificial, non-agricultural vegetated areas'),
	(21, 'Arable land'),
	(22, 'Permanent crops'),
	(23, 'Pastures'),
	(24, 'Heterogeneous agricultural areas'),
	(31, 'Forests'),
	(32, 'Scrub and/or herbaceous vegetation associations'),
	(33, 'Open spaces with little or no vegetation'),
	(41, 'Inland wetlands'),
	(42, 'Maritime wetlands'),
	(51, 'Inland waters'),
	(52, 'Marine waters')) AS l2(code, name) ON l2.code = c.code / 10
JOIN (VALUES
	(1, 'Artificial surfaces'),
	(2, 'Agricultural areas'),
	(3, 'Forest and semi-natural areas'),
	(4, 'Wetlands'),
	(5, 'Water bodies')) AS l1(code, name) ON l1.code = c.code / 100;

-- ---- CLC labels of patches --------------------------------------------------

CREATE TABLE rai4eo.patch_clc (
	patch_id bigint NOT NULL REFERENCES rai4eo.patch ON DELETE CASCADE,
	code smallint NOT NULL REFERENCES rai4eo.clc_class,
	fraction real NOT NULL CHECK (fraction BETWEEN 0 AND 1),
	PRIMARY KEY (patch_id, code)
);

CREATE INDEX patch_clc_code_idx ON rai4eo.patch_clc (code);

COMMENT ON TABLE rai4eo.patch_clc IS
'CLC 2018 label of a patch: the share of its footprint covered by each level-3 class (classes with share 0 have no row)';
COMMENT ON COLUMN rai4eo.patch_clc.code IS 'CLC level-3 code';
COMMENT ON COLUMN rai4eo.patch_clc.fraction IS 'Share of the patch area, 0 to 1 (label files in percent are divided by 100 when loaded)';

-- Loaded data belongs in pg_dump output; clc_class is created here, so it does not.
-- The registry's own two rows are not dumped: the extension creates them.
SELECT pg_catalog.pg_extension_config_dump('rai4eo.sensor', 'WHERE code > 1');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.patch', '');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.image', '');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.embedding', '');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.patch_clc', '');

GRANT SELECT ON rai4eo.clc_class TO PUBLIC;
GRANT SELECT ON rai4eo.sensor TO PUBLIC;
