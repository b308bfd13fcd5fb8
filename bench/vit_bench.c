/*
 * vit_bench.c — throughput of the ViT engine against the sgemm roofline.
 *
 *   vit_bench [--runs N] [--threads N] [--json] [--case H W B] [--precision fp32|bf16]
 *
 * Builds a ViT-S/16 with 4 input channels (DINO shapes, random weights) in
 * memory and reports, for 224 x 224 and 200 x 200 native input at batch 1
 * and 16: the engine's images/s (median of N timed runs after a warm-up),
 * the same forward pass's GEMMs alone replayed through cblas_sgemm with the
 * engine's exact shapes and strides (the "roofline": what the engine would
 * reach if everything but sgemm were free), and the single-thread sgemm
 * GFLOP/s of each GEMM shape.  --threads sets OpenBLAS's thread count
 * (default 1, as inside a PostgreSQL backend).  --json prints one JSON
 * object per case for bench/vit_bench.py; --case runs one shape only
 * (H, W up to 224, B up to 64).
 *
 * --precision bf16 runs the engine with its linear layers in bf16
 * (r4_vit_set_precision).  Whatever the precision, two bf16 figures are
 * printed too: the "bf16 roofline", the same forward pass's GEMMs replayed
 * through r4_gemm_bf16 the way the bf16 engine runs them (weights packed
 * once; attention's K and V packed once, not per head), and the peak of a bare
 * vdpbf16ps loop on registers (hot data, no memory: the instruction's
 * throughput on this core), when the CPU has avx512_bf16.
 */
#include "bench_util.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rai4eo/gemm.h"
#include "rai4eo/model_config.h"
#include "rai4eo/safetensors.h"
#include "rai4eo/vit.h"

#define D 384
#define DEPTH 12
#define HEADS 6
#define HD (D / HEADS)
#define HIDDEN 1536
#define CH 4
#define P 16
#define GRID 14

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

/* Append one tensor entry to the header and its random data to the buffer. */
static void
tensor(Builder *b, const char *name, int ndim, const int *shape, double std, double mean)
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
		b->data[b->nfloats + i] = (float) (mean + std * randn());
	b->nfloats += numel;
}

/* Build the ViT-S/16 4-band weights as a safetensors file in memory. */
static uint8_t *
make_model(size_t *len)
{
	Builder		b;
	char		name[64];
	uint8_t    *buf;
	size_t		hpad;

	b.hdr = malloc(1 << 16);
	b.data = malloc(sizeof(float) * 24000000);
	b.hlen = 0;
	b.nfloats = 0;
	b.hdr[b.hlen++] = '{';
	tensor(&b, "cls_token", 3, (int[]) {1, 1, D}, 0.5, 0);
	tensor(&b, "pos_embed", 3, (int[]) {1, GRID * GRID + 1, D}, 0.5, 0);
	tensor(&b, "patch_embed.proj.weight", 4, (int[]) {D, CH, P, P}, 1 / sqrt(CH * P * P), 0);
	tensor(&b, "patch_embed.proj.bias", 1, (int[]) {D}, 0.2, 0);
	for (int l = 0; l < DEPTH; l++)
	{
#define T(suffix, nd, std, mean, ...) do { snprintf(name, sizeof(name), "blocks.%d.%s", l, suffix); \
		tensor(&b, name, nd, (int[]) {__VA_ARGS__}, std, mean); } while (0)
		T("norm1.weight", 1, 0.3, 1.0, D);
		T("norm1.bias", 1, 0.2, 0, D);
		T("attn.qkv.weight", 2, 1.2 / sqrt(D), 0, 3 * D, D);
		T("attn.qkv.bias", 1, 0.2, 0, 3 * D);
		T("attn.proj.weight", 2, 0.6 / sqrt(D), 0, D, D);
		T("attn.proj.bias", 1, 0.1, 0, D);
		T("norm2.weight", 1, 0.3, 1.0, D);
		T("norm2.bias", 1, 0.2, 0, D);
		T("mlp.fc1.weight", 2, 1 / sqrt(D), 0, HIDDEN, D);
		T("mlp.fc1.bias", 1, 0.2, 0, HIDDEN);
		T("mlp.fc2.weight", 2, 0.6 / sqrt(HIDDEN), 0, D, HIDDEN);
		T("mlp.fc2.bias", 1, 0.1, 0, D);
#undef T
	}
	tensor(&b, "norm.weight", 1, (int[]) {D}, 0.3, 1.0);
	tensor(&b, "norm.bias", 1, (int[]) {D}, 0.2, 0);
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

