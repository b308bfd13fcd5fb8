/*
 * change_score.c — SQL glue for the series scores of change detection
 * (src/core/change_score.c): persistence and onset, change point, robust z,
 * nearest cluster state.  Arrays are read here; the loops live in the core.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "embedding.h"
#include "rai4eo/change_score.h"
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

	if (st == NULL || st->n == 0)
		PG_RETURN_NULL();
	scratch = palloc(sizeof(double) * (27 * (size_t) st->dim + 2 * st->n));
	(void) r4_pair_composites(st->y, st->p, st->month, st->n, (size_t) st->dim, 0.001, scratch,
							  &v[0], &v[1], &v[2]);
	for (int i = 0; i < 3; i++)
	{
		nulls[i] = isnan(v[i]);
		d[i] = Float8GetDatum(nulls[i] ? 0 : v[i]);
	}
	PG_RETURN_ARRAYTYPE_P(construct_md_array(d, nulls, 1, dims, lbs, FLOAT8OID, sizeof(float8),
											 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
