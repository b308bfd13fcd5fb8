-- ============================================================================
-- the install's last step: bind @postgis@ to PostGIS's schema
-- ============================================================================
--
-- PostgreSQL 15 substitutes only @extschema@ in extension scripts, but our
-- routines run with search_path = pg_catalog, pg_temp (docs/sql-conventions.md)
-- and so must name PostGIS's objects by schema.  They are written
-- @postgis@.name; here every routine of the extension that contains the
-- token is re-created with PostGIS's schema in its place, now with body
-- checking on, so a misspelt name still fails the install.  Upgrade scripts
-- end with the same call.

CREATE FUNCTION rai4eo.bind_postgis_schema() RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	-- Spelt in pieces, or this body would hold the token and rewrite itself.
	token CONSTANT text := '@' || 'postgis' || '@';
	gis name;
	rast name;
	f oid;
	n integer := 0;
BEGIN
	SELECT x.extnamespace::regnamespace::name INTO gis FROM pg_extension x WHERE x.extname = 'postgis';
	SELECT x.extnamespace::regnamespace::name INTO rast FROM pg_extension x WHERE x.extname = 'postgis_raster';
	IF gis IS NULL OR rast IS NULL THEN
		RAISE EXCEPTION 'rai4eo needs the extensions postgis and postgis_raster'
			USING ERRCODE = 'undefined_object', HINT = 'CREATE EXTENSION rai4eo CASCADE installs them.';
	END IF;
	IF gis <> rast THEN
		RAISE EXCEPTION 'postgis is in schema "%" but postgis_raster in "%"', gis, rast
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'rai4eo names both through one schema: install postgis_raster into the schema of postgis.';
	END IF;
	SET LOCAL check_function_bodies = on;
	FOR f IN
		SELECT p.oid FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
		WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
		  AND d.refobjid = (SELECT x.oid FROM pg_extension x WHERE x.extname = 'rai4eo')
		  AND strpos(p.prosrc, token) > 0
		ORDER BY p.oid
	LOOP
		EXECUTE replace(pg_get_functiondef(f), token, quote_ident(gis));
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

COMMENT ON FUNCTION rai4eo.bind_postgis_schema() IS
'Install step: replace the token @postgis@ in the extension''s routines by the schema of PostGIS (run by the install and upgrade scripts); returns how many routines it re-created';
REVOKE ALL ON FUNCTION rai4eo.bind_postgis_schema() FROM PUBLIC;

SELECT rai4eo.bind_postgis_schema();
