/*
 * png.c — heatmap and quicklook PNGs on zlib, PostgreSQL-free.
 *
 * One encoder (encode_png) takes a row callback: the heatmap and the
 * quicklook only say what each output row holds (scale replication, legend
 * strip), and the encoder feeds those rows through deflate into the growing
 * output buffer.  zlib allocates through r4_alloc, so inside PostgreSQL its
 * memory belongs to the calling memory context.
 */
#include "rai4eo/png.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

/* ---- output buffer and chunks ------------------------------------------- */

typedef struct Buf
{
	uint8_t    *data;
	size_t		len;
	size_t		cap;
} Buf;

static bool
buf_reserve(Buf *b, size_t extra)
{
	size_t		need,
				cap;
	uint8_t    *p;

	if (r4_add_size(b->len, extra, &need) != 0)
		return false;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 1024;
	while (cap < need)
	{
		if (r4_mul_size(cap, 2, &cap) != 0)
			return false;
	}
	/* The allocator hook has no realloc: copy. */
	p = r4_alloc(cap);
	if (p == NULL)
		return false;
	if (b->len)
		memcpy(p, b->data, b->len);
	r4_free(b->data);
	b->data = p;
	b->cap = cap;
	return true;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
}

/* Append a whole chunk: length, type, data, CRC-32 of type and data */
static bool
put_chunk(Buf *b, const char type[4], const uint8_t *data, uint32_t len)
{
	uLong		crc;

	if (!buf_reserve(b, (size_t) len + 12))
		return false;
	put_u32(b->data + b->len, len);
	memcpy(b->data + b->len + 4, type, 4);
	if (len)
		memcpy(b->data + b->len + 8, data, len);
	crc = crc32(0L, b->data + b->len + 4, len + 4);
	put_u32(b->data + b->len + 8 + len, (uint32_t) crc);
	b->len += (size_t) len + 12;
	return true;
}

static void *
z_alloc(void *opaque, uInt items, uInt size)
{
	size_t		n;

	(void) opaque;
	if (r4_mul_size(items, size, &n) != 0)
		return Z_NULL;
	return r4_alloc(n);
}

static void
z_free(void *opaque, void *ptr)
{
	(void) opaque;
	r4_free(ptr);
}

/* ---- the encoder -------------------------------------------------------- */

/* Fill output row y (width * channels bytes, without the filter byte). */
typedef void (*RowFn) (void *arg, uint32_t y, uint8_t *row);

typedef struct PngSpec
{
	uint32_t	width;
	uint32_t	height;
	int			color_type;		/* 3 palette, 4 grey + alpha, 6 RGBA */
	int			channels;		/* bytes per pixel */
	const uint8_t *palette;		/* colour type 3: 256 RGB entries */
	uint8_t		trns0;			/* colour type 3: index 0 transparent */
	RowFn		row;
	void	   *row_arg;
	int			level;
} PngSpec;

/* Rows between interrupt checks (about 64 KiB to a few MiB of pixels). */
#define CHECK_EVERY 64

