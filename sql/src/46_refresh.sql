-- ============================================================================
-- batch embedding: CALL rai4eo_refresh_embeddings (next to rai4eo_embed)
-- ============================================================================

-- ---- one batch: claim, embed, insert ---------------------------------------------
--
-- The unit of work of the refresh, on one node or on one Citus shard: claim up
-- to lim images of the image table that have no embedding under the model
-- (image_id > after, not in failed), embed them in one batched forward pass and
-- insert the embeddings.  On one node the tables are rai4eo.image and
-- rai4eo.embedding; on Citus the procedure runs this on each worker with a
-- co-located pair of shards, so rasters never leave their node and the claim
-- (SELECT ... FOR NO KEY UPDATE [SKIP LOCKED], which Citus refuses across
-- shards) is a local one.  Images that cannot be embedded are retried one by
-- one and returned as failures; the caller reports them.

CREATE FUNCTION rai4eo.refresh_batch(image_table regclass, embedding_table regclass, model text, sensor text,
	lim integer, after bigint, failed bigint[], wait boolean) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	claimed bigint[];
	ids bigint[];
	rasts @postgis@.raster[];
	embs @extschema@.embedding[];
	one @extschema@.embedding;
	ok boolean;
	err text;
	n bigint;
	embedded bigint := 0;
	failures jsonb := '[]';
