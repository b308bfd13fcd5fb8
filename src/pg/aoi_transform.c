/*
 * aoi_transform.c — rai4eo.aoi_transform(): PostGIS's ST_Transform for an
 * AOI, with PROJ's failures reported as bad input (22023) instead of
 * PostGIS's internal error (XX000).
 *
 * The AOI functions are inlined into the change queries and run in parallel
 * plans, so they cannot catch errors in a subtransaction.  Here the error is
 * caught only to be raised again at once with another SQLSTATE and message;
 * nothing continues after it, so no subtransaction is needed.  Errors that
 * are not XX000 (a query cancel, out of memory) pass through unchanged.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/elog.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* Find ST_Transform(geometry, integer) in the schema of the argument's type
 * (not inlined: its locals would sit under the caller's setjmp) */
static pg_noinline FmgrInfo *
LookupTransform(FunctionCallInfo fcinfo)
{
	FmgrInfo   *fn = (FmgrInfo *) fcinfo->flinfo->fn_extra;
	Oid			geom_type;
	HeapTuple	tup;
	char	   *nspname;
	Oid			argtypes[2];
	Oid			fnoid;

	if (fn != NULL)
		return fn;
	geom_type = get_fn_expr_argtype(fcinfo->flinfo, 0);
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(geom_type));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", geom_type);
	nspname = get_namespace_name(((Form_pg_type) GETSTRUCT(tup))->typnamespace);
	ReleaseSysCache(tup);
	argtypes[0] = geom_type;
	argtypes[1] = INT4OID;
	fnoid = LookupFuncName(list_make2(makeString(nspname), makeString("st_transform")), 2, argtypes, true);
	if (!OidIsValid(fnoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s.st_transform(geometry, integer) does not exist", nspname)));
	fn = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
	fmgr_info_cxt(fnoid, fn, fcinfo->flinfo->fn_mcxt);
	fcinfo->flinfo->fn_extra = fn;
	return fn;
}

PG_FUNCTION_INFO_V1(rai4eo_aoi_transform);
Datum
rai4eo_aoi_transform(PG_FUNCTION_ARGS)
{
	FmgrInfo   *volatile fn;
	int32		srid = PG_GETARG_INT32(1);
	MemoryContext cxt = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	fn = LookupTransform(fcinfo);
	PG_TRY();
	{
		result = FunctionCall2Coll(fn, PG_GET_COLLATION(), PG_GETARG_DATUM(0), Int32GetDatum(srid));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_INTERNAL_ERROR)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the AOI cannot be transformed into SRID %d", srid),
				 errdetail("PostGIS: %s", edata->message),
				 errhint("Check the AOI's coordinates against its SRID, or clip the AOI to the area of the patches.")));
	}
	PG_END_TRY();
	PG_RETURN_DATUM(result);
}