/* One GEMM of the forward pass, with the engine's layout. */
typedef struct Gemm
{
	const char *what;
	int			M,
				N,
				K;
	int			transb;			/* 1: B is [N][K] (weights, keys) */
	int			lda,
				ldb,
				ldc;
	int			count;			/* calls per forward pass */
} Gemm;

/* List the GEMMs of one forward pass of B images of H x W. */
static int
list_gemms(int B, int H, int W, Gemm *g)
{
	int			np = (H / P) * (W / P);
	int			T = np + 1;
	int			M = B * T;
	int			n = 0;

	g[n++] = (Gemm) {"patch", B * np, D, CH * P * P, 1, CH * P * P, CH * P * P, D, 1};
	g[n++] = (Gemm) {"qkv", M, 3 * D, D, 1, D, D, 3 * D, DEPTH};
	g[n++] = (Gemm) {"q.k^T", T, T, HD, 1, 3 * D, 3 * D, T, DEPTH * B * HEADS};
	g[n++] = (Gemm) {"p.v", T, HD, T, 0, T, 3 * D, D, DEPTH * B * HEADS};
	g[n++] = (Gemm) {"proj", M, D, D, 1, D, D, D, DEPTH};
	g[n++] = (Gemm) {"fc1", M, HIDDEN, D, 1, D, D, HIDDEN, DEPTH};
	g[n++] = (Gemm) {"fc2", M, D, HIDDEN, 1, HIDDEN, HIDDEN, D, DEPTH};
	return n;
}

/* Run one GEMM of the list on scratch operands. */
static void
run_gemm(const Gemm *g, const float *a, const float *b, float *c)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, g->transb ? CblasTrans : CblasNoTrans,
				g->M, g->N, g->K, 1.0f, a, g->lda, b, g->ldb, 0.0f, c, g->ldc);
}

/* Run one GEMM the way the bf16 engine does: packed weights for the linear layers. */
static void
run_gemm_bf16(const Gemm *g, const R4PackedB *pb, const float *a, const float *b, float *c)
{
	if (pb != NULL)
		r4_gemm_bf16(c, g->ldc, a, g->lda, g->M, pb, NULL, false);
	else
		run_gemm(g, a, b, c);
}

#if defined(__x86_64__)
#include <immintrin.h>

/*
 * GFLOP/s of vdpbf16ps alone: 24 independent accumulators (more than the
 * latency x throughput product of any core with the instruction), no
 * loads in the loop.  Each instruction is 16 lanes x 2 multiply-adds.
 */
__attribute__((target("avx512f,avx512bw,avx512bf16"), noinline))
static double
dpbf16_peak(void)
{
	__m512		acc[24];
	__m512bh	x = (__m512bh) _mm512_set1_epi32(0x3f803f80),
				y = (__m512bh) _mm512_set1_epi32(0x3c003c00);
	long		iters = 20000000;
	double		t0,
				t;
	float		sink = 0;

	for (int i = 0; i < 24; i++)
		acc[i] = _mm512_setzero_ps();
	t0 = bench_now();
	for (long it = 0; it < iters; it++)
	{
#pragma GCC unroll 24
		for (int i = 0; i < 24; i++)
			acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
		__asm__ volatile ("" : "+v" (x));
	}
	t = bench_now() - t0;
	for (int i = 0; i < 24; i++)
		sink += _mm512_reduce_add_ps(acc[i]);
	if (sink == 1234.5f)
		fprintf(stderr, "!");
	return (double) iters * 24 * 16 * 4 / t * 1e-9;
}
#endif

/* Size in floats of an operand of rows rows with leading dimension ld. */
static size_t
opsize(int rows, int ld)
{
	return (size_t) rows * ld;
}

