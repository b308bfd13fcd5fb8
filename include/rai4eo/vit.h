/*
 * vit.h — DINO v1 Vision Transformer inference on the CPU with OpenBLAS.
 *
 * The model is a flat struct of named float pointers into one allocation
 * holding every weight as F32 (converted from F32/F16/BF16 at build time);
 * activations live in one arena sized from (batch, tokens) and grown only
 * when a larger shape is asked for.  Nothing is allocated per layer or per
 * token.  The forward pass follows facebookresearch/dino
 * vision_transformer.py in eval mode (docs/formats.md, "DINO ViT").
 *
 * An R4ViT is not thread-safe (the arena and the position-embedding cache
 * belong to it); use one per thread.  BLAS threading is whatever the
 * OpenBLAS build and its environment say (docs/formats.md, "OpenBLAS").
 */
#ifndef RAI4EO_VIT_H
#define RAI4EO_VIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rai4eo/arch.h"
#include "rai4eo/core.h"
#include "rai4eo/gemm.h"
#include "rai4eo/model_config.h"
#include "rai4eo/safetensors.h"

/* Most tokens (patches + CLS) one image may have: a 128 x 128 patch grid. */
#define R4_VIT_MAX_TOKENS (128 * 128 + 1)

/* Largest readout_grid: 8 x 8 regions (out_dim 128 D). */
#define R4_VIT_MAX_READOUT_GRID 8

typedef struct R4ViT R4ViT;

/*
 * What the engine returns for an image (the "readout" key).  CLS: DINO
 * eval_linear's recipe, the final LayerNorm of CLS tokens (n_last_blocks,
 * avgpool).  TOKEN_STATS: the mean and the standard deviation over the
 * patch tokens of the last block's output before the final LayerNorm,
 * [mean (D), std (D)]: the per-token normalisation removes a token's
 * magnitude, and the spread across the patch is what a change in part of
 * it moves (README "Measuring features" gives the held-out figures).
 * With readout_grid g > 1 the token grid is cut into g x g regions (rows
 * [i gh / g, (i + 1) gh / g), the same for columns, integer division) and
 * each region gives its [mean, std], regions row-major: 2 g^2 D values
 * that say where in the patch the change lies.
 */
typedef enum R4ViTReadout
{
	R4_VIT_READOUT_CLS = 0,
	R4_VIT_READOUT_TOKEN_STATS
} R4ViTReadout;

/* The ViT part of a resolved configuration (R4ModelConfig.arch_data). */
typedef struct R4ViTConfig
{
	/* From the weight shapes. */
	int			embed_dim;		/* D: patch_embed.proj.weight [D, C, P, P] */
	int			depth;			/* number of blocks.N */
	int			patch_size;		/* P */
	int			mlp_hidden;		/* blocks.0.mlp.fc1.weight [hidden, D] */
	int			pos_grid;		/* training grid side: pos_embed [1, grid^2 + 1, D] */
	/* From metadata / configuration, with defaults. */
	int			num_heads;		/* default embed_dim / 64 */
	double		ln_eps;			/* default 1e-6 (DINO's factories) */
	int			n_last_blocks;	/* default 1 */
	bool		avgpool;		/* default false */
	R4ViTReadout readout;		/* default R4_VIT_READOUT_CLS */
	int			readout_grid;	/* TOKEN_STATS regions per side, default 1 */
} R4ViTConfig;

/* The descriptor (arch_vit.c): tensors, keys, defaults, engine. */
extern const R4ArchOps r4_arch_vit;

/* The ViT part of cfg, or NULL when cfg is not a ViT's. */
const R4ViTConfig *r4_vit_cfg(const R4ModelConfig *cfg);

/*
 * Tensor names, in the order the weight block holds them (arch_vit.c):
 * the global ones (cls_token, pos_embed, patch_embed.proj.weight,
 * patch_embed.proj.bias, norm.weight, norm.bias) and, after "blocks.N.",
 * the twelve of each block.  NULL-terminated.
 */
extern const char *const r4_vit_global_tensors[];
extern const char *const r4_vit_block_tensors[];

#define R4_VIT_GLOBAL_TENSORS 6
#define R4_VIT_BLOCK_TENSORS 12

