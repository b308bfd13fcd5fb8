/*
 * distance_bench.c — the distance kernels against a plain scalar loop and
 * against the memory-bandwidth roofline, measured in the same run.
 *
 * For 384-, 768- and 1536-d it scans a working set far larger than the caches
 * (pairs of vectors, as a sequential scan of a table would present them) and
 * reports ns per pair: the rai4eo kernel (dot and both norms in one pass),
 * a scalar loop doing the same sums, and the time the memory system needs
 * just to stream the pair's bytes (read bandwidth measured here).
 * Prints the median of 7 runs of each.  On a CPU with AVX-512 the hot loop
 * is also timed on the 16-lane (AVX2) build, r4_distance_set_avx512(0), in
 * the same runs: "hot 16-lane" and "512 gain" (its time / the default's).
 */
#include "rai4eo/distance.h"
#include "bench_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 7
#define WORKING_SET (512u << 20)

/* The loop a straightforward C extension would write (not vectorised). */
__attribute__((noinline, optimize("no-tree-vectorize")))
static void
scalar_dot_norms(const float *a, const float *b, size_t n, double *dot, double *na, double *nb)
{
	float		d = 0, x = 0, y = 0;

	for (size_t i = 0; i < n; i++)
	{
		d += a[i] * b[i];
		x += a[i] * a[i];
		y += b[i] * b[i];
	}
	*dot = d;
	*na = x;
	*nb = y;
}

/* Stream the buffer with wide integer loads: the read-bandwidth roofline. */
__attribute__((noinline))
static uint64_t
stream_read(const uint64_t *p, size_t words)
{
	uint64_t	s0 = 0, s1 = 0, s2 = 0, s3 = 0;

	for (size_t i = 0; i + 4 <= words; i += 4)
	{
		s0 ^= p[i];
		s1 ^= p[i + 1];
		s2 ^= p[i + 2];
		s3 ^= p[i + 3];
	}
	return s0 ^ s1 ^ s2 ^ s3;
}

int
main(void)
{
	size_t		floats = WORKING_SET / sizeof(float);
	float	   *data = malloc(WORKING_SET);
	static const int dims[] = {384, 768, 1536};
	volatile double sink = 0;

	for (size_t i = 0; i < floats; i++)
		data[i] = (float) ((i * 2654435761u) % 1000) / 1000.0f - 0.5f;

	printf("AVX-512 build: %s\n", r4_distance_avx512() ? "in use" : "not on this CPU (both hot columns are the 16-lane build)");
	printf("%6s %10s %12s %12s %12s %10s %10s %10s %10s %10s %12s %10s\n", "dims", "pairs", "rai4eo ns", "scalar ns",
		   "roofline ns", "vs scalar", "of roofl.", "hot ns", "hot scal.", "hot ratio", "hot 16-lane", "512 gain");
	for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++)
	{
		int			dim = dims[k];
		size_t		pairs = floats / (2 * (size_t) dim);
		double		t_fast[RUNS], t_scalar[RUNS], t_mem[RUNS], t_hot[RUNS], t_hot_scalar[RUNS],
					t_hot16[RUNS];
		size_t		hot_pairs = (48u << 10) / (2 * sizeof(float) * dim);	/* fits in L1/L2 */
		size_t		hot_reps = 200000 / hot_pairs;

		for (int r = 0; r < RUNS; r++)
		{
			double		t0, d, x, y;

			t0 = bench_now();
			for (size_t p = 0; p < pairs; p++)
			{
				r4_dot_norms(data + 2 * p * dim, data + (2 * p + 1) * dim, dim, &d, &x, &y);
				sink += d;
			}
			t_fast[r] = (bench_now() - t0) / pairs * 1e9;

			t0 = bench_now();
			for (size_t p = 0; p < pairs; p++)
			{
				scalar_dot_norms(data + 2 * p * dim, data + (2 * p + 1) * dim, dim, &d, &x, &y);
				sink += d;
			}
			t_scalar[r] = (bench_now() - t0) / pairs * 1e9;

			t0 = bench_now();
			sink += stream_read((const uint64_t *) data, pairs * 2 * dim * sizeof(float) / 8);
			t_mem[r] = (bench_now() - t0) / pairs * 1e9;

			/* The same kernels on data already in cache: compute speed alone */
			t0 = bench_now();
			for (size_t rep = 0; rep < hot_reps; rep++)
				for (size_t p = 0; p < hot_pairs; p++)
				{
					r4_dot_norms(data + 2 * p * dim, data + (2 * p + 1) * dim, dim, &d, &x, &y);
					sink += d;
				}
			t_hot[r] = (bench_now() - t0) / (hot_reps * hot_pairs) * 1e9;
			t0 = bench_now();
			for (size_t rep = 0; rep < hot_reps; rep++)
				for (size_t p = 0; p < hot_pairs; p++)
				{
					scalar_dot_norms(data + 2 * p * dim, data + (2 * p + 1) * dim, dim, &d, &x, &y);
					sink += d;
				}
			t_hot_scalar[r] = (bench_now() - t0) / (hot_reps * hot_pairs) * 1e9;
			r4_distance_set_avx512(0);
			t0 = bench_now();
			for (size_t rep = 0; rep < hot_reps; rep++)
				for (size_t p = 0; p < hot_pairs; p++)
				{
					r4_dot_norms(data + 2 * p * dim, data + (2 * p + 1) * dim, dim, &d, &x, &y);
					sink += d;
				}
			t_hot16[r] = (bench_now() - t0) / (hot_reps * hot_pairs) * 1e9;
			r4_distance_set_avx512(1);
		}
		{
			double		fast = bench_median(t_fast, RUNS),
						scalar = bench_median(t_scalar, RUNS),
						mem = bench_median(t_mem, RUNS),
						hot = bench_median(t_hot, RUNS),
						hot_scalar = bench_median(t_hot_scalar, RUNS),
						hot16 = bench_median(t_hot16, RUNS);

			printf("%6d %10zu %12.1f %12.1f %12.1f %9.1fx %9.0f%% %10.1f %10.1f %9.1fx %12.1f %9.2fx\n", dim, pairs,
				   fast, scalar, mem, scalar / fast, 100.0 * mem / fast, hot, hot_scalar, hot_scalar / hot,
				   hot16, hot16 / hot);
		}
	}
	printf("(median of %d runs; roofline = time to stream the pair's %s bytes at the measured read bandwidth;\n"
		   " 'of roofl.' = roofline time / kernel time, 100%% = memory-bound; hot = same pairs repeated from cache)\n", RUNS, "2 x 4 x dims");
	free(data);
	return sink == 12345.0;
}
