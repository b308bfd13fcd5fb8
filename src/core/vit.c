/*
 * vit.c — the DINO v1 ViT forward pass: patch embedding as one GEMM,
 * position embeddings interpolated like DINO, pre-norm transformer blocks
 * with per-head attention straight out of the fused qkv buffer, and DINO's
 * feature recipes (n_last_blocks, avgpool).
 */
#include "rai4eo/vit.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "rai4eo/gemm.h"
#include "rai4eo/nn.h"

#define ALIGN_FLOATS 16			/* 64-byte alignment for every tensor slot */

typedef struct R4ViTBlock
{
	float	   *norm1_w,
			   *norm1_b;
	float	   *qkv_w,			/* [3D, D]: q rows, then k, then v */
			   *qkv_b;
	float	   *proj_w,			/* [D, D] */
			   *proj_b;
	float	   *norm2_w,
			   *norm2_b;
	float	   *fc1_w,			/* [hidden, D] */
			   *fc1_b;
	float	   *fc2_w,			/* [D, hidden] */
			   *fc2_b;
	/* bf16 precision: the four matrices packed (their fp32 pointers NULL) */
	R4PackedB  *qkv_p,
			   *proj_p,
			   *fc1_p,
			   *fc2_p;
} R4ViTBlock;

struct R4ViT
{
	R4ModelConfig cfg;			/* without class names (the head is engine.c's) */
	R4ViTConfig vc;				/* the ViT part of cfg */

	/* Weights: named pointers into the single block `params`. */
	float	   *params;
	size_t		param_floats;	/* allocated, padding included */
	size_t		param_count;	/* weights proper */
	float	   *cls_token;		/* [D] */
	float	   *pos_embed;		/* [1 + g*g][D] */
	float	   *patch_w;		/* [D][C*P*P] */
	float	   *patch_b;		/* [D] */
	float	   *norm_w,
			   *norm_b;
	R4ViTBlock *blocks;			/* [depth] */
	R4Precision precision;		/* fp32 unless r4_vit_set_precision said otherwise */
	R4PackedB  *patch_p;		/* bf16: patch_w packed */
	size_t		packed_bytes;	/* bf16: bytes of every packed matrix */

	/* Activations, sized for the largest (batch, tokens) seen so far. */
	float	   *arena;
	size_t		arena_floats;

	/* The interpolated position embedding for one patch grid. */
	float	   *pos_cache;
	size_t		pos_cache_floats;
	int			pos_gh,
				pos_gw;
	bool		pos_valid;
};

/* Where each activation lives inside the arena for one forward pass. */
typedef struct ViTActs
{
	float	   *x;				/* [M][D] residual stream */
	float	   *y;				/* [M][D] normed input / attention output */
	float	   *qkv;			/* [M][3D]; also the patch GEMM output */
	float	   *hidden;			/* [M][hidden]; also the im2col rows */
	float	   *scores;			/* [T][T] one head's attention */
	float	   *feats;			/* [B][out_dim] features before layout */
} ViTActs;

/* Round a float count up to the slot alignment. */
static int
align_floats(size_t n, size_t *out)
{
	if (r4_add_size(n, ALIGN_FLOATS - 1, &n) != 0)
		return -1;
	*out = n / ALIGN_FLOATS * ALIGN_FLOATS;
	return 0;
}

/* The tensors of the model, in slot order, with where their pointer goes. */
typedef struct WeightSlot
{
	char		name[96];
	float	  **dst;
	size_t		numel;
} WeightSlot;

/* Number of values of a tensor of shape s. */
static size_t
numel(const R4ViTShape *s)
{
	size_t		n = 1;

	for (int i = 0; i < s->ndim; i++)
		n *= (size_t) s->dim[i];
	return n;
}

