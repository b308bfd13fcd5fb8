-- Model store and inference glue: rai4eo_load_model / _file / drop, the
-- models view, GUCs, rai4eo_embed (single and batched), rai4eo_model_input,
-- the per-backend cache noticing replaced and dropped models, and every
-- error with its SQLSTATE.  Numerical parity with PyTorch is in test/parity.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- float4 as 4 little-endian bytes (safetensors is little-endian)
CREATE FUNCTION pg_temp.le4(v real) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
	SELECT substring(b FROM 4 FOR 1) || substring(b FROM 3 FOR 1) || substring(b FROM 2 FOR 1) || substring(b FROM 1 FOR 1)
	FROM float4send(v) AS b
$$;
CREATE FUNCTION pg_temp.le8(v bigint) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
	SELECT string_agg(substring(b FROM 9 - i FOR 1), ''::bytea ORDER BY i) FROM int8send(v) AS b, generate_series(1, 8) i
$$;

-- A ViT safetensors file built in SQL: deterministic weights base + amp * sin(...),
-- every tensor of DINO's ViT (embed d, depth blocks, patch p, c channels, grid^2
-- positions), a linear classification head when classes > 0; tensors whose name
-- matches skip are left out; meta goes to __metadata__.
CREATE FUNCTION pg_temp.vit_file(d int, depth int, p int, c int, grid int, seed int DEFAULT 1,
								 meta jsonb DEFAULT NULL, skip text DEFAULT NULL, classes int DEFAULT 0) RETURNS bytea
LANGUAGE plpgsql AS $$
DECLARE
	t record;
	hdr jsonb := '{}';
	data bytea := '';
	off bigint := 0;
	n int;
	k int := 0;
	h bytea;
BEGIN
	FOR t IN
		WITH spec(name, shape, base, amp, ord) AS (
			VALUES ('cls_token', ARRAY[1, 1, d], 0, 0.5, 0), ('pos_embed', ARRAY[1, grid * grid + 1, d], 0, 0.5, 1),
				   ('patch_embed.proj.weight', ARRAY[d, c, p, p], 0, 1 / sqrt(c * p * p), 2),
				   ('patch_embed.proj.bias', ARRAY[d], 0, 0.2, 3),
				   ('norm.weight', ARRAY[d], 1, 0.3, 1000), ('norm.bias', ARRAY[d], 0, 0.2, 1001)
			UNION ALL
			SELECT x.name, x.shape, x.base, x.amp, x.ord
			FROM (VALUES ('head.weight', ARRAY[classes, d], 0, 1.5, 2000), ('head.bias', ARRAY[classes], 0, 0.5, 2001))
				 AS x(name, shape, base, amp, ord) WHERE classes > 0
			UNION ALL
			SELECT format('blocks.%s.%s', b, x.name), x.shape, x.base, x.amp, 10 + b * 20 + x.ord
			FROM generate_series(0, depth - 1) b,
				 (VALUES ('norm1.weight', ARRAY[d], 1, 0.3, 0), ('norm1.bias', ARRAY[d], 0, 0.2, 1),
						 ('attn.qkv.weight', ARRAY[3 * d, d], 0, 1.2 / sqrt(d), 2), ('attn.qkv.bias', ARRAY[3 * d], 0, 0.2, 3),
						 ('attn.proj.weight', ARRAY[d, d], 0, 0.6 / sqrt(d), 4), ('attn.proj.bias', ARRAY[d], 0, 0.1, 5),
						 ('norm2.weight', ARRAY[d], 1, 0.3, 6), ('norm2.bias', ARRAY[d], 0, 0.2, 7),
						 ('mlp.fc1.weight', ARRAY[4 * d, d], 0, 1 / sqrt(d), 8), ('mlp.fc1.bias', ARRAY[4 * d], 0, 0.2, 9),
						 ('mlp.fc2.weight', ARRAY[d, 4 * d], 0, 0.6 / sqrt(4 * d), 10), ('mlp.fc2.bias', ARRAY[d], 0, 0.1, 11)) AS x(name, shape, base, amp, ord))
		SELECT * FROM spec WHERE skip IS NULL OR name !~ skip ORDER BY ord
	LOOP
		k := k + 1;
		n := round((SELECT exp(sum(ln(s))) FROM unnest(t.shape) s));
		data := data || (SELECT string_agg(pg_temp.le4((t.base + t.amp * sin(i * 0.7071 + k * 1.37 + seed * 0.577))::real), ''::bytea ORDER BY i)
						 FROM generate_series(1, n) i);
		hdr := hdr || jsonb_build_object(t.name, jsonb_build_object('dtype', 'F32', 'shape', to_jsonb(t.shape),
																   'data_offsets', jsonb_build_array(off, off + 4 * n)));
		off := off + 4 * n;
	END LOOP;
	IF meta IS NOT NULL THEN
		hdr := hdr || jsonb_build_object('__metadata__', meta);
	END IF;
	h := convert_to(hdr::text, 'UTF8');
	RETURN pg_temp.le8(length(h)) || h || data;
