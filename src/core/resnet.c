/*
 * resnet.c — the torchvision ResNet forward pass: BatchNorm folded into
 * every convolution at build time, convolutions as im2col + one sgemm per
 * column chunk over the whole batch, ReLU and residual sums fused into the
 * GEMM's epilogue, 3 x 3 / 2 max-pool, global average pool.
 *
 * Activations are [C][B][H][W] (channel-major across the batch), so one
 * GEMM covers every image of the batch: output channels are the GEMM's
 * rows, the (image, y, x) positions its columns, and any run of positions
 * is a contiguous column range.  The forward pass is walked twice: a dry
 * run that only computes shapes (sizing the arena, listing the GEMMs for
 * benchmarks) and the real one, so the sizes can never disagree.
 */
#include "rai4eo/resnet.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define ALIGN_FLOATS 16			/* 64-byte alignment for every tensor slot */
#define MAX_NAME 96
/*
 * GEMMs run over column chunks: im2col fills at most COLS_CAP floats (2 MiB,
 * about one core's L2) and a direct 1 x 1 GEMM writes at most OUT_CAP
 * floats before its bias/ReLU epilogue reads them back, but no chunk has
 * fewer than MIN_CHUNK columns, below which sgemm loses efficiency.
 */
#define COLS_CAP (1u << 19)
#define OUT_CAP (1u << 18)
#define MIN_CHUNK 256

/* One convolution with its BatchNorm folded in. */
typedef struct Conv
{
	float	   *w;				/* [cout][cin * k * k], the PyTorch layout, scaled */
	float	   *b;				/* [cout] */
	int			cin,
				cout,
				k,
				stride,
				pad;
} Conv;

/* One residual block; c3 is used by Bottlenecks only. */
typedef struct Block
{
	Conv		c1,
				c2,
				c3;
	Conv		down;			/* down.w == NULL: identity shortcut */
	int			stage;			/* 1..4, for messages */
	int			index;
} Block;

struct R4ResNet
{
	R4ModelConfig cfg;			/* without class names (the head is engine.c's) */
	R4ResNetConfig rn;			/* the ResNet part of cfg */

	/* Weights: named pointers into the single block `params`. */
	float	   *params;
	size_t		param_floats;	/* allocated, padding included */
	size_t		param_count;	/* parameters of the source model */
	Conv		stem;
	Block	   *blocks;			/* [depth], stage by stage */
	int			nblocks;

	/* Activations, sized for the largest (batch, height, width) seen so far. */
	float	   *arena;
	size_t		arena_floats;
};

/* Round a float count up to the slot alignment. */
static int
align_floats(size_t n, size_t *out)
{
	if (r4_add_size(n, ALIGN_FLOATS - 1, &n) != 0)
		return -1;
	*out = n / ALIGN_FLOATS * ALIGN_FLOATS;
	return 0;
}

/* Where a convolution's weights come from and what it must look like. */
typedef struct ConvSlot
{
	char		weight[MAX_NAME];	/* "layer1.0.conv1.weight" */
	char		bn[MAX_NAME];	/* "layer1.0.bn1" */
	Conv	   *conv;
	int			k,
				stride,
				pad;
} ConvSlot;

/* Add a convolution to the slot list. */
static void
add_slot(ConvSlot *slots, int *n, const char *weight, const char *bn, Conv *conv,
		 int k, int stride, int pad)
{
	ConvSlot   *s = &slots[(*n)++];

	snprintf(s->weight, sizeof(s->weight), "%s", weight);
	snprintf(s->bn, sizeof(s->bn), "%s", bn);
	s->conv = conv;
	s->k = k;
	s->stride = stride;
	s->pad = pad;
	conv->k = k;
	conv->stride = stride;
	conv->pad = pad;
}

/*
 * List every convolution in forward order: the stem, then per block conv1,
 * conv2 (carrying the stride in both block types), conv3, downsample.
 */
