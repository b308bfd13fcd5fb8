/*
 * change_score.c — series scores for change detection (see change_score.h).
 */
#include "rai4eo/change_score.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "rai4eo/distance.h"

long
r4_change_persistence(const double *d, size_t n, double t, int k, double *score)
{
	size_t		run = 0;
	long		onset = -1;

	*score = 0;
	if (k < 1)
		return -1;
	for (size_t i = 0; i < n; i++)
	{
		run = d[i] > t ? run + 1 : 0;
		if (run == (size_t) k)
		{
			onset = (long) (i + 1 - (size_t) k);
			break;
		}
	}
	if (onset < 0)
		return -1;
	{
		size_t		m = 0;

		for (size_t j = (size_t) onset; j < n; j++)
			m += d[j] > t;
		*score = (double) m / (double) n;
	}
	return onset;
}

long
r4_change_point(const double *d, size_t n)
{
	double		total = 0,
				before = 0,
				best = 0;
	long		split = 0;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		total += d[i];
	for (size_t s = 1; s < n; s++)
	{
		double		mb,
					ma,
					gain;

		before += d[s - 1];
		mb = before / (double) s;
		ma = (total - before) / (double) (n - s);
		if (!(ma > mb))
			continue;
		gain = (double) s * (double) (n - s) / (double) n * (ma - mb) * (ma - mb);
		if (gain > best)
		{
			best = gain;
			split = (long) s;
		}
	}
	return split;
}

double
r4_change_step(const double *d, size_t n, int k)
{
	double		total = 0,
				before = 0,
				best = -INFINITY;
	size_t		last;

	if (n < 2 || k < 1)
		return NAN;
	for (size_t i = 0; i < n; i++)
		total += d[i];
	/* splits 1 .. n - k; a series too short for k values after keeps split 1 */
	last = n > (size_t) k ? n - (size_t) k : 1;
	for (size_t s = 1; s <= last; s++)
	{
		double		step;

		before += d[s - 1];
		step = (total - before) / (double) (n - s) - before / (double) s;
		if (step > best)
			best = step;
	}
	return best;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

double
r4_median_inplace(double *x, size_t n)
{
	qsort(x, n, sizeof(double), cmp_double);
	return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

int
r4_robust_z(double *test, size_t nt, double *base, size_t nb, double floor, double *z)
{
	double		mt,
				mb,
				mad;

	if (nt == 0 || nb == 0)
		return -1;
	mt = r4_median_inplace(test, nt);
	mb = r4_median_inplace(base, nb);
	/* base is no longer needed as is: reuse it for the absolute deviations */
	for (size_t i = 0; i < nb; i++)
		base[i] = fabs(base[i] - mb);
	mad = 1.4826 * r4_median_inplace(base, nb);
	*z = (mt - mb) / (mad > floor ? mad : floor);
	return 0;
}

void
r4_centre_inv_norms(const float *centres, size_t k, size_t dim, double *inv_norms)
{
	for (size_t c = 0; c < k; c++)
	{
		double		n = r4_norm_squared(centres + c * dim, dim);

		inv_norms[c] = n > 0 ? 1 / sqrt(n) : 0;
	}
}

long
r4_nearest_centre(const float *x, const float *centres, const double *inv_norms, size_t k, size_t dim,
				  float *dots)
{
	long		best = -1;
	double		best_sim = -INFINITY;

	/* |x| is common to every centre: only its being zero matters */
	if (k == 0 || !(r4_norm_squared(x, dim) > 0))
		return -1;
	cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint) k, (blasint) dim, 1.0f, centres, (blasint) dim,
				x, 1, 0.0f, dots, 1);
	for (size_t c = 0; c < k; c++)
	{
		double		sim;

		if (inv_norms[c] == 0)
			continue;			/* a zero centre has no direction */
		sim = dots[c] * inv_norms[c];
		if (sim > best_sim)
		{
			best_sim = sim;
			best = (long) c;
		}
	}
	return best;
}

/* 1 - cosine of two double vectors; NaN when either is zero */
static double
cos_change_d(const double *a, const double *b, size_t dim)
{
	double		dot = 0,
				na = 0,
				nb = 0;

	for (size_t i = 0; i < dim; i++)
	{
		dot += a[i] * b[i];
		na += a[i] * a[i];
		nb += b[i] * b[i];
	}
	if (na == 0 || nb == 0)
		return NAN;
	{
		double		c = dot / sqrt(na * nb);

		c = c > 1 ? 1 : (c < -1 ? -1 : c);
		return 1 - c;
	}
}

