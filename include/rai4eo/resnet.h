/*
 * resnet.h — torchvision ResNet inference (BasicBlock and Bottleneck "v1.5")
 * on the CPU with OpenBLAS.
 *
 * Every convolution is stored once as F32 with its eval-mode BatchNorm
 * folded in (W' = W * s, b' = beta - mean * s, s = gamma / sqrt(var + eps),
 * computed in double), so the forward pass is convolutions, ReLU, one
 * max-pool and the global average pool.  Convolutions are im2col +
 * cblas_sgemm (1 x 1 stride-1 convolutions read the activations in place).
 * Activations live channel-major across the batch, [C][B][H][W], in one
 * arena sized from (batch, height, width) and grown only when a larger
 * shape is asked for; im2col works on bounded column chunks, so its buffer
 * does not grow with the image.  Nothing is allocated per layer.  The
 * computation reproduced is torchvision's resnet.py in eval mode
 * (docs/formats.md, "torchvision ResNet").
 *
 * An R4ResNet is not thread-safe (the arena belongs to it); use one per
 * thread.  BLAS threading is whatever the OpenBLAS build and its
 * environment say (docs/formats.md, "OpenBLAS").
 */
#ifndef RAI4EO_RESNET_H
#define RAI4EO_RESNET_H

#include <stdbool.h>
#include <stddef.h>

#include "rai4eo/core.h"
#include "rai4eo/model_config.h"
#include "rai4eo/arch.h"
#include "rai4eo/safetensors.h"

/* Most pixels one input image may have (any aspect ratio): 2048 x 2048. */
#define R4_RESNET_MAX_PIXELS (2048 * 2048)

#define R4_RESNET_STAGES 4		/* layer1 .. layer4 */

/* Smallest input side a ResNet takes: its total stride, so that the last stage still sees 1 x 1. */
#define R4_RESNET_MIN_SIZE 32

/* The ResNet part of a resolved configuration (R4ModelConfig.arch_data). */
typedef struct R4ResNetConfig
{
	/* From the weight shapes. */
	int			layers[R4_RESNET_STAGES];	/* blocks per stage: layerS.N */
	bool		bottleneck;		/* Bottleneck (conv1..conv3) or BasicBlock */
	int			width;			/* stem width: conv1.weight [width, C, 7, 7] */
	int			depth;			/* residual blocks, all stages */
	/* From metadata / configuration, with defaults. */
	double		bn_eps;			/* default 1e-5 (nn.BatchNorm2d's) */
} R4ResNetConfig;

/* The descriptor (arch_resnet.c): tensors, keys, defaults, engine. */
extern const R4ArchOps r4_arch_resnet;

/*
 * Tensor names (arch_resnet.c, shared with resnet.c): a BatchNorm's
 * entries after its prefix ("bn1.running_var"; NULL-terminated), and the
 * name of a tensor inside a residual block, "layer<stage>.<block>.<part>"
 * (stage 1-based).
 */
extern const char *const r4_resnet_bn_entries[];
void		r4_resnet_block_name(char *buf, size_t size, int stage, long block, const char *part);

/* The ResNet part of cfg, or NULL when cfg is not a ResNet's. */
const R4ResNetConfig *r4_resnet_cfg(const R4ModelConfig *cfg);

typedef struct R4ResNet R4ResNet;

/*
 * Build an engine from validated weights (cfg from r4_model_config_resolve
 * on the same st).  Copies, converts and folds every weight, so st and its
 * buffer may be freed afterwards.  R4_ERR_MISMATCH if cfg does not fit st,
 * R4_ERR_UNSUPPORTED for a configuration other than a ResNet,
 * R4_ERR_NOMEM.
 */
R4Status	r4_resnet_build(const R4SafeTensors *st, const R4ModelConfig *cfg,
							R4ResNet **out, R4Error *err);

/*
 * Embed B preprocessed images input[B][in_chans][H][W] into
 * out[B][out_dim]: the globally average-pooled output of layer4, which is
 * torchvision's forward with fc = Identity.  H and W may be any size from
 * R4_RESNET_MIN_SIZE (32) up, each image at most R4_RESNET_MAX_PIXELS.
 *
 * check (may be NULL) is called before the stem and before each residual
 * block, with vit.h's R4InterruptCheck contract: returning true stops the
 * pass with R4_ERR_LIMIT, and it may longjmp, since at every call the
 * engine owns all its memory and stays usable.
 *
 * Errors: R4_ERR_RANGE for B < 1 or H, W below the minimum, R4_ERR_LIMIT
 * for larger images or sizes that overflow, or when check returned true,
 * R4_ERR_NOMEM.
 */
R4Status	r4_resnet_forward(R4ResNet *m, const float *input, int B, int H, int W,
							  float *out, R4InterruptCheck check, void *check_arg,
							  R4Error *err);

/* One cblas_sgemm call of a forward pass (row-major, A and B not transposed). */
typedef struct R4GemmShape
{
	int			M,
				N,
				K;
	int			lda,
				ldb,
				ldc;
	bool		accumulate;		/* beta = 1 (a residual sum), else 0 */
} R4GemmShape;

/*
 * List the sgemm calls a forward pass of B images of H x W makes, in
 * order, for benchmarks that replay them.  Writes at most max entries and
 * sets *count to the total; errors as r4_resnet_forward.
 */
R4Status	r4_resnet_gemm_plan(const R4ResNet *m, int B, int H, int W,
								R4GemmShape *shapes, int max, int *count, R4Error *err);

/* The configuration the engine was built with. */
const R4ModelConfig *r4_resnet_config(const R4ResNet *m);

/*
 * Number of parameters of the source model as PyTorch counts them
 * (conv weights, BatchNorm weight and bias; running statistics excluded).
 */
size_t		r4_resnet_param_count(const R4ResNet *m);

/* Bytes held by the F32 weight block (folded weights and biases). */
size_t		r4_resnet_weight_bytes(const R4ResNet *m);

/* Bytes currently held by the activation arena. */
size_t		r4_resnet_work_bytes(const R4ResNet *m);

/* Free the activation arena; the next forward pass regrows it. */
void		r4_resnet_release_work(R4ResNet *m);

/* Release the engine; NULL is fine. */
void		r4_resnet_free(R4ResNet *m);

#endif							/* RAI4EO_RESNET_H */
