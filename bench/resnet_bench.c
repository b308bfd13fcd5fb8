/*
 * resnet_bench.c — throughput of the ResNet engine against the sgemm roofline.
 *
 *   resnet_bench [--runs N] [--threads N] [--json] [--case H W B]
 *
 * Builds a torchvision ResNet-50 with 4 input channels (random weights and
 * BatchNorm statistics) in memory and reports, for 224 x 224 and 200 x 200
 * native input at batch 1 and 16: the engine's images/s (median of N timed
 * runs after a warm-up) and the roofline, the same forward pass's GEMMs
 * alone (r4_resnet_gemm_plan: the engine's exact shapes, strides and
 * chunks) replayed through cblas_sgemm, i.e. what the engine would reach if
 * im2col, the bias/ReLU epilogue and the pooling were free.  --threads sets
 * OpenBLAS's thread count (default 1, as inside a PostgreSQL backend).
 * --json prints one JSON object per case for bench/resnet_bench.py; --case
 * runs one shape only (H, W from 32 to 512, B from 1 to 64).
 */
#include "bench_util.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/model_config.h"
#include "rai4eo/resnet.h"
#include "rai4eo/safetensors.h"

#define CH 4
#define MAX_GEMMS 4096

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

/* Draw a roughly normal float (sum of uniforms), deterministic. */
static float
randn(void)
{
	double		s = 0;

	for (int i = 0; i < 4; i++)
	{
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		s += (double) (rng >> 11) / 9007199254740992.0;
	}
	return (float) ((s - 2.0) * sqrt(3.0));
}

/* A safetensors file under construction: header text and tensor data. */
typedef struct Builder
{
	char	   *hdr;
	size_t		hlen;
	float	   *data;
	size_t		nfloats;
} Builder;

/* Append one F32 tensor with values mean + std * N(0, 1), |.| when positive. */
static void
tensor(Builder *b, const char *name, int ndim, const int *shape, double std, double mean,
	   int positive)
{
	size_t		numel = 1;

	for (int i = 0; i < ndim; i++)
		numel *= (size_t) shape[i];
	b->hlen += sprintf(b->hdr + b->hlen, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[",
					   b->hlen > 1 ? "," : "", name);
	for (int i = 0; i < ndim; i++)
		b->hlen += sprintf(b->hdr + b->hlen, "%s%d", i ? "," : "", shape[i]);
	b->hlen += sprintf(b->hdr + b->hlen, "],\"data_offsets\":[%zu,%zu]}",
					   b->nfloats * 4, (b->nfloats + numel) * 4);
	for (size_t i = 0; i < numel; i++)
	{
		double		v = mean + std * randn();

		b->data[b->nfloats + i] = (float) (positive ? fabs(v) : v);
	}
	b->nfloats += numel;
}

/* Append a He-initialised conv and its BatchNorm (gain small for a block's last one). */
static void
conv_bn(Builder *b, const char *conv, const char *bn, int cout, int cin, int k, int last)
{
	char		name[96];

	tensor(b, conv, 4, (int[]) {cout, cin, k, k}, sqrt(2.0 / (cin * k * k)), 0, 0);
	snprintf(name, sizeof(name), "%s.weight", bn);
	tensor(b, name, 1, (int[]) {cout}, 0.1, last ? 0.3 : 1.0, 1);
	snprintf(name, sizeof(name), "%s.bias", bn);
	tensor(b, name, 1, (int[]) {cout}, 0.1, 0, 0);
	snprintf(name, sizeof(name), "%s.running_mean", bn);
	tensor(b, name, 1, (int[]) {cout}, 0.3, 0, 0);
	snprintf(name, sizeof(name), "%s.running_var", bn);
	tensor(b, name, 1, (int[]) {cout}, 0.5, 1.0, 1);
}

/* Build the ResNet-50 4-band weights as a safetensors file in memory. */
static uint8_t *
make_model(size_t *len)
{
	static const int layers[4] = {3, 4, 6, 3};
	Builder		b;
	char		c[96],
				n[96];
	uint8_t    *buf;
	size_t		hpad;
	int			in = 64;

	b.hdr = malloc(1 << 17);
	b.data = malloc(sizeof(float) * 24000000);
	b.hlen = 0;
	b.nfloats = 0;
	b.hdr[b.hlen++] = '{';
	conv_bn(&b, "conv1.weight", "bn1", 64, CH, 7, 0);
	for (int s = 0; s < 4; s++)
	{
		int			P = 64 << s;

		for (int k = 0; k < layers[s]; k++)
		{
#define NAMES(cv, bn) (snprintf(c, sizeof(c), "layer%d.%d.%s", s + 1, k, (cv)), \
					   snprintf(n, sizeof(n), "layer%d.%d.%s", s + 1, k, (bn)))
			NAMES("conv1.weight", "bn1");
			conv_bn(&b, c, n, P, k == 0 ? in : 4 * P, 1, 0);
			NAMES("conv2.weight", "bn2");
			conv_bn(&b, c, n, P, P, 3, 0);
			NAMES("conv3.weight", "bn3");
			conv_bn(&b, c, n, 4 * P, P, 1, 1);
			if (k == 0)
			{
				NAMES("downsample.0.weight", "downsample.1");
				conv_bn(&b, c, n, 4 * P, in, 1, 1);
			}
#undef NAMES
		}
		in = 4 * P;
	}
	b.hdr[b.hlen++] = '}';
	hpad = (b.hlen + 7) / 8 * 8;
	*len = 8 + hpad + b.nfloats * 4;
	buf = malloc(*len);
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t) (hpad >> (8 * i));
	memcpy(buf + 8, b.hdr, b.hlen);
	memset(buf + 8 + b.hlen, ' ', hpad - b.hlen);
	memcpy(buf + 8 + hpad, b.data, b.nfloats * 4);
	free(b.hdr);
	free(b.data);
	return buf;
}

