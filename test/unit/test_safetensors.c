/*
 * test_safetensors.c — unit tests for the safetensors reader and the
 * F16/BF16 conversions.  Files are built here by a tiny writer.
 */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/safetensors.h"
#include "unit.h"

/*
 * Build a file: 8-byte little-endian length field (header_len_field), the
 * header text, then data.  The result sits at buffer offset `shift` inside
 * an exact-size allocation, so ASan catches reads past the end and shift 1
 * makes everything unaligned.  *base is what to free.
 */
static uint8_t *
build_raw(uint64_t header_len_field, const char *header, size_t header_len,
		  const void *data, size_t data_len, size_t shift, size_t *len, uint8_t **base)
{
	size_t		total = 8 + header_len + data_len;
	uint8_t    *b = malloc(shift + total + (total == 0));
	uint8_t    *p = b + shift;
	int			i;

	memset(b, 0xAB, shift);
	for (i = 0; i < 8; i++)
		p[i] = (uint8_t) (header_len_field >> (8 * i));
	memcpy(p + 8, header, header_len);
	if (data_len > 0)
		memcpy(p + 8 + header_len, data, data_len);
	*len = total;
	*base = b;
	return p;
}

/* Parse header + data as a file and return the status; out holds the result. */
static R4Status
parse_file(const char *header, const void *data, size_t data_len, R4SafeTensors *out, R4Error *err)
{
	size_t		len;
	uint8_t    *base;
	uint8_t    *p = build_raw(strlen(header), header, strlen(header), data, data_len, 0, &len, &base);
	R4Status	st;

	r4_error_clear(err);
	st = r4_safetensors_parse(p, len, out, err);
	/* Successful results point into the buffer, so only failures free it here. */
	if (st == R4_OK)
		r4_safetensors_free(out);
	free(base);
	return st;
}

/* Expect a header/data pair to be refused; returns the message. */
static const char *
expect_fail(const char *header, const void *data, size_t data_len, R4Status want)
{
	static R4Error err;
	R4SafeTensors st;
	R4Status	s = parse_file(header, data, data_len, &st, &err);

	CHECK_MSG(s == want, "header %s: status %s, wanted %s (%s)", header, r4_status_name(s),
			  r4_status_name(want), err.message);
	/* A failed parse leaves the struct zeroed. */
	CHECK(st.tensors == NULL && st.count == 0 && st.meta_keys == NULL && st.meta_count == 0);
	return err.message;
}

/* Expect a header/data pair to parse. */
static void
expect_ok(const char *header, const void *data, size_t data_len)
{
	R4Error		err;
	R4SafeTensors st;
	R4Status	s = parse_file(header, data, data_len, &st, &err);

	CHECK_MSG(s == R4_OK, "header %s: %s", header, err.message);
}

static uint8_t zeros[4096];

/* Store a float little-endian. */
static void
put_f32(uint8_t *dst, float f)
{
	uint32_t	bits;
	int			i;

	memcpy(&bits, &f, 4);
	for (i = 0; i < 4; i++)
		dst[i] = (uint8_t) (bits >> (8 * i));
}

