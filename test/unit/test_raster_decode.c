/*
 * test_raster_decode.c — the PostgreSQL-free PostGIS raster reader.
 *
 * Rasters are built by hand here (serialized and WKB, both byte orders)
 * from the byte layout in docs/formats.md ("PostGIS raster", after PostGIS's
 * raster/rt_core/rt_serialize.c and rt_wkb.c), and the builder itself is
 * checked against byte dumps of rasters PostGIS 3.3 wrote.  Expected
 * nodata masks come from a literal transcription of PostGIS's rule
 * (rt_band_clamped_value_is_nodata + rt_pixtype_compare_clamped_values +
 * the rt_util_clamp_to_* functions), not from the decoder's fast paths.
 */
#include "rai4eo/raster.h"

#include "rai4eo/preprocess.h"

#include <float.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "unit.h"

/* ---- reference nodata rule, written the way PostGIS 3.3 writes it ---- */

#define REF_FLT_EQ(x, y) ((x) == (y) || (isnan(x) && isnan(y)) || (fabs((x) - (y)) <= FLT_EPSILON))

/* Clamp to float range like rt_util_clamp_to_32F (NaN passes through). */
static float
ref_clamp_32f(double v)
{
	if (isnan(v))
		return v;
	return (float) fmin(fmax(v, -FLT_MAX), FLT_MAX);
}

/* Compare two values clamped to a pixel type (rt_pixtype_compare_clamped_values). */
static int
ref_clamped_equal(R4PixType pt, double val, double ref)
{
	switch (pt)
	{
		case R4_PT_1BB:
			return (uint8_t) fmin(fmax(val, 0), 1) == (uint8_t) fmin(fmax(ref, 0), 1);
		case R4_PT_2BUI:
			return (uint8_t) fmin(fmax(val, 0), 3) == (uint8_t) fmin(fmax(ref, 0), 3);
		case R4_PT_4BUI:
			return (uint8_t) fmin(fmax(val, 0), 15) == (uint8_t) fmin(fmax(ref, 0), 15);
		case R4_PT_8BSI:
			return (int8_t) fmin(fmax(val, SCHAR_MIN), SCHAR_MAX) ==
				(int8_t) fmin(fmax(ref, SCHAR_MIN), SCHAR_MAX);
		case R4_PT_8BUI:
			return (uint8_t) fmin(fmax(val, 0), UCHAR_MAX) == (uint8_t) fmin(fmax(ref, 0), UCHAR_MAX);
		case R4_PT_16BSI:
			return (int16_t) fmin(fmax(val, SHRT_MIN), SHRT_MAX) ==
				(int16_t) fmin(fmax(ref, SHRT_MIN), SHRT_MAX);
		case R4_PT_16BUI:
			return (uint16_t) fmin(fmax(val, 0), USHRT_MAX) == (uint16_t) fmin(fmax(ref, 0), USHRT_MAX);
		case R4_PT_32BSI:
			return (int32_t) fmin(fmax(val, INT_MIN), INT_MAX) ==
				(int32_t) fmin(fmax(ref, INT_MIN), INT_MAX);
		case R4_PT_32BUI:
			return (uint32_t) fmin(fmax(val, 0), UINT_MAX) == (uint32_t) fmin(fmax(ref, 0), UINT_MAX);
		case R4_PT_16BF:
		case R4_PT_32BF:
			{
				float		a = ref_clamp_32f(val);
				float		b = ref_clamp_32f(ref);

				return REF_FLT_EQ(a, b);
			}
		case R4_PT_64BF:
			return REF_FLT_EQ(val, ref);
	}
	return 0;
}

/* Decide nodata the way rt_band_get_pixel does. */
static int
ref_is_nodata(R4PixType pt, bool hasnd, bool isnd, double val, double nd)
{
	if (!hasnd)
		return 0;
	if (isnd)
		return 1;
	if (REF_FLT_EQ(val, nd))
		return 1;
	return ref_clamped_equal(pt, val, nd);
}

/* ---- hand builder for serialized and WKB rasters ---- */

typedef struct TBand
{
	R4PixType	pt;
	int			code;			/* raw pixel type code if >= 0 (for invalid codes) */
	bool		hasnd;
	bool		isnd;
	bool		offdb;
	double		nodata;
	const uint8_t *nodata_raw;	/* if set: the nodata bytes, host order */
	const double *vals;			/* w*h values, converted to the type */
	const void *raw;			/* or w*h pixels in host order */
	uint8_t		outdb_band;
	const char *path;
} TBand;

typedef struct TRaster
{
	uint16_t	version;
	uint16_t	w,
				h;
	int32_t		srid;
	double		geo[6];			/* scale x/y, ip x/y, skew x/y */
	int			nb;
	TBand		b[8];
} TRaster;

static const size_t psize[12] = {1, 1, 1, 1, 1, 2, 2, 4, 4, 2, 4, 8};

/* Tell whether the host is little-endian. */
static bool
host_le(void)
{
	uint16_t	one = 1;
	uint8_t		first;

	memcpy(&first, &one, 1);
	return first == 1;
}

/* Write n bytes of a host-order value, reversed when big-endian output is wanted on LE or v.v. */
static void
put_bytes(uint8_t *out, const void *v, size_t n, bool reverse)
{
	const uint8_t *s = v;
	size_t		i;

	for (i = 0; i < n; i++)
		out[i] = reverse ? s[n - 1 - i] : s[i];
}

/* Store one value of a pixel type in host order. */
static void
encode_value(R4PixType pt, double v, uint8_t *out)
{
	switch (pt)
	{
		case R4_PT_1BB:
		case R4_PT_2BUI:
		case R4_PT_4BUI:
		case R4_PT_8BUI:
			out[0] = (uint8_t) (int) v;
			break;
		case R4_PT_8BSI:
			{
				int8_t		x = (int8_t) v;

				memcpy(out, &x, 1);
				break;
			}
		case R4_PT_16BSI:
			{
				int16_t		x = (int16_t) v;

				memcpy(out, &x, 2);
				break;
			}
		case R4_PT_16BUI:
			{
				uint16_t	x = (uint16_t) v;

				memcpy(out, &x, 2);
				break;
			}
		case R4_PT_32BSI:
			{
				int32_t		x = (int32_t) v;

				memcpy(out, &x, 4);
				break;
			}
		case R4_PT_32BUI:
			{
				uint32_t	x = (uint32_t) v;

				memcpy(out, &x, 4);
				break;
			}
		case R4_PT_16BF:
			{
				/* only the few exact values the tests use */
				uint16_t	x = v == 0 ? 0 : v == 1 ? 0x3C00 : v == -2 ? 0xC000 : v == 0.5 ? 0x3800 : 0x7E00;

				memcpy(out, &x, 2);
				break;
			}
		case R4_PT_32BF:
			{
				float		x = (float) v;

				memcpy(out, &x, 4);
				break;
			}
		case R4_PT_64BF:
			memcpy(out, &v, 8);
			break;
	}
}

/* Compose a band's flag/pixel-type byte. */
static int
band_code(const TBand *b)
{
	return (b->code >= 0 ? b->code : (int) b->pt) |
		(b->offdb ? 0x80 : 0) | (b->hasnd ? 0x40 : 0) | (b->isnd ? 0x20 : 0);
}

/* Write the band body after the nodata: pixels or out-db number + path; returns bytes. */
static size_t
put_band_body(const TRaster *t, const TBand *b, uint8_t *out, bool reverse)
{
	size_t		ps = psize[b->pt];
	size_t		n = (size_t) t->w * t->h;
	size_t		i;

	if (b->offdb)
	{
		size_t		l = strlen(b->path) + 1;

		out[0] = b->outdb_band;
		memcpy(out + 1, b->path, l);
		return 1 + l;
	}
	for (i = 0; i < n; i++)
	{
		uint8_t		tmp[8];

		if (b->raw)
			memcpy(tmp, (const uint8_t *) b->raw + i * ps, ps);
		else
			encode_value(b->pt, b->vals[i], tmp);
		put_bytes(out + i * ps, tmp, ps, reverse);
	}
	return n * ps;
}

