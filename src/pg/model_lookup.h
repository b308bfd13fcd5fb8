/*
 * model_lookup.h — finding a model by name: the name a call means, the lock
 * that keeps its row stable for the transaction, and the two kept SQL plans
 * that read the row (rai4eo.model, or its local Citus placement).
 *
 * Used by the cache (model_cache.c) and by rai4eo_load_model
 * (model_store.c, which takes the lock in exclusive mode before it replaces
 * a row).  Nothing here builds or keeps an engine.
 */
#ifndef RAI4EO_PG_MODEL_LOOKUP_H
#define RAI4EO_PG_MODEL_LOOKUP_H

#include "postgres.h"

#include "utils/snapshot.h"

/* The model argument resolved: the name, or rai4eo.default_model when NULL. */
char	   *ResolveModelName(text *arg);

/*
 * Take the lock of model name until the transaction ends: share mode before
 * computing with it, exclusive before replacing its row.  Returns true when
 * this (sub)transaction did not hold it yet.
 */
bool		ModelLock(const char *name, bool exclusive);

/*
 * Prepare (once per backend, again when the table changes) the plans
 * ModelLookupRow runs; inside SPI, before the first lookup of a connection.
 */
void		ModelLookupPrepare(void);

/* What a lookup reads from the model's row. */
typedef enum ModelRowKind
{
	MODEL_ROW_META,				/* sha256, config without change_threshold, arch */
	MODEL_ROW_WEIGHTS			/* sha256, config without change_threshold, config, weights */
} ModelRowKind;

/*
 * Read the row of model name with snap (InvalidSnapshot: the statement's),
 * inside SPI; false when there is no such row.  The row is then
 * SPI_tuptable->vals[0], with the columns listed above.
 */
bool		ModelLookupRow(ModelRowKind kind, const char *name, Snapshot snap);

/* Column col of that row as a detoasted bytea (NULL when SQL NULL). */
bytea	   *ModelRowBytea(int col, bool *isnull);

#endif							/* RAI4EO_PG_MODEL_LOOKUP_H */
