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

PG_FUNCTION_INFO_V1(rai4eo_nearest_state);
Datum
rai4eo_nearest_state(PG_FUNCTION_ARGS)
{
	Embedding  *x = PG_GETARG_EMBEDDING_P(0);
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(1);
	Oid			elem = ARR_ELEMTYPE(a);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *datums;
	bool	   *nulls;
	int			k;
	const float **centres;
	long		best;

	get_typlenbyvalalign(elem, &typlen, &typbyval, &typalign);
	deconstruct_array(a, elem, typlen, typbyval, typalign, &datums, &nulls, &k);
	if (k == 0)
		PG_RETURN_NULL();
	centres = palloc(sizeof(float *) * k);
	for (int i = 0; i < k; i++)
	{
		Embedding  *c;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("cluster centres must not be NULL")));
		c = DatumGetEmbedding(datums[i]);
		if (c->dim != x->dim)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("different embedding dimensions %d and %d", x->dim, c->dim)));
		centres[i] = c->x;
	}
	best = r4_nearest_centre(x->x, centres, (size_t) k, (size_t) x->dim);
	if (best < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) best + 1);
}