/* Parse a small valid file and read it back. */
static void
test_valid_file(void)
{
	/* Tensors listed out of offset order, metadata first, one extra ignored property. */
	const char *header =
		"{\"__metadata__\":{\"format\":\"pt\",\"arch\":\"vit_small\",\"bands\":\"[4,3,2]\"},"
		"\"z.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
		"\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24],\"note\":[1,{}]},"
		"\"m.half\":{\"dtype\":\"F16\",\"shape\":[1,1,2],\"data_offsets\":[32,36]}}";
	uint8_t		data[36];
	size_t		len;
	uint8_t    *base;
	uint8_t    *p;
	R4SafeTensors st;
	R4Error		err;
	const R4StTensor *t;
	float		out[6];
	int			i;

	for (i = 0; i < 8; i++)
		put_f32(data + 4 * i, (float) i + 0.5f);
	data[32] = 0x00;
	data[33] = 0x3C;			/* 1.0 */
	data[34] = 0x00;
	data[35] = 0xC0;			/* -2.0 */
	p = build_raw(strlen(header), header, strlen(header), data, sizeof(data), 0, &len, &base);
	r4_error_clear(&err);
	CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_OK);
	CHECK_EQ_INT(st.count, 3);
	/* Sorted by name. */
	CHECK(strcmp(st.tensors[0].name, "a.weight") == 0);
	CHECK(strcmp(st.tensors[1].name, "m.half") == 0);
	CHECK(strcmp(st.tensors[2].name, "z.bias") == 0);

	t = r4_safetensors_find(&st, "a.weight");
	CHECK(t == &st.tensors[0]);
	CHECK_EQ_INT(t->dtype, R4_DT_F32);
	CHECK_EQ_INT(t->ndim, 2);
	CHECK(t->shape[0] == 2 && t->shape[1] == 3);
	CHECK_EQ_INT(t->numel, 6);
	CHECK_EQ_INT(t->nbytes, 24);
	CHECK(t->data == p + 8 + strlen(header));
	CHECK_EQ_INT(r4_tensor_to_f32(t, out, &err), R4_OK);
	for (i = 0; i < 6; i++)
		CHECK(out[i] == (float) i + 0.5f);

	t = r4_safetensors_find(&st, "z.bias");
	CHECK(t != NULL && t->data == p + 8 + strlen(header) + 24 && t->numel == 2);
	CHECK_EQ_INT(r4_tensor_to_f32(t, out, &err), R4_OK);
	CHECK(out[0] == 6.5f && out[1] == 7.5f);

	t = r4_safetensors_find(&st, "m.half");
	CHECK(t != NULL && t->ndim == 3 && t->numel == 2 && t->nbytes == 4);
	CHECK_EQ_INT(r4_tensor_to_f32(t, out, &err), R4_OK);
	CHECK(out[0] == 1.0f && out[1] == -2.0f);

	CHECK(r4_safetensors_find(&st, "a") == NULL);
	CHECK(r4_safetensors_find(&st, "zz") == NULL);
	CHECK(r4_safetensors_find(&st, "") == NULL);
	CHECK(r4_safetensors_find(NULL, "a.weight") == NULL);

	CHECK_EQ_INT(st.meta_count, 3);
	CHECK(strcmp(st.meta_keys[0], "format") == 0);
	CHECK(strcmp(r4_safetensors_meta(&st, "arch"), "vit_small") == 0);
	CHECK(strcmp(r4_safetensors_meta(&st, "bands"), "[4,3,2]") == 0);
	CHECK(r4_safetensors_meta(&st, "nope") == NULL);

	r4_safetensors_free(&st);
	CHECK(st.tensors == NULL && st.count == 0 && st.meta_count == 0);
	r4_safetensors_free(&st);	/* twice is fine: zeroed */
	free(base);
}

/* Accept whitespace around the header object, nothing else. */
static void
test_whitespace(void)
{
	const char *entry = "\"w\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}";
	char		h[256];

	/* Leading JSON whitespace (writers padding for alignment) and trailing spaces. */
	snprintf(h, sizeof(h), "  \n\t\r{%s}", entry);
	expect_ok(h, zeros, 3);
	snprintf(h, sizeof(h), "{%s}       ", entry);
	expect_ok(h, zeros, 3);
	snprintf(h, sizeof(h), " { %s }\n \t ", entry);
	expect_ok(h, zeros, 3);
	/* The writer pads the header with spaces to a multiple of 8. */
	{
		size_t		n;

		snprintf(h, sizeof(h), "{%s}", entry);
		n = strlen(h);
		while (n % 8 != 0)
			h[n++] = ' ';
		h[n] = '\0';
		expect_ok(h, zeros, 3);
	}
	/* NUL padding or other junk after the object is not JSON. */
	{
		size_t		len;
		uint8_t    *base;
		uint8_t    *p;
		R4SafeTensors st;
		R4Error		err;
		char		hz[128];
		size_t		hn;

		snprintf(hz, sizeof(hz), "{%s}", entry);
		hn = strlen(hz);
		hz[hn++] = '\0';
		p = build_raw(hn, hz, hn, zeros, 3, 0, &len, &base);
		CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_ERR_INVALID);
		free(base);
	}
	snprintf(h, sizeof(h), "{%s}x", entry);
	expect_fail(h, zeros, 3, R4_ERR_INVALID);
	snprintf(h, sizeof(h), "\f{%s}", entry);
	expect_fail(h, zeros, 3, R4_ERR_INVALID);
}

