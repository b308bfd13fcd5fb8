/*
 * test_nn.c — the layer kernels against straightforward double-precision
 * re-implementations written here from the formulas (PyTorch semantics).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "rai4eo/nn.h"
#include "unit.h"

static uint64_t rng_state = 88172645463325252ULL;

/* Draw a uniform double in [-1, 1) (xorshift64). */
static double
urand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double) (rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* Fill x with offset + scale * uniform noise. */
static void
fill(float *x, size_t n, double scale, double offset)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float) (offset + scale * urand());
}

/* Check the nn.Linear product, with and without bias and accumulation. */
static void
test_linear(void)
{
	enum {R = 5, I = 7, O = 3};
	float		x[R * I],
				w[O * I],
				b[O],
				y[R * O],
				y2[R * O];

	fill(x, R * I, 1.0, 0.0);
	fill(w, O * I, 1.0, 0.0);
	fill(b, O, 1.0, 0.0);
	r4_linear(y, x, w, b, R, I, O, false);
	for (int r = 0; r < R; r++)
		for (int o = 0; o < O; o++)
		{
			double		s = b[o];

			for (int i = 0; i < I; i++)
				s += (double) x[r * I + i] * w[o * I + i];
			CHECK_NEAR(y[r * O + o], s, 1e-5);
		}
	/* No bias. */
	r4_linear(y2, x, w, NULL, R, I, O, false);
	for (int k = 0; k < R * O; k++)
		CHECK_NEAR(y2[k], y[k] - b[k % O], 1e-5);
	/* Accumulate onto what y holds: a residual connection. */
	for (int k = 0; k < R * O; k++)
		y2[k] = 10.0f;
	r4_linear(y2, x, w, b, R, I, O, true);
	for (int k = 0; k < R * O; k++)
		CHECK_NEAR(y2[k], y[k] + 10.0, 1e-5);
}

/* Check LayerNorm against the biased-variance formula, in place and with eps. */
static void
test_layernorm(void)
{
	enum {ROWS = 4, DIM = 384};
	static float x[ROWS * DIM],
				y[ROWS * DIM],
				g[DIM],
				b[DIM];
	const float eps = 1e-6f;

	fill(g, DIM, 0.5, 1.0);
	fill(b, DIM, 0.3, 0.0);
	fill(x, DIM, 1.0, 0.0);
	/* A row with a large mean and a small spread: the one-pass variance fails here. */
	fill(x + DIM, DIM, 0.01, 1000.0);
	fill(x + 2 * DIM, DIM, 30.0, -5.0);
	for (int i = 0; i < DIM; i++)	/* a constant row: var 0, output = beta */
		x[3 * DIM + i] = 2.5f;
	r4_layernorm(y, x, g, b, ROWS, DIM, eps);
	for (int r = 0; r < ROWS; r++)
	{
		double		mean = 0,
					var = 0;

		for (int i = 0; i < DIM; i++)
			mean += x[r * DIM + i];
		mean /= DIM;
		for (int i = 0; i < DIM; i++)
			var += (x[r * DIM + i] - mean) * (x[r * DIM + i] - mean);
		var /= DIM;				/* biased, as PyTorch */
		for (int i = 0; i < DIM; i++)
		{
			double		want = (x[r * DIM + i] - mean) / sqrt(var + eps) * g[i] + b[i];

			CHECK_NEAR(y[r * DIM + i], want, 2e-6 * (1.0 + fabs(want)));
		}
	}
	CHECK_NEAR(y[3 * DIM + 7], b[7], 1e-7);
	/* In place gives the same result. */
	r4_layernorm(x, x, g, b, ROWS, DIM, eps);
	for (int k = 0; k < ROWS * DIM; k++)
		if (x[k] != y[k])
		{
			CHECK(x[k] == y[k]);
			break;
		}
	/* eps matters: 1e-5 on a small-variance row differs from 1e-6. */
	{
		float		row[4] = {0.0f, 0.001f, 0.002f, 0.003f};
		float		g1[4] = {1, 1, 1, 1};
		float		b0[4] = {0, 0, 0, 0};
		float		o6[4],
					o5[4];

		r4_layernorm(o6, row, g1, b0, 1, 4, 1e-6f);
		r4_layernorm(o5, row, g1, b0, 1, 4, 1e-5f);
		CHECK(fabs(o6[0] - o5[0]) > 0.1);
	}
}

