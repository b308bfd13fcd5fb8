/*
 * test_temporal.c — the temporal classifier core (src/core/temporal.c):
 * the gate equations against double-precision closed forms, attention
 * pooling, configuration resolution and its canonical JSON, every layout
 * and configuration error, and out-of-memory at every allocation.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/safetensors.h"
#include "rai4eo/temporal.h"
#include "unit.h"

typedef struct T
{
	const char *name;
	const char *dtype;			/* "F32" or "I64" */
	int			rows,
				cols;			/* cols 0: a vector of rows */
	float		data[64];
} T;

/* Serialise tensors (and optional metadata JSON members) into a safetensors buffer */
static uint8_t *
build(const T *t, int n, const char *meta, size_t *len)
{
	char		hdr[4096];
	size_t		h = 0,
				off = 0;
	uint8_t    *buf;

	h += snprintf(hdr + h, sizeof(hdr) - h, "{");
	if (meta)
		h += snprintf(hdr + h, sizeof(hdr) - h, "\"__metadata__\":{%s}%s", meta, n ? "," : "");
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
	*len = 8 + h + off;
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
			memcpy(buf + off, t[i].data, numel * 4);	/* little-endian x86 */
			off += numel * 4;
		}
	}
	return buf;
}

/* The 1-input, 1-unit LSTM of test/sql/temporal.sql (gates i f g o), a 2-class head */
static const T LSTM1[] = {
	{"weight_ih_l0", "F32", 4, 1, {1, 0.5f, 2, -1}},
	{"weight_hh_l0", "F32", 4, 1, {0.5f, -0.5f, 1, 0.25f}},
	{"bias_ih_l0", "F32", 4, 0, {0, 1, 0, 0.5f}},
	{"bias_hh_l0", "F32", 4, 0, {0, 0, -0.5f, 0}},
	{"head.weight", "F32", 2, 1, {2, -3}},
	{"head.bias", "F32", 2, 0, {0, 1}},
};

static double
sig(double x)
{
	return 1 / (1 + exp(-x));
}

static void
lstm1_ref(const double *xs, int n, double *p)
{
	double		h = 0,
				c = 0;

	for (int t = 0; t < n; t++)
	{
		double		x = xs[t];
		double		i = sig(x + 0.5 * h),
					f = sig(0.5 * x + 1 - 0.5 * h),
					g = tanh(2 * x - 0.5 + h),
					o = sig(-x + 0.5 + 0.25 * h);

		c = f * c + i * g;
		h = o * tanh(c);
	}
	p[0] = sig(2 * h);
	p[1] = sig(-3 * h + 1);
}

/* Resolve + build from tensors; returns the status and leaves *m built on success */
static R4Status
make(const T *t, int n, const char *meta, const char *config, R4Temporal **m, R4TemporalConfig *cfg,
	 R4Error *err)
{
	size_t		len;
	uint8_t    *buf = build(t, n, meta, &len);
	R4SafeTensors st = {0};
	R4Status	rc;

	*m = NULL;
	r4_error_clear(err);
	rc = r4_safetensors_parse(buf, len, &st, err);
	if (rc == R4_OK)
		rc = r4_temporal_config_resolve(&st, config, cfg, err);
	if (rc == R4_OK)
	{
		rc = r4_temporal_build(&st, cfg, m, err);
		if (rc != R4_OK)
			r4_temporal_config_free(cfg);
	}
	r4_safetensors_free(&st);
	free(buf);
	return rc;
}

static void
test_lstm_closed_form(void)
{
	static const double seqs[3][3] = {{1.0}, {1.0, -0.5}, {0.25, 0.5, -1.0}};
	static const int lens[3] = {1, 2, 3};
	R4Temporal *m;
	R4TemporalConfig cfg;
	R4Error		err;

	CHECK_EQ_INT(make(LSTM1, 6, NULL, "{\"arch\": \"lstm\"}", &m, &cfg, &err), R4_OK);
	if (m == NULL)
		return;
	CHECK_EQ_INT(cfg.input_dim, 1);
	CHECK_EQ_INT(cfg.hidden, 1);
	CHECK_EQ_INT(cfg.layers, 1);
	CHECK_EQ_INT(cfg.n_classes, 2);
	CHECK(!cfg.attention);
	CHECK_EQ_INT(r4_temporal_param_count(m), 4 * (1 + 1 + 2) + 2 + 2);
	for (int s = 0; s < 3; s++)
	{
		float		x[3],
					p[2];
		double		ref[2];

		for (int t = 0; t < lens[s]; t++)
			x[t] = (float) seqs[s][t];
		lstm1_ref(seqs[s], lens[s], ref);
		CHECK_EQ_INT(r4_temporal_forward(m, x, lens[s], p, &err), R4_OK);
		CHECK_NEAR(p[0], ref[0], 1e-6);
		CHECK_NEAR(p[1], ref[1], 1e-6);
	}
	{
		float		x[1] = {0},
					p[2];

		CHECK_EQ_INT(r4_temporal_forward(m, x, 0, p, &err), R4_ERR_RANGE);
		CHECK_EQ_INT(r4_temporal_forward(m, x, R4_TEMPORAL_MAX_STEPS + 1, p, &err), R4_ERR_LIMIT);
		x[0] = NAN;
		CHECK_EQ_INT(r4_temporal_forward(m, x, 1, p, &err), R4_ERR_INVALID);
	}
	r4_temporal_free(m);
	r4_temporal_config_free(&cfg);
}