/* Run one GEMM of the plan on scratch operands. */
static void
run_gemm(const R4GemmShape *g, const float *a, const float *b, float *c)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->M, g->N, g->K,
				1.0f, a, g->lda, b, g->ldb, g->accumulate ? 1.0f : 0.0f, c, g->ldc);
}

/* Time the engine and its GEMMs alone. */
int
main(int argc, char **argv)
{
	int			runs = 5;
	int			threads = 1;
	int			json = 0;
	int			cases[][3] = {{224, 224, 1}, {224, 224, 16}, {200, 200, 1}, {200, 200, 16}};
	size_t		ncases = sizeof(cases) / sizeof(cases[0]);
	uint8_t    *buf;
	size_t		len;
	R4SafeTensors st;
	R4ModelConfig cfg;
	R4ResNet   *net;
	R4Error		err;
	R4GemmShape *plan = malloc(sizeof(R4GemmShape) * MAX_GEMMS);

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--case") == 0 && i + 3 < argc)
		{
			/* One shape only, so a driver can interleave engines case by case. */
			cases[0][0] = atoi(argv[++i]);
			cases[0][1] = atoi(argv[++i]);
			cases[0][2] = atoi(argv[++i]);
			ncases = 1;
			if (cases[0][0] < 32 || cases[0][1] < 32 || cases[0][0] > 512 || cases[0][1] > 512 ||
				cases[0][2] < 1 || cases[0][2] > 64)
			{
				fprintf(stderr, "resnet_bench: --case needs H, W in 32..512 and B in 1..64\n");
				return 2;
			}
		}
		else
		{
			fprintf(stderr, "usage: resnet_bench [--runs N] [--threads N] [--json] [--case H W B]\n");
			return 2;
		}
	}
	if (runs < 1 || runs > 100)
		runs = 5;
	openblas_set_num_threads(threads);

	buf = make_model(&len);
	if (r4_safetensors_parse(buf, len, &st, &err) != R4_OK ||
		r4_model_config_resolve(&st, NULL, &cfg, &err) != R4_OK ||
		r4_resnet_build(&st, &cfg, &net, &err) != R4_OK)
	{
		fprintf(stderr, "resnet_bench: %s\n", err.message);
		return 1;
	}
	if (json)
		printf("{\"params\":%zu,\"openblas\":\"%s\",\"core\":\"%s\",\"threads\":%d,\"runs\":%d}\n",
			   r4_resnet_param_count(net), openblas_get_config(), openblas_get_corename(), threads, runs);
	else
	{
		printf("ResNet-50, %d bands, %zu parameters; %s (kernels: %s), %d thread(s); median of %d runs\n\n",
			   CH, r4_resnet_param_count(net), openblas_get_config(), openblas_get_corename(),
			   threads, runs);
		printf("%-12s %6s %12s %12s %9s %10s %7s\n", "input", "batch", "engine img/s",
			   "sgemm img/s", "engine/%", "GFLOP/img", "GEMMs");
	}

	for (size_t ci = 0; ci < ncases; ci++)
	{
		int			H = cases[ci][0],
					W = cases[ci][1],
					B = cases[ci][2];
		size_t		plane = (size_t) B * CH * H * W;
		float	   *x = malloc(sizeof(float) * plane);
		float	   *out = malloc(sizeof(float) * (size_t) B * cfg.out_dim);
		double		t_engine[100],
					t_gemm[100];
		double		flops = 0;
		size_t		sa = 0,
					sb = 0,
					sc = 0;
		int			ng = 0;
		float	   *a,
				   *b,
				   *c;

		if (r4_resnet_gemm_plan(net, B, H, W, plan, MAX_GEMMS, &ng, &err) != R4_OK || ng > MAX_GEMMS)
		{
			fprintf(stderr, "resnet_bench: cannot list the GEMMs: %s\n", err.message);
			return 1;
		}
		for (int k = 0; k < ng; k++)
		{
			size_t		na = (size_t) plan[k].M * plan[k].lda;
			size_t		nb = (size_t) plan[k].K * plan[k].ldb;
			size_t		nc = (size_t) plan[k].M * plan[k].ldc;

			flops += 2.0 * plan[k].M * plan[k].N * plan[k].K;
			sa = na > sa ? na : sa;
			sb = nb > sb ? nb : sb;
			sc = nc > sc ? nc : sc;
		}
		a = malloc(sizeof(float) * sa);
		b = malloc(sizeof(float) * sb);
		c = calloc(sc, sizeof(float));
		for (size_t i = 0; i < sa; i++)
			a[i] = randn() * 0.05f;
		for (size_t i = 0; i < sb; i++)
			b[i] = randn();
		for (size_t i = 0; i < plane; i++)
			x[i] = randn();

		/* The engine, after one warm-up pass. */
		for (int r = -1; r < runs; r++)
		{
			double		t0 = bench_now();

			if (r4_resnet_forward(net, x, B, H, W, out, NULL, NULL, &err) != R4_OK)
			{
				fprintf(stderr, "resnet_bench: %s\n", err.message);
				return 1;
			}
			if (r >= 0)
				t_engine[r] = bench_now() - t0;
		}

		/* The same GEMMs alone, in forward order (C rewritten, never read back). */
		for (int r = -1; r < runs; r++)
		{
			double		t0 = bench_now();

			for (int k = 0; k < ng; k++)
			{
				R4GemmShape g = plan[k];

				g.accumulate = false;	/* keep the scratch C finite run after run */
				run_gemm(&g, a, b, c);
			}
			if (r >= 0)
				t_gemm[r] = bench_now() - t0;
		}

		{
			double		te = bench_median(t_engine, runs);
			double		tg = bench_median(t_gemm, runs);

			if (json)
				printf("{\"H\":%d,\"W\":%d,\"B\":%d,\"engine_img_s\":%.4f,\"sgemm_img_s\":%.4f,"
					   "\"gflop_per_img\":%.4f,\"sgemm_gflops\":%.3f,\"engine_gflops\":%.3f,"
					   "\"gemms\":%d,\"work_mb\":%.1f}\n",
					   H, W, B, B / te, B / tg, flops / B * 1e-9, flops / tg * 1e-9,
					   flops / te * 1e-9, ng, r4_resnet_work_bytes(net) / 1048576.0);
			else
			{
				char		label[32];

				snprintf(label, sizeof(label), "%dx%d", H, W);
				printf("%-12s %6d %12.2f %12.2f %8.1f%% %10.2f %7d\n", label, B, B / te, B / tg,
					   100.0 * tg / te, flops / B * 1e-9, ng);
				printf("%19s sgemm over the pass: %.1f GFLOP/s, engine %.1f GFLOP/s; arena %.1f MiB\n",
					   "", flops / tg * 1e-9, flops / te * 1e-9, r4_resnet_work_bytes(net) / 1048576.0);
			}
		}
		fflush(stdout);
		free(x);
		free(out);
		free(a);
		free(b);
		free(c);
	}
	free(plan);
	r4_resnet_free(net);
	r4_safetensors_free(&st);
	free(buf);
	return 0;
}
