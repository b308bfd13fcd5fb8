-- ============================================================================
-- corpus: patches, images, embeddings and CORINE Land Cover labels
-- ============================================================================
--
-- Every key is derived from the RapidAI4EO sample id, never drawn from a
-- sequence, so loaders need no coordination and the tables can be distributed
-- by patch_id (Citus, sql/src/90_citus.sql): patch, patch_clc, image and
-- embedding rows of one patch share it, every unique key and foreign key
-- between them includes it (Citus refuses any other), and the only other
-- foreign keys point at small reference tables (model, clc_class).  image_id
-- stays the leading key column: the pairing's range scans over one patch's
-- images are one index range.

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
'One 600 m x 600 m patch (a RapidAI4EO sample location or a 200 x 200 px tile of a scene)';
COMMENT ON COLUMN rai4eo.patch.patch_id IS
'rai4eo.patch_id_of(sample_id): derived, never from a sequence; the distribution key';
COMMENT ON COLUMN rai4eo.patch.sample_id IS
'RapidAI4EO sample id {zone}{N|S}_{E}E-{N}N_{col}_{row}, e.g. 33N_16E-243N_39_05 (24 km tile E, N; 600 m patch col, row)';
COMMENT ON COLUMN rai4eo.patch.geom IS
'Footprint in the images'' native CRS (UTM, SRID 326zz/327zz); zones differ between patches, so the column has no SRID typmod';
COMMENT ON COLUMN rai4eo.patch.country IS
'ISO 3166-1 alpha-2 code from the label file when it has one, else NULL';

-- ---- images -----------------------------------------------------------------