static R4Status
encode_png(const PngSpec *s, size_t reserve, uint8_t **out, size_t *out_len,
		   R4PngCheck check, void *check_arg, R4Error *err)
{
	static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	Buf			b = {0};
	uint8_t		ihdr[13];
	uint8_t    *line = NULL;
	size_t		stride,
				idat_at;
	z_stream	z;
	bool		z_open = false;
	R4Status	st = R4_OK;
	int			zr;

	*out = NULL;
	*out_len = 0;
	if (r4_mul_size(s->width, (size_t) s->channels, &stride) != 0 ||
		r4_add_size(stride, 1, &stride) != 0)
		return r4_fail(err, R4_ERR_LIMIT, "a PNG row of %u pixels is too large", s->width);

	/* A first guess at the size: heatmaps compress well; the buffer grows. */
	if (!buf_reserve(&b, reserve + 1024 + stride * 4))
		goto nomem;
	b.len = reserve;
	memcpy(b.data + b.len, signature, 8);
	b.len += 8;

	put_u32(ihdr, s->width);
	put_u32(ihdr + 4, s->height);
	ihdr[8] = 8;				/* bit depth */
	ihdr[9] = (uint8_t) s->color_type;
	ihdr[10] = 0;				/* deflate */
	ihdr[11] = 0;				/* adaptive filtering (we always pick "none") */
	ihdr[12] = 0;				/* no interlace */
	if (!put_chunk(&b, "IHDR", ihdr, 13))
		goto nomem;
	if (s->color_type == 3)
	{
		uint8_t		zero = 0;

		if (!put_chunk(&b, "PLTE", s->palette, 768))
			goto nomem;
		if (s->trns0 && !put_chunk(&b, "tRNS", &zero, 1))
			goto nomem;
	}

	line = r4_alloc(stride);
	if (line == NULL)
		goto nomem;
	line[0] = 0;				/* filter type none */

	memset(&z, 0, sizeof(z));
	z.zalloc = z_alloc;
	z.zfree = z_free;
	zr = deflateInit(&z, s->level);
	if (zr == Z_MEM_ERROR)
		goto nomem;
	if (zr != Z_OK)
	{
		st = r4_fail(err, R4_ERR_RANGE, "zlib refused compression level %d", s->level);
		goto done;
	}
	z_open = true;

	/* IDAT: length and type now, the length filled in when deflate ends. */
	if (!buf_reserve(&b, 8))
		goto nomem;
	idat_at = b.len;
	memcpy(b.data + b.len + 4, "IDAT", 4);
	b.len += 8;

	for (uint32_t y = 0; y <= s->height; y++)
	{
		int			flush = y == s->height ? Z_FINISH : Z_NO_FLUSH;

		if (y < s->height)
		{
			if (check != NULL && y % CHECK_EVERY == 0 && !check(check_arg))
			{
				st = r4_fail(err, R4_ERR_LIMIT, "PNG encoding interrupted at row %u", y);
				goto done;
			}
			s->row(s->row_arg, y, line + 1);
			z.next_in = line;
			z.avail_in = (uInt) stride;
		}
		else
		{
			z.next_in = NULL;
			z.avail_in = 0;
		}
		do
		{
			size_t		room;

			/* Keep at least a quarter of the pending input's size free. */
			if (!buf_reserve(&b, 4096 + (size_t) z.avail_in / 4))
				goto nomem;
			room = b.cap - b.len;
			if (room > UINT32_MAX)
				room = UINT32_MAX;
			z.next_out = b.data + b.len;
			z.avail_out = (uInt) room;
			zr = deflate(&z, flush);
			b.len += room - z.avail_out;
			if (zr == Z_STREAM_ERROR)
			{
				st = r4_fail(err, R4_ERR_INTERNAL, "zlib deflate failed");
				goto done;
			}
		} while (z.avail_in > 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
	}

	{
		size_t		idat_len = b.len - idat_at - 8;
		uLong		crc;

		if (idat_len > 0x7fffffffu)
		{
			st = r4_fail(err, R4_ERR_LIMIT, "the compressed image (%zu bytes) exceeds a PNG chunk", idat_len);
			goto done;
		}
		put_u32(b.data + idat_at, (uint32_t) idat_len);
		crc = crc32(0L, b.data + idat_at + 4, (uInt) (idat_len + 4));
		if (!buf_reserve(&b, 4))
			goto nomem;
		put_u32(b.data + b.len, (uint32_t) crc);
		b.len += 4;
	}
	if (!put_chunk(&b, "IEND", NULL, 0))
		goto nomem;

	*out = b.data;
	*out_len = b.len - reserve;
	b.data = NULL;
	goto done;

nomem:
	st = r4_fail(err, R4_ERR_NOMEM, "out of memory while writing a PNG");
done:
	if (z_open)
		deflateEnd(&z);
	r4_free(line);
	r4_free(b.data);
	return st;
}

/* ---- sizes -------------------------------------------------------------- */

R4Status
r4_png_check_size(uint32_t width, uint32_t height, int scale, R4Error *err)
{
	uint64_t	pixels;

	if (scale < 1 || scale > R4_PNG_MAX_SCALE)
		return r4_fail(err, R4_ERR_RANGE, "scale %d is out of range", scale);
	if (width == 0 || height == 0)
		return r4_fail(err, R4_ERR_INVALID, "the image is empty (%u x %u pixels)", width, height);
	pixels = (uint64_t) width * height * (uint64_t) scale * (uint64_t) scale;
	if (pixels > R4_PNG_MAX_PIXELS)
	{
		r4_fail(err, R4_ERR_LIMIT, "a PNG of %llu x %llu pixels is too large",
				(unsigned long long) width * scale, (unsigned long long) height * scale);
		return r4_fail_detail(err, "PNGs are written up to %d pixels (8192 x 8192).", R4_PNG_MAX_PIXELS);
	}
	return R4_OK;
}

/* ---- colour ramps -------------------------------------------------------- */

typedef struct Stop
{
	double		at;
	double		rgb[3];
} Stop;

static const Stop heat_stops[] = {{0, {255, 255, 204}}, {0.5, {253, 141, 60}}, {1, {189, 0, 38}}};
static const Stop viridis_stops[] = {
	{0, {68, 1, 84}}, {0.25, {59, 82, 139}}, {0.5, {33, 145, 140}}, {0.75, {94, 201, 98}}, {1, {253, 231, 37}}};
static const Stop gray_stops[] = {{0, {0, 0, 0}}, {1, {255, 255, 255}}};

bool
r4_png_ramp_parse(const char *name, R4PngRamp *ramp)
{
	if (strcmp(name, "heat") == 0)
		*ramp = R4_RAMP_HEAT;
	else if (strcmp(name, "viridis") == 0)
		*ramp = R4_RAMP_VIRIDIS;
	else if (strcmp(name, "gray") == 0)
		*ramp = R4_RAMP_GRAY;
	else
		return false;
	return true;
}

void
r4_png_ramp_palette(R4PngRamp ramp, uint8_t rgb[768])
{
	const Stop *stops;
	int			n;

	switch (ramp)
	{
		case R4_RAMP_VIRIDIS:
			stops = viridis_stops;
			n = 5;
			break;
		case R4_RAMP_GRAY:
			stops = gray_stops;
			n = 2;
			break;
		default:
			stops = heat_stops;
			n = 3;
			break;
	}
	memset(rgb, 0, 3);
	for (int i = 1; i < 256; i++)
	{
		double		t = (i - 1) / 254.0;
		int			j = 0;
		double		f;

		while (j < n - 2 && t > stops[j + 1].at)
			j++;
		f = (t - stops[j].at) / (stops[j + 1].at - stops[j].at);
		for (int c = 0; c < 3; c++)
			rgb[3 * i + c] = (uint8_t) rint(stops[j].rgb[c] + f * (stops[j + 1].rgb[c] - stops[j].rgb[c]));
	}
}

uint8_t
r4_png_heat_index(double v, double min_value, double max_value)
{
	double		t;

	if (isnan(v))
		return 0;
	t = (v - min_value) / (max_value - min_value);
	t = t < 0 ? 0 : (t > 1 ? 1 : t);
	return (uint8_t) (1 + (int) rint(254 * t));
}

/* ---- legend ---------------------------------------------------------------- */

/*
 * A 5 x 7 pixel font for the characters "%.4g" prints: each glyph is 7 rows,
 * bit 4 the leftmost column.
 */
static const char glyph_chars[] = "0123456789.-+e";
static const uint8_t glyphs[][7] = {
	{0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e},	/* 0 */
	{0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e},	/* 1 */
	{0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f},	/* 2 */
	{0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e},	/* 3 */
	{0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02},	/* 4 */
	{0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e},	/* 5 */
	{0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e},	/* 6 */
	{0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},	/* 7 */
	{0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e},	/* 8 */
	{0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c},	/* 9 */
	{0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c},	/* . */
	{0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00},	/* - */
	{0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00},	/* + */
	{0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e},	/* e */
};

#define GLYPH_W 5
#define GLYPH_H 7
#define GLYPH_ADVANCE 6

/* Legend geometry in unscaled pixels: padding, bar, tick, gap, text, padding. */
#define LEG_PAD 4
#define LEG_BAR 10
#define LEG_TICK 3
#define LEG_GAP 1
#define LEGEND_ROWS (LEG_PAD + LEG_BAR + LEG_TICK + LEG_GAP + GLYPH_H + LEG_PAD)

/* The legend grows with the picture: one unit per 320 px of width, 1 .. 4. */
static int
legend_unit(uint32_t width)
{
	uint32_t	u = width / 320;

	return u < 1 ? 1 : (u > 4 ? 4 : (int) u);
}

int
r4_png_legend_height(uint32_t width)
{
	return LEGEND_ROWS * legend_unit(width);
}

R4Status
r4_png_heatmap_size(uint32_t width, uint32_t height, const R4HeatmapOptions *opt,
					uint32_t *out_width, uint32_t *out_height, R4Error *err)
{
	uint32_t	w,
				h;

	if (r4_png_check_size(width, height, opt->scale, err) != R4_OK)
		return err->status;
	w = width * (uint32_t) opt->scale;
	h = height * (uint32_t) opt->scale;
	if (opt->legend)
	{
		if (w < R4_PNG_LEGEND_MIN_WIDTH)
			w = R4_PNG_LEGEND_MIN_WIDTH;
		h += (uint32_t) r4_png_legend_height(w);
		if ((uint64_t) w * h > R4_PNG_MAX_PIXELS)
		{
			r4_fail(err, R4_ERR_LIMIT, "a PNG of %u x %u pixels is too large", w, h);
			return r4_fail_detail(err, "PNGs are written up to %d pixels (8192 x 8192).", R4_PNG_MAX_PIXELS);
		}
	}
	*out_width = w;
	*out_height = h;
	return R4_OK;
}

typedef struct Label
{
	char		text[32];
	int			x;				/* left edge, unscaled by unit: output pixels */
} Label;

/* Draw row ly (0 .. unit * GLYPH_H - 1) of a label into an RGBA row */
static void
draw_label_row(const Label *lab, int unit, int ly, uint8_t *row, uint32_t width)
{
	int			gy = ly / unit;

	for (int k = 0; lab->text[k]; k++)
	{
		const char *at = strchr(glyph_chars, lab->text[k]);
		uint8_t		bits;

		if (at == NULL)
			continue;
		bits = glyphs[at - glyph_chars][gy];
		for (int gx = 0; gx < GLYPH_W; gx++)
		{
			if (!(bits & (0x10 >> gx)))
				continue;
			for (int u = 0; u < unit; u++)
			{
				long		x = lab->x + (long) (k * GLYPH_ADVANCE + gx) * unit + u;

				if (x >= 0 && x < (long) width)
					memset(row + 4 * x, 0, 3);	/* black, alpha stays 255 */
			}
		}
	}
}

static int
label_width(const char *text, int unit)
{
	int			n = (int) strlen(text);

	return n ? (n * GLYPH_ADVANCE - 1) * unit : 0;
}

/* ---- heatmap ---------------------------------------------------------------- */

typedef struct HeatRows
{
	const uint8_t *index;		/* source palette indices, width * height */
	uint32_t	src_width;
	uint32_t	src_height;
	int			scale;
	uint32_t	width;			/* output */
	bool		rgba;
	const uint8_t *palette;
	/* legend (rgba only) */
	int			unit;
	int			bar_x0,
				bar_x1;			/* bar spans [x0, x1) */
	Label		labels[3];
	int			nlabels;
	int			ticks[3];
} HeatRows;

static void
put_index_rgba(const HeatRows *h, uint8_t *px, uint8_t idx)
{
	memcpy(px, h->palette + 3 * idx, 3);
	px[3] = idx == 0 ? 0 : 255;
}

static void
legend_row(const HeatRows *h, uint32_t ly, uint8_t *row)
{
	int			u = h->unit;
	int			y = (int) ly;
	int			bar_top = LEG_PAD * u,
				tick_top = bar_top + LEG_BAR * u,
				text_top = tick_top + (LEG_TICK + LEG_GAP) * u;

	memset(row, 255, (size_t) h->width * 4);	/* opaque white */
	if (y >= bar_top && y < tick_top)
	{
		int			span = h->bar_x1 - h->bar_x0;

		for (int x = h->bar_x0; x < h->bar_x1; x++)
		{
			double		t = span > 1 ? (double) (x - h->bar_x0) / (span - 1) : 0;

			put_index_rgba(h, row + 4 * x, (uint8_t) (1 + (int) rint(254 * t)));
		}
	}
	else if (y >= tick_top && y < tick_top + LEG_TICK * u)
	{
		for (int k = 0; k < h->nlabels; k++)
			for (int i = 0; i < u; i++)
			{
				int			x = h->ticks[k] + i;

				if (x >= 0 && x < (int) h->width)
					memset(row + 4 * x, 0, 3);
			}
	}
	else if (y >= text_top && y < text_top + GLYPH_H * u)
	{
		for (int k = 0; k < h->nlabels; k++)
			draw_label_row(&h->labels[k], u, y - text_top, row, h->width);
	}
}

static void
heat_row(void *arg, uint32_t y, uint8_t *row)
{
	const HeatRows *h = arg;
	uint32_t	map_h = h->src_height * (uint32_t) h->scale;

	if (y >= map_h)
	{
		legend_row(h, y - map_h, row);
		return;
	}
	{
		const uint8_t *src = h->index + (size_t) (y / (uint32_t) h->scale) * h->src_width;
		uint32_t	x = 0;

		if (!h->rgba)
		{
			for (uint32_t sx = 0; sx < h->src_width; sx++)
				for (int k = 0; k < h->scale; k++)
					row[x++] = src[sx];
			return;
		}
		for (uint32_t sx = 0; sx < h->src_width; sx++)
			for (int k = 0; k < h->scale; k++)
				put_index_rgba(h, row + 4 * (size_t) x++, src[sx]);
		/* A legend wider than the map: transparent beside it. */
		memset(row + 4 * (size_t) x, 0, 4 * (size_t) (h->width - x));
	}
}

static void
setup_legend(HeatRows *h, const R4HeatmapOptions *opt)
{
	int			u = legend_unit(h->width);
	int			pad = 2 * LEG_PAD * u;
	double		vals[3] = {opt->min_value, opt->min_value + (opt->max_value - opt->min_value) / 2, opt->max_value};

	h->unit = u;
	h->bar_x0 = pad;
	h->bar_x1 = (int) h->width - pad;
	h->ticks[0] = h->bar_x0;
	h->ticks[1] = h->bar_x0 + (h->bar_x1 - h->bar_x0 - u) / 2;
	h->ticks[2] = h->bar_x1 - u;
	h->nlabels = 3;
	for (int k = 0; k < 3; k++)
	{
		int			lw;

		snprintf(h->labels[k].text, sizeof(h->labels[k].text), "%.4g", vals[k]);
		lw = label_width(h->labels[k].text, u);
		/* min flush left at its tick, max flush right, the middle centred */
		h->labels[k].x = k == 0 ? h->ticks[0] : k == 2 ? h->ticks[2] + u - lw : h->ticks[1] + u / 2 - lw / 2;
	}
	/* Drop the middle label where it would run into the others. */
	if (h->labels[1].x < h->labels[0].x + label_width(h->labels[0].text, u) + 2 * GLYPH_ADVANCE * u ||
		h->labels[1].x + label_width(h->labels[1].text, u) + 2 * GLYPH_ADVANCE * u > h->labels[2].x)
	{
		h->labels[1] = h->labels[2];
		h->ticks[1] = h->ticks[2];
		h->nlabels = 2;
	}
}

R4Status
r4_png_heatmap(const float *values, const uint8_t *mask, uint32_t width, uint32_t height,
			   const R4HeatmapOptions *opt, size_t reserve, uint8_t **out, size_t *out_len,
			   R4PngCheck check, void *check_arg, R4Error *err)
{
	uint8_t		palette[768];
	uint8_t    *index;
	size_t		n = (size_t) width * height;
	HeatRows	h = {0};
	PngSpec		s = {0};
	R4Status	st;
	uint32_t	out_w,
				out_h;

	*out = NULL;
	*out_len = 0;
	if (!(opt->min_value < opt->max_value) || !isfinite(opt->min_value) || !isfinite(opt->max_value))
		return r4_fail(err, R4_ERR_RANGE, "min_value %g must be finite and below max_value %g",
					   opt->min_value, opt->max_value);
	if (r4_png_heatmap_size(width, height, opt, &out_w, &out_h, err) != R4_OK)
		return err->status;

	r4_png_ramp_palette(opt->ramp, palette);
	index = r4_alloc(n);
	if (index == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory for %zu palette indices", n);
	for (size_t i = 0; i < n; i++)
		index[i] = mask != NULL && mask[i] ? 0 : r4_png_heat_index(values[i], opt->min_value, opt->max_value);

	h.index = index;
	h.src_width = width;
	h.src_height = height;
	h.scale = opt->scale;
	h.width = out_w;
	h.rgba = opt->legend;
	h.palette = palette;
	if (opt->legend)
		setup_legend(&h, opt);

	s.width = out_w;
	s.height = out_h;
	s.color_type = opt->legend ? 6 : 3;
	s.channels = opt->legend ? 4 : 1;
	s.palette = palette;
	s.trns0 = 1;
	s.row = heat_row;
	s.row_arg = &h;
	s.level = opt->level;
	st = encode_png(&s, reserve, out, out_len, check, check_arg, err);
	r4_free(index);
	return st;
}

/* ---- quicklook -------------------------------------------------------------- */

bool
r4_png_stretch_parse(const char *name, R4Stretch *stretch)
{
	if (strcmp(name, "percentile") == 0)
		*stretch = R4_STRETCH_PERCENTILE;
	else if (strcmp(name, "minmax") == 0)
		*stretch = R4_STRETCH_MINMAX;
	else if (strcmp(name, "fixed") == 0)
		*stretch = R4_STRETCH_FIXED;
	else
		return false;
	return true;
}

static void
swap_f(float *a, float *b)
{
	float		t = *a;

	*a = *b;
	*b = t;
}

/*
 * Reorder v so that v[k] is the k-th smallest and nothing before it is larger
 * (Wirth's selection; the values never hold NaN).
 */
static void
select_kth(float *v, size_t n, size_t k)
{
	ptrdiff_t	l = 0,
				m = (ptrdiff_t) n - 1,
				kk = (ptrdiff_t) k;

	while (l < m)
	{
		float		x = v[kk];
		ptrdiff_t	i = l,
					j = m;

		do
		{
			while (v[i] < x)
				i++;
			while (x < v[j])
				j--;
			if (i <= j)
			{
				swap_f(&v[i], &v[j]);
				i++;
				j--;
			}
		} while (i <= j);
		if (j < kk)
			l = i;
		if (kk < i)
			m = j;
	}
}

double
r4_percentile(float *values, size_t n, double p)
{
	double		pos,
				frac,
				a,
				b;
	size_t		k;

	if (n == 0)
		return 0;
	pos = p / 100.0 * (double) (n - 1);
	k = (size_t) floor(pos);
	if (k >= n - 1)
	{
		select_kth(values, n, n - 1);
		return values[n - 1];
	}
	frac = pos - (double) k;
	select_kth(values, n, k);
	a = values[k];
	/* the next rank is the smallest value above position k */
	b = values[k + 1];
	for (size_t i = k + 2; i < n; i++)
		if (values[i] < b)
			b = values[i];
	return a + frac * (b - a);
}

R4Status
r4_png_stretch_limits(const float *planes, const uint8_t *mask, int nbands, size_t npixels,
					  const R4QuicklookOptions *opt, double *lo, double *hi, size_t *nvalid,
					  R4Error *err)
{
	uint8_t    *valid;
	size_t		nv = 0;

	if (opt->stretch == R4_STRETCH_PERCENTILE &&
		!(opt->low >= 0 && opt->low <= opt->high && opt->high <= 100))
		return r4_fail(err, R4_ERR_RANGE, "percentiles %g and %g must satisfy 0 <= low <= high <= 100",
					   opt->low, opt->high);
	if (opt->stretch == R4_STRETCH_FIXED &&
		!(isfinite(opt->low) && isfinite(opt->high) && opt->low < opt->high))
		return r4_fail(err, R4_ERR_RANGE, "stretch limits %g and %g must be finite with low below high",
					   opt->low, opt->high);

	valid = r4_alloc(npixels ? npixels : 1);
	if (valid == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory for a mask of %zu pixels", npixels);
	for (size_t i = 0; i < npixels; i++)
	{
		bool		ok = true;

		for (int b = 0; b < nbands && ok; b++)
			ok = !(mask != NULL && mask[b * npixels + i]) && !isnan(planes[b * npixels + i]);
		valid[i] = ok;
		nv += ok;
	}
	*nvalid = nv;

	for (int b = 0; b < nbands; b++)
	{
		const float *p = planes + b * npixels;

		lo[b] = hi[b] = 0;
		if (opt->stretch == R4_STRETCH_FIXED)
		{
			lo[b] = opt->low;
			hi[b] = opt->high;
		}
		else if (nv == 0)
			continue;
		else if (opt->stretch == R4_STRETCH_MINMAX)
		{
			bool		first = true;

			for (size_t i = 0; i < npixels; i++)
				if (valid[i])
				{
					if (first || p[i] < lo[b])
						lo[b] = p[i];
					if (first || p[i] > hi[b])
						hi[b] = p[i];
					first = false;
				}
		}
		else
		{
			float	   *copy = r4_alloc(nv * sizeof(float));
			size_t		k = 0;

			if (copy == NULL)
			{
				r4_free(valid);
				return r4_fail(err, R4_ERR_NOMEM, "out of memory for %zu values", nv);
			}
			for (size_t i = 0; i < npixels; i++)
				if (valid[i])
					copy[k++] = p[i];
			lo[b] = r4_percentile(copy, nv, opt->low);
			hi[b] = r4_percentile(copy, nv, opt->high);
			r4_free(copy);
		}
	}
	r4_free(valid);
	return R4_OK;
}

uint8_t
r4_png_stretch_value(double v, double lo, double hi)
{
	double		t;

	if (!(hi > lo))
		return v > lo ? 255 : 0;
	t = (v - lo) / (hi - lo);
	t = t < 0 ? 0 : (t > 1 ? 1 : t);
	return (uint8_t) rint(255 * t);
}

typedef struct LookRows
{
	const uint8_t *px;			/* source pixels, channels bytes each */
	uint32_t	src_width;
	int			scale;
	int			channels;
} LookRows;

static void
look_row(void *arg, uint32_t y, uint8_t *row)
{
	const LookRows *l = arg;
	const uint8_t *src = l->px + (size_t) (y / (uint32_t) l->scale) * l->src_width * l->channels;
	size_t		x = 0;

	for (uint32_t sx = 0; sx < l->src_width; sx++)
		for (int k = 0; k < l->scale; k++, x++)
			memcpy(row + x * l->channels, src + (size_t) sx * l->channels, l->channels);
}

R4Status
r4_png_quicklook(const float *planes, const uint8_t *mask, int nbands, uint32_t width,
				 uint32_t height, const R4QuicklookOptions *opt, size_t reserve, uint8_t **out,
				 size_t *out_len, R4PngCheck check, void *check_arg, R4Error *err)
{
	size_t		n = (size_t) width * height,
				nvalid;
	int			ch = nbands == 1 ? 2 : 4;
	double		lo[3],
				hi[3];
	uint8_t    *px;
	LookRows	l;
	PngSpec		s = {0};
	R4Status	st;

	*out = NULL;
	*out_len = 0;
	if (nbands != 1 && nbands != 3)
		return r4_fail(err, R4_ERR_RANGE, "a quicklook takes 1 band (grey) or 3 (red, green, blue), not %d", nbands);
	if (r4_png_check_size(width, height, opt->scale, err) != R4_OK)
		return err->status;
	if (r4_png_stretch_limits(planes, mask, nbands, n, opt, lo, hi, &nvalid, err) != R4_OK)
		return err->status;

	px = r4_alloc(n * ch);
	if (px == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory for %zu pixels", n);
	for (size_t i = 0; i < n; i++)
	{
		bool		ok = true;
		uint8_t    *o = px + i * ch;

		for (int b = 0; b < nbands && ok; b++)
			ok = !(mask != NULL && mask[b * n + i]) && !isnan(planes[b * n + i]);
		if (!ok)
		{
			memset(o, 0, ch);
			continue;
		}
		for (int b = 0; b < nbands; b++)
			o[b] = r4_png_stretch_value(planes[b * n + i], lo[b], hi[b]);
		o[ch - 1] = 255;
	}

	l.px = px;
	l.src_width = width;
	l.scale = opt->scale;
	l.channels = ch;
	s.width = width * (uint32_t) opt->scale;
	s.height = height * (uint32_t) opt->scale;
	s.color_type = nbands == 1 ? 4 : 6;
	s.channels = ch;
	s.row = look_row;
	s.row_arg = &l;
	s.level = opt->level;
	st = encode_png(&s, reserve, out, out_len, check, check_arg, err);
	r4_free(px);
	return st;
}
