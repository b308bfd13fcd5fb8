/*
 * temporal.c — glue of the temporal classifiers: validation for the store
 * and rai4eo_classify_sequence(embedding[], model).
 *
 * These models are small (tens of kB to a few MB), so each call site keeps
 * its own built copy in fn_extra instead of sharing the backend's model
 * cache.  The copy is checked against rai4eo.model (sha256 and config) once
 * per command of a transaction: a replace committed by another session, or
 * made earlier in this transaction, is seen by the next statement, also
 * through a PL/pgSQL function whose call site outlives one statement.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "embedding.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "model_lookup.h"
#include "rai4eo/safetensors.h"
#include "rai4eo/temporal.h"
#include "storage/proc.h"
#include "temporal.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "core_error.h"

bool
TemporalModelValidate(const uint8 *buf, size_t len, const char *config_json,
					  const char **arch, char **config, int64 *parameters)
{
	MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext, "rai4eo temporal validation",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(scratch);
	R4SafeTensors st = {0};
	R4TemporalConfig cfg;
	R4Temporal *model = NULL;
	R4Error		err;
	char	   *json;

	r4_error_clear(&err);
	if (r4_safetensors_parse(buf, len, &st, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_BINARY_REPRESENTATION);
	if (!r4_temporal_is_temporal(&st, config_json))
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(scratch);
		return false;
	}
	if (r4_temporal_config_resolve(&st, config_json, &cfg, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
	/* Building converts every tensor: what fails here would fail at first use */
	if (r4_temporal_build(&st, &cfg, &model, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
	*parameters = (int64) r4_temporal_param_count(model);
	json = r4_temporal_config_to_json(&cfg);
	if (json == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	MemoryContextSwitchTo(old);
	*arch = r4_temporal_kind_name(cfg.kind);
	*config = pstrdup(json);
	MemoryContextDelete(scratch);
	return true;
}

/* ---- the per-call-site copy ------------------------------------------------------ */

typedef struct TemporalSite
{
	char	   *name;			/* in fn_mcxt */
	bytea	   *sha256;			/* in mcxt */
	char	   *config;			/* in mcxt: the stored configuration text */
	MemoryContext mcxt;			/* the built model; child of fn_mcxt */
	R4Temporal *model;
	R4TemporalConfig cfg;
	LocalTransactionId lxid;	/* when it was last checked */
	CommandId	cid;
} TemporalSite;

/* Build the model of a stored row into a fresh context of the site */
static void
BuildSite(TemporalSite *s, MemoryContext parent, const char *name, bytea *weights, const char *config,
		  bytea *sha256)
{
	MemoryContext mcxt = AllocSetContextCreate(parent, "rai4eo temporal model", ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	R4SafeTensors st = {0};
	R4Error		err;

	r4_error_clear(&err);
	if (r4_safetensors_parse((const uint8 *) VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights), &st, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_DATA_CORRUPTED);
	if (r4_temporal_config_resolve(&st, config, &s->cfg, &err) != R4_OK ||
		r4_temporal_build(&st, &s->cfg, &s->model, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_DATA_CORRUPTED);
	r4_safetensors_free(&st);
	s->sha256 = DatumGetByteaPCopy(PointerGetDatum(sha256));
	s->config = pstrdup(config);
	MemoryContextSwitchTo(old);
	if (s->mcxt != NULL)
		MemoryContextDelete(s->mcxt);
	s->mcxt = mcxt;
}

static bool
SameBytea(bytea *a, bytea *b)
{
	return a != NULL && b != NULL && VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/* The call site's model called name, checked against rai4eo.model once per command */
static TemporalSite *
GetSite(FunctionCallInfo fcinfo, const char *name)
{
	TemporalSite *s = (TemporalSite *) fcinfo->flinfo->fn_extra;
	CommandId	cid = GetCurrentCommandId(false);
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	char	   *arch,
			   *config;
	bytea	   *sha;
	int			rc;

	if (s == NULL)
	{
		s = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(TemporalSite));
		fcinfo->flinfo->fn_extra = s;
	}
	if (s->model != NULL && strcmp(s->name, name) == 0 && s->lxid == MyProc->lxid && s->cid == cid)
		return s;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = CStringGetTextDatum(name);
	rc = SPI_execute_with_args("SELECT arch, config::pg_catalog.text, sha256 FROM rai4eo.model"
							   " WHERE name OPERATOR(pg_catalog.=) $1", 1, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "model lookup failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name),
				 errhint("rai4eo.models lists the models.")));
	arch = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	config = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	sha = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (strcmp(arch, "lstm") != 0 && strcmp(arch, "gru") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("model \"%s\" is not a temporal classifier", name),
				 errdetail("Its architecture is %s; a sequence classifier is an lstm or gru model.", arch),
				 errhint("Train one with tools/train temporal.")));
	if (s->model == NULL || strcmp(s->name, name) != 0 || !SameBytea(s->sha256, sha) ||
		strcmp(s->config, config) != 0)
	{
		bytea	   *weights;

		rc = SPI_execute_with_args("SELECT weights FROM rai4eo.model WHERE name OPERATOR(pg_catalog.=) $1",
								   1, argtypes, values, NULL, true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "model weights lookup failed: %s", SPI_result_code_string(rc));
		weights = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		s->model = NULL;
		BuildSite(s, fcinfo->flinfo->fn_mcxt, name, weights, config, sha);
		if (s->name != NULL)
			pfree(s->name);
		s->name = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, name);
	}
	SPI_finish();
	s->lxid = MyProc->lxid;
	s->cid = cid;
	return s;
}

/*
 * rai4eo_classify_sequence(seq embedding[], model text) returns real[]: the
 * class probabilities of a temporal classifier over the sequence, oldest
 * first.  NULL for an empty array.
 */
PG_FUNCTION_INFO_V1(rai4eo_classify_sequence);
Datum
rai4eo_classify_sequence(PG_FUNCTION_ARGS)
{
	ArrayType  *arr;
	char	   *name;
	TemporalSite *s;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	float	   *x,
			   *probs;
	Datum	   *out;
	R4Error		err;
	MemoryContext old;
	R4Status	rc;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	arr = PG_GETARG_ARRAYTYPE_P(0);
	name = ResolveModelName(PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1));
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("a sequence must be a one-dimensional array of embeddings")));
	s = GetSite(fcinfo, name);
	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign, &elems, &nulls, &n);
	if (n == 0)
		PG_RETURN_NULL();
	if (n > R4_TEMPORAL_MAX_STEPS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a sequence of %d embeddings is too long (at most %d)", n, R4_TEMPORAL_MAX_STEPS)));
	x = palloc_extended((size_t) n * s->cfg.input_dim * sizeof(float), MCXT_ALLOC_HUGE);
	for (int t = 0; t < n; t++)
	{
		Embedding  *e;

		if (nulls[t])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("element %d of the sequence is NULL", t + 1)));
		e = DatumGetEmbedding(elems[t]);
		if (e->dim != s->cfg.input_dim)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("element %d of the sequence has %d dimensions; model \"%s\" reads %d",
							t + 1, e->dim, name, s->cfg.input_dim)));
		memcpy(x + (size_t) t * s->cfg.input_dim, e->x, s->cfg.input_dim * sizeof(float));
	}
	CHECK_FOR_INTERRUPTS();
	probs = palloc(s->cfg.n_classes * sizeof(float));
	r4_error_clear(&err);
	/* Scratch grown by the forward pass belongs to the model's context */
	old = MemoryContextSwitchTo(s->mcxt);
	rc = r4_temporal_forward(s->model, x, n, probs, &err);
	MemoryContextSwitchTo(old);
	if (rc != R4_OK)
		ReportCoreError(&err, ERRCODE_DATA_EXCEPTION);
	out = palloc(s->cfg.n_classes * sizeof(Datum));
	for (int k = 0; k < s->cfg.n_classes; k++)
		out[k] = Float4GetDatum(probs[k]);
	PG_RETURN_ARRAYTYPE_P(construct_array(out, s->cfg.n_classes, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT));
}