/* List every weight and its expected size; returns the number of slots. */
static int
list_slots(R4ViT *m, WeightSlot *slots)
{
	const R4ModelConfig *c = &m->cfg;
	const R4ViTConfig *vc = &m->vc;
	int			n = 0;

#define SLOT(nm, ptr, count) \
	do { snprintf(slots[n].name, sizeof(slots[n].name), "%s", (nm)); \
		 slots[n].dst = (ptr); slots[n].numel = (count); n++; } while (0)

	/* Names and shapes from arch_vit.c: cls, pos, patch embedding; the blocks; the final norm */
	{
		float	  **gdst[R4_VIT_GLOBAL_TENSORS] = {&m->cls_token, &m->pos_embed, &m->patch_w,
		&m->patch_b, &m->norm_w, &m->norm_b};
		R4ViTShape	gs[R4_VIT_GLOBAL_TENSORS];
		R4ViTShape	bs[R4_VIT_BLOCK_TENSORS];

		r4_vit_global_shapes(vc, c->in_chans, gs);
		r4_vit_block_shapes(vc, bs);
		for (int k = 0; k < 4; k++)
			SLOT(r4_vit_global_tensors[k], gdst[k], numel(&gs[k]));
		for (int b = 0; b < vc->depth; b++)
		{
			R4ViTBlock *blk = &m->blocks[b];
			float	  **bdst[R4_VIT_BLOCK_TENSORS] = {&blk->norm1_w, &blk->norm1_b, &blk->qkv_w,
				&blk->qkv_b, &blk->proj_w, &blk->proj_b, &blk->norm2_w, &blk->norm2_b,
			&blk->fc1_w, &blk->fc1_b, &blk->fc2_w, &blk->fc2_b};

			for (int k = 0; k < R4_VIT_BLOCK_TENSORS; k++)
			{
				snprintf(slots[n].name, sizeof(slots[n].name), "blocks.%d.%s", b,
						 r4_vit_block_tensors[k]);
				slots[n].dst = bdst[k];
				slots[n].numel = numel(&bs[k]);
				n++;
			}
		}
		for (int k = 4; k < R4_VIT_GLOBAL_TENSORS; k++)
			SLOT(r4_vit_global_tensors[k], gdst[k], numel(&gs[k]));
	}
#undef SLOT
	return n;
}