static int
list_slots(R4ResNet *m, const R4SafeTensors *st, ConvSlot *slots)
{
	char		w[MAX_NAME];
	char		bn[MAX_NAME];
	int			n = 0;
	int			bi = 0;

	add_slot(slots, &n, "conv1.weight", "bn1", &m->stem, 7, 2, 3);
	for (int s = 0; s < R4_RESNET_STAGES; s++)
		for (int b = 0; b < m->rn.layers[s]; b++)
		{
			Block	   *blk = &m->blocks[bi++];
			int			stride = (b == 0 && s > 0) ? 2 : 1;

			blk->stage = s + 1;
			blk->index = b;
#define NAMES(conv, bnname) (r4_resnet_block_name(w, sizeof(w), s + 1, b, (conv)), \
							 r4_resnet_block_name(bn, sizeof(bn), s + 1, b, (bnname)))
			if (m->rn.bottleneck)
			{
				NAMES("conv1.weight", "bn1");
				add_slot(slots, &n, w, bn, &blk->c1, 1, 1, 0);
				NAMES("conv2.weight", "bn2");
				add_slot(slots, &n, w, bn, &blk->c2, 3, stride, 1);
				NAMES("conv3.weight", "bn3");
				add_slot(slots, &n, w, bn, &blk->c3, 1, 1, 0);
			}
			else
			{
				NAMES("conv1.weight", "bn1");
				add_slot(slots, &n, w, bn, &blk->c1, 3, stride, 1);
				NAMES("conv2.weight", "bn2");
				add_slot(slots, &n, w, bn, &blk->c2, 3, 1, 1);
			}
			NAMES("downsample.0.weight", "downsample.1");
			if (r4_safetensors_find(st, w) != NULL)
				add_slot(slots, &n, w, bn, &blk->down, 1, stride, 0);
#undef NAMES
		}
	return n;
}

/*
 * Check a slot's weight tensor and BatchNorm against the channels flowing
 * in; sets the conv's widths.
 */
static R4Status
check_slot(const R4SafeTensors *st, const ConvSlot *s, int cin, R4Error *err)
{
	const R4StTensor *t = r4_safetensors_find(st, s->weight);
	const char *const *entries = r4_resnet_bn_entries;

	if (t == NULL)
		return r4_fail(err, R4_ERR_MISMATCH, "tensor \"%s\" is missing from the weights", s->weight);
	if (t->ndim != 4 || t->shape[0] < 1 || t->shape[0] > R4_MAX_EMBED_DIM ||
		t->shape[1] != cin || t->shape[2] != s->k || t->shape[3] != s->k)
		return r4_fail(err, R4_ERR_MISMATCH,
					   "tensor \"%s\" does not fit the configuration: expected [out, %d, %d, %d]",
					   s->weight, cin, s->k, s->k);
	s->conv->cin = cin;
	s->conv->cout = (int) t->shape[0];
	for (int e = 0; e < 4; e++)
	{
		char		name[MAX_NAME + 16];
		const R4StTensor *v;

		snprintf(name, sizeof(name), "%s.%s", s->bn, entries[e]);
		v = r4_safetensors_find(st, name);
		if (v == NULL)
			return r4_fail(err, R4_ERR_MISMATCH, "tensor \"%s\" is missing from the weights", name);
		if (v->numel != (size_t) s->conv->cout)
			return r4_fail(err, R4_ERR_MISMATCH,
						   "tensor \"%s\" has %zu values but the configuration needs %d",
						   name, v->numel, s->conv->cout);
	}
	return R4_OK;
}

/*
 * Check that the channels chain through the network: each conv takes what
 * the previous one gives, shortcuts match the block outputs, strided
 * blocks downsample, and the last width is out_dim.
 */
static R4Status
check_chain(R4ResNet *m, const R4SafeTensors *st, const ConvSlot *slots, int nslots, R4Error *err)
{
	const R4ModelConfig *c = &m->cfg;
	int			i = 0;
	int			ch = c->in_chans;
	R4Status	rc;

	if ((rc = check_slot(st, &slots[i++], ch, err)) != R4_OK)
		return rc;
	ch = m->stem.cout;
	for (int bi = 0; bi < m->nblocks; bi++)
	{
		Block	   *blk = &m->blocks[bi];
		int			out;

		if ((rc = check_slot(st, &slots[i++], ch, err)) != R4_OK ||
			(rc = check_slot(st, &slots[i++], blk->c1.cout, err)) != R4_OK)
			return rc;
		out = blk->c2.cout;
		if (m->rn.bottleneck)
		{
			if ((rc = check_slot(st, &slots[i++], blk->c2.cout, err)) != R4_OK)
				return rc;
			out = blk->c3.cout;
		}
		if (i < nslots && slots[i].conv == &blk->down)
		{
			if ((rc = check_slot(st, &slots[i++], ch, err)) != R4_OK)
				return rc;
			if (blk->down.cout != out)
				return r4_fail(err, R4_ERR_MISMATCH,
							   "layer%d.%d: the downsample gives %d channels, the block %d",
							   blk->stage, blk->index, blk->down.cout, out);
		}
		else if (out != ch || (blk->index == 0 && blk->stage > 1))
			return r4_fail(err, R4_ERR_MISMATCH,
						   "layer%d.%d changes the shape but has no downsample",
						   blk->stage, blk->index);
		ch = out;
	}
	if (ch != c->out_dim)
		return r4_fail(err, R4_ERR_MISMATCH, "the last block gives %d channels, the configuration says %d",
					   ch, c->out_dim);
	return R4_OK;
}

