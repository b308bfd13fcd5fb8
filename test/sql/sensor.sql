-- The sensor registry (rai4eo.sensor, rai4eo_register_sensor), the image_id layout
-- (patch_id << 24 | code << 16 | days) and the user's own patch ids and grids, end to end
-- through the insert views and the change functions.  Everything is rolled back.
SET datestyle = ISO;
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
BEGIN;

-- the pre-registered sensors
SELECT name, code, band_names, wavelengths, resolution, cadence, pixel_scale, pixel_offset FROM rai4eo.sensor ORDER BY code;

-- registering: the smallest free code, or the one asked for
SELECT rai4eo_register_sensor('L8-OLI', '{B1,B2,B3,B4,B5,B6,B7}', 30, '{443,482,561,655,865,1609,2201}', 16, 2.75e-5, -0.2);
SELECT rai4eo_register_sensor('EMB64', (SELECT array_agg('A' || lpad(i::text, 2, '0')) FROM generate_series(0, 63) i),
                              10, NULL, 365, description => 'annual 64-band embedding rasters', code => 200);
SELECT rai4eo_register_sensor('S2-L2A', '{B02,B03,B04}', 10, '{492.4,NULL,664.6}');
SELECT name, code, cardinality(band_names) AS bands, wavelengths, resolution, cadence, pixel_scale, pixel_offset, description
FROM rai4eo.sensor WHERE code >= 2 ORDER BY code;

-- errors
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L8-OLI', '{B1}', 30)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{B1}', 30, code => 200)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{B1}', 30, code => 256)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{}', 30)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{B1,NULL}', 30)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{B1," "}', 30)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{B1,B1}', 30)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{{B1},{B2}}', 30)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{B1,B2}', 30, '{443}')$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{B1,B2}', 30, '{443,-1}')$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9 OLI', '{B1}', 30)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{B1}', 0)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{B1}', 30, cadence => -1)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor('L9-OLI', '{B1}', 30, pixel_scale => 0)$$);
SELECT pg_temp.err($$SELECT rai4eo_register_sensor(NULL, '{B1}', 30)$$);
SELECT pg_temp.err($$SELECT rai4eo.sensor_code('nope')$$);
SELECT pg_temp.err($$SELECT rai4eo.sensor_code(NULL)$$);
SELECT pg_temp.err($$SELECT rai4eo.image_id_of(1, 256, '2019-01-01')$$);
SELECT pg_temp.err($$SELECT rai4eo.image_id_of(1, 'nope', '2019-01-01')$$);

-- the image_id layout
SELECT rai4eo.image_id_of(rai4eo.patch_id_of('29N_10E-20N_01_01'), 'EMB64', '2019-05-01') AS id,
       rai4eo.patch_id_of('29N_10E-20N_01_01') * 16777216 + 200 * 65536 + ('2019-05-01'::date - '2000-01-01') AS by_hand;
SELECT rai4eo.image_patch_id(i), rai4eo.image_sensor_code(i), rai4eo.sensor_of(rai4eo.image_sensor_code(i)), rai4eo.image_acquired(i)
FROM (SELECT rai4eo.image_id_of((1::bigint << 39) - 1, 'EMB64', '2179-06-06') AS i) x;
SELECT rai4eo.image_id_base(5, 3), rai4eo.image_id_of(5, 3, '2000-01-01'), rai4eo.image_id_of(5, 'S2-SR', '2000-01-02');

-- own patch ids: a hash below 2^33, disjoint from RapidAI4EO's (2^33 and above)
SELECT s, rai4eo.patch_id_of(s) AS patch_id, rai4eo.patch_id_of(s) < (1::bigint << 33) AS own, rai4eo.sample_id_of(rai4eo.patch_id_of(s))
FROM unnest('{tile_12_34,field-0042,l7_0_0,29N_10E-20N_01_01,1N_0E-0N_00_00}'::text[]) s;
SELECT pg_temp.err($$SELECT rai4eo.patch_id_of('29N_10E-20N_41_01')$$);
SELECT pg_temp.err($$SELECT rai4eo.patch_id_of(' tile')$$);
SELECT pg_temp.err($$SELECT rai4eo.patch_id_of('')$$);
SELECT left(pg_temp.err($$SELECT rai4eo.patch_id_of(repeat('x', 201))$$), 24);
SELECT left(pg_temp.err($$SELECT rai4eo.patch_id_of(E'a\tb')$$), 24);

