/*
 * test_distance.c — the distance kernels against plain double-precision loops,
 * at every length around the 16-lane blocking, on unaligned inputs; every
 * test runs on the AVX-512 build (where the CPU has it) and on the 16-lane
 * one, and the two builds are compared within distance.h's bound.
 */
#include "rai4eo/core.h"
#include "rai4eo/distance.h"
#include "unit.h"

#include <stdlib.h>

static float *
random_vector(size_t n, unsigned *seed)
{
	float	   *v = malloc(sizeof(float) * (n + 1));

	for (size_t i = 0; i < n + 1; i++)
		v[i] = (float) rand_r(seed) / RAND_MAX - 0.4f;
	return v;
}

static void
test_matches_reference(void)
{
	unsigned	seed = 42;

	for (size_t n = 1; n <= 70; n++)
	{
		/* offset by one float so no load is 32-byte aligned */
		float	   *a0 = random_vector(n, &seed), *b0 = random_vector(n, &seed);
		float	   *a = a0 + 1, *b = b0 + 1;
		double		dot = 0, na = 0, nb = 0, l2 = 0, d, x, y;

		for (size_t i = 0; i < n; i++)
		{
			dot += (double) a[i] * b[i];
			na += (double) a[i] * a[i];
			nb += (double) b[i] * b[i];
			l2 += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
		}
		r4_dot_norms(a, b, n, &d, &x, &y);
		CHECK_NEAR(d, dot, 1e-5 * (1 + fabs(dot)));
		CHECK_NEAR(x, na, 1e-5 * na);
		CHECK_NEAR(y, nb, 1e-5 * nb);
		CHECK_NEAR(r4_dot(a, b, n), dot, 1e-5 * (1 + fabs(dot)));
		CHECK_NEAR(r4_l2_squared(a, b, n), l2, 1e-5 * (1 + l2));
		CHECK_NEAR(r4_norm_squared(a, n), na, 1e-5 * na);
		CHECK_NEAR(r4_cosine_similarity(a, b, n), dot / sqrt(na * nb), 1e-6);
		free(a0);
		free(b0);
	}
}

static void
test_cosine_edges(void)
{
	float		z[3] = {0, 0, 0};
	float		v[3] = {1, 2, 3};
	float		w[3] = {-2, -4, -6};

	CHECK(isnan(r4_cosine_similarity(z, v, 3)));
	CHECK(isnan(r4_cosine_similarity(v, z, 3)));
	CHECK_NEAR(r4_cosine_similarity(v, v, 3), 1.0, 1e-12);
	CHECK_NEAR(r4_cosine_similarity(v, w, 3), -1.0, 1e-12);
	/* never past the ends of [-1, 1], whatever the rounding */
	CHECK(r4_cosine_from_parts(1.0000001, 1.0, 1.0) == 1.0);
	CHECK(r4_cosine_from_parts(-1.0000001, 1.0, 1.0) == -1.0);
	CHECK(isnan(r4_cosine_from_parts(0.0, 0.0, 1.0)));
}

static void
test_error_record(void)
{
	R4Error		err;

	r4_error_clear(&err);
	CHECK_EQ_INT(err.status, R4_OK);
	CHECK_EQ_INT(r4_fail(&err, R4_ERR_RANGE, "band %d out of range", 7), R4_ERR_RANGE);
	CHECK_STR_CONTAINS(err.message, "band 7 out of range");
	CHECK_EQ_INT(r4_fail_detail(&err, "raster has %d bands", 4), R4_ERR_RANGE);
	CHECK_STR_CONTAINS(err.detail, "raster has 4 bands");
	CHECK(strcmp(r4_status_name(R4_ERR_NOMEM), "out of memory") == 0);
	{
		size_t		out;

		CHECK(r4_mul_size(SIZE_MAX / 2, 3, &out) != 0);
		CHECK(r4_mul_size(1000, 1000, &out) == 0 && out == 1000000);
		CHECK(r4_add_size(SIZE_MAX, 1, &out) != 0);
	}
}

