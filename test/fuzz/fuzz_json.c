/*
 * fuzz_json.c — libFuzzer target for the strict JSON parser.
 *
 * Besides not crashing, a successful parse must produce a tree whose
 * invariants hold: NUL-terminated strings of the stated length, valid UTF-8
 * everywhere, unique keys that r4_json_get finds, finite numbers.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/json.h"

/* Stop the fuzzer with a crash libFuzzer reports, when an invariant breaks. */
#define ASSERT(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* Check one node and its children. */
static void
check_tree(const R4Json *v, int depth)
{
	size_t		i;
	int64_t		x;

	ASSERT(depth <= R4_JSON_MAX_DEPTH);
	switch (v->type)
	{
		case R4J_NULL:
		case R4J_TRUE:
		case R4J_FALSE:
			break;
		case R4J_NUMBER:
			ASSERT(isfinite(v->number));
			ASSERT(v->raw != NULL && v->raw[0] != '\0');
			if (r4_json_get_int64(v, &x) && r4_json_is_integer_literal(v) &&
				x > -(INT64_C(1) << 53) && x < (INT64_C(1) << 53))
				ASSERT((double) x == v->number);
			break;
		case R4J_STRING:
			ASSERT(v->string != NULL && v->string[v->string_len] == '\0');
			ASSERT(r4_utf8_valid(v->string, v->string_len, NULL));
			break;
		case R4J_ARRAY:
			ASSERT(v->count == 0 || v->items != NULL);
			for (i = 0; i < v->count; i++)
				check_tree(&v->items[i], depth + 1);
			break;
		case R4J_OBJECT:
			for (i = 0; i < v->count; i++)
			{
				ASSERT(v->keys[i][v->key_lens[i]] == '\0');
				ASSERT(r4_utf8_valid(v->keys[i], v->key_lens[i], NULL));
				/* Keys are unique, so lookup finds exactly this entry. */
				if (strlen(v->keys[i]) == v->key_lens[i])
					ASSERT(r4_json_get(v, v->keys[i]) == &v->items[i]);
				check_tree(&v->items[i], depth + 1);
			}
			break;
		default:
			ASSERT(0);
	}
}

/* Parse one input and check the tree or the error. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	R4Json	   *v = NULL;
	R4Error		err;
	R4Status	st;

	r4_error_clear(&err);
	st = r4_json_parse((const char *) data, size, &v, &err);
	if (st == R4_OK)
	{
		ASSERT(v != NULL);
		/* Anything accepted is valid UTF-8 as a whole. */
		ASSERT(r4_utf8_valid((const char *) data, size, NULL));
		check_tree(v, 0);
		r4_json_free(v);
	}
	else
	{
		ASSERT(v == NULL);
		ASSERT(st == R4_ERR_INVALID || st == R4_ERR_LIMIT || st == R4_ERR_NOMEM);
		ASSERT(err.message[0] != '\0');
		ASSERT(r4_utf8_valid(err.message, strlen(err.message), NULL));
	}
	return 0;
}
