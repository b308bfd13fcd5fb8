-- ============================================================================
-- patches of an AOI (the first step of every change function)
-- ============================================================================

-- ---- patches of an AOI ------------------------------------------------------

-- Patches of different UTM zones have different SRIDs; the AOI is transformed
-- into each of them, listed by patch_srid_idx (40_corpus.sql) without reading the table.

CREATE FUNCTION rai4eo.patch_srids() RETURNS SETOF integer
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	WITH RECURSIVE s(srid) AS (
		SELECT min(@postgis@.ST_SRID(geom)) FROM rai4eo.patch
		UNION ALL
		SELECT (SELECT min(@postgis@.ST_SRID(p.geom)) FROM rai4eo.patch p WHERE @postgis@.ST_SRID(p.geom) > s.srid)
		FROM s WHERE s.srid IS NOT NULL)
	SELECT srid FROM s WHERE srid IS NOT NULL
$$;

COMMENT ON FUNCTION rai4eo.patch_srids() IS
'The distinct SRIDs of rai4eo.patch footprints, ascending (a skip scan of patch_srid_idx)';

CREATE FUNCTION rai4eo.aoi_patches(aoi geometry, srid integer DEFAULT NULL)
RETURNS TABLE (patch_id bigint, sample_id text, geom geometry)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.patch_id, p.sample_id, p.geom
	FROM rai4eo.patch_srids() s(srid)
	-- OFFSET 0 keeps the transform once per SRID instead of once per patch.
	CROSS JOIN LATERAL (SELECT @postgis@.ST_Transform($1, s.srid) AS g WHERE NOT @postgis@.ST_IsEmpty($1) OFFSET 0) a
	JOIN rai4eo.patch p ON p.geom OPERATOR(@postgis@.&&) a.g
	WHERE ($2 IS NULL OR s.srid = $2)
	  -- The bounding boxes of other SRIDs' patches may overlap by accident, and
	  -- ST_Intersects refuses mixed SRIDs: test the SRID first.
	  AND CASE WHEN @postgis@.ST_SRID(p.geom) <> s.srid THEN false
			   -- A polygon AOI keeps the patches whose interior it overlaps: the
			   -- neighbours that only touch its boundary (e.g. of an envelope
			   -- drawn on the 600 m grid) are not in it.
			   WHEN @postgis@.ST_Dimension(a.g) = 2 AND @postgis@.GeometryType(a.g) <> 'GEOMETRYCOLLECTION'
			   THEN @postgis@.ST_Intersects(p.geom, a.g) AND NOT @postgis@.ST_Touches(p.geom, a.g)
			   ELSE @postgis@.ST_Intersects(p.geom, a.g) END
$$;

COMMENT ON FUNCTION rai4eo.aoi_patches(geometry, integer) IS
'Patches of an AOI: the AOI is transformed into each patch CRS (vertices only: segmentize long edges first); a polygon AOI keeps the patches whose interior it overlaps (not those touching only its boundary), a point or line AOI every patch it intersects; srid keeps only the patches of that CRS; NULL or empty AOI: no rows';
