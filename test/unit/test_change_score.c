/*
 * test_change_score.c — the series kernels of change detection against
 * values worked out by hand (and a brute-force change point in double).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rai4eo/change_score.h"
#include "unit.h"

static void
test_persistence(void)
{
	const double d[] = {0, 1, 0, 1, 1, 1, 0, 1};
	double		s;

	CHECK_EQ_INT(r4_change_persistence(d, 8, 0.5, 3, &s), 3);
	CHECK_NEAR(s, 4.0 / 8, 1e-15);
	CHECK_EQ_INT(r4_change_persistence(d, 8, 0.5, 1, &s), 1);
	CHECK_NEAR(s, 5.0 / 8, 1e-15);
	CHECK_EQ_INT(r4_change_persistence(d, 8, 0.5, 4, &s), -1);
	CHECK_NEAR(s, 0, 0);
	/* exceeding means strictly greater */
	CHECK_EQ_INT(r4_change_persistence(d, 8, 1.0, 1, &s), -1);
	CHECK_EQ_INT(r4_change_persistence(d, 0, 0.5, 1, &s), -1);
	CHECK_EQ_INT(r4_change_persistence(d, 8, 0.5, 0, &s), -1);
}

/* brute force: the split maximising s (n - s) / n (mean after - mean before)^2 where it rises */
static long
change_point_reference(const double *d, size_t n)
{
	long		best = 0;
	double		gain = 0;

	for (size_t s = 1; s < n; s++)
	{
		double		a = 0,
					b = 0;

		for (size_t i = 0; i < s; i++)
			b += d[i];
		for (size_t i = s; i < n; i++)
			a += d[i];
		b /= s;
		a /= n - s;
		if (a > b && (double) s * (n - s) / n * (a - b) * (a - b) > gain)
		{
			gain = (double) s * (n - s) / n * (a - b) * (a - b);
			best = (long) s;
		}
	}
	return best;
}

static void
test_change_point(void)
{
	const double step[] = {0, 0, 0, 1, 1, 1};
	const double falling[] = {1, 1, 0};
	double		noisy[40];
	unsigned	x = 12345;

	CHECK_EQ_INT(r4_change_point(step, 6), 3);
	CHECK_EQ_INT(r4_change_point(falling, 3), 0);
	CHECK_EQ_INT(r4_change_point(step, 1), 0);
	CHECK_EQ_INT(r4_change_point(step, 0), -1);
	for (int i = 0; i < 40; i++)
	{
		x = x * 1103515245u + 12345u;
		noisy[i] = (i >= 25 ? 0.6 : 0.1) + (double) (x >> 16) / 65536.0 * 0.3;
	}
	CHECK_EQ_INT(r4_change_point(noisy, 40), change_point_reference(noisy, 40));
	CHECK_EQ_INT(r4_change_point(noisy, 40), 25);
}

static void
test_robust_z(void)
{
	double		t[] = {5, 3, 4},
				b[] = {4, 1, 3, 2},
				z;
	double		t2[] = {0.5},
				b2[] = {0.1, 0.1};

	CHECK_EQ_INT(r4_robust_z(t, 3, b, 4, 0.001, &z), 0);
	CHECK_NEAR(z, 1.5 / 1.4826, 1e-12);
	CHECK_EQ_INT(r4_robust_z(t2, 1, b2, 2, 0.001, &z), 0);
	CHECK_NEAR(z, 400, 1e-9);
	CHECK_EQ_INT(r4_robust_z(t2, 0, b2, 2, 0.001, &z), -1);
}

static void
test_nearest(void)
{
	/* rows: [0,1], [1,0.1], [2,0.2] (the last two share a direction) */
	const float centres[] = {0, 1, 1, 0.1f, 2, 0.2f};
	const float zero[] = {0, 0};
	const float with_zero[] = {0, 0, 0, 1};
	double		inv[3];
	float		dots[3];

	r4_centre_inv_norms(centres, 3, 2, inv);
	CHECK_NEAR(inv[0], 1, 1e-15);
	CHECK_NEAR(inv[2], 1 / sqrt(4 + 0.2f * 0.2f), 1e-7);
	CHECK_EQ_INT(r4_nearest_centre((const float[]) {1, 0}, centres, inv, 3, 2, dots), 1);
	CHECK_EQ_INT(r4_nearest_centre((const float[]) {0.1f, 1}, centres, inv, 3, 2, dots), 0);
	CHECK_EQ_INT(r4_nearest_centre(zero, centres, inv, 3, 2, dots), -1);
	CHECK_EQ_INT(r4_nearest_centre(zero, centres, inv, 0, 2, dots), -1);
	r4_centre_inv_norms(zero, 1, 2, inv);
	CHECK_EQ_INT(r4_nearest_centre((const float[]) {1, 0}, zero, inv, 1, 2, dots), -1);
	/* a zero centre never wins, even against a centre at cosine -1 */
	r4_centre_inv_norms(with_zero, 2, 2, inv);
	CHECK_EQ_INT(r4_nearest_centre((const float[]) {0, -1}, with_zero, inv, 2, 2, dots), 1);
}

static void
test_pair_composites(void)
{
	/* a step: months 1-6 unchanged [1,0], 7-12 [0,1], partners all [1,0] */
	float		y[24],
				p[24];
	int			month[12];
	double		scratch[27 * 2 + 24];
	double		annual,
				seasonal,
				z;

	for (int i = 0; i < 12; i++)
	{
		y[2 * i] = i < 6 ? 1 : 0;
		y[2 * i + 1] = i < 6 ? 0 : 1;
		p[2 * i] = 1;
		p[2 * i + 1] = 0;
		month[i] = i + 1;
	}
	CHECK_EQ_INT(r4_pair_composites(y, p, month, 12, 2, 0.001, scratch, &annual, &seasonal, &z), 0);
	CHECK_NEAR(annual, 1 - 1 / sqrt(2.0), 1e-12);
	CHECK_NEAR(seasonal, 0.5, 1e-12);
	CHECK_NEAR(z, 500, 1e-9);
	/* two pairs in one month: the month's means are compared */
	month[1] = 1;
	CHECK_EQ_INT(r4_pair_composites(y, p, month, 2, 2, 0.001, scratch, &annual, &seasonal, &z), 0);
	CHECK_NEAR(seasonal, 0, 1e-12);
	CHECK_EQ_INT(r4_pair_composites(y, p, month, 0, 2, 0.001, scratch, &annual, &seasonal, &z), -1);
}

int
main(void)
{
	RUN(test_persistence);
	RUN(test_change_point);
	RUN(test_robust_z);
	RUN(test_nearest);
	RUN(test_pair_composites);
	return unit_summary("change_score");
}
