/*
 * test_json.c — unit tests for the strict JSON parser.
 */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/json.h"
#include "unit.h"

/* Parse a NUL-terminated literal through an exact-size heap copy, so ASan sees over-reads. */
static R4Status
parse_n(const char *text, size_t len, R4Json **out, R4Error *err)
{
	char	   *copy = malloc(len ? len : 1);
	R4Status	st;

	memcpy(copy, text, len);
	r4_error_clear(err);
	st = r4_json_parse(copy, len, out, err);
	free(copy);
	return st;
}

/* Parse a NUL-terminated literal. */
static R4Status
parse(const char *text, R4Json **out, R4Error *err)
{
	return parse_n(text, strlen(text), out, err);
}

/* Expect text to be rejected with the given status; returns the message for further checks. */
static const char *
expect_fail(const char *text, size_t len, R4Status want)
{
	static R4Error err;
	R4Json	   *v = (R4Json *) 1;
	R4Status	st = parse_n(text, len, &v, &err);

	CHECK_MSG(st == want, "text \"%.*s\": status %s, wanted %s (%s)", (int) (len > 60 ? 60 : len),
			  text, r4_status_name(st), r4_status_name(want), err.message);
	CHECK(v == NULL);
	if (st == R4_OK)
		r4_json_free(v);
	return err.message;
}

#define EXPECT_INVALID(lit) expect_fail((lit), sizeof(lit) - 1, R4_ERR_INVALID)

/* Check arrays, objects, key order and lookup. */
static void
test_structure(void)
{
	R4Json	   *v;
	R4Error		err;
	const R4Json *a;

	CHECK_EQ_INT(parse("{\"b\": [1, true, false, null, \"x\", {}], \"a\": {\"c\": []}}", &v, &err), R4_OK);
	CHECK_EQ_INT(v->type, R4J_OBJECT);
	CHECK_EQ_INT(v->count, 2);
	/* Keys stay in document order. */
	CHECK(strcmp(v->keys[0], "b") == 0);
	CHECK(strcmp(v->keys[1], "a") == 0);
	a = r4_json_get(v, "b");
	CHECK(a != NULL && a->type == R4J_ARRAY && a->count == 6);
	CHECK_EQ_INT(a->items[0].type, R4J_NUMBER);
	CHECK_EQ_INT(a->items[1].type, R4J_TRUE);
	CHECK_EQ_INT(a->items[2].type, R4J_FALSE);
	CHECK_EQ_INT(a->items[3].type, R4J_NULL);
	CHECK_EQ_INT(a->items[4].type, R4J_STRING);
	CHECK_EQ_INT(a->items[5].type, R4J_OBJECT);
	CHECK_EQ_INT(a->items[5].count, 0);
	CHECK(r4_json_get(r4_json_get(v, "a"), "c") != NULL);
	CHECK(r4_json_get(v, "zz") == NULL);
	CHECK(r4_json_get(a, "b") == NULL);		/* not an object */
	CHECK(r4_json_get(NULL, "b") == NULL);
	r4_json_free(v);

	/* Scalars at top level and surrounding whitespace (only the four RFC characters). */
	CHECK_EQ_INT(parse(" \t\r\n\"s\" \n", &v, &err), R4_OK);
	CHECK(v->type == R4J_STRING && strcmp(v->string, "s") == 0);
	r4_json_free(v);
	CHECK_EQ_INT(parse("null", &v, &err), R4_OK);
	CHECK_EQ_INT(v->type, R4J_NULL);
	r4_json_free(v);
	r4_json_free(NULL);
}