END $$;

-- A w x h raster of nb 16BUI bands (nodata 0), value of band b at (x, y) = 100*b + 7*x + 3*y,
-- except one nodata pixel at (2, 2) in band 1
CREATE FUNCTION pg_temp.make_raster(w int, h int, nb int) RETURNS raster LANGUAGE plpgsql AS $$
DECLARE
	r raster := ST_MakeEmptyRaster(w, h, 500000, 4400000, 3, -3, 0, 0, 32629);
BEGIN
	FOR b IN 1..nb LOOP
		r := ST_AddBand(r, '16BUI'::text, 0::float8, 0::float8);
		r := ST_SetValues(r, b, 1, 1, (SELECT array_agg(row ORDER BY y) FROM
			(SELECT y, array_agg(CASE WHEN b = 1 AND x = 2 AND y = 2 THEN 0 ELSE 100 * b + 7 * x + 3 * y END ORDER BY x) AS row
			 FROM generate_series(1, h) y, generate_series(1, w) x GROUP BY y) q)::float8[][]);
	END LOOP;
	RETURN r;
END $$;

CREATE TEMP TABLE f AS SELECT pg_temp.vit_file(32, 2, 8, 4, 4) AS w,
	pg_temp.vit_file(32, 2, 8, 4, 4, seed => 2) AS w2;
CREATE TEMP TABLE r AS SELECT pg_temp.make_raster(24, 20, 4) AS r4, pg_temp.make_raster(24, 20, 3) AS r3,
	pg_temp.make_raster(7, 20, 4) AS narrow, pg_temp.make_raster(16, 16, 4) AS r16;

-- ---- loading --------------------------------------------------------------------
SELECT rai4eo_load_model('tiny', w, '{"num_heads": 2, "scale": 0.01, "mean": [1, 2, 3, 4], "std": 0.5}') FROM f;
SELECT name, arch, parameters, input_bands, input_mode, output_dims, size_bytes = (SELECT length(w) FROM f) AS size_ok,
	change_threshold FROM rai4eo.models;
SELECT config->'num_heads' AS heads, config->'patch_size' AS patch, config->'embed_dim' AS dim, config->'depth' AS depth,
	config->'mean' AS mean, config->'std' AS std, config->'input' AS input
FROM rai4eo.model WHERE name = 'tiny';
SELECT sha256 = sha256(weights) AS sha_ok FROM rai4eo.model;
-- the configuration stored is canonical: feeding it back resolves to itself
SELECT rai4eo_load_model('tiny_again', (SELECT w FROM f), (SELECT config FROM rai4eo.model WHERE name = 'tiny'));
SELECT (SELECT config FROM rai4eo.model WHERE name = 'tiny') = (SELECT config FROM rai4eo.model WHERE name = 'tiny_again') AS same_config;
SELECT rai4eo_drop_model('tiny_again');
-- metadata is read; the config argument wins key by key
SELECT rai4eo_load_model('meta', pg_temp.vit_file(32, 2, 8, 4, 4, meta => '{"num_heads": "4", "bands": "[4,3,2,1]", "input": "resize", "n_last_blocks": "2", "avgpool": "true"}'),
						 '{"num_heads": 2}');
