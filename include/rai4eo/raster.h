/*
 * raster.h — read PostGIS rasters without linking PostGIS.
 *
 * Two encodings are understood: the in-database serialized form (the
 * detoasted `raster` datum, host byte order, bands 8-byte aligned from the
 * datum start) and WKB (what ST_AsBinary returns, either byte order, no
 * padding).  Parsing only walks the buffer and records where each band
 * lives; it copies nothing, so an R4Raster stays valid only as long as the
 * caller's buffer.  Decoding turns in-db bands into float planes plus a
 * nodata mask that follows PostGIS's own nodata rule.
 *
 * Layout and semantics follow PostGIS 3.3.2 (raster/rt_core/rt_serialize.c,
 * rt_wkb.c, rt_band.c; summarised in docs/formats.md, "PostGIS raster");
 * pixel type 9 (16BF) is the one PostGIS 3.7 added and is decoded as IEEE
 * binary16.
 */
#ifndef RAI4EO_RASTER_H
#define RAI4EO_RASTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rai4eo/core.h"

typedef enum R4PixType
{
	R4_PT_1BB = 0,
	R4_PT_2BUI,
	R4_PT_4BUI,
	R4_PT_8BSI,
	R4_PT_8BUI,
	R4_PT_16BSI,
	R4_PT_16BUI,
	R4_PT_32BSI,
	R4_PT_32BUI,
	R4_PT_16BF,					/* 9: PostGIS >= 3.7 only, decoded as IEEE half */
	R4_PT_32BF,
	R4_PT_64BF
} R4PixType;

#define R4_PT_COUNT 12			/* codes 12..15 are invalid */

/* Band flag bits (the high nibble of a band's first byte). */
#define R4_BAND_FLAG_OFFDB		0x80
#define R4_BAND_FLAG_HASNODATA	0x40
#define R4_BAND_FLAG_ISNODATA	0x20
#define R4_BAND_PIXTYPE_MASK	0x0F

#define R4_RASTER_HEADER_SIZE	64	/* serialized header, varlena word included */
#define R4_RASTER_WKB_HEADER_SIZE 61

typedef struct R4RasterBand
{
	R4PixType	pixtype;
	bool		offdb;
	bool		hasnodata;
	bool		isnodata;		/* already ANDed with hasnodata (PostGIS
								 * ignores the bit without nodata) */
	uint8_t		flags;			/* the raw flag/pixel-type byte */
	double		nodata;			/* nodata value as PostGIS reads it (1BB/2BUI/4BUI
								 * masked, 8BSI signed); stored even without
								 * hasnodata */
	const uint8_t *data;		/* in-db pixels, row-major, NOT necessarily
								 * aligned, in the encoding's byte order
								 * (see R4Raster.swap); NULL for out-db */
	size_t		data_size;		/* width * height * pixel size; 0 for out-db */
	uint8_t		outdb_band;		/* 0-based file band number (out-db only) */
	const char *outdb_path;		/* NUL-terminated path inside the buffer
								 * (out-db only, else NULL) */
} R4RasterBand;

typedef struct R4Raster
{
	uint16_t	width,
				height,
				nbands;
	int32_t		srid;
	double		scale_x,
				scale_y,
				ip_x,
				ip_y,
				skew_x,
				skew_y;
	bool		swap;			/* pixel bytes need byte-swapping (WKB in the
								 * non-host byte order) */
	R4RasterBand *bands;		/* nbands entries, allocated with r4_alloc
								 * (NULL when nbands is 0); each points into
								 * the caller's buffer */
} R4Raster;

/*
 * Parse a serialized raster.  buf is the detoasted varlena datum INCLUDING
 * its 4-byte header; VARSIZE is read from it and must be <= len (only
 * VARSIZE bytes are looked at).  Short (1-byte) headers, compressed and
 * external datums are rejected: detoast first.  The version must be 0.
 * Each band, the last one included, must fit with its padding to 8 bytes;
 * bytes after the last band (within VARSIZE) are ignored.
 * On failure *out is left zeroed (r4_raster_free is still safe).
 */
