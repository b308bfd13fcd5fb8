/*
 * nn.c — layer kernels: linear (cblas_sgemm), LayerNorm, GELU, softmax and
 * the PyTorch-compatible resampling kernels.
 */
#include "rai4eo/nn.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Multiply by a transposed nn.Linear weight, adding the bias, optionally onto y. */
void
r4_linear(float *y, const float *x, const float *w, const float *b,
		  int rows, int in_dim, int out_dim, bool accumulate)
{
	float		beta = 0.0f;

	if (rows <= 0 || out_dim <= 0)
		return;
	/*
	 * Put the bias in y first and let sgemm accumulate onto it; this saves
	 * a second pass over the output.
	 */
	if (b != NULL)
	{
		for (int r = 0; r < rows; r++)
		{
			float	   *yr = y + (size_t) r * out_dim;

			if (accumulate)
				for (int o = 0; o < out_dim; o++)
					yr[o] += b[o];
			else
				memcpy(yr, b, sizeof(float) * (size_t) out_dim);
		}
		beta = 1.0f;
	}
	else if (accumulate)
		beta = 1.0f;
	if (in_dim <= 0)
	{
		if (beta == 0.0f)
			memset(y, 0, sizeof(float) * (size_t) rows * out_dim);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
				rows, out_dim, in_dim,
				1.0f, x, in_dim, w, in_dim,
				beta, y, out_dim);
}


/* r4_linear, or the bf16 product when the weight is packed (wp not NULL). */
void
r4_linear_any(float *y, const float *x, const float *w, const R4PackedB *wp,
			  const float *b, int rows, int in_dim, int out_dim, bool accumulate)
{
	if (wp != NULL)
		r4_gemm_bf16(y, out_dim, x, in_dim, rows, wp, b, accumulate);
	else
		r4_linear(y, x, w, b, rows, in_dim, out_dim, accumulate);
}

/* r4_linear_any then r4_gelu; the bf16 product applies GELU block by block, in cache. */
void
r4_linear_gelu_any(float *y, const float *x, const float *w, const R4PackedB *wp,
				   const float *b, int rows, int in_dim, int out_dim)
{
	if (wp != NULL)
		r4_gemm_bf16_gelu(y, out_dim, x, in_dim, rows, wp, b, false);
	else
	{
		r4_linear(y, x, w, b, rows, in_dim, out_dim, false);
		if (rows > 0 && out_dim > 0)
			r4_gelu(y, (size_t) rows * out_dim);
	}
}

/*
 * The elementwise hot spots (GELU over M x hidden values, softmax over every
 * head's T x T scores) are written with GCC/Clang vector extensions, eight
 * floats at a time, with their own exp: glibc's erff alone took a quarter
 * of a ViT-S forward pass.  The same code is compiled twice, for AVX2+FMA
 * (picked at run time when the CPU has both) and for the baseline ISA.
 * Vectors are only passed by pointer so no function crosses an ABI
 * boundary with a 32-byte value.
 */
typedef float R4F8 __attribute__((vector_size(32)));
typedef int32_t R4I8 __attribute__((vector_size(32)));

#define R4_LANES 8
/* Lanes of a where mask m is set, else lanes of b. */
#define R4_VSEL(m, a, b) ((R4F8) (((m) & (R4I8) (a)) | (~(m) & (R4I8) (b))))

static bool use_simd = true;

/* Let tests and benchmarks force the baseline code path; returns the previous setting. */
bool
r4_nn_set_simd(bool enable)
{
	bool		old = use_simd;

	use_simd = enable;
	return old;
}

/*
 * exp of eight lanes in place, relative error about 1e-7: x = k ln2 + t
 * with |t| <= ln2/2 (ln2 split in two for an exact product), a degree-7
 * Taylor polynomial for exp(t), then 2^k built in the exponent bits.
 * Below -87 the result is 0 (exp(-87) is about 1.6e-38), above 88 it is
 * exp(88); NaN stays NaN.
 */
static inline __attribute__((always_inline)) void
vexp8(R4F8 *xp)
{
	const R4F8	zero = {0};
	R4F8		x = *xp;
	R4I8		under = x < -87.0f;
	R4I8		nan = x != x;
	R4F8		k,
				t,
				p,
				scale;

	x = R4_VSEL(under, zero - 87.0f, x);
	x = R4_VSEL(x > 88.0f, zero + 88.0f, x);
	/* Round to nearest by adding and removing 1.5 * 2^23. */
	k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
	t = x - k * 0.693145751953125f;
	t = t - k * 1.42860682030941723212e-6f;
	p = t * (1.0f / 5040.0f) + (1.0f / 720.0f);
	p = p * t + (1.0f / 120.0f);
	p = p * t + (1.0f / 24.0f);
	p = p * t + (1.0f / 6.0f);
	p = p * t + 0.5f;
	p = p * t + 1.0f;
	p = p * t + 1.0f;
	scale = (R4F8) ((__builtin_convertvector(k, R4I8) + 127) << 23);
	p = R4_VSEL(under, zero, p * scale);
	*xp = R4_VSEL(nan, *xp, p);
}

