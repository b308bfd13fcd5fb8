/*
 * gemm.h — the bf16 matrix product of the opt-in bf16 precision.
 *
 * C[M][N] (+)= A[M][K] · B[N][K]^T (+ bias), the nn.Linear layout, with A
 * fp32 activations rounded to bf16 (round to nearest even) while they are
 * packed, B bf16 weights packed once per model into the kernel's panel
 * layout, products and sums in fp32, C fp32.
 *
 * Two implementations with the same inputs: an AVX-512 kernel built around
 * vdpbf16ps (two bf16 multiply-adds per fp32 lane and instruction, twice
 * the multiply-adds of an fp32 FMA), used when the CPU has avx512f, bw, vl
 * and avx512_bf16; and a portable loop over the same bf16-rounded values,
 * products exact in fp32 (8-bit significands), sums in fp32.  The two differ
 * only in the order of the fp32 sums (and vdpbf16ps treats denormal inputs
 * and outputs as zero); test_gemm_bf16 checks both against a double
 * reference on the bf16-rounded inputs.
 *
 * A packed weight holds K rounded up to even times N rounded up to 32
 * bf16 values: half the bytes of the fp32 matrix.  Nothing here is
 * thread-safe across calls sharing a packed weight being freed; the
 * packing scratch is per thread.  Single-threaded (the BLAS thread
 * setting does not apply to this path).
 */
#ifndef RAI4EO_GEMM_H
#define RAI4EO_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rai4eo/core.h"

/* The arithmetic an engine runs its GEMMs in. */
typedef enum R4Precision
{
	R4_PRECISION_FP32 = 0,		/* cblas_sgemm, the exact default */
	R4_PRECISION_BF16			/* r4_gemm_bf16: bf16 inputs, fp32 sums */
} R4Precision;

/* "fp32" or "bf16". */
const char *r4_precision_name(R4Precision p);

/* A weight matrix [N][K] packed into bf16 panels of 32 output columns. */
typedef struct R4PackedB
{
	int			n,
				k;				/* the matrix: n rows (outputs) of k (inputs) */
	int			kpairs;			/* (k + 1) / 2: vdpbf16ps takes k two at a time */
	int			panels;			/* (n + 31) / 32 */
	uint32_t   *data;			/* [panels][kpairs][32] pairs of bf16, 64-byte aligned */
	void	   *alloc;			/* what r4_free releases */
} R4PackedB;

/* True when this CPU runs the AVX-512 BF16 kernel (asked once). */
bool		r4_gemm_bf16_native(void);

/*
 * Let tests and benchmarks force the portable loop (false) or allow the
 * AVX-512 kernel again (true, where the CPU has it); returns the previous
 * setting.  Not thread-safe.
 */
bool		r4_gemm_bf16_set_native(bool enable);

/* Round an fp32 value to bf16, to nearest even (NaN stays a quiet NaN). */
uint16_t	r4_bf16_from_f32(float x);

/* The fp32 value of a bf16 value. */
float		r4_f32_from_bf16(uint16_t h);

/*
 * Pack w[n][k] (row stride ldw) into a new R4PackedB; R4_ERR_NOMEM,
 * R4_ERR_LIMIT for sizes whose packed form overflows.
 */
R4Status	r4_pack_b_bf16(const float *w, int n, int k, int ldw, R4PackedB **out, R4Error *err);

/* Bytes a packed weight holds. */
size_t		r4_packed_b_bytes(const R4PackedB *b);

/* Release a packed weight; NULL is fine. */
void		r4_packed_b_free(R4PackedB *b);

/*
 * c[m][b->n] (row stride ldc) = a[m][b->k] (row stride lda) · b^T + bias,
 * or, with accumulate, that added to what c holds.  bias may be NULL.
 */
void		r4_gemm_bf16(float *c, int ldc, const float *a, int lda, int m,
						 const R4PackedB *b, const float *bias, bool accumulate);

/*
 * r4_gemm_bf16 followed by r4_gelu (nn.h) on the output, applied to each
 * block of rows as soon as it is final, while it is still in cache: the
 * separate pass over a [M][hidden] buffer in memory goes away.
 */
void		r4_gemm_bf16_gelu(float *c, int ldc, const float *a, int lda, int m,
							  const R4PackedB *b, const float *bias, bool accumulate);

/* uint32_t words of scratch r4_attention_bf16 needs for T tokens and heads of width hd. */
size_t		r4_attention_bf16_scratch(int T, int hd);

/*
 * Multi-head self-attention of one image with both products in bf16 (fp32
 * sums): out[t][h*hd + j] (row stride D) = softmax(scale q_h k_h^T) v_h for
 * every head h, q, k, v read from the fused rows qkv[T][3D] (q, k, v
 * thirds, head h at columns h*hd of each).  scores holds T x T floats;
 * scratch r4_attention_bf16_scratch(T, D / nh) words (K and V are packed
 * there per head; any alignment).  The softmax is nn.h's, in fp32.
 */
void		r4_attention_bf16(const float *qkv, int T, int D, int nh, float scale,
							  float *out, float *scores, uint32_t *scratch);

#endif							/* RAI4EO_GEMM_H */