/*
 * A 2-unit GRU whose update gate is shut (z = sig(-30)): h_t = tanh(4 x_t);
 * zero attention weights pool the mean of h_t; softmax head.
 */
static const T GRU_ATTN[] = {
	{"weight_ih_l0", "F32", 6, 2, {0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 4}},
	{"weight_hh_l0", "F32", 6, 2, {0}},
	{"bias_ih_l0", "F32", 6, 0, {0, 0, -30, -30, 0, 0}},
	{"bias_hh_l0", "F32", 6, 0, {0}},
	{"attn.weight", "F32", 1, 2, {0, 0}},
	{"attn.bias", "F32", 1, 0, {0.5f}},
	{"head.weight", "F32", 2, 2, {1, -1, -1, 1}},
	{"head.bias", "F32", 2, 0, {0, 0}},
};

static void
test_gru_attention(void)
{
	R4Temporal *m;
	R4TemporalConfig cfg;
	R4Error		err;
	float		x[6] = {1, 0, 0, 1, 0.5f, 0.25f},
				p[2];
	double		h1 = (tanh(4.0) + 0 + tanh(2.0)) / 3,
				h2 = (0 + tanh(4.0) + tanh(1.0)) / 3,
				e = exp(h1 - h2);

	CHECK_EQ_INT(make(GRU_ATTN, 8, "\"arch\": \"gru\", \"multilabel\": \"false\", \"classes\": \"[111, \\\"x\\\"]\"",
					  NULL, &m, &cfg, &err), R4_OK);
	if (m == NULL)
		return;
	CHECK(cfg.attention);
	CHECK(!cfg.multilabel);
	CHECK_EQ_INT(r4_temporal_forward(m, x, 3, p, &err), R4_OK);
	/* z is sig(-30), not 0: h keeps 1e-13 of the previous step */
	CHECK_NEAR(p[0], e / (e + 1 / e), 1e-6);
	CHECK_NEAR(p[1], (1 / e) / (e + 1 / e), 1e-6);
	{
		char	   *json = r4_temporal_config_to_json(&cfg);
		R4Temporal *m2;
		R4TemporalConfig cfg2;
		char	   *json2;

		CHECK(json != NULL);
		CHECK_STR_CONTAINS(json, "\"classes\": [111, \"x\"]");
		CHECK_STR_CONTAINS(json, "\"arch\": \"gru\"");
		CHECK_STR_CONTAINS(json, "\"attention\": true");
		/* the canonical configuration resolves to itself */
		CHECK_EQ_INT(make(GRU_ATTN, 8, NULL, json, &m2, &cfg2, &err), R4_OK);
		json2 = m2 ? r4_temporal_config_to_json(&cfg2) : NULL;
		CHECK(json2 != NULL && strcmp(json, json2) == 0);
		if (m2)
		{
			r4_temporal_free(m2);
			r4_temporal_config_free(&cfg2);
		}
		r4_free(json);
		r4_free(json2);
	}
	r4_temporal_free(m);
	r4_temporal_config_free(&cfg);
}

static R4Status
try_layout(const T *t, int n, const char *config, R4Error *err)
{
	R4Temporal *m;
	R4TemporalConfig cfg;
	R4Status	rc = make(t, n, NULL, config, &m, &cfg, err);

	if (rc == R4_OK)
	{
		r4_temporal_free(m);
		r4_temporal_config_free(&cfg);
	}
	return rc;
}

