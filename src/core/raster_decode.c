/*
 * raster_decode.c — parse PostGIS rasters (serialized datum or WKB) and
 * decode their in-db bands into float planes with a nodata mask.
 *
 * Everything read from the buffer is treated as hostile: every offset and
 * size is overflow-checked against the real length before it is used.
 * Decoding switches on the pixel type once per band and then runs a tight
 * loop; loads go through memcpy because band data is only aligned when the
 * caller's datum is, and the compiler turns those into plain loads.
 */
#include "rai4eo/raster.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Process pixels in fixed-size blocks so the compiler can vectorize at -O2. */
#define R4_DECODE_BLOCK 16

static const char *const pixtype_names[R4_PT_COUNT] = {
	"1BB", "2BUI", "4BUI", "8BSI", "8BUI", "16BSI", "16BUI", "32BSI", "32BUI",
	"16BF", "32BF", "64BF"
};

static const uint8_t pixtype_sizes[R4_PT_COUNT] = {
	1, 1, 1, 1, 1, 2, 2, 4, 4, 2, 4, 8
};

/* Name a pixel type as PostGIS does. */
const char *
r4_pixtype_name(R4PixType t)
{
	if ((unsigned) t >= R4_PT_COUNT)
		return "unknown";
	return pixtype_names[t];
}

/* Give the storage size of one pixel, 0 for an invalid type. */
size_t
r4_pixtype_size(R4PixType t)
{
	if ((unsigned) t >= R4_PT_COUNT)
		return 0;
	return pixtype_sizes[t];
}

/* Tell whether this host stores integers little-endian. */
static inline bool
host_is_little_endian(void)
{
	return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
}