/* Check the header length field against limit and buffer. */
static void
test_length_field(void)
{
	size_t		len;
	uint8_t    *base;
	uint8_t    *p;
	R4SafeTensors st;
	R4Error		err;
	const char *h = "{}";

	/* Fewer than 8 bytes. */
	p = build_raw(0, "", 0, NULL, 0, 0, &len, &base);
	CHECK_EQ_INT(r4_safetensors_parse(p, 0, &st, &err), R4_ERR_INVALID);
	CHECK_EQ_INT(r4_safetensors_parse(p, 7, &st, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "8");
	free(base);

	/* Header length above the 100,000,000-byte limit: LIMIT, checked before the buffer size. */
	p = build_raw(100000001, h, 2, NULL, 0, 0, &len, &base);
	CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_ERR_LIMIT);
	CHECK_STR_CONTAINS(err.message, "100000001");
	free(base);
	p = build_raw(UINT64_MAX, h, 2, NULL, 0, 0, &len, &base);
	CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_ERR_LIMIT);
	free(base);
	/* Exactly the limit is allowed by size, but runs past this buffer. */
	p = build_raw(100000000, h, 2, NULL, 0, 0, &len, &base);
	CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_ERR_INVALID);
	free(base);

	/* 8 + N beyond the buffer, by one byte. */
	p = build_raw(3, h, 2, NULL, 0, 0, &len, &base);
	CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "past the end");
	free(base);

	/* N = 0: an empty header is not a JSON object. */
	p = build_raw(0, "", 0, NULL, 0, 0, &len, &base);
	CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_ERR_INVALID);
	free(base);

	/* An empty file with "{}" is valid; data after it is not. */
	expect_ok("{}", NULL, 0);
	expect_ok("{\"__metadata__\":{}}", NULL, 0);
	expect_fail("{}", zeros, 1, R4_ERR_INVALID);
}

/* Require a UTF-8 JSON object header without duplicates. */
static void
test_header_shape(void)
{
	const char *msg;

	msg = expect_fail("[]", NULL, 0, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "not a JSON object");
	expect_fail("1", NULL, 0, R4_ERR_INVALID);
	expect_fail("\"{}\"", NULL, 0, R4_ERR_INVALID);
	expect_fail("   ", NULL, 0, R4_ERR_INVALID);
	msg = expect_fail("{\"a\":", NULL, 0, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "invalid safetensors header");
	msg = expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
					  "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
					  zeros, 2, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "duplicate key \"w\"");
	msg = expect_fail("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", NULL, 0, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "\"a\"");

	/* Invalid UTF-8 in the header, even inside a string. */
	msg = expect_fail("{\"w\xC3\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
					  zeros, 1, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "UTF-8");
	msg = expect_fail("{}  \xFF", NULL, 0, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "UTF-8");
	/* Valid UTF-8 names are fine. */
	expect_ok("{\"b\xC3\xA4nd\xE2\x82\xAC\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", zeros, 1);
	/* A NUL in a name cannot be represented in the C API. */
	msg = expect_fail("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
					  zeros, 1, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "NUL");
	/* Nesting beyond the JSON limit surfaces as a limit. */
	{
		char		deep[200];
		int			i;

		memcpy(deep, "{\"__metadata__\":", 16);
		for (i = 0; i < 70; i++)
			deep[16 + i] = '[';
		for (i = 0; i < 70; i++)
			deep[86 + i] = ']';
		deep[156] = '}';
		deep[157] = '\0';
		expect_fail(deep, NULL, 0, R4_ERR_LIMIT);
	}
}

/* Validate dtype, shape and data_offsets of each entry. */
static void
test_entries(void)
{
	const char *msg;

	msg = expect_fail("{\"w\":1}", NULL, 0, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "\"w\"");
	expect_fail("{\"w\":[]}", NULL, 0, R4_ERR_INVALID);
	msg = expect_fail("{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "dtype");
	msg = expect_fail("{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "shape");
	msg = expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", zeros, 1, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "data_offsets");

	/* dtype */
	msg = expect_fail("{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", zeros, 4, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "unknown dtype \"F33\"");
	expect_fail("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", zeros, 4, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"F32 \",\"shape\":[1],\"data_offsets\":[0,4]}}", zeros, 4, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"F32\\u0000\",\"shape\":[1],\"data_offsets\":[0,4]}}", zeros, 4, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", zeros, 4, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":null,\"shape\":[1],\"data_offsets\":[0,4]}}", zeros, 4, R4_ERR_INVALID);

	/* shape */
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	msg = expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "shape[0]");
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1e0],\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[[1]],\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	expect_ok("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", zeros, 1);
	msg = expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
					  zeros, 1, R4_ERR_LIMIT);
	CHECK_STR_CONTAINS(msg, "9 dimensions");
	/* "-0" is an integer, zero. */
	expect_ok("{\"w\":{\"dtype\":\"U8\",\"shape\":[-0],\"data_offsets\":[0,0]}}", NULL, 0);

	/* data_offsets */
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,1]}}", zeros, 1, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1]}}", zeros, 1, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{}}}", zeros, 1, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", zeros, 1, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}", zeros, 1, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,\"1\"]}}", zeros, 1, R4_ERR_INVALID);
	msg = expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,0]}}", zeros, 1, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "end before begin");

	/* Unknown properties inside an entry are ignored, as the reference reader does. */
	expect_ok("{\"w\":{\"extra\":{\"x\":[null]},\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2],\"z\":1}}", zeros, 2);
}