CREATE TABLE rai4eo.image (
	image_id bigint NOT NULL,
	patch_id bigint NOT NULL REFERENCES rai4eo.patch ON DELETE CASCADE,
	sensor text NOT NULL CHECK (sensor IN ('PF-SR', 'S2-SR')),
	acquired date NOT NULL,
	rast raster NOT NULL,
	CONSTRAINT image_key UNIQUE (patch_id, sensor, acquired),
	CONSTRAINT image_id_from_key CHECK (image_id = rai4eo.image_id_of(patch_id, sensor, acquired)),
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
'One image of a patch: Planet Fusion (PF-SR, 4 bands BGRN, 200 x 200 px at 3 m, every 5 days) or Sentinel-2 (S2-SR, 12 bands, 60 x 60 px at 10 m, monthly)';
COMMENT ON COLUMN rai4eo.image.image_id IS
'rai4eo.image_id_of(patch_id, sensor, acquired): derived, never from a sequence';
COMMENT ON COLUMN rai4eo.image.patch_id IS 'The patch (image_id >> 18)';
COMMENT ON COLUMN rai4eo.image.sensor IS
'PF-SR (Planet Fusion surface reflectance) or S2-SR (Sentinel-2 L2A monthly composite)';
COMMENT ON COLUMN rai4eo.image.acquired IS
'Acquisition date; the first day of the month for S2-SR monthly composites';
COMMENT ON COLUMN rai4eo.image.rast IS
'The pixels, in-db or out-db (a GeoTIFF path on the server); uint16 surface reflectance x 10000; PF-SR bands blue, green, red, nir; S2-SR bands B02 B03 B04 B08 B05 B06 B07 B8A B11 B12 B01 B09';

-- ---- inserting without computing keys -----------------------------------------
--
-- patch_id and image_id are functions of other columns, which a column DEFAULT
-- cannot express, and a generated column cannot be a Citus distribution column
-- (nor can a BEFORE trigger on the table fill one in: Citus routes the row by
-- its patch_id before any trigger runs).  So the derived keys are filled in by
-- INSTEAD OF INSERT triggers on two views, which work the same on one node and
-- on a Citus coordinator (the trigger's INSERT is then an ordinary distributed
-- insert), for INSERT and COPY FROM alike.  Bulk loaders that compute the keys
-- themselves (tools/load) write the tables directly.

CREATE VIEW rai4eo.patch_input AS
SELECT p.patch_id, p.sample_id, p.geom, p.country FROM rai4eo.patch p;

COMMENT ON VIEW rai4eo.patch_input IS
'Insert patches without computing patch_id: INSERT INTO rai4eo.patch_input (sample_id, geom, country) ... [RETURNING patch_id]; a patch_id given must equal rai4eo.patch_id_of(sample_id); reading it reads rai4eo.patch';

CREATE FUNCTION rai4eo.patch_input_insert() RETURNS trigger
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	pid bigint;
BEGIN
	IF NEW.sample_id IS NULL THEN
		RAISE EXCEPTION 'a patch needs a sample_id' USING ERRCODE = 'not_null_violation';
	END IF;
	pid := rai4eo.patch_id_of(NEW.sample_id);
	IF NEW.patch_id IS DISTINCT FROM pid AND NEW.patch_id IS NOT NULL THEN
		RAISE EXCEPTION 'patch_id % does not belong to sample id "%"', NEW.patch_id, NEW.sample_id
			USING ERRCODE = 'check_violation', DETAIL = format('rai4eo.patch_id_of(%L) = %s.', NEW.sample_id, pid);
	END IF;
	NEW.patch_id := pid;
	INSERT INTO rai4eo.patch (patch_id, sample_id, geom, country)
	VALUES (NEW.patch_id, NEW.sample_id, NEW.geom, NEW.country);
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION rai4eo.patch_input_insert() IS
'INSTEAD OF INSERT trigger of rai4eo.patch_input: derives patch_id from sample_id and inserts into rai4eo.patch';

CREATE TRIGGER patch_input_insert INSTEAD OF INSERT ON rai4eo.patch_input
	FOR EACH ROW EXECUTE FUNCTION rai4eo.patch_input_insert();

CREATE VIEW rai4eo.image_input AS
SELECT i.image_id, i.patch_id, rai4eo.sample_id_of(i.patch_id) AS sample_id, i.sensor, i.acquired, i.rast
FROM rai4eo.image i;

COMMENT ON VIEW rai4eo.image_input IS
'Insert images without computing image_id: INSERT INTO rai4eo.image_input (sample_id or patch_id, sensor, acquired, rast) ... [RETURNING image_id]; given ones must agree with each other and with rai4eo.image_id_of; reading it reads rai4eo.image';

CREATE FUNCTION rai4eo.image_input_insert() RETURNS trigger
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	pid bigint := NEW.patch_id;
	iid bigint;
BEGIN
	IF NEW.sample_id IS NOT NULL THEN
		pid := rai4eo.patch_id_of(NEW.sample_id);
		IF NEW.patch_id IS NOT NULL AND NEW.patch_id <> pid THEN
			RAISE EXCEPTION 'patch_id % does not belong to sample id "%"', NEW.patch_id, NEW.sample_id
				USING ERRCODE = 'check_violation', DETAIL = format('rai4eo.patch_id_of(%L) = %s.', NEW.sample_id, pid);
		END IF;
	END IF;
	IF pid IS NULL OR NEW.sensor IS NULL OR NEW.acquired IS NULL THEN
		RAISE EXCEPTION 'an image needs a sample_id or patch_id, a sensor and a date'
			USING ERRCODE = 'not_null_violation';
	END IF;
	iid := rai4eo.image_id_of(pid, NEW.sensor, NEW.acquired);
	IF NEW.image_id IS NOT NULL AND NEW.image_id <> iid THEN
		RAISE EXCEPTION 'image_id % does not belong to patch %, % on %', NEW.image_id, pid, NEW.sensor, NEW.acquired
			USING ERRCODE = 'check_violation', DETAIL = format('rai4eo.image_id_of(...) = %s.', iid);
	END IF;
	INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
	VALUES (iid, pid, NEW.sensor, NEW.acquired, NEW.rast);
	NEW.image_id := iid;
	NEW.patch_id := pid;
	NEW.sample_id := rai4eo.sample_id_of(pid);
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION rai4eo.image_input_insert() IS
'INSTEAD OF INSERT trigger of rai4eo.image_input: derives image_id (and patch_id from sample_id) and inserts into rai4eo.image';

CREATE TRIGGER image_input_insert INSTEAD OF INSERT ON rai4eo.image_input
	FOR EACH ROW EXECUTE FUNCTION rai4eo.image_input_insert();

-- ---- embeddings -------------------------------------------------------------

CREATE TABLE rai4eo.embedding (
	image_id bigint NOT NULL,
	-- The image's patch, stored so that the table can be distributed like the others;
	-- writers set it to image_id >> 18.
	patch_id bigint NOT NULL,
	model text NOT NULL REFERENCES rai4eo.model (name) ON DELETE CASCADE ON UPDATE CASCADE,
	emb @extschema@.embedding NOT NULL,
	CONSTRAINT embedding_patch_id_of_image CHECK (patch_id = image_id >> 18),
	CONSTRAINT embedding_pkey PRIMARY KEY (image_id, model, patch_id),
	CONSTRAINT embedding_image_fkey FOREIGN KEY (image_id, patch_id)
		REFERENCES rai4eo.image (image_id, patch_id) ON DELETE CASCADE
);

-- Dropping a model cascades here, and refreshes scan one model's embeddings.
CREATE INDEX embedding_model_idx ON rai4eo.embedding (model);

COMMENT ON TABLE rai4eo.embedding IS 'The embedding of an image under a model';
COMMENT ON COLUMN rai4eo.embedding.image_id IS 'The image (its patch is image_id >> 18)';
COMMENT ON COLUMN rai4eo.embedding.patch_id IS 'The image''s patch, image_id >> 18 (CHECKed): the distribution key';
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

CREATE VIEW rai4eo.patch_class7 AS
SELECT p.patch_id, p.sample_id, p.geom,
	   coalesce(f.artificial, 0)::real AS artificial,
	   coalesce(f.agricultural, 0)::real AS agricultural,
	   coalesce(f.forest, 0)::real AS forest,
	   coalesce(f.shrub, 0)::real AS shrub,
	   coalesce(f.bare, 0)::real AS bare,
	   coalesce(f.wetlands, 0)::real AS wetlands,
	   coalesce(f.water, 0)::real AS water,
	   d.dominant
FROM rai4eo.patch p
CROSS JOIN LATERAL (
	SELECT sum(pc.fraction) FILTER (WHERE c.class7 = 'artificial') AS artificial,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'agricultural') AS agricultural,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'forest') AS forest,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'shrub') AS shrub,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'bare') AS bare,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'wetlands') AS wetlands,
		   sum(pc.fraction) FILTER (WHERE c.class7 = 'water') AS water
	FROM rai4eo.patch_clc pc
	JOIN rai4eo.clc_class c ON c.code = pc.code
	WHERE pc.patch_id = p.patch_id) f
LEFT JOIN LATERAL (
	SELECT u.class7 AS dominant
	FROM unnest(ARRAY['artificial', 'agricultural', 'forest', 'shrub', 'bare', 'wetlands', 'water'],
				ARRAY[f.artificial, f.agricultural, f.forest, f.shrub, f.bare, f.wetlands, f.water])
		 WITH ORDINALITY AS u(class7, fraction, ord)
	WHERE u.fraction > 0
	ORDER BY u.fraction DESC, u.ord
	LIMIT 1) d ON true;

COMMENT ON VIEW rai4eo.patch_class7 IS
'Per patch, the share of each of the seven coarse classes (0 when absent) and the dominant one (NULL for a patch without labels; ties go to the class listed first)';

-- Loaded data belongs in pg_dump output; clc_class is created here, so it does not.
SELECT pg_catalog.pg_extension_config_dump('rai4eo.patch', '');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.image', '');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.embedding', '');
SELECT pg_catalog.pg_extension_config_dump('rai4eo.patch_clc', '');

GRANT SELECT ON rai4eo.clc_class TO PUBLIC;