BEGIN
	EXECUTE format(
		'SELECT array_agg(c.image_id ORDER BY c.image_id) FROM (
			SELECT i.image_id FROM %s i
			WHERE i.image_id > $1 AND ($2::text IS NULL OR i.sensor = $2)
			  AND NOT EXISTS (SELECT 1 FROM %s e WHERE e.image_id = i.image_id AND e.patch_id = i.patch_id AND e.model = $3)
			  AND i.image_id <> ALL ($4)
			ORDER BY i.image_id LIMIT $5
			FOR NO KEY UPDATE OF i%s) c',
		image_table, embedding_table, CASE WHEN wait THEN '' ELSE ' SKIP LOCKED' END)
	INTO claimed USING after, sensor, model, coalesce(failed, '{}'), lim;
	IF claimed IS NULL THEN
		RETURN jsonb_build_object('claimed', 0, 'after', after, 'embedded', 0, 'failed', failures);
	END IF;

	-- A claim's snapshot predates the lock: another session may have committed
	-- embeddings of these images in between, which this fresh statement sees.
	EXECUTE format(
		'SELECT array_agg(i.image_id ORDER BY i.image_id), array_agg(i.rast ORDER BY i.image_id)
		 FROM %s i
		 WHERE i.image_id = ANY ($1)
		   AND NOT EXISTS (SELECT 1 FROM %s e WHERE e.image_id = i.image_id AND e.patch_id = i.patch_id AND e.model = $2)',
		image_table, embedding_table)
	INTO ids, rasts USING claimed, model;

	IF ids IS NOT NULL THEN
		ok := true;
		BEGIN
			embs := @extschema@.rai4eo_embed(rasts, model);
			IF array_position(embs, NULL) IS NOT NULL THEN
				RAISE EXCEPTION 'rai4eo_embed returned NULL for an image';
			END IF;
			EXECUTE format('INSERT INTO %s (image_id, patch_id, model, emb)
							SELECT u.id, rai4eo.image_patch_id(u.id), $1, u.e FROM unnest($2, $3) u(id, e)
							ON CONFLICT DO NOTHING', embedding_table)
			USING model, ids, embs;
			GET DIAGNOSTICS n = ROW_COUNT;
			embedded := embedded + n;
		EXCEPTION WHEN OTHERS THEN
			ok := false;
		END;
		-- Image by image, each in its own subtransaction, to find the culprits.
		IF NOT ok THEN
			FOR k IN 1 .. cardinality(ids) LOOP
				BEGIN
					one := @extschema@.rai4eo_embed(rasts[k], model);
					IF one IS NULL THEN
						RAISE EXCEPTION 'rai4eo_embed returned NULL' USING ERRCODE = 'null_value_not_allowed';
					END IF;
					EXECUTE format('INSERT INTO %s (image_id, patch_id, model, emb) VALUES ($1, rai4eo.image_patch_id($1), $2, $3)
									ON CONFLICT DO NOTHING', embedding_table)
					USING ids[k], model, one;
					GET DIAGNOSTICS n = ROW_COUNT;
					embedded := embedded + n;
				EXCEPTION WHEN OTHERS THEN
					GET STACKED DIAGNOSTICS err = MESSAGE_TEXT;
					failures := failures || jsonb_build_array(jsonb_build_array(ids[k], SQLSTATE, err));
				END;
			END LOOP;
		END IF;
	END IF;
	RETURN jsonb_build_object('claimed', cardinality(claimed), 'after', claimed[cardinality(claimed)],
							  'embedded', embedded, 'failed', failures);
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_batch(regclass, regclass, text, text, integer, bigint, bigint[], boolean) IS
'One batch of rai4eo_refresh_embeddings on an image table and its embedding table (the tables, or a co-located pair of Citus shards): claims up to lim images after image_id after without an embedding under model (skipping locked ones unless wait), embeds and inserts them; returns {claimed, after, embedded, failed: [[image_id, sqlstate, message], ...]}';

-- ---- many batches on the shards of one Citus worker ----------------------------------
--
-- On Citus a round of the refresh is one call of this on every worker (through
-- master_run_on_worker, which opens a new connection each time; the new backend
-- then loads the libraries and the model).  So a round does not stop after one
-- batch: the worker takes its pending shards in turn, batch after batch, until
-- the round has lasted `seconds`, lim images are done or its shards are
-- exhausted.  The round is one transaction on the worker: an interrupted refresh
-- loses at most one round per worker.

CREATE FUNCTION rai4eo.refresh_shards(shards jsonb, model text, sensor text, batch integer, lim bigint,
	failed bigint[], wait boolean, seconds float8) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	s jsonb;
	r jsonb;
	cursor_ bigint;
	done_ boolean;
	left_ bigint := coalesce(lim, 9223372036854775807);
	embedded bigint := 0;
	failures jsonb := '[]';
	progress jsonb := '[]';
	skip bigint[] := coalesce(failed, '{}');
BEGIN
	FOR s IN SELECT x FROM jsonb_array_elements(shards) x LOOP
		cursor_ := (s ->> 'after')::bigint;
		done_ := false;
		WHILE NOT done_ AND left_ > 0 AND clock_timestamp() - t0 < make_interval(secs => seconds) LOOP
			r := rai4eo.refresh_batch((s ->> 'image')::regclass, (s ->> 'embedding')::regclass, model, sensor,
									  least(batch, left_)::integer, cursor_, skip, wait);
			IF (r ->> 'claimed')::integer = 0 THEN
				done_ := true;
			ELSE
				cursor_ := (r ->> 'after')::bigint;
				-- what max_images counts: embedded and failed
				left_ := left_ - (r ->> 'embedded')::bigint - jsonb_array_length(r -> 'failed');
				embedded := embedded + (r ->> 'embedded')::bigint;
				failures := failures || (r -> 'failed');
				skip := skip || ARRAY(SELECT (f ->> 0)::bigint FROM jsonb_array_elements(r -> 'failed') f);
			END IF;
		END LOOP;
		progress := progress || jsonb_build_array(jsonb_build_object('ord', s -> 'ord', 'after', cursor_, 'done', done_));
	END LOOP;
	RETURN jsonb_build_object('shards', progress, 'embedded', embedded, 'failed', failures);
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_shards(jsonb, text, text, integer, bigint, bigint[], boolean, float8) IS
'One round of rai4eo_refresh_embeddings on a Citus worker: rai4eo.refresh_batch on each of its shards in turn (shards: [{image, embedding, after, ord}, ...]), batch images at a time, until seconds have passed, lim images (NULL: no limit) are embedded or failed, or every shard is exhausted; returns {shards: [{ord, after, done}], embedded, failed}';

-- ---- the refresh's steps ----------------------------------------------------------
--
-- The procedure commits after every step, so it cannot pin its search_path
-- (docs/sql-conventions.md); it only passes a jsonb state between these pinned
-- functions, which do the work.

CREATE FUNCTION rai4eo.refresh_start(model text, sensor text, batch_size integer, max_images bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m text;
	total bigint;
	shards jsonb := rai4eo.citus_shard_pairs();
BEGIN
	m := rai4eo.resolve_model(model);
	IF (SELECT x.arch FROM rai4eo.model x WHERE x.name = m) = 'external' THEN
		RAISE EXCEPTION 'model "%" holds external embeddings: the database cannot compute them', m
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Insert its embeddings into rai4eo.embedding directly.';
	END IF;
	IF (SELECT x.arch FROM rai4eo.model x WHERE x.name = m) IN ('lstm', 'gru') THEN
		RAISE EXCEPTION 'model "%" is a temporal classifier: it reads sequences of embeddings, not images', m
			USING ERRCODE = 'wrong_object_type',
				  HINT = 'Use rai4eo_classify_series() or rai4eo_classify_sequence().';
	END IF;
	IF sensor IS NOT NULL THEN
		PERFORM rai4eo.sensor_code(sensor);		-- 22023 unless registered
	END IF;
	IF batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 4096 THEN
		RAISE EXCEPTION 'batch_size % is out of range', batch_size USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'batch_size runs from 1 to 4096 images.';
	END IF;
	IF max_images < 0 THEN
		RAISE EXCEPTION 'max_images must not be negative' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT count(*) INTO total FROM (
		SELECT 1 FROM rai4eo.image i
		WHERE (refresh_start.sensor IS NULL OR i.sensor = refresh_start.sensor)
		  AND NOT EXISTS (SELECT 1 FROM rai4eo.embedding e
						  WHERE e.image_id = i.image_id AND e.patch_id = i.patch_id AND e.model = m)
		LIMIT max_images) s;
	RETURN jsonb_build_object('model', m, 'sensor', sensor, 'batch', batch_size, 'cap', max_images,
		'total', total, 'embedded', 0, 'skipped', 0, 'failed', '[]'::jsonb, 'after', -1, 'sweeping', false,
		'finished', false, 't0', clock_timestamp(), 'shown', NULL, 'shards', shards);
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_start(text, text, integer, bigint) IS
'rai4eo_refresh_embeddings: check the arguments, count the images to embed and return the state the steps pass on (with the Citus shard pairs when rai4eo.image is distributed)';

-- Report the images of one batch that could not be embedded and add them to the state.
CREATE FUNCTION rai4eo.refresh_note_failures(st jsonb, r jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	f jsonb;
	id bigint;
BEGIN
	FOR f IN SELECT x FROM jsonb_array_elements(r -> 'failed') x LOOP
		id := (f ->> 0)::bigint;
		RAISE WARNING 'rai4eo_refresh_embeddings: image % skipped: %', id, f ->> 2
			USING DETAIL = format('Image %s of patch %s, %s, acquired %s; SQLSTATE %s.', id,
								  coalesce((SELECT p.sample_id FROM rai4eo.patch p WHERE p.patch_id = rai4eo.image_patch_id(id)),
										   rai4eo.image_patch_id(id)::text),
								  -- (the refresh's own sensor: a registry lookup here would be
								  -- sent with the patch lookup to a Citus shard, which refuses it)
								  st ->> 'sensor',
								  rai4eo.image_acquired(id), f ->> 1);
		st := jsonb_set(st, '{failed}', (st -> 'failed') || to_jsonb(id));
		st := jsonb_set(st, '{skipped}', to_jsonb((st ->> 'skipped')::bigint + 1));
	END LOOP;
	RETURN jsonb_set(st, '{embedded}', to_jsonb((st ->> 'embedded')::bigint + (r ->> 'embedded')::bigint));
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_note_failures(jsonb, jsonb) IS
'rai4eo_refresh_embeddings: WARNING for each image a batch could not embed; adds the batch''s counts to the state';

CREATE FUNCTION rai4eo.refresh_step(st jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m text := st ->> 'model';
	sens text := st ->> 'sensor';
	batch integer := (st ->> 'batch')::integer;
	cap bigint := (st ->> 'cap')::bigint;
	sweeping boolean := (st ->> 'sweeping')::boolean;
	failed bigint[] := ARRAY(SELECT jsonb_array_elements_text(st -> 'failed')::bigint);
	remaining bigint;
	r jsonb;
	-- A Citus round's length: long enough that a worker connection and the model
	-- load it costs are a small part of it, short enough for the progress NOTICE.
	round_seconds CONSTANT float8 := 4;
	nodes text[];
	ports integer[];
	lists text[];
	sel_nodes text[];
	sel_ports integer[];
	cmds text[];
	k integer;
	res record;
	x jsonb;
	rate float8;
	total bigint := (st ->> 'total')::bigint;
	n bigint;
BEGIN
	remaining := cap - (st ->> 'embedded')::bigint - (st ->> 'skipped')::bigint;
	IF remaining <= 0 THEN
		RETURN jsonb_set(st, '{finished}', 'true');
	END IF;

	IF st -> 'shards' = 'null'::jsonb THEN
		-- One node: one batch after the cursor.
		r := rai4eo.refresh_batch('rai4eo.image'::regclass, 'rai4eo.embedding'::regclass, m, sens,
								  least(batch, remaining)::integer, (st ->> 'after')::bigint, failed, sweeping);
		IF (r ->> 'claimed')::integer = 0 THEN
			IF sweeping THEN
				RETURN jsonb_set(st, '{finished}', 'true');
			END IF;
			-- Pass 2 starts over and waits for claims (see the procedure's comment).
			RETURN jsonb_set(jsonb_set(st, '{sweeping}', 'true'), '{after}', '-1');
		END IF;
		st := jsonb_set(st, '{after}', r -> 'after');
		st := rai4eo.refresh_note_failures(st, r);
	ELSE
		-- Citus: one round on every worker at once, run on the worker itself
		-- (master_run_on_worker, committed there): rai4eo.refresh_shards over the
		-- worker's pending shards for up to round_seconds.
		SELECT array_agg(w.node ORDER BY w.node, w.port), array_agg(w.port ORDER BY w.node, w.port),
			   array_agg(w.shards::text ORDER BY w.node, w.port)
		  INTO nodes, ports, lists
		FROM (SELECT o.s ->> 'node' AS node, (o.s ->> 'port')::integer AS port,
					 jsonb_agg(jsonb_build_object('image', o.s -> 'image', 'embedding', o.s -> 'embedding',
												  'after', o.s -> 'after', 'ord', o.ord) ORDER BY o.ord) AS shards
			  FROM jsonb_array_elements(st -> 'shards') WITH ORDINALITY o(s, ord)
			  WHERE NOT (o.s ->> 'done')::boolean
			  GROUP BY 1, 2) w;
		IF nodes IS NULL THEN
			IF sweeping THEN
				RETURN jsonb_set(st, '{finished}', 'true');
			END IF;
			st := jsonb_set(st, '{sweeping}', 'true');
			st := jsonb_set(st, '{shards}', (SELECT jsonb_agg(s || '{"after": -1, "done": false}' ORDER BY o)
											 FROM jsonb_array_elements(st -> 'shards') WITH ORDINALITY q(s, o)));
			RETURN st;
		END IF;
		-- Split what max_images leaves over the workers, so that no round overshoots it.
		FOR k IN 1 .. cardinality(nodes) LOOP
			n := remaining / cardinality(nodes) + CASE WHEN k <= remaining % cardinality(nodes) THEN 1 ELSE 0 END;
			CONTINUE WHEN n <= 0;
			sel_nodes := sel_nodes || nodes[k];
			sel_ports := sel_ports || ports[k];
			cmds := cmds || format('SELECT rai4eo.refresh_shards(%L, %L, %L, %s, %L, %L, %L, %s)::text',
								   lists[k], m, sens, batch, n, failed, sweeping, round_seconds);
		END LOOP;
		k := 0;
		FOR res IN EXECUTE 'SELECT w.success, w.result FROM pg_catalog.master_run_on_worker($1, $2, $3, true) w'
				   USING sel_nodes, sel_ports, cmds LOOP
			k := k + 1;
			IF NOT res.success THEN
				RAISE EXCEPTION 'rai4eo_refresh_embeddings: a round on %:% failed: %', sel_nodes[k], sel_ports[k], res.result
					USING ERRCODE = 'external_routine_exception';
			END IF;
			r := res.result::jsonb;
			FOR x IN SELECT y FROM jsonb_array_elements(r -> 'shards') y LOOP
				n := (x ->> 'ord')::bigint;
				st := jsonb_set(st, ARRAY['shards', (n - 1)::text],
								(st -> 'shards' -> (n::integer - 1)) || jsonb_build_object('after', x -> 'after', 'done', x -> 'done'));
			END LOOP;
			st := rai4eo.refresh_note_failures(st, r);
		END LOOP;
	END IF;

	IF st ->> 'shown' IS NULL OR clock_timestamp() - (st ->> 'shown')::timestamptz >= interval '10 seconds' THEN
		n := (st ->> 'embedded')::bigint + (st ->> 'skipped')::bigint;
		rate := n / greatest(extract(epoch FROM clock_timestamp() - (st ->> 't0')::timestamptz), 1e-3);
		RAISE NOTICE 'rai4eo_refresh_embeddings(%): %/% images (% %%), % images/s, ETA %', m,
			n, total, round(100.0 * n / greatest(total, 1), 1), round(rate::numeric, 1),
			justify_hours(make_interval(secs => round(greatest(total - n, 0) / greatest(rate, 1e-9))));
		st := jsonb_set(st, '{shown}', to_jsonb(clock_timestamp()));
	END IF;
	RETURN st;
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_step(jsonb) IS
'rai4eo_refresh_embeddings: one step (one batch on one node; on Citus one round of rai4eo.refresh_shards on every worker, run there), with the progress NOTICE every 10 s; returns the new state';

CREATE FUNCTION rai4eo.refresh_finish(st jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RAISE NOTICE 'rai4eo_refresh_embeddings(%): finished: % embedded, % skipped, in % s', st ->> 'model',
		st ->> 'embedded', st ->> 'skipped',
		round(extract(epoch FROM clock_timestamp() - (st ->> 't0')::timestamptz)::numeric, 1);
END
$$;

COMMENT ON FUNCTION rai4eo.refresh_finish(jsonb) IS 'rai4eo_refresh_embeddings: the closing NOTICE';

-- ---- the procedure ------------------------------------------------------------------

-- Commits between steps, so no SET clause: only qualified names (docs/sql-conventions.md).
CREATE PROCEDURE rai4eo_refresh_embeddings(model text, sensor text DEFAULT NULL, batch_size integer DEFAULT 32,
	max_images bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
	st pg_catalog.jsonb;
BEGIN
	-- Batches are committed one by one, which a transaction block forbids: fail now, not after the first batch.
	COMMIT;
	st := rai4eo.refresh_start(model, sensor, batch_size, max_images);
	COMMIT;
	-- Pass 1 walks the images in image_id order (per shard on Citus) and skips those
	-- other sessions have claimed.  Pass 2 starts over and waits for claims: it picks
	-- up images behind the cursor (claims rolled back, images loaded meanwhile) and
	-- those a refresh of another model holds, so that the procedure returns only when
	-- every image is embedded or reported.  Within one call a failed image is never
	-- tried again.
	LOOP
		st := rai4eo.refresh_step(st);
		COMMIT;
		EXIT WHEN (st OPERATOR(pg_catalog.->>) 'finished'::pg_catalog.text)::pg_catalog.bool;
	END LOOP;
	PERFORM rai4eo.refresh_finish(st);
END
$$;

COMMENT ON PROCEDURE rai4eo_refresh_embeddings(text, text, integer, bigint) IS
'Embed every image (of one sensor, or both when NULL) that has no embedding under the model (NULL: rai4eo.default_model), batch_size images per batched forward pass and per commit, at most max_images; NOTICE progress (done/total, images/s, ETA) every 10 s and a summary. Images whose raster cannot be embedded get a WARNING and are skipped. Sessions running it at once share the work (claims: SELECT ... FOR NO KEY UPDATE SKIP LOCKED); only at the end does a session wait for images still claimed by others. Interrupted, it keeps every committed batch: run it again. Call it outside a transaction block. On Citus (rai4eo_distribute()) the batches run on the workers, each on a shard''s own rasters, in rounds of a few seconds (one transaction per worker and round).';
