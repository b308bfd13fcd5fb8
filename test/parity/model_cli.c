/*
 * model_cli.c — run a model (ViT or ResNet) through the architecture-neutral
 * engine API (engine.h) on raw float32 files, for the PyTorch parity tests,
 * the converter and trainer tests.
 *
 *   model_cli [options] MODEL.safetensors INPUT.f32 B C H W OUTPUT.f32
 *
 * INPUT holds B x C x H x W float32 (host order).  By default it is the
 * preprocessed model input; with --preprocess it is raw band planes that go
 * through r4_preprocess first (with --mask FILE: B x C x H x W bytes,
 * nonzero = nodata).  OUTPUT receives B x out_dim float32, or with
 * --preprocess-only the model input itself.
 *
 * Options:
 *   --config FILE          configuration object (JSON) given at load time
 *   --preprocess           INPUT is raw planes
 *   --preprocess-only      write the preprocessed input instead of features
 *   --mask FILE            nodata mask for --preprocess
 *   --singles              run the images one at a time instead of as a batch
 *   --interrupt-after K    first run a forward pass whose K+1-th interrupt
 *                          check (0: before the stem) stops it, and check
 *                          that it fails cleanly
 *   --repeat N             run the forward pass N times (the arena is reused)
 *   --no-simd              use the baseline (non-AVX2) GELU/softmax code
 *
 * Prints one line: "out_dim=N params=N config=<resolved JSON>".  Exits 1
 * with the engine's message on stderr when anything fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/engine.h"
#include "rai4eo/nn.h"
#include "rai4eo/json.h"
#include "rai4eo/model_config.h"
#include "rai4eo/preprocess.h"
#include "rai4eo/safetensors.h"

/* Read a whole file into a malloc'd buffer. */
static uint8_t *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf;
	long		n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
		fseek(f, 0, SEEK_SET) != 0)
	{
		fprintf(stderr, "model_cli: cannot read %s\n", path);
		exit(2);
	}
	buf = malloc((size_t) n + 1);
	if (buf == NULL || fread(buf, 1, (size_t) n, f) != (size_t) n)
	{
		fprintf(stderr, "model_cli: cannot read %s\n", path);
		exit(2);
	}
	fclose(f);
	buf[n] = 0;
	*len = (size_t) n;
	return buf;
}

/* Print an engine error and exit. */
static void
die(const char *what, const R4Error *err)
{
	fprintf(stderr, "model_cli: %s: %s: %s", what, r4_status_name(err->status), err->message);
	if (err->detail[0])
		fprintf(stderr, " (%s)", err->detail);
	fputc('\n', stderr);
	exit(1);
}

/* Count blocks and interrupt when the count reaches the limit. */
typedef struct InterruptState
{
	int			calls;
	int			after;
} InterruptState;

/* Interrupt once the engine has asked limit times. */
static bool
interrupt_after(void *arg)
{
	InterruptState *s = arg;

	return s->calls++ >= s->after;
}