/* Check GELU against 0.5 x (1 + erf(x / sqrt 2)) and away from the tanh form. */
static void
test_gelu(void)
{
	static float x[24001];
	const int	n = 24001;		/* not a multiple of the vector width */

	for (int mode = 0; mode < 2; mode++)
	{
		double		worst = 0;

		r4_nn_set_simd(mode == 0);
		for (int i = 0; i < n; i++)
			x[i] = (float) (-12.0 + i * 0.001);
		r4_gelu(x, n);
		for (int i = 0; i < n; i++)
		{
			double		v = (float) (-12.0 + i * 0.001);
			double		want = 0.5 * v * erfc(-v / sqrt(2.0));
			double		e = fabs(x[i] - want) / fmax(1.0, fabs(v));

			if (e > worst)
				worst = e;
		}
		CHECK_MSG(worst <= 2e-7, "gelu (%s) worst error %g * max(1, |x|)",
				  mode == 0 ? "simd" : "generic", worst);
		/* Exact erf form, not the tanh approximation (they differ by ~4.7e-4 near -2.7). */
		{
			float		v = -2.7f;
			double		t = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));

			r4_gelu(&v, 1);
			CHECK(fabs(v - t) > 1e-4);
			CHECK_NEAR(v, 0.5 * -2.7f * erfc(2.7f / sqrt(2.0)), 3e-7);
		}
		/* Extremes: 0 far left, identity far right, NaN stays NaN. */
		{
			float		e[5] = {-1e30f, 1e30f, 0.0f, -100.0f, NAN};

			r4_gelu(e, 5);
			CHECK(e[0] == 0.0f);
			CHECK(e[1] == 1e30f);
			CHECK(e[2] == 0.0f);
			CHECK(e[3] == 0.0f);
			CHECK(isnan(e[4]));
		}
	}
	r4_nn_set_simd(true);
}

/* Check softmax rows against exp(x - max) / sum, padding untouched. */
static void
test_softmax(void)
{
	enum {ROWS = 5, LD = 40};
	const int	widths[] = {6, 8, 19, 37, 1};
	float		x[ROWS * LD];
	float		orig[ROWS * LD];

	for (int mode = 0; mode < 2; mode++)
		for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++)
		{
			int			cols = widths[wi];

			r4_nn_set_simd(mode == 0);
			fill(x, ROWS * LD, 8.0, 0.0);
			/* Large logits must not overflow exp. */
			for (int c = 0; c < cols; c++)
				x[LD + c] = 1000.0f + c;
			/* A masked entry gets probability 0; a far one underflows to 0. */
			if (cols > 1)
			{
				x[2 * LD + 0] = -INFINITY;
				x[3 * LD + 1] = -500.0f;
			}
			for (int k = 0; k < ROWS * LD; k++)
				orig[k] = x[k];
			r4_softmax_rows(x, ROWS, cols, LD);
			for (int r = 0; r < ROWS; r++)
			{
				double		mx = -INFINITY,
							sum = 0,
							got_sum = 0;

				for (int c = 0; c < cols; c++)
					if (orig[r * LD + c] > mx)
						mx = orig[r * LD + c];
				for (int c = 0; c < cols; c++)
					sum += exp(orig[r * LD + c] - mx);
				for (int c = 0; c < cols; c++)
				{
					double		want = exp(orig[r * LD + c] - mx) / sum;

					/* x - max is rounded to float first, as in PyTorch: allow for it. */
					/* ... and below about 1e-37 probabilities flush to 0. */
					double		tol = 1e-37 + (want > 0.0 ?
											   (3e-7 + 1.2e-7 * fabs(orig[r * LD + c] - mx)) * want : 0.0);

					CHECK_MSG(fabs(x[r * LD + c] - want) <= tol,
							  "softmax width %d row %d col %d: %.9g vs %.9g", cols, r, c,
							  x[r * LD + c], want);
					got_sum += x[r * LD + c];
				}
				CHECK_NEAR(got_sum, 1.0, 1e-6);
				/* Past cols the row is left alone. */
				for (int c = cols; c < LD; c++)
					if (x[r * LD + c] != orig[r * LD + c])
					{
						CHECK_MSG(0, "softmax width %d wrote past the row at %d", cols, c);
						break;
					}
			}
			if (cols > 1)
				CHECK(x[2 * LD] == 0.0f);
		}
	r4_nn_set_simd(true);
}