SELECT input_bands, input_mode, output_dims, (SELECT config->'num_heads' FROM rai4eo.model WHERE name = 'meta') AS heads
FROM rai4eo.models WHERE name = 'meta';

-- ---- loading errors -----------------------------------------------------------------
SELECT pg_temp.err($$SELECT rai4eo_load_model('tiny', (SELECT w FROM f), '{"num_heads": 2}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model(NULL, (SELECT w FROM f))$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('', (SELECT w FROM f))$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', NULL)$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', '\x0102')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', substring((SELECT w FROM f) FROM 1 FOR 2000), '{"num_heads": 2}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', pg_temp.vit_file(32, 2, 8, 4, 4, skip => '^blocks\.1\.mlp|^norm\.'), '{"num_heads": 2}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f))$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f), '{"num_heads": 3}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f), '{"num_heads": 2, "band": [1]}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f), '{"num_heads": 2, "bands": [1, 2]}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f), '{"num_heads": 2, "std": 0}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f), '{"num_heads": 2, "arch": "resnet"}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f), '{"num_heads": 2, "input": "crop"}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f), '[1]')$$);
SELECT count(*) AS models_after_errors FROM rai4eo.model;

-- ---- inference ----------------------------------------------------------------------
SELECT embedding_dims(rai4eo_embed(r4, 'tiny')) AS dims, embedding_norm(rai4eo_embed(r4, 'tiny')) > 0 AS nonzero,
	rai4eo_embed(r4, 'tiny') = rai4eo_embed(r4, 'tiny') AS deterministic FROM r;
SELECT rai4eo_embed(NULL::raster, 'tiny') IS NULL AS null_in_null_out;
-- batched: same values as single calls, NULL for NULL, shape and bounds kept
SELECT array_length(e, 1) AS n, e[1] = rai4eo_embed(r4, 'tiny') AS first_equal, e[2] IS NULL AS second_null,
	e[3] = rai4eo_embed(r16, 'tiny') AS third_equal, e[4] = rai4eo_embed(r4, 'tiny') AS fourth_equal
FROM r, LATERAL (SELECT rai4eo_embed(ARRAY[r4, NULL, r16, r4], 'tiny') AS e) q;
SELECT array_dims(rai4eo_embed('[0:1]={NULL,NULL}'::raster[], 'tiny')) AS dims_kept;
SELECT rai4eo_embed(ARRAY[]::raster[], 'tiny') = '{}' AS empty_ok;
-- a batch of 20 runs as 16 + 4: equal to single calls up to float32 rounding (OpenBLAS may
-- block a GEMM differently for other sizes, so not always bit for bit)
SELECT count(*) AS n, bool_and(cosine_change(e, s) < 1e-6 AND l2_distance(e, s) <= 1e-5 * embedding_norm(s)) AS batch_of_20_equal
FROM (SELECT unnest(rai4eo_embed(array_agg(r4), 'tiny')) AS e FROM r, generate_series(1, 20)) q,
	 (SELECT rai4eo_embed(r4, 'tiny') AS s FROM r) single;
-- the input tensor: bands picked, (raw * scale - mean) / std, nodata -> 0
SELECT array_dims(rai4eo_model_input(r4, 'tiny')) AS dims FROM r;
SELECT x[1][1][1] = (((100 + 7 + 3) * 0.01 - 1) / 0.5)::real AS b1_ok, x[4][20][24] = (((400 + 7 * 24 + 3 * 20) * 0.01 - 4) / 0.5)::real AS b4_ok,
	x[1][2][2] = 0 AS nodata_zero
