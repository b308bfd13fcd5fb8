/*
 * gemm_bf16.c — C (+)= A · B^T with bf16 inputs and fp32 sums (gemm.h).
 *
 * Blocked the GotoBLAS way for this kernel's shape: B is packed once per
 * model into panels of 32 output columns, K taken two at a time (the pair
 * vdpbf16ps multiplies into one fp32 lane); per call, A is rounded to bf16
 * and packed for one K block and MC rows at a time, each row's pairs
 * contiguous at a fixed stride (ASTRIDE words, so the kernel addresses the
 * MR rows by constant displacements and packing needs no transpose).  The
 * register tile is MR x 32: 2 x MR zmm accumulators, each step
 * broadcasting one A pair per row against two zmm of B.  A K block of a B
 * panel (KCP pairs x 32 columns, 16 KB) stays in L1 while the MC rows of
 * packed A (MC x ASTRIDE words, 64 KB) stream from L2.  MR, NV (zmm per
 * tile row), KCP_MAX and MC can be set at compile time for experiments;
 * 8 x 48 and 6 x 64 tiles measured no better on Zen 4 (under load).
 *
 * Two users on top of the product: a GELU applied to each finished block
 * of rows while it is in L2 (fc1), and attention, whose K and V are packed
 * per head into caller scratch (the B operand of q k^T and of p v).
 *
 * Every output element is computed in the same order by both kernels:
 * start from C (when adding to it, or from an earlier K block) plus the
 * bias, then for each pair in K order add the odd product, then the even
 * one (the order the vdpbf16ps definition gives).  Products of two bf16
 * values are exact in fp32, so the portable loop gives the AVX-512
 * kernel's bits except where vdpbf16ps flushes denormals to zero.
 */
#include "rai4eo/gemm.h"
#include "rai4eo/nn.h"

#include <limits.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define R4_GEMM_X86 1
#endif

#ifndef NV
#define NV 2					/* zmm of output columns per register tile */
#endif
#define NR (16 * NV)			/* output columns per B panel: 32 */
#ifndef MR
#define MR 14					/* rows per register tile: 28 accumulators + 2 B registers */
#endif
#ifndef KCP_MAX
#define KCP_MAX 128				/* K pairs per block: 16 KB of a B panel */
#endif
#ifndef MC
#define MC (MR * 8)				/* rows of A packed per block */
#endif
#define ASTRIDE (KCP_MAX + 16)	/* words per packed A row: 9 cache lines, so rows spread over L1 sets */

/* Packed A for one block; per thread, so separate engines may run in threads. */
static _Thread_local uint32_t apack[MC * ASTRIDE] __attribute__((aligned(64)));

static bool allow_native = true;

const char *
r4_precision_name(R4Precision p)
{
	return p == R4_PRECISION_BF16 ? "bf16" : "fp32";
}

uint16_t
r4_bf16_from_f32(float x)
{
	uint32_t	u;

	memcpy(&u, &x, sizeof(u));
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t) ((u >> 16) | 0x40);	/* quiet the NaN */
	if ((u & 0x7f800000u) == 0)
		return (uint16_t) ((u >> 16) & 0x8000);	/* denormals to signed zero, as vcvtneps2bf16 */
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t) (u >> 16);
}

float
r4_f32_from_bf16(uint16_t h)
{
	uint32_t	u = (uint32_t) h << 16;
	float		x;

	memcpy(&x, &u, sizeof(x));
	return x;
}

/* Two bf16 values as the 32-bit word one vdpbf16ps lane reads: even one low. */
static inline uint32_t
pair_word(float even, float odd)
{
	return (uint32_t) r4_bf16_from_f32(even) | ((uint32_t) r4_bf16_from_f32(odd) << 16);
}

bool
r4_gemm_bf16_native(void)
{
#ifdef R4_GEMM_X86
	static int	cached = -1;

	if (cached < 0)
	{
		__builtin_cpu_init();
		cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
			__builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
	}
	return cached == 1;
#else
	return false;
#endif
}

bool
r4_gemm_bf16_set_native(bool enable)
{
	bool		old = allow_native;

	allow_native = enable;
	return old;
}