/*
 * acc += x in double: the month sums, n x dim per patch, the composites' main
 * loop.  restrict (and the Makefile's cost model for this file) lets the
 * compiler vectorise it; the sums are the same as the plain loop's.
 */
static void
add_floats(double *restrict acc, const float *restrict x, size_t n)
{
	for (size_t j = 0; j < n; j++)
		acc[j] += x[j];
}

int
r4_pair_composites(const float *const *y, const float *const *p, const int *month, size_t n, size_t dim,
				   double floor, double *scratch, double *annual, double *seasonal, double *z)
{
	double	   *my = scratch;			/* 13 sums of y: months 1..12, then the year */
	double	   *mp = scratch + 13 * dim;	/* the same for p */
	double	   *test = scratch + 26 * dim;
	double	   *base = test + n;
	float	   *ref = (float *) (base + n);	/* the year's partner sum, as floats */
	double		ref_norm;
	size_t		nt = 0,
				nb = 0,
				months = 0;
	double		sum = 0;
	int			seen[13] = {0};

	if (n == 0)
		return -1;
	for (size_t i = 0; i < 26 * dim; i++)
		scratch[i] = 0;
	for (size_t i = 0; i < n; i++)
	{
		int			m = month[i] - 1;
		const float *yi = y[i],
				   *pi = p[i];

		if (m < 0 || m > 11)
			continue;			/* not a calendar month: left out */
		seen[m] = 1;
		add_floats(my + m * dim, yi, dim);
		add_floats(mp + m * dim, pi, dim);
	}
	for (int m = 0; m < 12; m++)
	{
		double		c;

		if (!seen[m])
			continue;
		for (size_t j = 0; j < dim; j++)
		{
			my[12 * dim + j] += my[m * dim + j];
			mp[12 * dim + j] += mp[m * dim + j];
		}
		c = cos_change_d(my + m * dim, mp + m * dim, dim);
		if (!isnan(c))
		{
			sum += c;
			months++;
		}
	}
	*annual = cos_change_d(my + 12 * dim, mp + 12 * dim, dim);
	*seasonal = months ? sum / (double) months : NAN;
	/* the distances to the partners' mean with the vector kernels (float, fixed order) */
	for (size_t j = 0; j < dim; j++)
		ref[j] = (float) mp[12 * dim + j];
	for (size_t i = 0; i < n; i++)
	{
		double		dot,
					na,
					dt,
					db;

		r4_dot_norms(y[i], ref, dim, &dot, &na, &ref_norm);
		dt = 1 - r4_cosine_from_parts(dot, na, ref_norm);
		r4_dot_norms(p[i], ref, dim, &dot, &na, &ref_norm);
		db = 1 - r4_cosine_from_parts(dot, na, ref_norm);

		if (!isnan(dt))
			test[nt++] = dt;
		if (!isnan(db))
			base[nb++] = db;
	}
	if (r4_robust_z(test, nt, base, nb, floor, z) < 0)
		*z = NAN;
	return 0;
}

size_t
r4_pair_days(const long long *ids, size_t n, long long first, long long last, int tolerance,
			 long *partner)
{
	size_t		lo = 0,
				paired = 0;

	for (size_t i = 0; i < n; i++)
	{
		long long	target = ids[i] - 365;
		long long	hi = target + tolerance < ids[i] - 1 ? target + tolerance : ids[i] - 1;
		long		best = -1;
		long long	best_gap = 0;

		partner[i] = -1;
		if (ids[i] < first || ids[i] > last)
			continue;
		/* targets ascend with i, so the window's first candidate does too */
		while (lo < n && ids[lo] < target - tolerance)
			lo++;
		for (size_t j = lo; j < n && ids[j] <= hi; j++)
		{
			long long	gap = ids[j] > target ? ids[j] - target : target - ids[j];

			/* strictly nearer only: of two at the same gap the earlier stays */
			if (best < 0 || gap < best_gap)
			{
				best = (long) j;
				best_gap = gap;
			}
		}
		partner[i] = best;
		paired += best >= 0;
	}
	return paired;
}