/* Write a band's nodata bytes in the chosen order. */
static void
put_nodata(const TBand *b, uint8_t *out, bool reverse)
{
	uint8_t		tmp[8];

	if (b->nodata_raw)
		memcpy(tmp, b->nodata_raw, psize[b->pt]);
	else
		encode_value(b->pt, b->nodata, tmp);
	put_bytes(out, tmp, psize[b->pt], reverse);
}

/* Build a serialized datum (host order, 4-byte varlena header); returns its size. */
static size_t
build_ser(const TRaster *t, uint8_t *out)
{
	size_t		pos = 64;
	uint16_t	nb = (uint16_t) t->nb;
	uint32_t	word;
	int			k;

	memset(out, 0, 64);
	memcpy(out + 4, &t->version, 2);
	memcpy(out + 6, &nb, 2);
	memcpy(out + 8, t->geo, 48);
	memcpy(out + 56, &t->srid, 4);
	memcpy(out + 60, &t->w, 2);
	memcpy(out + 62, &t->h, 2);
	for (k = 0; k < t->nb; k++)
	{
		const TBand *b = &t->b[k];
		size_t		ps = psize[b->pt];

		out[pos] = (uint8_t) band_code(b);
		memset(out + pos + 1, 0, ps - 1);
		put_nodata(b, out + pos + ps, false);
		pos += 2 * ps;
		pos += put_band_body(t, b, out + pos, false);
		while (pos % 8)
			out[pos++] = 0;
	}
	word = host_le() ? (uint32_t) pos << 2 : (uint32_t) pos;
	memcpy(out, &word, 4);
	return pos;
}

/* Build WKB in the given byte order; returns its size. */
static size_t
build_wkb(const TRaster *t, bool big, uint8_t *out)
{
	bool		rev = big == host_le();
	uint16_t	nb = (uint16_t) t->nb;
	size_t		pos = 61;
	int			k;

	out[0] = big ? 0 : 1;
	put_bytes(out + 1, &t->version, 2, rev);
	put_bytes(out + 3, &nb, 2, rev);
	for (k = 0; k < 6; k++)
		put_bytes(out + 5 + 8 * k, &t->geo[k], 8, rev);
	put_bytes(out + 53, &t->srid, 4, rev);
	put_bytes(out + 57, &t->w, 2, rev);
	put_bytes(out + 59, &t->h, 2, rev);
	for (k = 0; k < t->nb; k++)
	{
		const TBand *b = &t->b[k];

		out[pos] = (uint8_t) band_code(b);
		put_nodata(b, out + pos + 1, rev);
		pos += 1 + psize[b->pt];
		pos += put_band_body(t, b, out + pos, rev);
	}
	return pos;
}

/* Start a raster description with a fixed georeference. */
static TRaster
raster_template(uint16_t w, uint16_t h)
{
	TRaster		t;

	memset(&t, 0, sizeof(t));
	t.w = w;
	t.h = h;
	t.srid = 4326;
	t.geo[0] = 2;
	t.geo[1] = -3;
	t.geo[2] = 10.5;
	t.geo[3] = 20.25;
	t.geo[4] = 0.125;
	t.geo[5] = 0.25;
	return t;
}

/* Describe an in-db band from typed values. */
static TBand
band_of(R4PixType pt, bool hasnd, double nd, const double *vals)
{
	TBand		b;

	memset(&b, 0, sizeof(b));
	b.pt = pt;
	b.code = -1;
	b.hasnd = hasnd;
	b.nodata = nd;
	b.vals = vals;
	return b;
}

/* Copy into an exact-size heap block so ASan sees any read past the end. */
static uint8_t *
exact_copy(const uint8_t *src, size_t len)
{
	uint8_t    *p = malloc(len ? len : 1);

	memcpy(p, src, len);
	return p;
}

enum Enc
{
	ENC_SER, ENC_WKB_LE, ENC_WKB_BE
};
static const char *const enc_names[] = {"serialized", "wkb-le", "wkb-be"};

/* Encode a raster description in one of the three encodings. */
static size_t
build(const TRaster *t, enum Enc e, uint8_t *out)
{
	return e == ENC_SER ? build_ser(t, out) : build_wkb(t, e == ENC_WKB_BE, out);
}

/* Parse a buffer with the parser for its encoding. */
static R4Status
parse(enum Enc e, const uint8_t *buf, size_t len, R4Raster *r, R4Error *err)
{
	return e == ENC_SER ? r4_raster_parse_serialized(buf, len, r, err)
		: r4_raster_parse_wkb(buf, len, r, err);
}

/* Compare floats, treating any two NaNs as equal. */
static bool
same_float(float a, float b)
{
	return a == b || (isnan(a) && isnan(b));
}

static uint8_t bigbuf[1 << 20];

/* The value a pixel holds once stored in its type (the tests only use values that fit). */
static double
stored_value(R4PixType pt, double v)
{
	return pt == R4_PT_32BF ? (double) (float) v : v;
}

/* ---- tests ---- */

/* The byte layouts docs/formats.md gives as examples (from rasters PostGIS wrote), checked both ways. */
static void
test_layout_bytes(void)
{
	static const uint8_t band8[] = {0x44, 0xff, 0x01, 0x02, 0x03, 0xff, 0xfe, 0x00};
	static const uint8_t band16[] = {0x45, 0x00, 0x00, 0x80, 0xff, 0xff, 0x2c, 0x01,
	0xd4, 0xfe, 0x00, 0x80, 0xff, 0x7f, 0x00, 0x00};
	static const double v8[] = {1, 2, 3, 255, 254, 0};
	static const double v16[] = {-1, 300, -300, -32768, 32767, 0};
	static const double v64[] = {1.5, -2.25, 1e300, -1e300, 0, 3.141592653589793};
	uint8_t		buf[256];
	TRaster		t;
	size_t		len;
	R4Raster	r;
	R4Error		err;
	float		planes[6];
	uint8_t		mask[6];
	int			i;

	if (!host_le())
		return;					/* the dumps are little-endian */

	/* 8BUI nodata 255: the builder reproduces the dump and total size */
	t = raster_template(3, 2);
	t.nb = 1;
	t.b[0] = band_of(R4_PT_8BUI, true, 255, v8);
	len = build_ser(&t, buf);
	CHECK_EQ_INT(len, 72);
	CHECK(memcmp(buf + 64, band8, sizeof(band8)) == 0);
	{
		uint32_t	word;

		memcpy(&word, buf, 4);
		CHECK_EQ_INT(word, 72 << 2);	/* the stored word is len << 2 on LE */
	}

	/* and a header followed by the literal dump bytes parses to those values */
	memcpy(buf + 64, band8, sizeof(band8));
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, 72, &r, &err), R4_OK);
	CHECK_EQ_INT(r.width, 3);
	CHECK_EQ_INT(r.height, 2);
	CHECK_EQ_INT(r.nbands, 1);
	CHECK_EQ_INT(r.srid, 4326);
	CHECK(r.scale_x == 2 && r.scale_y == -3 && r.ip_x == 10.5 && r.ip_y == 20.25 &&
		  r.skew_x == 0.125 && r.skew_y == 0.25);
	CHECK_EQ_INT(r.bands[0].pixtype, R4_PT_8BUI);
	CHECK(r.bands[0].hasnodata && !r.bands[0].isnodata && !r.bands[0].offdb);
	CHECK(r.bands[0].nodata == 255);
	CHECK(r.bands[0].data == buf + 66);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, planes, mask, &err), R4_OK);
	for (i = 0; i < 6; i++)
	{
		CHECK(planes[i] == (float) v8[i]);
		CHECK_EQ_INT(mask[i], i == 3);
	}
	r4_raster_free(&r);

	/* 16BSI nodata -32768 */
	t.b[0] = band_of(R4_PT_16BSI, true, -32768, v16);
	len = build_ser(&t, buf);
	CHECK_EQ_INT(len, 80);
	CHECK(memcmp(buf + 64, band16, sizeof(band16)) == 0);
	memcpy(buf + 64, band16, sizeof(band16));
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, 80, &r, &err), R4_OK);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, planes, mask, &err), R4_OK);
	for (i = 0; i < 6; i++)
	{
		CHECK(planes[i] == (float) v16[i]);
		CHECK_EQ_INT(mask[i], i == 3);
	}
	r4_raster_free(&r);

	/* 64BF: 4b + 7 zero bytes + nodata + 48 data bytes = 128 in all */
	t.b[0] = band_of(R4_PT_64BF, true, -1e300, v64);
	len = build_ser(&t, buf);
	CHECK_EQ_INT(len, 128);
	CHECK_EQ_INT(buf[64], 0x4b);
	for (i = 65; i < 72; i++)
		CHECK_EQ_INT(buf[i], 0);
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, len, &r, &err), R4_OK);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, planes, mask, &err), R4_OK);
	for (i = 0; i < 6; i++)
	{
		CHECK(same_float(planes[i], (float) v64[i]));
		CHECK_EQ_INT(mask[i], i == 3);
	}
	CHECK(isinf(planes[2]) && planes[2] > 0);	/* 1e300 overflows float */
	r4_raster_free(&r);

	/* WKB of a 3x2 8BUI band is 69 bytes */
	t.b[0] = band_of(R4_PT_8BUI, true, 255, v8);
	CHECK_EQ_INT(build_wkb(&t, false, buf), 69);
	CHECK_EQ_INT(build_wkb(&t, true, buf), 69);
}

