/*
 * embedding_math.c — distances, element-wise arithmetic, ordering and the
 * sum/avg aggregates of the embedding type.  The loops over elements live in
 * the core (distance.c); this file checks arguments and wraps results.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "embedding.h"
#include "rai4eo/distance.h"
#include "utils/array.h"
#include "utils/float.h"

/* Ensure both operands have the same number of dimensions */
static inline void
CheckDims(const Embedding *a, const Embedding *b)
{
	if (a->dim != b->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different embedding dimensions %d and %d", a->dim, b->dim)));
}

PG_FUNCTION_INFO_V1(l2_distance);
Datum
l2_distance(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);
	Embedding  *b = PG_GETARG_EMBEDDING_P(1);

	CheckDims(a, b);
	/* pgvector's sum of squares is a float4: Infinity past FLT_MAX */
	PG_RETURN_FLOAT8(sqrt(r4_float_range(r4_l2_squared(a->x, b->x, a->dim))));
}

PG_FUNCTION_INFO_V1(inner_product);
Datum
inner_product(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);
	Embedding  *b = PG_GETARG_EMBEDDING_P(1);

	CheckDims(a, b);
	PG_RETURN_FLOAT8(r4_float_range(r4_dot(a->x, b->x, a->dim)));
}

/* Negative inner product, so that ascending order means most similar first */
PG_FUNCTION_INFO_V1(embedding_negative_inner_product);
Datum
embedding_negative_inner_product(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);
	Embedding  *b = PG_GETARG_EMBEDDING_P(1);

	CheckDims(a, b);
	PG_RETURN_FLOAT8(-r4_float_range(r4_dot(a->x, b->x, a->dim)));
}

PG_FUNCTION_INFO_V1(cosine_similarity);
Datum
cosine_similarity(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);
	Embedding  *b = PG_GETARG_EMBEDDING_P(1);

	CheckDims(a, b);
	PG_RETURN_FLOAT8(r4_cosine_similarity(a->x, b->x, a->dim));
}

/* The change score: 1 - cosine similarity, in [0, 2]; NaN for a zero vector */
PG_FUNCTION_INFO_V1(cosine_change);
Datum
cosine_change(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);
	Embedding  *b = PG_GETARG_EMBEDDING_P(1);

	CheckDims(a, b);
	PG_RETURN_FLOAT8(1.0 - r4_cosine_similarity(a->x, b->x, a->dim));
}

PG_FUNCTION_INFO_V1(embedding_dims);
Datum
embedding_dims(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);

	PG_RETURN_INT32(a->dim);
}

PG_FUNCTION_INFO_V1(embedding_norm);
Datum
embedding_norm(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);

	PG_RETURN_FLOAT8(sqrt(r4_norm_squared(a->x, a->dim)));
}

/* Scale to unit Euclidean norm; a zero vector stays zero */
PG_FUNCTION_INFO_V1(l2_normalize);
Datum
l2_normalize(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);
	Embedding  *result = InitEmbedding(a->dim);
	double		norm = sqrt(r4_norm_squared(a->x, a->dim));

	if (norm > 0)
	{
		for (int i = 0; i < a->dim; i++)
			result->x[i] = (float) (a->x[i] / norm);
	}
	PG_RETURN_EMBEDDING_P(result);
}

/* Raise an overflow or underflow error for an element-wise result */
static void
CheckArithmeticResult(const float *x, int dim, const Embedding *a, const Embedding *b, bool multiply)
{
	for (int i = 0; i < dim; i++)
	{
		if (isinf(x[i]))
			float_overflow_error();
		if (multiply && x[i] == 0.0f && a->x[i] != 0.0f && b->x[i] != 0.0f)
			float_underflow_error();
	}
}

PG_FUNCTION_INFO_V1(embedding_add);
Datum
embedding_add(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);
	Embedding  *b = PG_GETARG_EMBEDDING_P(1);
	Embedding  *result;

	CheckDims(a, b);
	result = InitEmbedding(a->dim);
	for (int i = 0; i < a->dim; i++)
		result->x[i] = a->x[i] + b->x[i];
	CheckArithmeticResult(result->x, a->dim, a, b, false);
	PG_RETURN_EMBEDDING_P(result);
}