/* Require __metadata__ to map strings to strings. */
static void
test_metadata(void)
{
	const char *msg;
	const char *t = "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}";
	char		h[256];

	snprintf(h, sizeof(h), "{\"__metadata__\":\"x\",%s}", t);
	msg = expect_fail(h, zeros, 1, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "__metadata__");
	snprintf(h, sizeof(h), "{\"__metadata__\":null,%s}", t);
	expect_fail(h, zeros, 1, R4_ERR_INVALID);
	snprintf(h, sizeof(h), "{\"__metadata__\":[\"a\"],%s}", t);
	expect_fail(h, zeros, 1, R4_ERR_INVALID);
	snprintf(h, sizeof(h), "{%s,\"__metadata__\":{\"n\":1}}", t);
	msg = expect_fail(h, zeros, 1, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "\"n\"");
	snprintf(h, sizeof(h), "{%s,\"__metadata__\":{\"o\":{\"a\":\"b\"}}}", t);
	expect_fail(h, zeros, 1, R4_ERR_INVALID);
	snprintf(h, sizeof(h), "{%s,\"__metadata__\":{\"o\":\"a\\u0000b\"}}", t);
	expect_fail(h, zeros, 1, R4_ERR_INVALID);
	/* Metadata may come anywhere in the object; values keep escapes decoded. */
	{
		size_t		len;
		uint8_t    *base;
		uint8_t    *p;
		R4SafeTensors st;
		R4Error		err;

		snprintf(h, sizeof(h), "{%s,\"__metadata__\":{\"mean\":\"[0.485, \\\"x\\\"]\",\"\":\"\"}}", t);
		p = build_raw(strlen(h), h, strlen(h), zeros, 1, 0, &len, &base);
		CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_OK);
		CHECK_EQ_INT(st.count, 1);
		CHECK(r4_safetensors_meta(&st, "mean") != NULL &&
			  strcmp(r4_safetensors_meta(&st, "mean"), "[0.485, \"x\"]") == 0);
		CHECK(r4_safetensors_meta(&st, "") != NULL && r4_safetensors_meta(&st, "")[0] == '\0');
		r4_safetensors_free(&st);
		free(base);
	}
}