FROM (SELECT rai4eo_model_input(r4, 'tiny') AS x FROM r) q;
-- bands [4,3,2,1] in resize mode to img_size 32
SELECT array_dims(x) AS dims FROM (SELECT rai4eo_model_input(r4, 'meta') AS x FROM r) q;
SELECT embedding_dims(rai4eo_embed(r4, 'meta')) AS dims_two_blocks_plus_avg FROM r;
-- BLAS threads do not change results beyond rounding
SET rai4eo.blas_threads = 2;
SELECT cosine_change(rai4eo_embed(r4, 'tiny'), (SELECT rai4eo_embed(r4, 'tiny') FROM r)) < 1e-6 AS same_with_2_threads FROM r;
RESET rai4eo.blas_threads;

-- ---- inference errors -------------------------------------------------------------------
SELECT pg_temp.err($$SELECT rai4eo_embed(r3, 'tiny') FROM r$$);
SELECT pg_temp.err($$SELECT rai4eo_embed(narrow, 'tiny') FROM r$$);
SELECT pg_temp.err($$SELECT rai4eo_embed(ARRAY[r4, narrow], 'tiny') FROM r$$);
-- token_stats per region: a 24 x 20 raster is a 3 x 2 token grid (patch 8)
SELECT rai4eo_load_model('tiny_grid', w, '{"num_heads": 2, "readout": "token_stats", "readout_grid": 2}') FROM f;
SELECT embedding_dims(rai4eo_embed(r4, 'tiny_grid')) AS grid2_dims FROM r;
SELECT rai4eo_load_model('tiny_grid', w, '{"num_heads": 2, "readout": "token_stats", "readout_grid": 3}', replace => true) FROM f;
SELECT pg_temp.err($$SELECT rai4eo_embed(r4, 'tiny_grid') FROM r$$);
SELECT output_dims AS grid3_dims FROM rai4eo.models WHERE name = 'tiny_grid';
SELECT rai4eo_drop_model('tiny_grid');
-- a vector wider than the embedding type is refused at load: 2 x 8^2 x 128 = 16384 > 16000
SELECT pg_temp.err($$SELECT rai4eo_load_model('wide_grid', pg_temp.vit_file(128, 1, 8, 4, 4),
	'{"num_heads": 2, "readout": "token_stats", "readout_grid": 8}')$$);
SELECT count(*) AS not_stored FROM rai4eo.model WHERE name = 'wide_grid';
SELECT pg_temp.err($$SELECT rai4eo_embed(r4, 'nope') FROM r$$);
SELECT pg_temp.err($$SELECT rai4eo_embed(r4, '') FROM r$$);
SELECT pg_temp.err($$SELECT rai4eo_embed(r4) FROM r$$);
SELECT pg_temp.err($$SELECT rai4eo_model_input(r3, 'tiny') FROM r$$);
SELECT pg_temp.err($$SELECT rai4eo_embed(ST_MakeEmptyRaster(16, 16, 0, 0, 1), 'tiny')$$);
SELECT pg_temp.err($$SELECT rai4eo.resolve_model(NULL)$$);
SELECT pg_temp.err($$SELECT rai4eo.resolve_model('nope')$$);
-- default model
SET rai4eo.default_model = 'tiny';
SELECT rai4eo.resolve_model(NULL) AS resolved, rai4eo_embed(r4) = rai4eo_embed(r4, 'tiny') AS default_used FROM r;
RESET rai4eo.default_model;
-- GUC validation
SELECT pg_temp.err($$SET rai4eo.change_threshold = 'abc'$$);
SELECT pg_temp.err($$SET rai4eo.change_threshold = '2.5'$$);
SET rai4eo.change_threshold = '0.25';
SHOW rai4eo.change_threshold;
RESET rai4eo.change_threshold;
SELECT pg_temp.err($$SET rai4eo.blas_threads = 0$$);
SELECT pg_temp.err($$SET rai4eo.nonsense = 1$$);
-- a cancel stops a long call
SET statement_timeout = '300ms';
SELECT count(rai4eo_embed(r4, 'tiny')) FROM r, generate_series(1, 1000000);
RESET statement_timeout;