/*
 * Exact-erf GELU of eight lanes in place: x * Phi(x) with
 * Phi(x) = 1 - erfc(z)/2 for x >= 0 and erfc(z)/2 below, z = |x|/sqrt 2.
 * erfc(z) = t exp(-z^2 + P(t)), t = 1/(1 + z/2), with the Chebyshev fit
 * of Numerical Recipes (erfcc, relative error < 1.2e-7 for every z), so
 * the result stays within about 1.1e-7 * max(1, |x|) of the true value
 * (test_nn checks it against double erf).
 */
static inline __attribute__((always_inline)) void
vgelu8(R4F8 *xp)
{
	R4F8		x = *xp;
	R4F8		z = (R4F8) ((R4I8) x & 0x7fffffff) * 0.70710678118654752f;
	R4F8		t = 1.0f / (1.0f + 0.5f * z);
	R4F8		p,
				half_erfc;

	p = t * 0.17087277f - 0.82215223f;
	p = p * t + 1.48851587f;
	p = p * t - 1.13520398f;
	p = p * t + 0.27886807f;
	p = p * t - 0.18628806f;
	p = p * t + 0.09678418f;
	p = p * t + 0.37409196f;
	p = p * t + 1.00002368f;
	p = p * t - 1.26551223f;
	p = p - z * z;
	vexp8(&p);
	half_erfc = 0.5f * t * p;
	*xp = x * R4_VSEL(x >= 0.0f, 1.0f - half_erfc, half_erfc);
}

/* Apply GELU to n values, eight at a time, the tail through a padded vector. */
static inline __attribute__((always_inline)) void
gelu_body(float *x, size_t n)
{
	size_t		i = 0;
	R4F8		v;

	for (; i + R4_LANES <= n; i += R4_LANES)
	{
		memcpy(&v, x + i, sizeof(v));
		vgelu8(&v);
		memcpy(x + i, &v, sizeof(v));
	}
	if (i < n)
	{
		memset(&v, 0, sizeof(v));
		memcpy(&v, x + i, (n - i) * sizeof(float));
		vgelu8(&v);
		memcpy(x + i, &v, (n - i) * sizeof(float));
	}
}

/* Softmax of each row: subtract the maximum, exponentiate, sum in double, scale. */
static inline __attribute__((always_inline)) void
softmax_body(float *x, int rows, int cols, int ld)
{
	for (int r = 0; r < rows; r++)
	{
		float	   *row = x + (size_t) r * ld;
		float		mx = -INFINITY;
		double		sum = 0.0;
		float		inv;
		int			c;
		R4F8		v,
					vmax;

		/* The maximum, eight lanes at a time; NaN lanes are skipped like the scalar tail does. */
		for (int k = 0; k < R4_LANES; k++)
			vmax[k] = -INFINITY;
		for (c = 0; c + R4_LANES <= cols; c += R4_LANES)
		{
			memcpy(&v, row + c, sizeof(v));
			vmax = R4_VSEL(v > vmax, v, vmax);
		}
		for (int k = 0; k < R4_LANES; k++)
			if (vmax[k] > mx)
				mx = vmax[k];
		for (; c < cols; c++)
			if (row[c] > mx)
				mx = row[c];

		for (c = 0; c < cols; c += R4_LANES)
		{
			int			n = cols - c < R4_LANES ? cols - c : R4_LANES;
			float		part;

			if (n < R4_LANES)
			{
				/* -inf pads the tail, and exp(-inf) adds nothing to the sum. */
				for (int k = 0; k < R4_LANES; k++)
					v[k] = -INFINITY;
				memcpy(&v, row + c, (size_t) n * sizeof(float));
			}
			else
				memcpy(&v, row + c, sizeof(v));
			v = v - mx;
			vexp8(&v);
			memcpy(row + c, &v, (size_t) n * sizeof(float));
			part = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
			sum += part;
		}

		inv = (float) (1.0 / sum);
		for (c = 0; c + R4_LANES <= cols; c += R4_LANES)
		{
			memcpy(&v, row + c, sizeof(v));
			v = v * inv;
			memcpy(row + c, &v, sizeof(v));
		}
		for (; c < cols; c++)
			row[c] *= inv;
	}
}

/*
 * LayerNorm of each row: two passes (the one-pass formula loses digits when
 * |mean| >> std), eight float lanes per pass with the lanes and the
 * scalar tail combined in double; PyTorch's own kernel also accumulates in
 * float, so this stays well inside the parity contract.
 */
