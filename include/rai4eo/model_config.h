/*
 * model_config.h — everything an engine needs to know about a model that
 * the weight shapes alone cannot tell, resolved once at load time.
 *
 * Sources, weakest first: defaults, the safetensors __metadata__ (string to
 * string: numbers, booleans and lists written as JSON text such as
 * "bands": "[3,2,1,4]", words as they are such as "arch": "vit"), then the
 * configuration object given at load time (real JSON values), which wins
 * key by key.  Shapes come from the tensors and are checked, never taken on
 * trust.
 *
 * Configuration keys (metadata keys not listed are ignored; configuration
 * object keys not listed are an error, so typos do not pass silently):
 *   arch              "vit" (default when ViT tensors are present);
 *                     "resnet" is reserved and reported as unsupported
 *   num_heads         default embed_dim / 64; must divide embed_dim
 *   ln_eps            LayerNorm epsilon, default 1e-6 (DINO's factories)
 *   img_size          resize target; default sqrt(pos_embed tokens - 1) * patch
 *   bands             1-based raster band numbers in model channel order,
 *                     one per input channel; default 1..in_chans
 *   scale             raw values are multiplied by it first; default 1
 *   mean, std         per channel (a list of in_chans numbers) or one
 *                     number for all; defaults 0 and 1; std > 0
 *   input             "native" (default: the patch at its own size, with
 *                     DINO's position-embedding interpolation) or "resize"
 *                     (bilinear to img_size x img_size)
 *   n_last_blocks     CLS tokens of the last n blocks, 1..depth; default 1
 *   avgpool           also the mean of the last block's patch tokens;
 *                     default false
 *   change_threshold  calibrated cosine-distance threshold; null unsets
 *   embed_dim, depth, patch_size, in_chans, mlp_hidden, out_dim
 *                     derived from the shapes; accepted only as assertions
 *                     (a different value is R4_ERR_MISMATCH), so the JSON
 *                     that r4_model_config_to_json writes can be fed back
 */
#ifndef RAI4EO_MODEL_CONFIG_H
#define RAI4EO_MODEL_CONFIG_H

#include <stdbool.h>

#include "rai4eo/core.h"
#include "rai4eo/json.h"
#include "rai4eo/safetensors.h"

#define R4_MAX_CHANNELS 256		/* more input channels: R4_ERR_LIMIT */
#define R4_MAX_DEPTH 1024		/* more blocks: R4_ERR_LIMIT */
#define R4_MAX_EMBED_DIM 65536	/* larger embed or MLP widths: R4_ERR_LIMIT */
#define R4_MAX_PATCH 1024		/* larger patches: R4_ERR_LIMIT */

typedef enum R4Arch
{
	R4_ARCH_VIT = 1,
	R4_ARCH_RESNET = 2			/* reserved: not supported yet */
} R4Arch;

typedef enum R4InputMode
{
	R4_INPUT_NATIVE = 0,
	R4_INPUT_RESIZE = 1
} R4InputMode;

typedef struct R4ModelConfig
{
	R4Arch		arch;
	/* From the weight shapes. */
	int			embed_dim;		/* D: patch_embed.proj.weight [D, C, P, P] */
	int			depth;			/* number of blocks.N */
	int			patch_size;		/* P */
	int			in_chans;		/* C */
	int			mlp_hidden;		/* blocks.0.mlp.fc1.weight [hidden, D] */
	int			pos_grid;		/* training grid side: pos_embed [1, grid^2 + 1, D] */
	/* From metadata / configuration, with defaults. */
	int			num_heads;
	double		ln_eps;
	int			img_size;
	int			bands[R4_MAX_CHANNELS];	/* in_chans entries, each >= 1 */
	double		scale;
	double		mean[R4_MAX_CHANNELS];	/* in_chans entries */
	double		std[R4_MAX_CHANNELS];	/* in_chans entries, each > 0 */
	R4InputMode input;
	int			n_last_blocks;
	bool		avgpool;
	bool		has_change_threshold;
	double		change_threshold;
	/* Derived: embed_dim * (n_last_blocks + avgpool). */
	int			out_dim;
} R4ModelConfig;

/*
 * Resolve and validate a model's configuration from its weights, their
 * metadata and an optional configuration object (config may be NULL; if
 * given it must be an object).  Errors:
 *   R4_ERR_INVALID      missing required tensors (named, up to five, then
 *                       "and N more"), unknown configuration keys, values
 *                       of the wrong type or out of their domain
 *   R4_ERR_MISMATCH     a tensor of the wrong shape (key, expected and
 *                       actual shape), bands/mean/std of the wrong length,
 *                       num_heads not dividing embed_dim, a derived-value
 *                       assertion that does not hold
 *   R4_ERR_UNSUPPORTED  a required tensor that is not F32/F16/BF16, an
 *                       architecture or a ViT variant (LayerScale, q/k
 *                       norm, register tokens, pre-norm, fc_norm) that the
 *                       engine does not implement
 *   R4_ERR_LIMIT        sizes beyond the R4_MAX_* limits
 * Tensors that are not part of the architecture (head.*,
 * num_batches_tracked, ...) are ignored.
 */
R4Status	r4_model_config_resolve(const R4SafeTensors *st, const R4Json *config,
									R4ModelConfig *out, R4Error *err);

/*
 * The resolved configuration as canonical JSON text (every key, derived
 * ones included, in a fixed order), allocated with r4_alloc; NULL when out
 * of memory.  Feeding it back as the configuration object resolves to the
 * same configuration.
 */
char	   *r4_model_config_to_json(const R4ModelConfig *cfg);

/* Name of an architecture as the configuration spells it ("vit"). */
const char *r4_arch_name(R4Arch arch);

#endif							/* RAI4EO_MODEL_CONFIG_H */
