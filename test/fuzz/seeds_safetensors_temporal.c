/*
 * seeds_safetensors_temporal.c — seed files for fuzz_safetensors_temporal:
 * small LSTM and GRU layouts (1-2 layers, with and without biases,
 * attention, linear and MLP heads), some with a configuration after the
 * header.  The data region is zeros: the fuzzer rebuilds it anyway.
 *
 * Usage: seeds_safetensors_temporal DIR
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
seed(const char *dir, const char *name, int gates, int D, int H, int layers, int bias, int attn,
	 int mlp, int K, const char *meta, const char *config)
{
	char		hdr[8192],
				path[1024];
	size_t		h = 0,
				off = 0;
	FILE	   *f;

#define TENSOR2(n, r, c) do { h += snprintf(hdr + h, sizeof(hdr) - h, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}", \
		h > 1 ? "," : "", n, r, c, off, off + (size_t) (r) * (c) * 4); off += (size_t) (r) * (c) * 4; } while (0)
#define TENSOR1(n, r) do { h += snprintf(hdr + h, sizeof(hdr) - h, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}", \
		h > 1 ? "," : "", n, r, off, off + (size_t) (r) * 4); off += (size_t) (r) * 4; } while (0)

	h += snprintf(hdr + h, sizeof(hdr) - h, "{");
	if (meta)
		h += snprintf(hdr + h, sizeof(hdr) - h, "\"__metadata__\":{%s}", meta);
	for (int k = 0; k < layers; k++)
	{
		char		n[64];

		snprintf(n, sizeof(n), "weight_ih_l%d", k);
		TENSOR2(n, gates * H, k ? H : D);
		snprintf(n, sizeof(n), "weight_hh_l%d", k);
		TENSOR2(n, gates * H, H);
		if (bias)
		{
			snprintf(n, sizeof(n), "bias_ih_l%d", k);
			TENSOR1(n, gates * H);
			snprintf(n, sizeof(n), "bias_hh_l%d", k);
			TENSOR1(n, gates * H);
		}
	}
	if (attn)
	{
		TENSOR2("attn.weight", 1, H);
		TENSOR1("attn.bias", 1);
	}
	if (mlp)
	{
		TENSOR2("head.0.weight", 5, H);
		TENSOR1("head.0.bias", 5);
		TENSOR2("head.2.weight", K, 5);
		TENSOR1("head.2.bias", K);
	}
	else
	{
		TENSOR2("head.weight", K, H);
		TENSOR1("head.bias", K);
	}
	h += snprintf(hdr + h, sizeof(hdr) - h, "}");
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL)
	{
		perror(path);
		exit(1);
	}
	for (int i = 0; i < 8; i++)
		fputc((int) (((uint64_t) h >> (8 * i)) & 0xff), f);
	fwrite(hdr, 1, h, f);
	for (size_t i = 0; i < off; i++)
		fputc(0, f);
	if (config)
		fputs(config, f);
	fclose(f);
}

int
main(int argc, char **argv)
{
	if (argc < 2)
	{
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	seed(argv[1], "lstm1", 4, 3, 2, 1, 1, 0, 0, 2, "\"arch\":\"lstm\"", NULL);
	seed(argv[1], "lstm2_attn", 4, 4, 3, 2, 1, 1, 0, 3, NULL, "{\"arch\": \"lstm\", \"multilabel\": false}");
	seed(argv[1], "gru1_nobias", 3, 2, 2, 1, 0, 0, 0, 2, "\"arch\":\"gru\",\"classes\":\"[\\\"a\\\",\\\"b\\\"]\"", NULL);
	seed(argv[1], "gru2_mlp", 3, 5, 4, 2, 1, 1, 1, 4, NULL,
		 "{\"arch\": \"gru\", \"l2_normalize\": true, \"input_model\": \"m\", \"sensor\": \"S2-SR\"}");
	printf("wrote 4 seeds to %s\n", argv[1]);
	return 0;
}
