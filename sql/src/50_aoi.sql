-- ============================================================================
-- patches of an AOI (the first step of every change function)
-- ============================================================================

-- ---- patches of an AOI ------------------------------------------------------

-- Patches of different UTM zones have different SRIDs; the AOI is transformed
-- into each of them, listed by patch_srid_idx (40_corpus.sql) without reading the table:
-- a skip scan, one index descent per SRID.  It is a loop of min() queries, not a
-- recursive CTE, because Citus refuses a recursive CTE over a distributed table;
-- each min() runs on the shards and Citus combines them.

CREATE FUNCTION rai4eo.patch_srids() RETURNS SETOF integer
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 10 SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	s integer;
BEGIN
	SELECT min(@postgis@.ST_SRID(p.geom)) INTO s FROM rai4eo.patch p;
	WHILE s IS NOT NULL LOOP
		RETURN NEXT s;
		SELECT min(@postgis@.ST_SRID(p.geom)) INTO s FROM rai4eo.patch p WHERE @postgis@.ST_SRID(p.geom) > s;
	END LOOP;
END
$$;

COMMENT ON FUNCTION rai4eo.patch_srids() IS
'The distinct SRIDs of rai4eo.patch footprints, ascending (a skip scan of patch_srid_idx)';

CREATE FUNCTION rai4eo.aoi_transform(aoi geometry, srid integer) RETURNS geometry
	AS 'MODULE_PATHNAME', 'rai4eo_aoi_transform' LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION rai4eo.aoi_transform(geometry, integer) IS
'PostGIS''s ST_Transform(aoi, srid), raising 22023 (with PostGIS''s message as the detail) where PostGIS would fail with an internal error (XX000) on coordinates the projection cannot take';

-- A transverse Mercator CRS (every UTM zone) is only usable near its central
-- meridian: far from it the projection folds over (90 degrees away it sends the
-- whole of a meridian to one point, so a world envelope collapses to a line).
-- An AOI reaching further than this from the meridian is clipped to the band
-- of longitudes within it, and to latitudes -89 .. 89, before it is projected.
-- 20 degrees covers every patch a UTM zone can hold (zones are 6 wide) with
-- room for patches filed under a neighbouring zone.
CREATE FUNCTION rai4eo.aoi_in_srid(aoi geometry, srid integer) RETURNS geometry
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	half_width CONSTANT float8 := 20;
	src integer;
	src_proj text;
	dst_proj text;
	meridian float8;
	geo @postgis@.geometry;
	band @postgis@.geometry;
BEGIN
	IF aoi IS NULL OR srid IS NULL OR @postgis@.ST_IsEmpty(aoi) THEN
		RETURN NULL;
	END IF;
	src := @postgis@.ST_SRID(aoi);
	IF src = srid THEN
		RETURN aoi;
	END IF;
	SELECT r.proj4text INTO src_proj FROM @postgis@.spatial_ref_sys r WHERE r.srid = src;
	IF src_proj IS NULL THEN
		RAISE EXCEPTION 'the AOI has SRID %, which is not in spatial_ref_sys', src
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give the AOI a known SRID, e.g. ST_SetSRID(aoi, 4326) for longitude / latitude.';
	END IF;
	-- PROJ takes longitudes and latitudes out of range without an error and
	-- returns nonsense: check them here.
	IF src_proj ~ '\+proj=longlat\M'
	   -- ST_XMin takes a box3d: convert explicitly, so that no overload taking a
	   -- geometry (planted where PostGIS lives) is a better match.
	   AND (@postgis@.ST_XMin(@postgis@.Box3D(aoi)) < -180 OR @postgis@.ST_XMax(@postgis@.Box3D(aoi)) > 180
			OR @postgis@.ST_YMin(@postgis@.Box3D(aoi)) < -90 OR @postgis@.ST_YMax(@postgis@.Box3D(aoi)) > 90) THEN
		RAISE EXCEPTION 'the AOI''s coordinates are outside longitude -180 .. 180 and latitude -90 .. 90'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Its extent is %s (SRID %s).', @postgis@.Box2D(aoi)::text, src),
				  HINT = 'Longitude comes first: ST_MakePoint(lon, lat), ST_MakeEnvelope(lon_min, lat_min, lon_max, lat_max, 4326).';
	END IF;

	SELECT r.proj4text INTO dst_proj FROM @postgis@.spatial_ref_sys r WHERE r.srid = aoi_in_srid.srid;
	IF dst_proj ~ '\+proj=utm\M' THEN
		meridian := 6 * substring(dst_proj FROM '\+zone=([0-9]+)')::integer - 183;
	ELSIF dst_proj ~ '\+proj=e?tmerc\M' THEN
		meridian := coalesce(substring(dst_proj FROM '\+lon_0=([-+0-9.eE]+)')::float8, 0);
	END IF;
	IF meridian IS NULL THEN
		RETURN rai4eo.aoi_transform(aoi, srid);
	END IF;

	geo := CASE WHEN src = 4326 THEN aoi ELSE rai4eo.aoi_transform(aoi, 4326) END;
	band := @postgis@.ST_MakeEnvelope(meridian - half_width, -89, meridian + half_width, 89, 4326);
	IF @postgis@.ST_Envelope(geo) OPERATOR(@postgis@.@) band THEN
		-- Within the band: projected as given (vertices only, as ST_Transform does).
		RETURN rai4eo.aoi_transform(aoi, srid);
	END IF;
	geo := @postgis@.ST_ClipByBox2D(geo, band::@postgis@.box2d);
	IF @postgis@.ST_IsEmpty(geo) THEN
		RETURN NULL;
	END IF;
	-- Edges of a degree at most, so that the projected outline follows the curves.
	RETURN rai4eo.aoi_transform(@postgis@.ST_Segmentize(geo, 1.0::float8), srid);