/* A tensor's shape: ndim dimensions (at most 4). */
typedef struct R4ViTShape
{
	int			ndim;
	int64_t		dim[4];
} R4ViTShape;

/*
 * The shape of each tensor in those lists' order, for a resolved
 * configuration: validation (arch_vit.c) and the weight block (vit.c) use
 * the same table.  shapes has R4_VIT_GLOBAL_TENSORS or R4_VIT_BLOCK_TENSORS
 * entries.
 */
void		r4_vit_global_shapes(const R4ViTConfig *v, int in_chans, R4ViTShape *shapes);
void		r4_vit_block_shapes(const R4ViTConfig *v, R4ViTShape *shapes);

/*
 * Build an engine from validated weights (cfg from r4_model_config_resolve
 * on the same st).  Copies and converts every weight, so st and its buffer
 * may be freed afterwards.  R4_ERR_MISMATCH if cfg does not fit st,
 * R4_ERR_UNSUPPORTED for a configuration other than a ViT, R4_ERR_NOMEM.
 * The engine keeps a copy of cfg without its class names.
 */
R4Status	r4_vit_build(const R4SafeTensors *st, const R4ModelConfig *cfg,
						 R4ViT **out, R4Error *err);

/*
 * Embed B preprocessed images input[B][in_chans][H][W] into
 * out[B][out_dim].  H and W may be any size >= patch_size: the patch grid
 * is floor(H/P) x floor(W/P) (the remainder rows and columns are ignored,
 * as the stride-P convolution does) and the position embedding is
 * interpolated exactly as DINO v1 does (bicubic with the +0.1 scale factor;
 * no interpolation when the grid is the training grid and H == W).
 *
 * Features: the final LayerNorm applied to the output of each of the last
 * n_last_blocks blocks, CLS tokens concatenated oldest block first; with
 * avgpool, the mean of the last block's normed patch tokens is added.  For
 * n_last_blocks == 1 that is DINO eval_linear's interleaved layout
 * [cls0, avg0, cls1, avg1, ...]; for n_last_blocks > 1 (where DINO's own
 * code does not run) it is [cls of block depth-n ... cls of last block, avg].
 * With readout TOKEN_STATS: [mean, std] of the last block's patch tokens
 * before the final norm (CLS excluded; population std, sums in double),
 * per region of the readout_grid x readout_grid cut, regions row-major.
 *
 * check (may be NULL) is called before each block (arch.h's
 * R4InterruptCheck).
 *
 * Errors: R4_ERR_RANGE for B < 1 or H, W smaller than a patch or a token
 * grid smaller than readout_grid,
 * R4_ERR_LIMIT for more than R4_VIT_MAX_TOKENS tokens or sizes that
 * overflow, or when check returned true, R4_ERR_NOMEM.
 */
R4Status	r4_vit_forward(R4ViT *m, const float *input, int B, int H, int W,
						   float *out, R4InterruptCheck check, void *check_arg,
						   R4Error *err);

/* The configuration the engine was built with. */
const R4ModelConfig *r4_vit_config(const R4ViT *m);

/* Number of weights (parameters) in the model. */
size_t		r4_vit_param_count(const R4ViT *m);

/* Bytes held by the F32 weight block. */
size_t		r4_vit_weight_bytes(const R4ViT *m);

/* Bytes currently held by the activation arena and position-embedding cache. */
size_t		r4_vit_work_bytes(const R4ViT *m);

/* Free the activation arena and position cache; the next forward pass regrows them. */
void		r4_vit_release_work(R4ViT *m);

/*
 * Run the linear layers and the patch embedding in bf16 (gemm.h): their
 * matrices are packed to bf16 and dropped in fp32, about halving the
 * weight bytes.  fp32 -> bf16 only (build a new engine for fp32).
 * R4_ERR_NOMEM leaves the engine in fp32, unchanged.
 */
R4Status	r4_vit_set_precision(R4ViT *m, R4Precision precision, R4Error *err);

/* The precision the engine runs in (fp32 unless set). */
R4Precision r4_vit_precision(const R4ViT *m);

/* Release the engine; NULL is fine. */
void		r4_vit_free(R4ViT *m);

#endif							/* RAI4EO_VIT_H */