/* Time the engine, its GEMMs alone, and each GEMM shape. */
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
	R4ViT	   *vit;
	R4Error		err;
	float	   *scratch_a,
			   *scratch_b,
			   *scratch_c;
	size_t		scratch = 64 * 197 * HIDDEN + 4096;
	R4Precision precision = R4_PRECISION_FP32;
	double		peak = 0;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc)
		{
			i++;
			if (strcmp(argv[i], "bf16") == 0)
				precision = R4_PRECISION_BF16;
			else if (strcmp(argv[i], "fp32") != 0)
			{
				fprintf(stderr, "vit_bench: --precision is fp32 or bf16\n");
				return 2;
			}
		}
		else if (strcmp(argv[i], "--case") == 0 && i + 3 < argc)
		{
			/* One shape only, so a driver can interleave engines case by case. */
			cases[0][0] = atoi(argv[++i]);
			cases[0][1] = atoi(argv[++i]);
			cases[0][2] = atoi(argv[++i]);
			ncases = 1;
			if (cases[0][0] < P || cases[0][1] < P || cases[0][2] < 1 || cases[0][2] > 64 ||
				(cases[0][0] / P) * (cases[0][1] / P) + 1 > 197)
			{
				fprintf(stderr, "vit_bench: --case needs H, W in %d..%d and B in 1..64\n", P, GRID * P);
				return 2;
			}
		}
		else
		{
			fprintf(stderr, "usage: vit_bench [--runs N] [--threads N] [--json] [--case H W B] [--precision fp32|bf16]\n");
			return 2;
		}
	}
	if (runs < 1 || runs > 100)
		runs = 5;
	openblas_set_num_threads(threads);

	buf = make_model(&len);
	if (r4_safetensors_parse(buf, len, &st, &err) != R4_OK ||
		r4_model_config_resolve(&st, NULL, &cfg, &err) != R4_OK ||
		r4_vit_build(&st, &cfg, &vit, &err) != R4_OK ||
		(precision == R4_PRECISION_BF16 && !r4_gemm_bf16_native()) ||
		r4_vit_set_precision(vit, precision, &err) != R4_OK)
	{
		if (precision == R4_PRECISION_BF16 && !r4_gemm_bf16_native())
			snprintf(err.message, sizeof(err.message), "this CPU has no avx512_bf16");
		fprintf(stderr, "vit_bench: %s\n", err.message);
		return 1;
	}
#if defined(__x86_64__)
	if (r4_gemm_bf16_native())
		peak = dpbf16_peak();