-- own patches on an own grid (ETRS89-LAEA) through the insert views, an own sensor's images
INSERT INTO rai4eo.patch_input (sample_id, geom)
SELECT 'field-' || c, ST_MakeEnvelope(4321000 + 100 * c, 3210000, 4321100 + 100 * c, 3210100, 3035)
FROM generate_series(1, 3) c
RETURNING sample_id, patch_id = rai4eo.patch_id_of(sample_id) AS derived, ST_SRID(geom);
INSERT INTO rai4eo.image_input (sample_id, sensor, acquired, rast)
SELECT 'field-' || c, 'L8-OLI', d, ST_AddBand(ST_MakeEmptyRaster(10, 10, 4321000 + 100 * c, 3210100, 10, -10, 0, 0, 3035), '16BUI'::text, c, 0)
FROM generate_series(1, 3) c, (VALUES (date '2018-06-01'), (date '2019-06-01')) v(d)
RETURNING sample_id, sensor, acquired, rai4eo.image_sensor_code(image_id) AS code, rai4eo.image_patch_id(image_id) = patch_id AS same;
SELECT sample_id, sensor, acquired FROM rai4eo.image_input WHERE sensor = 'L8-OLI' ORDER BY image_id;
-- an image of a sensor not registered, or with the wrong bits in its image_id
SELECT pg_temp.err($$INSERT INTO rai4eo.image_input (sample_id, sensor, acquired, rast)
	VALUES ('field-1', 'L9-OLI', '2019-01-01', ST_MakeEmptyRaster(1, 1, 0, 0, 1, -1, 0, 0, 3035))$$);
SELECT pg_temp.err($$INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
	VALUES (rai4eo.image_id_of(rai4eo.patch_id_of('field-1'), 2, '2019-01-01'), rai4eo.patch_id_of('field-1'), 'L9-OLI', '2019-01-01',
	        ST_MakeEmptyRaster(1, 1, 0, 0, 1, -1, 0, 0, 3035))$$);
SELECT pg_temp.err($$INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
	VALUES (rai4eo.image_id_of(rai4eo.patch_id_of('field-2'), 2, '2019-01-01') + 1, rai4eo.patch_id_of('field-2'), 'L8-OLI', '2019-01-01',
	        ST_MakeEmptyRaster(1, 1, 0, 0, 1, -1, 0, 0, 3035))$$);
SELECT pg_temp.err($$DELETE FROM rai4eo.sensor WHERE name = 'L8-OLI'$$);

-- change detection on the own sensor and grid: field-2 changes, the others do not
SELECT rai4eo_create_external_model('own2', 2);
INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb)
SELECT i.image_id, i.patch_id, 'own2',
       CASE WHEN p.sample_id = 'field-2' AND i.acquired = '2019-06-01' THEN '[0,1]' ELSE '[1,0]' END::embedding
FROM rai4eo.image i JOIN rai4eo.patch p USING (patch_id) WHERE i.sensor = 'L8-OLI';
SELECT sample_id, distance, changed FROM daily_change(ST_MakeEnvelope(4321000, 3210000, 4321500, 3210100, 3035), '2019-06-01', 'own2', 0.5, 'L8-OLI')
ORDER BY sample_id;
SELECT sample_id, days_compared, days_changed, change_rate FROM yearly_change(ST_MakeEnvelope(4321000, 3210000, 4321500, 3210100, 3035), 2019, 'own2', 0.5, 'L8-OLI')
ORDER BY sample_id;
-- the same patches seen through another sensor have no images: nothing compared
SELECT sample_id, distance, changed FROM daily_change(ST_MakeEnvelope(4321000, 3210000, 4321500, 3210100, 3035), '2019-06-01', 'own2', 0.5, 'EMB64') ORDER BY 1;
SELECT pg_temp.err($$SELECT * FROM yearly_change(ST_MakeEnvelope(4321000, 3210000, 4321500, 3210100, 3035), 2019, 'own2', 0.5, 'L9-OLI')$$);

ROLLBACK;