static inline __attribute__((always_inline)) void
layernorm_body(float *out, const float *in, const float *gamma,
			   const float *beta, int rows, int dim, float eps)
{
	for (int r = 0; r < rows; r++)
	{
		const float *x = in + (size_t) r * dim;
		float	   *y = out + (size_t) r * dim;
		R4F8		acc = {0},
					v,
					g,
					b;
		double		sum = 0.0,
					sq = 0.0,
					dmean;
		float		pivot,
					mean,
					delta,
					rstd;
		int			i;

		/* Summing x - x[0] keeps float lanes exact enough when |mean| >> std */
		pivot = x[0];
		for (i = 0; i + R4_LANES <= dim; i += R4_LANES)
		{
			memcpy(&v, x + i, sizeof(v));
			acc += v - pivot;
		}
		for (int k = 0; k < R4_LANES; k++)
			sum += acc[k];
		for (; i < dim; i++)
			sum += x[i] - pivot;
		/*
		 * The mean as a float plus its rounding error: x - mean is exact
		 * for x near the mean (Sterbenz), so subtracting delta afterwards
		 * keeps rows with |mean| >> std accurate.
		 */
		dmean = pivot + sum / dim;
		mean = (float) dmean;
		delta = (float) (dmean - mean);

		acc = acc - acc;
		for (i = 0; i + R4_LANES <= dim; i += R4_LANES)
		{
			memcpy(&v, x + i, sizeof(v));
			v = (v - mean) - delta;
			acc += v * v;
		}
		for (int k = 0; k < R4_LANES; k++)
			sq += acc[k];
		for (; i < dim; i++)
			sq += ((double) x[i] - dmean) * ((double) x[i] - dmean);
		rstd = (float) (1.0 / sqrt(sq / dim + (double) eps));

		for (i = 0; i + R4_LANES <= dim; i += R4_LANES)
		{
			memcpy(&v, x + i, sizeof(v));
			memcpy(&g, gamma + i, sizeof(g));
			memcpy(&b, beta + i, sizeof(b));
			v = ((v - mean) - delta) * rstd * g + b;
			memcpy(y + i, &v, sizeof(v));
		}
		for (; i < dim; i++)
			y[i] = ((x[i] - mean) - delta) * rstd * gamma[i] + beta[i];
	}
}

#if defined(__x86_64__) || defined(__i386__)
#define R4_HAVE_DISPATCH 1

/* The bodies compiled for AVX2 with FMA. */
__attribute__((target("avx2,fma")))
static void
gelu_avx2(float *x, size_t n)
{
	gelu_body(x, n);
}

__attribute__((target("avx2,fma")))
static void
softmax_avx2(float *x, int rows, int cols, int ld)
{
	softmax_body(x, rows, cols, ld);
}

__attribute__((target("avx2,fma")))
static void
layernorm_avx2(float *out, const float *in, const float *gamma,
			   const float *beta, int rows, int dim, float eps)
{
	layernorm_body(out, in, gamma, beta, rows, dim, eps);
}

/* Report whether this CPU runs the AVX2+FMA bodies (asked once). */
static bool
cpu_has_avx2(void)
{
	static int	cached = -1;

	if (cached < 0)
	{
		__builtin_cpu_init();
		cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	}
	return cached == 1;
}
#endif

/* The bodies compiled for the baseline ISA. */
static void
gelu_generic(float *x, size_t n)
{
	gelu_body(x, n);
}

static void
softmax_generic(float *x, int rows, int cols, int ld)
{
	softmax_body(x, rows, cols, ld);
}

static void
layernorm_generic(float *out, const float *in, const float *gamma,
				  const float *beta, int rows, int dim, float eps)
{
	layernorm_body(out, in, gamma, beta, rows, dim, eps);
}

/* Apply the exact erf GELU in place. */
void
r4_gelu(float *x, size_t n)
{
#ifdef R4_HAVE_DISPATCH
	if (use_simd && cpu_has_avx2())
	{
		gelu_avx2(x, n);
		return;
	}
#endif
	gelu_generic(x, n);
}

/* Replace each row by its softmax, subtracting the row maximum first. */
void
r4_softmax_rows(float *x, int rows, int cols, int ld)
{
#ifdef R4_HAVE_DISPATCH
	if (use_simd && cpu_has_avx2())
	{
		softmax_avx2(x, rows, cols, ld);
		return;
	}
#endif
	softmax_generic(x, rows, cols, ld);
}

/* LayerNorm over the last dimension of a rows x dim matrix (out may be in). */
void
r4_layernorm(float *out, const float *in, const float *gamma,
			 const float *beta, int rows, int dim, float eps)
{
#ifdef R4_HAVE_DISPATCH
	if (use_simd && cpu_has_avx2())
	{
		layernorm_avx2(out, in, gamma, beta, rows, dim, eps);
		return;
	}
#endif
	layernorm_generic(out, in, gamma, beta, rows, dim, eps);
}

