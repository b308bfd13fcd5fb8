/*
 * model_cache.c — the per-backend model cache and the engine calls.
 *
 * A cache slot per model name lives in TopMemoryContext; the engine it holds
 * lives in its own context.  Each call site (ModelHandle) checks the row once:
 * same sha256 and same configuration (ignoring change_threshold, which does
 * not change embeddings) means the built engine is reused, anything else
 * rebuilds the slot.  Slots are rebuilt, never freed, and carry a generation
 * number, so a handle never follows a pointer to a freed engine.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core_error.h"
#include "executor/spi.h"
#include "guc.h"
#include "miscadmin.h"
#include "model_cache.h"
#include "rai4eo/json.h"
#include "rai4eo/safetensors.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* OpenBLAS runtime API (declared here so any cblas.h will do) */
extern void openblas_set_num_threads(int num_threads);

static CachedModel **slots = NULL;
static int	nslots = 0;
static int	maxslots = 0;
static uint64 next_generation = 1;
static int	applied_blas_threads = 0;

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

void
ModelHandleInit(ModelHandle *h, MemoryContext mcxt)
{
	memset(h, 0, sizeof(*h));
	h->mcxt = mcxt;
}

/* Interrupt check between blocks: CHECK_FOR_INTERRUPTS longjmps on a cancel */
static bool
CheckInterrupts(void *arg)
{
	CHECK_FOR_INTERRUPTS();
	return false;
}

