/*
 * model_cache.h — models as a backend uses them: looked up by name in
 * rai4eo.model, built once, kept per backend and re-validated once per call
 * site (that is, once per statement), so a model replaced or dropped in
 * another session is noticed by the next statement.
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
	uint64		generation;		/* changes whenever the slot is rebuilt or emptied */
} CachedModel;

/* What one call site remembers between rows */
typedef struct ModelHandle
{
	char	   *name;			/* in the call site's memory context */
	CachedModel *model;
	uint64		generation;
	MemoryContext mcxt;
} ModelHandle;

/* The model argument resolved: the name, or rai4eo.default_model when NULL. */
char	   *ResolveModelName(text *arg);

/* Raise 42704 unless rai4eo.model has a row called name. */
void		ModelCheckExists(const char *name);

/* Initialise a handle living in mcxt. */
void		ModelHandleInit(ModelHandle *h, MemoryContext mcxt);

/*
 * The built model called name, validated against rai4eo.model once per
 * handle (42704 if there is no such model).
 */
CachedModel *ModelHandleGet(ModelHandle *h, const char *name);

/*
 * Run the engine on B preprocessed inputs of H x W; out receives
 * B * cfg.out_dim floats.  Cancellable between blocks.
 */
void		ModelForward(CachedModel *m, const float *input, int B, int H, int W, float *out);

/*
 * Class probabilities [B][cfg.n_classes] from features [B][cfg.out_dim];
 * 22023 when the model has no classification head in use.
 */
void		ModelClassify(CachedModel *m, const float *features, int B, float *probs);

/* Width of what rai4eo_embed returns: features, or class probabilities. */
int			ModelEmbedDim(const CachedModel *m);

/*
 * Validate weights + config completely by building the engine in a scratch
 * context.  Returns the canonical configuration JSON (palloc'd) and fills
 * cfg and parameters.  Errors name what is wrong (22P03 malformed file,
 * 22023 bad configuration, 22000 shape mismatch, 0A000 unsupported).
 */
char	   *ModelValidate(const uint8 *buf, size_t len, const char *config_json,
						  R4ModelConfig *cfg, int64 *parameters);

#endif							/* RAI4EO_PG_MODEL_CACHE_H */