/* The RFC's worked example: a 64x64 16BSI band makes an 8264-byte raster. */
static void
test_rfc_size(void)
{
	TRaster		t = raster_template(64, 64);
	double	   *v = calloc(64 * 64, sizeof(double));
	R4Raster	r;
	R4Error		err;

	t.nb = 1;
	t.b[0] = band_of(R4_PT_16BSI, false, 0, v);
	CHECK_EQ_INT(build_ser(&t, bigbuf), 8264);
	CHECK_EQ_INT(r4_raster_parse_serialized(bigbuf, 8264, &r, &err), R4_OK);
	CHECK_EQ_INT(r.bands[0].data_size, 8192);
	r4_raster_free(&r);
	free(v);
}

/* Values that exercise each type's range and nodata. */
static void
values_for(R4PixType pt, size_t n, double *v, double *nd)
{
	static const double s1bb[] = {0, 1};
	static const double s2[] = {0, 1, 2, 3};
	static const double s4[] = {0, 1, 7, 15, 9, 2};
	static const double s8s[] = {-1, 2, -3, -128, 127, 0};
	static const double s8u[] = {1, 2, 3, 255, 254, 0};
	static const double s16s[] = {-1, 300, -300, -32768, 32767, 0};
	static const double s16u[] = {1, 300, 40000, 65535, 0, 7};
	static const double s32s[] = {-1, 70000, -70000, -2147483648.0, 2147483647.0, 16777217};
	static const double s32u[] = {1, 70000, 4000000000.0, 4294967295.0, 0, 16777217};
	static const double s16f[] = {1, -2, 0.5, 0, 1, 0.5};
	static const double s32f[] = {1.5, -2.25, 1e10, -9999, 0, 3.14159};
	static const double s64f[] = {1.5, -2.25, 1e300, -1e300, 0, 3.141592653589793};
	const double *s;
	size_t		ns;
	size_t		i;

	switch (pt)
	{
		case R4_PT_1BB:
			s = s1bb, ns = 2, *nd = 0;
			break;
		case R4_PT_2BUI:
			s = s2, ns = 4, *nd = 3;
			break;
		case R4_PT_4BUI:
			s = s4, ns = 6, *nd = 15;
			break;
		case R4_PT_8BSI:
			s = s8s, ns = 6, *nd = -128;
			break;
		case R4_PT_8BUI:
			s = s8u, ns = 6, *nd = 255;
			break;
		case R4_PT_16BSI:
			s = s16s, ns = 6, *nd = -32768;
			break;
		case R4_PT_16BUI:
			s = s16u, ns = 6, *nd = 65535;
			break;
		case R4_PT_32BSI:
			s = s32s, ns = 6, *nd = -2147483648.0;
			break;
		case R4_PT_32BUI:
			s = s32u, ns = 6, *nd = 4294967295.0;
			break;
		case R4_PT_16BF:
			s = s16f, ns = 6, *nd = -2;
			break;
		case R4_PT_32BF:
			s = s32f, ns = 6, *nd = -9999;
			break;
		default:
			s = s64f, ns = 6, *nd = -1e300;
			break;
	}
	for (i = 0; i < n; i++)
		v[i] = s[(i * 7 + i / 3) % ns];
}

/* Every pixel type, with and without nodata and is-nodata, in every encoding and odd sizes. */
static void
test_all_types(void)
{
	static const uint16_t sizes[][2] = {{3, 2}, {7, 5}, {1, 1}, {13, 3}, {33, 2}};
	int			pt;
	int			si;
	int			e;
	int			mode;

	for (pt = 0; pt < R4_PT_COUNT; pt++)
		for (si = 0; si < 5; si++)
			for (e = 0; e < 3; e++)
				for (mode = 0; mode < 3; mode++)
				{
					uint16_t	w = sizes[si][0],
								h = sizes[si][1];
					size_t		n = (size_t) w * h;
					double		vals[128];
					double		nd;
					TRaster		t = raster_template(w, h);
					size_t		len;
					uint8_t    *buf;
					R4Raster	r;
					R4Error		err;
					float		planes[128];
					uint8_t		mask[128];
					float		planes2[128];
					size_t		i;
					int			bad_v = 0,
								bad_m = 0;

					values_for((R4PixType) pt, n, vals, &nd);
					t.nb = 1;
					t.b[0] = band_of((R4PixType) pt, mode != 0, nd, vals);
					t.b[0].isnd = mode == 2;
					len = build(&t, (enum Enc) e, bigbuf);
					buf = exact_copy(bigbuf, len);
					if (parse((enum Enc) e, buf, len, &r, &err) != R4_OK)
					{
						CHECK_MSG(0, "%s %s: %s", r4_pixtype_name(pt), enc_names[e], err.message);
						free(buf);
						continue;
					}
					CHECK_EQ_INT(r.bands[0].pixtype, pt);
					CHECK_EQ_INT(r.bands[0].hasnodata, mode != 0);
					CHECK_EQ_INT(r.bands[0].isnodata, mode == 2);
					CHECK(r.bands[0].nodata == nd);
					CHECK_EQ_INT(r.swap, (e == ENC_WKB_BE) == host_le());
					memset(mask, 0xAA, sizeof(mask));
					CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, planes, mask, &err), R4_OK);
					CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, planes2, NULL, &err), R4_OK);
					for (i = 0; i < n; i++)
					{
						double		sv = stored_value((R4PixType) pt, vals[i]);
						float		ev = (float) sv;
						int			em = ref_is_nodata((R4PixType) pt, mode != 0, mode == 2, sv, nd);

						if (!same_float(planes[i], ev) || !same_float(planes2[i], ev))
							bad_v++;
						if (mask[i] != em)
							bad_m++;
					}
					CHECK_MSG(bad_v == 0 && bad_m == 0, "%s %ux%u %s mode %d: %d bad values, %d bad mask",
							  r4_pixtype_name(pt), w, h, enc_names[e], mode, bad_v, bad_m);
					r4_raster_free(&r);
					free(buf);
				}
}

/* Conversions to float must round like a C cast from double. */
static void
test_conversions(void)
{
	static const double v32u[] = {4000000000.0, 4294967295.0, 16777217, 3};
	static const double v32s[] = {2147483647.0, -2147483648.0, 16777217, -16777217};
	static const double v64[] = {0.1, 1e-50, -1e300, 123456789.123};
	TRaster		t = raster_template(4, 1);
	R4Raster	r;
	R4Error		err;
	float		p[8];
	uint8_t		m[8];
	size_t		len;
	int			i;

	t.nb = 2;
	t.b[0] = band_of(R4_PT_32BUI, true, 16777216, v32u);
	t.b[1] = band_of(R4_PT_32BSI, true, 16777216, v32s);
	len = build_ser(&t, bigbuf);
	CHECK_EQ_INT(r4_raster_parse_serialized(bigbuf, len, &r, &err), R4_OK);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_OK);
	for (i = 0; i < 4; i++)
	{
		CHECK(p[i] == (float) (double) (uint32_t) v32u[i]);
		CHECK(p[4 + i] == (float) (double) (int32_t) v32s[i]);
	}
	CHECK(p[1] == 4294967296.0f);
	CHECK(p[4] == 2147483648.0f);
	/* 16777217 rounds to the nodata's float, but integers compare exactly */
	CHECK(p[2] == 16777216.0f);
	CHECK_EQ_INT(m[2], 0);
	CHECK_EQ_INT(m[6], 0);
	r4_raster_free(&r);

	t.nb = 1;
	t.b[0] = band_of(R4_PT_64BF, false, 0, v64);
	len = build_wkb(&t, true, bigbuf);
	CHECK_EQ_INT(r4_raster_parse_wkb(bigbuf, len, &r, &err), R4_OK);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, NULL, &err), R4_OK);
	for (i = 0; i < 4; i++)
		CHECK(p[i] == (float) v64[i]);
	CHECK(isinf(p[2]) && p[2] < 0);
	r4_raster_free(&r);
}

