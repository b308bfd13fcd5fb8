/*
 * change_score.h — the series scores behind the change-detection SQL:
 * persistence with its onset, the least-squares change point and the step
 * score, a robust
 * z-score against a patch's own baseline, and the nearest cluster centre.
 * Plain C over arrays; the SQL glue is src/pg/change_score.c.
 */
#ifndef RAI4EO_CHANGE_SCORE_H
#define RAI4EO_CHANGE_SCORE_H

#include <stddef.h>

/*
 * CCDC-like persistence of a day series d[0..n-1] (in date order): the onset
 * is the first i such that d[i..i+k-1] are all greater than t (k consecutive
 * exceedances); the score is the number of j >= onset with d[j] > t, divided
 * by n.  Returns the onset (0-based) and sets *score, or returns -1 with
 * *score = 0 when no run of k exists (or n = 0, k < 1).
 */
long		r4_change_persistence(const double *d, size_t n, double t, int k, double *score);

/*
 * Single change point in the mean (least squares): the split s in 1..n-1
 * maximising s (n - s) / n * (mean(d[s..]) - mean(d[..s-1]))^2 among the
 * splits where the mean rises; ties: the earliest.  Returns s (the first
 * day after the change, 0-based), 0 when n >= 1 and no split raises the
 * mean (the series is high from its start or flat), -1 when n = 0.
 */
long		r4_change_point(const double *d, size_t n);

/*
 * The step score of a day series: the largest mean(d[s..n-1]) - mean(d[0..s-1])
 * over the splits s that leave at least k values after them (s from 1 to
 * n - k; only s = 1 when n <= k), so a change must persist k images to score
 * and a late burst of fewer than k values cannot.  Unlike r4_change_point it
 * is unweighted (the score is the size of the shift, not its evidence) and
 * may be negative (a falling series).  NaN when n < 2 or k < 1.
 */
double		r4_change_step(const double *d, size_t n, int k);

/* Median of x[0..n-1] (n >= 1); sorts x in place. */
double		r4_median_inplace(double *x, size_t n);

/*
 * Robust z of a test sample against a baseline: (median(test) -
 * median(base)) / max(1.4826 MAD(base), floor).  Sorts both arrays in
 * place.  Returns 0 on success, -1 when either is empty.
 */
int			r4_robust_z(double *test, size_t nt, double *base, size_t nb, double floor, double *z);

/*
 * The centre most similar in cosine to x: 0-based row of centres (k rows of
 * dim floats, row-major), ties the lowest; -1 when x or every centre is a zero
 * vector.  inv_norms[c] = 1 / |centre c| (0 for a zero centre), from
 * r4_centre_inv_norms; dots: k floats of scratch.  One sgemv (k dot products
 * in one pass over x) and one norm per call.
 */
long		r4_nearest_centre(const float *x, const float *centres, const double *inv_norms,
							  size_t k, size_t dim, float *dots);
void		r4_centre_inv_norms(const float *centres, size_t k, size_t dim, double *inv_norms);

/*
 * Composite scores of n pairs (the day's embedding y[i] and its partner one
 * year earlier p[i], dim floats each, read where they lie; month[i] in 1..12 the day's
 * calendar month):
 *   annual    1 - cos(sum y, sum p)  (cosine ignores scale: sums are means)
 *   seasonal  the mean over the months with pairs of 1 - cos(sum y, sum p)
 *             within the month
 *   z         robust z (r4_robust_z, scale floor `floor`) of the distances
 *             1 - cos(y[i], ref) against 1 - cos(p[i], ref), ref = sum p
 * NaN where a sum is a zero vector (and pairs with a NaN distance are left
 * out of z).  scratch: 2 (12 + 1) dim + 2 n + dim doubles.  Returns -1 when n = 0.
 */
int			r4_pair_composites(const float *const *y, const float *const *p, const int *month, size_t n, size_t dim,
							   double floor, double *scratch, double *annual, double *seasonal, double *z);

/*
 * The pairing of the change functions over one patch's images of one sensor:
 * ids[0..n-1] strictly ascending (image_ids of one patch and sensor, so
 * consecutive days are consecutive ids).  For each i with first <= ids[i] <=
 * last, partner[i] is the index of the id nearest to ids[i] - 365 within
 * +-tolerance and below ids[i] (ties: the earlier), else -1; partner[i] = -1
 * outside [first, last] too.  Returns how many days have a partner.  One pass:
 * the window only moves forward.
 */
size_t		r4_pair_days(const long long *ids, size_t n, long long first, long long last, int tolerance,
						 long *partner);

#endif							/* RAI4EO_CHANGE_SCORE_H */
