/*
 * distance.c — dot products, norms and L2 distance over float vectors.
 *
 * The loops use GCC vector extensions with 16 float lanes (two 8-wide
 * accumulators), so the compiler emits SIMD code without -ffast-math and the
 * rounding is the same on every target.  target_clones builds an AVX2+FMA
 * variant next to the baseline one; glibc's ifunc resolver picks one when
 * the library is loaded, so the same .so runs on any x86-64.
 *
 * On a CPU with AVX-512 an explicit build with 32 float lanes (two 16-wide
 * accumulators: half the instructions per element, FMA) runs instead,
 * picked once per process.  Its sums run in another order than the 16-lane
 * build's, so the two agree to float rounding of the sum (distance.h gives
 * the bound; test_distance checks it), not bit for bit.
 *
 * Float lanes overflow for elements beyond about 1.8e19 (their squares pass
 * FLT_MAX) and lose everything below about 1e-19 (their squares underflow).
 * Every kernel therefore checks its fast result and, when it is not finite
 * or is so small that underflow may have eaten it, recomputes in double,
 * where no product of two floats can overflow or underflow: exact where the
 * lanes fail, and free on ordinary data (a comparison per call).
 */
#include "rai4eo/distance.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define R4_TARGET_CLONES __attribute__((target_clones("default", "arch=haswell")))
#else
#define R4_TARGET_CLONES
#endif

typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));

/*
 * The helpers below pass v8f by value; they are static and inlined, so the
 * AVX-vs-SSE calling-convention note GCC emits for them cannot matter.
 */
#pragma GCC diagnostic ignored "-Wpsabi"