-- ---- the cache notices replaced and dropped models --------------------------------------
INSERT INTO rai4eo.patch (patch_id, sample_id, geom)
	VALUES (rai4eo.patch_id_of('29N_10E-20N_01_01'), '29N_10E-20N_01_01', ST_MakeEnvelope(500000, 4399400, 500600, 4400000, 32629));
INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
	SELECT rai4eo.image_id_of(rai4eo.patch_id_of('29N_10E-20N_01_01'), 'PF-SR', '2018-01-03'),
		   rai4eo.patch_id_of('29N_10E-20N_01_01'), 'PF-SR', '2018-01-03', r4 FROM r;
INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb) SELECT image_id, patch_id, 'tiny', rai4eo_embed(rast, 'tiny') FROM rai4eo.image;
CREATE TEMP TABLE before AS SELECT rai4eo_embed(r4, 'tiny') AS e FROM r;
-- same weights again: embeddings stay
SELECT rai4eo_load_model('tiny', w, '{"num_heads": 2, "scale": 0.01, "mean": [1, 2, 3, 4], "std": 0.5}', replace => true) FROM f;
SELECT count(*) AS embeddings_kept FROM rai4eo.embedding;
-- new weights: old embeddings go, and the next statement sees the new model
SELECT rai4eo_load_model('tiny', w2, '{"num_heads": 2, "scale": 0.01, "mean": [1, 2, 3, 4], "std": 0.5}', replace => true) FROM f;
SELECT count(*) AS embeddings_left FROM rai4eo.embedding;
SELECT rai4eo_embed(r4, 'tiny') <> (SELECT e FROM before) AS cache_rebuilt FROM r;
-- a configuration change (other than change_threshold) also rebuilds
UPDATE rai4eo.model SET config = jsonb_set(config, '{std}', '[1, 1, 1, 1]') WHERE name = 'tiny';
SELECT x[1][1][1] = ((100 + 7 + 3) * 0.01 - 1)::real AS new_std_used FROM (SELECT rai4eo_model_input(r4, 'tiny') AS x FROM r) q;
-- weights written by hand must come with their digest (CHECK model_sha256_of_weights: 23514)
SELECT pg_temp.err($$UPDATE rai4eo.model SET weights = (SELECT w FROM f) WHERE name = 'tiny'$$);
SELECT pg_temp.err($$INSERT INTO rai4eo.model (name, arch, weights, sha256) VALUES ('hand', 'vit', '\x00', sha256('\x01'))$$);
UPDATE rai4eo.model SET weights = (SELECT w FROM f), sha256 = sha256((SELECT w FROM f)) WHERE name = 'tiny';
SELECT sha256 = sha256((SELECT w FROM f)) AS hand_sha FROM rai4eo.model WHERE name = 'tiny';
-- dropping cascades to embeddings; later calls fail cleanly
INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb) SELECT image_id, patch_id, 'tiny', rai4eo_embed(rast, 'tiny') FROM rai4eo.image;
SELECT rai4eo_drop_model('tiny');
SELECT count(*) AS embeddings_after_drop FROM rai4eo.embedding;
SELECT pg_temp.err($$SELECT rai4eo_embed(r4, 'tiny') FROM r$$);
SELECT pg_temp.err($$SELECT rai4eo_drop_model('tiny')$$);
SELECT rai4eo_drop_model('tiny', if_exists => true) AS existed;

