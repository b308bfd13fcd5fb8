/*
 * png.c — heatmap_png() and rai4eo_quicklook(): PNG bytes of raster bands,
 * rendered by the core (src/core/png.c) on zlib.
 *
 * Both check every argument and the picture's size from the raster header
 * alone (a slice of the datum) before any pixel is decoded, then read the
 * bands through the project's raster reader (in-db directly, out-db through
 * PostGIS) and let the core write straight into the result's bytes.
 */
#include "postgres.h"

#include "core_error.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "rai4eo/png.h"
#include "raster.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "catalog/pg_type.h"

/* The serialized raster header: varlena word, version, nbands, 6 doubles, srid, width, height */
#define HDR_NBANDS_AT 6
#define HDR_WIDTH_AT 60
#define HDR_HEIGHT_AT 62
#define HDR_SIZE 64

typedef struct RasterShape
{
	int			nbands;
	int			width;
	int			height;
} RasterShape;

/* Band count and size from the first 64 bytes, without detoasting the pixels */
static RasterShape
PeekRasterShape(Datum rast)
{
	struct varlena *head = PG_DETOAST_DATUM_SLICE(rast, 0, HDR_SIZE);
	RasterShape s;
	uint16		v;

	if (VARSIZE_ANY(head) < HDR_SIZE || VARATT_IS_1B(head))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("raster value is truncated (%zu bytes)", (size_t) VARSIZE_ANY(head))));
	memcpy(&v, (char *) head + HDR_NBANDS_AT, 2);
	s.nbands = v;
	memcpy(&v, (char *) head + HDR_WIDTH_AT, 2);
	s.width = v;
	memcpy(&v, (char *) head + HDR_HEIGHT_AT, 2);
	s.height = v;
	return s;
}

static bool
PngCheckInterrupts(void *arg)
{
	CHECK_FOR_INTERRUPTS();
	return true;
}

/* Report a core status; a picture too large gets the hint of the function */
static void pg_attribute_noreturn()
ReportPngError(R4Error *err, const char *hint)
{
	if (err->status == R4_ERR_LIMIT && hint != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg_internal("%s", err->message),
				 err->detail[0] ? errdetail_internal("%s", err->detail) : 0,
				 errhint("%s", hint)));
	ReportCoreError(err, ERRCODE_INVALID_PARAMETER_VALUE);
}

static void
CheckScale(int32 scale)
{
	if (scale < 1 || scale > R4_PNG_MAX_SCALE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scale %d is out of range", scale),
				 errdetail("Each pixel becomes scale x scale PNG pixels; scale runs from 1 to %d.", R4_PNG_MAX_SCALE)));
}

static bytea *
FinishBytea(uint8 *buf, size_t len)
{
	if (len + VARHDRSZ > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the PNG (%zu bytes) exceeds the largest bytea value", len)));
	SET_VARSIZE(buf, len + VARHDRSZ);
	return (bytea *) buf;
}

/*
 * zlib level 2: at 1000 x 1000 about half the time of level 6 for a third more
 * bytes (bench/png_sql.sh); repeated rows of a scaled map still compress well.
 */
#define PNG_ZLIB_LEVEL 2

#define HEATMAP_HINT "Use a smaller scale, or cut the raster (ST_Clip, ST_Tile)."

/*
 * heatmap_png(rast, band, min_value, max_value, ramp, scale, legend)
 */
PG_FUNCTION_INFO_V1(rai4eo_heatmap_png);
Datum
rai4eo_heatmap_png(PG_FUNCTION_ARGS)
{
	R4HeatmapOptions opt = {0};
	RasterShape shape;
	RasterPixels px;
	R4Error		err;
	int32		band;
	char	   *ramp;
	uint32		out_w,
				out_h;
	uint8	   *buf;
	size_t		len;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	r4_error_clear(&err);
	shape = PeekRasterShape(PG_GETARG_DATUM(0));

	band = PG_ARGISNULL(1) ? -1 : PG_GETARG_INT32(1);
	if (PG_ARGISNULL(1) || band < 1 || band > shape.nbands)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 PG_ARGISNULL(1) ? errmsg("band must not be NULL") : errmsg("band %d does not exist", band),
				 errdetail("The raster has %d band%s.", shape.nbands, shape.nbands == 1 ? "" : "s")));
	opt.min_value = PG_ARGISNULL(2) ? NAN : PG_GETARG_FLOAT8(2);
	opt.max_value = PG_ARGISNULL(3) ? NAN : PG_GETARG_FLOAT8(3);
	if (!(opt.min_value < opt.max_value) || !isfinite(opt.min_value) || !isfinite(opt.max_value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("min_value %s must be finite and below max_value %s",
						PG_ARGISNULL(2) ? "NULL" : float8out_internal(opt.min_value),
						PG_ARGISNULL(3) ? "NULL" : float8out_internal(opt.max_value))));
	ramp = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	if (ramp == NULL || !r4_png_ramp_parse(ramp, &opt.ramp))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 ramp ? errmsg("unknown colour ramp \"%s\"", ramp) : errmsg("ramp must not be NULL"),
				 errhint("Ramps are heat (light yellow to dark red), viridis and gray.")));
	if (PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scale must not be NULL")));
	opt.scale = PG_GETARG_INT32(5);
	CheckScale(opt.scale);
	opt.legend = !PG_ARGISNULL(6) && PG_GETARG_BOOL(6);
	opt.level = PNG_ZLIB_LEVEL;
	if (shape.width == 0 || shape.height == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("raster is empty (%d x %d pixels)", shape.width, shape.height)));
	/* The size limit before the pixels are read */
	if (r4_png_heatmap_size(shape.width, shape.height, &opt, &out_w, &out_h, &err) != R4_OK)
		ReportPngError(&err, HEATMAP_HINT);

	RasterReadPixels(fcinfo, 0, &band, 1, &px);
	CHECK_FOR_INTERRUPTS();
	if (r4_png_heatmap(px.planes, px.mask, px.width, px.height, &opt, VARHDRSZ, &buf, &len,
					   PngCheckInterrupts, NULL, &err) != R4_OK)
		ReportPngError(&err, HEATMAP_HINT);
	PG_RETURN_BYTEA_P(FinishBytea(buf, len));
}

