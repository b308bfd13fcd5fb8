/*
 * fuzz_safetensors_config.c — libFuzzer target for the configuration
 * resolver and engine and head construction: configuration keys and
 * __metadata__ against arbitrary tensor shapes.
 *
 * The input is a safetensors file (the safetensors seeds serve), of which
 * only the 8-byte length and the header text are kept: the data region is
 * rebuilt to the size the header's data_offsets ask (at most 4 MB) and
 * filled with small finite values, so that shape mutations reach the
 * resolver instead of dying on a size mismatch.  Bytes after the header,
 * when they are a JSON object, are the configuration argument.
 *
 * Promises checked: a failure has a message; a resolved configuration
 * survives its own JSON (to_json, parse, resolve again: the same JSON);
 * an engine built from it counts at least one parameter.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/engine.h"
#include "rai4eo/json.h"
#include "rai4eo/model_config.h"
#include "rai4eo/safetensors.h"

#define ASSERT(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#define MAX_DATA ((size_t) 4 << 20)

/* The largest data_offsets end in the header, 0 when there is none or it is silly */
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t	hlen = 0;
	size_t		dlen;
	uint8_t    *file;
	R4SafeTensors st;
	R4Json	   *config = NULL;
	R4ModelConfig cfg;
	R4Error		err;
	R4Status	s;

	if (size < 8)
		return 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | data[i];
	if (hlen > size - 8)
		hlen = size - 8;
	dlen = data_size((const char *) data + 8, (size_t) hlen);

	/* 8-byte length, header, then values 0.01 * (i % 7 - 3) as float32 little-endian */
	file = malloc(8 + hlen + dlen + 1);
	memcpy(file, data, 8);
	for (int i = 0; i < 8; i++)
		file[i] = (uint8_t) (hlen >> (8 * i));
	memcpy(file + 8, data + 8, hlen);
	for (size_t i = 0; i < dlen; i++)
	{
		size_t		k = i / 4;
		float		v = 0.01f * (float) ((int) (k % 7) - 3);
		uint32_t	bits;

		memcpy(&bits, &v, sizeof(bits));
		file[8 + hlen + i] = (uint8_t) (bits >> (8 * (i % 4)));
	}
	if (size - 8 - hlen > 0)
		(void) r4_json_parse((const char *) data + 8 + hlen, size - 8 - hlen, &config, &err);
	if (config != NULL && config->type != R4J_OBJECT)
	{
		r4_json_free(config);
		config = NULL;
	}

	r4_error_clear(&err);
	if (r4_safetensors_parse(file, 8 + hlen + dlen, &st, &err) != R4_OK)
		goto done;
	r4_error_clear(&err);
	s = r4_model_config_resolve(&st, config, &cfg, &err);
	if (s != R4_OK)
		ASSERT(err.message[0] != '\0' && s != R4_ERR_INTERNAL);
	else
	{
		char	   *json = r4_model_config_to_json(&cfg);
		R4Json	   *again = NULL;
		R4ModelConfig cfg2;
		R4Engine   *engine = NULL;

		ASSERT(json != NULL);
		ASSERT(r4_json_parse(json, strlen(json), &again, &err) == R4_OK);
		ASSERT(r4_model_config_resolve(&st, again, &cfg2, &err) == R4_OK);
		{
			char	   *json2 = r4_model_config_to_json(&cfg2);

			ASSERT(json2 != NULL && strcmp(json, json2) == 0);
			r4_free(json2);
		}
		r4_model_config_free(&cfg2);
		r4_json_free(again);
		r4_free(json);

		r4_error_clear(&err);
		s = r4_engine_build(&st, &cfg, &engine, &err);
		if (s == R4_OK)
		{
			ASSERT(r4_engine_param_count(engine) > 0);
			ASSERT(r4_engine_work_bytes(engine) == 0);
			r4_engine_free(engine);
		}
		else
			ASSERT(engine == NULL && err.message[0] != '\0' && s != R4_ERR_INTERNAL);
		r4_model_config_free(&cfg);
	}
	r4_safetensors_free(&st);
done:
	r4_json_free(config);
	free(file);
	return 0;
}
