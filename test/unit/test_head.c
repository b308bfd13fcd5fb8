/*
 * test_head.c — classification heads: which keys make a head, chaining and
 * dtype checks, and the probabilities against a direct double-precision
 * computation of the same layers.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/head.h"
#include "rai4eo/safetensors.h"
#include "unit.h"

#define MAX_T 8

typedef struct T
{
	const char *name;
	const char *dtype;			/* "F32" or "I64" */
	int			rows,
				cols;			/* cols 0: a vector of rows */
	float		data[64];
} T;

/* Serialise tensors (data is float, I64 gets zeros) into a safetensors buffer */
static uint8_t *
build(const T *t, int n, size_t *len)
{
	char		hdr[2048];
	size_t		h = 0,
				off = 0,
				data_len = 0;
	uint8_t    *buf;

	h += snprintf(hdr + h, sizeof(hdr) - h, "{");
	for (int i = 0; i < n; i++)
	{
		size_t		numel = (size_t) t[i].rows * (t[i].cols ? t[i].cols : 1);
		size_t		bytes = numel * (strcmp(t[i].dtype, "I64") == 0 ? 8 : 4);

		if (t[i].cols)
			h += snprintf(hdr + h, sizeof(hdr) - h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
						  i ? "," : "", t[i].name, t[i].dtype, t[i].rows, t[i].cols, off, off + bytes);
		else
			h += snprintf(hdr + h, sizeof(hdr) - h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
						  i ? "," : "", t[i].name, t[i].dtype, t[i].rows, off, off + bytes);
		off += bytes;
	}
	h += snprintf(hdr + h, sizeof(hdr) - h, "}");
	data_len = off;
	*len = 8 + h + data_len;
	buf = calloc(1, *len);
	for (int k = 0; k < 8; k++)
		buf[k] = (uint8_t) ((uint64_t) h >> (8 * k));
	memcpy(buf + 8, hdr, h);
	off = 8 + h;
	for (int i = 0; i < n; i++)
	{
		size_t		numel = (size_t) t[i].rows * (t[i].cols ? t[i].cols : 1);

		if (strcmp(t[i].dtype, "I64") == 0)
			off += numel * 8;
		else
		{
			memcpy(buf + off, t[i].data, numel * 4);	/* the test runs on little-endian x86 */
			off += numel * 4;
		}
	}
	return buf;
}

/* Parse tensors into st (buffer returned for freeing) */
static uint8_t *
parse(const T *t, int n, R4SafeTensors *st)
{
	size_t		len;
	uint8_t    *buf = build(t, n, &len);
	R4Error		err;

	CHECK(r4_safetensors_parse(buf, len, st, &err) == R4_OK);
	return buf;
}

/* Fill a tensor with a deterministic pattern */
static void
fill(T *t, double amp, double phase)
{
	int			n = t->rows * (t->cols ? t->cols : 1);

	for (int i = 0; i < n; i++)
		t->data[i] = (float) (amp * sin(1.3 * i + phase));
}

static void
test_linear_softmax(void)
{
	T			t[2] = {{"head.weight", "F32", 3, 5, {0}}, {"head.bias", "F32", 3, 0, {0}}};
	R4SafeTensors st = {0};
	uint8_t    *buf;
	R4Head	   *h = NULL;
	R4Error		err;
	float		x[2][5] = {{0.5f, -1, 2, 0.25f, -0.75f}, {1, 1, 1, 1, 1}};
	float		p[2][3];
	int			layers,
				in_dim,
				classes;

	fill(&t[0], 0.8, 0.1);
	fill(&t[1], 0.3, 2.0);
	buf = parse(t, 2, &st);
	CHECK(r4_head_find(&st, &layers, &in_dim, &classes, &err) == R4_OK);
	CHECK_EQ_INT(layers, 1);
	CHECK_EQ_INT(in_dim, 5);
	CHECK_EQ_INT(classes, 3);
	CHECK(r4_head_build(&st, false, &h, &err) == R4_OK);
	CHECK(r4_head_forward(h, &x[0][0], 2, &p[0][0], &err) == R4_OK);
	for (int r = 0; r < 2; r++)
	{
		double		z[3],
					mx = -1e300,
					s = 0,
					total = 0;

		for (int k = 0; k < 3; k++)
		{
			z[k] = t[1].data[k];
			for (int i = 0; i < 5; i++)
				z[k] += (double) t[0].data[k * 5 + i] * x[r][i];
			mx = fmax(mx, z[k]);
		}
		for (int k = 0; k < 3; k++)
			s += exp(z[k] - mx);
		for (int k = 0; k < 3; k++)
		{
			CHECK_NEAR(p[r][k], exp(z[k] - mx) / s, 1e-6);
			total += p[r][k];
		}
		CHECK_NEAR(total, 1.0, 1e-6);
	}
	CHECK_EQ_INT((int) r4_head_param_count(h), 18);
	r4_head_free(h);
	r4_safetensors_free(&st);
	free(buf);
}

