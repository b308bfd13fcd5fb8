-- ============================================================================
-- Citus: distributing the corpus, and what runs on the workers
-- ============================================================================
--
-- Citus is optional: nothing here needs it at install time (it is looked up
-- when called).  Order on a Citus cluster, as the database owner on the
-- coordinator: CREATE EXTENSION citus on every node, add the workers, then
-- CREATE EXTENSION rai4eo CASCADE on the coordinator (Citus creates it on the
-- workers too, which gives them the tables' shells), then
-- SELECT * FROM rai4eo_distribute().

-- ---- where this node reads rai4eo.model -------------------------------------------

CREATE FUNCTION rai4eo.model_relation() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	shard text;
BEGIN
	-- Without Citus in this database, or before rai4eo_distribute(): the table.
	IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RETURN 'rai4eo.model';
	END IF;
	EXECUTE $q$
		SELECT pg_catalog.shard_name(p.logicalrelid, s.shardid)
		FROM pg_catalog.pg_dist_partition p
		JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid = p.logicalrelid
		JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = s.shardid
		WHERE p.logicalrelid = 'rai4eo.model'::regclass AND p.partmethod = 'n'
		  AND pl.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)$q$ INTO shard;
	IF shard IS NULL OR to_regclass(shard) IS NULL THEN
		RETURN 'rai4eo.model';
	END IF;
	RETURN shard;
END
$$;

COMMENT ON FUNCTION rai4eo.model_relation() IS
'The table the model cache reads: rai4eo.model, or on a Citus node with a placement of it (a reference table) that local shard, which holds every row; reading rai4eo.model itself from inside a query on a shard is refused by Citus ("cannot execute a distributed query from a query on a shard")';

-- ---- the shards the refresh works on -------------------------------------------------

CREATE FUNCTION rai4eo.citus_shard_pairs() RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	pairs jsonb;
BEGIN
	IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RETURN NULL;
	END IF;
	EXECUTE $q$
		SELECT jsonb_agg(jsonb_build_object(
				   'image', pg_catalog.shard_name(si.logicalrelid, si.shardid),
				   'embedding', pg_catalog.shard_name(se.logicalrelid, se.shardid),
				   'node', n.nodename, 'port', n.nodeport, 'after', -1, 'done', false)
			   ORDER BY si.shardid)
		FROM pg_catalog.pg_dist_partition pi
		JOIN pg_catalog.pg_dist_partition pe
		  ON pe.logicalrelid = 'rai4eo.embedding'::regclass AND pe.colocationid = pi.colocationid
		JOIN pg_catalog.pg_dist_shard si ON si.logicalrelid = pi.logicalrelid
		JOIN pg_catalog.pg_dist_shard se
		  ON se.logicalrelid = pe.logicalrelid AND se.shardminvalue = si.shardminvalue
		JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = si.shardid
		JOIN pg_catalog.pg_dist_node n ON n.groupid = pl.groupid AND n.noderole = 'primary' AND n.isactive
		WHERE pi.logicalrelid = 'rai4eo.image'::regclass AND pi.partmethod = 'h'$q$ INTO pairs;
	IF pairs IS NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
								 WHERE p.logicalrelid IN ('rai4eo.image'::regclass, 'rai4eo.embedding'::regclass)) THEN
		RAISE EXCEPTION 'rai4eo.image and rai4eo.embedding are not co-located hash-distributed tables'
			USING ERRCODE = 'feature_not_supported', HINT = 'Distribute them with rai4eo_distribute().';
	END IF;
	RETURN pairs;
END
$$;

COMMENT ON FUNCTION rai4eo.citus_shard_pairs() IS
'On Citus: the co-located shards of rai4eo.image and rai4eo.embedding with the worker holding them, as a jsonb array; NULL when rai4eo.image is not distributed';

-- ---- distributing ------------------------------------------------------------------------