/*
 * Fold an eval-mode BatchNorm into the convolution before it, in double:
 * s = gamma / sqrt(var + eps), W' = W * s, b' = beta - mean * s.
 */
static R4Status
fold_bn(Conv *cv, const float *bn, double eps, const char *bn_name, R4Error *err)
{
	const float *gamma = bn;
	const float *beta = bn + cv->cout;
	const float *mean = bn + 2 * (size_t) cv->cout;
	const float *var = bn + 3 * (size_t) cv->cout;
	size_t		K = (size_t) cv->cin * cv->k * cv->k;

	for (int o = 0; o < cv->cout; o++)
	{
		double		v = (double) var[o] + eps;
		double		s;

		if (!(v > 0.0) || !isfinite(v))
			return r4_fail(err, R4_ERR_INVALID,
						   "tensor \"%s.running_var\" holds %g at channel %d; variances must be finite and >= 0",
						   bn_name, (double) var[o], o);
		s = (double) gamma[o] / sqrt(v);
		for (size_t i = 0; i < K; i++)
			cv->w[(size_t) o * K + i] = (float) ((double) cv->w[(size_t) o * K + i] * s);
		cv->b[o] = (float) ((double) beta[o] - (double) mean[o] * s);
	}
	return R4_OK;
}

/* Build the engine: one F32 block holding every folded weight. */
R4Status
r4_resnet_build(const R4SafeTensors *st, const R4ModelConfig *cfg,
				R4ResNet **out, R4Error *err)
{
	R4ResNet   *m;
	const R4ResNetConfig *rn;
	ConvSlot   *slots = NULL;
	float	   *bn = NULL;
	int			nslots;
	int			max_cout = 0;
	size_t		total = 0;
	size_t		bytes;
	R4Status	rc;

	*out = NULL;
	if (st == NULL || cfg == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_resnet_build called without weights or configuration");
	if ((rn = r4_resnet_cfg(cfg)) == NULL)
		return r4_fail(err, R4_ERR_UNSUPPORTED, "r4_resnet_build needs a ResNet configuration, not %s",
					   r4_arch_name(cfg->arch));
	if (cfg->in_chans < 1 || cfg->out_dim < 1 || !(rn->bn_eps > 0.0) || rn->depth < R4_RESNET_STAGES)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_resnet_build called with an unresolved configuration");
	{
		int			depth = 0;

		for (int s = 0; s < R4_RESNET_STAGES; s++)
		{
			if (rn->layers[s] < 1 || rn->layers[s] > R4_MAX_DEPTH)
				return r4_fail(err, R4_ERR_INTERNAL,
							   "r4_resnet_build called with an unresolved configuration");
			depth += rn->layers[s];
		}
		if (depth != rn->depth)
			return r4_fail(err, R4_ERR_INTERNAL, "r4_resnet_build called with an unresolved configuration");
	}

	m = r4_alloc_zero(sizeof(R4ResNet));
	if (m == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory building the ResNet");
	m->cfg = *cfg;
	m->cfg.class_names = NULL;
	m->cfg.class_names_len = 0;
	m->rn = *rn;
	m->nblocks = rn->depth;
	m->blocks = r4_alloc_zero(sizeof(Block) * (size_t) rn->depth);
	slots = r4_alloc(sizeof(ConvSlot) * ((size_t) rn->depth * 4 + 1));
	if (m->blocks == NULL || slots == NULL)
	{
		rc = r4_fail(err, R4_ERR_NOMEM, "out of memory building the ResNet");
		goto fail;
	}
	nslots = list_slots(m, st, slots);
	if ((rc = check_chain(m, st, slots, nslots, err)) != R4_OK)
		goto fail;

	/* Size the block: each weight and each bias in its own aligned slot. */
	for (int i = 0; i < nslots; i++)
	{
		const Conv *cv = slots[i].conv;
		size_t		wn = (size_t) cv->cout * cv->cin * cv->k * cv->k;
		size_t		wp,
					bp;

		if (align_floats(wn, &wp) != 0 || align_floats((size_t) cv->cout, &bp) != 0 ||
			r4_add_size(total, wp, &total) != 0 || r4_add_size(total, bp, &total) != 0)
		{
			rc = r4_fail(err, R4_ERR_LIMIT, "model weights are too large");
			goto fail;
		}
		m->param_count += wn + 2 * (size_t) cv->cout;
		if (cv->cout > max_cout)
			max_cout = cv->cout;
	}
	if (r4_mul_size(total, sizeof(float), &bytes) != 0 ||
		r4_add_size(bytes, ALIGN_FLOATS * sizeof(float), &bytes) != 0)
	{
		rc = r4_fail(err, R4_ERR_LIMIT, "model weights are too large");
		goto fail;
	}
	m->params = r4_alloc(bytes);
	bn = r4_alloc(sizeof(float) * 4 * (size_t) max_cout);
	if (m->params == NULL || bn == NULL)
	{
		rc = r4_fail(err, R4_ERR_NOMEM, "out of memory for %zu bytes of ResNet weights", bytes);
		goto fail;
	}
	m->param_floats = total;

	/* Convert each weight into its slot and fold its BatchNorm in. */
	{
		const char *const *entries = r4_resnet_bn_entries;
		float	   *base = m->params;
		size_t		off = 0;

		/* The allocator only promises malloc alignment; align the first slot. */
		while (((uintptr_t) (base + off)) % (ALIGN_FLOATS * sizeof(float)) != 0)
			off++;
		for (int i = 0; i < nslots; i++)
		{
			Conv	   *cv = slots[i].conv;
			size_t		wn = (size_t) cv->cout * cv->cin * cv->k * cv->k;
			size_t		padded = 0;

			cv->w = base + off;
			if ((rc = r4_tensor_to_f32_finite(r4_safetensors_find(st, slots[i].weight), cv->w, err)) != R4_OK)
				goto fail;
			(void) align_floats(wn, &padded);
			off += padded;
			cv->b = base + off;
			(void) align_floats((size_t) cv->cout, &padded);
			off += padded;
			for (int e = 0; e < 4; e++)
			{
				char		name[MAX_NAME + 16];

				snprintf(name, sizeof(name), "%s.%s", slots[i].bn, entries[e]);
				if ((rc = r4_tensor_to_f32_finite(r4_safetensors_find(st, name),
										   bn + (size_t) e * cv->cout, err)) != R4_OK)
					goto fail;
			}
			if ((rc = fold_bn(cv, bn, m->rn.bn_eps, slots[i].bn, err)) != R4_OK)
				goto fail;
		}
	}
	r4_free(bn);
	r4_free(slots);
	*out = m;
	return R4_OK;

fail:
	r4_free(bn);
	r4_free(slots);
	r4_resnet_free(m);
	return rc;
}

/* Release the engine and everything it holds. */
void
r4_resnet_free(R4ResNet *m)
{
	if (m == NULL)
		return;
	r4_free(m->params);
	r4_free(m->blocks);
	r4_free(m->arena);
	r4_free(m);
}

/* Report the configuration the engine was built with. */
const R4ModelConfig *
r4_resnet_config(const R4ResNet *m)
{
	return &m->cfg;
}

/* Count the source model's parameters. */
size_t
r4_resnet_param_count(const R4ResNet *m)
{
	return m->param_count;
}

/* Report the bytes of the weight block. */
size_t
r4_resnet_weight_bytes(const R4ResNet *m)
{
	return (m->param_floats + ALIGN_FLOATS) * sizeof(float);
}

/* Report the bytes of the activation arena. */
size_t
r4_resnet_work_bytes(const R4ResNet *m)
{
	return m->arena_floats * sizeof(float);
}

void
r4_resnet_release_work(R4ResNet *m)
{
	r4_free(m->arena);
	m->arena = NULL;
	m->arena_floats = 0;
}

/* A feature map: channel c of image b starts at data + c * sc + b * sb. */
typedef struct Act
{
	float	   *data;
	int			C,
				H,
				W;
	size_t		sc,
				sb;
} Act;

/* One walk through the network, dry (shapes only) or real. */
typedef struct Pass
{
	const R4ResNet *m;
	int			B;
	bool		dry;
	bool		overflow;		/* a size beyond what cblas's int arguments take */
	/* Floats each buffer needs; the dry run finds them. */
	size_t		need_xy,
				need_t1,
				need_t2,
				need_cols;
	/* The real run's buffers. */
	float	   *x,
			   *y,
			   *t1,
			   *t2,
			   *cols;
	/* GEMM listing (dry run). */
	R4GemmShape *shapes;
	int			max_shapes;
	int			nshapes;
} Pass;

/* Raise *need to at least n. */
static void
need(size_t *slot, size_t n)
{
	if (n > *slot)
		*slot = n;
}

/* Choose the output columns per im2col chunk for a reduction of K. */
static size_t
chunk_cols(size_t K, size_t N)
{
	size_t		c = COLS_CAP / K;

	if (c < MIN_CHUNK)
		c = MIN_CHUNK;
	return c < N ? c : N;
}

/* Choose the output columns per chunk of a direct GEMM with cout rows. */
static size_t
out_chunk_cols(int cout, size_t N)
{
	size_t		c = OUT_CAP / (size_t) cout;

	if (c < MIN_CHUNK)
		c = MIN_CHUNK;
	return c < N ? c : N;
}

/*
 * Gather the im2col columns n0 .. n0 + nc of a convolution's output
 * positions (image, y, x flattened) into cols[cin * k * k][nc], rows in
 * the weight's (c, i, j) order; out-of-image taps are zero padding.  One
 * output row segment at a time, all kernel taps inside it, so the
 * position arithmetic is done once per segment.
 */
static void
im2col(const Act *in, const Conv *cv, int Ho, int Wo, size_t n0, size_t nc, float *cols)
{
	int			k = cv->k;
	int			s = cv->stride;
	int			pad = cv->pad;
	size_t		HWo = (size_t) Ho * Wo;
	size_t		n = n0;
	size_t		end = n0 + nc;

	while (n < end)
	{
		size_t		b = n / HWo;
		size_t		r = n % HWo;
		int			y = (int) (r / Wo);
		int			x0 = (int) (r % Wo);
		int			x1 = (end - n < (size_t) (Wo - x0)) ? x0 + (int) (end - n) : Wo;
		int			len = x1 - x0;
		float	   *seg = cols + (n - n0);

		for (int c = 0; c < cv->cin; c++)
		{
			const float *plane = in->data + (size_t) c * in->sc + b * in->sb;

			for (int ki = 0; ki < k; ki++)
			{
				int			iy = y * s - pad + ki;
				float	   *d = seg + ((size_t) c * k + ki) * k * nc;

				if (iy < 0 || iy >= in->H)
				{
					for (int kj = 0; kj < k; kj++)
						memset(d + (size_t) kj * nc, 0, sizeof(float) * (size_t) len);
					continue;
				}
				for (int kj = 0; kj < k; kj++, d += nc)
				{
					const float *row = plane + (size_t) iy * in->W;
					/* Outputs x whose tap ix = x * s - pad + kj lies inside the row. */
					int			xa = kj < pad ? (pad - kj + s - 1) / s : 0;
					int			last = in->W - 1 + pad - kj;
					int			xb = last < 0 ? 0 : last / s + 1;

					xa = xa < x0 ? x0 : (xa > x1 ? x1 : xa);
					xb = xb > x1 ? x1 : (xb < xa ? xa : xb);
					for (int x = x0; x < xa; x++)
						d[x - x0] = 0.0f;
					if (s == 1)
						memcpy(d + (xa - x0), row + (xa - pad + kj), sizeof(float) * (size_t) (xb - xa));
					else
					{
						const float *src = row + (xa * s - pad + kj);

						for (int x = xa; x < xb; x++, src += s)
							d[x - x0] = *src;
					}
					for (int x = xb; x < x1; x++)
						d[x - x0] = 0.0f;
				}
			}
		}
		n += (size_t) len;
	}
}

/*
 * Four floats as one value: the SSE2 width every x86-64 has, so compares
 * and masks stay single instructions (wider vectors are split, and their
 * compares scalarised, without AVX).  Loaded and stored with memcpy, so
 * no alignment is assumed.
 */
typedef float F4 __attribute__((vector_size(16)));
typedef int32_t I4 __attribute__((vector_size(16)));

/*
 * Add the folded bias to each row (output channel) and apply ReLU if asked
 * (NaN becomes 0, as in the scalar tail).
 */
static void
bias_act(float *c, size_t ldc, int cout, size_t nc, const float *bias, bool relu)
{
	for (int o = 0; o < cout; o++)
	{
		float	   *row = c + (size_t) o * ldc;
		float		b = bias[o];
		F4			bv = {b, b, b, b};
		F4			zero = {0};
		size_t		n = 0;

		if (relu)
			for (; n + 8 <= nc; n += 8)
			{
				F4			v0,
							v1;

				memcpy(&v0, row + n, sizeof(v0));
				memcpy(&v1, row + n + 4, sizeof(v1));
				v0 += bv;
				v1 += bv;
				v0 = (F4) ((I4) v0 & (v0 > zero));
				v1 = (F4) ((I4) v1 & (v1 > zero));
				memcpy(row + n, &v0, sizeof(v0));
				memcpy(row + n + 4, &v1, sizeof(v1));
			}
		else
			for (; n + 4 <= nc; n += 4)
			{
				F4			v;

				memcpy(&v, row + n, sizeof(v));
				v += bv;
				memcpy(row + n, &v, sizeof(v));
			}
		for (; n < nc; n++)
		{
			float		v = row[n] + b;

			row[n] = relu ? (v > 0.0f ? v : 0.0f) : v;
		}
	}
}

/* Run (or, dry, list) one sgemm: C = A[M][K] . B[K][N] (+ C). */
static void
gemm(Pass *p, int M, size_t N, size_t K, const float *a, size_t lda, const float *b,
	 size_t ldb, float *c, size_t ldc, bool accumulate)
{
	if (p->dry)
	{
		if (N > INT_MAX || K > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
			p->overflow = true;
		else if (p->shapes != NULL && p->nshapes < p->max_shapes)
			p->shapes[p->nshapes] = (R4GemmShape) {M, (int) N, (int) K, (int) lda, (int) ldb,
				(int) ldc, accumulate};
		if (p->nshapes < INT_MAX)
			p->nshapes++;
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, (int) N, (int) K,
				1.0f, a, (int) lda, b, (int) ldb, accumulate ? 1.0f : 0.0f, c, (int) ldc);
}

/*
 * Convolve in into dst ([cout][B][Ho][Wo]) with the folded weights, then
 * add the bias and apply ReLU.  With accumulate, dst already holds the
 * shortcut and the convolution is added to it (the residual sum).  *slot
 * is the buffer dst lives in, whose size the dry run raises.
 */
static void
conv_forward(Pass *p, const Conv *cv, const Act *in, float *dst, size_t *slot,
			 bool accumulate, bool relu, Act *out)
{
	int			Ho = (in->H + 2 * cv->pad - cv->k) / cv->stride + 1;
	int			Wo = (in->W + 2 * cv->pad - cv->k) / cv->stride + 1;
	size_t		HWi = (size_t) in->H * in->W;
	size_t		HWo = (size_t) Ho * Wo;
	size_t		N = (size_t) p->B * HWo;
	size_t		K = (size_t) cv->cin * cv->k * cv->k;

	out->data = dst;
	out->C = cv->cout;
	out->H = Ho;
	out->W = Wo;
	out->sc = N;
	out->sb = HWo;
	if (p->dry)
	{
		/* cblas takes int sizes; stop before counting chunks of a hopeless shape. */
		if (N > INT_MAX || K > INT_MAX)
		{
			p->overflow = true;
			return;
		}
		need(slot, (size_t) cv->cout * N);
	}

	/*
	 * A 1 x 1 stride-1 convolution of [C][B][H][W] is a GEMM on the input as
	 * it lies, done in column chunks whose output is still in cache for the
	 * epilogue.
	 */
	if (cv->k == 1 && cv->stride == 1 && cv->pad == 0 && in->sb == HWi && in->sc == N)
	{
		size_t		chunk = out_chunk_cols(cv->cout, N);

		for (size_t n0 = 0; n0 < N; n0 += chunk)
		{
			size_t		nc = N - n0 < chunk ? N - n0 : chunk;

			if (p->dry)
			{
				gemm(p, cv->cout, nc, K, NULL, K, NULL, N, NULL, N, accumulate);
				continue;
			}
			gemm(p, cv->cout, nc, K, cv->w, K, in->data + n0, N, dst + n0, N, accumulate);
			bias_act(dst + n0, N, cv->cout, nc, cv->b, relu);
		}
		return;
	}

	{
		size_t		chunk = chunk_cols(K, N);

		if (p->dry)
			need(&p->need_cols, K * chunk);
		for (size_t n0 = 0; n0 < N; n0 += chunk)
		{
			size_t		nc = N - n0 < chunk ? N - n0 : chunk;

			if (p->dry)
			{
				gemm(p, cv->cout, nc, K, NULL, K, NULL, nc, NULL, N, accumulate);
				continue;
			}
			im2col(in, cv, Ho, Wo, n0, nc, p->cols);
			gemm(p, cv->cout, nc, K, cv->w, K, p->cols, nc, dst + n0, N, accumulate);
			bias_act(dst + n0, N, cv->cout, nc, cv->b, relu);
		}
	}
}

/* Max-pool 3 x 3, stride 2, padding 1 (padding never wins, as with -inf; NaN propagates). */
static void
maxpool(Pass *p, const Act *in, float *dst, size_t *slot, Act *out)
{
	int			Ho = (in->H - 1) / 2 + 1;
	int			Wo = (in->W - 1) / 2 + 1;
	size_t		HWo = (size_t) Ho * Wo;

	out->data = dst;
	out->C = in->C;
	out->H = Ho;
	out->W = Wo;
	out->sc = (size_t) p->B * HWo;
	out->sb = HWo;
	if (p->dry)
	{
		need(slot, (size_t) in->C * p->B * HWo);
		return;
	}
	for (int c = 0; c < in->C; c++)
		for (int b = 0; b < p->B; b++)
		{
			const float *src = in->data + (size_t) c * in->sc + (size_t) b * in->sb;
			float	   *o = dst + (size_t) c * out->sc + (size_t) b * HWo;

			for (int y = 0; y < Ho; y++)
			{
				int			ya = 2 * y - 1 < 0 ? 0 : 2 * y - 1;
				int			yb = 2 * y + 1 >= in->H ? in->H - 1 : 2 * y + 1;

				for (int x = 0; x < Wo; x++)
				{
					int			xa = 2 * x - 1 < 0 ? 0 : 2 * x - 1;
					int			xb = 2 * x + 1 >= in->W ? in->W - 1 : 2 * x + 1;
					float		v = src[(size_t) ya * in->W + xa];

					for (int yy = ya; yy <= yb; yy++)
						for (int xx = xa; xx <= xb; xx++)
						{
							float		u = src[(size_t) yy * in->W + xx];

							if (u > v || isnan(u))
								v = u;
						}
					o[(size_t) y * Wo + x] = v;
				}
			}
		}
}

/* Average each channel globally: out[b][c] = mean of channel c of image b, summed in double. */
static void
avgpool(const Pass *p, const Act *in, float *out)
{
	size_t		HW = (size_t) in->H * in->W;

	for (int b = 0; b < p->B; b++)
		for (int c = 0; c < in->C; c++)
		{
			const float *src = in->data + (size_t) c * in->sc + (size_t) b * in->sb;
			double		s = 0.0;

			for (size_t i = 0; i < HW; i++)
				s += src[i];
			out[(size_t) b * in->C + c] = (float) (s / (double) HW);
		}
}

/*
 * Walk the network for B images: stem, max-pool, the residual blocks,
 * average pool.  The block input lives in x; a block with a downsample
 * writes its shortcut into y and the pair swaps, an identity block sums
 * into x in place.
 */
static R4Status
walk(Pass *p, const float *input, int H, int W, float *out,
	 R4InterruptCheck check, void *check_arg, R4Error *err)
{
	const R4ResNet *m = p->m;
	const R4ModelConfig *c = &m->cfg;
	Act			in,
				stem,
				a,
				u1,
				u2,
				o;
	float	   *cur = p->x;
	float	   *other = p->y;

	in.data = (float *) input;
	in.C = c->in_chans;
	in.H = H;
	in.W = W;
	in.sb = (size_t) c->in_chans * H * W;
	in.sc = (size_t) H * W;

	if (!p->dry && check != NULL && check(check_arg))
		return r4_fail(err, R4_ERR_LIMIT, "inference interrupted before the stem");
	conv_forward(p, &m->stem, &in, p->t1, &p->need_t1, false, true, &stem);
	maxpool(p, &stem, cur, &p->need_xy, &a);

	for (int bi = 0; bi < m->nblocks; bi++)
	{
		const Block *blk = &m->blocks[bi];
		const Conv *last = m->rn.bottleneck ? &blk->c3 : &blk->c2;
		const Act  *mid = &u1;
		float	   *dst = cur;

		/* Between blocks nothing is half-updated, so check may longjmp. */
		if (!p->dry && check != NULL && check(check_arg))
			return r4_fail(err, R4_ERR_LIMIT, "inference interrupted before block layer%d.%d",
						   blk->stage, blk->index);
		conv_forward(p, &blk->c1, &a, p->t1, &p->need_t1, false, true, &u1);
		if (m->rn.bottleneck)
		{
			conv_forward(p, &blk->c2, &u1, p->t2, &p->need_t2, false, true, &u2);
			mid = &u2;
		}
		if (blk->down.w != NULL)
		{
			Act			d;

			conv_forward(p, &blk->down, &a, other, &p->need_xy, false, false, &d);
			dst = other;
		}
		conv_forward(p, last, mid, dst, &p->need_xy, true, true, &o);
		if (dst == other)
		{
			other = cur;
			cur = dst;
		}
		a = o;
	}
	if (!p->dry)
		avgpool(p, &a, out);
	return R4_OK;
}

/* Check the arguments of a forward pass or a GEMM listing. */
static R4Status
check_size(const R4ResNet *m, int B, int H, int W, R4Error *err)
{
	if (m == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_resnet_forward called with a NULL model");
	if (B < 1)
		return r4_fail(err, R4_ERR_RANGE, "batch size must be at least 1, not %d", B);
	if (H < R4_RESNET_MIN_SIZE || W < R4_RESNET_MIN_SIZE)
		return r4_fail(err, R4_ERR_RANGE,
					   "input of %d x %d pixels is smaller than the %d x %d a ResNet needs",
					   H, W, R4_RESNET_MIN_SIZE, R4_RESNET_MIN_SIZE);
	if ((long long) H * W > R4_RESNET_MAX_PIXELS)
		return r4_fail(err, R4_ERR_LIMIT, "input of %d x %d pixels exceeds the limit of %d pixels",
					   H, W, R4_RESNET_MAX_PIXELS);
	return R4_OK;
}

/* List the GEMMs of a forward pass without running it. */
R4Status
r4_resnet_gemm_plan(const R4ResNet *m, int B, int H, int W,
					R4GemmShape *shapes, int max, int *count, R4Error *err)
{
	Pass		p;
	R4Status	rc;

	if ((rc = check_size(m, B, H, W, err)) != R4_OK)
		return rc;
	memset(&p, 0, sizeof(p));
	p.m = m;
	p.B = B;
	p.dry = true;
	p.shapes = shapes;
	p.max_shapes = max;
	if ((rc = walk(&p, NULL, H, W, NULL, NULL, NULL, err)) != R4_OK)
		return rc;
	if (p.overflow)
		return r4_fail(err, R4_ERR_LIMIT, "a batch of %d images of %d x %d pixels is too large", B, H, W);
	*count = p.nshapes;
	return R4_OK;
}

/* Lay the buffers out in the arena, growing it when this shape needs more. */
static R4Status
plan_arena(R4ResNet *m, Pass *p, R4Error *err)
{
	size_t		sizes[5] = {p->need_xy, p->need_xy, p->need_t1, p->need_t2, p->need_cols};
	size_t		offs[5];
	size_t		need_total = 0;
	size_t		bytes;
	int			bad = 0;

	for (int i = 0; i < 5 && !bad; i++)
	{
		size_t		padded;

		offs[i] = need_total;
		bad |= align_floats(sizes[i], &padded);
		bad |= r4_add_size(need_total, padded, &need_total);
	}
	bad |= r4_add_size(need_total, ALIGN_FLOATS, &need_total);
	bad |= r4_mul_size(need_total, sizeof(float), &bytes);
	if (bad || p->overflow)
		return r4_fail(err, R4_ERR_LIMIT, "a batch of %d images is too large", p->B);

	if (need_total > m->arena_floats)
	{
		r4_free(m->arena);
		m->arena_floats = 0;
		m->arena = r4_alloc(bytes);
		if (m->arena == NULL)
			return r4_fail(err, R4_ERR_NOMEM,
						   "out of memory for %zu bytes of ResNet activations", bytes);
		m->arena_floats = need_total;
	}
	{
		float	   *base = m->arena;

		while (((uintptr_t) base) % (ALIGN_FLOATS * sizeof(float)) != 0)
			base++;
		p->x = base + offs[0];
		p->y = base + offs[1];
		p->t1 = base + offs[2];
		p->t2 = base + offs[3];
		p->cols = base + offs[4];
	}
	return R4_OK;
}

/* Embed a batch of preprocessed images. */
R4Status
r4_resnet_forward(R4ResNet *m, const float *input, int B, int H, int W,
				  float *out, R4InterruptCheck check, void *check_arg, R4Error *err)
{
	Pass		p;
	R4Status	rc;

	if (m == NULL || input == NULL || out == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_resnet_forward called with a NULL pointer");
	if ((rc = check_size(m, B, H, W, err)) != R4_OK)
		return rc;
	memset(&p, 0, sizeof(p));
	p.m = m;
	p.B = B;
	p.dry = true;
	if ((rc = walk(&p, NULL, H, W, NULL, NULL, NULL, err)) != R4_OK)
		return rc;
	if ((rc = plan_arena(m, &p, err)) != R4_OK)
		return rc;
	p.dry = false;
	return walk(&p, input, H, W, out, check, check_arg, err);
}