static void
test_errors(void)
{
	T			t[10];
	R4Error		err;
	const char *lstm = "{\"arch\": \"lstm\"}";

	/* configuration */
	CHECK_EQ_INT(try_layout(LSTM1, 6, NULL, &err), R4_ERR_INVALID);	/* no arch */
	CHECK_STR_CONTAINS(err.message, "\"lstm\" or \"gru\"");
	CHECK_EQ_INT(try_layout(LSTM1, 6, "{\"arch\": \"lstm\", \"bands\": [1]}", &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "unknown configuration key \"bands\"");
	CHECK_EQ_INT(try_layout(LSTM1, 6, "{\"arch\": \"lstm\", \"layers\": 2}", &err), R4_ERR_MISMATCH);
	CHECK_EQ_INT(try_layout(LSTM1, 6, "{\"arch\": \"lstm\", \"multilabel\": 1}", &err), R4_ERR_INVALID);
	CHECK_EQ_INT(try_layout(LSTM1, 6, "{\"arch\": \"lstm\", \"classes\": [\"a\", null]}", &err), R4_ERR_INVALID);
	CHECK_EQ_INT(try_layout(LSTM1, 6, "{\"arch\": \"lstm\", \"output\": \"features\"}", &err), R4_ERR_INVALID);
	CHECK_EQ_INT(try_layout(LSTM1, 6, "[1]", &err), R4_ERR_INVALID);
	CHECK_EQ_INT(try_layout(LSTM1, 6, "{\"arch\": \"gru\"}", &err), R4_ERR_MISMATCH);	/* 4H rows */
	CHECK_EQ_INT(try_layout(LSTM1, 6, "{\"arch\": \"lstm\", \"change_threshold\": 0.3}", &err), R4_OK);

	/* no head, a head of another width */
	CHECK_EQ_INT(try_layout(LSTM1, 4, lstm, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "classification head");
	memcpy(t, LSTM1, sizeof(LSTM1));
	t[4].cols = 2;
	CHECK_EQ_INT(try_layout(t, 6, lstm, &err), R4_ERR_MISMATCH);

	/* bidirectional and projected LSTMs */
	memcpy(t, LSTM1, sizeof(LSTM1));
	t[6] = (T) {"weight_ih_l0_reverse", "F32", 4, 1, {0}};
	CHECK_EQ_INT(try_layout(t, 7, lstm, &err), R4_ERR_UNSUPPORTED);
	t[6] = (T) {"weight_hr_l0", "F32", 1, 1, {0}};
	CHECK_EQ_INT(try_layout(t, 7, lstm, &err), R4_ERR_UNSUPPORTED);

	/* a layer past a gap, a lone hidden weight, one bias only, a bad bias length */
	t[6] = (T) {"weight_ih_l2", "F32", 4, 1, {0}};
	CHECK_EQ_INT(try_layout(t, 7, lstm, &err), R4_ERR_INVALID);
	t[6] = (T) {"weight_hh_l1", "F32", 4, 1, {0}};
	CHECK_EQ_INT(try_layout(t, 7, lstm, &err), R4_ERR_INVALID);
	memcpy(t, LSTM1, sizeof(LSTM1));
	CHECK_EQ_INT(try_layout(t + 1, 5, lstm, &err), R4_ERR_INVALID);	/* no weight_ih_l0 */
	t[3].rows = 3;
	CHECK_EQ_INT(try_layout(t, 6, lstm, &err), R4_ERR_MISMATCH);
	memcpy(t, LSTM1, sizeof(LSTM1));
	t[3] = t[5];				/* bias_hh_l0 missing (head.bias twice would clash: drop it) */
	CHECK_EQ_INT(try_layout(t, 5, lstm, &err), R4_ERR_INVALID);

	/* no biases at all is nn.LSTM(bias=False) */
	memcpy(t, LSTM1, sizeof(LSTM1));
	t[2] = t[4];
	t[3] = t[5];
	CHECK_EQ_INT(try_layout(t, 4, lstm, &err), R4_OK);

	/* dtypes and values */
	memcpy(t, LSTM1, sizeof(LSTM1));
	t[1].dtype = "I64";
	CHECK_EQ_INT(try_layout(t, 6, lstm, &err), R4_ERR_UNSUPPORTED);
	memcpy(t, LSTM1, sizeof(LSTM1));
	t[1].data[2] = INFINITY;
	CHECK_EQ_INT(try_layout(t, 6, lstm, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "NaN or infinite");

	/* attention: bias without weight, a weight of the wrong width */
	memcpy(t, GRU_ATTN, sizeof(GRU_ATTN));
	CHECK_EQ_INT(try_layout(t + 5, 3, "{\"arch\": \"gru\"}", &err), R4_ERR_INVALID);
	t[4].cols = 3;
	CHECK_EQ_INT(try_layout(t, 8, "{\"arch\": \"gru\"}", &err), R4_ERR_MISMATCH);
}

static void
test_out_of_memory(void)
{
	static const R4Allocator failing = {unit_failing_alloc, unit_counting_free, NULL};
	int			nomem = 0;
	bool		succeeded = false;

	r4_set_allocator(&failing);
	for (long budget = 0; budget < 400 && !succeeded; budget++)
	{
		R4Temporal *m;
		R4TemporalConfig cfg;
		R4Error		err;
		R4Status	rc;
		float		x[6] = {1, 0, 0, 1, 0.5f, 0.25f},
					p[2];

		unit_alloc_budget = budget;
		unit_alloc_live = 0;
		rc = make(GRU_ATTN, 8, NULL, "{\"arch\": \"gru\"}", &m, &cfg, &err);
		if (rc == R4_OK)
		{
			rc = r4_temporal_forward(m, x, 3, p, &err);
			succeeded = rc == R4_OK;
			r4_temporal_free(m);
			r4_temporal_config_free(&cfg);
		}
		if (rc == R4_ERR_NOMEM)
			nomem++;
		CHECK_MSG(rc == R4_OK || rc == R4_ERR_NOMEM, "budget %ld: status %d", budget, (int) rc);
		CHECK_MSG(unit_alloc_live == 0, "budget %ld: %ld blocks leaked", budget, unit_alloc_live);
	}
	r4_set_allocator(NULL);
	CHECK(succeeded);
	CHECK(nomem > 10);
}

int
main(void)
{
	RUN(test_lstm_closed_form);
	RUN(test_gru_attention);
	RUN(test_errors);
	RUN(test_out_of_memory);
	return unit_summary("temporal");
}