/* Add one vector onto another. */
void
r4_add(float *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] += x[i];
}

/* Compute the four Keys cubic weights for fractional offset t. */
void
r4_cubic_weights(double t, double w[4])
{
	const double A = -0.75;
	double		x;

	/* |x| in [1, 2): ((A x - 5A) x + 8A) x - 4A */
	x = t + 1.0;
	w[0] = ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
	/* |x| in [0, 1]: ((A + 2) x - (A + 3)) x^2 + 1 */
	x = t;
	w[1] = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
	x = 1.0 - t;
	w[2] = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
	x = 2.0 - t;
	w[3] = ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
}

/* Clamp an index into [0, n). */
static inline int
clamp_index(long i, int n)
{
	if (i < 0)
		return 0;
	if (i >= n)
		return n - 1;
	return (int) i;
}

/*
 * Find the four clamped bicubic taps and their weights for output index d.
 * PyTorch rounds the step to float (its opmath type); using the same step
 * puts the source coordinates where it puts them, to about 1e-7.
 */
static void
cubic_taps(int d, int in_size, double ratio, int idx[4], double w[4])
{
	double		step = (float) ratio;
	double		src = step * ((double) d + 0.5) - 0.5;
	double		fl = floor(src);

	/* Unlike bilinear, cubic keeps negative coordinates unclamped. */
	r4_cubic_weights(src - fl, w);
	for (int k = 0; k < 4; k++)
		idx[k] = clamp_index((long) fl - 1 + k, in_size);
}

/* Resample a channels-last image bicubically. */
void
r4_bicubic_resize_hwc(const float *in, int ih, int iw, int channels,
					  float *out, int oh, int ow,
					  double ratio_h, double ratio_w)
{
	for (int oy = 0; oy < oh; oy++)
	{
		int			ry[4];
		double		wy[4];

		cubic_taps(oy, ih, ratio_h, ry, wy);
		for (int ox = 0; ox < ow; ox++)
		{
			int			rx[4];
			double		wx[4];
			float	   *o = out + ((size_t) oy * ow + ox) * channels;

			cubic_taps(ox, iw, ratio_w, rx, wx);
			for (int c = 0; c < channels; c++)
			{
				double		acc = 0.0;

				for (int i = 0; i < 4; i++)
				{
					const float *row = in + (size_t) ry[i] * iw * channels;
					double		r = 0.0;

					for (int j = 0; j < 4; j++)
						r += wx[j] * row[(size_t) rx[j] * channels + c];
					acc += wy[i] * r;
				}
				o[c] = (float) acc;
			}
		}
	}
}

/*
 * Find the two bilinear taps and weights for output index d.  The step
 * in/out is rounded to float as PyTorch does; without that, coordinates
 * far from the origin drift by up to 1e-5 pixels from PyTorch's.
 */
static void
linear_taps(int d, int in_size, int out_size, int *i0, int *i1, double *l0, double *l1)
{
	double		step = (float) in_size / (float) out_size;
	double		src = step * ((double) d + 0.5) - 0.5;
	int			lo;

	if (src < 0.0)
		src = 0.0;
	lo = (int) src;
	if (lo > in_size - 1)
		lo = in_size - 1;
	*i0 = lo;
	*i1 = lo < in_size - 1 ? lo + 1 : lo;
	*l1 = src - lo;
	if (*l1 > 1.0)
		*l1 = 1.0;
	*l0 = 1.0 - *l1;
}

/* Resample channels-first planes bilinearly. */
void
r4_bilinear_resize_chw(const float *in, int channels, int ih, int iw,
					   float *out, int oh, int ow)
{
	for (int oy = 0; oy < oh; oy++)
	{
		int			y0,
					y1;
		double		ly0,
					ly1;

		linear_taps(oy, ih, oh, &y0, &y1, &ly0, &ly1);
		for (int ox = 0; ox < ow; ox++)
		{
			int			x0,
						x1;
			double		lx0,
						lx1;

			linear_taps(ox, iw, ow, &x0, &x1, &lx0, &lx1);
			for (int c = 0; c < channels; c++)
			{
				const float *p = in + (size_t) c * ih * iw;
				double		v;

				v = ly0 * (lx0 * p[(size_t) y0 * iw + x0] + lx1 * p[(size_t) y0 * iw + x1]) +
					ly1 * (lx0 * p[(size_t) y1 * iw + x0] + lx1 * p[(size_t) y1 * iw + x1]);
				out[((size_t) c * oh + oy) * ow + ox] = (float) v;
			}
		}
	}
}
