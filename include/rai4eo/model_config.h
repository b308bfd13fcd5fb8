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
 * A ResNet is torchvision's (timm's names are the same): conv1 (7 x 7,
 * stride 2, no bias), bn1, ReLU, 3 x 3 / 2 max-pool, layer1..layer4 of
 * BasicBlocks (conv1, conv2: 3 x 3) or Bottlenecks (conv1 1 x 1, conv2
 * 3 x 3 carrying the stride, conv3 1 x 1: "v1.5"), stride 2 from layer2
 * on, downsample.0 (1 x 1 conv) + downsample.1 (BN) where the shape
 * changes, global average pooling.  Widths and blocks per stage come from
 * the tensors, the input channels from conv1.weight; fc.* is ignored.
 */
#ifndef RAI4EO_MODEL_CONFIG_H
#define RAI4EO_MODEL_CONFIG_H

#include <stdbool.h>

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

#define R4_RESNET_STAGES 4		/* layer1 .. layer4 */
/*
 * Smallest input side a ResNet takes: its total stride, so that the last
 * stage still sees a 1 x 1 map.  A ResNet's patch_size is this value, so
 * that code checking "at least one patch" works for both architectures.
 */
#define R4_RESNET_MIN_SIZE 32

typedef enum R4Arch
{
	R4_ARCH_VIT = 1,
	R4_ARCH_RESNET = 2
} R4Arch;

#define R4_MAX_CLASSES 4096		/* more classes: R4_ERR_LIMIT */
#define R4_CLASS_NAMES_BYTES 32768	/* all class names together, NULs included */

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

typedef struct R4ModelConfig
{
	R4Arch		arch;
	/* From the weight shapes. */
	int			embed_dim;		/* D: patch_embed.proj.weight [D, C, P, P];
								 * ResNet: the feature width (= out_dim) */
	int			depth;			/* number of blocks.N; ResNet: residual blocks */
	int			patch_size;		/* P; ResNet: R4_RESNET_MIN_SIZE */
	int			in_chans;		/* C (ResNet: conv1.weight [width, C, 7, 7]) */
	int			mlp_hidden;		/* blocks.0.mlp.fc1.weight [hidden, D]; ResNet: 0 */
	int			pos_grid;		/* training grid side: pos_embed [1, grid^2 + 1, D];
								 * ResNet: 0 */
	/* ResNet only, from the weight shapes (zero for a ViT). */
	int			resnet_layers[R4_RESNET_STAGES];	/* blocks per stage: layerS.N */
	bool		resnet_bottleneck;	/* Bottleneck (conv1..conv3) or BasicBlock */
	int			resnet_width;	/* stem width: conv1.weight [width, C, 7, 7] */
	/* From metadata / configuration, with defaults. */
	int			num_heads;		/* ViT only */
	double		ln_eps;			/* ViT only */
	double		bn_eps;			/* ResNet only */
	int			img_size;
	int			bands[R4_MAX_CHANNELS];	/* in_chans entries, each >= 1 */
	double		scale;
	double		mean[R4_MAX_CHANNELS];	/* in_chans entries */
	double		std[R4_MAX_CHANNELS];	/* in_chans entries, each > 0 */
	R4InputMode input;
	int			n_last_blocks;	/* ViT only */
	bool		avgpool;		/* ViT only */
	bool		has_change_threshold;
	double		change_threshold;
	/* Derived: embed_dim * (n_last_blocks + avgpool); ResNet: the last stage's width. */
	int			out_dim;
	/*
	 * Classification head (head.h): found in the weights, used unless the
	 * "head" key is false; its input width must be out_dim.
	 */
	int			n_classes;		/* 0: no head in use */
	bool		head_disabled;	/* "head": false although the weights hold one */
	bool		multilabel;		/* sigmoid per class instead of softmax */
	R4Output	output;			/* what rai4eo_embed returns */
	char		class_names[R4_CLASS_NAMES_BYTES];	/* n_classes names, each NUL-terminated */
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
 *                       norm, register tokens, pre-norm, fc_norm) or a
 *                       ResNet variant (deep stem, average-pool downsample,
 *                       extra tensors inside a block such as SE modules or
 *                       conv biases, a stem kernel other than 7 x 7) that
 *                       the engine does not implement
 *   R4_ERR_LIMIT        sizes beyond the R4_MAX_* limits
 * Tensors that are not part of the architecture (head.*, fc.*,
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

/* Name of an architecture as the configuration spells it ("vit", "resnet"). */
const char *r4_arch_name(R4Arch arch);

#endif							/* RAI4EO_MODEL_CONFIG_H */
