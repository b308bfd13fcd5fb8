/*
 * png.h — PNG output of rai4eo without PostgreSQL: colour-ramp heatmaps
 * (8-bit palette, or RGBA with a legend bar) and band quicklooks (RGBA or
 * grey + alpha), compressed with zlib.
 *
 * The images are rendered one output row at a time straight into the deflate
 * stream, so memory stays at the size of the source band plus the PNG itself
 * however large `scale` makes the picture.  Filter type 0 (none) on every
 * scanline: it is what the PNG specification recommends for palette images,
 * and it keeps the decoded bytes equal to the palette indices.
 */
#ifndef RAI4EO_PNG_H
#define RAI4EO_PNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rai4eo/core.h"

/* Largest picture written, in output pixels (8192 x 8192). */
#define R4_PNG_MAX_PIXELS	(1 << 26)
/* Each source pixel becomes scale x scale output pixels. */
#define R4_PNG_MAX_SCALE	64

/*
 * Called between row blocks; returning false stops the work with
 * R4_ERR_LIMIT ("interrupted").  The PostgreSQL glue runs
 * CHECK_FOR_INTERRUPTS in it, which may also never return.
 */
typedef bool (*R4PngCheck) (void *arg);

typedef enum R4PngRamp
{
	R4_RAMP_HEAT = 0,			/* light yellow to dark red */
	R4_RAMP_VIRIDIS,
	R4_RAMP_GRAY
} R4PngRamp;

/* Parse a ramp name ("heat", "viridis", "gray"); false when unknown. */
bool		r4_png_ramp_parse(const char *name, R4PngRamp *ramp);

/*
 * The heatmap palette: entry 0 is nodata (black, fully transparent), entries
 * 1 .. 255 run along the ramp's colour stops from min to max (linear between
 * stops, channels rounded half to even).  rgb gets 256 * 3 bytes.
 */
void		r4_png_ramp_palette(R4PngRamp ramp, uint8_t rgb[768]);

/*
 * Palette index of a value: 0 for NaN, else 1 + rint(254 * t) with
 * t = (v - min) / (max - min) clamped to 0 .. 1.
 */
uint8_t		r4_png_heat_index(double v, double min_value, double max_value);

typedef struct R4HeatmapOptions
{
	double		min_value;		/* finite, below max_value */
	double		max_value;
	R4PngRamp	ramp;
	int			scale;			/* 1 .. R4_PNG_MAX_SCALE */
	bool		legend;			/* add a colour bar with min / mid / max labels */
	int			level;			/* zlib level 0 .. 9, or -1 for zlib's default */
} R4HeatmapOptions;

/* Height in pixels of the legend strip under an image width px wide. */
int			r4_png_legend_height(uint32_t width);

/*
 * Size of the heatmap PNG picture: width * scale by height * scale, and with
 * a legend at least R4_PNG_LEGEND_MIN_WIDTH wide plus the legend strip.
 * R4_ERR_RANGE for a bad scale, R4_ERR_LIMIT when over R4_PNG_MAX_PIXELS.
 * Callers check this before reading the pixels.
 */
#define R4_PNG_LEGEND_MIN_WIDTH 160
R4Status	r4_png_heatmap_size(uint32_t width, uint32_t height, const R4HeatmapOptions *opt,
								uint32_t *out_width, uint32_t *out_height, R4Error *err);

/*
 * Encode one band (height rows of width values, row 0 on top) as a heatmap
 * PNG.  mask (may be NULL) marks nodata pixels (transparent, like NaN).
 * Without a legend the PNG is 8-bit palette (colour type 3) with a tRNS
 * chunk making index 0 transparent; with a legend it is 8-bit RGBA (colour
 * type 6): the heatmap on top (transparent where nodata and where the legend
 * is wider than the map), then an opaque white strip with the colour bar,
 * tick marks at min, middle and max and their values printed ("%.4g").
 *
 * *out (allocated with r4_alloc) gets `reserve` unused bytes followed by the
 * PNG; *out_len counts the PNG bytes only (reserve lets the glue put a
 * varlena header in front without copying).
 */
R4Status	r4_png_heatmap(const float *values, const uint8_t *mask, uint32_t width,
						   uint32_t height, const R4HeatmapOptions *opt, size_t reserve,
						   uint8_t **out, size_t *out_len, R4PngCheck check, void *check_arg,
						   R4Error *err);

typedef enum R4Stretch
{
	R4_STRETCH_PERCENTILE = 0,	/* low / high are percentiles (0 .. 100) of each band */
	R4_STRETCH_MINMAX,			/* each band's own minimum and maximum */
	R4_STRETCH_FIXED			/* low / high are values, the same for every band */
} R4Stretch;

bool		r4_png_stretch_parse(const char *name, R4Stretch *stretch);

typedef struct R4QuicklookOptions
{
	R4Stretch	stretch;
	double		low;			/* see R4Stretch; ignored for MINMAX */
	double		high;
	int			scale;
	int			level;
} R4QuicklookOptions;

/*
 * Percentile p (0 .. 100) of n values, interpolated linearly between the
 * closest ranks as numpy.percentile does by default.  values is reordered.
 */
double		r4_percentile(float *values, size_t n, double p);

/*
 * Stretch limits of each of nbands planes (width * height each) over the
 * pixels valid in every band (mask 0 and not NaN).  lo / hi get nbands
 * values; *nvalid the number of such pixels (limits are 0 when it is 0).
 */
R4Status	r4_png_stretch_limits(const float *planes, const uint8_t *mask, int nbands,
								  size_t npixels, const R4QuicklookOptions *opt,
								  double *lo, double *hi, size_t *nvalid, R4Error *err);

/* Grey level of a value: rint(255 * clamp((v - lo) / (hi - lo), 0, 1)); 0 .. 255. */
uint8_t		r4_png_stretch_value(double v, double lo, double hi);

/*
 * A quicklook PNG of 1 band (grey + alpha, colour type 4) or 3 bands (red,
 * green, blue; RGBA, colour type 6), each stretched to 0 .. 255 by the
 * limits r4_png_stretch_limits gives; a pixel nodata (or NaN) in any band is
 * transparent.  planes are band-major (nbands * height * width), mask the
 * same shape (may be NULL).  out / reserve / out_len as for r4_png_heatmap.
 */
R4Status	r4_png_quicklook(const float *planes, const uint8_t *mask, int nbands,
							 uint32_t width, uint32_t height, const R4QuicklookOptions *opt,
							 size_t reserve, uint8_t **out, size_t *out_len,
							 R4PngCheck check, void *check_arg, R4Error *err);

/* Check a scale and the picture size it gives (R4_ERR_RANGE / R4_ERR_LIMIT). */
R4Status	r4_png_check_size(uint32_t width, uint32_t height, int scale, R4Error *err);

#endif							/* RAI4EO_PNG_H */
