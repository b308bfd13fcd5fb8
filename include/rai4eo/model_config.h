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
 *   arch              "vit" (default when ViT tensors are present) or
 *                     "resnet" (default when layer1.0.conv1.weight is);
 *                     "resnet18", "resnet34", "resnet50", "resnet101" and
 *                     "resnet152" also assert the block type and the blocks
 *                     per stage.  Weights holding both kinds need "arch".
 *   num_heads         ViT only: default embed_dim / 64; must divide embed_dim
 *   ln_eps            ViT only: LayerNorm epsilon, default 1e-6 (DINO's
 *                     factories)
 *   bn_eps            ResNet only: BatchNorm epsilon, default 1e-5
 *                     (nn.BatchNorm2d's)
 *   img_size          resize target; default sqrt(pos_embed tokens - 1) * patch
 *                     for a ViT, 224 for a ResNet
 *   bands             1-based raster band numbers in model channel order,
 *                     one per input channel; default 1..in_chans
 *   scale             raw values are multiplied by it first; default 1
 *   mean, std         per channel (a list of in_chans numbers) or one
 *                     number for all; defaults 0 and 1; std > 0
 *   input             "native" (default: the patch at its own size, with
 *                     DINO's position-embedding interpolation) or "resize"
 *                     (bilinear to img_size x img_size)
 *   n_last_blocks     ViT only: CLS tokens of the last n blocks, 1..depth;
 *                     default 1
 *   avgpool           ViT only: also the mean of the last block's patch
 *                     tokens; default false
 *   readout           ViT only: "cls" (default: the two keys above) or
 *                     "token_stats" (mean and std of the last block's patch
 *                     tokens before the final norm; out_dim 2 x embed_dim)
 *   readout_grid      ViT token_stats only: the statistics per region of a
 *                     g x g cut of the token grid, 1..8, default 1; out_dim
 *                     2 g^2 embed_dim
 *   change_threshold  calibrated cosine-distance threshold; null unsets
 *   head              false ignores a classification head in the weights
 *                     (head.* or fc.*, head.h); default true
 *   classes           class names (strings or numbers), one per head
 *                     output; default "0", "1", ...
 *   multilabel        sigmoid per class (true) or softmax (default false)
 *   output            "features" (default) or "probabilities": what
 *                     rai4eo_embed returns; probabilities need a head
 *   embed_dim, depth, patch_size, mlp_hidden (ViT), block, layers, width
 *   (ResNet), in_chans, out_dim
 *                     derived from the shapes; accepted only as assertions
 *                     (a different value is R4_ERR_MISMATCH), so the JSON
 *                     that r4_model_config_to_json writes can be fed back
 *
 * The ViT-only keys given for a ResNet (and bn_eps, block, layers, width
 * given for a ViT) are R4_ERR_INVALID, in the configuration object and in
 * the metadata alike, except that derived keys in the metadata are only
 * informational and never checked.
 *
 * This file resolves what every architecture shares (the keys above from
 * img_size to output, the classification head, detection of the
 * architecture); each architecture's own tensors, shapes, keys and
 * defaults live with it (arch.h, arch_vit.c, arch_resnet.c), and its part
 * of the resolved configuration is opaque here (R4ModelConfig.arch_data).
 * docs/architecture.md says how to add one.
 */
#ifndef RAI4EO_MODEL_CONFIG_H
#define RAI4EO_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rai4eo/core.h"
#include "rai4eo/json.h"
#include "rai4eo/safetensors.h"

#define R4_MAX_CHANNELS 256		/* more input channels: R4_ERR_LIMIT */

/*
 * Bounds on scale, mean and std (and on scale / std and mean / std), so that
 * (pixel * scale - mean) / std of any 16-bit pixel stays a normal, finite
 * float: a std of 1e-320 or a scale of 1e308 is refused when the model is
 * resolved, not met as NaN at every embed.
 */
#define R4_NORM_MIN 1e-30
#define R4_NORM_MAX 1e30
#define R4_MAX_DEPTH 1024		/* more blocks: R4_ERR_LIMIT */
#define R4_MAX_EMBED_DIM 65536	/* larger embed or MLP widths: R4_ERR_LIMIT */
#define R4_MAX_PATCH 1024		/* larger patches: R4_ERR_LIMIT */

#define R4_MAX_CLASSES 4096		/* more classes: R4_ERR_LIMIT */
#define R4_CLASS_NAMES_BYTES 32768	/* all class names together, NULs included */

/*
 * Bytes an architecture's own part of the configuration may take inside
 * R4ModelConfig (its struct is plain data, copied with the rest; each
 * architecture checks its size against this at compile time).
 */
#define R4_ARCH_CONFIG_BYTES 256

/* An architecture's descriptor (arch.h); opaque to code that only reads configurations. */
typedef struct R4ArchOps R4ArchOps;

/* What rai4eo_embed returns for a model with a classification head. */
typedef enum R4Output
{
	R4_OUTPUT_FEATURES = 0,
	R4_OUTPUT_PROBABILITIES = 1
} R4Output;

typedef enum R4InputMode
{
	R4_INPUT_NATIVE = 0,
	R4_INPUT_RESIZE = 1
} R4InputMode;

/*
 * A resolved configuration: what every architecture has, then the
 * architecture's own part (read it through the architecture's accessor,
 * e.g. r4_vit_cfg in vit.h).  Owns class_names: release with
 * r4_model_config_free, duplicate with r4_model_config_copy (a plain struct
 * copy shares class_names).
 */
typedef struct R4ModelConfig
{
	const R4ArchOps *arch;		/* never NULL once resolved */
	/* From the weight shapes. */
	int			in_chans;		/* input channels */
	int			min_input;		/* smallest input side the architecture takes
								 * (a ViT's patch, a ResNet's total stride) */
	/* From metadata / configuration, with defaults. */
	int			img_size;
	int			bands[R4_MAX_CHANNELS];	/* in_chans entries, each >= 1 */
	double		scale;
	double		mean[R4_MAX_CHANNELS];	/* in_chans entries */
	double		std[R4_MAX_CHANNELS];	/* in_chans entries, each > 0 */
	R4InputMode input;
	bool		has_change_threshold;
	double		change_threshold;
	/* Derived by the architecture: the width of the features it returns. */
	int			out_dim;
	/*
	 * Classification head (head.h): found in the weights, used unless the
	 * "head" key is false; its input width must be out_dim.
	 */
	int			n_classes;		/* 0: no head in use */
	bool		head_disabled;	/* "head": false although the weights hold one */
	bool		multilabel;		/* sigmoid per class instead of softmax */
	R4Output	output;			/* what rai4eo_embed returns */
	char	   *class_names;	/* n_classes names, each NUL-terminated
								 * (r4_alloc'd; NULL without a head) */
	size_t		class_names_len;	/* bytes of class_names, NULs included */
	/* The architecture's own part, plain data (see R4_ARCH_CONFIG_BYTES). */
	union
	{
		unsigned char bytes[R4_ARCH_CONFIG_BYTES];
		double		align_double;
		int64_t		align_int64;
		void	   *align_pointer;
	}			arch_data;
} R4ModelConfig;

/*
 * Resolve and validate a model's configuration from its weights, their
 * metadata and an optional configuration object (config may be NULL; if
 * given it must be an object).  On success *out owns memory (release it
 * with r4_model_config_free); on failure *out holds nothing to release.
 * Errors:
 *   R4_ERR_INVALID      missing required tensors (named, up to five, then
 *                       "and N more"), unknown configuration keys, values
 *                       of the wrong type or out of their domain
 *   R4_ERR_MISMATCH     a tensor of the wrong shape (key, expected and
 *                       actual shape), bands/mean/std of the wrong length,
 *                       num_heads not dividing embed_dim, a derived-value
 *                       assertion that does not hold
 *   R4_ERR_UNSUPPORTED  a required tensor that is not F32/F16/BF16, an
 *                       architecture or a ViT variant (LayerScale, q/k
 *                       norm, register tokens, pre-norm, fc_norm) or a
 *                       ResNet variant (deep stem, average-pool downsample,
 *                       extra tensors inside a block such as SE modules or
 *                       conv biases, a stem kernel other than 7 x 7) that
 *                       the engine does not implement
 *   R4_ERR_LIMIT        sizes beyond the R4_MAX_* limits
 *   R4_ERR_NOMEM        out of memory for the class names
 * Tensors that are not part of the architecture (head.*, fc.*,
 * num_batches_tracked, ...) are ignored.
 */
R4Status	r4_model_config_resolve(const R4SafeTensors *st, const R4Json *config,
									R4ModelConfig *out, R4Error *err);

/* Release what a resolved configuration owns (NULL and repeated calls are fine). */
void		r4_model_config_free(R4ModelConfig *cfg);

/* Deep copy of src into *dst (which then owns its own class names); R4_ERR_NOMEM. */
R4Status	r4_model_config_copy(R4ModelConfig *dst, const R4ModelConfig *src, R4Error *err);

/*
 * The resolved configuration as canonical JSON text (every key, derived
 * ones included, in a fixed order), allocated with r4_alloc; NULL when out
 * of memory.  Feeding it back as the configuration object resolves to the
 * same configuration.
 */
char	   *r4_model_config_to_json(const R4ModelConfig *cfg);

/* Name of an architecture as the configuration spells it ("vit", "resnet"). */
const char *r4_arch_name(const R4ArchOps *arch);

#endif							/* RAI4EO_MODEL_CONFIG_H */