char *
ModelValidate(const uint8 *buf, size_t len, const char *config_json,
			  R4ModelConfig *cfg, int64 *parameters)
{
	MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext, "rai4eo model validation",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(scratch);
	R4SafeTensors st = {0};
	R4Json	   *config = NULL;
	R4Engine   *engine = NULL;
	R4Error		err;
	char	   *json;
	char	   *result;

	r4_error_clear(&err);
	if (r4_safetensors_parse(buf, len, &st, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_BINARY_REPRESENTATION);
	if (config_json != NULL &&
		r4_json_parse(config_json, strlen(config_json), &config, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
	if (r4_model_config_resolve(&st, config, cfg, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
	/* Building converts every tensor: what fails here would fail at first use */
	if (r4_engine_build(&st, cfg, &engine, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
	*parameters = (int64) r4_engine_param_count(engine);
	json = r4_model_config_to_json(cfg);
	if (json == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	MemoryContextSwitchTo(old);
	result = pstrdup(json);
	MemoryContextDelete(scratch);
	return result;
}

/* The slot for name, created empty if there is none */
static CachedModel *
FindSlot(const char *name, bool create)
{
	CachedModel *m;

	for (int i = 0; i < nslots; i++)
		if (strcmp(slots[i]->name, name) == 0)
			return slots[i];
	if (!create)
		return NULL;
	if (nslots == maxslots)
	{
		int			n = maxslots == 0 ? 4 : maxslots * 2;

		slots = slots == NULL
			? MemoryContextAlloc(TopMemoryContext, n * sizeof(CachedModel *))
			: repalloc(slots, n * sizeof(CachedModel *));
		maxslots = n;
	}
	m = MemoryContextAllocZero(TopMemoryContext, sizeof(CachedModel));
	m->name = MemoryContextStrdup(TopMemoryContext, name);
	slots[nslots++] = m;
	return m;
}

/* Release a slot's engine; handles holding the old generation will re-validate */
static void
EmptySlot(CachedModel *m)
{
	if (m->mcxt != NULL)
		MemoryContextDelete(m->mcxt);
	m->mcxt = NULL;
	m->engine = NULL;
	if (m->config_key != NULL)
		pfree(m->config_key);
	m->config_key = NULL;
	m->generation = next_generation++;
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
 * reading it directly is both allowed and exact.
 */
static void
PreparePlans(void)
{
	char	   *rel;
	char	   *sql;

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

/* Raise "no such model", forgetting any engine built for that name */
static void
ReportUnknownModel(const char *name)
{
	CachedModel *m = FindSlot(name, false);

	if (m != NULL)
		EmptySlot(m);
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("model \"%s\" does not exist", name),
			 errhint("rai4eo.models lists the models; rai4eo_load_model() adds one.")));
}

/* Fetch column col of the single result row as a detoasted bytea */
static bytea *
GetBytea(int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull);

	return *isnull ? NULL : DatumGetByteaPP(d);
}

/* (Re)build slot m from the row: runs inside SPI, engine parented to keep */
static void
BuildSlot(CachedModel *m, const char *name, MemoryContext keep)
{
	Datum		arg = CStringGetTextDatum(name);
	bool		isnull;
	bytea	   *sha;
	bytea	   *weights;
	char	   *config_key;
	char	   *config_full;
	MemoryContext mcxt;
	MemoryContext old;
	R4SafeTensors st = {0};
	R4Json	   *config = NULL;
	R4ModelConfig cfg;
	R4Engine   *engine = NULL;
	R4Error		err;

	if (SPI_execute_plan(weights_plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "model lookup failed");
	if (SPI_processed == 0)
		ReportUnknownModel(name);
	sha = GetBytea(1, &isnull);
	config_key = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	config_full = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	weights = GetBytea(4, &isnull);
	if (sha == NULL || VARSIZE_ANY_EXHDR(sha) != 32 || weights == NULL || config_full == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("model \"%s\" has a malformed row in rai4eo.model", name)));

	/* A failed build leaves the new context to the caller's, freed with it */
	mcxt = AllocSetContextCreate(keep, "rai4eo model", ALLOCSET_DEFAULT_SIZES);
	r4_error_clear(&err);
	old = MemoryContextSwitchTo(mcxt);
	if (r4_safetensors_parse((const uint8 *) VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights),
							 &st, &err) != R4_OK ||
		r4_json_parse(config_full, strlen(config_full), &config, &err) != R4_OK ||
		r4_model_config_resolve(&st, config, &cfg, &err) != R4_OK ||
		r4_engine_build(&st, &cfg, &engine, &err) != R4_OK)
	{
		MemoryContextSwitchTo(old);
		ereport(ERROR,
				(errcode(err.status == R4_ERR_NOMEM ? ERRCODE_OUT_OF_MEMORY : ERRCODE_DATA_CORRUPTED),
				 errmsg("model \"%s\" cannot be used: %s", name, err.message),
				 err.detail[0] ? errdetail("%s", err.detail) : 0,
				 errhint("Store models with rai4eo_load_model(), which validates them.")));
	}
	r4_safetensors_free(&st);
	r4_json_free(config);
	MemoryContextSwitchTo(old);

	EmptySlot(m);
	MemoryContextSetParent(mcxt, TopMemoryContext);
	m->mcxt = mcxt;
	m->engine = engine;
	m->cfg = cfg;
	memcpy(m->sha256, VARDATA_ANY(sha), 32);
	m->config_key = MemoryContextStrdup(TopMemoryContext, config_key);
}

void
ModelCheckExists(const char *name)
{
	Datum		arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PreparePlans();
	arg = CStringGetTextDatum(name);
	if (SPI_execute_plan(meta_plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "model lookup failed");
	if (SPI_processed == 0)
		ReportUnknownModel(name);
	SPI_finish();
}

CachedModel *
ModelHandleGet(ModelHandle *h, const char *name)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum		arg;
	bool		isnull;
	bytea	   *sha;
	char	   *config_key;
	char	   *arch;
	CachedModel *m;

	if (h->model != NULL && h->generation == h->model->generation &&
		h->model->engine != NULL && strcmp(h->name, name) == 0)
		return h->model;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PreparePlans();
	arg = CStringGetTextDatum(name);
	if (SPI_execute_plan(meta_plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "model lookup failed");
	if (SPI_processed == 0)
		ReportUnknownModel(name);
	sha = GetBytea(1, &isnull);
	config_key = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	arch = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	if (arch != NULL && strcmp(arch, "external") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("model \"%s\" holds external embeddings: the database cannot compute them", name),
				 errhint("Insert its embeddings into rai4eo.embedding directly.")));

	m = FindSlot(name, true);
	if (m->engine == NULL || sha == NULL || VARSIZE_ANY_EXHDR(sha) != 32 ||
		memcmp(m->sha256, VARDATA_ANY(sha), 32) != 0 ||
		config_key == NULL || strcmp(m->config_key, config_key) != 0)
		BuildSlot(m, name, caller);
	SPI_finish();

	if (h->name == NULL || strcmp(h->name, name) != 0)
	{
		if (h->name != NULL)
			pfree(h->name);
		h->name = MemoryContextStrdup(h->mcxt, name);
	}
	h->model = m;
	h->generation = m->generation;
	return m;
}

void
ModelForward(CachedModel *m, const float *input, int B, int H, int W, float *out)
{
	MemoryContext old;
	R4Error		err;
	R4Status	rc;

	/* Process-global in OpenBLAS: apply only when this backend's setting changed */
	if (applied_blas_threads != rai4eo_blas_threads)
	{
		openblas_set_num_threads(rai4eo_blas_threads);
		applied_blas_threads = rai4eo_blas_threads;
	}
	r4_error_clear(&err);
	/* The arena grows inside the model's own context and stays with it */
	old = MemoryContextSwitchTo(m->mcxt);
	rc = r4_engine_forward(m->engine, input, B, H, W, out, CheckInterrupts, NULL, &err);
	MemoryContextSwitchTo(old);
	if (rc != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
}

void
ModelClassify(CachedModel *m, const float *features, int B, float *probs)
{
	MemoryContext old;
	R4Error		err;
	R4Status	rc;

	if (m->cfg.n_classes == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" has no classification head", m->name),
				 errhint("A classifier's file holds head.* or fc.* linear layers on top of the features.")));
	r4_error_clear(&err);
	old = MemoryContextSwitchTo(m->mcxt);
	rc = r4_engine_classify(m->engine, features, B, probs, &err);
	MemoryContextSwitchTo(old);
	if (rc != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
}

int
ModelEmbedDim(const CachedModel *m)
{
	return m->cfg.output == R4_OUTPUT_PROBABILITIES ? m->cfg.n_classes : m->cfg.out_dim;
}
