/*
 * engine.h — one interface over the architectures the core runs (the
 * descriptors of arch.h: ViT, ResNet), so the PostgreSQL glue and the tools
 * never switch on arch.
 *
 * Same contract as the per-architecture APIs (vit.h): build from validated
 * weights and a resolved configuration, then forward batches of
 * preprocessed images [B][in_chans][H][W] into [B][cfg->out_dim].
 */
#ifndef RAI4EO_ENGINE_H
#define RAI4EO_ENGINE_H

#include <stddef.h>

#include "rai4eo/arch.h"
#include "rai4eo/core.h"
#include "rai4eo/head.h"
#include "rai4eo/model_config.h"
#include "rai4eo/safetensors.h"

typedef struct R4Engine R4Engine;

/* The largest raster (width x height) a model reads, whatever its input mode. */
#define R4_MAX_INPUT_PIXELS (4096L * 4096L)

/*
 * Check, from its size alone, that a raster of W x H pixels can go through
 * the model cfg describes (preprocessing, then the architecture's limits):
 * R4_ERR_LIMIT before anything is decoded or allocated.
 */
R4Status	r4_engine_check_input(const R4ModelConfig *cfg, int H, int W, R4Error *err);

/*
 * Build the engine cfg->arch names (it keeps its own copy of cfg, so cfg
 * may be freed afterwards); R4_ERR_UNSUPPORTED for an architecture not
 * built in.
 */
R4Status	r4_engine_build(const R4SafeTensors *st, const R4ModelConfig *cfg,
							R4Engine **out, R4Error *err);

/*
 * Run the engine's GEMMs in precision from now on (vit.h's
 * r4_vit_set_precision; an architecture without a bf16 path, ResNet
 * today, stays fp32 and reports it through r4_engine_precision).
 */
R4Status	r4_engine_set_precision(R4Engine *e, R4Precision precision, R4Error *err);

/* The precision the engine's GEMMs actually run in. */
R4Precision r4_engine_precision(const R4Engine *e);

/* Embed B images; errors as r4_vit_forward. */
R4Status	r4_engine_forward(R4Engine *e, const float *input, int B, int H, int W,
							  float *out, R4InterruptCheck check, void *check_arg,
							  R4Error *err);

/*
 * Class probabilities [B][cfg->n_classes] from features [B][cfg->out_dim]
 * (what r4_engine_forward wrote), through the model's classification head.
 * R4_ERR_INVALID when the model has no head in use.
 */
R4Status	r4_engine_classify(R4Engine *e, const float *features, int B, float *probs,
							   R4Error *err);

/* The configuration the engine was built with. */
const R4ModelConfig *r4_engine_config(const R4Engine *e);

/* Number of weights the engine uses. */
size_t		r4_engine_param_count(const R4Engine *e);

/* Bytes of activation memory the engine holds between forward passes. */
size_t		r4_engine_work_bytes(const R4Engine *e);

/* Free that memory (a later forward pass allocates it again). */
void		r4_engine_release_work(R4Engine *e);

/* Release the engine; NULL is fine. */
void		r4_engine_free(R4Engine *e);

#endif							/* RAI4EO_ENGINE_H */
