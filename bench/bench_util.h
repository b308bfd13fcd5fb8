/*
 * bench_util.h — what every C benchmark needs: a monotonic clock and the
 * median of repeated timings (machines are noisy; we report medians).
 */
#ifndef RAI4EO_BENCH_UTIL_H
#define RAI4EO_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

/* Read the monotonic clock in seconds. */
static inline double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Order doubles for qsort. */
static inline int
bench_cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Take the median of n timings (sorts them in place). */
static inline double
bench_median(double *v, int n)
{
	qsort(v, n, sizeof(double), bench_cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
