-- ============================================================================
-- PNG output: heatmap_png, rai4eo_quicklook
-- ============================================================================

-- ---- PNG ----------------------------------------------------------------------
--
-- ST_AsPNG needs the GDAL PNG driver, which postgis.gdal_enabled_drivers
-- (superuser-only, DISABLE_ALL by default) keeps off.  These are written in C
-- on zlib (src/core/png.c) and need nothing: the bands are read by the
-- extension's own raster decoder (out-db bands through PostGIS).

CREATE FUNCTION heatmap_png(rast raster, band integer DEFAULT 1, min_value float8 DEFAULT 0, max_value float8 DEFAULT 1,
	ramp text DEFAULT 'heat', scale integer DEFAULT 1, legend boolean DEFAULT false)
RETURNS bytea
	AS 'MODULE_PATHNAME', 'rai4eo_heatmap_png' LANGUAGE C STABLE PARALLEL SAFE COST 1000;

COMMENT ON FUNCTION heatmap_png(raster, integer, float8, float8, text, integer, boolean) IS
'A band of a raster as a colour PNG for dashboards, without GDAL drivers (no superuser setting needed): values from min_value to max_value mapped along the ramp (heat, viridis or gray; values outside are clamped; palette index 1 + round(254 t)), nodata and NaN transparent, each pixel drawn scale x scale (1 .. 64), zlib-compressed, at most 8192 x 8192 pixels. Without a legend an 8-bit palette PNG (index 0 transparent); legend => true gives RGBA with a white strip below: the colour bar, ticks and the min, middle and max values. NULL raster: NULL';

CREATE FUNCTION rai4eo_quicklook(rast raster, bands integer[] DEFAULT NULL, stretch text DEFAULT 'percentile',
	scale integer DEFAULT 1, low float8 DEFAULT NULL, high float8 DEFAULT NULL)
RETURNS bytea
	AS 'MODULE_PATHNAME', 'rai4eo_quicklook' LANGUAGE C STABLE PARALLEL SAFE COST 1000;

COMMENT ON FUNCTION rai4eo_quicklook(raster, integer[], text, integer, float8, float8) IS
'A quicklook PNG of any image: 3 bands as red, green, blue (RGBA PNG) or 1 band as grey (grey + alpha PNG); bands NULL means 3, 2, 1 (true colour of PF-SR BGRN and S2-SR) or band 1 when there are fewer than 3. Each band is stretched to 0 .. 255 between low and high: stretch percentile (default; low, high are percentiles of the band''s valid pixels, default 2 and 98, linear between ranks as numpy.percentile), minmax (the band''s own minimum and maximum), or fixed (low, high are values, the same for every band and image: comparable before/after pictures). A pixel nodata in any band is transparent; scale 1 .. 64; at most 8192 x 8192 pixels. NULL raster: NULL';