END
$$;

COMMENT ON FUNCTION rai4eo.aoi_in_srid(geometry, integer) IS
'The AOI in the CRS srid, for matching patches there: as given when the SRIDs agree; for a transverse Mercator CRS (UTM) first clipped to the longitudes within 20 degrees of its central meridian (latitudes -89 .. 89) when it reaches beyond them, then projected; NULL when nothing is left. Unknown SRIDs, longitudes/latitudes out of range and coordinates the projection cannot take raise 22023';

-- PL/pgSQL, not an inlined SQL function, so that on Citus the query names
-- rai4eo.patch itself (52_pairing.sql says why); the callers take its rows as a
-- set (the pairing then reads the patches by id).
CREATE FUNCTION rai4eo.aoi_patches(aoi geometry, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry)
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1000 SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	s integer;
	g @postgis@.geometry;
	polygon boolean;
BEGIN
	IF aoi IS NULL OR @postgis@.ST_IsEmpty(aoi) THEN
		RETURN;
	END IF;
	FOR s IN SELECT x FROM rai4eo.patch_srids() x LOOP
		CONTINUE WHEN aoi_patches.srid IS NOT NULL AND s <> aoi_patches.srid;
		-- The transform once per SRID.
		g := rai4eo.aoi_in_srid(aoi, s);
		CONTINUE WHEN g IS NULL;
		-- A polygon AOI keeps the patches whose interior it overlaps: the
		-- neighbours that only touch its boundary (e.g. of an envelope drawn on
		-- the 600 m grid) are not in it.
		polygon := @postgis@.ST_Dimension(g) = 2 AND @postgis@.GeometryType(g) <> 'GEOMETRYCOLLECTION';
		RETURN QUERY
		SELECT p.patch_id, p.sample_id, p.geom
		FROM rai4eo.patch p
		WHERE p.geom OPERATOR(@postgis@.&&) g
		  -- The bounding boxes of other SRIDs' patches may overlap by accident, and
		  -- ST_Intersects refuses mixed SRIDs: test the SRID first.
		  AND CASE WHEN @postgis@.ST_SRID(p.geom) <> s THEN false
				   WHEN polygon THEN @postgis@.ST_Intersects(p.geom, g) AND NOT @postgis@.ST_Touches(p.geom, g)
				   ELSE @postgis@.ST_Intersects(p.geom, g) END;
	END LOOP;
END
$$;

COMMENT ON FUNCTION rai4eo.aoi_patches(geometry, integer) IS
'Patches of an AOI: the AOI is brought into each patch CRS by rai4eo.aoi_in_srid (a world-sized AOI works: it is clipped to each UTM zone''s usable band first; otherwise vertices only, so segmentize long edges first); a polygon AOI keeps the patches whose interior it overlaps (not those touching only its boundary), a point or line AOI every patch it intersects; srid keeps only the patches of that CRS; NULL or empty AOI: no rows; a bad AOI (unknown SRID, coordinates out of range) raises 22023';
