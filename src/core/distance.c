/*
 * distance.c — dot products, norms and L2 distance over float vectors.
 *
 * The loops use GCC vector extensions with 16 float lanes (two 8-wide
 * accumulators), so the compiler emits SIMD code without -ffast-math and the
 * rounding is the same on every target.  target_clones builds an AVX2+FMA
 * variant next to the baseline one; glibc's ifunc resolver picks one when
 * the library is loaded, so the same .so runs on any x86-64.
 */
#include "rai4eo/distance.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define R4_TARGET_CLONES __attribute__((target_clones("default", "arch=haswell")))
#else
#define R4_TARGET_CLONES
#endif

typedef float v8f __attribute__((vector_size(32)));

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

R4_TARGET_CLONES
void
r4_dot_norms(const float *a, const float *b, size_t n,
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
double
r4_dot(const float *a, const float *b, size_t n)
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
double
r4_l2_squared(const float *a, const float *b, size_t n)
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

double
r4_norm_squared(const float *a, size_t n)
{
	return r4_dot(a, a, n);
}

double
r4_cosine_from_parts(double dot, double norm_a, double norm_b)
{
	double		sim;

	if (norm_a == 0.0 || norm_b == 0.0)
		return NAN;
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
