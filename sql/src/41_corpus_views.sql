-- ============================================================================
-- corpus views: inserting without computing keys, coarse classes per patch
-- ============================================================================

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
'Insert patches without computing patch_id: INSERT INTO rai4eo.patch_input (sample_id, geom, country) ... [RETURNING patch_id]; sample_id a RapidAI4EO id or the user''s own (e.g. tile_12_34, geom in any CRS); a patch_id given must equal rai4eo.patch_id_of(sample_id); an own id whose hash meets another stored id''s: 23505; reading it reads rai4eo.patch';

CREATE FUNCTION rai4eo.patch_input_insert() RETURNS trigger
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	pid bigint;
	other text;
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
	-- Two own ids whose hashes meet (rai4eo.patch_id_of): say so instead of a bare key error.
	SELECT p.sample_id INTO other FROM rai4eo.patch p WHERE p.patch_id = pid AND p.sample_id <> NEW.sample_id;
	IF other IS NOT NULL THEN
		RAISE EXCEPTION 'patch id "%" has the same patch_id % as the stored "%"', NEW.sample_id, pid, other
			USING ERRCODE = 'unique_violation', HINT = 'Own ids are hashed into 33 bits; rename this one (e.g. add a suffix).';
	END IF;
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
SELECT i.image_id, i.patch_id, p.sample_id, i.sensor, i.acquired, i.rast
FROM rai4eo.image i
JOIN rai4eo.patch p ON p.patch_id = i.patch_id;

COMMENT ON VIEW rai4eo.image_input IS
'Insert images without computing image_id: INSERT INTO rai4eo.image_input (sample_id or patch_id, sensor, acquired, rast) ... [RETURNING image_id]; sample_id RapidAI4EO''s or the user''s own, sensor a registered one (rai4eo.sensor; else 22023); given ones must agree with each other and with rai4eo.image_id_of; reading it reads rai4eo.image with its patch''s sample_id';

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
	IF NEW.sample_id IS NULL THEN
		SELECT p.sample_id INTO NEW.sample_id FROM rai4eo.patch p WHERE p.patch_id = pid;
	END IF;
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION rai4eo.image_input_insert() IS
'INSTEAD OF INSERT trigger of rai4eo.image_input: derives image_id (and patch_id from sample_id) and inserts into rai4eo.image';

CREATE TRIGGER image_input_insert INSTEAD OF INSERT ON rai4eo.image_input
	FOR EACH ROW EXECUTE FUNCTION rai4eo.image_input_insert();

-- ---- coarse classes per patch -----------------------------------------------

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
