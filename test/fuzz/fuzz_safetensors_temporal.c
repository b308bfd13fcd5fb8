/*
 * fuzz_safetensors_temporal.c — libFuzzer target for the temporal
 * classifier (src/core/temporal.c): configuration keys and __metadata__
 * against arbitrary recurrent, attention and head shapes, the build, and a
 * forward pass.
 *
 * As in fuzz_safetensors_config: only the 8-byte length and the header text
 * of the input are kept, the data region is rebuilt to the size the header
 * asks (at most 4 MB) with small finite values, and bytes after the header,
 * when a JSON object, are the configuration (else {"arch": "lstm"} and
 * {"arch": "gru"} are both tried).
 *
 * Promises checked: a failure has a message and is never internal; a
 * resolved configuration survives its own JSON; a built model gives finite
 * probabilities in [0, 1] for a short sequence, summing to 1 for a softmax.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/json.h"
#include "rai4eo/safetensors.h"
#include "rai4eo/temporal.h"

#define ASSERT(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#define MAX_DATA ((size_t) 4 << 20)

static size_t
data_size(const char *header, size_t len)
{
	R4Json	   *h = NULL;
	R4Error		err;
	size_t		end = 0;

	if (r4_json_parse(header, len, &h, &err) != R4_OK)
		return 0;
	if (h->type == R4J_OBJECT)
		for (size_t i = 0; i < h->count; i++)
		{
			const R4Json *off = r4_json_get(&h->items[i], "data_offsets");
			int64_t		e;

			if (h->items[i].type == R4J_OBJECT && off != NULL && off->type == R4J_ARRAY &&
				off->count == 2 && r4_json_get_int64(&off->items[1], &e) && e > 0 &&
				(size_t) e <= MAX_DATA && (size_t) e > end)
				end = (size_t) e;
		}
	r4_json_free(h);
	return end;
}

static void
try_config(const R4SafeTensors *st, const char *config)
{
	R4TemporalConfig cfg,
				cfg2;
	R4Temporal *m = NULL;
	R4Error		err;
	R4Status	s;
	char	   *json,
			   *json2;

	r4_error_clear(&err);
	s = r4_temporal_config_resolve(st, config, &cfg, &err);
	if (s != R4_OK)
	{
		ASSERT(err.message[0] != '\0' && s != R4_ERR_INTERNAL);
		return;
	}
	json = r4_temporal_config_to_json(&cfg);
	ASSERT(json != NULL);
	ASSERT(r4_temporal_config_resolve(st, json, &cfg2, &err) == R4_OK);
	json2 = r4_temporal_config_to_json(&cfg2);
	ASSERT(json2 != NULL && strcmp(json, json2) == 0);
	r4_free(json);
	r4_free(json2);
	r4_temporal_config_free(&cfg2);

	s = r4_temporal_build(st, &cfg, &m, &err);
	if (s != R4_OK)
		ASSERT(m == NULL && err.message[0] != '\0' && s != R4_ERR_INTERNAL);
	else if ((size_t) cfg.input_dim * 3 <= 3 * 16000 && cfg.n_classes > 0)
	{
		float	   *x = malloc(sizeof(float) * cfg.input_dim * 3);
		float	   *p = malloc(sizeof(float) * cfg.n_classes);
		double		sum = 0;

		ASSERT(r4_temporal_param_count(m) > 0);
		for (int i = 0; i < cfg.input_dim * 3; i++)
			x[i] = 0.1f * (float) ((i % 5) - 2);
		s = r4_temporal_forward(m, x, 3, p, &err);
		ASSERT(s == R4_OK || s == R4_ERR_NOMEM);
		for (int k = 0; s == R4_OK && k < cfg.n_classes; k++)
		{
			ASSERT(isfinite(p[k]) && p[k] >= 0 && p[k] <= 1);
			sum += p[k];
		}
		if (s == R4_OK && !cfg.multilabel)
			ASSERT(fabs(sum - 1) < 1e-3);
		free(x);
		free(p);
		r4_temporal_free(m);
	}
	else
		r4_temporal_free(m);
	r4_temporal_config_free(&cfg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t	hlen = 0;
	size_t		dlen;
	uint8_t    *file;
	R4SafeTensors st;
	R4Error		err;
	char	   *config = NULL;

	if (size < 8)
		return 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | data[i];
	if (hlen > size - 8)
		hlen = size - 8;
	dlen = data_size((const char *) data + 8, (size_t) hlen);
	file = malloc(8 + hlen + dlen + 1);
	for (int i = 0; i < 8; i++)
		file[i] = (uint8_t) (hlen >> (8 * i));
	memcpy(file + 8, data + 8, hlen);
	for (size_t i = 0; i < dlen; i++)
	{
		size_t		k = i / 4;
		float		v = 0.05f * (float) ((int) (k % 7) - 3);
		uint32_t	bits;

		memcpy(&bits, &v, sizeof(bits));
		file[8 + hlen + i] = (uint8_t) (bits >> (8 * (i % 4)));
	}
	if (size - 8 - hlen > 0)
	{
		config = malloc(size - 8 - hlen + 1);
		memcpy(config, data + 8 + hlen, size - 8 - hlen);
		config[size - 8 - hlen] = '\0';
	}
	r4_error_clear(&err);
	if (r4_safetensors_parse(file, 8 + hlen + dlen, &st, &err) == R4_OK)
	{
		if (config != NULL && strlen(config) == size - 8 - hlen)
			try_config(&st, config);
		else
		{
			try_config(&st, "{\"arch\": \"lstm\"}");
			try_config(&st, "{\"arch\": \"gru\"}");
		}
		r4_safetensors_free(&st);
	}
	free(config);
	free(file);
	return 0;
}