#endif
	if (json)
		printf("{\"params\":%zu,\"openblas\":\"%s\",\"core\":\"%s\",\"threads\":%d,\"runs\":%d,"
			   "\"precision\":\"%s\",\"weight_bytes\":%zu,\"dpbf16_peak_gflops\":%.2f}\n",
			   r4_vit_param_count(vit), openblas_get_config(), openblas_get_corename(), threads, runs,
			   r4_precision_name(precision), r4_vit_weight_bytes(vit), peak);
	else
		printf("ViT-S/16, %d bands, %zu parameters, %s (%.1f MB of weights); %s (kernels: %s), "
			   "%d thread(s); median of %d runs; bare vdpbf16ps peak %.1f GFLOP/s\n\n",
			   CH, r4_vit_param_count(vit), r4_precision_name(precision),
			   r4_vit_weight_bytes(vit) / 1e6, openblas_get_config(), openblas_get_corename(),
			   threads, runs, peak);

	scratch_a = malloc(sizeof(float) * scratch);
	scratch_b = malloc(sizeof(float) * scratch);
	scratch_c = malloc(sizeof(float) * scratch);
	for (size_t i = 0; i < scratch; i++)
	{
		scratch_a[i] = randn();
		scratch_b[i] = randn();
	}

	if (!json)
		printf("%-12s %6s %12s %12s %9s %10s\n", "input", "batch", "engine img/s",
			   "sgemm img/s", "engine/%", "GFLOP/img");
	for (size_t ci = 0; ci < ncases; ci++)
	{
		int			H = cases[ci][0],
					W = cases[ci][1],
					B = cases[ci][2];
		size_t		plane = (size_t) B * CH * H * W;
		float	   *x = malloc(sizeof(float) * plane);
		float	   *out = malloc(sizeof(float) * (size_t) B * cfg.out_dim);
		double		t_engine[100],
					t_gemm[100],
					t_bf16[100];
		R4PackedB  *packed[8] = {NULL};
		double		flops = 0;
		Gemm		g[8];
		int			ng = list_gemms(B, H, W, g);
		double		shape_gflops[8];

		for (size_t i = 0; i < plane; i++)
			x[i] = randn();
		for (int k = 0; k < ng; k++)
			flops += 2.0 * g[k].M * g[k].N * g[k].K * g[k].count;

		/* The engine, after one warm-up pass. */
		for (int r = -1; r < runs; r++)
		{
			double		t0 = bench_now();

			if (r4_vit_forward(vit, x, B, H, W, out, NULL, NULL, &err) != R4_OK)
			{
				fprintf(stderr, "vit_bench: %s\n", err.message);
				return 1;
			}
			if (r >= 0)
				t_engine[r] = bench_now() - t0;
		}

		/* The same GEMMs alone, in forward order. */
		for (int r = -1; r < runs; r++)
		{
			double		t0 = bench_now();

			for (int k = 0; k < ng; k++)
				for (int c = 0; c < g[k].count; c++)
					run_gemm(&g[k], scratch_a, scratch_b, scratch_c);
			if (r >= 0)
				t_gemm[r] = bench_now() - t0;
		}

		/* The GEMMs as the bf16 engine runs them, weights packed once beforehand. */
		/*
		 * Attention's operands (K, V) are packed once here too, not per head as
		 * the engine does: the roofline is the products alone.
		 */
		for (int k = 0; k < ng && r4_gemm_bf16_native(); k++)
			if (r4_pack_b_bf16(scratch_b, g[k].N, g[k].K, g[k].K, &packed[k], &err) != R4_OK)
			{
				fprintf(stderr, "vit_bench: %s\n", err.message);
				return 1;
			}
		for (int r = -1; r < runs && r4_gemm_bf16_native(); r++)
		{
			double		t0 = bench_now();

			for (int k = 0; k < ng; k++)
				for (int c = 0; c < g[k].count; c++)
					run_gemm_bf16(&g[k], packed[k], scratch_a, scratch_b, scratch_c);
			if (r >= 0)
				t_bf16[r] = bench_now() - t0;
		}
		for (int k = 0; k < ng; k++)
			r4_packed_b_free(packed[k]);

		/* Each shape on its own, repeated for about 0.2 s. */
		for (int k = 0; k < ng; k++)
		{
			double		one = 2.0 * g[k].M * g[k].N * g[k].K;
			int			reps = (int) (2e10 / one);
			double		t0;

			if (opsize(g[k].M, g[k].lda) > scratch || opsize(g[k].M, g[k].ldc) > scratch ||
				opsize(g[k].transb ? g[k].N : g[k].K, g[k].ldb) > scratch)
			{
				fprintf(stderr, "vit_bench: scratch too small for %s\n", g[k].what);
				return 1;
			}
			reps = reps < 2 ? 2 : (reps > 2000 ? 2000 : reps);
			run_gemm(&g[k], scratch_a, scratch_b, scratch_c);
			t0 = bench_now();
			for (int r = 0; r < reps; r++)
				run_gemm(&g[k], scratch_a, scratch_b, scratch_c);
			shape_gflops[k] = one * reps / (bench_now() - t0) * 1e-9;
		}

		{
			double		te = bench_median(t_engine, runs);
			double		tg = bench_median(t_gemm, runs);
			double		tb = r4_gemm_bf16_native() ? bench_median(t_bf16, runs) : 0;

			if (json)
			{
				printf("{\"H\":%d,\"W\":%d,\"B\":%d,\"engine_img_s\":%.4f,\"sgemm_img_s\":%.4f,"
					   "\"gflop_per_img\":%.4f,\"sgemm_gflops\":%.3f,\"bf16_img_s\":%.4f,"
					   "\"bf16_gflops\":%.3f,\"shapes\":[",
					   H, W, B, B / te, B / tg, flops / B * 1e-9, flops / tg * 1e-9,
					   tb > 0 ? B / tb : 0, tb > 0 ? flops / tb * 1e-9 : 0);
				for (int k = 0; k < ng; k++)
					printf("%s{\"gemm\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,\"gflops\":%.3f}",
						   k ? "," : "", g[k].what, g[k].M, g[k].N, g[k].K, shape_gflops[k]);
				printf("]}\n");
			}
			else
			{
				char		label[32];

				snprintf(label, sizeof(label), "%dx%d", H, W);
				printf("%-12s %6d %12.2f %12.2f %8.1f%% %10.2f\n", label, B, B / te, B / tg,
					   100.0 * tg / te, flops / B * 1e-9);
				printf("%19s bf16 roofline %.2f img/s (%.1f GFLOP/s)\n", "",
					   tb > 0 ? B / tb : 0, tb > 0 ? flops / tb * 1e-9 : 0);
				printf("%19s sgemm over the pass: %.1f GFLOP/s; per shape:", "", flops / tg * 1e-9);
				for (int k = 0; k < ng; k++)
					printf(" %s[%dx%dx%d] %.1f", g[k].what, g[k].M, g[k].N, g[k].K, shape_gflops[k]);
				printf("\n");
			}
		}
		fflush(stdout);
		free(x);
		free(out);
	}
	free(scratch_a);
	free(scratch_b);
	free(scratch_c);
	r4_vit_free(vit);
	r4_safetensors_free(&st);
	free(buf);
	return 0;
}