/* Require tensors to tile the data section from 0 to its end. */
static void
test_layout(void)
{
	const char *msg;

	/* First tensor must begin at 0. */
	msg = expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", zeros, 2, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "\"w\"");
	CHECK_STR_CONTAINS(msg, "gap");
	/* Gap between tensors. */
	msg = expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
					  "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}", zeros, 3, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "\"b\"");
	/* Overlap. */
	msg = expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
					  "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", zeros, 3, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "overlapping");
	/* Two tensors sharing the same bytes. */
	expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
				"\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", zeros, 2, R4_ERR_INVALID);
	/* Trailing bytes after the last tensor (polyglot files). */
	msg = expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", zeros, 3, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "trailing");
	/* Last tensor runs past the buffer. */
	msg = expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", zeros, 3, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "\"a\" ends at data offset 4");
	/* Huge offsets far past the buffer. */
	expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
				"\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9223372036854775806,9223372036854775807]}}",
				zeros, 1, R4_ERR_INVALID);

	/* Zero-size tensors may share an offset with each other and the next tensor. */
	{
		const char *h = "{\"e1\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
			"\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
			"\"e2\":{\"dtype\":\"I64\",\"shape\":[5,0],\"data_offsets\":[4,4]},"
			"\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[4,5]},"
			"\"e3\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[5,5]}}";
		uint8_t		data[5];
		size_t		len;
		uint8_t    *base;
		uint8_t    *p;
		R4SafeTensors st;
		R4Error		err;
		const R4StTensor *t;
		float		f[1] = {-1.0f};

		put_f32(data, 3.25f);
		data[4] = 7;
		p = build_raw(strlen(h), h, strlen(h), data, 5, 0, &len, &base);
		CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_OK);
		CHECK_EQ_INT(st.count, 5);
		t = r4_safetensors_find(&st, "s");
		/* A 0-rank tensor is a scalar with one element. */
		CHECK(t != NULL && t->ndim == 0 && t->numel == 1 && t->nbytes == 4);
		CHECK_EQ_INT(r4_tensor_to_f32(t, f, &err), R4_OK);
		CHECK(f[0] == 3.25f);
		t = r4_safetensors_find(&st, "e1");
		CHECK(t != NULL && t->ndim == 2 && t->numel == 0 && t->nbytes == 0);
		f[0] = -1.0f;
		CHECK_EQ_INT(r4_tensor_to_f32(t, f, &err), R4_OK);
		CHECK(f[0] == -1.0f);	/* nothing written */
		CHECK_EQ_INT(r4_tensor_to_f32(r4_safetensors_find(&st, "e3"), NULL, &err), R4_OK);
		t = r4_safetensors_find(&st, "t");
		CHECK(t != NULL && t->data[0] == 7 && t->data == p + 8 + strlen(h) + 4);
		r4_safetensors_free(&st);
		free(base);
	}
}

/* Require byte counts that match dtype and shape, without overflow. */
static void
test_sizes(void)
{
	const char *msg;

	/* The byte count must match dtype and shape; the message names the tensor. */
	msg = expect_fail("{\"blocks.0.attn.qkv.weight\":{\"dtype\":\"F32\",\"shape\":[256],\"data_offsets\":[0,1000]}}",
					  zeros, 1000, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "tensor \"blocks.0.attn.qkv.weight\" has 1000 bytes but its dtype and shape need 1024");
	expect_fail("{\"w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", zeros, 16, R4_ERR_INVALID);
	expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", NULL, 0, R4_ERR_INVALID);

	/* Element count overflow and bit count overflow. */
	msg = expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,0]}}",
					  NULL, 0, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "overflow");
	msg = expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}",
					  NULL, 0, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "overflow");
	/* A zero dimension makes the product zero even next to huge ones. */
	expect_ok("{\"w\":{\"dtype\":\"F64\",\"shape\":[9223372036854775807,0],\"data_offsets\":[0,0]}}", NULL, 0);

	/* Sub-byte dtypes must fill whole bytes. */
	msg = expect_fail("{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "whole bytes");
	expect_fail("{\"w\":{\"dtype\":\"F6_E2M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", zeros, 1, R4_ERR_INVALID);
	expect_ok("{\"w\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[0,3]}}", zeros, 3);
	expect_ok("{\"w\":{\"dtype\":\"F6_E3M2\",\"shape\":[4],\"data_offsets\":[0,3]}}", zeros, 3);
}

