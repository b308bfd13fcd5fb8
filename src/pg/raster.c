/*
 * raster.c — read PostGIS raster arguments: in-db bands straight from the
 * datum with the core decoder, out-db bands through PostGIS itself so that
 * its own settings (postgis.enable_outdb_rasters, postgis.gdal_enabled_drivers)
 * decide whether a file may be read.  Also rai4eo_raster_values(), the SQL
 * window onto exactly what the models will see.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core_error.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "rai4eo/raster.h"
#include "raster.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

void
RasterReaderInit(RasterReader *rd, Oid raster_type, MemoryContext mcxt)
{
	memset(rd, 0, sizeof(*rd));
	rd->raster_type = OidIsValid(raster_type) ? raster_type : TypenameGetTypid("raster");
	if (!OidIsValid(rd->raster_type))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("type raster does not exist"),
				 errhint("Install postgis_raster.")));
	rd->mcxt = mcxt;
}

/* The reader of a function whose argument argno is a raster, kept in fn_extra */
static RasterReader *
GetCallSiteReader(FunctionCallInfo fcinfo, int argno)
{
	RasterReader *rd = (RasterReader *) fcinfo->flinfo->fn_extra;

	if (rd == NULL)
	{
		rd = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(RasterReader));
		RasterReaderInit(rd, get_fn_expr_argtype(fcinfo->flinfo, argno), fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = rd;
	}
	return rd;
}

/*
 * Make sure PostGIS's raster library is loaded in this backend: its GUCs
 * only exist once it is.  Looking up the type's input function loads it.
 */
static void
LoadPostgisRaster(Oid raster_type)
{
	Oid			infunc,
				ioparam;
	FmgrInfo	flinfo;

	getTypeInputInfo(raster_type, &infunc, &ioparam);
	fmgr_info(infunc, &flinfo);
}

/* Raise a clear error unless PostGIS's settings allow reading out-db files */
static void
CheckOutdbAllowed(void)
{
	const char *enabled = GetConfigOption("postgis.enable_outdb_rasters", true, false);
	const char *drivers = GetConfigOption("postgis.gdal_enabled_drivers", true, false);
	bool		on = false;

	if (enabled == NULL || !parse_bool(enabled, &on) || !on)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("reading out-db raster bands is disabled"),
				 errdetail("The raster has bands stored in files outside the database, and PostGIS does not allow reading them."),
				 errhint("A superuser can allow it with SET postgis.enable_outdb_rasters = on (and postgis.gdal_enabled_drivers = 'GTiff'), or in postgresql.conf.")));
	if (drivers == NULL || drivers[0] == '\0' || strstr(drivers, "DISABLE_ALL") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("reading out-db raster bands is disabled: no GDAL driver is enabled"),
				 errdetail("postgis.gdal_enabled_drivers is \"%s\".", drivers ? drivers : ""),
				 errhint("A superuser can enable the file's driver, e.g. SET postgis.gdal_enabled_drivers = 'GTiff'.")));
}

/* Find ST_AsBinary(raster, boolean) in the raster type's own schema */
static void
LookupAsBinary(RasterReader *cache, MemoryContext mcxt)
{
	HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(cache->raster_type));
	char	   *nspname;
	Oid			argtypes[2];
	Oid			fnoid;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", cache->raster_type);
	nspname = get_namespace_name(((Form_pg_type) GETSTRUCT(tup))->typnamespace);
	ReleaseSysCache(tup);

	argtypes[0] = cache->raster_type;
	argtypes[1] = BOOLOID;
	fnoid = LookupFuncName(list_make2(makeString(nspname), makeString("st_asbinary")), 2, argtypes, true);
	if (!OidIsValid(fnoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s.st_asbinary(raster, boolean) does not exist", nspname),
				 errhint("Out-db rasters are read through PostGIS; make sure postgis_raster is installed.")));
	fmgr_info_cxt(fnoid, &cache->asbinary, mcxt);
	cache->have_asbinary = true;
}

/* Raise a decoding error with the SQLSTATE that fits a raster value */
static void
ReportRasterError(R4Error *err)
{
	/* An unknown pixel type is a malformed value for the PostGIS we target */
	if (err->status == R4_ERR_UNSUPPORTED)
		err->status = R4_ERR_INVALID;
	ReportCoreError(err, ERRCODE_INVALID_BINARY_REPRESENTATION);
}

void
RasterReadPixels(FunctionCallInfo fcinfo, int rast_argno, const int *bands,
				 int nbands, RasterPixels *out)
{
	RasterReadDatum(GetCallSiteReader(fcinfo, rast_argno), PG_GETARG_DATUM(rast_argno),
					bands, nbands, out);
}

