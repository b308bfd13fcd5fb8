/*
 * model_cache.h — models as a backend uses them: looked up by name in
 * rai4eo.model (model_lookup.h), built once and kept per backend.  A
 * transaction that runs a model holds its lock (share mode) until it ends
 * and reads the row once under it; rai4eo_load_model replaces a row only
 * under the exclusive lock.  So an embedding computed and stored in one
 * transaction always comes from the weights stored when it commits, and a
 * model replaced or dropped in another session is noticed by this session's
 * next transaction.  Running a cached model: inference.h.
 */
#ifndef RAI4EO_PG_MODEL_CACHE_H
#define RAI4EO_PG_MODEL_CACHE_H

#include "postgres.h"

#include "fmgr.h"
#include "rai4eo/model_config.h"
#include "rai4eo/engine.h"

/* A built model; owned by the cache, never freed while a statement may use it */
typedef struct CachedModel
{
	char	   *name;
	uint8		sha256[32];
	char	   *config_key;		/* stored config without change_threshold */
	MemoryContext mcxt;			/* engine weights, arena, caches */
	R4Engine   *engine;
	R4ModelConfig cfg;
	int			precision;		/* rai4eo.precision the engine was built for */
	uint64		generation;		/* changes whenever the slot is rebuilt or emptied */
	LocalTransactionId validated_lxid;	/* transaction that last read the row under the lock */
	CommandId	validated_cid;	/* and its command then: a later write of ours (a manual UPDATE) re-reads */
} CachedModel;

/* What one call site remembers between rows */
typedef struct ModelHandle
{
	char	   *name;			/* in the call site's memory context */
	CachedModel *model;
	uint64		generation;
	MemoryContext mcxt;
} ModelHandle;

/* Drop this backend's engine for name (after this session replaced it). */
void		ModelForget(const char *name);

/* Raise 42704 unless rai4eo.model has a row called name. */
void		ModelCheckExists(const char *name);

/* Initialise a handle living in mcxt. */
void		ModelHandleInit(ModelHandle *h, MemoryContext mcxt);

/*
 * The built model called name (42704 if there is no such model), under its
 * share lock, validated against rai4eo.model once per transaction.
 */
CachedModel *ModelHandleGet(ModelHandle *h, const char *name);

#endif							/* RAI4EO_PG_MODEL_CACHE_H */