static void
test_mlp_multilabel(void)
{
	/* head.0 (4 -> 6), ReLU, head.2 (6 -> 2, no bias): sigmoid per class */
	T			t[3] = {{"head.0.weight", "F32", 6, 4, {0}}, {"head.0.bias", "F32", 6, 0, {0}},
	{"head.2.weight", "F32", 2, 6, {0}}};
	R4SafeTensors st = {0};
	uint8_t    *buf;
	R4Head	   *h = NULL;
	R4Error		err;
	float		x[4] = {1.5f, -0.5f, 0.25f, 2.0f};
	float		p[2];

	fill(&t[0], 0.9, 0.3);
	fill(&t[1], 0.4, 1.1);
	fill(&t[2], 1.2, 0.7);
	buf = parse(t, 3, &st);
	CHECK(r4_head_build(&st, true, &h, &err) == R4_OK);
	CHECK_EQ_INT(r4_head_in_dim(h), 4);
	CHECK_EQ_INT(r4_head_classes(h), 2);
	CHECK(r4_head_forward(h, x, 1, p, &err) == R4_OK);
	for (int k = 0; k < 2; k++)
	{
		double		z = 0;

		for (int j = 0; j < 6; j++)
		{
			double		a = t[1].data[j];

			for (int i = 0; i < 4; i++)
				a += (double) t[0].data[j * 4 + i] * x[i];
			z += t[2].data[k * 6 + j] * (a > 0 ? a : 0);
		}
		CHECK_NEAR(p[k], 1 / (1 + exp(-z)), 1e-6);
	}
	r4_head_free(h);
	r4_safetensors_free(&st);
	free(buf);
}

static void
test_which_keys(void)
{
	R4SafeTensors st = {0};
	uint8_t    *buf;
	R4Error		err;
	int			layers,
				in_dim,
				classes;

	/* DINO's projection head is not a classifier */
	{
		T			t[2] = {{"head.mlp.0.weight", "F32", 4, 3, {0}}, {"head.last_layer.weight_v", "F32", 5, 4, {0}}};

		buf = parse(t, 2, &st);
		CHECK(r4_head_find(&st, &layers, &in_dim, &classes, &err) == R4_OK);
		CHECK_EQ_INT(layers, 0);
		{
			R4Head	   *h = NULL;

			CHECK(r4_head_build(&st, false, &h, &err) == R4_ERR_INVALID);
			CHECK(h == NULL);
		}
		r4_safetensors_free(&st);
		free(buf);
	}
	/* torchvision ResNet's fc; head.* wins when both exist */
	{
		T			t[3] = {{"fc.weight", "F32", 7, 4, {0}}, {"fc.bias", "F32", 7, 0, {0}}, {"head.weight", "F32", 2, 3, {0}}};

		buf = parse(t, 2, &st);
		CHECK(r4_head_find(&st, &layers, &in_dim, &classes, &err) == R4_OK);
		CHECK(layers == 1 && in_dim == 4 && classes == 7);
		r4_safetensors_free(&st);
		free(buf);
		buf = parse(t, 3, &st);
		CHECK(r4_head_find(&st, &layers, &in_dim, &classes, &err) == R4_OK);
		CHECK(layers == 1 && in_dim == 3 && classes == 2);
		r4_safetensors_free(&st);
		free(buf);
	}
}

static void
test_errors(void)
{
	R4SafeTensors st = {0};
	uint8_t    *buf;
	R4Error		err;
	int			layers,
				in_dim,
				classes;

	{
		T			t[2] = {{"head.0.weight", "F32", 6, 4, {0}}, {"head.2.weight", "F32", 2, 5, {0}}};

		buf = parse(t, 2, &st);
		CHECK(r4_head_find(&st, &layers, &in_dim, &classes, &err) == R4_ERR_MISMATCH);
		CHECK_STR_CONTAINS(err.message, "head.2.weight takes 5 inputs but the layer before gives 6");
		r4_safetensors_free(&st);
		free(buf);
	}
	{
		T			t[2] = {{"head.weight", "F32", 3, 4, {0}}, {"head.bias", "F32", 4, 0, {0}}};

		buf = parse(t, 2, &st);
		CHECK(r4_head_find(&st, &layers, &in_dim, &classes, &err) == R4_ERR_MISMATCH);
		CHECK_STR_CONTAINS(err.message, "head.bias must have shape [3]");
		r4_safetensors_free(&st);
		free(buf);
	}
	{
		T			t[1] = {{"fc.weight", "I64", 3, 4, {0}}};

		buf = parse(t, 1, &st);
		CHECK(r4_head_find(&st, &layers, &in_dim, &classes, &err) == R4_ERR_UNSUPPORTED);
		r4_safetensors_free(&st);
		free(buf);
	}
	/* out of memory at every allocation: clean failure, nothing leaked */
	{
		T			t[2] = {{"head.weight", "F32", 3, 5, {0}}, {"head.bias", "F32", 3, 0, {0}}};
		static const R4Allocator failing = {unit_failing_alloc, unit_counting_free, NULL};

		buf = parse(t, 2, &st);
		r4_set_allocator(&failing);
		for (long budget = 0; budget < 3; budget++)
		{
			R4Head	   *h = NULL;

			unit_alloc_budget = budget;
			unit_alloc_live = 0;
			CHECK(r4_head_build(&st, false, &h, &err) == R4_ERR_NOMEM);
			CHECK(h == NULL);
			CHECK_EQ_INT((int) unit_alloc_live, 0);
		}
		r4_set_allocator(NULL);
		r4_safetensors_free(&st);
		free(buf);
	}
}

int
main(void)
{
	RUN(test_linear_softmax);
	RUN(test_mlp_multilabel);
	RUN(test_which_keys);
	RUN(test_errors);
	return unit_summary("head");
}
