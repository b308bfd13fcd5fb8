/*
 * change_score.c — SQL glue for the series scores of change detection
 * (src/core/change_score.c): persistence and onset, change point, step, robust z,
 * nearest cluster state.  Arrays are read here; the loops live in the core.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "embedding.h"
#include "rai4eo/change_score.h"
#include "rai4eo/distance.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"

/* The elements of a float8[] as a palloc'd array; NULL elements are refused. */
static double *
float8_elements(ArrayType *a, size_t *n)
{
	Datum	   *datums;
	bool	   *nulls;
	int			count;
	double	   *x;

	deconstruct_array(a, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &datums, &nulls, &count);
	x = palloc(sizeof(double) * (count > 0 ? count : 1));
	for (int i = 0; i < count; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a day series must not contain NULL elements")));
		x[i] = DatumGetFloat8(datums[i]);
	}
	*n = (size_t) count;
	return x;
}

static int
run_length(int32 k)
{
	if (k < 1 || k > 366)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("run length %d is out of range", k),
				 errdetail("A change is confirmed after k consecutive exceedances, k from 1 to 366.")));
	return k;
}

PG_FUNCTION_INFO_V1(rai4eo_change_persistence);
Datum
rai4eo_change_persistence(PG_FUNCTION_ARGS)
{
	size_t		n;
	double	   *d = float8_elements(PG_GETARG_ARRAYTYPE_P(0), &n);
	double		score;

	if (n == 0)
		PG_RETURN_NULL();
	(void) r4_change_persistence(d, n, PG_GETARG_FLOAT8(1), run_length(PG_GETARG_INT32(2)), &score);
	PG_RETURN_FLOAT8(score);
}

PG_FUNCTION_INFO_V1(rai4eo_change_onset);
Datum
rai4eo_change_onset(PG_FUNCTION_ARGS)
{
	size_t		n;
	double	   *d = float8_elements(PG_GETARG_ARRAYTYPE_P(0), &n);
	double		score;
	long		onset = r4_change_persistence(d, n, PG_GETARG_FLOAT8(1), run_length(PG_GETARG_INT32(2)), &score);

	if (onset < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) onset + 1);
}

PG_FUNCTION_INFO_V1(rai4eo_change_point);
Datum
rai4eo_change_point(PG_FUNCTION_ARGS)
{
	size_t		n;
	double	   *d = float8_elements(PG_GETARG_ARRAYTYPE_P(0), &n);
	long		s = r4_change_point(d, n);

	if (s < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) s + 1);
}

PG_FUNCTION_INFO_V1(rai4eo_change_step);
Datum
rai4eo_change_step(PG_FUNCTION_ARGS)
{
	size_t		n;
	double	   *d = float8_elements(PG_GETARG_ARRAYTYPE_P(0), &n);
	int32		k = PG_GETARG_INT32(1);

	if (k < 1 || k > 366)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("days after the step %d is out of range", k),
				 errdetail("A step counts when at least k images follow it, k from 1 to 366.")));
	if (n < 2)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(r4_change_step(d, n, k));
}

