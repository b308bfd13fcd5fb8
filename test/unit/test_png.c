/*
 * test_png.c — the PNG encoder's output read back with zlib: chunk CRCs,
 * IHDR, palette, tRNS and every decoded pixel against values computed here
 * independently (the ramp stops, the index rule, numpy's percentile rule);
 * the legend's geometry; errors and out-of-memory paths.
 */
#include "rai4eo/core.h"
#include "rai4eo/png.h"
#include "unit.h"

#include <stdint.h>
#include <zlib.h>

typedef struct Decoded
{
	int			ok;
	uint32_t	width,
				height;
	int			color_type;
	uint8_t		plte[768];
	int			plte_len;
	uint8_t		trns[256];
	int			trns_len;
	uint8_t    *raw;			/* height * (1 + width * channels) */
	size_t		raw_len;
	int			crc_bad;
} Decoded;

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* Walk the chunks, check each CRC, inflate the IDAT data */
static Decoded
decode(const uint8_t *png, size_t len)
{
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	Decoded		d = {0};
	uint8_t    *idat = malloc(len);
	size_t		idat_len = 0,
				pos = 8;
	int			saw_end = 0;

	if (len < 8 || memcmp(png, sig, 8) != 0)
		return d;
	while (pos + 12 <= len)
	{
		uint32_t	n = get_u32(png + pos);
		const uint8_t *type = png + pos + 4,
				   *data = png + pos + 8;

		if (pos + 12 + n > len)
			break;
		if ((uint32_t) crc32(0, type, n + 4) != get_u32(data + n))
			d.crc_bad++;
		if (memcmp(type, "IHDR", 4) == 0 && n == 13)
		{
			d.width = get_u32(data);
			d.height = get_u32(data + 4);
			d.color_type = data[9];
			CHECK_EQ_INT(data[8], 8);
			CHECK_EQ_INT(data[12], 0);
		}
		else if (memcmp(type, "PLTE", 4) == 0 && n <= 768)
		{
			memcpy(d.plte, data, n);
			d.plte_len = (int) n;
		}
		else if (memcmp(type, "tRNS", 4) == 0 && n <= 256)
		{
			memcpy(d.trns, data, n);
			d.trns_len = (int) n;
		}
		else if (memcmp(type, "IDAT", 4) == 0)
		{
			memcpy(idat + idat_len, data, n);
			idat_len += n;
		}
		else if (memcmp(type, "IEND", 4) == 0)
			saw_end = pos + 12 == len;
		pos += 12 + n;
	}
	if (saw_end && d.width && d.height)
	{
		int			ch = d.color_type == 3 ? 1 : d.color_type == 4 ? 2 : 4;
		uLongf		want = (uLongf) d.height * (1 + (uLongf) d.width * ch);

		d.raw = malloc(want + 1);
		d.raw_len = want + 1;
		if (uncompress(d.raw, &d.raw_len, idat, idat_len) == Z_OK && d.raw_len == want)
			d.ok = 1;
	}
	free(idat);
	return d;
}

static const uint8_t *
pixel(const Decoded *d, uint32_t x, uint32_t y)
{
	int			ch = d->color_type == 3 ? 1 : d->color_type == 4 ? 2 : 4;

	return d->raw + (size_t) y * (1 + d->width * ch) + 1 + (size_t) x * ch;
}

static int
filters_all_none(const Decoded *d)
{
	int			ch = d->color_type == 3 ? 1 : d->color_type == 4 ? 2 : 4;

	for (uint32_t y = 0; y < d->height; y++)
		if (d->raw[(size_t) y * (1 + d->width * ch)] != 0)
			return 0;
	return 1;
}

/* The heat ramp's colour at palette index i, from its three stops */
static void
heat_colour(int i, uint8_t rgb[3])
{
	static const double stops[3][4] = {{0, 255, 255, 204}, {0.5, 253, 141, 60}, {1, 189, 0, 38}};
	double		t = (i - 1) / 254.0;
	int			j = t > 0.5 ? 1 : 0;
	double		f = (t - stops[j][0]) / (stops[j + 1][0] - stops[j][0]);

	for (int c = 0; c < 3; c++)
		rgb[c] = (uint8_t) rint(stops[j][c + 1] + f * (stops[j + 1][c + 1] - stops[j][c + 1]));
}