R4Status
r4_pack_b_bf16(const float *w, int n, int k, int ldw, R4PackedB **out, R4Error *err)
{
	R4PackedB  *b;
	size_t		words,
				bytes;

	*out = NULL;
	if (n < 0 || k < 0 || ldw < k)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_pack_b_bf16 called with a bad shape");
	b = r4_alloc_zero(sizeof(*b));
	if (b == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory packing a bf16 weight");
	b->n = n;
	b->k = k;
	b->kpairs = k / 2 + (k % 2);
	b->panels = n / NR + (n % NR != 0);
	if (r4_mul_size((size_t) b->panels * NR, (size_t) b->kpairs, &words) != 0 ||
		r4_mul_size(words, sizeof(uint32_t), &bytes) != 0 ||
		r4_add_size(bytes, 64, &bytes) != 0)
	{
		r4_free(b);
		return r4_fail(err, R4_ERR_LIMIT, "a weight of %d x %d is too large to pack", n, k);
	}
	b->alloc = r4_alloc(bytes);
	if (b->alloc == NULL)
	{
		r4_free(b);
		return r4_fail(err, R4_ERR_NOMEM, "out of memory for %zu bytes of bf16 weights", bytes);
	}
	b->data = (uint32_t *) (((uintptr_t) b->alloc + 63) & ~(uintptr_t) 63);
	for (int j = 0; j < b->panels; j++)
		for (int p = 0; p < b->kpairs; p++)
		{
			uint32_t   *dst = b->data + ((size_t) j * b->kpairs + p) * NR;

			for (int l = 0; l < NR; l++)
			{
				int			row = j * NR + l;
				const float *wr = w + (size_t) row * ldw;

				if (row >= n)
					dst[l] = 0;
				else
					dst[l] = pair_word(wr[2 * p], 2 * p + 1 < k ? wr[2 * p + 1] : 0.0f);
			}
		}
	*out = b;
	return R4_OK;
}

size_t
r4_packed_b_bytes(const R4PackedB *b)
{
	return b == NULL ? 0 : (size_t) b->panels * NR * b->kpairs * sizeof(uint32_t) + 64 + sizeof(*b);
}

void
r4_packed_b_free(R4PackedB *b)
{
	if (b == NULL)
		return;
	r4_free(b->alloc);
	r4_free(b);
}

/*
 * Pack rows [0, mb) of a (row stride lda, k columns) for pairs [p0, p0+kb)
 * into dst[row][pair] with row stride ASTRIDE, up to a whole MR-row panel;
 * rows past mb and columns past k are zero.
 */
static void
pack_a_portable(uint32_t *dst, const float *a, int lda, int mb, int k, int p0, int kb)
{
	int			rows = (mb + MR - 1) / MR * MR;

	for (int row = 0; row < rows; row++)
	{
		const float *ar = a + (size_t) row * lda;
		uint32_t   *d = dst + (size_t) row * ASTRIDE;

		for (int p = 0; p < kb; p++)
		{
			int			c = 2 * (p0 + p);

			d[p] = row >= mb ? 0 :
				pair_word(c < k ? ar[c] : 0.0f, c + 1 < k ? ar[c + 1] : 0.0f);
		}
	}
}

/*
 * One MR x 32 tile in portable C, the kernel's arithmetic lane by lane:
 * acc = (load ? C : 0) + bias, then per pair acc += odd product, acc +=
 * even product.  Writes rows < mr, columns < nr.
 */
static void
kernel_portable(int kb, const uint32_t *a, const uint32_t *b, float *c, int ldc,
				int mr, int nr, const float *bias, bool load)
{
	for (int r = 0; r < mr; r++)
		for (int l = 0; l < nr; l++)
		{
			float		acc = load ? c[(size_t) r * ldc + l] : 0.0f;

			if (bias != NULL)
				acc += bias[l];
			for (int p = 0; p < kb; p++)
			{
				uint32_t	x = a[(size_t) r * ASTRIDE + p];
				uint32_t	w = b[(size_t) p * NR + l];

				acc += r4_f32_from_bf16((uint16_t) (x >> 16)) * r4_f32_from_bf16((uint16_t) (w >> 16));
				acc += r4_f32_from_bf16((uint16_t) x) * r4_f32_from_bf16((uint16_t) w);
			}
			c[(size_t) r * ldc + l] = acc;
		}
}

#ifdef R4_GEMM_X86
#define R4_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* pack_a_portable with vcvtne2ps2bf16 doing the rounding, 32 columns at a time. */
R4_BF16_TARGET
static void
pack_a_native(uint32_t *dst, const float *a, int lda, int mb, int k, int p0, int kb)
{
	int			rows = (mb + MR - 1) / MR * MR;

	for (int row = 0; row < rows; row++)
	{
		const float *ar = a + (size_t) row * lda;
		uint32_t   *d = dst + (size_t) row * ASTRIDE;

		if (row >= mb)
		{
			memset(d, 0, sizeof(uint32_t) * (size_t) kb);
			continue;
		}
		for (int p = 0; p < kb; p += 16)
		{
			int			c = 2 * (p0 + p);
			int			left = k - c;	/* columns of a left from c */
			int			np = kb - p < 16 ? kb - p : 16;
			__mmask16	lo,
						hi;
			__m512		vlo,
						vhi;
			__m512i		v;

			lo = left >= 16 ? 0xffff : (left > 0 ? (__mmask16) ((1u << left) - 1) : 0);
			hi = left >= 32 ? 0xffff : (left > 16 ? (__mmask16) ((1u << (left - 16)) - 1) : 0);
			vlo = _mm512_maskz_loadu_ps(lo, ar + c);
			vhi = _mm512_maskz_loadu_ps(hi, ar + c + 16);
			/* Lanes 0-15 from the second operand: columns c .. c+31 in order. */
			v = (__m512i) _mm512_cvtne2ps_pbh(vhi, vlo);
			_mm512_mask_storeu_epi32(d + p, np >= 16 ? 0xffff : (__mmask16) ((1u << np) - 1), v);
		}
	}
}

/* The MR x NR register tile (see kernel_portable for the arithmetic). */
R4_BF16_TARGET
static void
kernel_native(int kb, const uint32_t *a, const uint32_t *b, float *c, int ldc,
			  int mr, int nr, const float *bias, bool load)
{
	__m512		acc[MR][NV];
	__mmask16	m[NV];
	__m512		bv[NV];

#pragma GCC unroll 8
	for (int v = 0; v < NV; v++)
	{
		int			left = nr - 16 * v;

		m[v] = left >= 16 ? 0xffff : (left > 0 ? (__mmask16) ((1u << left) - 1) : 0);
		bv[v] = bias != NULL ? _mm512_maskz_loadu_ps(m[v], bias + 16 * v) : _mm512_setzero_ps();
	}
#pragma GCC unroll 16
	for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
		for (int v = 0; v < NV; v++)
			acc[r][v] = load && r < mr ?
				_mm512_add_ps(_mm512_maskz_loadu_ps(m[v], c + (size_t) r * ldc + 16 * v), bv[v]) : bv[v];
	for (int p = 0; p < kb; p++)
	{
		__m512bh	w[NV];

#pragma GCC unroll 8
		for (int v = 0; v < NV; v++)
			w[v] = (__m512bh) _mm512_load_si512((const void *) (b + (size_t) p * NR + 16 * v));
#pragma GCC unroll 16
		for (int r = 0; r < MR; r++)
		{
			__m512bh	x = (__m512bh) _mm512_set1_epi32((int) a[(size_t) r * ASTRIDE + p]);

#pragma GCC unroll 8
			for (int v = 0; v < NV; v++)
				acc[r][v] = _mm512_dpbf16_ps(acc[r][v], x, w[v]);
		}
	}
#pragma GCC unroll 16
	for (int r = 0; r < MR; r++)
		if (r < mr)
#pragma GCC unroll 8
			for (int v = 0; v < NV; v++)
				_mm512_mask_storeu_ps(c + (size_t) r * ldc + 16 * v, m[v], acc[r][v]);
}
#endif

static void
gemm_bf16(float *c, int ldc, const float *a, int lda, int m,
		  const R4PackedB *b, const float *bias, bool accumulate, bool gelu)
{
	int			nblocks,
				kcp;
	bool		native = allow_native && r4_gemm_bf16_native();

	if (m <= 0 || b->n <= 0)
		return;
	if (b->kpairs == 0)
	{
		/* No inputs: the product is zero, only the bias (and C) remain. */
		for (int i = 0; i < m; i++)
			for (int j = 0; j < b->n; j++)
			{
				float	   *y = c + (size_t) i * ldc + j;

				*y = (accumulate ? *y : 0.0f) + (bias != NULL ? bias[j] : 0.0f);
			}
		for (int i = 0; gelu && i < m; i++)
			r4_gelu(c + (size_t) i * ldc, (size_t) b->n);
		return;
	}
	/* Equal K blocks of at most KCP_MAX pairs, so no block is a short tail. */
	nblocks = (b->kpairs + KCP_MAX - 1) / KCP_MAX;
	kcp = (b->kpairs + nblocks - 1) / nblocks;
	for (int p0 = 0; p0 < b->kpairs; p0 += kcp)
	{
		int			kb = b->kpairs - p0 < kcp ? b->kpairs - p0 : kcp;
		bool		first = p0 == 0;

		for (int i0 = 0; i0 < m; i0 += MC)
		{
			int			mb = m - i0 < MC ? m - i0 : MC;
			const float *ab = a + (size_t) i0 * lda;

#ifdef R4_GEMM_X86
			if (native)
				pack_a_native(apack, ab, lda, mb, b->k, p0, kb);
			else
#endif
				pack_a_portable(apack, ab, lda, mb, b->k, p0, kb);
			for (int j = 0; j < b->panels; j++)
			{
				const uint32_t *bp = b->data + ((size_t) j * b->kpairs + p0) * NR;
				int			nr = b->n - j * NR < NR ? b->n - j * NR : NR;
				const float *bj = first && bias != NULL ? bias + (size_t) j * NR : NULL;
				bool		load = !first || accumulate;

				for (int ir = 0; ir < mb; ir += MR)
				{
					int			mr = mb - ir < MR ? mb - ir : MR;
					float	   *ct = c + (size_t) (i0 + ir) * ldc + (size_t) j * NR;
					const uint32_t *ap = apack + (size_t) ir * ASTRIDE;

#ifdef R4_GEMM_X86
					if (native)
						kernel_native(kb, ap, bp, ct, ldc, mr, nr, bj, load);
					else
#endif
						kernel_portable(kb, ap, bp, ct, ldc, mr, nr, bj, load);
				}
			}
			/* These rows are final after the last K block: apply GELU while in L2. */
			if (gelu && p0 + kb == b->kpairs)
			{
				if (ldc == b->n)
					r4_gelu(c + (size_t) i0 * ldc, (size_t) mb * b->n);
				else
					for (int i = 0; i < mb; i++)
						r4_gelu(c + (size_t) (i0 + i) * ldc, (size_t) b->n);
			}
		}
	}
}

void
r4_gemm_bf16(float *c, int ldc, const float *a, int lda, int m,
			 const R4PackedB *b, const float *bias, bool accumulate)
{
	gemm_bf16(c, ldc, a, lda, m, b, bias, accumulate, false);
}

void
r4_gemm_bf16_gelu(float *c, int ldc, const float *a, int lda, int m,
				  const R4PackedB *b, const float *bias, bool accumulate)
{
	gemm_bf16(c, ldc, a, lda, m, b, bias, accumulate, true);
}

/* ---- attention: both products of every head in bf16 ---------------------- */

/* Words of one packed operand of n outputs by k inputs, aligned to 16 words. */
static size_t
packed_words(int n, int k)
{
	size_t		w = (size_t) (n / NR + (n % NR != 0)) * NR * (size_t) (k / 2 + k % 2);

	return (w + 15) / 16 * 16;
}

size_t
r4_attention_bf16_scratch(int T, int hd)
{
	return packed_words(T, hd) + packed_words(hd, T) + 16;
}

/* Header of an operand packed into caller memory (16-word aligned). */
static void
packed_header(R4PackedB *b, uint32_t *data, int n, int k)
{
	b->n = n;
	b->k = k;
	b->kpairs = k / 2 + k % 2;
	b->panels = n / NR + (n % NR != 0);
	b->data = data;
	b->alloc = NULL;
}

/* Pack B[n][k] = w rows (stride ldw), the r4_pack_b_bf16 layout. */
static void
pack_nt_portable(const R4PackedB *b, const float *w, int ldw)
{
	for (int j = 0; j < b->panels; j++)
		for (int p = 0; p < b->kpairs; p++)
		{
			uint32_t   *dst = b->data + ((size_t) j * b->kpairs + p) * NR;

			for (int l = 0; l < NR; l++)
			{
				int			row = j * NR + l;
				const float *wr = w + (size_t) row * ldw;

				dst[l] = row >= b->n ? 0 :
					pair_word(wr[2 * p], 2 * p + 1 < b->k ? wr[2 * p + 1] : 0.0f);
			}
		}
}

/* Pack B[n][k] = v^T, v[k][n] with row stride ldv (attention's V). */
static void
pack_nn_portable(const R4PackedB *b, const float *v, int ldv)
{
	for (int j = 0; j < b->panels; j++)
		for (int p = 0; p < b->kpairs; p++)
		{
			uint32_t   *dst = b->data + ((size_t) j * b->kpairs + p) * NR;
			const float *r0 = v + (size_t) (2 * p) * ldv;
			const float *r1 = r0 + ldv;

			for (int l = 0; l < NR; l++)
			{
				int			col = j * NR + l;

				dst[l] = col >= b->n ? 0 :
					pair_word(r0[col], 2 * p + 1 < b->k ? r1[col] : 0.0f);
			}
		}
}

#ifdef R4_GEMM_X86
/* pack_nt_portable, rounding 32 inputs of a row at a time. */
R4_BF16_TARGET
static void
pack_nt_native(const R4PackedB *b, const float *w, int ldw)
{
	uint32_t	tmp[16] __attribute__((aligned(64)));

	for (int j = 0; j < b->panels; j++)
		for (int l = 0; l < NR; l++)
		{
			int			row = j * NR + l;
			const float *wr = w + (size_t) row * ldw;
			uint32_t   *dst = b->data + (size_t) j * b->kpairs * NR + l;

			for (int p = 0; p < b->kpairs; p += 16)
			{
				int			left = b->k - 2 * p;
				int			np = b->kpairs - p < 16 ? b->kpairs - p : 16;
				__mmask16	lo = left >= 16 ? 0xffff : (__mmask16) ((1u << left) - 1);
				__mmask16	hi = left >= 32 ? 0xffff : (left > 16 ? (__mmask16) ((1u << (left - 16)) - 1) : 0);

				if (row >= b->n)
					lo = hi = 0;
				_mm512_store_si512((void *) tmp,
								   (__m512i) _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, wr + 2 * p + 16),
																 _mm512_maskz_loadu_ps(lo, wr + 2 * p)));
				for (int t = 0; t < np; t++)
					dst[(size_t) (p + t) * NR] = tmp[t];
			}
		}
}