#define QUICKLOOK_HINT "Use a smaller scale, or cut the raster (ST_Clip, ST_Tile)."

/*
 * rai4eo_quicklook(rast, bands, stretch, scale, low, high)
 */
PG_FUNCTION_INFO_V1(rai4eo_quicklook);
Datum
rai4eo_quicklook(PG_FUNCTION_ARGS)
{
	R4QuicklookOptions opt = {0};
	RasterShape shape;
	RasterPixels px;
	R4Error		err;
	int			bands[3];
	int			nbands;
	char	   *stretch;
	uint8	   *buf;
	size_t		len;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	r4_error_clear(&err);
	shape = PeekRasterShape(PG_GETARG_DATUM(0));
	if (shape.nbands == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("raster has no bands")));

	if (PG_ARGISNULL(1))
	{
		/* PF-SR is blue, green, red, nir and S2-SR starts B02, B03, B04: RGB = 3, 2, 1 */
		nbands = shape.nbands >= 3 ? 3 : 1;
		bands[0] = shape.nbands >= 3 ? 3 : 1;
		bands[1] = 2;
		bands[2] = 1;
	}
	else
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
		Datum	   *elems;
		bool	   *nulls;

		if (ARR_NDIM(arr) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("band numbers must be a one-dimensional array")));
		deconstruct_array(arr, INT4OID, sizeof(int32), true, TYPALIGN_INT, &elems, &nulls, &nbands);
		if (nbands != 1 && nbands != 3)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a quicklook takes 1 band (grey) or 3 (red, green, blue), not %d", nbands),
					 errhint("Pass NULL for bands 3, 2, 1 (true colour of PF-SR and S2-SR).")));
		for (int i = 0; i < nbands; i++)
		{
			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("band numbers must not be NULL")));
			bands[i] = DatumGetInt32(elems[i]);
			if (bands[i] < 1 || bands[i] > shape.nbands)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("band %d does not exist", bands[i]),
						 errdetail("The raster has %d band%s.", shape.nbands, shape.nbands == 1 ? "" : "s")));
		}
	}

	stretch = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (stretch == NULL || !r4_png_stretch_parse(stretch, &opt.stretch))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 stretch ? errmsg("unknown stretch \"%s\"", stretch) : errmsg("stretch must not be NULL"),
				 errhint("Stretches are percentile (low, high: percentiles, default 2 and 98), minmax, and fixed (low, high: values).")));
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scale must not be NULL")));
	opt.scale = PG_GETARG_INT32(3);
	CheckScale(opt.scale);
	opt.level = PNG_ZLIB_LEVEL;
	if (opt.stretch == R4_STRETCH_PERCENTILE)
	{
		opt.low = PG_ARGISNULL(4) ? 2 : PG_GETARG_FLOAT8(4);
		opt.high = PG_ARGISNULL(5) ? 98 : PG_GETARG_FLOAT8(5);
		if (!(opt.low >= 0 && opt.low <= opt.high && opt.high <= 100))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("percentiles %s and %s must satisfy 0 <= low <= high <= 100",
							float8out_internal(opt.low), float8out_internal(opt.high))));
	}
	else if (opt.stretch == R4_STRETCH_FIXED)
	{
		if (PG_ARGISNULL(4) || PG_ARGISNULL(5))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stretch \"fixed\" needs low and high"),
					 errhint("For example low => 0, high => 3000 for reflectance x 10000.")));
		opt.low = PG_GETARG_FLOAT8(4);
		opt.high = PG_GETARG_FLOAT8(5);
		if (!(isfinite(opt.low) && isfinite(opt.high) && opt.low < opt.high))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stretch limits %s and %s must be finite with low below high",
							float8out_internal(opt.low), float8out_internal(opt.high))));
	}
	else if (!PG_ARGISNULL(4) || !PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stretch \"minmax\" takes no low or high")));
	if (shape.width == 0 || shape.height == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("raster is empty (%d x %d pixels)", shape.width, shape.height)));
	if (r4_png_check_size(shape.width, shape.height, opt.scale, &err) != R4_OK)
		ReportPngError(&err, QUICKLOOK_HINT);

	RasterReadPixels(fcinfo, 0, bands, nbands, &px);
	CHECK_FOR_INTERRUPTS();
	if (r4_png_quicklook(px.planes, px.mask, nbands, px.width, px.height, &opt, VARHDRSZ,
						 &buf, &len, PngCheckInterrupts, NULL, &err) != R4_OK)
		ReportPngError(&err, QUICKLOOK_HINT);
	PG_RETURN_BYTEA_P(FinishBytea(buf, len));
}