/* Build the engine: one F32 block holding every weight. */
R4Status
r4_vit_build(const R4SafeTensors *st, const R4ModelConfig *cfg,
			 R4ViT **out, R4Error *err)
{
	R4ViT	   *m;
	const R4ViTConfig *vc;
	WeightSlot *slots = NULL;
	int			nslots;
	size_t		total = 0;
	size_t		bytes;
	R4Status	rc;

	*out = NULL;
	if (st == NULL || cfg == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_vit_build called without weights or configuration");
	if ((vc = r4_vit_cfg(cfg)) == NULL)
		return r4_fail(err, R4_ERR_UNSUPPORTED, "r4_vit_build needs a ViT configuration, not %s",
					   r4_arch_name(cfg->arch));
	if (vc->depth < 1 || vc->embed_dim < 1 || vc->num_heads < 1 ||
		vc->embed_dim % vc->num_heads != 0 || vc->n_last_blocks < 1 ||
		vc->n_last_blocks > vc->depth || vc->pos_grid < 1 || vc->patch_size < 1 ||
		cfg->in_chans < 1 || vc->mlp_hidden < 1)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_vit_build called with an unresolved configuration");

	m = r4_alloc_zero(sizeof(R4ViT));
	if (m == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory building the ViT");
	m->cfg = *cfg;
	m->cfg.class_names = NULL;
	m->cfg.class_names_len = 0;
	m->vc = *vc;
	m->blocks = r4_alloc_zero(sizeof(R4ViTBlock) * (size_t) vc->depth);
	slots = r4_alloc(sizeof(WeightSlot) * ((size_t) vc->depth * 12 + 6));
	if (m->blocks == NULL || slots == NULL)
	{
		rc = r4_fail(err, R4_ERR_NOMEM, "out of memory building the ViT");
		goto fail;
	}
	nslots = list_slots(m, slots);

	/* Check every tensor against the configuration and size the block. */
	for (int i = 0; i < nslots; i++)
	{
		const R4StTensor *t = r4_safetensors_find(st, slots[i].name);
		size_t		padded;

		if (t == NULL)
		{
			rc = r4_fail(err, R4_ERR_MISMATCH, "tensor \"%s\" is missing from the weights",
						 slots[i].name);
			goto fail;
		}
		if (t->numel != slots[i].numel)
		{
			rc = r4_fail(err, R4_ERR_MISMATCH,
						 "tensor \"%s\" has %zu values but the configuration needs %zu",
						 slots[i].name, t->numel, slots[i].numel);
			goto fail;
		}
		if (align_floats(t->numel, &padded) != 0 || r4_add_size(total, padded, &total) != 0)
		{
			rc = r4_fail(err, R4_ERR_LIMIT, "model weights are too large");
			goto fail;
		}
		m->param_count += t->numel;
	}
	if (r4_mul_size(total, sizeof(float), &bytes) != 0 ||
		r4_add_size(bytes, ALIGN_FLOATS * sizeof(float), &bytes) != 0)
	{
		rc = r4_fail(err, R4_ERR_LIMIT, "model weights are too large");
		goto fail;
	}
	m->params = r4_alloc(bytes);
	if (m->params == NULL)
	{
		rc = r4_fail(err, R4_ERR_NOMEM, "out of memory for %zu bytes of ViT weights", bytes);
		goto fail;
	}
	m->param_floats = total;

	/* Convert each tensor into its slot. */
	{
		float	   *base = m->params;
		size_t		off = 0;

		/* The allocator only promises malloc alignment; align the first slot. */
		while (((uintptr_t) (base + off)) % (ALIGN_FLOATS * sizeof(float)) != 0)
			off++;
		for (int i = 0; i < nslots; i++)
		{
			const R4StTensor *t = r4_safetensors_find(st, slots[i].name);
			size_t		padded = 0;

			*slots[i].dst = base + off;
			rc = r4_tensor_to_f32_finite(t, base + off, err);
			if (rc != R4_OK)
				goto fail;
			(void) align_floats(t->numel, &padded);
			off += padded;
		}
	}
	r4_free(slots);
	*out = m;
	return R4_OK;

fail:
	r4_free(slots);
	r4_vit_free(m);
	return rc;
}

/* Release the engine and everything it holds. */
void
r4_vit_free(R4ViT *m)
{
	if (m == NULL)
		return;
	r4_free(m->params);
	for (int b = 0; m->blocks != NULL && b < m->vc.depth; b++)
	{
		r4_packed_b_free(m->blocks[b].qkv_p);
		r4_packed_b_free(m->blocks[b].proj_p);
		r4_packed_b_free(m->blocks[b].fc1_p);
		r4_packed_b_free(m->blocks[b].fc2_p);
	}
	r4_packed_b_free(m->patch_p);
	r4_free(m->blocks);
	r4_free(m->arena);
	r4_free(m->pos_cache);
	r4_free(m);
}

/* Report the configuration the engine was built with. */
const R4ModelConfig *
r4_vit_config(const R4ViT *m)
{
	return &m->cfg;
}

/* Count the model's weights. */
size_t
r4_vit_param_count(const R4ViT *m)
{
	return m->param_count;
}

/* Report the bytes of the weight block. */
size_t
r4_vit_weight_bytes(const R4ViT *m)
{
	return (m->param_floats + ALIGN_FLOATS) * sizeof(float) + m->packed_bytes;
}

/* Report the bytes of the activation arena and position cache. */
size_t
r4_vit_work_bytes(const R4ViT *m)
{
	return (m->arena_floats + m->pos_cache_floats) * sizeof(float);
}

/*
 * Switch an fp32 engine to bf16: pack the linear layers' matrices (and the
 * patch embedding's) into bf16 panels, then move the remaining fp32
 * tensors into a smaller block, so the weights take about half the bytes.
 * One way only: an engine for fp32 is built again.
 */
R4Status
r4_vit_set_precision(R4ViT *m, R4Precision precision, R4Error *err)
{
	const R4ViTConfig *c = &m->vc;
	int			D = c->embed_dim,
				Hd = c->mlp_hidden,
				K = m->cfg.in_chans * c->patch_size * c->patch_size;
	WeightSlot *slots;
	int			nslots;
	size_t		total = 0;
	float	   *params,
			   *base;
	R4Status	rc = R4_OK;

	if (precision == m->precision)
		return R4_OK;
	if (precision != R4_PRECISION_BF16 || m->precision != R4_PRECISION_FP32)
		return r4_fail(err, R4_ERR_INTERNAL, "a ViT engine goes from fp32 to bf16 only");
	for (int b = 0; b < c->depth && rc == R4_OK; b++)
	{
		R4ViTBlock *blk = &m->blocks[b];

		if ((rc = r4_pack_b_bf16(blk->qkv_w, 3 * D, D, D, &blk->qkv_p, err)) != R4_OK ||
			(rc = r4_pack_b_bf16(blk->proj_w, D, D, D, &blk->proj_p, err)) != R4_OK ||
			(rc = r4_pack_b_bf16(blk->fc1_w, Hd, D, D, &blk->fc1_p, err)) != R4_OK ||
			(rc = r4_pack_b_bf16(blk->fc2_w, D, Hd, Hd, &blk->fc2_p, err)) != R4_OK)
			break;
	}
	if (rc == R4_OK)
		rc = r4_pack_b_bf16(m->patch_w, D, K, K, &m->patch_p, err);
	slots = rc == R4_OK ? r4_alloc(sizeof(WeightSlot) * ((size_t) c->depth * 12 + 6)) : NULL;
	if (rc == R4_OK && slots == NULL)
		rc = r4_fail(err, R4_ERR_NOMEM, "out of memory switching the ViT to bf16");
	if (rc != R4_OK)
		goto undo;

	/* The fp32 pointers of packed matrices go NULL; the rest move to a new block. */
	m->packed_bytes = r4_packed_b_bytes(m->patch_p);
	m->patch_w = NULL;
	for (int b = 0; b < c->depth; b++)
	{
		R4ViTBlock *blk = &m->blocks[b];

		m->packed_bytes += r4_packed_b_bytes(blk->qkv_p) + r4_packed_b_bytes(blk->proj_p) +
			r4_packed_b_bytes(blk->fc1_p) + r4_packed_b_bytes(blk->fc2_p);
		blk->qkv_w = blk->proj_w = blk->fc1_w = blk->fc2_w = NULL;
	}
	nslots = list_slots(m, slots);
	for (int i = 0; i < nslots; i++)
		if (*slots[i].dst != NULL)
		{
			size_t		padded = 0;

			(void) align_floats(slots[i].numel, &padded);
			total += padded;	/* cannot overflow: a part of what r4_vit_build summed */
		}
	params = r4_alloc((total + ALIGN_FLOATS) * sizeof(float));
	if (params == NULL)
	{
		/* Keep the old block: correct, only larger. */
		r4_free(slots);
		return R4_OK;
	}
	base = params;
	while (((uintptr_t) base) % (ALIGN_FLOATS * sizeof(float)) != 0)
		base++;
	for (int i = 0; i < nslots; i++)
		if (*slots[i].dst != NULL)
		{
			size_t		padded = 0;

			memcpy(base, *slots[i].dst, slots[i].numel * sizeof(float));
			*slots[i].dst = base;
			(void) align_floats(slots[i].numel, &padded);
			base += padded;
		}
	r4_free(m->params);
	m->params = params;
	m->param_floats = total;
	m->precision = R4_PRECISION_BF16;
	r4_free(slots);
	return R4_OK;

undo:
	for (int b = 0; b < c->depth; b++)
	{
		R4ViTBlock *blk = &m->blocks[b];

		r4_packed_b_free(blk->qkv_p);
		r4_packed_b_free(blk->proj_p);
		r4_packed_b_free(blk->fc1_p);
		r4_packed_b_free(blk->fc2_p);
		blk->qkv_p = blk->proj_p = blk->fc1_p = blk->fc2_p = NULL;
	}
	r4_packed_b_free(m->patch_p);
	m->patch_p = NULL;
	return rc;
}

R4Precision
r4_vit_precision(const R4ViT *m)
{
	return m->precision;
}

void
r4_vit_release_work(R4ViT *m)
{
	r4_free(m->arena);
	m->arena = NULL;
	m->arena_floats = 0;
	r4_free(m->pos_cache);
	m->pos_cache = NULL;
	m->pos_cache_floats = 0;
	m->pos_valid = false;
}

/*
 * Lay the activations out in the arena for B images of T tokens, growing
 * it when this shape needs more than it holds.
 */
static R4Status
plan_arena(R4ViT *m, int B, int T, int npatch, ViTActs *a, R4Error *err)
{
	const R4ModelConfig *c = &m->cfg;
	const R4ViTConfig *vc = &m->vc;
	size_t		M = (size_t) B * T;
	size_t		K = (size_t) c->in_chans * vc->patch_size * vc->patch_size;
	size_t		sizes[6];
	size_t		offs[6];
	size_t		need = 0;
	size_t		cols;
	size_t		bytes;
	int			bad = 0;

	bad |= r4_mul_size(M, (size_t) vc->embed_dim, &sizes[0]);
	sizes[1] = sizes[0];
	bad |= r4_mul_size(sizes[0], 3, &sizes[2]);
	bad |= r4_mul_size(M, (size_t) vc->mlp_hidden, &sizes[3]);
	bad |= r4_mul_size((size_t) B * npatch, K, &cols);
	if (cols > sizes[3])
		sizes[3] = cols;
	bad |= r4_mul_size((size_t) T, (size_t) T, &sizes[4]);
	bad |= r4_mul_size((size_t) B, (size_t) c->out_dim, &sizes[5]);
	for (int i = 0; i < 6 && !bad; i++)
	{
		size_t		padded;

		offs[i] = need;
		bad |= align_floats(sizes[i], &padded);
		bad |= r4_add_size(need, padded, &need);
	}
	bad |= r4_add_size(need, ALIGN_FLOATS, &need);
	bad |= r4_mul_size(need, sizeof(float), &bytes);
	/* cblas takes int dimensions; the widths are bounded by the config limits. */
	if (bad || M > INT_MAX)
		return r4_fail(err, R4_ERR_LIMIT, "a batch of %d images of %d tokens is too large", B, T);

	if (need > m->arena_floats)
	{
		r4_free(m->arena);
		m->arena_floats = 0;
		m->arena = r4_alloc(bytes);
		if (m->arena == NULL)
			return r4_fail(err, R4_ERR_NOMEM,
						   "out of memory for %zu bytes of ViT activations", bytes);
		m->arena_floats = need;
	}
	{
		float	   *base = m->arena;

		while (((uintptr_t) base) % (ALIGN_FLOATS * sizeof(float)) != 0)
			base++;
		a->x = base + offs[0];
		a->y = base + offs[1];
		a->qkv = base + offs[2];
		a->hidden = base + offs[3];
		a->scores = base + offs[4];
		a->feats = base + offs[5];
	}
	return R4_OK;
}

/*
 * Get the position embedding for a gh x gw patch grid, as DINO's
 * interpolate_pos_encoding computes it: unchanged when the grid is the
 * training grid and the image is square, else the patch part resampled
 * bicubically with scale factor (grid + 0.1) / g0 in each direction.
 */
static R4Status
position_table(R4ViT *m, int gh, int gw, bool square, const float **table, R4Error *err)
{
	int			g0 = m->vc.pos_grid;
	size_t		D = (size_t) m->vc.embed_dim;
	size_t		need = ((size_t) gh * gw + 1) * D;

	if (gh == g0 && gw == g0 && square)
	{
		*table = m->pos_embed;
		return R4_OK;
	}
	if (m->pos_valid && m->pos_gh == gh && m->pos_gw == gw)
	{
		*table = m->pos_cache;
		return R4_OK;
	}
	m->pos_valid = false;
	if (need > m->pos_cache_floats)
	{
		r4_free(m->pos_cache);
		m->pos_cache_floats = 0;
		m->pos_cache = r4_alloc(need * sizeof(float));
		if (m->pos_cache == NULL)
			return r4_fail(err, R4_ERR_NOMEM, "out of memory for the position embedding");
		m->pos_cache_floats = need;
	}
	memcpy(m->pos_cache, m->pos_embed, D * sizeof(float));
	/*
	 * DINO passes scale_factor=(gh + 0.1) / g0, and PyTorch then steps the
	 * source by 1 / scale_factor, not by g0 / gh (docs/formats.md, "DINO ViT").  Same double
	 * arithmetic as Python's and PyTorch's, so the rounded step agrees.
	 */
	r4_bicubic_resize_hwc(m->pos_embed + D, g0, g0, (int) D,
						  m->pos_cache + D, gh, gw,
						  1.0 / ((gh + 0.1) / (double) g0),
						  1.0 / ((gw + 0.1) / (double) g0));
	m->pos_gh = gh;
	m->pos_gw = gw;
	m->pos_valid = true;
	*table = m->pos_cache;
	return R4_OK;
}

/*
 * Embed the patches: im2col rows ordered (c, i, j) like the [D, C, P, P]
 * weight, one GEMM for the whole batch, then CLS, bias and positions.
 */
static void
patch_embed(const R4ViT *m, const ViTActs *a, const float *input, int B, int H, int W,
			int gh, int gw, const float *pos)
{
	const R4ModelConfig *c = &m->cfg;
	const R4ViTConfig *vc = &m->vc;
	int			C = c->in_chans;
	int			P = vc->patch_size;
	int			D = vc->embed_dim;
	int			np = gh * gw;
	int			T = np + 1;
	size_t		K = (size_t) C * P * P;
	float	   *cols = a->hidden;
	float	   *emb = a->qkv;

	for (int b = 0; b < B; b++)
		for (int py = 0; py < gh; py++)
			for (int px = 0; px < gw; px++)
			{
				float	   *row = cols + ((size_t) b * np + (size_t) py * gw + px) * K;

				for (int ch = 0; ch < C; ch++)
					for (int i = 0; i < P; i++)
						memcpy(row + ((size_t) ch * P + i) * P,
							   input + (((size_t) b * C + ch) * H + (size_t) py * P + i) * W + (size_t) px * P,
							   sizeof(float) * (size_t) P);
			}
	r4_linear_any(emb, cols, m->patch_w, m->patch_p, NULL, B * np, (int) K, D, false);
	for (int b = 0; b < B; b++)
	{
		float	   *xb = a->x + (size_t) b * T * D;

		for (int d = 0; d < D; d++)
			xb[d] = m->cls_token[d] + pos[d];
		for (int p = 0; p < np; p++)
		{
			const float *e = emb + ((size_t) b * np + p) * D;
			const float *pp = pos + (size_t) (p + 1) * D;
			float	   *xr = xb + (size_t) (p + 1) * D;

			for (int d = 0; d < D; d++)
				xr[d] = (e[d] + m->patch_b[d]) + pp[d];
		}
	}
}

/*
 * Multi-head self-attention of every image: y = concat_h softmax(Q_h K_h^T
 * / sqrt(hd)) V_h, read in place from the fused qkv rows (q, k, v thirds,
 * head h at columns h*hd inside each third).
 */
static void
attention(const R4ViT *m, const ViTActs *a, int B, int T)
{
	int			D = m->vc.embed_dim;
	int			nh = m->vc.num_heads;
	int			hd = D / nh;
	float		scale = (float) (1.0 / sqrt((double) hd));

	/* bf16: K and V are packed per head into the hidden buffer, unused until fc1. */
	if (m->precision == R4_PRECISION_BF16 &&
		r4_attention_bf16_scratch(T, hd) <= (size_t) B * T * m->vc.mlp_hidden)
	{
		for (int b = 0; b < B; b++)
			r4_attention_bf16(a->qkv + (size_t) b * T * 3 * D, T, D, nh, scale,
							  a->y + (size_t) b * T * D, a->scores, (uint32_t *) a->hidden);
		return;
	}
	for (int b = 0; b < B; b++)
		for (int h = 0; h < nh; h++)
		{
			const float *q = a->qkv + (size_t) b * T * 3 * D + (size_t) h * hd;
			const float *k = q + D;
			const float *v = q + 2 * D;
			float	   *o = a->y + (size_t) b * T * D + (size_t) h * hd;

			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
						T, T, hd, scale, q, 3 * D, k, 3 * D, 0.0f, a->scores, T);
			r4_softmax_rows(a->scores, T, T, T);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
						T, hd, T, 1.0f, a->scores, T, v, 3 * D, 0.0f, o, D);
		}
}