PG_FUNCTION_INFO_V1(embedding_sub);
Datum
embedding_sub(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);
	Embedding  *b = PG_GETARG_EMBEDDING_P(1);
	Embedding  *result;

	CheckDims(a, b);
	result = InitEmbedding(a->dim);
	for (int i = 0; i < a->dim; i++)
		result->x[i] = a->x[i] - b->x[i];
	CheckArithmeticResult(result->x, a->dim, a, b, false);
	PG_RETURN_EMBEDDING_P(result);
}

PG_FUNCTION_INFO_V1(embedding_mul);
Datum
embedding_mul(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);
	Embedding  *b = PG_GETARG_EMBEDDING_P(1);
	Embedding  *result;

	CheckDims(a, b);
	result = InitEmbedding(a->dim);
	for (int i = 0; i < a->dim; i++)
		result->x[i] = a->x[i] * b->x[i];
	CheckArithmeticResult(result->x, a->dim, a, b, true);
	PG_RETURN_EMBEDDING_P(result);
}

/*
 * Order embeddings element by element, then by dimensions, so that every
 * pair compares (the btree opclass needs a total order).
 */
static int
EmbeddingCompare(const Embedding *a, const Embedding *b)
{
	int			n = Min(a->dim, b->dim);

	for (int i = 0; i < n; i++)
	{
		if (a->x[i] < b->x[i])
			return -1;
		if (a->x[i] > b->x[i])
			return 1;
	}
	if (a->dim != b->dim)
		return a->dim < b->dim ? -1 : 1;
	return 0;
}

#define EMBEDDING_COMPARISON(name, op) \
PG_FUNCTION_INFO_V1(name); \
Datum \
name(PG_FUNCTION_ARGS) \
{ \
	Embedding  *a = PG_GETARG_EMBEDDING_P(0); \
	Embedding  *b = PG_GETARG_EMBEDDING_P(1); \
	PG_RETURN_BOOL(EmbeddingCompare(a, b) op 0); \
}

EMBEDDING_COMPARISON(embedding_lt, <)
EMBEDDING_COMPARISON(embedding_le, <=)
EMBEDDING_COMPARISON(embedding_eq, ==)
EMBEDDING_COMPARISON(embedding_ne, !=)
EMBEDDING_COMPARISON(embedding_ge, >=)
EMBEDDING_COMPARISON(embedding_gt, >)

PG_FUNCTION_INFO_V1(embedding_cmp);
Datum
embedding_cmp(PG_FUNCTION_ARGS)
{
	Embedding  *a = PG_GETARG_EMBEDDING_P(0);
	Embedding  *b = PG_GETARG_EMBEDDING_P(1);

	PG_RETURN_INT32(EmbeddingCompare(a, b));
}

/*
 * The avg state is a float8[]: element 0 counts the rows, the rest are the
 * running sums.  It starts as '{0}'.  The support functions are callable
 * from SQL with any float8[], so every state is checked: a count that is a
 * whole number >= 0, '{0}' alone when it is 0, else 1 to EMBEDDING_MAX_DIM
 * finite sums.
 */
static float8 *
CheckStateArray(FunctionCallInfo fcinfo, ArrayType *statearray, int *n)
{
	float8	   *state;
	int			len;

	if (ARR_NDIM(statearray) != 1 || ARR_DIMS(statearray)[0] < 1 ||
		ARR_HASNULL(statearray) || ARR_ELEMTYPE(statearray) != FLOAT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid embedding aggregate state"),
				 errdetail("The state is a one-dimensional float8 array without NULLs: the row count, then the sums.")));
	len = ARR_DIMS(statearray)[0];
	state = (float8 *) ARR_DATA_PTR(statearray);
	if (!(state[0] >= 0 && state[0] <= 9007199254740992.0 && state[0] == floor(state[0])))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid embedding aggregate state"),
				 errdetail("The row count %g is not a whole number from 0 to 2^53.", state[0])));
	if (state[0] == 0 ? len != 1 : (len < 2 || len - 1 > EMBEDDING_MAX_DIM))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid embedding aggregate state"),
				 errdetail("A state of %g rows has %d sums; it needs %s.", state[0], len - 1,
						   state[0] == 0 ? "none" : "1 to 16000")));
	/* Inside an aggregate the state is one we built: skip the O(dim) scan */
	for (int i = AggCheckCallContext(fcinfo, NULL) ? len : 1; i < len; i++)
		if (!isfinite(state[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid embedding aggregate state"),
					 errdetail("Sum %d is not finite.", i)));
	*n = len;
	return state;
}