CREATE FUNCTION rai4eo_distribute(shard_count integer DEFAULT NULL)
RETURNS TABLE (table_name regclass, kind text, colocation_id integer)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t regclass;
	fk record;
	fks text[] := '{}';
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_extension x WHERE x.extname = 'citus') THEN
		RAISE EXCEPTION 'rai4eo_distribute() needs the extension citus in this database'
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'On a Citus coordinator: CREATE EXTENSION citus on every node, add the workers, then create rai4eo.';
	END IF;
	IF NOT pg_catalog.citus_is_coordinator() THEN
		RAISE EXCEPTION 'rai4eo_distribute() runs on the Citus coordinator' USING ERRCODE = 'feature_not_supported';
	END IF;
	IF shard_count IS NOT NULL AND shard_count NOT BETWEEN 1 AND 64000 THEN
		RAISE EXCEPTION 'shard_count % is out of range', shard_count USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF shard_count IS NOT NULL THEN
		PERFORM set_config('citus.shard_count', shard_count::text, true);
	END IF;
	-- One transaction both distributes tables and adds foreign keys to reference
	-- tables, which Citus allows only over one connection per node.
	PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);

	IF NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = 'rai4eo.model'::regclass) THEN
		-- A reference table that local tables point at makes Citus convert those into
		-- Citus local tables, which fails for tables and views of an extension.  So the
		-- two foreign keys into the reference tables go first, on every node (the
		-- workers' copies of the tables come from CREATE EXTENSION), and come back,
		-- propagated, once the referencing tables are distributed.
		FOR fk IN
			SELECT c.conname, c.conrelid::regclass AS rel, pg_get_constraintdef(c.oid) AS def
			FROM pg_constraint c
			WHERE c.contype = 'f' AND c.confrelid IN ('rai4eo.model'::regclass, 'rai4eo.clc_class'::regclass, 'rai4eo.sensor'::regclass)
			ORDER BY c.conname
		LOOP
			EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.rel, fk.conname);
			PERFORM 1 FROM run_command_on_workers(format(
				'SET citus.enable_ddl_propagation TO off; ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I',
				fk.rel, fk.conname)) w WHERE NOT w.success;
			IF FOUND THEN
				RAISE EXCEPTION 'could not drop % on a worker', fk.conname USING ERRCODE = 'external_routine_exception';
			END IF;
			fks := fks || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.rel, fk.conname, fk.def);
		END LOOP;
		PERFORM create_reference_table('rai4eo.model');
		PERFORM create_reference_table('rai4eo.clc_class');
		PERFORM create_reference_table('rai4eo.sensor');
	END IF;
	-- A model's k-means states (rai4eo_cluster) are small and read with the model: a reference table.
	IF NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = 'rai4eo.state'::regclass) THEN
		PERFORM create_reference_table('rai4eo.state');
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = 'rai4eo.patch'::regclass) THEN
		PERFORM create_distributed_table('rai4eo.patch', 'patch_id');
	END IF;
	FOREACH t IN ARRAY ARRAY['rai4eo.patch_clc', 'rai4eo.image', 'rai4eo.embedding', 'rai4eo.review']::regclass[] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = t) THEN
			PERFORM create_distributed_table(t, 'patch_id', colocate_with => 'rai4eo.patch');
		END IF;
	END LOOP;
	FOR i IN 1 .. cardinality(fks) LOOP
		EXECUTE fks[i];
	END LOOP;
	-- The coordinator's own copies of rows now held by the shards.
	FOREACH t IN ARRAY ARRAY['rai4eo.review', 'rai4eo.embedding', 'rai4eo.image', 'rai4eo.patch_clc', 'rai4eo.patch',
							 'rai4eo.state', 'rai4eo.model', 'rai4eo.clc_class', 'rai4eo.sensor']::regclass[] LOOP
		PERFORM truncate_local_data_after_distributing_table(t);
	END LOOP;

	RETURN QUERY
	SELECT p.logicalrelid::regclass,
		   CASE p.partmethod WHEN 'n' THEN 'reference' WHEN 'h' THEN 'distributed by ' || p.partkey_name END,
		   p.colocationid
	FROM (SELECT x.logicalrelid, x.partmethod, x.colocationid,
				 pg_catalog.column_to_column_name(x.logicalrelid, x.partkey) AS partkey_name
		  FROM pg_dist_partition x) p
	WHERE p.logicalrelid IN ('rai4eo.model'::regclass, 'rai4eo.clc_class'::regclass, 'rai4eo.sensor'::regclass,
							 'rai4eo.state'::regclass,
							 'rai4eo.patch'::regclass,
							 'rai4eo.patch_clc'::regclass, 'rai4eo.image'::regclass, 'rai4eo.embedding'::regclass,
							 'rai4eo.review'::regclass)
	ORDER BY p.partmethod DESC, p.logicalrelid::regclass::text;
END
$$;

COMMENT ON FUNCTION rai4eo_distribute(integer) IS
'On a Citus coordinator: make rai4eo.model, rai4eo.clc_class and rai4eo.sensor reference tables and distribute rai4eo.patch, patch_clc, image, embedding and review by patch_id, co-located (shard_count shards, default citus.shard_count); keeps every foreign key; idempotent; returns each table''s kind and co-location group';