/* Run one pre-norm transformer block on the residual stream x. */
static void
block_forward(const R4ViT *m, const R4ViTBlock *blk, const ViTActs *a, int B, int T)
{
	int			D = m->vc.embed_dim;
	int			Hd = m->vc.mlp_hidden;
	int			M = B * T;
	float		eps = (float) m->vc.ln_eps;

	r4_layernorm(a->y, a->x, blk->norm1_w, blk->norm1_b, M, D, eps);
	r4_linear_any(a->qkv, a->y, blk->qkv_w, blk->qkv_p, blk->qkv_b, M, D, 3 * D, false);
	attention(m, a, B, T);
	r4_linear_any(a->x, a->y, blk->proj_w, blk->proj_p, blk->proj_b, M, D, D, true);
	r4_layernorm(a->y, a->x, blk->norm2_w, blk->norm2_b, M, D, eps);
	r4_linear_gelu_any(a->hidden, a->y, blk->fc1_w, blk->fc1_p, blk->fc1_b, M, D, Hd);
	r4_linear_any(a->x, a->hidden, blk->fc2_w, blk->fc2_p, blk->fc2_b, M, Hd, D, true);
}

/* Embed a batch of preprocessed images. */
R4Status
r4_vit_forward(R4ViT *m, const float *input, int B, int H, int W,
			   float *out, R4InterruptCheck check, void *check_arg, R4Error *err)
{
	const R4ModelConfig *c;
	const R4ViTConfig *vc;
	ViTActs		a;
	const float *pos = NULL;
	int			P,
				D,
				gh,
				gw,
				T,
				n_last,
				out_dim;
	R4Status	rc;

	if (m == NULL || input == NULL || out == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_vit_forward called with a NULL pointer");
	memset(&a, 0, sizeof(a));
	c = &m->cfg;
	vc = &m->vc;
	P = vc->patch_size;
	D = vc->embed_dim;
	n_last = vc->n_last_blocks;
	out_dim = c->out_dim;
	if (B < 1)
		return r4_fail(err, R4_ERR_RANGE, "batch size must be at least 1, not %d", B);
	if (H < P || W < P)
		return r4_fail(err, R4_ERR_RANGE,
					   "input of %d x %d pixels is smaller than the %d x %d patch",
					   H, W, P, P);
	gh = H / P;
	gw = W / P;
	if ((long) gh * gw + 1 > R4_VIT_MAX_TOKENS)
		return r4_fail(err, R4_ERR_LIMIT,
					   "input of %d x %d pixels gives %ld tokens; the limit is %d",
					   H, W, (long) gh * gw + 1, R4_VIT_MAX_TOKENS);
	T = gh * gw + 1;
	if (gh < vc->readout_grid || gw < vc->readout_grid)
		return r4_fail(err, R4_ERR_RANGE, "a %d x %d token grid is smaller than readout_grid %d",
					   gw, gh, vc->readout_grid);

	if ((rc = plan_arena(m, B, T, gh * gw, &a, err)) != R4_OK)
		return rc;
	if ((rc = position_table(m, gh, gw, H == W, &pos, err)) != R4_OK)
		return rc;

	patch_embed(m, &a, input, B, H, W, gh, gw, pos);

	for (int l = 0; l < vc->depth; l++)
	{
		/* Between blocks nothing is half-updated, so check may longjmp. */
		if (check != NULL && check(check_arg))
			return r4_fail(err, R4_ERR_LIMIT, "inference interrupted before block %d", l);
		block_forward(m, &m->blocks[l], &a, B, T);

		/* Keep the normed CLS token of each of the last n blocks. */
		if (vc->readout == R4_VIT_READOUT_CLS && l >= vc->depth - n_last)
		{
			int			k = l - (vc->depth - n_last);

			for (int b = 0; b < B; b++)
				r4_layernorm(a.feats + (size_t) b * out_dim + (size_t) k * D,
							 a.x + (size_t) b * T * D, m->norm_w, m->norm_b, 1, D,
							 (float) vc->ln_eps);
		}
	}

	if (vc->readout == R4_VIT_READOUT_TOKEN_STATS)
	{
		/*
		 * Mean and population std of the last block's patch tokens before
		 * the final norm, CLS excluded, per region of the g x g cut; two
		 * passes in double, so the spread of large residual streams keeps
		 * its digits.
		 */
		const int	g = vc->readout_grid;

		for (int b = 0; b < B; b++)
		{
			const float *xb = a.x + ((size_t) b * T + 1) * D;

			for (int ri = 0; ri < g; ri++)
				for (int rj = 0; rj < g; rj++)
				{
					const int	r0 = ri * gh / g,
								r1 = (ri + 1) * gh / g,
								c0 = rj * gw / g,
								c1 = (rj + 1) * gw / g;
					const double n = (double) (r1 - r0) * (c1 - c0);
					float	   *f = a.feats + (size_t) b * out_dim + (size_t) (ri * g + rj) * 2 * D;

					for (int d = 0; d < D; d++)
					{
						double		s = 0.0,
									q = 0.0,
									mean;

						for (int r = r0; r < r1; r++)
							for (int c = c0; c < c1; c++)
								s += xb[((size_t) r * gw + c) * D + d];
						mean = s / n;
						for (int r = r0; r < r1; r++)
							for (int c = c0; c < c1; c++)
							{
								double		dv = xb[((size_t) r * gw + c) * D + d] - mean;

								q += dv * dv;
							}
						f[d] = (float) mean;
						f[D + d] = (float) sqrt(q / n);
					}
				}
		}
	}
	else if (vc->avgpool)
	{
		/* Mean of the last block's normed patch tokens, CLS excluded. */
		r4_layernorm(a.y, a.x, m->norm_w, m->norm_b, B * T, D, (float) vc->ln_eps);
		for (int b = 0; b < B; b++)
		{
			float	   *avg = a.feats + (size_t) b * out_dim + (size_t) n_last * D;

			for (int d = 0; d < D; d++)
			{
				double		s = 0.0;

				for (int t = 1; t < T; t++)
					s += a.y[((size_t) b * T + t) * D + d];
				avg[d] = (float) (s / (T - 1));
			}
		}
	}

	for (int b = 0; b < B; b++)
	{
		const float *f = a.feats + (size_t) b * out_dim;
		float	   *o = out + (size_t) b * out_dim;

		if (vc->readout == R4_VIT_READOUT_CLS && vc->avgpool && n_last == 1)
		{
			/*
			 * DINO eval_linear: cat((cls.unsqueeze(-1), avg.unsqueeze(-1)),
			 * dim=-1).reshape(B, -1) interleaves the two vectors.
			 */
			for (int d = 0; d < D; d++)
			{
				o[2 * d] = f[d];
				o[2 * d + 1] = f[D + d];
			}
		}
		else
			memcpy(o, f, sizeof(float) * (size_t) out_dim);
	}
	return R4_OK;
}