/* Build a fresh state array of dim sums plus the count */
static ArrayType *
MakeState(float8 count, const float8 *sums, int dim)
{
	Datum	   *datums = palloc(sizeof(Datum) * (dim + 1));
	ArrayType  *result;

	datums[0] = Float8GetDatum(count);
	for (int i = 0; i < dim; i++)
		datums[i + 1] = Float8GetDatum(sums[i]);
	result = construct_array(datums, dim + 1, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	pfree(datums);
	return result;
}

PG_FUNCTION_INFO_V1(embedding_accum);
Datum
embedding_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *statearray = PG_GETARG_ARRAYTYPE_P(0);
	Embedding  *emb = PG_GETARG_EMBEDDING_P(1);
	int			n;
	float8	   *state = CheckStateArray(fcinfo, statearray, &n);
	float8	   *sums;

	if (state[0] == 0)
	{
		sums = palloc(sizeof(float8) * emb->dim);
		for (int i = 0; i < emb->dim; i++)
			sums[i] = emb->x[i];
		PG_RETURN_ARRAYTYPE_P(MakeState(1, sums, emb->dim));
	}

	if (n - 1 != emb->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different embedding dimensions %d and %d", n - 1, emb->dim)));

	/* Inside an aggregate the state is ours: update it in place */
	if (!AggCheckCallContext(fcinfo, NULL))
		statearray = MakeState(state[0], state + 1, n - 1);
	state = (float8 *) ARR_DATA_PTR(statearray);
	state[0] += 1;
	for (int i = 0; i < emb->dim; i++)
		state[i + 1] += emb->x[i];
	PG_RETURN_ARRAYTYPE_P(statearray);
}

PG_FUNCTION_INFO_V1(embedding_combine);
Datum
embedding_combine(PG_FUNCTION_ARGS)
{
	ArrayType  *sa = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *sb = PG_GETARG_ARRAYTYPE_P(1);
	int			na,
				nb;
	float8	   *a = CheckStateArray(fcinfo, sa, &na);
	float8	   *b = CheckStateArray(fcinfo, sb, &nb);

	if (b[0] == 0)
		PG_RETURN_ARRAYTYPE_P(AggCheckCallContext(fcinfo, NULL) ? sa : MakeState(a[0], a + 1, na - 1));
	if (a[0] == 0)
		PG_RETURN_ARRAYTYPE_P(MakeState(b[0], b + 1, nb - 1));
	if (na != nb)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different embedding dimensions %d and %d", na - 1, nb - 1)));

	if (!AggCheckCallContext(fcinfo, NULL))
		sa = MakeState(a[0], a + 1, na - 1);
	a = (float8 *) ARR_DATA_PTR(sa);
	for (int i = 0; i < na; i++)
		a[i] += b[i];
	PG_RETURN_ARRAYTYPE_P(sa);
}

PG_FUNCTION_INFO_V1(embedding_avg);
Datum
embedding_avg(PG_FUNCTION_ARGS)
{
	ArrayType  *statearray = PG_GETARG_ARRAYTYPE_P(0);
	int			n;
	float8	   *state = CheckStateArray(fcinfo, statearray, &n);
	Embedding  *result;

	/* No rows: SQL's avg of nothing is NULL */
	if (state[0] == 0)
		PG_RETURN_NULL();

	result = InitEmbedding(n - 1);
	for (int i = 0; i < n - 1; i++)
	{
		double		v = state[i + 1] / state[0];

		if (fabs(v) > FLT_MAX)
			float_overflow_error();
		result->x[i] = (float) v;
	}
	PG_RETURN_EMBEDDING_P(result);
}