/* 16BF bit patterns decode as IEEE half. */
static void
test_half(void)
{
	static const uint16_t bits[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x7E00,
	0x8000, 0x3555};
	static const float expect[] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-8f,
		6.0975551605224609375e-5f, INFINITY, -INFINITY, NAN, -0.0f, 0.333251953125f};
	static const uint8_t ndbits[2] = {0x00, 0x3C};	/* 1.0, LE */
	TRaster		t = raster_template(10, 1);
	R4Raster	r;
	R4Error		err;
	float		p[10];
	uint8_t		m[10];
	size_t		len;
	int			e;
	int			i;

	t.nb = 1;
	t.b[0] = band_of(R4_PT_16BF, true, 0, NULL);
	t.b[0].raw = bits;
	if (host_le())
		t.b[0].nodata_raw = ndbits;
	else
		t.b[0].nodata = 1;
	for (e = 0; e < 3; e++)
	{
		len = build(&t, (enum Enc) e, bigbuf);
		CHECK_EQ_INT(parse((enum Enc) e, bigbuf, len, &r, &err), R4_OK);
		CHECK(r.bands[0].nodata == 1.0);
		CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_OK);
		for (i = 0; i < 10; i++)
		{
			CHECK_MSG(same_float(p[i], expect[i]), "half %04x: %g vs %g", bits[i], p[i], expect[i]);
			CHECK_EQ_INT(m[i], i == 0);
		}
		CHECK(signbit(p[8]));
		r4_raster_free(&r);
	}
}

/* Multi-band, mixed types, band selection in any order with repeats. */
static void
test_multiband_selection(void)
{
	double		a[35],
				b[35],
				c[35];
	TRaster		t = raster_template(7, 5);
	int			e;
	int			i;

	for (i = 0; i < 35; i++)
	{
		a[i] = i % 5 == 0 ? 255 : i;
		b[i] = i % 3 == 0 ? -9999 : i * 0.5 - 4;
		c[i] = i % 4 == 0 ? -1 : -i;
	}
	t.nb = 3;
	t.b[0] = band_of(R4_PT_8BUI, true, 255, a);
	t.b[1] = band_of(R4_PT_32BF, true, -9999, b);
	t.b[2] = band_of(R4_PT_16BSI, false, -1, c);
	for (e = 0; e < 3; e++)
	{
		static const int sel[] = {3, 1, 3, 2};
		size_t		len = build(&t, (enum Enc) e, bigbuf);
		uint8_t    *buf = exact_copy(bigbuf, len);
		R4Raster	r;
		R4Error		err;
		float		p[4 * 35];
		uint8_t		m[4 * 35];
		int			k;

		CHECK_EQ_INT(parse((enum Enc) e, buf, len, &r, &err), R4_OK);
		CHECK_EQ_INT(r.nbands, 3);
		CHECK(!r4_raster_has_outdb(&r, NULL, 0));
		CHECK_EQ_INT(r4_raster_decode(&r, sel, 4, p, m, &err), R4_OK);
		for (k = 0; k < 4; k++)
			for (i = 0; i < 35; i++)
			{
				float		ev;
				int			em;

				switch (sel[k])
				{
					case 1:
						ev = (float) a[i];
						em = a[i] == 255;
						break;
					case 2:
						ev = (float) b[i];
						em = b[i] == -9999;
						break;
					default:
						ev = (float) c[i];
						em = 0;	/* band 3 has no nodata */
						break;
				}
				CHECK_MSG(p[k * 35 + i] == ev && m[k * 35 + i] == em,
						  "%s sel %d px %d: %g/%d vs %g/%d", enc_names[e], sel[k], i,
						  p[k * 35 + i], m[k * 35 + i], ev, em);
			}
		/* row 0 is the top row: pixel (x=2, y=1) of band 1 */
		CHECK(p[35 + 1 * 7 + 2] == (float) a[9]);
		r4_raster_free(&r);
		free(buf);
	}
}

/* Out-db bands: fields parsed, has_outdb, decode refuses them. */
static void
test_outdb(void)
{
	double		a[6] = {1, 2, 3, 4, 5, 6};
	TRaster		t = raster_template(3, 2);
	int			e;

	t.nb = 3;
	t.b[0] = band_of(R4_PT_8BUI, false, 0, a);
	t.b[1] = band_of(R4_PT_16BSI, true, -1, NULL);
	t.b[1].offdb = true;
	t.b[1].outdb_band = 0;
	t.b[1].path = "/tmp/outdb_test.tif";
	t.b[2] = band_of(R4_PT_64BF, false, 0, NULL);
	t.b[2].offdb = true;
	t.b[2].outdb_band = 4;
	t.b[2].path = "";
	for (e = 0; e < 3; e++)
	{
		size_t		len = build(&t, (enum Enc) e, bigbuf);
		uint8_t    *buf = exact_copy(bigbuf, len);
		R4Raster	r;
		R4Error		err;
		float		p[6];
		uint8_t		m[6];
		static const int one[] = {1};
		static const int two[] = {1, 2};
		static const int bad[] = {9, 3};

		CHECK_EQ_INT(parse((enum Enc) e, buf, len, &r, &err), R4_OK);
		if (e == ENC_SER && host_le())
		{
			/* an out-db 16BSI band: c5 00 ff ff 00 "/tmp..." */
			static const uint8_t head[] = {0xc5, 0x00, 0xff, 0xff, 0x00, 0x2f, 0x74, 0x6d, 0x70};

			CHECK(memcmp(buf + 72, head, sizeof(head)) == 0);
		}
		CHECK(r.bands[1].offdb && r.bands[1].hasnodata && r.bands[1].nodata == -1);
		CHECK(r.bands[1].data == NULL);
		CHECK_EQ_INT(r.bands[1].outdb_band, 0);
		CHECK(r.bands[1].outdb_path && strcmp(r.bands[1].outdb_path, "/tmp/outdb_test.tif") == 0);
		CHECK_EQ_INT(r.bands[2].outdb_band, 4);
		CHECK(r.bands[2].outdb_path && r.bands[2].outdb_path[0] == '\0');
		CHECK(r4_raster_has_outdb(&r, NULL, 0));
		CHECK(!r4_raster_has_outdb(&r, one, 1));
		CHECK(r4_raster_has_outdb(&r, two, 2));
		CHECK(r4_raster_has_outdb(&r, bad, 2));
		CHECK(!r4_raster_has_outdb(&r, bad, 1));
		CHECK_EQ_INT(r4_raster_decode(&r, one, 1, p, m, &err), R4_OK);
		CHECK(p[5] == 6 && m[5] == 0);
		CHECK_EQ_INT(r4_raster_decode(&r, two, 2, p, m, &err), R4_ERR_UNSUPPORTED);
		CHECK_STR_CONTAINS(err.message, "out-db");
		CHECK_STR_CONTAINS(err.message, "band 2");
		CHECK_STR_CONTAINS(err.detail, "/tmp/outdb_test.tif");
		CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_ERR_UNSUPPORTED);
		CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, NULL), R4_ERR_UNSUPPORTED);
		r4_raster_free(&r);
		free(buf);
	}
}