/* Know every dtype string of the reference with its width. */
static void
test_dtypes(void)
{
	/* Every dtype string of the reference reader with its width in bits. */
	static const struct
	{
		const char *name;
		R4DType		t;
		int			bits;
	}			table[] = {
		{"BOOL", R4_DT_BOOL, 8}, {"U8", R4_DT_U8, 8}, {"I8", R4_DT_I8, 8},
		{"I16", R4_DT_I16, 16}, {"U16", R4_DT_U16, 16}, {"F16", R4_DT_F16, 16},
		{"BF16", R4_DT_BF16, 16}, {"I32", R4_DT_I32, 32}, {"U32", R4_DT_U32, 32},
		{"F32", R4_DT_F32, 32}, {"F64", R4_DT_F64, 64}, {"I64", R4_DT_I64, 64},
		{"U64", R4_DT_U64, 64}, {"C64", R4_DT_C64, 64}, {"F8_E5M2", R4_DT_F8_E5M2, 8},
		{"F8_E4M3", R4_DT_F8_E4M3, 8}, {"F8_E8M0", R4_DT_F8_E8M0, 8},
		{"F8_E4M3FNUZ", R4_DT_F8_E4M3FNUZ, 8}, {"F8_E5M2FNUZ", R4_DT_F8_E5M2FNUZ, 8},
		{"F6_E2M3", R4_DT_F6_E2M3, 6}, {"F6_E3M2", R4_DT_F6_E3M2, 6}, {"F4", R4_DT_F4, 4},
	};
	size_t		i;

	CHECK_EQ_INT(sizeof(table) / sizeof(table[0]), R4_DT_COUNT);
	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
	{
		R4DType		t = R4_DT_BOOL;
		char		h[200];
		R4SafeTensors st;
		R4Error		err;
		R4Status	s;

		CHECK(r4_dtype_from_name(table[i].name, &t) && t == table[i].t);
		CHECK(strcmp(r4_dtype_name(table[i].t), table[i].name) == 0);
		CHECK_EQ_INT(r4_dtype_bits(table[i].t), table[i].bits);
		CHECK_EQ_INT(r4_dtype_is_float(table[i].t),
					 table[i].t == R4_DT_F32 || table[i].t == R4_DT_F16 || table[i].t == R4_DT_BF16);
		/* 8 elements of each dtype take bits bytes; the file parses. */
		snprintf(h, sizeof(h), "{\"x\":{\"dtype\":\"%s\",\"shape\":[2,4],\"data_offsets\":[0,%d]}}",
				 table[i].name, table[i].bits);
		s = parse_file(h, zeros, (size_t) table[i].bits, &st, &err);
		CHECK_MSG(s == R4_OK, "%s: %s", table[i].name, err.message);
	}
	CHECK(!r4_dtype_from_name("F8", &(R4DType) {0}));
	CHECK(!r4_dtype_from_name("", &(R4DType) {0}));
	CHECK(strcmp(r4_dtype_name((R4DType) 99), "unknown") == 0);
	CHECK(!r4_dtype_is_float((R4DType) 99));
}

/* The value of a binary16 pattern worked out arithmetically, not by bit moves. */
static double
half_reference(uint16_t h)
{
	int			sign = (h >> 15) ? -1 : 1;
	int			e = (h >> 10) & 0x1F;
	int			m = h & 0x3FF;

	if (e == 0)
		return sign * ldexp((double) m, -24);
	if (e == 31)
		return m == 0 ? sign * INFINITY : NAN;
	return sign * ldexp((double) (1024 + m), e - 25);
}

/* Convert every binary16 pattern exactly. */
static void
test_f16(void)
{
	uint32_t	h;
	uint32_t	bits;
	float		f;

	/* Values known independently of any conversion code. */
	CHECK(r4_f16_to_f32(0x3C00) == 1.0f);
	CHECK(r4_f16_to_f32(0xC000) == -2.0f);
	CHECK(r4_f16_to_f32(0x3800) == 0.5f);
	CHECK(r4_f16_to_f32(0x3555) == 0.333251953125f);
	CHECK(r4_f16_to_f32(0x7BFF) == 65504.0f);
	CHECK(r4_f16_to_f32(0xFBFF) == -65504.0f);
	CHECK(r4_f16_to_f32(0x0400) == 6.103515625e-05f);	/* 2^-14, smallest normal */
	CHECK(r4_f16_to_f32(0x0001) == 5.9604644775390625e-08f);	/* 2^-24, smallest subnormal */
	CHECK(r4_f16_to_f32(0x03FF) == 6.0975551605224609375e-05f);	/* 1023 * 2^-24 */
	CHECK(r4_f16_to_f32(0x8001) == -5.9604644775390625e-08f);
	CHECK(r4_f16_to_f32(0x7C00) == INFINITY);
	CHECK(r4_f16_to_f32(0xFC00) == -INFINITY);
	CHECK(isnan(r4_f16_to_f32(0x7E00)));
	CHECK(isnan(r4_f16_to_f32(0xFC01)));
	f = r4_f16_to_f32(0x0000);
	CHECK(f == 0.0f && !signbit(f));
	f = r4_f16_to_f32(0x8000);
	CHECK(f == 0.0f && signbit(f));
	/* NaN payloads survive (quiet bit and low bits shifted up by 13). */
	f = r4_f16_to_f32(0x7C01);
	memcpy(&bits, &f, 4);
	CHECK_EQ_INT(bits, 0x7F802000);
	f = r4_f16_to_f32(0xFE3F);
	memcpy(&bits, &f, 4);
	CHECK_EQ_INT(bits, 0xFFC7E000);

	/* All 65536 patterns against the arithmetic definition. */
	for (h = 0; h < 65536; h++)
	{
		double		want = half_reference((uint16_t) h);

		f = r4_f16_to_f32((uint16_t) h);
		if (isnan(want))
			CHECK_MSG(isnan(f) && (signbit(f) != 0) == ((h >> 15) != 0), "0x%04x", h);
		else
			CHECK_MSG((double) f == want && (signbit(f) != 0) == ((h >> 15) != 0),
					  "0x%04x: %.10g vs %.10g", h, (double) f, want);
	}
}

