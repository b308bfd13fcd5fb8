-- ============================================================================
-- reading PostGIS rasters
-- ============================================================================

CREATE FUNCTION rai4eo_raster_values(rast raster, bands integer[] DEFAULT NULL) RETURNS real[]
	AS 'MODULE_PATHNAME' LANGUAGE C STABLE PARALLEL SAFE COST 500;

COMMENT ON FUNCTION rai4eo_raster_values(raster, integer[]) IS
'Pixels of the raster as real[band][row][column] (row 1 on top), NULL where a pixel is nodata; bands in the order given, all bands when NULL. Out-db bands are read through PostGIS, so postgis.enable_outdb_rasters and postgis.gdal_enabled_drivers apply. STABLE because out-db files can change.';