/* Load 8 floats from a possibly unaligned address. */
static inline v8f
load8(const float *p)
{
	v8f			v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Sum the lanes of *v in double. */
static inline double
hsum(const v8f *v)
{
	double		s = 0.0;

	for (int i = 0; i < 8; i++)
		s += (*v)[i];
	return s;
}

/*
 * Below this a fast sum of squares or products may have lost terms to
 * underflow (float's normal range ends at 1.2e-38): recompute.
 */
#define R4_DIST_TINY 1e-30

/* True when a fast result can be trusted. */
static inline int
trusted(double v, int signed_value)
{
	return isfinite(v) && (signed_value ? fabs(v) : v) >= R4_DIST_TINY;
}

R4_TARGET_CLONES
static void
dot_norms_fast(const float *a, const float *b, size_t n,
			   double *dot, double *norm_a, double *norm_b)
{
	v8f			d0 = {0}, d1 = {0}, a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
	size_t		i = 0;
	double		d, na, nb;

	for (; i + 16 <= n; i += 16)
	{
		v8f			x0 = load8(a + i), x1 = load8(a + i + 8);
		v8f			y0 = load8(b + i), y1 = load8(b + i + 8);

		d0 += x0 * y0;
		d1 += x1 * y1;
		a0 += x0 * x0;
		a1 += x1 * x1;
		b0 += y0 * y0;
		b1 += y1 * y1;
	}
	d0 += d1;
	a0 += a1;
	b0 += b1;
	d = hsum(&d0);
	na = hsum(&a0);
	nb = hsum(&b0);
	for (; i < n; i++)
	{
		d += (double) a[i] * b[i];
		na += (double) a[i] * a[i];
		nb += (double) b[i] * b[i];
	}
	*dot = d;
	*norm_a = na;
	*norm_b = nb;
}

R4_TARGET_CLONES
static double
dot_fast(const float *a, const float *b, size_t n)
{
	v8f			s0 = {0}, s1 = {0};
	size_t		i = 0;
	double		s;

	for (; i + 16 <= n; i += 16)
	{
		s0 += load8(a + i) * load8(b + i);
		s1 += load8(a + i + 8) * load8(b + i + 8);
	}
	s0 += s1;
	s = hsum(&s0);
	for (; i < n; i++)
		s += (double) a[i] * b[i];
	return s;
}

R4_TARGET_CLONES
static double
l2_squared_fast(const float *a, const float *b, size_t n)
{
	v8f			s0 = {0}, s1 = {0};
	size_t		i = 0;
	double		s;

	for (; i + 16 <= n; i += 16)
	{
		v8f			d0 = load8(a + i) - load8(b + i);
		v8f			d1 = load8(a + i + 8) - load8(b + i + 8);

		s0 += d0 * d0;
		s1 += d1 * d1;
	}
	s0 += s1;
	s = hsum(&s0);
	for (; i < n; i++)
	{
		double		d = (double) a[i] - b[i];

		s += d * d;
	}
	return s;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define R4_HAVE_AVX512 1
#define R4_AVX512 __attribute__((target("avx512f,avx512vl,fma")))

/* Load 16 floats from a possibly unaligned address. */
R4_AVX512
static inline v16f
load16(const float *p)
{
	v16f		v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Sum the lanes of *v in double. */
R4_AVX512
static inline double
hsum16(const v16f *v)
{
	double		s = 0.0;

	for (int i = 0; i < 16; i++)
		s += (*v)[i];
	return s;
}

R4_AVX512
static void
dot_norms_avx512(const float *a, const float *b, size_t n,
				 double *dot, double *norm_a, double *norm_b)
{
	v16f		d0 = {0}, d1 = {0}, a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
	size_t		i = 0;
	double		d, na, nb;

	for (; i + 32 <= n; i += 32)
	{
		v16f		x0 = load16(a + i), x1 = load16(a + i + 16);
		v16f		y0 = load16(b + i), y1 = load16(b + i + 16);

		d0 += x0 * y0;
		d1 += x1 * y1;
		a0 += x0 * x0;
		a1 += x1 * x1;
		b0 += y0 * y0;
		b1 += y1 * y1;
	}
	if (i + 16 <= n)
	{
		v16f		x0 = load16(a + i), y0 = load16(b + i);

		d0 += x0 * y0;
		a0 += x0 * x0;
		b0 += y0 * y0;
		i += 16;
	}
	d0 += d1;
	a0 += a1;
	b0 += b1;
	d = hsum16(&d0);
	na = hsum16(&a0);
	nb = hsum16(&b0);
	for (; i < n; i++)
	{
		d += (double) a[i] * b[i];
		na += (double) a[i] * a[i];
		nb += (double) b[i] * b[i];
	}
	*dot = d;
	*norm_a = na;
	*norm_b = nb;
}

R4_AVX512
static double
dot_avx512(const float *a, const float *b, size_t n)
{
	v16f		s0 = {0}, s1 = {0};
	size_t		i = 0;
	double		s;

	for (; i + 32 <= n; i += 32)
	{
		s0 += load16(a + i) * load16(b + i);
		s1 += load16(a + i + 16) * load16(b + i + 16);
	}
	if (i + 16 <= n)
	{
		s0 += load16(a + i) * load16(b + i);
		i += 16;
	}
	s0 += s1;
	s = hsum16(&s0);
	for (; i < n; i++)
		s += (double) a[i] * b[i];
	return s;
}

R4_AVX512
static double
l2_squared_avx512(const float *a, const float *b, size_t n)
{
	v16f		s0 = {0}, s1 = {0};
	size_t		i = 0;
	double		s;

	for (; i + 32 <= n; i += 32)
	{
		v16f		e0 = load16(a + i) - load16(b + i);
		v16f		e1 = load16(a + i + 16) - load16(b + i + 16);

		s0 += e0 * e0;
		s1 += e1 * e1;
	}
	if (i + 16 <= n)
	{
		v16f		e0 = load16(a + i) - load16(b + i);

		s0 += e0 * e0;
		i += 16;
	}
	s0 += s1;
	s = hsum16(&s0);
	for (; i < n; i++)
	{
		double		e = (double) a[i] - b[i];

		s += e * e;
	}
	return s;
}
#endif

static int	avx512_allowed = 1;

/* True when the AVX-512 kernels run (the CPU has them and no test turned them off). */
static inline int
use_avx512(void)
{
#ifdef R4_HAVE_AVX512
	static int	cpu = -1;

	if (cpu < 0)
	{
		__builtin_cpu_init();
		cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
	}
	return cpu && avx512_allowed;
#else
	return 0;
#endif
}

int
r4_distance_set_avx512(int enable)
{
	int			old = avx512_allowed;

	avx512_allowed = enable;
	return old;
}

int
r4_distance_avx512(void)
{
	return use_avx512();
}

void
r4_dot_norms(const float *a, const float *b, size_t n,
			 double *dot, double *norm_a, double *norm_b)
{
	double		d = 0.0, na = 0.0, nb = 0.0;

#ifdef R4_HAVE_AVX512
	if (use_avx512())
		dot_norms_avx512(a, b, n, dot, norm_a, norm_b);
	else
#endif
		dot_norms_fast(a, b, n, dot, norm_a, norm_b);
	if (trusted(*norm_a, 0) && trusted(*norm_b, 0) && isfinite(*dot))
		return;
	for (size_t i = 0; i < n; i++)
	{
		d += (double) a[i] * b[i];
		na += (double) a[i] * a[i];
		nb += (double) b[i] * b[i];
	}
	*dot = d;
	*norm_a = na;
	*norm_b = nb;
}

double
r4_dot(const float *a, const float *b, size_t n)
{
	double		s;

#ifdef R4_HAVE_AVX512
	if (use_avx512())
		s = dot_avx512(a, b, n);
	else
#endif
		s = dot_fast(a, b, n);
	if (trusted(s, 1))
		return s;
	s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += (double) a[i] * b[i];
	return s;
}

double
r4_l2_squared(const float *a, const float *b, size_t n)
{
	double		s;

#ifdef R4_HAVE_AVX512
	if (use_avx512())
		s = l2_squared_avx512(a, b, n);
	else
#endif
		s = l2_squared_fast(a, b, n);
	if (trusted(s, 0))
		return s;
	s = 0.0;
	for (size_t i = 0; i < n; i++)
	{
		double		d = (double) a[i] - b[i];

		s += d * d;
	}
	return s;
}

double
r4_norm_squared(const float *a, size_t n)
{
	return r4_dot(a, a, n);
}

double
r4_float_range(double v)
{
	if (v > FLT_MAX)
		return INFINITY;
	if (v < -FLT_MAX)
		return -INFINITY;
	return v;
}

double
r4_cosine_from_parts(double dot, double norm_a, double norm_b)
{
	double		sim;

	if (norm_a == 0.0 || norm_b == 0.0)
		return NAN;
	/* Squared norms of floats lie in [1e-90, 2e81]: their product fits a double */
	sim = dot / sqrt(norm_a * norm_b);
	/* Rounding can push |sim| a hair past 1 for parallel vectors. */
	if (sim > 1.0)
		sim = 1.0;
	else if (sim < -1.0)
		sim = -1.0;
	return sim;
}

double
r4_cosine_similarity(const float *a, const float *b, size_t n)
{
	double		dot, na, nb;

	r4_dot_norms(a, b, n, &dot, &na, &nb);
	return r4_cosine_from_parts(dot, na, nb);
}