PG_FUNCTION_INFO_V1(rai4eo_robust_z);
Datum
rai4eo_robust_z(PG_FUNCTION_ARGS)
{
	size_t		nt,
				nb;
	double	   *t = float8_elements(PG_GETARG_ARRAYTYPE_P(0), &nt);
	double	   *b = float8_elements(PG_GETARG_ARRAYTYPE_P(1), &nb);
	double		floor = PG_GETARG_FLOAT8(2);
	double		z;

	if (!(floor > 0) || isinf(floor))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the scale floor must be positive and finite")));
	if (r4_robust_z(t, nt, b, nb, floor, &z) < 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(z);
}

/*
 * The centres of nearest_state, deconstructed once per call site: a query
 * passes the same array for every row, so it is kept in fn_extra.  When the
 * argument is a Const or an external Param (the change functions pass their
 * parameter) it cannot change while the FmgrInfo lives; otherwise a copy of
 * the argument's bytes as they came (compressed or a TOAST pointer when the
 * array is stored: comparing those is cheaper than detoasting each call and as
 * exact) is compared on each call.
 */
typedef struct CentreCache
{
	bool		stable;			/* the argument is a Const or an external Param */
	Size		keysize;
	char	   *key;
	int			k;
	int			dim;
	float	   *centres;		/* k x dim, row-major */
	double	   *inv_norms;
	float	   *dots;			/* k floats of scratch */
} CentreCache;

static CentreCache *
centre_cache(FunctionCallInfo fcinfo, int argno)
{
	CentreCache *c = (CentreCache *) fcinfo->flinfo->fn_extra;
	struct varlena *raw = (struct varlena *) DatumGetPointer(PG_GETARG_DATUM(argno));
	ArrayType  *a = NULL;
	char	   *keybytes;
	Size		keysize;
	MemoryContext old;
	Oid			elem;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *datums;
	bool	   *nulls;
	ArrayType  *copy;

	/* A Const or external Param keeps its value while this FmgrInfo lives */
	if (c != NULL && c->stable)
		return c;
	if (VARATT_IS_EXTERNAL_EXPANDED(raw))
	{
		/* an in-memory expanded array: its flat form is the key */
		a = DatumGetArrayTypeP(PG_GETARG_DATUM(argno));
		keybytes = (char *) a;
		keysize = VARSIZE(a);
	}
	else
	{
		keybytes = (char *) raw;
		keysize = VARSIZE_ANY(raw);
	}
	if (c != NULL && c->keysize == keysize && memcmp(c->key, keybytes, keysize) == 0)
		return c;
	if (a == NULL)
		a = DatumGetArrayTypeP(PG_GETARG_DATUM(argno));
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	if (c == NULL)
		c = palloc0(sizeof(CentreCache));
	c->keysize = 0;
	c->key = palloc(keysize);
	memcpy(c->key, keybytes, keysize);
	copy = (ArrayType *) palloc(VARSIZE(a));
	memcpy(copy, a, VARSIZE(a));
	elem = ARR_ELEMTYPE(copy);
	get_typlenbyvalalign(elem, &typlen, &typbyval, &typalign);
	deconstruct_array(copy, elem, typlen, typbyval, typalign, &datums, &nulls, &c->k);
	c->centres = NULL;
	c->dim = -1;
	for (int i = 0; i < c->k; i++)
	{
		Embedding  *e;

		if (nulls[i])
		{
			MemoryContextSwitchTo(old);
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("cluster centres must not be NULL")));
		}
		e = DatumGetEmbedding(datums[i]);	/* a short-header element is copied into fn_mcxt */
		if (c->dim >= 0 && e->dim != c->dim)
		{
			MemoryContextSwitchTo(old);
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("cluster centres have different dimensions %d and %d", c->dim, e->dim)));
		}
		if (c->centres == NULL)
			c->centres = palloc(sizeof(float) * (Size) c->k * e->dim);
		c->dim = e->dim;
		memcpy(c->centres + (Size) i * c->dim, e->x, sizeof(float) * c->dim);
	}
	c->inv_norms = palloc(sizeof(double) * (c->k > 0 ? c->k : 1));
	c->dots = palloc(sizeof(float) * (c->k > 0 ? c->k : 1));
	if (c->k > 0)
		r4_centre_inv_norms(c->centres, (size_t) c->k, (size_t) c->dim, c->inv_norms);
	MemoryContextSwitchTo(old);
	c->stable = get_fn_expr_arg_stable(fcinfo->flinfo, argno);
	c->keysize = keysize;		/* valid only once complete */
	fcinfo->flinfo->fn_extra = c;
	return c;
}

PG_FUNCTION_INFO_V1(rai4eo_nearest_state);
Datum
rai4eo_nearest_state(PG_FUNCTION_ARGS)
{
	Embedding  *x = PG_GETARG_EMBEDDING_P(0);
	CentreCache *c = centre_cache(fcinfo, 1);
	long		best;

	if (c->k == 0)
		PG_RETURN_NULL();
	if (c->dim != x->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different embedding dimensions %d and %d", x->dim, c->dim)));
	best = r4_nearest_centre(x->x, c->centres, c->inv_norms, (size_t) c->k, (size_t) x->dim, c->dots);
	if (best < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) best + 1);
}

/*
 * 1 when the states of a day's embedding and of its partner differ, 0 when
 * they are the same, NULL when either is a zero vector: one call per pair
 * (one cache check) for the cluster score.
 */