/* The nodata tolerance and clamping rule on chosen values. */
static void
test_nodata_rule(void)
{
	/* PostGIS's FLT_EQ: 64BF nodata 0 -> 1e-8 and -1e-8 are nodata, 1e-6 is not */
	static const double v64[] = {1e-8, -1e-8, 1e-6, 0, 1.1e-7, 1.3e-7, NAN};
	static const double v32[] = {1e-7, -1e-7, 2e-7, 0, 1e-6, NAN, 0};
	TRaster		t = raster_template(7, 1);
	R4Raster	r;
	R4Error		err;
	float		p[14];
	uint8_t		m[14];
	size_t		len;
	int			i;

	t.nb = 2;
	t.b[0] = band_of(R4_PT_64BF, true, 0, v64);
	t.b[1] = band_of(R4_PT_32BF, true, 0, v32);
	len = build_ser(&t, bigbuf);
	CHECK_EQ_INT(r4_raster_parse_serialized(bigbuf, len, &r, &err), R4_OK);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_OK);
	{
		static const uint8_t e64[] = {1, 1, 0, 1, 1, 0, 0};
		static const uint8_t e32[] = {1, 1, 0, 1, 0, 0, 1};

		for (i = 0; i < 7; i++)
		{
			CHECK_MSG(m[i] == e64[i], "64BF %g", v64[i]);
			CHECK_MSG(m[7 + i] == e32[i], "32BF %g", v32[i]);
		}
	}
	CHECK(p[0] == 1e-8f);		/* nodata pixels keep their own value */
	r4_raster_free(&r);

	/* NaN nodata matches NaN pixels, and only them */
	t.b[0] = band_of(R4_PT_64BF, true, NAN, v64);
	t.b[1] = band_of(R4_PT_32BF, true, NAN, v32);
	len = build_wkb(&t, true, bigbuf);
	CHECK_EQ_INT(r4_raster_parse_wkb(bigbuf, len, &r, &err), R4_OK);
	CHECK(isnan(r.bands[0].nodata) && isnan(r.bands[1].nodata));
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_OK);
	for (i = 0; i < 7; i++)
	{
		CHECK_EQ_INT(m[i], isnan(v64[i]));
		CHECK_EQ_INT(m[7 + i], isnan(v32[i]));
	}
	r4_raster_free(&r);

	/* exported rule */
	CHECK(r4_pixel_is_nodata(R4_PT_64BF, 1e-8, 0));
	CHECK(!r4_pixel_is_nodata(R4_PT_64BF, 1e-6, 0));
	CHECK(r4_pixel_is_nodata(R4_PT_8BUI, 300, 255));	/* clamped */
	CHECK(r4_pixel_is_nodata(R4_PT_1BB, 7, 1));
	CHECK(!r4_pixel_is_nodata(R4_PT_32BSI, 16777217, 16777216));
	CHECK(r4_pixel_is_nodata(R4_PT_32BF, INFINITY, FLT_MAX));
	CHECK(!r4_pixel_is_nodata(R4_PT_32BF, NAN, -FLT_MAX));
}

/* Small integer types: nodata is masked when read, pixels are clamped when compared. */
static void
test_small_int_nodata(void)
{
	static const uint8_t px[] = {0, 1, 2, 7, 255, 3, 15, 16};
	static const uint8_t nd_1bb = 0xFF;	/* reads as 1 */
	static const uint8_t nd_2bui = 0x07;	/* reads as 3 */
	static const uint8_t nd_4bui = 0xF3;	/* reads as 3 */
	static const uint8_t nd_8bsi = 0xFF;	/* reads as -1 */
	TRaster		t = raster_template(8, 1);
	R4Raster	r;
	R4Error		err;
	float		p[32];
	uint8_t		m[32];
	size_t		len;
	int			e;
	int			i;

	t.nb = 4;
	t.b[0] = band_of(R4_PT_1BB, true, 0, NULL);
	t.b[0].raw = px;
	t.b[0].nodata_raw = &nd_1bb;
	t.b[1] = band_of(R4_PT_2BUI, true, 0, NULL);
	t.b[1].raw = px;
	t.b[1].nodata_raw = &nd_2bui;
	t.b[2] = band_of(R4_PT_4BUI, true, 0, NULL);
	t.b[2].raw = px;
	t.b[2].nodata_raw = &nd_4bui;
	t.b[3] = band_of(R4_PT_8BSI, true, 0, NULL);
	t.b[3].raw = px;
	t.b[3].nodata_raw = &nd_8bsi;
	for (e = 0; e < 3; e++)
	{
		len = build(&t, (enum Enc) e, bigbuf);
		CHECK_EQ_INT(parse((enum Enc) e, bigbuf, len, &r, &err), R4_OK);
		CHECK(r.bands[0].nodata == 1);
		CHECK(r.bands[1].nodata == 3);
		CHECK(r.bands[2].nodata == 3);
		CHECK(r.bands[3].nodata == -1);
		CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_OK);
		for (i = 0; i < 8; i++)
		{
			/* pixel values are not masked; 8BSI is signed */
			CHECK(p[i] == px[i] && p[8 + i] == px[i] && p[16 + i] == px[i]);
			CHECK(p[24 + i] == (float) (int8_t) px[i]);
			CHECK_EQ_INT(m[i], px[i] >= 1);
			CHECK_EQ_INT(m[8 + i], px[i] >= 3);
			CHECK_EQ_INT(m[16 + i], px[i] == 3);
			CHECK_EQ_INT(m[24 + i], px[i] == 255);
			CHECK_EQ_INT(m[i], ref_is_nodata(R4_PT_1BB, true, false, px[i], 1));
			CHECK_EQ_INT(m[8 + i], ref_is_nodata(R4_PT_2BUI, true, false, px[i], 3));
		}
		r4_raster_free(&r);
	}
}

/* The has-nodata bit clear: stored nodata is still read, is-nodata bit ignored. */
static void
test_flags(void)
{
	double		v[6] = {1, 2, 3, 4, 5, 6};
	TRaster		t = raster_template(3, 2);
	R4Raster	r;
	R4Error		err;
	float		p[6];
	uint8_t		m[6];
	size_t		len;
	int			i;

	t.nb = 1;
	t.b[0] = band_of(R4_PT_8BUI, false, 4, v);
	t.b[0].isnd = true;			/* 0x24: ignored without 0x40 */
	len = build_ser(&t, bigbuf);
	CHECK_EQ_INT(bigbuf[64], 0x24);
	CHECK_EQ_INT(r4_raster_parse_serialized(bigbuf, len, &r, &err), R4_OK);
	CHECK(!r.bands[0].hasnodata && !r.bands[0].isnodata);
	CHECK(r.bands[0].nodata == 4);
	CHECK_EQ_INT(r.bands[0].flags, 0x24);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_OK);
	for (i = 0; i < 6; i++)
		CHECK(m[i] == 0 && p[i] == v[i]);
	r4_raster_free(&r);

	/* reserved bit 0x10 is ignored, as PostGIS does */
	bigbuf[64] = 0x54;
	CHECK_EQ_INT(r4_raster_parse_serialized(bigbuf, len, &r, &err), R4_OK);
	CHECK(r.bands[0].hasnodata && r.bands[0].pixtype == R4_PT_8BUI);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_OK);
	for (i = 0; i < 6; i++)
		CHECK_EQ_INT(m[i], i == 3);
	r4_raster_free(&r);
}

/* Unaligned buffers and trailing bytes. */
static void
test_unaligned_and_trailing(void)
{
	double		v[35];
	TRaster		t = raster_template(7, 5);
	R4Raster	r;
	R4Error		err;
	float		p[70];
	uint8_t		m[70];
	size_t		len;
	uint8_t    *raw;
	int			i;

	for (i = 0; i < 35; i++)
		v[i] = i * 1000.25 - 3;
	t.nb = 2;
	t.b[0] = band_of(R4_PT_64BF, true, -3, v);
	t.b[1] = band_of(R4_PT_32BF, true, -3, v);
	len = build_ser(&t, bigbuf);
	raw = malloc(len + 3);
	memcpy(raw + 3, bigbuf, len);
	CHECK_EQ_INT(r4_raster_parse_serialized(raw + 3, len, &r, &err), R4_OK);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_OK);
	for (i = 0; i < 35; i++)
	{
		CHECK(p[i] == (float) v[i] && p[35 + i] == (float) v[i]);
		CHECK_EQ_INT(m[i], i == 0);
		CHECK_EQ_INT(m[35 + i], i == 0);
	}
	r4_raster_free(&r);
	free(raw);

	/* serialized: a buffer longer than VARSIZE is fine, only VARSIZE bytes count */
	memset(bigbuf + len, 0xEE, 16);
	CHECK_EQ_INT(r4_raster_parse_serialized(bigbuf, len + 16, &r, &err), R4_OK);
	r4_raster_free(&r);

	/* WKB: trailing bytes are ignored (PostGIS only warns) */
	len = build_wkb(&t, false, bigbuf);
	CHECK_EQ_INT(r4_raster_parse_wkb(bigbuf, len + 5, &r, &err), R4_OK);
	r4_raster_free(&r);
}

