/*
 * embedding.c — the embedding type: text and binary I/O, typmod, and casts
 * from and to SQL arrays.  The text form is pgvector's ("[1,2,3]"), so an
 * embedding's text is a valid pgvector vector literal and the other way round.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "embedding.h"
#include "rai4eo/vector_text.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

/* Allocate a zeroed embedding */
Embedding *
InitEmbedding(int dim)
{
	Embedding  *result = (Embedding *) palloc0(EMBEDDING_SIZE(dim));

	SET_VARSIZE(result, EMBEDDING_SIZE(dim));
	result->dim = dim;
	return result;
}

Embedding *
EmbeddingFromDatum(Datum d)
{
	Embedding  *e = (Embedding *) PG_DETOAST_DATUM(d);

	/*
	 * Every reader trusts dim to size its loops: a value whose length does not
	 * match (written by a binary-coercible cast, or corrupt on disk) would
	 * read far past itself.
	 */
	if (VARSIZE(e) < offsetof(Embedding, x) || e->dim < 1 || e->dim > EMBEDDING_MAX_DIM ||
		VARSIZE(e) != EMBEDDING_SIZE(e->dim))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("embedding value is corrupt: %u bytes for %d dimensions",
						(unsigned) VARSIZE(e), VARSIZE(e) >= offsetof(Embedding, x) ? e->dim : 0),
				 errdetail("An embedding of n dimensions takes %zu + 4 n bytes.", offsetof(Embedding, x))));
	return e;
}

/* Ensure a dimension count is usable */
void
EmbeddingCheckDim(int dim)
{
	if (dim < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("embedding must have at least 1 dimension")));
	if (dim > EMBEDDING_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("embedding cannot have more than %d dimensions", EMBEDDING_MAX_DIM)));
}

/* Ensure the dimension count matches the column's typmod */
void
EmbeddingCheckExpectedDim(int32 typmod, int dim)
{
	if (typmod != -1 && typmod != dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions, not %d", typmod, dim)));
}

/* Ensure every element is a finite number */
void
EmbeddingCheckElements(const float *x, int dim)
{
	for (int i = 0; i < dim; i++)
	{
		if (isnan(x[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("NaN not allowed in embedding")));
		if (isinf(x[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("infinite value not allowed in embedding")));
	}
}

/* Raise the standard malformed-literal error */
static void
InvalidEmbeddingSyntax(const char *lit, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type embedding: \"%s\"", lit),
			 errdetail("%s", detail)));
}

/* Raise the error for a non-finite element */
static void
NonFiniteElement(bool nan)
{
	float		v = nan ? NAN : INFINITY;

	EmbeddingCheckElements(&v, 1);
}

/* Parsing itself is the core's (vector_text.c, fuzzed); this picks the SQLSTATE */
PG_FUNCTION_INFO_V1(embedding_in);
Datum
embedding_in(PG_FUNCTION_ARGS)
{
	char	   *lit = PG_GETARG_CSTRING(0);
	int32		typmod = PG_GETARG_INT32(2);
	float	   *x = palloc(sizeof(float) * EMBEDDING_MAX_DIM);
	int			dim = 0;
	R4VecProblem problem;
	Embedding  *result;

	switch (r4_vec_parse_text(lit, x, EMBEDDING_MAX_DIM, &dim, &problem))
	{
		case R4V_OK:
			break;
		case R4V_NO_BRACKET:
			InvalidEmbeddingSyntax(lit, "Embedding contents must start with \"[\".");
			break;
		case R4V_NOT_A_NUMBER:
			InvalidEmbeddingSyntax(lit, "Each element must be a number.");
			break;
		case R4V_BAD_SEPARATOR:
			InvalidEmbeddingSyntax(lit, "Elements must be separated by \",\" and the list closed by \"]\".");
			break;
		case R4V_JUNK_AFTER:
			InvalidEmbeddingSyntax(lit, "Junk after closing right bracket.");
			break;
		case R4V_EMPTY:
			EmbeddingCheckDim(0);
			break;
		case R4V_TOO_MANY:
			EmbeddingCheckDim(EMBEDDING_MAX_DIM + 1);
			break;
		case R4V_OUT_OF_RANGE:
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("\"%s\" is out of range for type embedding",
							pnstrdup(lit + problem.pos, problem.len))));
			break;
		case R4V_NAN:
		case R4V_INFINITE:
			NonFiniteElement(problem.error == R4V_NAN);
			break;
		default:
			elog(ERROR, "unexpected embedding parse result %d", (int) problem.error);
	}

	EmbeddingCheckExpectedDim(typmod, dim);
	result = InitEmbedding(dim);
	memcpy(result->x, x, sizeof(float) * dim);
	pfree(x);
	PG_RETURN_EMBEDDING_P(result);
}

PG_FUNCTION_INFO_V1(embedding_out);
Datum
embedding_out(PG_FUNCTION_ARGS)
{
	Embedding  *emb = PG_GETARG_EMBEDDING_P(0);
	int			dim = emb->dim;
	char	   *buf = palloc((size_t) dim * (FLOAT_SHORTEST_DECIMAL_LEN + 1) + 2);
	char	   *p = buf;

	*p++ = '[';
	for (int i = 0; i < dim; i++)
	{
		if (i > 0)
			*p++ = ',';
		p += float_to_shortest_decimal_bufn(emb->x[i], p);
	}
	*p++ = ']';
	*p = '\0';

	PG_FREE_IF_COPY(emb, 0);
	PG_RETURN_CSTRING(buf);
}