/* pack_nn_portable: two rows of v, 16 columns at a time, as (even, odd) words. */
R4_BF16_TARGET
static void
pack_nn_native(const R4PackedB *b, const float *v, int ldv)
{
	for (int j = 0; j < b->panels; j++)
		for (int p = 0; p < b->kpairs; p++)
		{
			uint32_t   *dst = b->data + ((size_t) j * b->kpairs + p) * NR;
			const float *r0 = v + (size_t) (2 * p) * ldv;
			const float *r1 = r0 + ldv;
			bool		odd = 2 * p + 1 < b->k;

			for (int h = 0; h < NR; h += 16)
			{
				int			left = b->n - (j * NR + h);
				__mmask16	m = left >= 16 ? 0xffff : (left > 0 ? (__mmask16) ((1u << left) - 1) : 0);
				__m512i		e = _mm512_cvtepu16_epi32((__m256i) _mm512_cvtneps_pbh(
															_mm512_maskz_loadu_ps(m, r0 + j * NR + h)));
				__m512i		o = _mm512_cvtepu16_epi32((__m256i) _mm512_cvtneps_pbh(
															_mm512_maskz_loadu_ps(odd ? m : 0, r1 + j * NR + h)));

				_mm512_store_si512((void *) (dst + h), _mm512_or_si512(e, _mm512_slli_epi32(o, 16)));
			}
		}
}
#endif