/* Reject what RFC 8259 does not allow. */
static void
test_syntax_errors(void)
{
	const char *msg;

	EXPECT_INVALID("");
	EXPECT_INVALID("   ");
	EXPECT_INVALID("[1,]");
	EXPECT_INVALID("{\"a\":1,}");
	EXPECT_INVALID("[1 2]");
	EXPECT_INVALID("{\"a\" 1}");
	EXPECT_INVALID("{a:1}");
	EXPECT_INVALID("{'a':1}");
	EXPECT_INVALID("[1] // c");
	EXPECT_INVALID("/* c */ 1");
	EXPECT_INVALID("1 2");
	EXPECT_INVALID("tru");
	EXPECT_INVALID("nul");
	EXPECT_INVALID("True");
	EXPECT_INVALID("[,1]");
	EXPECT_INVALID("{,}");
	EXPECT_INVALID("\f1");		/* form feed is not JSON whitespace */
	EXPECT_INVALID("\xEF\xBB\xBF{}");	/* byte-order mark */
	EXPECT_INVALID("[\"a\"]]");
	EXPECT_INVALID("{\"a\":1}}");
	msg = EXPECT_INVALID("[1,x]");
	CHECK_STR_CONTAINS(msg, "byte 3");
	/* A NUL byte inside the given length is not whitespace. */
	expect_fail("1\0", 2, R4_ERR_INVALID);
}

