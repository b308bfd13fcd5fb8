/*
 * vector_text.h — the embedding type's external forms, parsed without
 * PostgreSQL so that they can be fuzzed: pgvector's text ("[1,2,3]") and its
 * binary send format (int16 dim, int16 reserved, dim big-endian float4s).
 *
 * The parsers write into a caller's buffer of max_dim floats and say what is
 * wrong with an R4VecError; the glue picks the SQLSTATE and the message.
 */
#ifndef RAI4EO_VECTOR_TEXT_H
#define RAI4EO_VECTOR_TEXT_H

#include <stddef.h>
#include <stdint.h>

typedef enum R4VecError
{
	R4V_OK = 0,
	R4V_NO_BRACKET,			/* text does not start with "[" */
	R4V_NOT_A_NUMBER,		/* an element is empty or not a number */
	R4V_BAD_SEPARATOR,		/* something other than "," or "]" after an element */
	R4V_JUNK_AFTER,			/* more than whitespace after "]" */
	R4V_EMPTY,				/* "[]": no dimensions */
	R4V_TOO_MANY,			/* more than max_dim elements */
	R4V_OUT_OF_RANGE,		/* a number beyond float4's range (underflow rounds, like pgvector) */
	R4V_NAN,				/* NaN */
	R4V_INFINITE,			/* an infinity */
	R4V_SHORT,				/* binary: fewer bytes than the header announces */
	R4V_RESERVED			/* binary: the reserved field is not zero */
} R4VecError;

/* What went wrong and where (offsets into the text, or the bad value). */
typedef struct R4VecProblem
{
	R4VecError	error;
	size_t		pos;			/* text: start of the offending element */
	size_t		len;			/* text: its length (for R4V_OUT_OF_RANGE) */
	int			value;			/* binary: the dimension count or reserved field read */
} R4VecProblem;

/*
 * Parse a NUL-terminated pgvector literal into out[0..max_dim), setting
 * *dim.  Whitespace is PostgreSQL's scanner's (space, \t, \n, \r, \v, \f).
 */
R4VecError	r4_vec_parse_text(const char *text, float *out, int max_dim, int *dim,
							  R4VecProblem *problem);

/*
 * Parse the binary form from buf[0..len) into out[0..max_dim): *dim and
 * *consumed (4 + 4 * dim bytes) on success.  A dimension count below 1 is
 * R4V_EMPTY (problem->value holds it), above max_dim R4V_TOO_MANY.
 */
R4VecError	r4_vec_parse_binary(const uint8_t *buf, size_t len, float *out, int max_dim,
								int *dim, size_t *consumed, R4VecProblem *problem);

#endif							/* RAI4EO_VECTOR_TEXT_H */