-- ---- server files and privileges (any role may embed; writing needs table privileges) ------------------------------------------------------------
SELECT lo_from_bytea(424242, w) > 0 AS lo FROM f;
SELECT lo_export(424242, '/tmp/rai4eo_regress_model.safetensors');
SELECT lo_unlink(424242);
SELECT rai4eo_load_model_file('from_file', '/tmp/rai4eo_regress_model.safetensors', '{"num_heads": 2}');
SELECT (SELECT weights FROM rai4eo.model WHERE name = 'from_file') = (SELECT w FROM f) AS file_bytes_equal;
SELECT pg_temp.err($$SELECT rai4eo_load_model_file('y', '/nonexistent/model.safetensors')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model_file('y', '/tmp')$$);
CREATE ROLE regress_rai4eo_reader;
GRANT SELECT ON r, f TO regress_rai4eo_reader;
SET ROLE regress_rai4eo_reader;
SELECT embedding_dims(rai4eo_embed(r4, 'from_file')) AS any_role_embeds FROM r;
SELECT pg_temp.err($$SELECT rai4eo_load_model('z', (SELECT w FROM f), '{"num_heads": 2}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model_file('y', '/tmp/rai4eo_regress_model.safetensors', '{"num_heads": 2}')$$);
RESET ROLE;
GRANT pg_read_server_files TO regress_rai4eo_reader;
GRANT INSERT, UPDATE ON rai4eo.model TO regress_rai4eo_reader;
SET ROLE regress_rai4eo_reader;
SELECT rai4eo_load_model_file('y', '/tmp/rai4eo_regress_model.safetensors', '{"num_heads": 2}');
RESET ROLE;
REVOKE ALL ON rai4eo.model, r, f FROM regress_rai4eo_reader;
DROP ROLE regress_rai4eo_reader;
SELECT name FROM rai4eo.models ORDER BY name;

-- ---- external models: embeddings computed elsewhere ------------------------------------------
SELECT rai4eo_create_external_model('pixel_mean', 4, '{"description": "per-band mean reflectance"}');
SELECT name, arch, parameters, input_bands, output_dims, size_bytes FROM rai4eo.models WHERE name = 'pixel_mean';
SELECT config FROM rai4eo.model WHERE name = 'pixel_mean';
INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb) SELECT image_id, patch_id, 'pixel_mean', '[1,2,3,4]' FROM rai4eo.image;
SELECT count(*) AS external_embeddings FROM rai4eo.embedding WHERE model = 'pixel_mean';
SELECT pg_temp.err($$SELECT rai4eo_embed(r4, 'pixel_mean') FROM r$$);
SELECT pg_temp.err($$SELECT rai4eo_create_external_model('pixel_mean', 4)$$);
SELECT pg_temp.err($$SELECT rai4eo_create_external_model('x', 0)$$);
SELECT pg_temp.err($$SELECT rai4eo_create_external_model('x', 4, '{"change_threshold": "high"}')$$);
SELECT rai4eo_create_external_model('pixel_mean', 4, '{"change_threshold": 0.01}', replace => true);
SELECT change_threshold, output_dims FROM rai4eo.models WHERE name = 'pixel_mean';
SELECT rai4eo_drop_model('pixel_mean');

-- ---- classification heads ----------------------------------------------------------------------
SELECT rai4eo_load_model('cls', pg_temp.vit_file(32, 2, 8, 4, 4, classes => 3), '{"num_heads": 2, "classes": ["forest", "water", 512]}');
SELECT name, output_dims, classes, parameters FROM rai4eo.models WHERE name = 'cls';
SELECT config -> 'classes' AS classes, config -> 'multilabel' AS multilabel, config -> 'output' AS output FROM rai4eo.model WHERE name = 'cls';
SELECT array_length(p, 1) AS n, abs((SELECT sum(x) FROM unnest(p) x) - 1) < 1e-6 AS sums_to_one,
	(SELECT bool_and(x >= 0 AND x <= 1) FROM unnest(p) x) AS in_range
FROM (SELECT rai4eo_classify(r4, 'cls') AS p FROM r) q;
SELECT class_index, class, probability = (SELECT rai4eo_classify(r4, 'cls') FROM r)[class_index] AS same
FROM rai4eo_classify_labels((SELECT r4 FROM r), 'cls');
SELECT embedding_dims(rai4eo_embed(r4, 'cls')) AS features_by_default FROM r;
SELECT cardinality(e) AS n, e[2] IS NULL AS null_kept, e[1]::real[] = (SELECT rai4eo_classify(r4, 'cls') FROM r) AS equal
FROM (SELECT rai4eo_classify(ARRAY[r4, NULL], 'cls') AS e FROM r) q;
-- output = probabilities: rai4eo_embed returns the class probabilities (what change detection compares)
SELECT rai4eo_load_model('cls_probs', pg_temp.vit_file(32, 2, 8, 4, 4, classes => 3), '{"num_heads": 2, "output": "probabilities", "multilabel": true}');
SELECT output_dims, classes FROM rai4eo.models WHERE name = 'cls_probs';
SELECT config -> 'classes' AS default_names FROM rai4eo.model WHERE name = 'cls_probs';
SELECT (SELECT sum(x) FROM unnest(rai4eo_embed(r4, 'cls_probs')::real[]) x) <> 1 AS sigmoids_not_softmax FROM r;
-- head ignored on request
SELECT rai4eo_load_model('no_head', pg_temp.vit_file(32, 2, 8, 4, 4, classes => 3), '{"num_heads": 2, "head": false}');
SELECT classes, output_dims, (SELECT config -> 'head' FROM rai4eo.model WHERE name = 'no_head') AS head FROM rai4eo.models WHERE name = 'no_head';
-- errors
SELECT pg_temp.err($$SELECT rai4eo_classify(r4, 'no_head') FROM r$$);
SELECT pg_temp.err($$SELECT rai4eo_classify(ARRAY[r4], 'no_head') FROM r$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', pg_temp.vit_file(32, 2, 8, 4, 4, classes => 3), '{"num_heads": 2, "classes": ["a", "b"]}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', pg_temp.vit_file(32, 2, 8, 4, 4, classes => 3), '{"num_heads": 2, "classes": ["a", "", "c"]}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f), '{"num_heads": 2, "classes": ["a"]}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f), '{"num_heads": 2, "output": "probabilities"}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', (SELECT w FROM f), '{"num_heads": 2, "output": "logits"}')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', pg_temp.vit_file(32, 2, 8, 4, 4, classes => 3), '{"num_heads": 2, "n_last_blocks": 2}')$$);
-- the stored configuration, classes included, resolves back to itself
SELECT rai4eo_load_model('cls_again', pg_temp.vit_file(32, 2, 8, 4, 4, classes => 3), (SELECT config FROM rai4eo.model WHERE name = 'cls'));
SELECT (SELECT config FROM rai4eo.model WHERE name = 'cls') = (SELECT config FROM rai4eo.model WHERE name = 'cls_again') AS same_config;
SELECT rai4eo_drop_model(n) FROM unnest(ARRAY['cls', 'cls_again', 'cls_probs', 'no_head']) n;