void
RasterOpenDatum(RasterReader *cache, Datum rast, const int *bands, int nbands,
				RasterSource *out)
{
	struct varlena *datum = PG_DETOAST_DATUM(rast);
	R4Raster   *r = &out->serialized;
	R4Error		err;

	memset(out, 0, sizeof(*out));
	out->datum = datum;
	out->detoasted = (Pointer) datum != DatumGetPointer(rast);
	r4_error_clear(&err);
	if (r4_raster_parse_serialized((const uint8 *) datum, VARSIZE(datum), r, &err) != R4_OK)
		ReportRasterError(&err);

	if (r->nbands == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("raster has no bands")));
	if (r->width == 0 || r->height == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("raster is empty (%d x %d pixels)", r->width, r->height)));
	for (int i = 0; bands != NULL && i < nbands; i++)
	{
		if (bands[i] > r->nbands && cache->purpose != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("raster has %d band%s, but %s reads band %d",
							r->nbands, r->nbands == 1 ? "" : "s", cache->purpose, bands[i])));
		if (bands[i] < 1 || bands[i] > r->nbands)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("band %d is out of range", bands[i]),
					 errdetail("The raster has %d band%s.", r->nbands, r->nbands == 1 ? "" : "s")));
	}
	if (bands == NULL)
		nbands = r->nbands;
	/* Limits are known from the header: refuse before decoding anything */
	if (cache->check_size != NULL)
		cache->check_size(cache->check_arg, nbands, r->width, r->height);

	out->raster = r;
	if (r4_raster_has_outdb(r, bands, nbands))
	{
		bytea	   *wkb;

		/* Once per call site; the settings themselves may change any time */
		if (!cache->have_asbinary)
		{
			LoadPostgisRaster(cache->raster_type);
			LookupAsBinary(cache, cache->mcxt);
		}
		CheckOutdbAllowed();
		wkb = DatumGetByteaPP(FunctionCall2(&cache->asbinary, PointerGetDatum(datum), BoolGetDatum(true)));
		if (r4_raster_parse_wkb((const uint8 *) VARDATA_ANY(wkb), VARSIZE_ANY_EXHDR(wkb), &out->wkb, &err) != R4_OK)
			ReportRasterError(&err);
		out->raster = &out->wkb;
	}
	out->nbands = nbands;
}

void
RasterCloseSource(RasterSource *src)
{
	r4_raster_free(&src->serialized);
	r4_raster_free(&src->wkb);
	if (src->detoasted && src->datum != NULL)
		pfree(src->datum);
	src->datum = NULL;
	src->raster = NULL;
}

void
RasterReadDatum(RasterReader *cache, Datum rast, const int *bands, int nbands,
				RasterPixels *out)
{
	RasterSource src;
	R4Error		err;
	size_t		count;

	RasterOpenDatum(cache, rast, bands, nbands, &src);
	r4_error_clear(&err);
	if (r4_raster_decode_count(src.raster, src.nbands, &count, &err) != R4_OK)
		ReportRasterError(&err);
	out->nbands = src.nbands;
	out->width = src.raster->width;
	out->height = src.raster->height;
	out->planes = palloc_extended(count * sizeof(float), MCXT_ALLOC_HUGE);
	out->mask = palloc_extended(count, MCXT_ALLOC_HUGE);
	if (r4_raster_decode(src.raster, bands, src.nbands, out->planes, out->mask, &err) != R4_OK)
		ReportRasterError(&err);
	RasterCloseSource(&src);
}

/* rai4eo_raster_values builds one Datum per value: refuse what cannot fit */
static void
CheckArraySize(void *arg, int nbands, int width, int height)
{
	size_t		count = (size_t) nbands * height * width;

	if (count > MaxAllocSize / sizeof(Datum))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("raster too large for an array: %zu values", count),
				 errdetail("An array holds at most %zu values.", (size_t) (MaxAllocSize / sizeof(Datum)))));
}

/* Read band numbers from an int[] argument; NULL array means all bands */
static int *
GetBandNumbers(ArrayType *arr, int *nbands)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int		   *bands;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("band numbers must be a one-dimensional array")));
	deconstruct_array(arr, INT4OID, sizeof(int32), true, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at least one band number is required"),
				 errhint("Pass NULL to read all bands.")));
	bands = palloc(sizeof(int) * n);
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("band numbers must not be NULL")));
		bands[i] = DatumGetInt32(elems[i]);
	}
	*nbands = n;
	return bands;
}

/*
 * Return the pixels of a raster as real[band][row][column], NULL where a
 * pixel is nodata: what the extension reads, for inspection.
 */
PG_FUNCTION_INFO_V1(rai4eo_raster_values);
Datum
rai4eo_raster_values(PG_FUNCTION_ARGS)
{
	int		   *bands = NULL;
	int			nbands = 0;
	RasterPixels px;
	size_t		count;
	Datum	   *datums;
	bool	   *nulls;
	int			dims[3],
				lbs[3] = {1, 1, 1};

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (!PG_ARGISNULL(1))
		bands = GetBandNumbers(PG_GETARG_ARRAYTYPE_P(1), &nbands);

	GetCallSiteReader(fcinfo, 0)->check_size = CheckArraySize;
	RasterReadPixels(fcinfo, 0, bands, nbands, &px);

	count = (size_t) px.nbands * px.height * px.width;
	datums = palloc(count * sizeof(Datum));
	nulls = palloc(count * sizeof(bool));
	for (size_t i = 0; i < count; i++)
	{
		datums[i] = Float4GetDatum(px.planes[i]);
		nulls[i] = px.mask[i] != 0;
	}
	dims[0] = px.nbands;
	dims[1] = px.height;
	dims[2] = px.width;
	PG_RETURN_ARRAYTYPE_P(construct_md_array(datums, nulls, 3, dims, lbs, FLOAT4OID,
											 sizeof(float4), true, TYPALIGN_INT));
}