/* Check elementwise addition. */
static void
test_add(void)
{
	float		y[3] = {1, 2, 3};
	float		x[3] = {0.5f, -2, 10};

	r4_add(y, x, 3);
	CHECK(y[0] == 1.5f && y[1] == 0.0f && y[2] == 13.0f);
}

/* Evaluate the Keys kernel with A = -0.75 from its definition. */
static double
keys(double x)
{
	const double A = -0.75;

	x = fabs(x);
	if (x <= 1.0)
		return ((A + 2) * x - (A + 3)) * x * x + 1;
	if (x < 2.0)
		return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
	return 0.0;
}

/* Check the four cubic tap weights against the kernel. */
static void
test_cubic_weights(void)
{
	double		w[4];

	r4_cubic_weights(0.0, w);
	CHECK_NEAR(w[0], 0.0, 1e-15);
	CHECK_NEAR(w[1], 1.0, 1e-15);
	CHECK_NEAR(w[2], 0.0, 1e-15);
	CHECK_NEAR(w[3], 0.0, 1e-15);
	for (int i = 0; i < 100; i++)
	{
		double		t = i / 100.0;

		r4_cubic_weights(t, w);
		CHECK_NEAR(w[0], keys(t + 1), 1e-14);
		CHECK_NEAR(w[1], keys(t), 1e-14);
		CHECK_NEAR(w[2], keys(1 - t), 1e-14);
		CHECK_NEAR(w[3], keys(2 - t), 1e-14);
		CHECK_NEAR(w[0] + w[1] + w[2] + w[3], 1.0, 1e-14);
	}
	/* t = 0.5: symmetric taps, the known values -0.09375 and 0.59375. */
	r4_cubic_weights(0.5, w);
	CHECK_NEAR(w[0], -0.09375, 1e-15);
	CHECK_NEAR(w[1], 0.59375, 1e-15);
}

/* Compute one bicubic output value the slow way, PyTorch's rules spelled out. */
static double
ref_bicubic(const float *in, int ih, int iw, int ch, int C, int oy, int ox,
			double rh, double rw)
{
	double		sy = (double) (float) rh * (oy + 0.5) - 0.5;
	double		sx = (double) (float) rw * (ox + 0.5) - 0.5;
	double		fy = floor(sy),
				fx = floor(sx);
	double		acc = 0;

	for (int i = -1; i <= 2; i++)
		for (int j = -1; j <= 2; j++)
		{
			int			y = (int) fy + i;
			int			x = (int) fx + j;

			y = y < 0 ? 0 : (y >= ih ? ih - 1 : y);
			x = x < 0 ? 0 : (x >= iw ? iw - 1 : x);
			acc += keys(sy - (fy + i)) * keys(sx - (fx + j)) * in[((size_t) y * iw + x) * C + ch];
		}
	return acc;
}

/* Check bicubic resampling against the slow reference, identity and constants. */
static void
test_bicubic(void)
{
	enum {IH = 14, IW = 14, C = 5};
	static float in[IH * IW * C];
	static float out[40 * 40 * C];
	const int	sizes[][2] = {{12, 12}, {7, 9}, {14, 14}, {40, 33}, {1, 2}};

	fill(in, IH * IW * C, 1.0, 0.0);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
	{
		int			oh = sizes[s][0],
					ow = sizes[s][1];
		/* DINO's ratios: 1 / ((grid + 0.1) / g0) */
		double		rh = 1.0 / ((oh + 0.1) / IH);
		double		rw = 1.0 / ((ow + 0.1) / IW);
		double		worst = 0;

		r4_bicubic_resize_hwc(in, IH, IW, C, out, oh, ow, rh, rw);
		for (int y = 0; y < oh; y++)
			for (int x = 0; x < ow; x++)
				for (int c = 0; c < C; c++)
				{
					double		e = fabs(out[((size_t) y * ow + x) * C + c] -
										 ref_bicubic(in, IH, IW, c, C, y, x, rh, rw));

					if (e > worst)
						worst = e;
				}
		CHECK_MSG(worst <= 1e-6, "bicubic %dx%d: worst error %g", oh, ow, worst);
	}
	/* Ratio 1 is the identity, exactly. */
	r4_bicubic_resize_hwc(in, IH, IW, C, out, IH, IW, 1.0, 1.0);
	for (int k = 0; k < IH * IW * C; k++)
		if (out[k] != in[k])
		{
			CHECK_MSG(out[k] == in[k], "identity differs at %d", k);
			break;
		}
	/* A constant image stays constant (the weights sum to 1, edges clamp). */
	for (int k = 0; k < IH * IW * C; k++)
		in[k] = 3.25f;
	r4_bicubic_resize_hwc(in, IH, IW, C, out, 40, 33, 14.0 / 40.1, 14.0 / 33.1);
	for (int k = 0; k < 40 * 33 * C; k++)
		if (fabs(out[k] - 3.25) > 1e-6)
		{
			CHECK_NEAR(out[k], 3.25, 1e-6);
			break;
		}
}

