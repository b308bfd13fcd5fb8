/*
 * model_lookup.c — which model a call means and how its row is read.
 *
 * A model is named by its argument or by rai4eo.default_model.  Its row is
 * protected by an advisory lock per name (ModelLock): share mode while a
 * transaction computes with the model, exclusive while rai4eo_load_model
 * replaces it, so that an embedding computed and stored in one transaction
 * always comes from the weights stored when it commits.  The row itself is
 * read through two plans kept for the backend (metadata only, and metadata
 * with the weights), prepared against the table that holds the rows here.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "guc.h"
#include "miscadmin.h"
#include "model_lookup.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* field4 of the advisory lock tag: pg_advisory_lock() uses 1 and 2 */
#define MODEL_LOCK_FIELD4 0x7234

static SPIPlanPtr meta_plan = NULL;
static SPIPlanPtr weights_plan = NULL;
static char *plans_relation = NULL;	/* the table the two plans read */
static SPIPlanPtr relation_plan = NULL;

char *
ResolveModelName(text *arg)
{
	if (arg != NULL)
	{
		char	   *name = text_to_cstring(arg);

		if (name[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("model name must not be empty")));
		return name;
	}
	if (rai4eo_default_model == NULL || rai4eo_default_model[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("no model given and rai4eo.default_model is not set"),
				 errhint("Pass a model name, or SET rai4eo.default_model = 'name'; rai4eo.models lists the models.")));
	return pstrdup(rai4eo_default_model);
}

/* The lock tag of a model name: database, hash of the name, "rai4eo model" */
static void
ModelLockTag(LOCKTAG *tag, const char *name)
{
	uint32		h = DatumGetUInt32(hash_any((const unsigned char *) name, strlen(name)));

	/* A hash collision only makes two models' replaces wait for each other */
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, h, 0x7234656d, MODEL_LOCK_FIELD4);
}

/*
 * Take the model's lock for this transaction: share mode to compute with it,
 * exclusive to replace it.  True when it was not held already (by this
 * transaction or an open subtransaction), so what was read before may be stale.
 */
bool
ModelLock(const char *name, bool exclusive)
{
	LOCKTAG		tag;

	ModelLockTag(&tag, name);
	return LockAcquire(&tag, exclusive ? ExclusiveLock : ShareLock, false, false) == LOCKACQUIRE_OK;
}

/* Prepare a lookup by model name, kept for the life of the backend */
static SPIPlanPtr
PrepareKept(const char *sql)
{
	Oid			argtypes[1] = {TEXTOID};
	SPIPlanPtr	p = SPI_prepare(sql, 1, argtypes);

	if (p == NULL || SPI_keepplan(p) != 0)
		elog(ERROR, "could not prepare the model lookup: %s", SPI_result_code_string(SPI_result));
	return p;
}

/*
 * Prepare the two lookups, kept for the backend while the table they read stays
 * the same.  That table is rai4eo.model, except on a Citus node holding a
 * placement of it as a reference table: there it is the local shard
 * (rai4eo.model_relation()).  A query on a shard that calls rai4eo_embed runs
 * as a Citus task, and Citus refuses to plan a query on a distributed table
 * inside a task ("cannot execute a distributed query from a query on a
 * shard"); the local placement of a reference table holds every row, so
 * reading it directly is both allowed and exact.  A kept plan is parsed under
 * the search_path of its first caller, so every operator and type is qualified.
 */
void
ModelLookupPrepare(void)
{
	char	   *rel;
	char	   *sql;

	/*
	 * A database still at 0.1.0 (library installed, ALTER EXTENSION UPDATE not
	 * yet run) has no rai4eo.model_relation(): it cannot be on Citus either.
	 */
	if (relation_plan == NULL &&
		!OidIsValid(LookupFuncName(list_make2(makeString("rai4eo"), makeString("model_relation")),
								   0, NULL, true)))
		rel = "rai4eo.model";
	else
	{
		if (relation_plan == NULL)
		{
			relation_plan = SPI_prepare("SELECT rai4eo.model_relation()", 0, NULL);
			if (relation_plan == NULL || SPI_keepplan(relation_plan) != 0)
				elog(ERROR, "could not prepare the model table lookup: %s", SPI_result_code_string(SPI_result));
		}
		if (SPI_execute_plan(relation_plan, NULL, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "model table lookup failed");
		rel = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (rel == NULL)
			elog(ERROR, "model table lookup returned NULL");
	}
	if (plans_relation != NULL && strcmp(plans_relation, rel) != 0)
	{
		SPI_freeplan(meta_plan);
		SPI_freeplan(weights_plan);
		meta_plan = weights_plan = NULL;
		pfree(plans_relation);
		plans_relation = NULL;
	}
	if (meta_plan == NULL)
	{
		sql = psprintf("SELECT sha256, (config OPERATOR(pg_catalog.-) 'change_threshold'::pg_catalog.text)::pg_catalog.text,"
					   " arch FROM %s WHERE name OPERATOR(pg_catalog.=) $1", rel);
		meta_plan = PrepareKept(sql);
	}
	if (weights_plan == NULL)
	{
		sql = psprintf("SELECT sha256, (config OPERATOR(pg_catalog.-) 'change_threshold'::pg_catalog.text)::pg_catalog.text,"
					   " config::pg_catalog.text, weights FROM %s WHERE name OPERATOR(pg_catalog.=) $1", rel);
		weights_plan = PrepareKept(sql);
	}
	if (plans_relation == NULL)
		plans_relation = MemoryContextStrdup(TopMemoryContext, rel);
}


bool
ModelLookupRow(ModelRowKind kind, const char *name, Snapshot snap)
{
	Datum		arg = CStringGetTextDatum(name);

	if (SPI_execute_snapshot(kind == MODEL_ROW_META ? meta_plan : weights_plan, &arg, NULL,
							 snap, InvalidSnapshot, true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "model lookup failed");
	return SPI_processed > 0;
}

bytea *
ModelRowBytea(int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull);

	return *isnull ? NULL : DatumGetByteaPP(d);
}
