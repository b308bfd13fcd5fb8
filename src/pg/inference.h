/*
 * inference.h — running a cached model's engine from SQL-callable code:
 * features, class probabilities and the width rai4eo_embed returns.
 */
#ifndef RAI4EO_PG_INFERENCE_H
#define RAI4EO_PG_INFERENCE_H

#include "model_cache.h"

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

#endif							/* RAI4EO_PG_INFERENCE_H */
