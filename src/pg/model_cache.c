/*
 * model_cache.c — the per-backend model cache and the engine calls.
 *
 * A cache slot per model name lives in TopMemoryContext; the engine it holds
 * lives in its own context.  Same sha256, same rai4eo.precision and same configuration (ignoring
 * change_threshold, which does not change embeddings) means the built engine
 * is reused, anything else rebuilds the slot.  Slots are rebuilt, never
 * freed, and carry a generation number, so a handle never follows a pointer
 * to a freed engine.
 *
 * Consistency with the stored weights rests on a lock per model name (see
 * ModelLock): every transaction that runs a model holds it in share mode
 * until it ends, and rai4eo_load_model takes it in exclusive mode before it
 * replaces a row.  The row is read with a snapshot taken after the lock is
 * granted, and re-read whenever this transaction (or subtransaction) did not
 * hold the lock yet, so a replace can neither slip between the lookup and the
 * INSERT of the embeddings, nor go unnoticed by a PL/pgSQL call site whose
 * expression state outlives a statement.
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "core_error.h"
#include "executor/spi.h"
#include "guc.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "model_cache.h"
#include "rai4eo/engine.h"
#include "rai4eo/json.h"
#include "rai4eo/safetensors.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/*
 * Activation arenas above this size are freed after the call that grew them:
 * a batch of 16 ViT-S images of 224 x 224 needs about 70 MB and keeps its
 * arena, one 2048 x 2048 image (over 1 GB) does not keep it for the session.
 */
#define MODEL_KEEP_WORK_BYTES ((size_t) 128 * 1024 * 1024)

/* field4 of the advisory lock tag: pg_advisory_lock() uses 1 and 2 */
#define MODEL_LOCK_FIELD4 0x7234

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
	m->validated_lxid = InvalidLocalTransactionId;
}

void
ModelForget(const char *name)
{
	CachedModel *m = FindSlot(name, false);

	if (m != NULL)
		EmptySlot(m);
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
static void
PreparePlans(void)
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

/* Run a name lookup with the given snapshot (read-only) */
static void
LookupModel(SPIPlanPtr plan, const char *name, Snapshot snap)
{
	Datum		arg = CStringGetTextDatum(name);

	if (SPI_execute_snapshot(plan, &arg, NULL, snap, InvalidSnapshot, true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "model lookup failed");
	if (SPI_processed == 0)
		ReportUnknownModel(name);
}

/* (Re)build slot m from the row seen by snap: runs inside SPI, engine parented to keep */
static void
BuildSlot(CachedModel *m, const char *name, MemoryContext keep, Snapshot snap)
{
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

	LookupModel(weights_plan, name, snap);
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
		r4_engine_build(&st, &cfg, &engine, &err) != R4_OK ||
		r4_engine_set_precision(engine, (R4Precision) rai4eo_precision, &err) != R4_OK)
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
	m->precision = rai4eo_precision;
	memcpy(m->sha256, VARDATA_ANY(sha), 32);
	m->config_key = MemoryContextStrdup(TopMemoryContext, config_key);
}

void
ModelCheckExists(const char *name)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PreparePlans();
	LookupModel(meta_plan, name, InvalidSnapshot);
	SPI_finish();
}

CachedModel *
ModelHandleGet(ModelHandle *h, const char *name)
{
	MemoryContext caller = CurrentMemoryContext;
	bool		newly_locked = ModelLock(name, false);
	bool		isnull;
	bytea	   *sha;
	char	   *config_key;
	char	   *arch;
	CachedModel *m;
	Snapshot	snap;

	/*
	 * Reuse what this transaction validated while it held the lock: nobody can
	 * have committed a replace since.  A lock just granted (new transaction,
	 * or a subtransaction that held it rolled back) means read the row again.
	 */
	if (!newly_locked && h->model != NULL && h->generation == h->model->generation &&
		h->model->engine != NULL && h->model->validated_lxid == MyProc->lxid &&
		h->model->validated_cid == GetCurrentCommandId(false) && strcmp(h->name, name) == 0 &&
		h->model->precision == rai4eo_precision)
		return h->model;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PreparePlans();

	/*
	 * The statement's snapshot may predate the lock (and a repeatable-read
	 * transaction's always does): read the row as committed now, so that a
	 * replace that committed while we waited for the lock is seen.
	 */
	snap = RegisterSnapshot(GetLatestSnapshot());
	LookupModel(meta_plan, name, snap);
	sha = GetBytea(1, &isnull);
	config_key = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	arch = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	if (arch != NULL && strcmp(arch, "external") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("model \"%s\" holds external embeddings: the database cannot compute them", name),
				 errhint("Insert its embeddings into rai4eo.embedding directly.")));
	if (arch != NULL && (strcmp(arch, "lstm") == 0 || strcmp(arch, "gru") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("model \"%s\" is a temporal classifier: it reads sequences of embeddings, not images", name),
				 errhint("Use rai4eo_classify_series() or rai4eo_classify_sequence().")));

	m = FindSlot(name, true);
	if (m->engine == NULL || sha == NULL || VARSIZE_ANY_EXHDR(sha) != 32 ||
		memcmp(m->sha256, VARDATA_ANY(sha), 32) != 0 ||
		config_key == NULL || strcmp(m->config_key, config_key) != 0 ||
		m->precision != rai4eo_precision)
		BuildSlot(m, name, caller, snap);
	m->validated_lxid = MyProc->lxid;
	m->validated_cid = GetCurrentCommandId(false);
	UnregisterSnapshot(snap);
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

/* Free the activation arena when it grew past what is worth keeping */
static void
TrimWork(CachedModel *m)
{
	if (r4_engine_work_bytes(m->engine) > MODEL_KEEP_WORK_BYTES)
		r4_engine_release_work(m->engine);
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
	PG_TRY();
	{
		rc = r4_engine_forward(m->engine, input, B, H, W, out, CheckInterrupts, NULL, &err);
	}
	PG_CATCH();
	{
		/* A cancel longjmps out of the engine: do not keep a huge arena for it */
		MemoryContextSwitchTo(old);
		TrimWork(m);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	TrimWork(m);
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