/* Zero-band and empty rasters parse; decoding them is an error. */
static void
test_empty(void)
{
	TRaster		t = raster_template(3, 2);
	R4Raster	r;
	R4Error		err;
	float		p[6];
	size_t		len;
	static const int one[] = {1};
	double		v[1] = {0};

	t.nb = 0;
	len = build_ser(&t, bigbuf);
	CHECK_EQ_INT(len, 64);
	CHECK_EQ_INT(r4_raster_parse_serialized(bigbuf, len, &r, &err), R4_OK);
	CHECK_EQ_INT(r.nbands, 0);
	CHECK(r.bands == NULL);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, NULL, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "no bands");
	CHECK_EQ_INT(r4_raster_decode(&r, one, 1, p, NULL, &err), R4_ERR_RANGE);
	r4_raster_free(&r);

	t = raster_template(0, 5);
	t.nb = 1;
	t.b[0] = band_of(R4_PT_8BUI, true, 0, v);
	len = build_wkb(&t, false, bigbuf);
	CHECK_EQ_INT(len, 63);
	CHECK_EQ_INT(r4_raster_parse_wkb(bigbuf, len, &r, &err), R4_OK);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, NULL, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "empty");
	r4_raster_free(&r);

	/* free is safe on zeroed and already freed structs */
	memset(&r, 0, sizeof(r));
	r4_raster_free(&r);
	r4_raster_free(&r);
	r4_raster_free(NULL);
}