/* Widen an IEEE binary16 value to float exactly (no function calls). */
static inline float
half_to_float(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exp = (h >> 10) & 0x1F;
	uint32_t	mant = h & 0x3FF;
	uint32_t	bits;
	float		f;

	if (exp == 0)
	{
		/* zero or subnormal: mant * 2^-24, exact in float */
		f = (float) mant * 5.9604644775390625e-8f;
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7F800000u | (mant << 13);	/* inf or NaN, payload kept */
	else
		bits = sign | ((exp + 112) << 23) | (mant << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

/* Load an unaligned 16-bit value, byte-swapping when asked. */
static inline uint16_t
load_u16(const uint8_t *p, bool swap)
{
	uint16_t	v;

	memcpy(&v, p, sizeof(v));
	return swap ? __builtin_bswap16(v) : v;
}

/* Load an unaligned 32-bit value, byte-swapping when asked. */
static inline uint32_t
load_u32(const uint8_t *p, bool swap)
{
	uint32_t	v;

	memcpy(&v, p, sizeof(v));
	return swap ? __builtin_bswap32(v) : v;
}

/* Load an unaligned 64-bit value, byte-swapping when asked. */
static inline uint64_t
load_u64(const uint8_t *p, bool swap)
{
	uint64_t	v;

	memcpy(&v, p, sizeof(v));
	return swap ? __builtin_bswap64(v) : v;
}

/* Load an unaligned double, byte-swapping when asked. */
static inline double
load_f64(const uint8_t *p, bool swap)
{
	uint64_t	bits = load_u64(p, swap);
	double		d;

	memcpy(&d, &bits, sizeof(d));
	return d;
}

/* Reinterpret 32 bits as a float. */
static inline float
bits_to_float(uint32_t bits)
{
	float		f;

	memcpy(&f, &bits, sizeof(f));
	return f;
}

/*
 * The nodata value as PostGIS's deserializer reads it: the 1/2/4-bit types
 * are masked, 8BSI is signed.
 */
static double
read_nodata(R4PixType t, const uint8_t *p, bool swap)
{
	switch (t)
	{
		case R4_PT_1BB:
			return p[0] & 0x01;
		case R4_PT_2BUI:
			return p[0] & 0x03;
		case R4_PT_4BUI:
			return p[0] & 0x0F;
		case R4_PT_8BSI:
			return (int8_t) p[0];
		case R4_PT_8BUI:
			return p[0];
		case R4_PT_16BSI:
			return (int16_t) load_u16(p, swap);
		case R4_PT_16BUI:
			return load_u16(p, swap);
		case R4_PT_32BSI:
			return (int32_t) load_u32(p, swap);
		case R4_PT_32BUI:
			return load_u32(p, swap);
		case R4_PT_16BF:
			return half_to_float(load_u16(p, swap));
		case R4_PT_32BF:
			return bits_to_float(load_u32(p, swap));
		case R4_PT_64BF:
			return load_f64(p, swap);
	}
	return 0.0;
}

/* PostGIS's FLT_EQ: equal, both NaN, or within an absolute FLT_EPSILON. */
static inline bool
flt_eq(double a, double b)
{
	return a == b || (isnan(a) && isnan(b)) || fabs(a - b) <= FLT_EPSILON;
}

/* The same test on floats, as PostGIS applies it to clamped 32BF values. */
static inline bool
flt_eq_f(float a, float b)
{
	float		d = a - b;

	return a == b || (isnan(a) && isnan(b)) || fabs(d) <= FLT_EPSILON;
}

/* rt_util_clamp_to_32F: NaN passes through, everything else into +-FLT_MAX. */
static inline float
clamp_to_32f(double v)
{
	if (isnan(v))
		return (float) v;
	return (float) fmin(fmax(v, -FLT_MAX), FLT_MAX);
}

/* Clamp to an integer range and truncate, as rt_util_clamp_to_* do. */
static inline double
clamp_int(double v, double lo, double hi)
{
	return trunc(fmin(fmax(v, lo), hi));
}

/*
 * Apply rt_band_clamped_value_is_nodata (PostGIS 3.3): nodata if FLT_EQ of
 * the raw values, or if the values are equal once clamped to the pixel type.
 * fmin/fmax drop a NaN operand, so a NaN clamps to the type's minimum, as in
 * PostGIS; the clamped values fit the type, so trunc() then equals the C
 * conversion PostGIS does.
 */
bool
r4_pixel_is_nodata(R4PixType t, double value, double nodata)
{
	if (flt_eq(value, nodata))
		return true;
	switch (t)
	{
		case R4_PT_1BB:
			return clamp_int(value, 0, 1) == clamp_int(nodata, 0, 1);
		case R4_PT_2BUI:
			return clamp_int(value, 0, 3) == clamp_int(nodata, 0, 3);
		case R4_PT_4BUI:
			return clamp_int(value, 0, 15) == clamp_int(nodata, 0, 15);
		case R4_PT_8BSI:
			return clamp_int(value, INT8_MIN, INT8_MAX) ==
				clamp_int(nodata, INT8_MIN, INT8_MAX);
		case R4_PT_8BUI:
			return clamp_int(value, 0, UINT8_MAX) == clamp_int(nodata, 0, UINT8_MAX);
		case R4_PT_16BSI:
			return clamp_int(value, INT16_MIN, INT16_MAX) ==
				clamp_int(nodata, INT16_MIN, INT16_MAX);
		case R4_PT_16BUI:
			return clamp_int(value, 0, UINT16_MAX) == clamp_int(nodata, 0, UINT16_MAX);
		case R4_PT_32BSI:
			return clamp_int(value, INT32_MIN, INT32_MAX) ==
				clamp_int(nodata, INT32_MIN, INT32_MAX);
		case R4_PT_32BUI:
			return clamp_int(value, 0, UINT32_MAX) == clamp_int(nodata, 0, UINT32_MAX);
		case R4_PT_16BF:
			/* not in 3.3; PostGIS 3.7 compares half values like 32BF */
		case R4_PT_32BF:
			return flt_eq_f(clamp_to_32f(value), clamp_to_32f(nodata));
		case R4_PT_64BF:
			return false;		/* the clamped test is FLT_EQ again */
	}
	return false;
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Walk one band starting at *pos.  In the serialized form (aligned) the flag
 * byte is followed by padding up to the pixel size, and the band is padded
 * to 8 bytes from the datum start; WKB has no padding at all.
 */
static R4Status
parse_band(const uint8_t *buf, size_t len, size_t *pos, bool aligned, bool swap,
		   const R4Raster *r, int bandno, R4RasterBand *band, R4Error *err)
{
	size_t		p = *pos;
	size_t		ps;
	size_t		nodata_at;
	size_t		need;
	uint8_t		flags;
	unsigned	code;

	if (p >= len)
		return r4_fail(err, R4_ERR_INVALID,
					   "truncated raster: band %d starts at offset %zu but the raster has %zu bytes",
					   bandno, p, len);
	flags = buf[p];
	code = flags & R4_BAND_PIXTYPE_MASK;
	if (code >= R4_PT_COUNT)
		return r4_fail(err, R4_ERR_UNSUPPORTED,
					   "band %d has unknown pixel type code %u", bandno, code);
	band->pixtype = (R4PixType) code;
	band->flags = flags;
	band->offdb = (flags & R4_BAND_FLAG_OFFDB) != 0;
	band->hasnodata = (flags & R4_BAND_FLAG_HASNODATA) != 0;
	band->isnodata = band->hasnodata && (flags & R4_BAND_FLAG_ISNODATA) != 0;
	ps = pixtype_sizes[code];

	/* flag byte (plus alignment padding), then the nodata value */
	nodata_at = p + (aligned ? ps : 1);
	if (nodata_at > len || len - nodata_at < ps)
		return r4_fail(err, R4_ERR_INVALID,
					   "truncated raster: band %d (%s) nodata value needs %zu bytes at offset %zu but the raster has %zu bytes",
					   bandno, pixtype_names[code], ps, nodata_at, len);
	band->nodata = read_nodata(band->pixtype, buf + nodata_at, swap);
	p = nodata_at + ps;

	if (band->offdb)
	{
		const uint8_t *nul;

		if (p >= len)
			return r4_fail(err, R4_ERR_INVALID,
						   "truncated raster: out-db band %d has no file band number at offset %zu",
						   bandno, p);
		band->outdb_band = buf[p];
		p++;
		nul = p < len ? memchr(buf + p, '\0', len - p) : NULL;
		if (nul == NULL)
			return r4_fail(err, R4_ERR_INVALID,
						   "truncated raster: out-db band %d path at offset %zu is not NUL-terminated within the raster",
						   bandno, p);
		band->outdb_path = (const char *) (buf + p);
		band->data = NULL;
		band->data_size = 0;
		p = (size_t) (nul - buf) + 1;
	}
	else
	{
		if (r4_mul_size((size_t) r->width * r->height, ps, &need) != 0)
			return r4_fail(err, R4_ERR_LIMIT, "band %d pixel data size overflows", bandno);
		if (p > len || len - p < need)
			return r4_fail(err, R4_ERR_INVALID,
						   "truncated raster: band %d (%s, %ux%u) needs %zu bytes of pixel data at offset %zu but only %zu remain",
						   bandno, pixtype_names[code], r->width, r->height, need, p,
						   p > len ? (size_t) 0 : len - p);
		band->data = buf + p;
		band->data_size = need;
		band->outdb_band = 0;
		band->outdb_path = NULL;
		p += need;
	}

	if (aligned && p % 8 != 0)
	{
		size_t		padded = p + (8 - p % 8);

		if (padded > len)
			return r4_fail(err, R4_ERR_INVALID,
						   "truncated raster: band %d ends at offset %zu without its padding to %zu (raster has %zu bytes)",
						   bandno, p, padded, len);
		p = padded;
	}
	*pos = p;
	return R4_OK;
}

/* Walk all bands after the header, allocating the band array. */
static R4Status
parse_bands(const uint8_t *buf, size_t len, size_t pos, bool aligned, bool swap,
			R4Raster *out, R4Error *err)
{
	size_t		bytes;
	int			i;

	out->bands = NULL;
	if (out->nbands == 0)
		return R4_OK;

	/* every band needs at least two bytes, so a lying count fails here cheaply */
	if (len - pos < (size_t) out->nbands * 2)
		return r4_fail(err, R4_ERR_INVALID,
					   "truncated raster: header says %u bands but only %zu bytes follow it",
					   out->nbands, len - pos);

	bytes = sizeof(R4RasterBand) * out->nbands;
	out->bands = r4_alloc_zero(bytes);
	if (out->bands == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory for %u raster bands", out->nbands);

	for (i = 0; i < out->nbands; i++)
	{
		R4Status	st = parse_band(buf, len, &pos, aligned, swap, out, i + 1,
									&out->bands[i], err);

		if (st != R4_OK)
			return st;
	}
	return R4_OK;
}

/* Read the six georeference doubles, starting at off. */
static void
read_geotransform(const uint8_t *buf, size_t off, bool swap, R4Raster *out)
{
	out->scale_x = load_f64(buf + off, swap);
	out->scale_y = load_f64(buf + off + 8, swap);
	out->ip_x = load_f64(buf + off + 16, swap);
	out->ip_y = load_f64(buf + off + 24, swap);
	out->skew_x = load_f64(buf + off + 32, swap);
	out->skew_y = load_f64(buf + off + 40, swap);
}

/* Parse a detoasted serialized raster datum (host byte order). */
R4Status
r4_raster_parse_serialized(const uint8_t *buf, size_t len, R4Raster *out, R4Error *err)
{
	uint32_t	word;
	size_t		size;
	uint16_t	version;
	R4Status	st;

	memset(out, 0, sizeof(*out));
	if (buf == NULL || len < 4)
		return r4_fail(err, R4_ERR_INVALID,
					   "truncated raster: %zu bytes is too short for a varlena header", len);

	memcpy(&word, buf, sizeof(word));
	if (host_is_little_endian())
	{
		if ((buf[0] & 0x01) != 0)
			return r4_fail(err, R4_ERR_INVALID,
						   "raster datum has a 1-byte varlena header or is a TOAST pointer: detoast it first");
		if ((buf[0] & 0x03) == 0x02)
			return r4_fail(err, R4_ERR_INVALID,
						   "raster datum is compressed: detoast it first");
		size = (word >> 2) & 0x3FFFFFFFu;
	}
	else
	{
		if ((buf[0] & 0x80) != 0)
			return r4_fail(err, R4_ERR_INVALID,
						   "raster datum has a 1-byte varlena header or is a TOAST pointer: detoast it first");
		if ((buf[0] & 0xC0) == 0x40)
			return r4_fail(err, R4_ERR_INVALID,
						   "raster datum is compressed: detoast it first");
		size = word & 0x3FFFFFFFu;
	}
	if (size > len)
		return r4_fail(err, R4_ERR_INVALID,
					   "truncated raster: varlena size %zu exceeds the %zu bytes available", size, len);
	if (size < R4_RASTER_HEADER_SIZE)
		return r4_fail(err, R4_ERR_INVALID,
					   "truncated raster: %zu bytes is shorter than the %d-byte header",
					   size, R4_RASTER_HEADER_SIZE);
	len = size;

	memcpy(&version, buf + 4, sizeof(version));
	if (version != 0)
		return r4_fail(err, R4_ERR_INVALID, "unsupported raster version %u (expected 0)", version);
	memcpy(&out->nbands, buf + 6, sizeof(out->nbands));
	read_geotransform(buf, 8, false, out);
	memcpy(&out->srid, buf + 56, sizeof(out->srid));
	memcpy(&out->width, buf + 60, sizeof(out->width));
	memcpy(&out->height, buf + 62, sizeof(out->height));
	out->swap = false;

	st = parse_bands(buf, len, R4_RASTER_HEADER_SIZE, true, false, out, err);
	if (st != R4_OK)
		r4_raster_free(out);
	return st;
}

/* Parse a WKB raster in either byte order. */
R4Status
r4_raster_parse_wkb(const uint8_t *buf, size_t len, R4Raster *out, R4Error *err)
{
	bool		little;
	bool		swap;
	uint16_t	version;
	R4Status	st;

	memset(out, 0, sizeof(*out));
	if (buf == NULL || len < R4_RASTER_WKB_HEADER_SIZE)
		return r4_fail(err, R4_ERR_INVALID,
					   "truncated WKB raster: %zu bytes is shorter than the %d-byte header",
					   len, R4_RASTER_WKB_HEADER_SIZE);
	if (buf[0] > 1)
		return r4_fail(err, R4_ERR_INVALID,
					   "invalid WKB raster byte order flag %u (expected 0 or 1)", buf[0]);
	little = buf[0] == 1;
	swap = little != host_is_little_endian();

	version = load_u16(buf + 1, swap);
	if (version != 0)
		return r4_fail(err, R4_ERR_INVALID, "unsupported WKB raster version %u (expected 0)", version);
	out->nbands = load_u16(buf + 3, swap);
	read_geotransform(buf, 5, swap, out);
	out->srid = (int32_t) load_u32(buf + 53, swap);
	out->width = load_u16(buf + 57, swap);
	out->height = load_u16(buf + 59, swap);
	out->swap = swap;

	st = parse_bands(buf, len, R4_RASTER_WKB_HEADER_SIZE, false, swap, out, err);
	if (st != R4_OK)
		r4_raster_free(out);
	return st;
}

/* Free the band array; the raster's buffer belongs to the caller. */
void
r4_raster_free(R4Raster *r)
{
	if (r == NULL)
		return;
	r4_free(r->bands);
	r->bands = NULL;
	r->nbands = 0;
}

/* Report whether any requested band is out-db. */
bool
r4_raster_has_outdb(const R4Raster *r, const int *bands, int nbands)
{
	int			i;

	if (r == NULL || r->bands == NULL)
		return false;
	if (bands == NULL)
	{
		for (i = 0; i < r->nbands; i++)
			if (r->bands[i].offdb)
				return true;
		return false;
	}
	for (i = 0; i < nbands; i++)
	{
		int			b = bands[i];

		if (b >= 1 && b <= r->nbands && r->bands[b - 1].offdb)
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Each loop below is instantiated with compile-time constant flags
 * (always_inline + constant arguments), so the swap and mask branches
 * disappear from the generated pixel loops.  The block/tail split gives
 * the vectorizer a fixed trip count.
 */
#define R4_INLINE static inline __attribute__((always_inline))

#define BLOCKED_LOOP(n, BODY) \
	do { \
		size_t		i_ = 0; \
		for (; i_ + R4_DECODE_BLOCK <= (n); i_ += R4_DECODE_BLOCK) \
		{ \
			size_t		j_; \
			for (j_ = 0; j_ < R4_DECODE_BLOCK; j_++) \
			{ \
				size_t		i = i_ + j_; \
				BODY; \
			} \
		} \
		for (; i_ < (n); i_++) \
		{ \
			size_t		i = i_; \
			BODY; \
		} \
	} while (0)

/* 8-bit types: value is the byte (signed for 8BSI); mask from a 256-entry table. */
R4_INLINE void
decode_8(const uint8_t *restrict src, size_t n, bool sgn, const uint8_t *restrict lut,
		 float *restrict dst, uint8_t *restrict m, bool want_mask)
{
	BLOCKED_LOOP(n, {
		uint8_t		v = src[i];

		dst[i] = sgn ? (float) (int8_t) v : (float) v;
		if (want_mask)
			m[i] = lut[v];
	});
}

/*
 * 16-bit integers.  Values and nodata are in-range integers, so PostGIS's
 * rule reduces to equality, compared on the raw (unswapped) bits.
 */
R4_INLINE void
decode_i16(const uint8_t *restrict src, size_t n, bool sgn, bool swap, uint16_t nd_raw,
		   float *restrict dst, uint8_t *restrict m, bool want_mask)
{
	BLOCKED_LOOP(n, {
		uint16_t	raw;
		uint16_t	v;

		memcpy(&raw, src + 2 * i, 2);
		v = swap ? __builtin_bswap16(raw) : raw;
		dst[i] = sgn ? (float) (int16_t) v : (float) v;
		if (want_mask)
			m[i] = raw == nd_raw;
	});
}

/* 32-bit integers: as for 16 bits; the float conversion rounds to nearest. */
R4_INLINE void
decode_i32(const uint8_t *restrict src, size_t n, bool sgn, bool swap, uint32_t nd_raw,
		   float *restrict dst, uint8_t *restrict m, bool want_mask)
{
	BLOCKED_LOOP(n, {
		uint32_t	raw;
		uint32_t	v;

		memcpy(&raw, src + 4 * i, 4);
		v = swap ? __builtin_bswap32(raw) : raw;
		dst[i] = sgn ? (float) (int32_t) v : (float) v;
		if (want_mask)
			m[i] = raw == nd_raw;
	});
}

/*
 * Nodata test for a float pixel against a non-NaN nodata, given the nodata
 * already clamped to +-FLT_MAX.  For float inputs the float FLT_EQ of the
 * clamped values implies the double FLT_EQ of the raw ones (float rounding
 * of the difference is the looser test), so this one comparison is the
 * whole PostGIS rule; NaN pixels stay NaN and never match.
 */
R4_INLINE uint8_t
float_is_nodata(float f, float nd_clamped)
{
	float		c = f > FLT_MAX ? FLT_MAX : (f < -FLT_MAX ? -FLT_MAX : f);
	float		d = c - nd_clamped;

	return fabsf(d) <= FLT_EPSILON;
}

/* 32BF; a NaN nodata matches exactly the NaN pixels. */
R4_INLINE void
decode_f32(const uint8_t *restrict src, size_t n, bool swap, bool nd_nan, float nd_clamped,
		   float *restrict dst, uint8_t *restrict m, bool want_mask)
{
	BLOCKED_LOOP(n, {
		uint32_t	raw;
		float		f;

		memcpy(&raw, src + 4 * i, 4);
		if (swap)
			raw = __builtin_bswap32(raw);
		memcpy(&f, &raw, 4);
		dst[i] = f;
		if (want_mask)
			m[i] = nd_nan ? (uint8_t) (f != f) : float_is_nodata(f, nd_clamped);
	});
}

/* 16BF: widen to float, then the 32BF rule. */
R4_INLINE void
decode_f16(const uint8_t *restrict src, size_t n, bool swap, bool nd_nan, float nd_clamped,
		   float *restrict dst, uint8_t *restrict m, bool want_mask)
{
	BLOCKED_LOOP(n, {
		uint16_t	raw;
		float		f;

		memcpy(&raw, src + 2 * i, 2);
		if (swap)
			raw = __builtin_bswap16(raw);
		f = half_to_float(raw);
		dst[i] = f;
		if (want_mask)
			m[i] = nd_nan ? (uint8_t) (f != f) : float_is_nodata(f, nd_clamped);
	});
}

/* 64BF: FLT_EQ in double (absolute FLT_EPSILON), value cast to float. */
R4_INLINE void
decode_f64(const uint8_t *restrict src, size_t n, bool swap, bool nd_nan, double nd,
		   float *restrict dst, uint8_t *restrict m, bool want_mask)
{
	BLOCKED_LOOP(n, {
		uint64_t	raw;
		double		v;

		memcpy(&raw, src + 8 * i, 8);
		if (swap)
			raw = __builtin_bswap64(raw);
		memcpy(&v, &raw, 8);
		dst[i] = (float) v;
		if (want_mask)
			m[i] = nd_nan ? (uint8_t) (v != v) : (uint8_t) ((v == nd) | (fabs(v - nd) <= FLT_EPSILON));
	});
}

/* Instantiate a loop for the four (swap, want_mask) combinations. */
#define DISPATCH_SWAP_MASK(fn, swap, want, ...) \
	do { \
		if (swap) \
		{ \
			if (want) fn(__VA_ARGS__, true, dst, m, true); \
			else fn(__VA_ARGS__, true, dst, m, false); \
		} \
		else \
		{ \
			if (want) fn(__VA_ARGS__, false, dst, m, true); \
			else fn(__VA_ARGS__, false, dst, m, false); \
		} \
	} while (0)

/*
 * The loops above take (src, n, [sgn,] swap, nodata..., dst, m, want); the
 * wrappers reorder arguments so DISPATCH can append swap last.
 */
#define I16(src, n, sgn, nd, swap, dst, m, want) decode_i16(src, n, sgn, swap, nd, dst, m, want)
#define I32(src, n, sgn, nd, swap, dst, m, want) decode_i32(src, n, sgn, swap, nd, dst, m, want)
#define F16(src, n, nan, nd, swap, dst, m, want) decode_f16(src, n, swap, nan, nd, dst, m, want)
#define F32(src, n, nan, nd, swap, dst, m, want) decode_f32(src, n, swap, nan, nd, dst, m, want)
#define F64(src, n, nan, nd, swap, dst, m, want) decode_f64(src, n, swap, nan, nd, dst, m, want)

/*
 * Decode one in-db band into dst (n values) and, when want_mask, its nodata
 * mask into m.  The caller handles bands whose mask is constant.
 */
static void
decode_band(const R4RasterBand *b, bool swap, size_t n, float *restrict dst,
			uint8_t *restrict m, bool want_mask)
{
	const uint8_t *src = b->data;
	double		nd = b->nodata;
	bool		nd_nan = isnan(nd);
	float		nd_clamped = clamp_to_32f(nd);

	switch (b->pixtype)
	{
		case R4_PT_1BB:
		case R4_PT_2BUI:
		case R4_PT_4BUI:
		case R4_PT_8BSI:
		case R4_PT_8BUI:
			{
				bool		sgn = b->pixtype == R4_PT_8BSI;
				uint8_t		lut[256];
				int			v;

				/* the clamped rule makes e.g. 1BB byte 7 match nodata 1: tabulate it */
				if (want_mask)
					for (v = 0; v < 256; v++)
						lut[v] = r4_pixel_is_nodata(b->pixtype,
													sgn ? (double) (int8_t) v : (double) v, nd);
				if (sgn)
				{
					if (want_mask)
						decode_8(src, n, true, lut, dst, m, true);
					else
						decode_8(src, n, true, lut, dst, m, false);
				}
				else
				{
					if (want_mask)
						decode_8(src, n, false, lut, dst, m, true);
					else
						decode_8(src, n, false, lut, dst, m, false);
				}
				break;
			}
		case R4_PT_16BSI:
		case R4_PT_16BUI:
			{
				uint16_t	nd_raw = b->pixtype == R4_PT_16BSI ?
					(uint16_t) (int16_t) nd : (uint16_t) nd;

				if (swap)
					nd_raw = __builtin_bswap16(nd_raw);
				if (b->pixtype == R4_PT_16BSI)
					DISPATCH_SWAP_MASK(I16, swap, want_mask, src, n, true, nd_raw);
				else
					DISPATCH_SWAP_MASK(I16, swap, want_mask, src, n, false, nd_raw);
				break;
			}
		case R4_PT_32BSI:
		case R4_PT_32BUI:
			{
				uint32_t	nd_raw = b->pixtype == R4_PT_32BSI ?
					(uint32_t) (int32_t) nd : (uint32_t) nd;

				if (swap)
					nd_raw = __builtin_bswap32(nd_raw);
				if (b->pixtype == R4_PT_32BSI)
					DISPATCH_SWAP_MASK(I32, swap, want_mask, src, n, true, nd_raw);
				else
					DISPATCH_SWAP_MASK(I32, swap, want_mask, src, n, false, nd_raw);
				break;
			}
		case R4_PT_16BF:
			if (nd_nan)
				DISPATCH_SWAP_MASK(F16, swap, want_mask, src, n, true, nd_clamped);
			else
				DISPATCH_SWAP_MASK(F16, swap, want_mask, src, n, false, nd_clamped);
			break;
		case R4_PT_32BF:
			if (nd_nan)
				DISPATCH_SWAP_MASK(F32, swap, want_mask, src, n, true, nd_clamped);
			else
				DISPATCH_SWAP_MASK(F32, swap, want_mask, src, n, false, nd_clamped);
			break;
		case R4_PT_64BF:
			if (nd_nan)
				DISPATCH_SWAP_MASK(F64, swap, want_mask, src, n, true, nd);
			else
				DISPATCH_SWAP_MASK(F64, swap, want_mask, src, n, false, nd);
			break;
	}
}

/* Count the values a decode of nbands bands writes, checking for overflow. */
R4Status
r4_raster_decode_count(const R4Raster *r, int nbands, size_t *count, R4Error *err)
{
	size_t		n;
	size_t		bytes;

	if (r == NULL || count == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_raster_decode_count called without a raster");
	if (r->width == 0 || r->height == 0)
		return r4_fail(err, R4_ERR_INVALID, "cannot decode an empty raster (%ux%u)",
					   r->width, r->height);
	if (nbands <= 0)
		return r4_fail(err, R4_ERR_INVALID, "no bands to decode");
	if (r4_mul_size((size_t) r->width * r->height, (size_t) nbands, &n) != 0 ||
		r4_mul_size(n, sizeof(float), &bytes) != 0)
		return r4_fail(err, R4_ERR_LIMIT,
					   "decoding %d bands of %ux%u pixels exceeds the addressable size",
					   nbands, r->width, r->height);
	*count = n;
	return R4_OK;
}

/*
 * Check every requested band before anything is written: number in range,
 * in-db, pixels matching the raster size.  *count gets the band count.
 */
static R4Status
check_bands(const R4Raster *r, const int *bands, int nbands, int *count, R4Error *err)
{
	size_t		total;
	size_t		npix;
	R4Status	st;

	if (bands == NULL)
	{
		if (r->nbands == 0)
			return r4_fail(err, R4_ERR_INVALID, "raster has no bands");
		*count = r->nbands;
	}
	else
		*count = nbands;

	st = r4_raster_decode_count(r, *count, &total, err);
	if (st != R4_OK)
		return st;
	npix = (size_t) r->width * r->height;

	for (int k = 0; k < *count; k++)
	{
		int			b = bands ? bands[k] : k + 1;

		if (b < 1 || b > r->nbands || r->bands == NULL)
			return r4_fail(err, R4_ERR_RANGE, "band number %d is out of range (raster has %u bands)",
						   b, r->nbands);
		if (r->bands[b - 1].offdb)
		{
			r4_fail(err, R4_ERR_UNSUPPORTED,
					"band %d is an out-db band; its pixels must be fetched through PostGIS", b);
			if (err != NULL)
				r4_fail_detail(err, "out-db file band %u, path \"%s\"",
							   r->bands[b - 1].outdb_band + 1u,
							   r->bands[b - 1].outdb_path ? r->bands[b - 1].outdb_path : "");
			return R4_ERR_UNSUPPORTED;
		}
		if (r->bands[b - 1].data == NULL ||
			r->bands[b - 1].data_size != npix * pixtype_sizes[r->bands[b - 1].pixtype])
			return r4_fail(err, R4_ERR_INTERNAL, "band %d does not match the raster size", b);
	}
	return R4_OK;
}

/*
 * Decode n pixels of band bd from pixel first on: values into dst, the
 * nodata mask into m (NULL: not wanted).
 */
static void
decode_range(const R4RasterBand *bd, bool swap, size_t first, size_t n, float *dst, uint8_t *m)
{
	R4RasterBand part = *bd;

	part.data = bd->data + first * pixtype_sizes[bd->pixtype];
	/* is-nodata bands are all nodata; bands without nodata have none */
	if (m != NULL && bd->hasnodata && !bd->isnodata)
		decode_band(&part, swap, n, dst, m, true);
	else
	{
		decode_band(&part, swap, n, dst, NULL, false);
		if (m != NULL)
			memset(m, bd->isnodata ? 1 : 0, n);
	}
}

/* Decode the requested bands into float planes and an optional nodata mask. */
R4Status
r4_raster_decode(const R4Raster *r, const int *bands, int nbands,
				 float *planes, uint8_t *mask, R4Error *err)
{
	size_t		npix;
	int			count;
	R4Status	st;

	if (r == NULL || planes == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_raster_decode called without a raster or planes");
	/* validate everything before writing anything */
	if ((st = check_bands(r, bands, nbands, &count, err)) != R4_OK)
		return st;
	npix = (size_t) r->width * r->height;
	for (int k = 0; k < count; k++)
		decode_range(&r->bands[(bands ? bands[k] : k + 1) - 1], r->swap, 0, npix,
					 planes + (size_t) k * npix, mask ? mask + (size_t) k * npix : NULL);
	return R4_OK;
}

/*
 * Pixels decoded per chunk before normalisation: the chunk's floats and mask
 * bytes stay in L1, so each model input value is written to memory once.
 */
#define NORMALISE_CHUNK 2048

/* Decode and normalise the requested bands straight into out. */
R4Status
r4_raster_decode_normalised(const R4Raster *r, const int *bands, int nbands,
							double scale, const double *mean, const double *std,
							float *out, R4Error *err)
{
	float		vals[NORMALISE_CHUNK];
	uint8_t		mask[NORMALISE_CHUNK];
	size_t		npix;
	int			count;
	R4Status	st;

	if (r == NULL || out == NULL || mean == NULL || std == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_raster_decode_normalised called with a NULL pointer");
	if ((st = check_bands(r, bands, nbands, &count, err)) != R4_OK)
		return st;
	npix = (size_t) r->width * r->height;
	for (int k = 0; k < count; k++)
	{
		const R4RasterBand *bd = &r->bands[(bands ? bands[k] : k + 1) - 1];
		float	   *o = out + (size_t) k * npix;
		double		mu = mean[k];
		double		inv_std = 1.0 / std[k];

		for (size_t first = 0; first < npix; first += NORMALISE_CHUNK)
		{
			size_t		n = npix - first < NORMALISE_CHUNK ? npix - first : NORMALISE_CHUNK;

			decode_range(bd, r->swap, first, n, vals, mask);
			for (size_t i = 0; i < n; i++)
				o[first + i] = r4_normalise_value(vals[i], mask[i], scale, mu, inv_std);
		}
	}
	return R4_OK;
}