/* Float lanes overflow past ~1.8e19 and underflow below ~1e-19: results stay exact. */
static void
test_overflow_and_underflow(void)
{
	static float a[40], b[40], t[40];
	double		d, na, nb;

	for (int n = 1; n <= 40; n++)
	{
		for (int i = 0; i < n; i++)
		{
			a[i] = 3e38f;
			b[i] = i % 2 ? -3e38f : 3e38f;
			t[i] = 1e-30f;
		}
		CHECK_NEAR(sqrt(r4_norm_squared(a, n)) / (3e38 * sqrt(n)), 1.0, 1e-7);
		CHECK_NEAR(r4_cosine_similarity(a, a, n), 1.0, 1e-12);
		CHECK_NEAR(r4_cosine_similarity(t, t, n), 1.0, 1e-12);
		CHECK_NEAR(sqrt(r4_norm_squared(t, n)) / (1e-30 * sqrt(n)), 1.0, 1e-7);
		CHECK_NEAR(r4_dot(a, b, n) / ((double) 3e38f * 3e38f), n % 2 ? 1.0 : 0.0, 1e-12);
		if (n == 1)
			CHECK(r4_l2_squared(a, b, n) == 0.0);
		else
			CHECK_NEAR(r4_l2_squared(a, b, n) / (4.0 * (double) 3e38f * 3e38f * (n / 2)), 1.0, 1e-12);
		r4_dot_norms(a, t, n, &d, &na, &nb);
		CHECK(isfinite(d) && isfinite(na) && nb > 0);
	}
	CHECK(isinf(r4_float_range(4e38)) && r4_float_range(4e38) > 0);
	CHECK(isinf(r4_float_range(-4e38)) && r4_float_range(-4e38) < 0);
	CHECK(r4_float_range(3e38) == 3e38);
}

/* The AVX-512 build against the 16-lane build: within 2 (n/16 + 1) 2^-24 sum of magnitudes. */
static void
test_builds_agree(void)
{
	unsigned	seed = 7;
	static const size_t big[] = {384, 768, 1000, 1536};

	if (!r4_distance_avx512())
		return;
	for (size_t k = 0; k < 100 + sizeof(big) / sizeof(big[0]); k++)
	{
		size_t		n = k < 100 ? k + 1 : big[k - 100];
		float	   *a0 = random_vector(n, &seed), *b0 = random_vector(n, &seed);
		float	   *a = a0 + 1, *b = b0 + 1;
		double		md = 0, ma = 0, mb = 0, ml = 0, tol;
		double		d[2], x[2], y[2], dt[2], l2[2];

		for (size_t i = 0; i < n; i++)
		{
			md += fabs((double) a[i] * b[i]);
			ma += (double) a[i] * a[i];
			mb += (double) b[i] * b[i];
			ml += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
		}
		for (int v = 0; v < 2; v++)
		{
			r4_distance_set_avx512(v);
			r4_dot_norms(a, b, n, &d[v], &x[v], &y[v]);
			dt[v] = r4_dot(a, b, n);
			l2[v] = r4_l2_squared(a, b, n);
		}
		r4_distance_set_avx512(1);
		tol = 2.0 * (n / 16.0 + 1) * ldexp(1.0, -24);
		CHECK_NEAR(d[1], d[0], tol * md);
		CHECK_NEAR(x[1], x[0], tol * ma);
		CHECK_NEAR(y[1], y[0], tol * mb);
		CHECK_NEAR(dt[1], dt[0], tol * md);
		CHECK_NEAR(l2[1], l2[0], tol * ml);
		/* Below 16 elements both builds sum in double alone: the same bits. */
		if (n < 16)
			CHECK(d[0] == d[1] && x[0] == x[1] && y[0] == y[1] && dt[0] == dt[1] && l2[0] == l2[1]);
		free(a0);
		free(b0);
	}
}

int
main(void)
{
	printf("AVX-512 build: %s\n", r4_distance_avx512() ? "yes" : "not on this CPU");
	for (int pass = 0; pass < 2; pass++)
	{
		/* Pass 0 on the default build (AVX-512 where present), pass 1 on the 16-lane one. */
		r4_distance_set_avx512(pass == 0);
		RUN(test_matches_reference);
		RUN(test_overflow_and_underflow);
		RUN(test_cosine_edges);
		RUN(test_error_record);
	}
	r4_distance_set_avx512(1);
	RUN(test_builds_agree);
	return unit_summary("distance");
}