/* Every error path of parsing. */
static void
test_parse_errors(void)
{
	double		v[6] = {1, 2, 3, 4, 5, 6};
	TRaster		t = raster_template(3, 2);
	R4Raster	r;
	R4Error		err;
	uint8_t		buf[256];
	size_t		len;
	uint32_t	word;
	int			code;

	t.nb = 2;
	t.b[0] = band_of(R4_PT_8BUI, true, 0, v);
	t.b[1] = band_of(R4_PT_16BUI, true, 0, v);

	/* serialized */
	CHECK_EQ_INT(r4_raster_parse_serialized(NULL, 0, &r, &err), R4_ERR_INVALID);
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, 3, &r, &err), R4_ERR_INVALID);
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, 3, &r, NULL), R4_ERR_INVALID);	/* err is optional */
	len = build_ser(&t, buf);
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, len - 1, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "varlena size");
	CHECK(r.bands == NULL && r.nbands == 0);
	if (host_le())
	{
		uint8_t		save = buf[0];

		buf[0] |= 0x01;
		CHECK_EQ_INT(r4_raster_parse_serialized(buf, len, &r, &err), R4_ERR_INVALID);
		CHECK_STR_CONTAINS(err.message, "1-byte");
		buf[0] = (uint8_t) ((save & ~0x03) | 0x02);
		CHECK_EQ_INT(r4_raster_parse_serialized(buf, len, &r, &err), R4_ERR_INVALID);
		CHECK_STR_CONTAINS(err.message, "compressed");
		buf[0] = save;
	}
	word = host_le() ? 40u << 2 : 40u;
	memcpy(buf, &word, 4);
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, len, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "header");
	len = build_ser(&t, buf);
	buf[4] = 1;
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, len, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "version");
	t.version = 1;
	len = build_wkb(&t, true, buf);
	CHECK_EQ_INT(r4_raster_parse_wkb(buf, len, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "version");
	t.version = 0;

	/* unknown pixel type codes 12..15, in band 2 */
	for (code = 12; code < 16; code++)
	{
		t.b[1].code = code;
		len = build_ser(&t, buf);
		CHECK_EQ_INT(r4_raster_parse_serialized(buf, len, &r, &err), R4_ERR_UNSUPPORTED);
		CHECK_STR_CONTAINS(err.message, "band 2");
		CHECK(r.bands == NULL);
		len = build_wkb(&t, false, buf);
		CHECK_EQ_INT(r4_raster_parse_wkb(buf, len, &r, &err), R4_ERR_UNSUPPORTED);
	}
	t.b[1].code = -1;

	/* a band count larger than the data */
	len = build_ser(&t, buf);
	buf[6] = 200;
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, len, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "bands");
	buf[6] = 3;
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, len, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "band 3");

	/* width/height too large for the data: says which band */
	len = build_ser(&t, buf);
	buf[60] = 4;
	CHECK_EQ_INT(r4_raster_parse_serialized(buf, len, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "band 2");
	len = build_wkb(&t, false, buf);
	buf[57] = 0xFF;
	buf[58] = 0xFF;
	CHECK_EQ_INT(r4_raster_parse_wkb(buf, len, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "band 1");
	CHECK_STR_CONTAINS(err.message, "pixel data");

	/* WKB header problems */
	len = build_wkb(&t, false, buf);
	CHECK_EQ_INT(r4_raster_parse_wkb(buf, 60, &r, &err), R4_ERR_INVALID);
	CHECK_EQ_INT(r4_raster_parse_wkb(NULL, 0, &r, &err), R4_ERR_INVALID);
	buf[0] = 2;
	CHECK_EQ_INT(r4_raster_parse_wkb(buf, len, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "byte order");

	/* out-db path without its NUL */
	t.nb = 1;
	t.b[0] = band_of(R4_PT_8BUI, false, 0, NULL);
	t.b[0].offdb = true;
	t.b[0].path = "/x.tif";
	len = build_wkb(&t, false, buf);
	CHECK_EQ_INT(r4_raster_parse_wkb(buf, len - 1, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "NUL");
	CHECK_EQ_INT(r4_raster_parse_wkb(buf, 61 + 2, &r, &err), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(err.message, "file band number");
}

/* Every error path of decoding. */
static void
test_decode_errors(void)
{
	double		v[6] = {1, 2, 3, 4, 5, 6};
	TRaster		t = raster_template(3, 2);
	R4Raster	r;
	R4Error		err;
	float		p[12];
	size_t		len;
	size_t		count;
	static const int zero[] = {0};
	static const int three[] = {1, 3};
	static const int neg[] = {-1};
	static const int big[] = {1};

	t.nb = 2;
	t.b[0] = band_of(R4_PT_8BUI, true, 0, v);
	t.b[1] = band_of(R4_PT_32BF, true, 0, v);
	len = build_ser(&t, bigbuf);
	CHECK_EQ_INT(r4_raster_parse_serialized(bigbuf, len, &r, &err), R4_OK);
	CHECK_EQ_INT(r4_raster_decode(&r, zero, 1, p, NULL, &err), R4_ERR_RANGE);
	CHECK_STR_CONTAINS(err.message, "band number 0");
	CHECK_EQ_INT(r4_raster_decode(&r, three, 2, p, NULL, &err), R4_ERR_RANGE);
	CHECK_STR_CONTAINS(err.message, "band number 3");
	CHECK_EQ_INT(r4_raster_decode(&r, neg, 1, p, NULL, &err), R4_ERR_RANGE);
	CHECK_EQ_INT(r4_raster_decode(&r, three, 0, p, NULL, &err), R4_ERR_INVALID);
	CHECK_EQ_INT(r4_raster_decode(&r, three, -4, p, NULL, &err), R4_ERR_INVALID);
	CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, NULL, NULL, &err), R4_ERR_INTERNAL);
	CHECK_EQ_INT(r4_raster_decode_count(&r, 2, &count, &err), R4_OK);
	CHECK_EQ_INT(count, 12);
	r4_raster_free(&r);

	/* size overflow is reported before any band number is read */
	memset(&r, 0, sizeof(r));
	r.width = 65535;
	r.height = 65535;
	r.nbands = 1;
	CHECK_EQ_INT(r4_raster_decode(&r, big, INT_MAX, p, NULL, &err), R4_ERR_LIMIT);
	CHECK_EQ_INT(r4_raster_decode_count(&r, INT_MAX, &count, &err), R4_ERR_LIMIT);
	CHECK_EQ_INT(r4_raster_decode_count(&r, 65535, &count, &err), sizeof(size_t) >= 8 ? R4_OK : R4_ERR_LIMIT);
}

/* Truncating a valid raster at every length must fail cleanly, never read past the end. */
static void
check_prefixes(const TRaster *t, const char *what)
{
	int			e;

	for (e = 0; e < 3; e++)
	{
		size_t		full = build(t, (enum Enc) e, bigbuf);
		size_t		k;
		int			accepted = 0;
		R4Raster	r;
		R4Error		err;

		for (k = 0; k < full; k++)
		{
			uint8_t    *buf = exact_copy(bigbuf, k);

			if (parse((enum Enc) e, buf, k, &r, &err) == R4_OK)
			{
				accepted++;
				r4_raster_free(&r);
			}
			else
				CHECK(r.bands == NULL && err.message[0] != '\0');
			/* serialized with a consistent (rewritten) VARSIZE as well */
			if (e == ENC_SER && k >= 4)
			{
				uint32_t	word = host_le() ? (uint32_t) k << 2 : (uint32_t) k;

				memcpy(buf, &word, 4);
				if (r4_raster_parse_serialized(buf, k, &r, &err) == R4_OK)
				{
					accepted++;
					r4_raster_free(&r);
				}
			}
			free(buf);
		}
		CHECK_MSG(accepted == 0, "%s %s: %d truncated prefixes accepted", what, enc_names[e], accepted);
		{
			uint8_t    *buf = exact_copy(bigbuf, full);

			CHECK_EQ_INT(parse((enum Enc) e, buf, full, &r, &err), R4_OK);
			r4_raster_free(&r);
			free(buf);
		}
	}
}

/* Truncate mixed, float and 1BB rasters at every length. */
static void
test_truncation(void)
{
	double		a[35],
				b[35];
	TRaster		t = raster_template(7, 5);
	int			i;

	for (i = 0; i < 35; i++)
	{
		a[i] = i;
		b[i] = i * 0.25;
	}
	t.nb = 3;
	t.b[0] = band_of(R4_PT_8BUI, true, 255, a);
	t.b[1] = band_of(R4_PT_64BF, false, 0, b);
	t.b[2] = band_of(R4_PT_16BSI, true, -1, NULL);
	t.b[2].offdb = true;
	t.b[2].outdb_band = 2;
	t.b[2].path = "/data/tile.tif";
	check_prefixes(&t, "3-band mixed");

	t = raster_template(3, 2);
	t.nb = 1;
	t.b[0] = band_of(R4_PT_32BF, true, 0, b);
	check_prefixes(&t, "3x2 32BF");

	t.b[0] = band_of(R4_PT_1BB, false, 0, a);
	check_prefixes(&t, "3x2 1BB");
}

/* The float fast paths agree with the literal PostGIS rule on awkward values. */
static void
test_float_rule_exhaustive(void)
{
	static const double specials[] = {0.0, -0.0, 1e-8, -1e-8, 1.1920928955078125e-07,
		1.2e-7, -1.2e-7, 5.9e-8, 1e-45, 1.4e-45, 1.0, 1.0000001, 0.99999994, 1e30, -1e30,
		FLT_MAX, -FLT_MAX, 3.4028235677973366e38, 1e39, -1e39, INFINITY, -INFINITY, NAN,
	-9999.0, -9999.0001, 16777216.0, 16777217.0, 1e300, -1e300, DBL_MIN, 2.5e-7};
	enum
	{
		NS = sizeof(specials) / sizeof(specials[0])
	};
	double		vals[NS + 64];
	uint32_t	rng = 12345;
	int			nv;
	int			ni;
	int			ptk;
	int			e;

	for (nv = 0; nv < NS; nv++)
		vals[nv] = specials[nv];
	for (; nv < NS + 64; nv++)
	{
		rng = rng * 1664525u + 1013904223u;
		vals[nv] = ((double) (rng >> 8) / (1 << 24) - 0.5) * 4e-7;	/* near 0 */
	}

	for (ptk = 0; ptk < 3; ptk++)
	{
		R4PixType	pt = ptk == 0 ? R4_PT_32BF : ptk == 1 ? R4_PT_64BF : R4_PT_16BF;

		if (pt == R4_PT_16BF)
			continue;			/* the builder cannot encode these as halves */
		for (ni = 0; ni < NS; ni++)
			for (e = 0; e < 3; e++)
			{
				TRaster		t = raster_template((uint16_t) nv, 1);
				R4Raster	r;
				R4Error		err;
				float		p[NS + 64];
				uint8_t		m[NS + 64];
				size_t		len;
				int			i;
				int			bad = 0;
				double		nd = specials[ni];

				if (pt == R4_PT_32BF)
					nd = (double) (float) nd;
				t.nb = 1;
				t.b[0] = band_of(pt, true, nd, vals);
				len = build(&t, (enum Enc) e, bigbuf);
				CHECK_EQ_INT(parse((enum Enc) e, bigbuf, len, &r, &err), R4_OK);
				CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_OK);
				for (i = 0; i < nv; i++)
				{
					double		stored = stored_value(pt, vals[i]);
					int			em = ref_is_nodata(pt, true, false, stored, nd);

					if (m[i] != em || (int) r4_pixel_is_nodata(pt, stored, nd) != em)
					{
						if (bad++ < 3)
							fprintf(stderr, "  %s nodata %.9g value %.9g: got %d want %d\n",
									r4_pixtype_name(pt), nd, stored, m[i], em);
					}
				}
				CHECK_MSG(bad == 0, "%s nodata %.9g %s: %d mismatches", r4_pixtype_name(pt), nd,
						  enc_names[e], bad);
				r4_raster_free(&r);
			}
	}
}

/* Integer fast paths (equality on raw bits) agree with the clamped rule for all 8/16-bit values. */
static void
test_int_rule_exhaustive(void)
{
	static const R4PixType types[] = {R4_PT_8BSI, R4_PT_8BUI, R4_PT_16BSI, R4_PT_16BUI};
	static const double nds[] = {0, 1, -1, 127, -128, 255, 32767, -32768, 65535};
	double	   *vals = malloc(65536 * sizeof(double));
	float	   *p = malloc(65536 * sizeof(float));
	uint8_t    *m = malloc(65536);
	int			ti;
	int			ni;

	for (ti = 0; ti < 4; ti++)
		for (ni = 0; ni < 9; ni++)
		{
			R4PixType	pt = types[ti];
			int			lo = pt == R4_PT_8BSI ? -128 : pt == R4_PT_16BSI ? -32768 : 0;
			int			n = pt <= R4_PT_8BUI ? 256 : 65536;
			double		nd = nds[ni];
			TRaster		t = raster_template(256, (uint16_t) (n / 256));
			R4Raster	r;
			R4Error		err;
			size_t		len;
			int			i;
			int			bad = 0;

			if (nd < lo || nd > lo + n - 1)
				continue;		/* a stored nodata always fits its type */
			for (i = 0; i < n; i++)
				vals[i] = lo + i;
			t.nb = 1;
			t.b[0] = band_of(pt, true, nd, vals);
			len = build_wkb(&t, true, bigbuf);
			CHECK_EQ_INT(r4_raster_parse_wkb(bigbuf, len, &r, &err), R4_OK);
			CHECK_EQ_INT(r4_raster_decode(&r, NULL, 0, p, m, &err), R4_OK);
			for (i = 0; i < n; i++)
				if (m[i] != ref_is_nodata(pt, true, false, vals[i], nd) || p[i] != (float) vals[i])
					bad++;
			CHECK_MSG(bad == 0, "%s nodata %g: %d mismatches", r4_pixtype_name(pt), nd, bad);
			r4_raster_free(&r);
		}
	free(vals);
	free(p);
	free(m);
}

/*
 * Decoding straight into normalised model input: for every pixel type and
 * nodata mode, in every encoding, over a raster larger than the decoder's
 * chunk, with bands picked out of order and repeated, the output is
 * (value * scale - mean) / std rounded once to float (written out here in
 * double, as the reference preprocessing does), and exactly 0 for nodata
 * and non-finite pixels.
 */
static void
test_decode_normalised(void)
{
	enum
	{
		NW = 70, NH = 41, NPIX = NW * NH	/* 2870 pixels: more than one 2048-pixel chunk */
	};
	static double vals[3][NPIX];
	static float out[4 * NPIX];
	static float planes[4 * NPIX];
	static uint8_t mask[4 * NPIX];
	const int	pick[4] = {3, 1, 3, 2};
	const double mean[4] = {0.05, -1.5, 0.25, 7};
	const double std[4] = {0.03, 2.5, 1e-3, 0.1};
	const double scale = 1e-4;

	for (int pt = 0; pt < R4_PT_COUNT; pt++)
		for (int e = 0; e < 3; e++)
		{
			TRaster		t = raster_template(NW, NH);
			size_t		len;
			uint8_t    *buf;
			R4Raster	r;
			R4Error		err;
			double		nd = 0;
			int			bad = 0;

			t.nb = 3;
			for (int b = 0; b < 3; b++)
			{
				values_for((R4PixType) pt, NPIX, vals[b], &nd);
				/* band 1: no nodata, band 2: nodata, band 3: is-nodata */
				t.b[b] = band_of((R4PixType) pt, b != 0, nd, vals[b]);
				t.b[b].isnd = b == 2;
			}
			len = build(&t, (enum Enc) e, bigbuf);
			buf = exact_copy(bigbuf, len);
			if (parse((enum Enc) e, buf, len, &r, &err) != R4_OK)
			{
				CHECK_MSG(0, "%s %s: %s", r4_pixtype_name(pt), enc_names[e], err.message);
				free(buf);
				continue;
			}
			CHECK_EQ_INT(r4_raster_decode_normalised(&r, pick, 4, scale, mean, std, out, &err), R4_OK);
			CHECK_EQ_INT(r4_raster_decode(&r, pick, 4, planes, mask, &err), R4_OK);
			for (int k = 0; k < 4; k++)
				for (size_t i = 0; i < NPIX; i++)
				{
					int			b = pick[k] - 1;
					double		sv = stored_value((R4PixType) pt, vals[b][i]);
					float		ev = (float) sv;
					int			em = ref_is_nodata((R4PixType) pt, b != 0, b == 2, sv, nd);
					float		want = (em || !isfinite(ev)) ? 0.0f :
						(float) (((double) ev * scale - mean[k]) * (1.0 / std[k]));
					float		got = out[(size_t) k * NPIX + i];

					if (memcmp(&got, &want, sizeof(float)) != 0)
						bad++;
					/* the same bits as the two-step path */
					if (got != r4_normalise_value(planes[(size_t) k * NPIX + i], mask[(size_t) k * NPIX + i],
												  scale, mean[k], 1.0 / std[k]))
						bad++;
				}
			CHECK_MSG(bad == 0, "%s %s: %d values differ", r4_pixtype_name(pt), enc_names[e], bad);
			/* errors as r4_raster_decode, before anything is written */
			{
				const int	badband[2] = {1, 4};

				out[0] = 42.0f;
				CHECK_EQ_INT(r4_raster_decode_normalised(&r, badband, 2, scale, mean, std, out, &err),
							 R4_ERR_RANGE);
				CHECK(out[0] == 42.0f);
			}
			r4_raster_free(&r);
			free(buf);
		}
}

/*
 * r4_preprocess_raster gives the bits of r4_raster_decode + r4_preprocess,
 * native and resize.
 */
static void
test_preprocess_raster(void)
{
	enum
	{
		PW = 53, PH = 47, PN = PW * PH
	};
	static double vals[2][PN];
	static float planes[2 * PN];
	static uint8_t mask[2 * PN];
	static float want[2 * 64 * 64];
	static float got[2 * 64 * 64];
	TRaster		t = raster_template(PW, PH);
	R4ModelConfig cfg;
	R4Raster	r;
	R4Error		err;
	size_t		len;
	uint8_t    *buf;
	double		nd;

	t.nb = 2;
	for (int b = 0; b < 2; b++)
	{
		values_for(R4_PT_16BUI, PN, vals[b], &nd);
		for (size_t i = 0; i < PN; i++)
			vals[b][i] = (double) ((i * 37 + (size_t) b * 11) % 4000);	/* 0 is nodata */
		t.b[b] = band_of(R4_PT_16BUI, true, 0, vals[b]);
	}
	len = build(&t, ENC_SER, bigbuf);
	buf = exact_copy(bigbuf, len);
	CHECK_EQ_INT(parse(ENC_SER, buf, len, &r, &err), R4_OK);

	memset(&cfg, 0, sizeof(cfg));
	cfg.in_chans = 2;
	cfg.bands[0] = 2;
	cfg.bands[1] = 1;
	cfg.scale = 1e-4;
	cfg.mean[0] = 0.1;
	cfg.mean[1] = 0.2;
	cfg.std[0] = 0.05;
	cfg.std[1] = 0.07;
	cfg.img_size = 64;
	for (int mode = 0; mode < 2; mode++)
	{
		int			oh,
					ow;
		size_t		n;

		cfg.input = mode == 0 ? R4_INPUT_NATIVE : R4_INPUT_RESIZE;
		r4_preprocess_output_size(&cfg, PH, PW, &oh, &ow);
		n = (size_t) 2 * oh * ow;
		CHECK_EQ_INT(r4_raster_decode(&r, cfg.bands, 2, planes, mask, &err), R4_OK);
		CHECK_EQ_INT(r4_preprocess(&cfg, planes, mask, PH, PW, want, NULL, NULL, &err), R4_OK);
		memset(got, 0xAA, sizeof(got));
		CHECK_EQ_INT(r4_preprocess_raster(&cfg, &r, got, &err), R4_OK);
		CHECK_MSG(memcmp(got, want, n * sizeof(float)) == 0, "%s: the two paths differ",
				  mode == 0 ? "native" : "resize");
		/* band 1's pixel 0 is nodata: exactly 0 (the channel mean), band 2's is not */
		if (mode == 0)
			CHECK(got[(size_t) oh * ow] == 0.0f && got[0] != 0.0f);
	}
	r4_raster_free(&r);
	free(buf);
}

/* Pixel type names and sizes. */
static void
test_names(void)
{
	static const char *const names[] = {"1BB", "2BUI", "4BUI", "8BSI", "8BUI", "16BSI", "16BUI",
	"32BSI", "32BUI", "16BF", "32BF", "64BF"};
	int			i;

	for (i = 0; i < 12; i++)
		CHECK(strcmp(r4_pixtype_name((R4PixType) i), names[i]) == 0);
	CHECK(strcmp(r4_pixtype_name((R4PixType) 12), "unknown") == 0);
	CHECK_EQ_INT(r4_pixtype_size(R4_PT_64BF), 8);
	CHECK_EQ_INT(r4_pixtype_size(R4_PT_16BF), 2);
	CHECK_EQ_INT(r4_pixtype_size((R4PixType) 13), 0);
}

/* Run every raster decoder test. */
int
main(void)
{
	RUN(test_layout_bytes);
	RUN(test_rfc_size);
	RUN(test_all_types);
	RUN(test_conversions);
	RUN(test_half);
	RUN(test_multiband_selection);
	RUN(test_outdb);
	RUN(test_nodata_rule);
	RUN(test_small_int_nodata);
	RUN(test_flags);
	RUN(test_unaligned_and_trailing);
	RUN(test_empty);
	RUN(test_parse_errors);
	RUN(test_decode_errors);
	RUN(test_truncation);
	RUN(test_float_rule_exhaustive);
	RUN(test_int_rule_exhaustive);
	RUN(test_decode_normalised);
	RUN(test_preprocess_raster);
	RUN(test_names);
	return unit_summary("raster_decode");
}