PG_FUNCTION_INFO_V1(rai4eo_state_changed);
Datum
rai4eo_state_changed(PG_FUNCTION_ARGS)
{
	Embedding  *x = PG_GETARG_EMBEDDING_P(0);
	Embedding  *y = PG_GETARG_EMBEDDING_P(1);
	CentreCache *c;
	long		a,
				b;

	c = centre_cache(fcinfo, 2);
	if (c->k == 0)
		PG_RETURN_NULL();
	if (c->dim != x->dim || c->dim != y->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different embedding dimensions %d and %d", x->dim != c->dim ? x->dim : y->dim, c->dim)));
	a = r4_nearest_centre(x->x, c->centres, c->inv_norms, (size_t) c->k, (size_t) c->dim, c->dots);
	b = r4_nearest_centre(y->x, c->centres, c->inv_norms, (size_t) c->k, (size_t) c->dim, c->dots);
	if (a < 0 || b < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(a != b);
}

/*
 * pair_composites(date, embedding, embedding) aggregate: keeps the pairs of
 * one patch (both embeddings and the day's month) and computes the annual,
 * seasonal and z composites of r4_pair_composites at the end, in one pass
 * over the pairs.
 */
typedef struct PairState
{
	int			dim;
	size_t		n;
	size_t		cap;
	float	   *y;
	float	   *p;
	int		   *month;
} PairState;

PG_FUNCTION_INFO_V1(rai4eo_pair_accum);
Datum
rai4eo_pair_accum(PG_FUNCTION_ARGS)
{
	MemoryContext aggctx;
	PairState  *st = PG_ARGISNULL(0) ? NULL : (PairState *) PG_GETARG_POINTER(0);
	Embedding  *y,
			   *p;
	int			yy,
				mm,
				dd;

	if (!AggCheckCallContext(fcinfo, &aggctx))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("rai4eo.pair_composites_accum called outside an aggregate")));
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
	{
		if (st == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(st);
	}
	y = PG_GETARG_EMBEDDING_P(2);
	p = PG_GETARG_EMBEDDING_P(3);
	if (y->dim != p->dim || (st != NULL && st->dim != y->dim))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different embedding dimensions %d and %d", y->dim, st != NULL && st->dim != y->dim ? st->dim : p->dim)));
	if (st == NULL)
	{
		st = MemoryContextAllocZero(aggctx, sizeof(PairState));
		st->dim = y->dim;
		st->cap = 128;
		st->y = MemoryContextAlloc(aggctx, sizeof(float) * st->cap * st->dim);
		st->p = MemoryContextAlloc(aggctx, sizeof(float) * st->cap * st->dim);
		st->month = MemoryContextAlloc(aggctx, sizeof(int) * st->cap);
	}
	else if (st->n == st->cap)
	{
		if (st->cap >= (size_t) 1 << 20)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("more than %zu pairs in one composite", st->cap)));
		st->cap *= 2;
		st->y = repalloc(st->y, sizeof(float) * st->cap * st->dim);
		st->p = repalloc(st->p, sizeof(float) * st->cap * st->dim);
		st->month = repalloc(st->month, sizeof(int) * st->cap);
	}
	j2date(PG_GETARG_DATEADT(1) + POSTGRES_EPOCH_JDATE, &yy, &mm, &dd);
	memcpy(st->y + st->n * st->dim, y->x, sizeof(float) * st->dim);
	memcpy(st->p + st->n * st->dim, p->x, sizeof(float) * st->dim);
	st->month[st->n] = mm;
	st->n++;
	PG_RETURN_POINTER(st);
}

