/*
 * test_gemm_bf16.c — the bf16 GEMM (gemm.h) against a double-precision
 * reference on the bf16-rounded inputs, for the AVX-512 kernel (where the
 * CPU has it) and the portable loop, on sizes that are not multiples of
 * the 14 x 32 tile, the K block or the packed row block.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/gemm.h"
#include "rai4eo/nn.h"
#include "unit.h"

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

/* Draw a uniform double in [-1, 1) (xorshift64). */
static double
urand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double) (rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static float
bits_float(uint32_t u)
{
	float		x;

	memcpy(&x, &u, sizeof(x));
	return x;
}

/* bf16 rounding: nearest, ties to even, NaN quiet, denormals to zero, overflow to inf. */
static void
test_rounding(void)
{
	CHECK_EQ_INT(r4_bf16_from_f32(1.0f), 0x3f80);
	CHECK_EQ_INT(r4_bf16_from_f32(-2.0f), 0xc000);
	/* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even one, 1. */
	CHECK_EQ_INT(r4_bf16_from_f32(1.0f + 0.00390625f), 0x3f80);
	/* 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: the even one is 1 + 2^-6. */
	CHECK_EQ_INT(r4_bf16_from_f32(1.0f + 3 * 0.00390625f), 0x3f82);
	/* Just above the halfway point rounds up. */
	CHECK_EQ_INT(r4_bf16_from_f32(bits_float(0x3f808001u)), 0x3f81);
	CHECK_EQ_INT(r4_bf16_from_f32(bits_float(0x3f807fffu)), 0x3f80);
	CHECK_EQ_INT(r4_bf16_from_f32(bits_float(0x7f7fffffu)), 0x7f80);	/* FLT_MAX -> inf */
	CHECK_EQ_INT(r4_bf16_from_f32(bits_float(0x00400000u)), 0x0000);	/* denormal -> 0 */
	CHECK_EQ_INT(r4_bf16_from_f32(bits_float(0x80400000u)), 0x8000);
	CHECK_EQ_INT(r4_bf16_from_f32(bits_float(0x7f800001u)), 0x7fc0);	/* signalling NaN -> quiet */
	CHECK_EQ_INT(r4_bf16_from_f32(INFINITY), 0x7f80);
	CHECK(r4_f32_from_bf16(0x3f82) == 1.015625f);
}

typedef struct Case
{
	int			m,
				n,
				k;
} Case;

/*
 * One product on random data, checked element by element against the
 * double sum of the bf16-rounded products: fp32 summation of k + 2 terms
 * (C, bias, k products) is within (k + 2) 2^-24 of the sum of their
 * magnitudes.  Returns the output in got (caller frees) for cross-checks.
 */
static float *
check_case(Case cs, bool bias_on, bool accumulate, bool native)
{
	int			lda = cs.k + 3,
				ldc = cs.n + 5;
	float	   *a = malloc(sizeof(float) * (size_t) cs.m * lda + 4);
	float	   *w = malloc(sizeof(float) * (size_t) cs.n * (cs.k + 1) + 4);
	float	   *bias = malloc(sizeof(float) * (size_t) cs.n + 4);
	float	   *c = malloc(sizeof(float) * (size_t) cs.m * ldc + 4);
	float	   *c0 = malloc(sizeof(float) * (size_t) cs.m * ldc + 4);
	R4PackedB  *pb = NULL;
	R4Error		err;
	int			bad = 0;
	double		worst = 0;

	for (size_t i = 0; i < (size_t) cs.m * lda; i++)
		a[i] = (float) (3.0 * urand());
	for (size_t i = 0; i < (size_t) cs.n * (cs.k + 1); i++)
		w[i] = (float) urand();
	for (int i = 0; i < cs.n; i++)
		bias[i] = (float) urand();
	for (size_t i = 0; i < (size_t) cs.m * ldc; i++)
		c0[i] = c[i] = (float) urand();
	CHECK(r4_pack_b_bf16(w, cs.n, cs.k, cs.k + 1, &pb, &err) == R4_OK);
	if (pb == NULL)
		return c;
	CHECK(r4_packed_b_bytes(pb) >= (size_t) cs.n * cs.k * 2);
	r4_gemm_bf16_set_native(native);
	r4_gemm_bf16(c, ldc, a, lda, cs.m, pb, bias_on ? bias : NULL, accumulate);
	r4_gemm_bf16_set_native(true);
	for (int i = 0; i < cs.m; i++)
	{
		for (int j = 0; j < cs.n; j++)
		{
			double		s = 0,
						mag = 0,
						tol;

			if (accumulate)
			{
				s += c0[(size_t) i * ldc + j];
				mag += fabs(c0[(size_t) i * ldc + j]);
			}
			if (bias_on)
			{
				s += bias[j];
				mag += fabs(bias[j]);
			}
			for (int t = 0; t < cs.k; t++)
			{
				double		p = (double) r4_f32_from_bf16(r4_bf16_from_f32(a[(size_t) i * lda + t])) *
					r4_f32_from_bf16(r4_bf16_from_f32(w[(size_t) j * (cs.k + 1) + t]));

				s += p;
				mag += fabs(p);
			}
			tol = (cs.k + 2) * ldexp(1.0, -24) * mag;
			if (fabs(c[(size_t) i * ldc + j] - s) > tol)
			{
				if (bad++ < 3)
					fprintf(stderr, "  %dx%dx%d native=%d [%d][%d]: %.9g vs %.9g (tol %.3g)\n",
							cs.m, cs.n, cs.k, native, i, j, c[(size_t) i * ldc + j], s, tol);
			}
			if (mag > 0 && fabs(c[(size_t) i * ldc + j] - s) / mag > worst)
				worst = fabs(c[(size_t) i * ldc + j] - s) / mag;
		}
		/* The padding between rows is never written. */
		for (int j = cs.n; j < ldc && i + 1 < cs.m; j++)
			if (c[(size_t) i * ldc + j] != c0[(size_t) i * ldc + j])
				bad++;
	}
	CHECK_MSG(bad == 0, "%dx%dx%d bias=%d acc=%d native=%d: %d elements out of bounds (worst %.3g)",
			  cs.m, cs.n, cs.k, bias_on, accumulate, native, bad, worst);
	r4_packed_b_free(pb);
	free(a);
	free(w);
	free(bias);
	free(c0);
	return c;
}

static const Case cases[] = {
	{1, 1, 1}, {1, 1, 2}, {2, 3, 5}, {13, 31, 7}, {14, 32, 256}, {15, 33, 257},
	{29, 17, 384}, {113, 65, 3}, {7, 100, 1537}, {130, 40, 31}, {3, 64, 0},
};

/* Every case in both kernels, with and without bias and accumulation. */
static void
test_products(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (int mode = 0; mode < 4; mode++)
		{
			uint64_t	seed = rng_state;
			float	   *port,
					   *nat;
			bool		bias_on = mode & 1,
						acc = mode & 2;

			port = check_case(cases[i], bias_on, acc, false);
			if (!r4_gemm_bf16_native())
			{
				free(port);
				continue;
			}
			rng_state = seed;	/* the same data again for the AVX-512 kernel */
			nat = check_case(cases[i], bias_on, acc, true);
			/* Same arithmetic in the same order: the same bits (no denormals here). */
			{
				int			ldc = cases[i].n + 5;
				size_t		diff = 0;

				for (int r = 0; r < cases[i].m; r++)
					for (int j = 0; j < cases[i].n; j++)
						diff += memcmp(&port[(size_t) r * ldc + j], &nat[(size_t) r * ldc + j],
									   sizeof(float)) != 0;
				CHECK_MSG(diff == 0, "case %zu mode %d: %zu elements differ between kernels",
						  i, mode, diff);
			}
			free(port);
			free(nat);
		}
}

/* An identity weight returns A rounded to bf16, exactly, in both kernels. */
static void
test_identity(void)
{
	enum {M = 31, K = 45};
	float		a[M * K],
				w[K * K],
				c[M * K];
	R4PackedB  *pb;
	R4Error		err;

	for (int i = 0; i < M * K; i++)
		a[i] = (float) (100.0 * urand());
	a[3] = bits_float(0x3f808000u);	/* a tie */
	a[4] = bits_float(0x00400000u);	/* a denormal */
	memset(w, 0, sizeof(w));
	for (int i = 0; i < K; i++)
		w[i * K + i] = 1.0f;
	CHECK(r4_pack_b_bf16(w, K, K, K, &pb, &err) == R4_OK);
	for (int native = 0; native < 2; native++)
	{
		int			bad = 0;

		if (native && !r4_gemm_bf16_native())
			break;
		r4_gemm_bf16_set_native(native);
		r4_gemm_bf16(c, K, a, K, M, pb, NULL, false);
		for (int i = 0; i < M * K; i++)
			bad += c[i] != r4_f32_from_bf16(r4_bf16_from_f32(a[i]));
		CHECK_MSG(bad == 0, "native=%d: %d values are not A rounded to bf16", native, bad);
	}
	r4_gemm_bf16_set_native(true);
	r4_packed_b_free(pb);
}

/* The fused GELU gives r4_gemm_bf16 then r4_gelu, bit for bit, past the packed row block too. */
static void
test_gelu_epilogue(void)
{
	static const Case gc[] = {{300, 70, 384}, {5, 1536, 40}, {113, 33, 0}};

	for (size_t i = 0; i < sizeof(gc) / sizeof(gc[0]); i++)
	{
		Case		cs = gc[i];
		float	   *a = malloc(sizeof(float) * (size_t) cs.m * cs.k + 4);
		float	   *w = malloc(sizeof(float) * (size_t) cs.n * cs.k + 4);
		float	   *bias = malloc(sizeof(float) * (size_t) cs.n);
		float	   *c1 = malloc(sizeof(float) * (size_t) cs.m * cs.n);
		float	   *c2 = malloc(sizeof(float) * (size_t) cs.m * cs.n);
		R4PackedB  *pb;
		R4Error		err;

		for (size_t j = 0; j < (size_t) cs.m * cs.k; j++)
			a[j] = (float) urand();
		for (size_t j = 0; j < (size_t) cs.n * cs.k; j++)
			w[j] = (float) urand();
		for (int j = 0; j < cs.n; j++)
			bias[j] = (float) urand();
		CHECK(r4_pack_b_bf16(w, cs.n, cs.k, cs.k, &pb, &err) == R4_OK);
		r4_gemm_bf16(c1, cs.n, a, cs.k, cs.m, pb, bias, false);
		r4_gelu(c1, (size_t) cs.m * cs.n);
		r4_gemm_bf16_gelu(c2, cs.n, a, cs.k, cs.m, pb, bias, false);
		CHECK_MSG(memcmp(c1, c2, sizeof(float) * (size_t) cs.m * cs.n) == 0,
				  "%dx%dx%d: fused GELU differs", cs.m, cs.n, cs.k);
		r4_packed_b_free(pb);
		free(a);
		free(w);
		free(bias);
		free(c1);
		free(c2);
	}
}

/*
 * Attention in bf16 against a double-precision softmax(q k^T / sqrt hd) v
 * on the unrounded inputs: each output within 2^-8 of the sum of its |p v|
 * terms (p rounded to bf16) plus 0.01 (the scores' rounding through the
 * softmax), the worst under 0.02; and both kernels bit for bit.
 */
static void
test_attention(void)
{
	static const int shapes[][3] = {{145, 384, 6}, {5, 12, 2}, {37, 66, 3}};	/* T, D, heads */

	for (size_t c = 0; c < sizeof(shapes) / sizeof(shapes[0]); c++)
	{
		int			T = shapes[c][0],
					D = shapes[c][1],
					nh = shapes[c][2],
					hd = D / nh;
		float		scale = (float) (1.0 / sqrt((double) hd));
		float	   *qkv = malloc(sizeof(float) * (size_t) T * 3 * D);
		float	   *out[2],
				   *scores = malloc(sizeof(float) * (size_t) T * T);
		uint32_t   *scratch = malloc(sizeof(uint32_t) * r4_attention_bf16_scratch(T, hd));
		double	   *s = malloc(sizeof(double) * (size_t) T);
		int			bad = 0;
		double		worst = 0;

		for (size_t i = 0; i < (size_t) T * 3 * D; i++)
			qkv[i] = (float) (2.0 * urand());
		for (int native = 0; native < 2; native++)
		{
			out[native] = malloc(sizeof(float) * (size_t) T * D);
			r4_gemm_bf16_set_native(native);
			r4_attention_bf16(qkv, T, D, nh, scale, out[native], scores, scratch);
		}
		r4_gemm_bf16_set_native(true);
		for (int h = 0; h < nh; h++)
			for (int i = 0; i < T; i++)
			{
				double		mx = -INFINITY,
							sum = 0;

				for (int j = 0; j < T; j++)
				{
					double		d = 0;

					for (int t = 0; t < hd; t++)
						d += (double) qkv[(size_t) i * 3 * D + h * hd + t] *
							qkv[(size_t) j * 3 * D + D + h * hd + t];
					s[j] = d * scale;
					mx = s[j] > mx ? s[j] : mx;
				}
				for (int j = 0; j < T; j++)
					sum += (s[j] = exp(s[j] - mx));
				for (int t = 0; t < hd; t++)
				{
					double		ref = 0,
								mag = 0,
								got = out[0][(size_t) i * D + h * hd + t];

					for (int j = 0; j < T; j++)
					{
						double		pv = s[j] / sum * qkv[(size_t) j * 3 * D + 2 * D + h * hd + t];

						ref += pv;
						mag += fabs(pv);
					}
					/* the rounding of p alone: 2^-8 of sum |p v| (values of |v| < 2) */
					if (fabs(got - ref) > ldexp(1.0, -8) * mag + 0.01)
						bad++;
					if (fabs(got - ref) > worst)
						worst = fabs(got - ref);
				}
			}
		CHECK_MSG(bad == 0, "T=%d D=%d heads=%d: %d values off (worst %.3g)", T, D, nh, bad, worst);
		if (r4_gemm_bf16_native())
			CHECK_MSG(memcmp(out[0], out[1], sizeof(float) * (size_t) T * D) == 0,
					  "T=%d D=%d: the two kernels differ", T, D);
		/* Measured 0.005 (scores of |s| up to ~4, q and k rounded to 2^-8). */
		CHECK_MSG(worst < 0.02, "T=%d D=%d: worst %.3g", T, D, worst);
		free(qkv);
		free(out[0]);
		free(out[1]);
		free(scores);
		free(scratch);
		free(s);
	}
}

/* Shapes the packer refuses. */
static void
test_pack_errors(void)
{
	float		w[4] = {0};
	R4PackedB  *pb = (R4PackedB *) 1;
	R4Error		err;

	CHECK(r4_pack_b_bf16(w, 2, 2, 1, &pb, &err) == R4_ERR_INTERNAL);
	CHECK(pb == NULL);
	CHECK(r4_pack_b_bf16(w, -1, 2, 2, &pb, &err) == R4_ERR_INTERNAL);
	CHECK(strcmp(r4_precision_name(R4_PRECISION_BF16), "bf16") == 0);
	CHECK(strcmp(r4_precision_name(R4_PRECISION_FP32), "fp32") == 0);
}

int
main(void)
{
	printf("bf16 kernel: %s\n", r4_gemm_bf16_native() ? "AVX-512 BF16" : "portable only");
	RUN(test_rounding);
	RUN(test_identity);
	RUN(test_products);
	RUN(test_gelu_epilogue);
	RUN(test_attention);
	RUN(test_pack_errors);
	return unit_summary("test_gemm_bf16");
}
