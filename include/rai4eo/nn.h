/*
 * nn.h — the layer kernels the inference engines are built from.
 *
 * Plain functions with their shapes in their signatures, in the llm.c
 * manner.  Matrices are row-major float32; every matrix product goes
 * through cblas_sgemm.  None of these allocate, fail or look at anything
 * outside the extents they are given; callers check shapes first.
 *
 * The resampling kernels reproduce PyTorch's F.interpolate arithmetic
 * (align_corners=False, no antialias) so that the engine matches the
 * reference models (docs/formats.md, "DINO ViT", interpolation arithmetic).
 */
#ifndef RAI4EO_NN_H
#define RAI4EO_NN_H

#include <stdbool.h>
#include <stddef.h>

#include "rai4eo/gemm.h"

/*
 * y[rows][out_dim] = x[rows][in_dim] · w[out_dim][in_dim]^T + b, the
 * nn.Linear layout.  b may be NULL.  With accumulate, the product and bias
 * are added to what y holds (a residual connection) instead of replacing it.
 */
void		r4_linear(float *y, const float *x, const float *w, const float *b,
					  int rows, int in_dim, int out_dim, bool accumulate);

/*
 * r4_linear, except that with a packed weight wp (not NULL; w is then
 * unused) the product runs in bf16 with fp32 sums (r4_gemm_bf16).
 */
void		r4_linear_any(float *y, const float *x, const float *w, const R4PackedB *wp,
						  const float *b, int rows, int in_dim, int out_dim, bool accumulate);

/* y = GELU(x · w^T + b): r4_linear_any, then r4_gelu (fused for a packed weight). */
void		r4_linear_gelu_any(float *y, const float *x, const float *w, const R4PackedB *wp,
							   const float *b, int rows, int in_dim, int out_dim);

/*
 * LayerNorm over the last dimension with PyTorch semantics: biased
 * variance, y = (x - mean) / sqrt(var + eps) * gamma + beta.  out may equal
 * in.  Sums run in eight float lanes combined in double.
 */
void		r4_layernorm(float *out, const float *in, const float *gamma,
						 const float *beta, int rows, int dim, float eps);

/*
 * Exact (erf) GELU in place: x * 0.5 * (1 + erf(x / sqrt 2)), nn.GELU's
 * default, not the tanh approximation.  Vectorised, within about
 * 1.1e-7 * max(1, |x|) of the true value.
 */
void		r4_gelu(float *x, size_t n);

/*
 * Numerically stable softmax of each row of x[rows][cols] (row stride ld)
 * in place; vectorised exp with relative error about 1e-7, row sums in
 * double.
 */
void		r4_softmax_rows(float *x, int rows, int cols, int ld);

/*
 * r4_gelu and r4_softmax_rows run an AVX2+FMA build of their code when the
 * CPU has both.  Passing false forces the baseline build (for tests and
 * benchmarks); returns the previous setting.  Not thread-safe.
 */
bool		r4_nn_set_simd(bool enable);

/* Add x to y elementwise: y[i] += x[i]. */
void		r4_add(float *y, const float *x, size_t n);

/*
 * The Keys cubic convolution weights PyTorch uses (A = -0.75) for the four
 * taps floor(src)-1 .. floor(src)+2 at fractional position t in [0, 1).
 */
void		r4_cubic_weights(double t, double w[4]);

/*
 * Bicubic resampling of a channels-last image in[ih][iw][channels] to
 * out[oh][ow][channels], like F.interpolate(mode='bicubic',
 * align_corners=False): the source coordinate of output index d is
 * (d + 0.5) * ratio - 0.5 with ratio_h, ratio_w the input-per-output step
 * (in/out when a size is asked for, 1/scale_factor when a scale factor is
 * given), negative coordinates are kept, and out-of-range taps are clamped
 * to the edge.  Like PyTorch, the step is rounded to float; coordinates,
 * weights and sums are then computed in double.  Rows are combined first,
 * then columns.
 */
void		r4_bicubic_resize_hwc(const float *in, int ih, int iw, int channels,
								  float *out, int oh, int ow,
								  double ratio_h, double ratio_w);

/*
 * Bilinear resampling of channels-first planes in[channels][ih][iw] to
 * out[channels][oh][ow], like F.interpolate(size=(oh, ow),
 * mode='bilinear', align_corners=False, antialias=False): source coordinate
 * (d + 0.5) * in/out - 0.5 clamped below at 0 (the step rounded to
 * float, as PyTorch has it), two taps, the second one clamped to the last
 * pixel; arithmetic in double.
 */
void		r4_bilinear_resize_chw(const float *in, int channels, int ih, int iw,
								   float *out, int oh, int ow);

#endif							/* RAI4EO_NN_H */