void
r4_attention_bf16(const float *qkv, int T, int D, int nh, float scale,
				  float *out, float *scores, uint32_t *scratch)
{
	int			hd = D / nh;
	bool		native = allow_native && r4_gemm_bf16_native();
	uint32_t   *base = (uint32_t *) (((uintptr_t) scratch + 63) & ~(uintptr_t) 63);
	R4PackedB	kb,
				vb;

	packed_header(&kb, base, T, hd);
	packed_header(&vb, base + packed_words(T, hd), hd, T);
	for (int h = 0; h < nh; h++)
	{
		const float *q = qkv + (size_t) h * hd;
		const float *k = q + D;
		const float *v = q + 2 * D;

#ifdef R4_GEMM_X86
		if (native)
		{
			pack_nt_native(&kb, k, 3 * D);
			pack_nn_native(&vb, v, 3 * D);
		}
		else
#endif
		{
			pack_nt_portable(&kb, k, 3 * D);
			pack_nn_portable(&vb, v, 3 * D);
		}
		gemm_bf16(scores, T, q, 3 * D, T, &kb, NULL, false, false);
		for (size_t i = 0; i < (size_t) T * T; i++)
			scores[i] *= scale;
		r4_softmax_rows(scores, T, T, T);
		gemm_bf16(out + (size_t) h * hd, D, scores, T, T, &vb, NULL, false, false);
	}
}
