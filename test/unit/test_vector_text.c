/*
 * test_vector_text.c — the embedding type's text and binary parsers.
 */
#include <math.h>
#include <string.h>

#include "rai4eo/vector_text.h"
#include "unit.h"

static float x[8];

static R4VecError
text(const char *s, int *dim)
{
	R4VecProblem p;

	return r4_vec_parse_text(s, x, 8, dim, &p);
}

static void
test_text(void)
{
	int			dim;
	R4VecProblem p;

	CHECK_EQ_INT(text(" [ 1 , -2.5e3,\t0x10 ]\n", &dim), R4V_OK);
	CHECK_EQ_INT(dim, 3);
	CHECK(x[0] == 1.0f && x[1] == -2500.0f && x[2] == 16.0f);
	/* underflow rounds like pgvector; overflow is an error naming the element */
	CHECK_EQ_INT(text("[1e-46,1]", &dim), R4V_OK);
	CHECK(x[0] == 0.0f && x[1] == 1.0f);
	CHECK_EQ_INT(r4_vec_parse_text("[1, 4e38]", x, 8, &dim, &p), R4V_OUT_OF_RANGE);
	CHECK_EQ_INT(p.pos, 4);
	CHECK_EQ_INT(p.len, 4);
	CHECK_EQ_INT(text("[nan]", &dim), R4V_NAN);
	CHECK_EQ_INT(text("[-inf]", &dim), R4V_INFINITE);
	CHECK_EQ_INT(text("1]", &dim), R4V_NO_BRACKET);
	CHECK_EQ_INT(text("[]", &dim), R4V_EMPTY);
	CHECK_EQ_INT(text("[1,,2]", &dim), R4V_NOT_A_NUMBER);
	CHECK_EQ_INT(text("[1,]", &dim), R4V_NOT_A_NUMBER);
	CHECK_EQ_INT(text("[1 2]", &dim), R4V_BAD_SEPARATOR);
	CHECK_EQ_INT(text("[1", &dim), R4V_BAD_SEPARATOR);
	CHECK_EQ_INT(text("[1] x", &dim), R4V_JUNK_AFTER);
	CHECK_EQ_INT(text("[1,2,3,4,5,6,7,8]", &dim), R4V_OK);
	CHECK_EQ_INT(text("[1,2,3,4,5,6,7,8,9]", &dim), R4V_TOO_MANY);
	CHECK_EQ_INT(dim, 0);
}

static void
test_binary(void)
{
	static const uint8_t ok[] = {0, 2, 0, 0, 0x3f, 0x80, 0, 0, 0xc0, 0, 0, 0, 0xee};
	static const uint8_t reserved[] = {0, 1, 0, 1, 0x3f, 0x80, 0, 0};
	static const uint8_t zero[] = {0, 0, 0, 0};
	static const uint8_t neg[] = {0xff, 0xff, 0, 0};
	static const uint8_t many[] = {0, 9, 0, 0};
	static const uint8_t nan[] = {0, 1, 0, 0, 0x7f, 0xc0, 0, 0};
	int			dim;
	size_t		used;
	R4VecProblem p;

	CHECK_EQ_INT(r4_vec_parse_binary(ok, sizeof(ok), x, 8, &dim, &used, &p), R4V_OK);
	CHECK(dim == 2 && used == 12 && x[0] == 1.0f && x[1] == -2.0f);
	CHECK_EQ_INT(r4_vec_parse_binary(ok, 11, x, 8, &dim, &used, &p), R4V_SHORT);
	CHECK_EQ_INT(r4_vec_parse_binary(ok, 3, x, 8, &dim, &used, &p), R4V_SHORT);
	CHECK_EQ_INT(r4_vec_parse_binary(reserved, sizeof(reserved), x, 8, &dim, &used, &p), R4V_RESERVED);
	CHECK_EQ_INT(p.value, 1);
	CHECK_EQ_INT(r4_vec_parse_binary(zero, sizeof(zero), x, 8, &dim, &used, &p), R4V_EMPTY);
	CHECK_EQ_INT(r4_vec_parse_binary(neg, sizeof(neg), x, 8, &dim, &used, &p), R4V_EMPTY);
	CHECK_EQ_INT(p.value, -1);
	CHECK_EQ_INT(r4_vec_parse_binary(many, sizeof(many), x, 8, &dim, &used, &p), R4V_TOO_MANY);
	CHECK_EQ_INT(r4_vec_parse_binary(nan, sizeof(nan), x, 8, &dim, &used, &p), R4V_NAN);
	CHECK(dim == 0 && used == 0);
}

int
main(void)
{
	RUN(test_text);
	RUN(test_binary);
	return unit_summary("vector_text");
}
