/*
 * model_cache.c — the per-backend cache of built models.
 *
 * A cache slot per model name lives in TopMemoryContext; the engine it holds
 * lives in its own context.  Same sha256, same rai4eo.precision and same configuration (ignoring
 * change_threshold, which does not change embeddings) means the built engine
 * is reused, anything else rebuilds the slot.  Slots are rebuilt, never
 * freed, and carry a generation number, so a handle never follows a pointer
 * to a freed engine.
 *
 * Consistency with the stored weights rests on the lock per model name (see
 * ModelLock in model_lookup.c): every transaction that runs a model holds it
 * in share mode until it ends, and rai4eo_load_model takes it in exclusive
 * mode before it replaces a row.  The row is read with a snapshot taken after
 * the lock is granted, and re-read whenever this transaction (or
 * subtransaction) did not hold the lock yet, so a replace can neither slip
 * between the lookup and the INSERT of the embeddings, nor go unnoticed by a
 * PL/pgSQL call site whose expression state outlives a statement.
 */
#include "postgres.h"

#include "access/xact.h"
#include "core_error.h"
#include "executor/spi.h"
#include "guc.h"
#include "miscadmin.h"
#include "model_cache.h"
#include "model_lookup.h"
#include "rai4eo/engine.h"
#include "rai4eo/json.h"
#include "rai4eo/safetensors.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

static CachedModel **slots = NULL;
static int	nslots = 0;
static int	maxslots = 0;
static uint64 next_generation = 1;

void
ModelHandleInit(ModelHandle *h, MemoryContext mcxt)
{
	memset(h, 0, sizeof(*h));
	h->mcxt = mcxt;
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


/* Look up name's row as kind; "no such model" when there is none */
static void
LookupModel(ModelRowKind kind, const char *name, Snapshot snap)
{
	if (!ModelLookupRow(kind, name, snap))
		ReportUnknownModel(name);
}

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

	LookupModel(MODEL_ROW_WEIGHTS, name, snap);
	sha = ModelRowBytea(1, &isnull);
	config_key = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	config_full = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	weights = ModelRowBytea(4, &isnull);
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
	ModelLookupPrepare();
	LookupModel(MODEL_ROW_META, name, InvalidSnapshot);
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
	ModelLookupPrepare();

	/*
	 * The statement's snapshot may predate the lock (and a repeatable-read
	 * transaction's always does): read the row as committed now, so that a
	 * replace that committed while we waited for the lock is seen.
	 */
	snap = RegisterSnapshot(GetLatestSnapshot());
	LookupModel(MODEL_ROW_META, name, snap);
	sha = ModelRowBytea(1, &isnull);
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