/* Compute one bilinear output value the slow way (align_corners=False). */
static double
ref_bilinear(const float *p, int ih, int iw, int oh, int ow, int oy, int ox)
{
	double		sy = (double) ((float) ih / (float) oh) * (oy + 0.5) - 0.5;
	double		sx = (double) ((float) iw / (float) ow) * (ox + 0.5) - 0.5;
	int			y0,
				x0,
				y1,
				x1;
	double		ly,
				lx;

	sy = sy < 0 ? 0 : sy;
	sx = sx < 0 ? 0 : sx;
	y0 = (int) floor(sy);
	x0 = (int) floor(sx);
	y1 = y0 + 1 < ih ? y0 + 1 : ih - 1;
	x1 = x0 + 1 < iw ? x0 + 1 : iw - 1;
	ly = sy - y0;
	lx = sx - x0;
	return (1 - ly) * ((1 - lx) * p[y0 * iw + x0] + lx * p[y0 * iw + x1]) +
		ly * ((1 - lx) * p[y1 * iw + x0] + lx * p[y1 * iw + x1]);
}

/* Check bilinear resampling against the slow reference and a worked example. */
static void
test_bilinear(void)
{
	enum {C = 3};
	static float in[C * 61 * 47];
	static float out[C * 224 * 224];
	const int	shapes[][4] = {{61, 47, 224, 224}, {61, 47, 20, 9}, {61, 47, 61, 47},
	{1, 1, 5, 4}, {2, 2, 4, 4}};

	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
	{
		int			ih = shapes[s][0],
					iw = shapes[s][1],
					oh = shapes[s][2],
					ow = shapes[s][3];
		double		worst = 0;

		fill(in, (size_t) C * ih * iw, 2.0, 1.0);
		r4_bilinear_resize_chw(in, C, ih, iw, out, oh, ow);
		for (int c = 0; c < C; c++)
			for (int y = 0; y < oh; y++)
				for (int x = 0; x < ow; x++)
				{
					double		e = fabs(out[((size_t) c * oh + y) * ow + x] -
										 ref_bilinear(in + (size_t) c * ih * iw, ih, iw, oh, ow, y, x));

					if (e > worst)
						worst = e;
				}
		CHECK_MSG(worst <= 1e-6, "bilinear %dx%d -> %dx%d: worst error %g", ih, iw, oh, ow, worst);
	}
	/* 2x2 -> 4x4, worked by hand: rows/cols sample at 0, 0.25, 0.75, 1. */
	{
		float		p[4] = {0, 4, 8, 12};
		float		o[16];
		const float want[16] = {0, 1, 3, 4, 2, 3, 5, 6, 6, 7, 9, 10, 8, 9, 11, 12};

		r4_bilinear_resize_chw(p, 1, 2, 2, o, 4, 4);
		for (int k = 0; k < 16; k++)
			CHECK_NEAR(o[k], want[k], 1e-6);
	}
}

/* Run the kernel tests. */
int
main(void)
{
	RUN(test_linear);
	RUN(test_layernorm);
	RUN(test_gelu);
	RUN(test_softmax);
	RUN(test_add);
	RUN(test_cubic_weights);
	RUN(test_bicubic);
	RUN(test_bilinear);
	return unit_summary("nn");
}