R4Status	r4_raster_parse_serialized(const uint8_t *buf, size_t len,
									   R4Raster *out, R4Error *err);

/*
 * Parse a WKB raster (as ST_AsBinary returns), either byte order.  The WKB
 * version must be 0.  Trailing bytes after the last band are ignored, as
 * PostGIS does (it only warns).
 */
R4Status	r4_raster_parse_wkb(const uint8_t *buf, size_t len,
								R4Raster *out, R4Error *err);

/* Free the bands array; safe on a zeroed or already freed struct. */
void		r4_raster_free(R4Raster *r);

/*
 * Report whether any of the requested bands (1-based; NULL = all) is
 * out-db.  Band numbers out of range are ignored here (decode reports them).
 */
bool		r4_raster_has_outdb(const R4Raster *r, const int *bands, int nbands);

/*
 * Compute how many values r4_raster_decode writes (nbands * height * width;
 * pass nbands = r->nbands for "all bands"), checking for overflow of the
 * float plane size in bytes.  R4_ERR_INVALID for an empty raster or no
 * bands, R4_ERR_LIMIT on overflow.
 */
R4Status	r4_raster_decode_count(const R4Raster *r, int nbands, size_t *count,
								   R4Error *err);

/*
 * Decode bands (1-based numbers, any order, repeats allowed; bands == NULL
 * means all bands in order) in one pass per band.  planes gets
 * nbands*height*width floats (band-major, row 0 = top); mask (may be NULL)
 * gets as many bytes, 1 where PostGIS would treat the pixel as nodata.
 * A nodata pixel still gets its own stored value in planes; for an
 * is-nodata band every mask byte is 1 and planes still hold the stored
 * pixels (PostGIS would report the nodata value instead).  Integer and 64BF
 * values are converted to float like a C cast from double.
 * Errors: R4_ERR_RANGE for a band number outside 1..nbands, R4_ERR_INVALID
 * for an empty raster or no bands, R4_ERR_LIMIT on size overflow,
 * R4_ERR_UNSUPPORTED when a requested band is out-db (fetch those pixels
 * with ST_AsBinary(rast, true) and decode that WKB instead).
 */
R4Status	r4_raster_decode(const R4Raster *r, const int *bands, int nbands,
							 float *planes, uint8_t *mask, R4Error *err);

/*
 * One model input value from a decoded pixel v: (v * scale - mean) *
 * inv_std computed in double and rounded once to float, with inv_std =
 * 1 / std; nodata pixels and NaN or infinite values give exactly 0 (the
 * channel mean).  preprocess.c and r4_raster_decode_normalised both use
 * this, so the two paths give the same bits.
 */
static inline float
r4_normalise_value(float v, bool nodata, double scale, double mean, double inv_std)
{
	if (nodata || !__builtin_isfinite(v))
		return 0.0f;
	return (float) (((double) v * scale - mean) * inv_std);
}

/*
 * Decode bands (as r4_raster_decode: 1-based, NULL = all) and normalise
 * them straight into out[nbands][height][width] with r4_normalise_value,
 * channel k using mean[k] and std[k] (std[k] > 0): the model input of a
 * native-size raster, with no intermediate planes or mask (decoding runs
 * in chunks that stay in cache).  Errors as r4_raster_decode.
 */
R4Status	r4_raster_decode_normalised(const R4Raster *r, const int *bands, int nbands,
										double scale, const double *mean, const double *std,
										float *out, R4Error *err);

/*
 * Apply PostGIS's nodata test to one value (rt_band_clamped_value_is_nodata:
 * FLT_EQ, or equality after clamping to the pixel type).  The decoder's
 * per-type loops are equivalent to this; it is exported for tests and for
 * callers that check single values.
 */
bool		r4_pixel_is_nodata(R4PixType t, double value, double nodata);

/* Name of a pixel type as PostGIS spells it ("8BUI"), or "unknown". */
const char *r4_pixtype_name(R4PixType t);

/* Size in bytes of one pixel of a type, 0 for an invalid code. */
size_t		r4_pixtype_size(R4PixType t);

#endif							/* RAI4EO_RASTER_H */
