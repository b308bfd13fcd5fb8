/*
 * embedding.h — the embedding varlena, shared by the glue files that make
 * or read embeddings (type I/O, inference, aggregates).
 */
#ifndef RAI4EO_PG_EMBEDDING_H
#define RAI4EO_PG_EMBEDDING_H

#include "postgres.h"

#include "fmgr.h"

#define EMBEDDING_MAX_DIM 16000

/* Same layout as pgvector's vector: header, dimensions, a reserved zero. */
typedef struct Embedding
{
	int32		vl_len_;		/* varlena header (do not touch directly) */
	int16		dim;			/* number of dimensions */
	int16		unused;			/* reserved for future use, always zero */
	float		x[FLEXIBLE_ARRAY_MEMBER];
} Embedding;

#define EMBEDDING_SIZE(_dim)		(offsetof(Embedding, x) + sizeof(float) * (_dim))
#define DatumGetEmbedding(x)		EmbeddingFromDatum(x)
#define PG_GETARG_EMBEDDING_P(x)	DatumGetEmbedding(PG_GETARG_DATUM(x))
#define PG_RETURN_EMBEDDING_P(x)	PG_RETURN_POINTER(x)

/*
 * Detoast an embedding datum and check that its size matches its dimension
 * count (XX001 data_corrupted otherwise).
 */
Embedding  *EmbeddingFromDatum(Datum d);

/* Allocate a zeroed embedding of dim dimensions in CurrentMemoryContext. */
Embedding  *InitEmbedding(int dim);

/* Raise the errors for an unusable dimension count or a typmod mismatch. */
void		EmbeddingCheckDim(int dim);
void		EmbeddingCheckExpectedDim(int32 typmod, int dim);

/* Raise an error unless every element is finite. */
void		EmbeddingCheckElements(const float *x, int dim);

#endif							/* RAI4EO_PG_EMBEDDING_H */
