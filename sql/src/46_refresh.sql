-- ============================================================================
-- batch embedding: CALL rai4eo_refresh_embeddings (next to rai4eo_embed)
-- ============================================================================

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