PG_FUNCTION_INFO_V1(embedding_typmod_in);
Datum
embedding_typmod_in(PG_FUNCTION_ARGS)
{
	ArrayType  *ta = PG_GETARG_ARRAYTYPE_P(0);
	int32	   *tl;
	int			n;

	tl = ArrayGetIntegerTypmods(ta, &n);
	if (n != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid type modifier"),
				 errdetail("Type embedding takes exactly one modifier: its number of dimensions.")));
	if (tl[0] < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions for type embedding must be at least 1")));
	if (tl[0] > EMBEDDING_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions for type embedding cannot exceed %d", EMBEDDING_MAX_DIM)));
	PG_RETURN_INT32(tl[0]);
}

PG_FUNCTION_INFO_V1(embedding_typmod_out);
Datum
embedding_typmod_out(PG_FUNCTION_ARGS)
{
	int32		typmod = PG_GETARG_INT32(0);

	PG_RETURN_CSTRING(typmod < 0 ? pstrdup("") : psprintf("(%d)", typmod));
}

/* Coerce to a typmod: the dimensions must match, the value is unchanged */
PG_FUNCTION_INFO_V1(embedding);
Datum
embedding(PG_FUNCTION_ARGS)
{
	Embedding  *emb = PG_GETARG_EMBEDDING_P(0);

	EmbeddingCheckExpectedDim(PG_GETARG_INT32(1), emb->dim);
	PG_RETURN_EMBEDDING_P(emb);
}

PG_FUNCTION_INFO_V1(embedding_recv);
Datum
embedding_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int32		typmod = PG_GETARG_INT32(2);
	float	   *x = palloc(sizeof(float) * EMBEDDING_MAX_DIM);
	int			dim = 0;
	size_t		consumed = 0;
	R4VecProblem problem;
	Embedding  *result;

	switch (r4_vec_parse_binary((const uint8 *) buf->data + buf->cursor, buf->len - buf->cursor,
								x, EMBEDDING_MAX_DIM, &dim, &consumed, &problem))
	{
		case R4V_OK:
			break;
		case R4V_SHORT:
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("insufficient data left in message")));
			break;
		case R4V_EMPTY:
		case R4V_TOO_MANY:
			EmbeddingCheckDim(problem.value);
			break;
		case R4V_RESERVED:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("expected reserved field to be 0, not %d", problem.value)));
			break;
		case R4V_NAN:
		case R4V_INFINITE:
			NonFiniteElement(problem.error == R4V_NAN);
			break;
		default:
			elog(ERROR, "unexpected embedding parse result %d", (int) problem.error);
	}
	buf->cursor += consumed;
	EmbeddingCheckExpectedDim(typmod, dim);

	result = InitEmbedding(dim);
	memcpy(result->x, x, sizeof(float) * dim);
	pfree(x);
	PG_RETURN_EMBEDDING_P(result);
}

PG_FUNCTION_INFO_V1(embedding_send);
Datum
embedding_send(PG_FUNCTION_ARGS)
{
	Embedding  *emb = PG_GETARG_EMBEDDING_P(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint16(&buf, emb->dim);
	pq_sendint16(&buf, emb->unused);
	for (int i = 0; i < emb->dim; i++)
		pq_sendfloat4(&buf, emb->x[i]);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* Convert one array element to float4, raising on overflow */
static float
ArrayElementToFloat(Datum d, Oid elemtype)
{
	double		v;

	switch (elemtype)
	{
		case INT4OID:
			return (float) DatumGetInt32(d);
		case FLOAT4OID:
			return DatumGetFloat4(d);
		case FLOAT8OID:
			v = DatumGetFloat8(d);
			break;
		case NUMERICOID:
			v = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, d));
			break;
		default:
			elog(ERROR, "unsupported array element type %u", elemtype);
	}
	/* Same rules as PostgreSQL's float8-to-real cast */
	if ((isfinite(v) && fabs(v) > FLT_MAX) || (elemtype == NUMERICOID && isinf(v)))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value out of range for type embedding: overflow")));
	if (v != 0.0 && (float) v == 0.0f)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value out of range for type embedding: underflow")));
	return (float) v;
}

/* Cast an integer, real, double precision or numeric array */
PG_FUNCTION_INFO_V1(array_to_embedding);
Datum
array_to_embedding(PG_FUNCTION_ARGS)
{
	ArrayType  *array = PG_GETARG_ARRAYTYPE_P(0);
	int32		typmod = PG_GETARG_INT32(1);
	Oid			elemtype = ARR_ELEMTYPE(array);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	Embedding  *result;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("array must be 1-D")));
	if (ARR_HASNULL(array) && array_contains_nulls(array))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("array must not contain nulls")));

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(array, elemtype, typlen, typbyval, typalign, &elems, &nulls, &n);

	EmbeddingCheckDim(n);
	EmbeddingCheckExpectedDim(typmod, n);

	result = InitEmbedding(n);
	for (int i = 0; i < n; i++)
		result->x[i] = ArrayElementToFloat(elems[i], elemtype);
	EmbeddingCheckElements(result->x, n);

	pfree(elems);
	pfree(nulls);
	PG_RETURN_EMBEDDING_P(result);
}

/* Cast to real[] */
PG_FUNCTION_INFO_V1(embedding_to_float4);
Datum
embedding_to_float4(PG_FUNCTION_ARGS)
{
	Embedding  *emb = PG_GETARG_EMBEDDING_P(0);
	Datum	   *datums = palloc(sizeof(Datum) * emb->dim);
	ArrayType  *result;

	for (int i = 0; i < emb->dim; i++)
		datums[i] = Float4GetDatum(emb->x[i]);
	result = construct_array(datums, emb->dim, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT);
	pfree(datums);
	PG_FREE_IF_COPY(emb, 0);
	PG_RETURN_POINTER(result);
}