/* Load, configure, optionally preprocess, run and write the output. */
int
main(int argc, char **argv)
{
	const char *config_path = NULL;
	const char *mask_path = NULL;
	bool		do_pre = false;
	bool		pre_only = false;
	bool		singles = false;
	int			interrupt = -1;
	int			repeat = 1;
	int			i = 1;
	uint8_t    *model_buf;
	size_t		model_len;
	R4SafeTensors st;
	R4Json	   *config = NULL;
	R4ModelConfig cfg;
	R4Engine   *engine = NULL;
	R4Error		err;
	float	   *input;
	float	   *model_in;
	float	   *out;
	uint8_t    *mask = NULL;
	size_t		in_len;
	int			B,
				C,
				H,
				W,
				mh,
				mw;
	size_t		plane;
	size_t		mplane;
	size_t		out_count;
	char	   *json;
	FILE	   *f;

	r4_error_clear(&err);
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++)
	{
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config_path = argv[++i];
		else if (strcmp(argv[i], "--mask") == 0 && i + 1 < argc)
			mask_path = argv[++i];
		else if (strcmp(argv[i], "--preprocess") == 0)
			do_pre = true;
		else if (strcmp(argv[i], "--preprocess-only") == 0)
			do_pre = pre_only = true;
		else if (strcmp(argv[i], "--singles") == 0)
			singles = true;
		else if (strcmp(argv[i], "--interrupt-after") == 0 && i + 1 < argc)
			interrupt = atoi(argv[++i]);
		else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
			repeat = atoi(argv[++i]);
		else if (strcmp(argv[i], "--no-simd") == 0)
			r4_nn_set_simd(false);
		else
		{
			fprintf(stderr, "model_cli: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (argc - i != 7)
	{
		fprintf(stderr, "usage: model_cli [options] MODEL.safetensors INPUT.f32 B C H W OUTPUT.f32\n");
		return 2;
	}
	B = atoi(argv[i + 2]);
	C = atoi(argv[i + 3]);
	H = atoi(argv[i + 4]);
	W = atoi(argv[i + 5]);

	model_buf = read_file(argv[i], &model_len);
	if (r4_safetensors_parse(model_buf, model_len, &st, &err) != R4_OK)
		die("parse weights", &err);
	if (config_path != NULL)
	{
		size_t		clen;
		uint8_t    *ctext = read_file(config_path, &clen);

		if (r4_json_parse((const char *) ctext, clen, &config, &err) != R4_OK)
			die("parse configuration", &err);
		free(ctext);
	}
	if (r4_model_config_resolve(&st, config, &cfg, &err) != R4_OK)
		die("resolve configuration", &err);
	if (cfg.in_chans != C)
	{
		fprintf(stderr, "model_cli: the model has %d channels, the input %d\n", cfg.in_chans, C);
		return 1;
	}

	input = (float *) read_file(argv[i + 1], &in_len);
	plane = (size_t) C * H * W;
	if (B < 1 || H < 1 || W < 1 || in_len != (size_t) B * plane * sizeof(float))
	{
		fprintf(stderr, "model_cli: input holds %zu bytes, not %d x %d x %d x %d floats\n",
				in_len, B, C, H, W);
		return 1;
	}
	if (mask_path != NULL)
	{
		size_t		mlen;

		mask = read_file(mask_path, &mlen);
		if (mlen != (size_t) B * plane)
		{
			fprintf(stderr, "model_cli: mask holds %zu bytes, not %zu\n", mlen, (size_t) B * plane);
			return 1;
		}
	}

	/* Preprocess each image when asked, else feed the input as it is. */
	mh = H;
	mw = W;
	model_in = input;
	if (do_pre)
	{
		r4_preprocess_output_size(&cfg, H, W, &mh, &mw);
		mplane = (size_t) C * mh * mw;
		model_in = malloc(sizeof(float) * (size_t) B * mplane);
		for (int b = 0; b < B; b++)
			if (r4_preprocess(&cfg, input + (size_t) b * plane,
							  mask ? mask + (size_t) b * plane : NULL, H, W,
							  model_in + (size_t) b * mplane, NULL, NULL, &err) != R4_OK)
				die("preprocess", &err);
	}
	mplane = (size_t) C * mh * mw;

	if (pre_only)
	{
		out = model_in;
		out_count = (size_t) B * mplane;
	}
	else
	{
		if (r4_engine_build(&st, &cfg, &engine, &err) != R4_OK)
			die("build", &err);
		out_count = (size_t) B * cfg.out_dim;
		out = malloc(sizeof(float) * out_count);
		if (interrupt >= 0)
		{
			InterruptState s = {0, interrupt};

			if (r4_engine_forward(engine, model_in, B, mh, mw, out, interrupt_after, &s, &err) != R4_ERR_LIMIT)
			{
				fprintf(stderr, "model_cli: interrupted forward did not fail with R4_ERR_LIMIT\n");
				return 1;
			}
			fprintf(stderr, "model_cli: interrupted as asked: %s\n", err.message);
			r4_error_clear(&err);
		}
		for (int r = 0; r < repeat; r++)
		{
			if (singles)
			{
				for (int b = 0; b < B; b++)
					if (r4_engine_forward(engine, model_in + (size_t) b * mplane, 1, mh, mw,
										  out + (size_t) b * cfg.out_dim, NULL, NULL, &err) != R4_OK)
						die("forward", &err);
			}
			else if (r4_engine_forward(engine, model_in, B, mh, mw, out, NULL, NULL, &err) != R4_OK)
				die("forward", &err);
		}
	}

	f = fopen(argv[i + 6], "wb");
	if (f == NULL || fwrite(out, sizeof(float), out_count, f) != out_count || fclose(f) != 0)
	{
		fprintf(stderr, "model_cli: cannot write %s\n", argv[i + 6]);
		return 2;
	}
	json = r4_model_config_to_json(&cfg);
	printf("out_dim=%d params=%zu config=%s\n", cfg.out_dim,
		   engine ? r4_engine_param_count(engine) : (size_t) 0, json ? json : "null");
	r4_free(json);
	r4_engine_free(engine);
	r4_model_config_free(&cfg);
	r4_json_free(config);
	r4_safetensors_free(&st);
	if (model_in != input)
		free(model_in);
	if (out != model_in)
		free(out);
	free(input);
	free(mask);
	free(model_buf);
	return 0;
}