/* Convert every bfloat16 pattern exactly. */
static void
test_bf16(void)
{
	uint32_t	h;

	CHECK(r4_bf16_to_f32(0x3F80) == 1.0f);
	CHECK(r4_bf16_to_f32(0xC000) == -2.0f);
	CHECK(r4_bf16_to_f32(0x4049) == 3.140625f);
	CHECK(r4_bf16_to_f32(0x7F80) == INFINITY);
	CHECK(r4_bf16_to_f32(0xFF80) == -INFINITY);
	CHECK(isnan(r4_bf16_to_f32(0x7FC0)));
	CHECK(r4_bf16_to_f32(0x0001) == ldexpf(1.0f, -133));	/* smallest subnormal */
	CHECK(r4_bf16_to_f32(0x0080) == FLT_MIN);
	CHECK(r4_bf16_to_f32(0x7F7F) == ldexpf(255.0f, 127 - 7));	/* largest finite: 1.9921875 * 2^127 */
	/* bf16 is the top half of float32: exact for every pattern. */
	for (h = 0; h < 65536; h++)
	{
		float		want;
		uint32_t	bits = h << 16;
		float		got = r4_bf16_to_f32((uint16_t) h);

		memcpy(&want, &bits, 4);
		CHECK_MSG(memcmp(&got, &want, 4) == 0, "0x%04x", h);
	}
}

/* Convert tensors at every alignment. */
static void
test_unaligned_conversion(void)
{
	/* Buffers shifted by 0..3 bytes put the data at every alignment. */
	const char *h = "{\"f\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
		"\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[12,18]},"
		"\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[18,22]}}";
	uint8_t		data[22];
	size_t		len;
	uint8_t    *base;
	uint8_t    *p;
	R4SafeTensors st;
	R4Error		err;
	float		out[3];
	size_t		shift;

	put_f32(data, -1.5f);
	put_f32(data + 4, 1e-40f);	/* a float32 subnormal passes through */
	put_f32(data + 8, -INFINITY);
	/* F16 0x0001, 0xFBFF, 0x3C00 little-endian. */
	data[12] = 0x01;
	data[13] = 0x00;
	data[14] = 0xFF;
	data[15] = 0xFB;
	data[16] = 0x00;
	data[17] = 0x3C;
	/* BF16 0x3F80, 0xC0A0 (-5). */
	data[18] = 0x80;
	data[19] = 0x3F;
	data[20] = 0xA0;
	data[21] = 0xC0;
	for (shift = 0; shift < 4; shift++)
	{
		const R4StTensor *t;

		p = build_raw(strlen(h), h, strlen(h), data, sizeof(data), shift, &len, &base);
		CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_OK);
		t = r4_safetensors_find(&st, "f");
		CHECK(t != NULL && t->data == p + 8 + strlen(h));
		CHECK_EQ_INT(r4_tensor_to_f32(t, out, &err), R4_OK);
		CHECK(out[0] == -1.5f && out[1] == 1e-40f && out[2] == -INFINITY);
		CHECK_EQ_INT(r4_tensor_to_f32(r4_safetensors_find(&st, "h"), out, &err), R4_OK);
		CHECK(out[0] == ldexpf(1.0f, -24) && out[1] == -65504.0f && out[2] == 1.0f);
		CHECK_EQ_INT(r4_tensor_to_f32(r4_safetensors_find(&st, "b"), out, &err), R4_OK);
		CHECK(out[0] == 1.0f && out[1] == -5.0f);
		r4_safetensors_free(&st);
		free(base);
	}
}

