/*
 * vector_text.c — pgvector's text and binary forms of a float vector.
 *
 * The rules are pgvector's vector_in/vector_recv, so that a literal means the
 * same in both extensions: strtof per element (as float4in, no double
 * rounding), an overflow is an error but an underflow rounds towards zero,
 * NaN and infinities are refused.
 */
#include "rai4eo/vector_text.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* PostgreSQL's scanner_isspace */
static inline int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static inline const char *
skip_space(const char *p)
{
	while (is_space(*p))
		p++;
	return p;
}

static R4VecError
fail(R4VecProblem *problem, R4VecError e, size_t pos, size_t len)
{
	if (problem != NULL)
	{
		problem->error = e;
		problem->pos = pos;
		problem->len = len;
		problem->value = 0;
	}
	return e;
}

R4VecError
r4_vec_parse_text(const char *text, float *out, int max_dim, int *dim, R4VecProblem *problem)
{
	const char *p = skip_space(text);
	int			n = 0;

	*dim = 0;
	if (*p != '[')
		return fail(problem, R4V_NO_BRACKET, (size_t) (p - text), 0);
	p = skip_space(p + 1);
	if (*p == ']')
		return fail(problem, R4V_EMPTY, (size_t) (p - text), 0);

	for (;;)
	{
		char	   *end;
		float		val;

		if (n == max_dim)
			return fail(problem, R4V_TOO_MANY, (size_t) (p - text), 0);
		/* strtof would skip leading whitespace and accept what follows a sign */
		if (*p == ',' || *p == ']' || *p == '\0' || is_space(*p))
			return fail(problem, R4V_NOT_A_NUMBER, (size_t) (p - text), 0);
		errno = 0;
		val = strtof(p, &end);
		if (end == p)
			return fail(problem, R4V_NOT_A_NUMBER, (size_t) (p - text), 0);
		if (errno == ERANGE && isinf(val))
			return fail(problem, R4V_OUT_OF_RANGE, (size_t) (p - text), (size_t) (end - p));
		if (isnan(val))
			return fail(problem, R4V_NAN, (size_t) (p - text), (size_t) (end - p));
		if (isinf(val))
			return fail(problem, R4V_INFINITE, (size_t) (p - text), (size_t) (end - p));
		out[n++] = val;

		p = skip_space(end);
		if (*p == ',')
			p = skip_space(p + 1);
		else if (*p == ']')
			break;
		else
			return fail(problem, R4V_BAD_SEPARATOR, (size_t) (p - text), 0);
	}
	p = skip_space(p + 1);
	if (*p != '\0')
		return fail(problem, R4V_JUNK_AFTER, (size_t) (p - text), 0);
	*dim = n;
	if (problem != NULL)
		problem->error = R4V_OK;
	return R4V_OK;
}

R4VecError
r4_vec_parse_binary(const uint8_t *buf, size_t len, float *out, int max_dim,
					int *dim, size_t *consumed, R4VecProblem *problem)
{
	int16_t		d;
	int16_t		reserved;

	*dim = 0;
	*consumed = 0;
	if (len < 4)
		return fail(problem, R4V_SHORT, 0, 0);
	d = (int16_t) (uint16_t) ((uint16_t) buf[0] << 8 | buf[1]);
	reserved = (int16_t) (uint16_t) ((uint16_t) buf[2] << 8 | buf[3]);
	if (d < 1 || d > max_dim)
	{
		fail(problem, d < 1 ? R4V_EMPTY : R4V_TOO_MANY, 0, 0);
		if (problem != NULL)
			problem->value = d;
		return d < 1 ? R4V_EMPTY : R4V_TOO_MANY;
	}
	if (reserved != 0)
	{
		fail(problem, R4V_RESERVED, 0, 0);
		if (problem != NULL)
			problem->value = reserved;
		return R4V_RESERVED;
	}
	if (len - 4 < (size_t) d * 4)
		return fail(problem, R4V_SHORT, 0, 0);
	for (int i = 0; i < d; i++)
	{
		const uint8_t *q = buf + 4 + 4 * (size_t) i;
		uint32_t	bits = (uint32_t) q[0] << 24 | (uint32_t) q[1] << 16 | (uint32_t) q[2] << 8 | q[3];
		float		v;

		memcpy(&v, &bits, sizeof(v));
		if (isnan(v))
			return fail(problem, R4V_NAN, 4 + 4 * (size_t) i, 4);
		if (isinf(v))
			return fail(problem, R4V_INFINITE, 4 + 4 * (size_t) i, 4);
		out[i] = v;
	}
	*dim = d;
	*consumed = 4 + 4 * (size_t) d;
	if (problem != NULL)
		problem->error = R4V_OK;
	return R4V_OK;
}