static void
test_heatmap_palette_pixels(void)
{
	/* 4 x 3, with nodata (mask), NaN, values below, above and inside 0 .. 1 */
	float		v[12] = {0, 0.25f, 7, 1, 2, -1, NAN, 0.5f, 0.1f, 0.2f, 0.3f, 0.4f};
	uint8_t		mask[12] = {0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	uint8_t		want[12];
	R4HeatmapOptions opt = {0, 1, R4_RAMP_HEAT, 3, false, 6};
	uint8_t    *out;
	size_t		len;
	R4Error		err;
	Decoded		d;

	for (int i = 0; i < 12; i++)
	{
		double		t = ((double) v[i] - 0) / 1;

		t = t < 0 ? 0 : t > 1 ? 1 : t;
		want[i] = mask[i] || isnan(v[i]) ? 0 : (uint8_t) (1 + rint(254 * t));
	}
	CHECK_EQ_INT(want[1], 1 + 64);	/* 63.5 rounds to even */
	CHECK_EQ_INT(want[7], 128);

	r4_error_clear(&err);
	CHECK_EQ_INT(r4_png_heatmap(v, mask, 4, 3, &opt, 16, &out, &len, NULL, NULL, &err), R4_OK);
	d = decode(out + 16, len);
	CHECK(d.ok);
	CHECK_EQ_INT(d.crc_bad, 0);
	CHECK_EQ_INT(d.width, 12);
	CHECK_EQ_INT(d.height, 9);
	CHECK_EQ_INT(d.color_type, 3);
	CHECK_EQ_INT(d.plte_len, 768);
	CHECK_EQ_INT(d.trns_len, 1);
	CHECK_EQ_INT(d.trns[0], 0);
	CHECK(filters_all_none(&d));
	for (int i = 1; i < 256; i++)
	{
		uint8_t		rgb[3];

		heat_colour(i, rgb);
		CHECK_MSG(memcmp(d.plte + 3 * i, rgb, 3) == 0, "palette entry %d", i);
	}
	for (uint32_t y = 0; y < 9; y++)
		for (uint32_t x = 0; x < 12; x++)
			CHECK_MSG(pixel(&d, x, y)[0] == want[(y / 3) * 4 + x / 3], "pixel %u,%u", x, y);
	free(d.raw);
	free(out);
}

static void
test_other_ramps(void)
{
	uint8_t		rgb[768];
	R4PngRamp	r;

	CHECK(r4_png_ramp_parse("viridis", &r) && r == R4_RAMP_VIRIDIS);
	CHECK(r4_png_ramp_parse("gray", &r) && r == R4_RAMP_GRAY);
	CHECK(!r4_png_ramp_parse("rainbow", &r));
	r4_png_ramp_palette(R4_RAMP_GRAY, rgb);
	CHECK_EQ_INT(rgb[3], 0);
	CHECK_EQ_INT(rgb[3 * 128], 128);	/* 127 / 254 * 255 = 127.5, to even */
	CHECK_EQ_INT(rgb[3 * 255 + 2], 255);
	r4_png_ramp_palette(R4_RAMP_VIRIDIS, rgb);
	CHECK_EQ_INT(rgb[3 * 1], 68);
	CHECK_EQ_INT(rgb[3 * 1 + 2], 84);
	/* index 128 is t = 0.5 exactly: the third stop */
	CHECK(rgb[3 * 128] == 33 && rgb[3 * 128 + 1] == 145 && rgb[3 * 128 + 2] == 140);
	CHECK(rgb[3 * 255] == 253 && rgb[3 * 255 + 1] == 231 && rgb[3 * 255 + 2] == 37);
}

static void
test_legend(void)
{
	float		v[20];
	R4HeatmapOptions opt = {-2, 3, R4_RAMP_HEAT, 2, true, 6};
	uint8_t    *out,
				rgb[3];
	size_t		len;
	R4Error		err;
	Decoded		d;
	uint32_t	w,
				h;
	int			lh = r4_png_legend_height(R4_PNG_LEGEND_MIN_WIDTH),
				black = 0;

	for (int i = 0; i < 20; i++)
		v[i] = (float) i / 4 - 2;
	r4_error_clear(&err);
	CHECK_EQ_INT(r4_png_heatmap_size(5, 4, &opt, &w, &h, &err), R4_OK);
	CHECK_EQ_INT(w, R4_PNG_LEGEND_MIN_WIDTH);
	CHECK_EQ_INT(h, 8 + lh);
	CHECK_EQ_INT(r4_png_heatmap(v, NULL, 5, 4, &opt, 0, &out, &len, NULL, NULL, &err), R4_OK);
	d = decode(out, len);
	CHECK(d.ok);
	CHECK_EQ_INT(d.crc_bad, 0);
	CHECK_EQ_INT(d.color_type, 6);
	CHECK_EQ_INT(d.width, w);
	CHECK_EQ_INT(d.height, h);
	/* the map: pixel (0,0) is v = -2 -> index 1, opaque; beside the map transparent */
	heat_colour(1, rgb);
	CHECK(memcmp(pixel(&d, 0, 0), rgb, 3) == 0 && pixel(&d, 0, 0)[3] == 255);
	CHECK_EQ_INT(pixel(&d, 10, 0)[3], 0);
	/* legend: white corner, bar from index 1 (left) to 255 (right) */
	CHECK(pixel(&d, 0, 8)[0] == 255 && pixel(&d, 0, 8)[3] == 255);
	CHECK(memcmp(pixel(&d, 8, 8 + 4), rgb, 3) == 0);
	heat_colour(255, rgb);
	CHECK(memcmp(pixel(&d, w - 9, 8 + 4), rgb, 3) == 0);
	CHECK(pixel(&d, w - 8, 8 + 4)[0] == 255);
	/* ticks under the bar ends are black, and the labels put black pixels in the text rows */
	CHECK(pixel(&d, 8, 8 + 14)[0] == 0 && pixel(&d, w - 9, 8 + 14)[0] == 0);
	for (uint32_t y = 8 + 18; y < h; y++)
		for (uint32_t x = 0; x < w; x++)
			black += pixel(&d, x, y)[0] == 0;
	CHECK(black > 20);
	free(d.raw);
	free(out);
}

/* numpy.percentile's default rule on a sorted copy */
static int
cmp_float(const void *a, const void *b)
{
	float		x = *(const float *) a,
				y = *(const float *) b;

	return (x > y) - (x < y);
}

static void
test_percentile(void)
{
	unsigned	seed = 7;

	for (int n = 1; n <= 60; n++)
	{
		float	   *v = malloc(sizeof(float) * n),
				   *s = malloc(sizeof(float) * n);

		for (int i = 0; i < n; i++)
			v[i] = (float) (rand_r(&seed) % 17);	/* many ties */
		memcpy(s, v, sizeof(float) * n);
		qsort(s, n, sizeof(float), cmp_float);
		for (double p = 0; p <= 100; p += 12.5)
		{
			double		pos = p / 100 * (n - 1);
			int			k = (int) floor(pos);
			double		want = k + 1 < n ? s[k] + (pos - k) * (s[k + 1] - s[k]) : s[n - 1];
			float	   *c = malloc(sizeof(float) * n);

			memcpy(c, v, sizeof(float) * n);
			CHECK_NEAR(r4_percentile(c, n, p), want, 1e-12);
			free(c);
		}
		free(v);
		free(s);
	}
}

static void
test_quicklook(void)
{
	/* 3 bands of 3 x 2; pixel 4 is nodata in band 2 only: transparent, and not in the stretch */
	float		planes[18] = {
		0, 10, 20, 30, 40, 50,
		100, 100, 100, 100, 9999, 100,
		5, 4, 3, 2, 1, 0};
	uint8_t		mask[18] = {0};
	R4QuicklookOptions opt = {R4_STRETCH_MINMAX, 0, 0, 2, 6};
	uint8_t    *out;
	size_t		len;
	R4Error		err;
	Decoded		d;
	double		lo[3],
				hi[3];
	size_t		nvalid;

	mask[6 + 4] = 1;
	r4_error_clear(&err);
	CHECK_EQ_INT(r4_png_stretch_limits(planes, mask, 3, 6, &opt, lo, hi, &nvalid, &err), R4_OK);
	CHECK_EQ_INT(nvalid, 5);
	CHECK(lo[0] == 0 && hi[0] == 50 && lo[1] == 100 && hi[1] == 100 && lo[2] == 0 && hi[2] == 5);

	CHECK_EQ_INT(r4_png_quicklook(planes, mask, 3, 3, 2, &opt, 0, &out, &len, NULL, NULL, &err), R4_OK);
	d = decode(out, len);
	CHECK(d.ok);
	CHECK_EQ_INT(d.crc_bad, 0);
	CHECK_EQ_INT(d.color_type, 6);
	CHECK(d.width == 6 && d.height == 4);
	CHECK(filters_all_none(&d));
	for (int i = 0; i < 6; i++)
	{
		const uint8_t *p = pixel(&d, 2 * (i % 3) + 1, 2 * (i / 3) + 1);

		if (i == 4)
		{
			CHECK(p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == 0);
			continue;
		}
		CHECK_EQ_INT(p[0], (int) rint(255 * planes[i] / 50));
		CHECK_EQ_INT(p[1], 0);	/* a constant band: everything at the low end */
		CHECK_EQ_INT(p[2], (int) rint(255 * planes[12 + i] / 5));
		CHECK_EQ_INT(p[3], 255);
	}
	free(d.raw);
	free(out);

	/* one band, fixed stretch: grey + alpha */
	opt.stretch = R4_STRETCH_FIXED;
	opt.low = 10;
	opt.high = 30;
	opt.scale = 1;
	CHECK_EQ_INT(r4_png_quicklook(planes, NULL, 1, 3, 2, &opt, 0, &out, &len, NULL, NULL, &err), R4_OK);
	d = decode(out, len);
	CHECK(d.ok && d.color_type == 4 && d.width == 3 && d.height == 2);
	CHECK(pixel(&d, 0, 0)[0] == 0 && pixel(&d, 1, 0)[0] == 0 && pixel(&d, 2, 0)[0] == 128 &&
		  pixel(&d, 0, 1)[0] == 255 && pixel(&d, 2, 1)[1] == 255);
	free(d.raw);
	free(out);

	/* percentile 0 / 100 equals minmax */
	opt.stretch = R4_STRETCH_PERCENTILE;
	opt.low = 0;
	opt.high = 100;
	CHECK_EQ_INT(r4_png_stretch_limits(planes, mask, 3, 6, &opt, lo, hi, &nvalid, &err), R4_OK);
	CHECK(lo[0] == 0 && hi[0] == 50 && lo[2] == 0 && hi[2] == 5);
	opt.low = 25;
	opt.high = 75;
	CHECK_EQ_INT(r4_png_stretch_limits(planes, mask, 3, 6, &opt, lo, hi, &nvalid, &err), R4_OK);
	/* band 1 over the valid pixels 0 10 20 30 50: ranks 1 and 3 */
	CHECK(lo[0] == 10 && hi[0] == 30);
}

static void
test_errors(void)
{
	float		v[4] = {0, 1, 2, 3};
	R4HeatmapOptions opt = {0, 1, R4_RAMP_HEAT, 0, false, 6};
	R4QuicklookOptions q = {R4_STRETCH_PERCENTILE, 2, 98, 1, 6};
	uint8_t    *out = (uint8_t *) 1;
	size_t		len = 1;
	R4Error		err;
	uint32_t	w,
				h;

	r4_error_clear(&err);
	CHECK_EQ_INT(r4_png_heatmap(v, NULL, 2, 2, &opt, 0, &out, &len, NULL, NULL, &err), R4_ERR_RANGE);
	CHECK(out == NULL && len == 0);
	opt.scale = 65;
	CHECK_EQ_INT(r4_png_heatmap(v, NULL, 2, 2, &opt, 0, &out, &len, NULL, NULL, &err), R4_ERR_RANGE);
	opt.scale = 1;
	opt.min_value = 1;
	CHECK_EQ_INT(r4_png_heatmap(v, NULL, 2, 2, &opt, 0, &out, &len, NULL, NULL, &err), R4_ERR_RANGE);
	CHECK_STR_CONTAINS(err.message, "below max_value");
	opt.min_value = 0;
	/* 8193 x 8192 is one row too many; checked from the size alone */
	CHECK_EQ_INT(r4_png_heatmap_size(8193, 8192, &opt, &w, &h, &err), R4_ERR_LIMIT);
	CHECK_STR_CONTAINS(err.message, "8193 x 8192");
	CHECK_EQ_INT(r4_png_heatmap_size(8192, 8192, &opt, &w, &h, &err), R4_OK);
	opt.legend = true;
	CHECK_EQ_INT(r4_png_heatmap_size(8192, 8192, &opt, &w, &h, &err), R4_ERR_LIMIT);
	CHECK_EQ_INT(r4_png_check_size(1024, 1024, 8, &err), R4_OK);
	CHECK_EQ_INT(r4_png_check_size(1024, 1025, 8, &err), R4_ERR_LIMIT);
	CHECK_EQ_INT(r4_png_quicklook(v, NULL, 2, 2, 1, &q, 0, &out, &len, NULL, NULL, &err), R4_ERR_RANGE);
	q.low = 50;
	q.high = 40;
	CHECK_EQ_INT(r4_png_quicklook(v, NULL, 1, 2, 2, &q, 0, &out, &len, NULL, NULL, &err), R4_ERR_RANGE);
}

static bool
stop_at_once(void *arg)
{
	(*(int *) arg)++;
	return false;
}

static void
test_interrupt_and_nomem(void)
{
	static float v[200 * 200];
	R4HeatmapOptions opt = {0, 1, R4_RAMP_HEAT, 1, true, 6};
	static const R4Allocator failing = {unit_failing_alloc, unit_counting_free, NULL};
	uint8_t    *out;
	size_t		len;
	R4Error		err;
	int			calls = 0;

	for (int i = 0; i < 200 * 200; i++)
		v[i] = (float) (i % 200) / 200;
	r4_error_clear(&err);
	CHECK_EQ_INT(r4_png_heatmap(v, NULL, 200, 200, &opt, 0, &out, &len, stop_at_once, &calls, &err), R4_ERR_LIMIT);
	CHECK_EQ_INT(calls, 1);
	CHECK_STR_CONTAINS(err.message, "interrupted");

	/* every allocation failing in turn: NOMEM, and nothing leaks */
	r4_set_allocator(&failing);
	for (long budget = 0; budget < 12; budget++)
	{
		R4Status	st;

		unit_alloc_budget = budget;
		unit_alloc_live = 0;
		st = r4_png_heatmap(v, NULL, 200, 200, &opt, 0, &out, &len, NULL, NULL, &err);
		if (st == R4_OK)
		{
			r4_free(out);
			CHECK_EQ_INT(unit_alloc_live, 0);
			break;
		}
		CHECK_EQ_INT(st, R4_ERR_NOMEM);
		CHECK_EQ_INT(unit_alloc_live, 0);
	}
	r4_set_allocator(NULL);
}

int
main(void)
{
	RUN(test_heatmap_palette_pixels);
	RUN(test_other_ramps);
	RUN(test_legend);
	RUN(test_percentile);
	RUN(test_quicklook);
	RUN(test_errors);
	RUN(test_interrupt_and_nomem);
	return unit_summary("png");
}
