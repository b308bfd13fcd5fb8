-- ============================================================================
-- clustering in embedding space: k-means states of a model's embeddings
-- ============================================================================
--
-- The seeds' refinement: a patch is a sequence of states (the nearest of k
-- centres of a model's embeddings), and a change is a persistent transition
-- to another state.  rai4eo_cluster fits the centres (spherical k-means:
-- cosine similarity, unit-norm centres) on a deterministic sample of the
-- model's embeddings and stores them here; the "cluster" score
-- (56_score.sql) uses them.

-- The centres live in rai4eo.state (30_model.sql: a table, so a state fragment).


CREATE FUNCTION rai4eo.model_states(model text) RETURNS embedding[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT array_agg(s.centre ORDER BY s.state) FROM rai4eo.state s WHERE s.model = $1
$$;
COMMENT ON FUNCTION rai4eo.model_states(text) IS 'The state centres of a model in state order; NULL when it has none';

CREATE FUNCTION rai4eo_cluster(model text, k integer DEFAULT 8, sensor text DEFAULT 'PF-SR',
	sample_size integer DEFAULT 20000, iterations integer DEFAULT 30)
RETURNS TABLE (state integer, members bigint, centre embedding)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
DECLARE
	m text;
	code integer;
	x @extschema@.embedding[];
	c @extschema@.embedding[];
	nc @extschema@.embedding[];
	counts bigint[];
	far @extschema@.embedding;
BEGIN
	m := rai4eo.resolve_model(model);
	IF k IS NULL OR k NOT BETWEEN 2 AND 256 THEN
		RAISE EXCEPTION 'k % is out of range', k USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'k-means takes 2 to 256 states.';
	END IF;
	IF sample_size IS NULL OR sample_size NOT BETWEEN 2 AND 1000000 THEN
		RAISE EXCEPTION 'sample_size % is out of range', sample_size USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'From 2 to 1,000,000 embeddings are sampled.';
	END IF;
	IF iterations IS NULL OR iterations NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'iterations % is out of range', iterations USING ERRCODE = 'invalid_parameter_value';
	END IF;
	code := rai4eo.sensor_code(sensor);		-- NULL 22004, not registered 22023
	IF NOT (has_table_privilege('rai4eo.state', 'INSERT') AND has_table_privilege('rai4eo.state', 'DELETE')) THEN
		RAISE EXCEPTION 'permission denied to store states for model "%"', m USING ERRCODE = 'insufficient_privilege',
			HINT = 'The owner of rai4eo.state can grant INSERT and DELETE on it.';
	END IF;

	-- A deterministic sample: the embeddings of the sensor in hash order of image_id.
	x := ARRAY(SELECT @extschema@.l2_normalize(e.emb) FROM rai4eo.embedding e
			   WHERE e.model = m AND rai4eo.image_sensor_code(e.image_id) = code
				 AND @extschema@.embedding_norm(e.emb) > 0
			   ORDER BY hashint8(e.image_id), e.image_id LIMIT sample_size);
	IF cardinality(x) < k THEN
		RAISE EXCEPTION 'model "%" has % non-zero % embeddings, fewer than k = %', m, cardinality(x), sensor, k
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = format('Embed more images (CALL rai4eo_refresh_embeddings(%L)) or choose a smaller k.', m);
	END IF;

	-- Farthest-point start: the first sampled embedding, then each time the one
	-- least similar to its nearest centre so far (deterministic, spreads the centres).
	c := ARRAY[x[1]];
	FOR i IN 2 .. k LOOP
		SELECT u.e INTO far FROM unnest(x) WITH ORDINALITY u(e, n)
		ORDER BY (SELECT max(@extschema@.cosine_similarity(u.e, v)) FROM unnest(c) v), u.n LIMIT 1;
		c := c || far;
	END LOOP;

	-- Lloyd iterations until the centres stop moving; an emptied state keeps its centre.
	FOR it IN 1 .. iterations LOOP
		SELECT array_agg(coalesce(a.s, c[i]) ORDER BY i), array_agg(coalesce(a.n, 0) ORDER BY i) INTO nc, counts
		FROM generate_series(1, k) i
		LEFT JOIN (SELECT rai4eo.nearest_state(u.e, c) AS st, @extschema@.l2_normalize(@extschema@.avg(u.e)) AS s, count(*) AS n
				   FROM unnest(x) u(e) GROUP BY 1) a ON a.st = i;
		EXIT WHEN nc = c;
		c := nc;
	END LOOP;

	DELETE FROM rai4eo.state s WHERE s.model = m;
	INSERT INTO rai4eo.state (model, state, centre, members)
	SELECT m, i, c[i], counts[i] FROM generate_series(1, k) i;
	RETURN QUERY SELECT s.state, s.members, s.centre FROM rai4eo.state s WHERE s.model = m ORDER BY s.state;
END
$$;

COMMENT ON FUNCTION rai4eo_cluster(text, integer, text, integer, integer) IS
'Fit k states to a model''s embeddings by spherical k-means (cosine; unit-norm centres) on a deterministic sample of sample_size non-zero embeddings of the sensor (hash order of image_id), farthest-point start, at most iterations Lloyd steps; replaces the model''s rows of rai4eo.state and returns them. The cluster change score then counts persistent transitions between states.';