PG_FUNCTION_INFO_V1(rai4eo_pair_final);
Datum
rai4eo_pair_final(PG_FUNCTION_ARGS)
{
	PairState  *st = PG_ARGISNULL(0) ? NULL : (PairState *) PG_GETARG_POINTER(0);
	double		v[3];
	Datum		d[3];
	bool		nulls[3];
	int			dims[1] = {3};
	int			lbs[1] = {1};
	double	   *scratch;
	const float **yrow,
			  **prow;

	if (st == NULL || st->n == 0)
		PG_RETURN_NULL();
	scratch = palloc(sizeof(double) * (27 * (size_t) st->dim + 2 * st->n));
	yrow = palloc(sizeof(float *) * st->n);
	prow = palloc(sizeof(float *) * st->n);
	for (size_t i = 0; i < st->n; i++)
	{
		yrow[i] = st->y + i * st->dim;
		prow[i] = st->p + i * st->dim;
	}
	(void) r4_pair_composites(yrow, prow, st->month, st->n, (size_t) st->dim, 0.001, scratch,
							  &v[0], &v[1], &v[2]);
	for (int i = 0; i < 3; i++)
	{
		nulls[i] = isnan(v[i]);
		d[i] = Float8GetDatum(nulls[i] ? 0 : v[i]);
	}
	PG_RETURN_ARRAYTYPE_P(construct_md_array(d, nulls, 1, dims, lbs, FLOAT8OID, sizeof(float8),
											 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * day_series(image_id, emb, first_id, last_id, tolerance, t, centres,
 * composites) aggregate: one patch's embeddings of one sensor, from a year
 * and tolerance days before first_id up to last_id, in any order; at the end
 * the days from first_id to last_id are paired with their partner one year
 * earlier (r4_pair_days: rai4eo.daily_pairs' rule) and reduced to the row
 * rai4eo.patch_series_of returns.  One range scan of a patch's embeddings
 * replaces a partner lookup per day.  The arguments after emb are the same on
 * every row (they are the caller's parameters) and are read from the first.
 */
typedef struct SeriesState
{
	size_t		n;
	size_t		cap;
	int64	   *ids;
	Embedding **emb;			/* copies in the aggregate's context */
	int64		first;
	int64		last;
	int32		tolerance;
	bool		has_t;
	double		t;
	bool		composites;
	CentreCache *centres;		/* NULL: no cluster series */
} SeriesState;

/* Rows one patch's day series may hold: 65536 days of a sensor, and then some. */
#define SERIES_MAX_ROWS ((size_t) 1 << 20)

PG_FUNCTION_INFO_V1(rai4eo_series_accum);
Datum
rai4eo_series_accum(PG_FUNCTION_ARGS)
{
	MemoryContext aggctx;
	SeriesState *st = PG_ARGISNULL(0) ? NULL : (SeriesState *) PG_GETARG_POINTER(0);
	Embedding  *e;

	if (!AggCheckCallContext(fcinfo, &aggctx))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("rai4eo.day_series_accum called outside an aggregate")));
	if (st == NULL)
	{
		if (PG_ARGISNULL(3) || PG_ARGISNULL(4) || PG_ARGISNULL(5))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("rai4eo.day_series needs first_id, last_id and tolerance")));
		st = MemoryContextAllocZero(aggctx, sizeof(SeriesState));
		st->first = PG_GETARG_INT64(3);
		st->last = PG_GETARG_INT64(4);
		st->tolerance = PG_GETARG_INT32(5);
		st->has_t = !PG_ARGISNULL(6);
		st->t = st->has_t ? PG_GETARG_FLOAT8(6) : 0;
		st->centres = PG_ARGISNULL(7) ? NULL : centre_cache(fcinfo, 7);
		st->composites = !PG_ARGISNULL(8) && PG_GETARG_BOOL(8);
		st->cap = 256;
		st->ids = MemoryContextAlloc(aggctx, sizeof(int64) * st->cap);
		st->emb = MemoryContextAlloc(aggctx, sizeof(Embedding *) * st->cap);
	}
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_POINTER(st);
	if (st->n == st->cap)
	{
		if (st->cap >= SERIES_MAX_ROWS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("more than %zu embeddings in one day series", SERIES_MAX_ROWS)));
		st->cap *= 2;
		st->ids = repalloc(st->ids, sizeof(int64) * st->cap);
		st->emb = repalloc(st->emb, sizeof(Embedding *) * st->cap);
	}
	/* checked and detoasted in the row's context, kept in the group's */
	e = PG_GETARG_EMBEDDING_P(2);
	e = memcpy(MemoryContextAlloc(aggctx, VARSIZE(e)), e, VARSIZE(e));
	st->ids[st->n] = PG_GETARG_INT64(1);
	st->emb[st->n] = e;
	st->n++;
	PG_RETURN_POINTER(st);
}

static int
cmp_row_id(const void *a, const void *b, void *arg)
{
	const int64 *ids = (const int64 *) arg;
	int64		x = ids[*(const size_t *) a],
				y = ids[*(const size_t *) b];

	return x < y ? -1 : x > y;
}

