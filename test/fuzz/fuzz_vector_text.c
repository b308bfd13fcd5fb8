/*
 * fuzz_vector_text.c — libFuzzer target for the embedding type's text and
 * binary parsers (src/core/vector_text.c, behind embedding_in/_recv).
 *
 * Every input is parsed both as a literal and as a binary value.  Accepted
 * values must be 1..max_dim finite floats; the text form must read back
 * bit for bit from "%.9g" output, the binary form must re-encode to exactly
 * the bytes it consumed.  Rejections must say why.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/vector_text.h"

#define ASSERT(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#define MAX_DIM 64				/* small, so the too-many path is reachable */

static void
check_text(const uint8_t *data, size_t size)
{
	char	   *text = malloc(size + 1);
	float		x[MAX_DIM];
	float		y[MAX_DIM];
	int			dim = -1;
	int			dim2 = -1;
	R4VecProblem p;
	R4VecError	e;

	memcpy(text, data, size);
	text[size] = '\0';
	e = r4_vec_parse_text(text, x, MAX_DIM, &dim, &p);
	ASSERT(e == p.error);
	if (e != R4V_OK)
	{
		ASSERT(dim == 0);
		ASSERT(p.pos <= strlen(text));
		ASSERT(p.pos + p.len <= strlen(text));
		free(text);
		return;
	}
	ASSERT(dim >= 1 && dim <= MAX_DIM);
	{
		char	   *out = malloc((size_t) dim * 20 + 3);
		size_t		n = 0;

		out[n++] = '[';
		for (int i = 0; i < dim; i++)
		{
			ASSERT(isfinite(x[i]));
			n += (size_t) sprintf(out + n, "%s%.9g", i ? "," : "", (double) x[i]);
		}
		out[n++] = ']';
		out[n] = '\0';
		ASSERT(r4_vec_parse_text(out, y, MAX_DIM, &dim2, &p) == R4V_OK);
		ASSERT(dim2 == dim);
		ASSERT(memcmp(x, y, sizeof(float) * (size_t) dim) == 0);
		free(out);
	}
	free(text);
}

static void
check_binary(const uint8_t *data, size_t size)
{
	float		x[MAX_DIM];
	int			dim = -1;
	size_t		consumed = 99;
	R4VecProblem p;
	R4VecError	e = r4_vec_parse_binary(data, size, x, MAX_DIM, &dim, &consumed, &p);

	ASSERT(e == p.error);
	if (e != R4V_OK)
	{
		ASSERT(dim == 0 && consumed == 0);
		return;
	}
	ASSERT(dim >= 1 && dim <= MAX_DIM);
	ASSERT(consumed == 4 + 4 * (size_t) dim && consumed <= size);
	ASSERT(data[0] == (uint8_t) (dim >> 8) && data[1] == (uint8_t) dim && data[2] == 0 && data[3] == 0);
	for (int i = 0; i < dim; i++)
	{
		uint32_t	bits;

		ASSERT(isfinite(x[i]));
		memcpy(&bits, &x[i], sizeof(bits));
		ASSERT(data[4 + 4 * i] == (uint8_t) (bits >> 24) && data[5 + 4 * i] == (uint8_t) (bits >> 16) &&
			   data[6 + 4 * i] == (uint8_t) (bits >> 8) && data[7 + 4 * i] == (uint8_t) bits);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_text(data, size);
	check_binary(data, size);
	return 0;
}