-- ---- reliability: what is refused before work, and the cache within a transaction --------------
CREATE TEMP TABLE f3 AS SELECT pg_temp.vit_file(32, 2, 8, 4, 4) AS w, pg_temp.vit_file(32, 2, 8, 4, 4, seed => 2) AS w2;
-- NaN or infinite weights, degenerate normalisation, wrong JSON types: 22023 at load
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', overlay(w placing pg_temp.le4('NaN') from length(w) - 3 for 4), '{"num_heads": 2}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', overlay(w placing pg_temp.le4('-Infinity') from length(w) - 3 for 4), '{"num_heads": 2}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', w, '{"num_heads": 2, "std": 1e-320}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', w, '{"num_heads": 2, "std": [1, 1, 1e-31, 1]}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', w, '{"num_heads": 2, "std": 1e31}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', w, '{"num_heads": 2, "scale": 1e308}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', w, '{"num_heads": 2, "scale": 1e-31}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', w, '{"num_heads": 2, "mean": 2e30}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', w, '{"num_heads": 2, "scale": 1e20, "std": 1e-20}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', w, '{"num_heads": 2, "head": 1}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', w, '{"num_heads": 2, "avgpool": 0}') FROM f3$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('x', pg_temp.vit_file(32, 2, 8, 4, 4, meta => '{"avgpool": "1"}'), '{"num_heads": 2}')$$);
SELECT count(*) AS none_stored FROM rai4eo.model WHERE name = 'x';
-- the bounds themselves are fine
SELECT rai4eo_load_model('bounds', w, '{"num_heads": 2, "scale": 1e-6, "std": [1e-5, 1, 2, 3], "mean": -1e3}') FROM f3;
SELECT embedding_dims(rai4eo_embed(r4, 'bounds')) AS embeds FROM r;
-- rai4eo.blas_threads is capped at the machine's cores
SELECT pg_temp.err($$SET rai4eo.blas_threads = 256$$);
-- a raster too large for the model is refused from its header (4 x 1032 x 1032: 16,642 tokens)
CREATE TEMP TABLE big AS SELECT ST_AddBand(ST_MakeEmptyRaster(1032, 1032, 0, 0, 1), ARRAY[ROW(1, '8BUI', 7, NULL), ROW(2, '8BUI', 7, NULL), ROW(3, '8BUI', 7, NULL), ROW(4, '8BUI', 7, NULL)]::addbandarg[]) AS r;
SELECT pg_temp.err($$SELECT rai4eo_embed(r, 'bounds') FROM big$$);
SELECT pg_temp.err($$SELECT rai4eo_embed(ARRAY[r], 'bounds') FROM big$$);
-- privileges come before validation: an unprivileged caller gets 42501 even for a malformed file
CREATE ROLE regress_rai4eo_nowrite;
SET ROLE regress_rai4eo_nowrite;
SELECT pg_temp.err($$SELECT rai4eo_load_model('z', '\x0102')$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('bounds', '\x0102', replace => true)$$);
RESET ROLE;
GRANT INSERT ON rai4eo.model TO regress_rai4eo_nowrite;
SET ROLE regress_rai4eo_nowrite;
SELECT pg_temp.err($$SELECT rai4eo_load_model('bounds', '\x0102', replace => true)$$);
SELECT pg_temp.err($$SELECT rai4eo_load_model('z', '\x0102')$$);
RESET ROLE;
REVOKE INSERT ON rai4eo.model FROM regress_rai4eo_nowrite;
DROP ROLE regress_rai4eo_nowrite;
-- a PL/pgSQL call site keeps its state for the transaction: a replace in the same
-- transaction must still reach it (and a manual UPDATE of the weights too)
CREATE FUNCTION pg_temp.wrap(x raster) RETURNS embedding LANGUAGE plpgsql AS $$
BEGIN
	RETURN rai4eo_embed(x, 'bounds');
END $$;
CREATE TEMP TABLE w_old AS SELECT rai4eo_embed(r4, 'bounds') AS e FROM r;
BEGIN;
SELECT pg_temp.wrap(r4) = (SELECT e FROM w_old) AS old_weights FROM r;
SELECT rai4eo_load_model('bounds', w2, '{"num_heads": 2, "scale": 1e-6, "std": [1e-5, 1, 2, 3], "mean": -1e3}', replace => true) FROM f3;
SELECT pg_temp.wrap(r4) <> (SELECT e FROM w_old) AS new_weights FROM r;
CREATE TEMP TABLE w_new AS SELECT pg_temp.wrap(r4) AS e FROM r;
UPDATE rai4eo.model SET weights = (SELECT w FROM f3), sha256 = sha256((SELECT w FROM f3)) WHERE name = 'bounds';
SELECT pg_temp.wrap(r4) = (SELECT e FROM w_old) AS manual_update_seen FROM r;
COMMIT;
SELECT rai4eo_drop_model('bounds');