/* Decode escapes and surrogate pairs; reject malformed ones. */
static void
test_strings(void)
{
	R4Json	   *v;
	R4Error		err;

	CHECK_EQ_INT(parse("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", &v, &err), R4_OK);
	CHECK(v->string_len == 15 && memcmp(v->string, "\" \\ / \b \f \n \r \t", 16) == 0);
	r4_json_free(v);

	/* \u escapes of each UTF-8 length, upper and lower case hex. */
	CHECK_EQ_INT(parse("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"", &v, &err), R4_OK);
	CHECK_EQ_INT(v->string_len, 1 + 2 + 3 + 4);
	CHECK(memcmp(v->string, "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 10) == 0);
	r4_json_free(v);

	/* Highest code point, U+10FFFF = \udbff\udfff. */
	CHECK_EQ_INT(parse("\"\\udbff\\udfff\"", &v, &err), R4_OK);
	CHECK(v->string_len == 4 && memcmp(v->string, "\xF4\x8F\xBF\xBF", 4) == 0);
	r4_json_free(v);

	/* An escaped NUL is kept; the length tells. */
	CHECK_EQ_INT(parse("\"a\\u0000b\"", &v, &err), R4_OK);
	CHECK(v->string_len == 3 && v->string[1] == '\0' && v->string[2] == 'b' && v->string[3] == '\0');
	r4_json_free(v);

	/* Raw UTF-8 passes through unchanged. */
	CHECK_EQ_INT(parse("\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"", &v, &err), R4_OK);
	CHECK(v->string_len == 9 && memcmp(v->string, "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 9) == 0);
	r4_json_free(v);

	CHECK_EQ_INT(parse("\"\"", &v, &err), R4_OK);
	CHECK(v->string_len == 0 && v->string[0] == '\0');
	r4_json_free(v);

	/* Surrogates must pair up. */
	EXPECT_INVALID("\"\\ud800\"");
	EXPECT_INVALID("\"\\ud800x\"");
	EXPECT_INVALID("\"\\ud800\\u0041\"");
	EXPECT_INVALID("\"\\ud800\\ud800\"");
	EXPECT_INVALID("\"\\udc00\"");
	EXPECT_INVALID("\"\\ud800\\");
	EXPECT_INVALID("\"\\ud800\\u");

	/* Bad escapes and bare control characters. */
	EXPECT_INVALID("\"\\x\"");
	EXPECT_INVALID("\"\\U0041\"");
	EXPECT_INVALID("\"\\u12G4\"");
	EXPECT_INVALID("\"\\u12\"");
	EXPECT_INVALID("\"\\u");
	EXPECT_INVALID("\"\\");
	EXPECT_INVALID("\"a\tb\"");
	EXPECT_INVALID("\"a\nb\"");
	EXPECT_INVALID("\"\x1f\"");
	expect_fail("\"a\0b\"", 5, R4_ERR_INVALID);
	EXPECT_INVALID("\"abc");
}

/* Reject malformed UTF-8 inside and outside strings. */
static void
test_utf8(void)
{
	size_t		bad = 99;

	/* Malformed UTF-8 inside strings. */
	EXPECT_INVALID("\"\xC0\x80\"");		/* overlong NUL */
	EXPECT_INVALID("\"\xC1\xBF\"");		/* overlong */
	EXPECT_INVALID("\"\xE0\x80\x80\"");	/* overlong 3-byte */
	EXPECT_INVALID("\"\xF0\x80\x80\x80\"");	/* overlong 4-byte */
	EXPECT_INVALID("\"\xED\xA0\x80\"");	/* UTF-16 surrogate D800 */
	EXPECT_INVALID("\"\xF4\x90\x80\x80\"");	/* above U+10FFFF */
	EXPECT_INVALID("\"\xF5\x80\x80\x80\"");
	EXPECT_INVALID("\"\x80\"");			/* lone continuation */
	EXPECT_INVALID("\"\xE2\x82\"");		/* truncated sequence */
	EXPECT_INVALID("\"\xE2\x82");
	EXPECT_INVALID("\"\xFE\"");
	EXPECT_INVALID("\"\xFF\"");
	/* Non-ASCII bytes outside strings. */
	EXPECT_INVALID("\xC3\xA9");
	EXPECT_INVALID("[1]\xC3\xA9");

	CHECK(r4_utf8_valid("abc\xC3\xA9\xEF\xBF\xBF\xF4\x8F\xBF\xBF", 12, &bad));
	CHECK(!r4_utf8_valid("ab\xED\xBF\xBF", 5, &bad));
	CHECK_EQ_INT(bad, 2);
	CHECK(!r4_utf8_valid("abc\xF0\x9F\x98", 6, &bad));
	CHECK_EQ_INT(bad, 3);
	CHECK(r4_utf8_valid("", 0, NULL));
}

/* Accept 64 nesting levels and refuse 65 as a limit. */
static void
test_depth(void)
{
	char		buf[512];
	R4Json	   *v;
	R4Error		err;
	int			i;
	const R4Json *cur;

	/* 64 nested arrays is the limit; 65 is refused as a limit, not a syntax error. */
	for (i = 0; i < 64; i++)
		buf[i] = '[';
	for (i = 0; i < 64; i++)
		buf[64 + i] = ']';
	CHECK_EQ_INT(parse_n(buf, 128, &v, &err), R4_OK);
	for (cur = v, i = 1; cur->count == 1; cur = &cur->items[0])
		i++;
	CHECK_EQ_INT(i, 64);
	r4_json_free(v);

	for (i = 0; i < 65; i++)
		buf[i] = '[';
	for (i = 0; i < 65; i++)
		buf[65 + i] = ']';
	CHECK_EQ_INT(parse_n(buf, 130, &v, &err), R4_ERR_LIMIT);
	CHECK(v == NULL);
	CHECK_STR_CONTAINS(err.message, "64");

	/* Objects count too. */
	{
		size_t		n = 0;

		for (i = 0; i < 65; i++)
		{
			memcpy(buf + n, "{\"k\":", 5);
			n += 5;
		}
		buf[n++] = '1';
		for (i = 0; i < 65; i++)
			buf[n++] = '}';
		CHECK_EQ_INT(parse_n(buf, n, &v, &err), R4_ERR_LIMIT);
		/* Drop one level: fits. */
		CHECK_EQ_INT(parse_n(buf + 5, n - 6, &v, &err), R4_OK);
		r4_json_free(v);
	}
}

/* Parse numbers exactly as strtod would; refuse overflow and bad syntax. */
static void
test_numbers(void)
{
	R4Json	   *v;
	R4Error		err;
	const char *msg;

	CHECK_EQ_INT(parse("-0", &v, &err), R4_OK);
	CHECK(v->type == R4J_NUMBER && v->number == 0.0 && signbit(v->number));
	CHECK(strcmp(v->raw, "-0") == 0);
	r4_json_free(v);

	CHECK_EQ_INT(parse("[3.14, 1E2, -12.5e-1, 1e308, 1e-400, 0.5e+1, 4.9406564584124654e-324]", &v, &err), R4_OK);
	CHECK(v->items[0].number == 3.14);
	CHECK(v->items[1].number == 100.0);
	CHECK(v->items[2].number == -1.25);
	CHECK(v->items[3].number == 1e308);
	CHECK(v->items[4].number == 0.0);	/* underflow rounds to zero, still a number */
	CHECK(v->items[5].number == 5.0);
	CHECK(v->items[6].number > 0.0 && v->items[6].number < DBL_MIN);
	CHECK(strcmp(v->items[2].raw, "-12.5e-1") == 0);
	r4_json_free(v);

	/* Too large for a double: refused, with a message saying so. */
	msg = EXPECT_INVALID("1e309");
	CHECK_STR_CONTAINS(msg, "too large");
	EXPECT_INVALID("-1e309");
	EXPECT_INVALID("[1.8e308]");

	EXPECT_INVALID("01");
	EXPECT_INVALID("-01");
	EXPECT_INVALID("1.");
	EXPECT_INVALID(".5");
	EXPECT_INVALID("+1");
	EXPECT_INVALID("1e");
	EXPECT_INVALID("1e+");
	EXPECT_INVALID("-");
	EXPECT_INVALID("--1");
	EXPECT_INVALID("0x10");
	EXPECT_INVALID("Infinity");
	EXPECT_INVALID("-Infinity");
	EXPECT_INVALID("NaN");
	EXPECT_INVALID("1.5e3.2");
	EXPECT_INVALID("1.e5");
	EXPECT_INVALID("[1,-]");
}

/* Parse one number and fetch it as int64. */
static bool
int_of(const char *text, int64_t *out)
{
	R4Json	   *v;
	R4Error		err;
	bool		ok;

	if (parse(text, &v, &err) != R4_OK)
	{
		CHECK_MSG(0, "could not parse %s: %s", text, err.message);
		return false;
	}
	ok = r4_json_get_int64(v, out);
	r4_json_free(v);
	return ok;
}

/* Read exact int64 values from number text. */
static void
test_int64(void)
{
	int64_t		x = 0;
	R4Json	   *v;
	R4Error		err;

	CHECK(int_of("0", &x) && x == 0);
	CHECK(int_of("-0", &x) && x == 0);
	CHECK(int_of("42", &x) && x == 42);
	CHECK(int_of("-42", &x) && x == -42);
	CHECK(int_of("9223372036854775807", &x) && x == INT64_MAX);
	CHECK(int_of("-9223372036854775808", &x) && x == INT64_MIN);
	CHECK(!int_of("9223372036854775808", &x));
	CHECK(!int_of("-9223372036854775809", &x));
	CHECK(!int_of("18446744073709551616", &x));
	CHECK(!int_of("100000000000000000000", &x));
	/* 2^53 + 1 is not a double, but is exact from the text. */
	CHECK(int_of("9007199254740993", &x) && x == INT64_C(9007199254740993));
	CHECK(int_of("1e3", &x) && x == 1000);
	CHECK(int_of("2.50e1", &x) && x == 25);
	CHECK(int_of("100e-2", &x) && x == 1);
	CHECK(int_of("0.0", &x) && x == 0);
	CHECK(int_of("1.0", &x) && x == 1);
	CHECK(int_of("12345678901234567890e-1", &x) && x == INT64_C(1234567890123456789));
	CHECK(int_of("9.223372036854775807e18", &x) && x == INT64_MAX);
	CHECK(!int_of("9.223372036854775808e18", &x));
	CHECK(int_of("0e99999999999999", &x) && x == 0);
	CHECK(int_of("0.000e-7", &x) && x == 0);
	CHECK(!int_of("1.5", &x));
	CHECK(!int_of("1e-1", &x));
	CHECK(!int_of("1e19", &x));
	CHECK(!int_of("1e300", &x));
	CHECK(!int_of("1e-99999999999999", &x));
	CHECK(int_of("0.0e1000000000000000000000", &x) && x == 0);

	CHECK_EQ_INT(parse("[\"1\", true, null, 7, 7.0, -7e0]", &v, &err), R4_OK);
	CHECK(!r4_json_get_int64(&v->items[0], &x));
	CHECK(!r4_json_get_int64(&v->items[1], &x));
	CHECK(!r4_json_get_int64(&v->items[2], &x));
	CHECK(!r4_json_get_int64(v, &x));
	CHECK(!r4_json_get_int64(NULL, &x));
	CHECK(r4_json_is_integer_literal(&v->items[3]));
	CHECK(!r4_json_is_integer_literal(&v->items[4]));
	CHECK(!r4_json_is_integer_literal(&v->items[5]));
	CHECK(!r4_json_is_integer_literal(&v->items[0]));
	CHECK(r4_json_get_int64(&v->items[5], &x) && x == -7);
	r4_json_free(v);
}

/* Reject duplicate keys, comparing decoded bytes. */
static void
test_duplicates(void)
{
	const char *msg;
	R4Json	   *v;
	R4Error		err;
	char		big[4000];
	size_t		n = 0;
	int			i;

	msg = EXPECT_INVALID("{\"a\":1,\"a\":2}");
	CHECK_STR_CONTAINS(msg, "duplicate key \"a\"");
	msg = EXPECT_INVALID("{\"x\":{\"dtype\":1,\"dtype\":1}}");
	CHECK_STR_CONTAINS(msg, "\"dtype\"");
	/* Equal after unescaping. */
	EXPECT_INVALID("{\"a\":1,\"\\u0061\":2}");
	EXPECT_INVALID("{\"a\\u0000b\":1,\"a\\u0000b\":2}");

	/* Keys differing after an embedded NUL, or by a NUL, are distinct. */
	CHECK_EQ_INT(parse("{\"a\\u0000b\":1,\"a\\u0000c\":2,\"a\":3,\"a\\u0000\":4}", &v, &err), R4_OK);
	CHECK_EQ_INT(v->count, 4);
	CHECK_EQ_INT(v->key_lens[0], 3);
	CHECK(r4_json_get(v, "a") == &v->items[2]);
	r4_json_free(v);

	/* Many keys, duplicate far apart (the sorted check). */
	big[n++] = '{';
	for (i = 0; i < 200; i++)
		n += (size_t) snprintf(big + n, sizeof(big) - n, "\"k%d\":%d,", i, i);
	n += (size_t) snprintf(big + n, sizeof(big) - n, "\"k7\":0}");
	msg = expect_fail(big, n, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "\"k7\"");
	/* Same without the duplicate parses. */
	big[n - 8] = '}';
	CHECK_EQ_INT(parse_n(big, n - 7, &v, &err), R4_OK);
	CHECK_EQ_INT(v->count, 200);
	r4_json_free(v);
}

/* Refuse every proper prefix of valid documents. */
static void
test_truncation(void)
{
	static const char *docs[] = {
		"{\"a\": [1, -2.5e3, true, false, null], \"b\\u00e9\": {\"c\": \"\\ud83d\\ude00x\\n\"}}",
		"[\"\xE2\x82\xAC\", [[]], {}, 0, -0.0e-0, \"\\\"\"]",
		"{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
	};
	size_t		d;

	for (d = 0; d < sizeof(docs) / sizeof(docs[0]); d++)
	{
		size_t		len = strlen(docs[d]);
		size_t		k;
		R4Json	   *v;
		R4Error		err;

		CHECK_EQ_INT(parse_n(docs[d], len, &v, &err), R4_OK);
		r4_json_free(v);
		/* Every proper prefix of an object or array is incomplete. */
		for (k = 0; k < len; k++)
		{
			R4Status	st = parse_n(docs[d], k, &v, &err);

			CHECK_MSG(st == R4_ERR_INVALID && v == NULL, "doc %zu prefix %zu: %s", d, k, r4_status_name(st));
		}
	}
}

/* Refuse input beyond the size limit. */
static void
test_limits(void)
{
	R4Json	   *v;
	R4Error		err;
	char		one = '1';

	/* The size check comes before any byte is read. */
	r4_error_clear(&err);
	CHECK_EQ_INT(r4_json_parse(&one, (size_t) R4_JSON_MAX_INPUT + 1, &v, &err), R4_ERR_LIMIT);
	CHECK(v == NULL);
	CHECK_STR_CONTAINS(err.message, "100000000");
}

/* Shorten and sanitise names for messages. */
static void
test_excerpt(void)
{
	char		buf[16];
	char		name[200];

	r4_text_excerpt("short", 5, buf, sizeof(buf));
	CHECK(strcmp(buf, "short") == 0);
	r4_text_excerpt("a\nb\x01" "c", 5, buf, sizeof(buf));
	CHECK(strcmp(buf, "a?b?c") == 0);
	r4_text_excerpt("abcdefghijklmnopqrstuvwxyz", 26, buf, sizeof(buf));
	CHECK(strcmp(buf, "abcdefghijkl...") == 0);
	/* Never cut inside a UTF-8 character: 11 ASCII + a 2-byte char does not fit 12. */
	r4_text_excerpt("abcdefghijk\xC3\xA9z", 14, buf, sizeof(buf));
	CHECK(strcmp(buf, "abcdefghijk...") == 0);
	r4_text_excerpt("\xFF\xC3", 2, buf, sizeof(buf));
	CHECK(strcmp(buf, "??") == 0);
	memset(name, 'n', sizeof(name));
	r4_text_excerpt(name, sizeof(name), buf, sizeof(buf));
	CHECK(strlen(buf) == 15 && r4_utf8_valid(buf, strlen(buf), NULL));
}

/* Fail cleanly, without leaks, at every allocation. */
static void
test_out_of_memory(void)
{
	static const R4Allocator failing = {unit_failing_alloc, unit_counting_free, NULL};
	const char *doc = "{\"a\":[1,2,3,4,5,6,\"x\"],\"b\":{\"c\":null,\"d\":\"\\u00e9\",\"e\":1,\"f\":2,\"g\":3},\"h\":1.5}";
	long		budget;
	bool		succeeded = false;

	r4_set_allocator(&failing);
	for (budget = 0; budget < 1000 && !succeeded; budget++)
	{
		R4Json	   *v;
		R4Error		err;
		R4Status	st;

		unit_alloc_budget = budget;
		unit_alloc_live = 0;
		st = r4_json_parse(doc, strlen(doc), &v, &err);
		if (st == R4_OK)
		{
			succeeded = true;
			r4_json_free(v);
		}
		else
			CHECK_MSG(st == R4_ERR_NOMEM, "budget %ld: %s", budget, err.message);
		CHECK_MSG(unit_alloc_live == 0, "budget %ld: %ld blocks leaked", budget, unit_alloc_live);
	}
	r4_set_allocator(NULL);
	CHECK(succeeded);
}

/* Run the JSON tests. */
int
main(void)
{
	RUN(test_structure);
	RUN(test_syntax_errors);
	RUN(test_strings);
	RUN(test_utf8);
	RUN(test_depth);
	RUN(test_numbers);
	RUN(test_int64);
	RUN(test_duplicates);
	RUN(test_truncation);
	RUN(test_limits);
	RUN(test_excerpt);
	RUN(test_out_of_memory);
	return unit_summary("json");
}