static ArrayType *
float8_array(const double *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * (n > 0 ? n : 1));

	for (int i = 0; i < n; i++)
		d[i] = Float8GetDatum(v[i]);
	return construct_array(d, n, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

PG_FUNCTION_INFO_V1(rai4eo_series_final);
Datum
rai4eo_series_final(PG_FUNCTION_ARGS)
{
	SeriesState *st = PG_ARGISNULL(0) ? NULL : (SeriesState *) PG_GETARG_POINTER(0);
	TupleDesc	tupdesc;
	size_t		n,
				m = 0,
				changed = 0,
				dim = 0;
	size_t	   *order;
	long long  *ids;
	long	   *partner;
	double	   *dist,
			   *states,
				sum = 0;
	Datum	   *days;
	const float **y = NULL,
			  **p = NULL;
	int		   *month = NULL;
	CentreCache *c;
	Datum		values[7];
	bool		nulls[7] = {false};

	if (st == NULL || st->n == 0)
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("rai4eo.day_series_final must return a composite")));
	n = st->n;
	c = st->centres;
	/* date order (the scan usually gives it already) */
	order = palloc(sizeof(size_t) * n);
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	qsort_arg(order, n, sizeof(size_t), cmp_row_id, st->ids);
	ids = palloc(sizeof(long long) * n);
	for (size_t i = 0; i < n; i++)
		ids[i] = st->ids[order[i]];
	partner = palloc(sizeof(long) * n);
	(void) r4_pair_days(ids, n, st->first, st->last, st->tolerance, partner);
	dist = palloc(sizeof(double) * n);
	states = palloc(sizeof(double) * n);
	days = palloc(sizeof(Datum) * n);
	for (size_t i = 0; i < n; i++)
	{
		Embedding  *a,
				   *b;
		double		d;

		if (partner[i] < 0)
			continue;
		a = st->emb[order[i]];
		b = st->emb[order[partner[i]]];
		if (a->dim != b->dim)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("different embedding dimensions %d and %d", a->dim, b->dim)));
		d = 1.0 - r4_cosine_similarity(a->x, b->x, a->dim);
		/* a zero vector's NaN distance leaves the day out (the change functions' rule) */
		if (isnan(d))
			continue;
		if (c != NULL)
		{
			long		sa = -1,
						sb = -1;

			if (c->k > 0)
			{
				if (c->dim != a->dim)
					ereport(ERROR,
							(errcode(ERRCODE_DATA_EXCEPTION),
							 errmsg("different embedding dimensions %d and %d", a->dim, c->dim)));
				sa = r4_nearest_centre(a->x, c->centres, c->inv_norms, (size_t) c->k, (size_t) c->dim, c->dots);
				sb = r4_nearest_centre(b->x, c->centres, c->inv_norms, (size_t) c->k, (size_t) c->dim, c->dots);
			}
			/* no state (no centres, a zero vector) counts as unchanged */
			states[m] = sa >= 0 && sb >= 0 && sa != sb ? 1 : 0;
		}
		if (st->composites)
		{
			int			yy,
						mm,
						dd;

			if (y == NULL)
			{
				dim = (size_t) a->dim;
				y = palloc(sizeof(float *) * n);
				p = palloc(sizeof(float *) * n);
				month = palloc(sizeof(int) * n);
			}
			else if ((size_t) a->dim != dim)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("different embedding dimensions %d and %zu", a->dim, dim)));
			/* the copies the transition made stay until the end of the group */
			y[m] = a->x;
			p[m] = b->x;
			j2date((int) (ids[i] & 65535) + POSTGRES_EPOCH_JDATE, &yy, &mm, &dd);
			month[m] = mm;
		}
		dist[m] = d;
		sum += d;
		changed += st->has_t && d > st->t;
		/* the image_id's days field is days since 2000-01-01, a DateADT */
		days[m] = DateADTGetDatum((DateADT) (ids[i] & 65535));
		m++;
	}
	if (m == 0)
		PG_RETURN_NULL();
	values[0] = Int32GetDatum((int32) m);
	values[1] = Int32GetDatum((int32) changed);
	values[2] = Float8GetDatum(sum / (double) m);
	values[3] = PointerGetDatum(construct_array(days, (int) m, DATEOID, sizeof(DateADT), true, TYPALIGN_INT));
	values[4] = PointerGetDatum(float8_array(dist, (int) m));
	if (c != NULL)
		values[5] = PointerGetDatum(float8_array(states, (int) m));
	else
		nulls[5] = true;
	if (st->composites)
	{
		double		v[3];
		Datum		d[3];
		bool		vn[3];
		int			dims[1] = {3};
		int			lbs[1] = {1};
		double	   *scratch = palloc(sizeof(double) * (27 * dim + 2 * m));

		(void) r4_pair_composites(y, p, month, m, dim, 0.001, scratch, &v[0], &v[1], &v[2]);
		for (int i = 0; i < 3; i++)
		{
			vn[i] = isnan(v[i]);
			d[i] = Float8GetDatum(vn[i] ? 0 : v[i]);
		}
		values[6] = PointerGetDatum(construct_md_array(d, vn, 1, dims, lbs, FLOAT8OID, sizeof(float8),
													   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}
	else
		nulls[6] = true;
	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