/* Parse I64 tensors but refuse to convert them. */
static void
test_int64_tensor(void)
{
	/* A BatchNorm export: running stats in F32 and a 0-rank I64 num_batches_tracked. */
	const char *h = "{\"bn1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
		"\"bn1.running_mean\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
	uint8_t		data[16] = {0x39, 0x30, 0, 0, 0, 0, 0, 0};	/* 12345 */
	size_t		len;
	uint8_t    *base;
	uint8_t    *p;
	R4SafeTensors st;
	R4Error		err;
	const R4StTensor *t;
	float		out[2];

	put_f32(data + 8, 0.25f);
	put_f32(data + 12, -0.25f);
	p = build_raw(strlen(h), h, strlen(h), data, sizeof(data), 0, &len, &base);
	CHECK_EQ_INT(r4_safetensors_parse(p, len, &st, &err), R4_OK);
	t = r4_safetensors_find(&st, "bn1.num_batches_tracked");
	CHECK(t != NULL && t->dtype == R4_DT_I64 && t->ndim == 0 && t->numel == 1 && t->nbytes == 8);
	CHECK(t != NULL && t->data[0] == 0x39 && t->data[1] == 0x30);
	r4_error_clear(&err);
	CHECK_EQ_INT(r4_tensor_to_f32(t, out, &err), R4_ERR_UNSUPPORTED);
	CHECK_STR_CONTAINS(err.message, "\"bn1.num_batches_tracked\"");
	CHECK_STR_CONTAINS(err.message, "I64");
	CHECK_EQ_INT(r4_tensor_to_f32(r4_safetensors_find(&st, "bn1.running_mean"), out, &err), R4_OK);
	CHECK(out[0] == 0.25f && out[1] == -0.25f);
	r4_safetensors_free(&st);
	free(base);

	/* A hand-made tensor whose byte count disagrees with numel is refused, not over-read. */
	{
		R4StTensor	bad = {0};
		float		o[4];

		bad.name = "bad";
		bad.dtype = R4_DT_F32;
		bad.numel = 4;
		bad.nbytes = 8;
		bad.data = data;
		CHECK_EQ_INT(r4_tensor_to_f32(&bad, o, &err), R4_ERR_INVALID);
		CHECK_EQ_INT(r4_tensor_to_f32(NULL, o, &err), R4_ERR_INTERNAL);
	}
}

/* Quote long tensor names shortened. */
static void
test_long_names(void)
{
	char		name[301];
	char		h[600];
	const char *msg;

	memset(name, 'q', 300);
	name[300] = '\0';
	snprintf(h, sizeof(h), "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", name);
	msg = expect_fail(h, zeros, 4, R4_ERR_INVALID);
	CHECK_STR_CONTAINS(msg, "qqqq...");
	CHECK_STR_CONTAINS(msg, "has 4 bytes but its dtype and shape need 8");
}

/* Fail cleanly, without leaks, at every allocation. */
static void
test_out_of_memory(void)
{
	static const R4Allocator failing = {unit_failing_alloc, unit_counting_free, NULL};
	const char *h = "{\"__metadata__\":{\"a\":\"b\",\"c\":\"d\"},"
		"\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		"\"y\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}";
	size_t		len;
	uint8_t    *base;
	uint8_t    *p = build_raw(strlen(h), h, strlen(h), zeros, 2, 0, &len, &base);
	long		budget;
	bool		succeeded = false;

	r4_set_allocator(&failing);
	for (budget = 0; budget < 1000 && !succeeded; budget++)
	{
		R4SafeTensors st;
		R4Error		err;
		R4Status	s;

		unit_alloc_budget = budget;
		unit_alloc_live = 0;
		s = r4_safetensors_parse(p, len, &st, &err);
		if (s == R4_OK)
		{
			succeeded = true;
			CHECK_EQ_INT(st.count, 2);
			r4_safetensors_free(&st);
		}
		else
			CHECK_MSG(s == R4_ERR_NOMEM, "budget %ld: %s", budget, err.message);
		CHECK_MSG(unit_alloc_live == 0, "budget %ld: %ld blocks leaked", budget, unit_alloc_live);
	}
	r4_set_allocator(NULL);
	CHECK(succeeded);
	free(base);
}

/* Run the safetensors tests. */
int
main(void)
{
	RUN(test_valid_file);
	RUN(test_whitespace);
	RUN(test_length_field);
	RUN(test_header_shape);
	RUN(test_entries);
	RUN(test_metadata);
	RUN(test_layout);
	RUN(test_sizes);
	RUN(test_dtypes);
	RUN(test_f16);
	RUN(test_bf16);
	RUN(test_unaligned_conversion);
	RUN(test_int64_tensor);
	RUN(test_long_names);
	RUN(test_out_of_memory);
	return unit_summary("safetensors");
}
