/*
 * distance.h — vector kernels behind the embedding type's distances.
 *
 * All kernels take float arrays of the same length n and accumulate in
 * float across 16 independent lanes (explicit SIMD, so the summation order
 * is fixed and does not depend on compiler flags), finishing in double.
 * They are compiled for several instruction sets and picked at load time;
 * on a CPU with AVX-512 a 32-lane build runs instead.  The 32-lane and
 * 16-lane builds sum in different orders: they agree within
 * 2 (n/16 + 1) 2^-24 times the sum of the terms' magnitudes (|a_i b_i|,
 * a_i^2, (a_i - b_i)^2), float rounding of each lane's sum.
 * Where float lanes would overflow or underflow (elements beyond ~1e19 or
 * below ~1e-19) the result is recomputed in double: it is then exact to
 * double rounding, never Infinity or NaN for finite inputs.
 */
#ifndef RAI4EO_DISTANCE_H
#define RAI4EO_DISTANCE_H

#include <stddef.h>

/*
 * Let tests and benchmarks turn the AVX-512 build off (0) or back on (1,
 * where the CPU has it); returns the previous setting.  Not thread-safe.
 */
int			r4_distance_set_avx512(int enable);

/* 1 when the AVX-512 build runs. */
int			r4_distance_avx512(void);

/* Dot product and both squared norms in one pass over a and b. */
void		r4_dot_norms(const float *a, const float *b, size_t n,
						 double *dot, double *norm_a, double *norm_b);

/* Dot product of a and b. */
double		r4_dot(const float *a, const float *b, size_t n);

/* Squared Euclidean distance between a and b. */
double		r4_l2_squared(const float *a, const float *b, size_t n);

/*
 * v, or +-Infinity when |v| exceeds FLT_MAX: pgvector accumulates distances
 * in float4, so its l2 distance and inner product are Infinity there; the
 * glue applies this to give the same answers.
 */
double		r4_float_range(double v);

/* Squared Euclidean norm of a. */
double		r4_norm_squared(const float *a, size_t n);

/*
 * Cosine similarity from a dot product and squared norms, clamped to
 * [-1, 1]; NaN when either vector is zero.
 */
double		r4_cosine_from_parts(double dot, double norm_a, double norm_b);

/* Cosine similarity of a and b (NaN for a zero vector). */
double		r4_cosine_similarity(const float *a, const float *b, size_t n);

#endif							/* RAI4EO_DISTANCE_H */
