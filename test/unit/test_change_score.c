/*
 * test_change_score.c — the series kernels of change detection against
 * values worked out by hand (and a brute-force change point in double).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

/* brute force: the largest mean after - mean before with at least k after */
static double
change_step_reference(const double *d, size_t n, int k)
{
	double		best = -INFINITY;

	for (size_t s = 1; s < n; s++)
	{
		double		a = 0,
					b = 0;

		if (n - s < (size_t) k && s > 1)
			break;
		for (size_t i = 0; i < s; i++)
			b += d[i];
		for (size_t i = s; i < n; i++)
			a += d[i];
		if (a / (double) (n - s) - b / (double) s > best)
			best = a / (double) (n - s) - b / (double) s;
		if (n - s <= (size_t) k)
			break;
	}
	return best;
}

static void
test_change_step(void)
{
	const double step[] = {0, 0, 0, 1, 1, 1};
	/* a step at 10 of 0.5 and a stronger tail of 4 (the score leans to it) */
	double		tail[24];
	const double burst[] = {0, 0, 0, 0, 0, 0, 0, 1};
	const double falling[] = {1, 1, 0};
	double		noisy[40];
	unsigned	x = 777;

	CHECK_NEAR(r4_change_step(step, 6, 3), 1.0, 1e-15);
	CHECK_NEAR(r4_change_step(step, 6, 4), 3.0 / 4, 1e-15);	/* split 2: after 3/4, before 0 */
	for (int i = 0; i < 24; i++)
		tail[i] = i < 10 ? 0 : (i < 20 ? 0.5 : 1.0);
	CHECK_NEAR(r4_change_step(tail, 24, 2), 1.0 - 5.0 / 20, 1e-12);	/* split 20: 1 - 0.25 */
	/* a burst of one image scores only with k = 1 */
	CHECK_NEAR(r4_change_step(burst, 8, 1), 1.0, 1e-15);
	CHECK_NEAR(r4_change_step(burst, 8, 2), 0.5, 1e-15);
	CHECK_NEAR(r4_change_step(falling, 3, 1), -0.5, 1e-15);	/* split 1: 1/2 - 1 */
	/* n <= k: split 1 only */
	CHECK_NEAR(r4_change_step(step, 6, 6), 3.0 / 5, 1e-15);
	CHECK_NEAR(r4_change_step(step, 6, 366), 3.0 / 5, 1e-15);
	CHECK(isnan(r4_change_step(step, 1, 1)));
	CHECK(isnan(r4_change_step(step, 0, 1)));
	CHECK(isnan(r4_change_step(step, 6, 0)));
	for (int i = 0; i < 40; i++)
	{
		x = x * 1103515245u + 12345u;
		noisy[i] = (i >= 25 ? 0.6 : 0.1) + (double) (x >> 16) / 65536.0 * 0.3;
	}
	for (int k = 1; k <= 41; k += 4)
		CHECK_NEAR(r4_change_step(noisy, 40, k), change_step_reference(noisy, 40, k), 1e-12);
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
	const float *yr[12],
			   *pr[12];
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
		yr[i] = y + 2 * i;
		pr[i] = p + 2 * i;
	}
	CHECK_EQ_INT(r4_pair_composites(yr, pr, month, 12, 2, 0.001, scratch, &annual, &seasonal, &z), 0);
	CHECK_NEAR(annual, 1 - 1 / sqrt(2.0), 1e-12);
	CHECK_NEAR(seasonal, 0.5, 1e-12);
	CHECK_NEAR(z, 500, 1e-9);
	/* two pairs in one month: the month's means are compared */
	month[1] = 1;
	CHECK_EQ_INT(r4_pair_composites(yr, pr, month, 2, 2, 0.001, scratch, &annual, &seasonal, &z), 0);
	CHECK_NEAR(seasonal, 0, 1e-12);
	CHECK_EQ_INT(r4_pair_composites(yr, pr, month, 0, 2, 0.001, scratch, &annual, &seasonal, &z), -1);
}

/* The SQL pairing (ORDER BY |id - (d - 365)|, id LIMIT 1 within the window), brute force. */
static long
partner_reference(const long long *ids, size_t n, size_t i, int tol)
{
	long		best = -1;
	long long	target = ids[i] - 365;

	for (size_t j = 0; j < n; j++)
	{
		long long	gap = llabs(ids[j] - target);

		if (ids[j] < target - tol || ids[j] > target + tol || ids[j] >= ids[i])
			continue;
		if (best < 0 || gap < llabs(ids[best] - target) || (gap == llabs(ids[best] - target) && ids[j] < ids[best]))
			best = (long) j;
	}
	return best;
}

static void
test_pair_days(void)
{
	/* by hand: 5-day cadence, one year apart, a gap, a tie */
	const long long ids[] = {100, 105, 110, 463, 465, 470, 475, 477, 900};
	long		partner[9];

	CHECK_EQ_INT(r4_pair_days(ids, 9, 400, 800, 2, partner), 5);
	CHECK_EQ_INT(partner[0], -1);	/* before first */
	CHECK_EQ_INT(partner[3], 0);	/* 463 - 365 = 98: 100 is 2 away */
	CHECK_EQ_INT(partner[4], 0);	/* 100 exactly */
	CHECK_EQ_INT(partner[5], 1);
	CHECK_EQ_INT(partner[6], 2);
	CHECK_EQ_INT(partner[7], 2);	/* 477 - 365 = 112: 110 is 2 away */
	CHECK_EQ_INT(partner[8], -1);	/* after last */
	/* a tie: 107 and 111 are both 2 from 109; the earlier wins */
	{
		const long long t[] = {107, 111, 474};
		long		q[3];

		CHECK_EQ_INT(r4_pair_days(t, 3, 0, 1000, 2, q), 1);
		CHECK_EQ_INT(q[2], 0);
		CHECK_EQ_INT(r4_pair_days(t, 3, 0, 1000, 1, q), 0);
	}
	/* random sparse series against the brute force, tolerance 0 .. 182 */
	{
		long long	r[400];
		long		q[400];
		unsigned	seed = 7;

		for (int trial = 0; trial < 200; trial++)
		{
			size_t		n = 0;
			long long	id = 1000;
			int			tol = trial % 5 == 4 ? (int) (trial % 183) : trial % 6;
			size_t		expect = 0;

			while (n < 400)
			{
				seed = seed * 1103515245u + 12345u;
				id += 1 + (seed >> 16) % (trial % 3 == 0 ? 40 : 9);
				r[n++] = id;
			}
			CHECK(r4_pair_days(r, n, 1400, 2600, tol, q) <= n);
			for (size_t i = 0; i < n; i++)
			{
				long		want = r[i] >= 1400 && r[i] <= 2600 ? partner_reference(r, n, i, tol) : -1;

				CHECK_EQ_INT(q[i], want);
				expect += want >= 0;
			}
			CHECK_EQ_INT(r4_pair_days(r, n, 1400, 2600, tol, q), expect);
		}
	}
}

int
main(void)
{
	RUN(test_persistence);
	RUN(test_change_point);
	RUN(test_change_step);
	RUN(test_robust_z);
	RUN(test_nearest);
	RUN(test_pair_composites);
	RUN(test_pair_days);
	return unit_summary("change_score");
}
