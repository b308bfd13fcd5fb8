/*
 * fuzz_raster_wkb.c — libFuzzer target for r4_raster_parse_wkb and
 * r4_raster_decode, with a differential check: every WKB raster that parses
 * is re-encoded in the serialized form (host order, padded), which must
 * parse too and decode to bit-identical planes and masks.  That pits the
 * byte-swapping WKB path against the native serialized one.
 */
#include "rai4eo/raster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_VALUES (1u << 22)

/* Abort with a message when an API promise is broken. */
static void
require(int cond, const char *what)
{
	if (!cond)
	{
		fprintf(stderr, "fuzz_raster_wkb: broken promise: %s\n", what);
		abort();
	}
}

/* Copy n bytes, reversed when swap. */
static void
copy_order(uint8_t *dst, const uint8_t *src, size_t n, int swap)
{
	size_t		i;

	for (i = 0; i < n; i++)
		dst[i] = swap ? src[n - 1 - i] : src[i];
}

/* Where a parsed band's nodata bytes sit in the WKB (just before data or the band number). */
static const uint8_t *
nodata_bytes(const R4RasterBand *b)
{
	size_t		ps = r4_pixtype_size(b->pixtype);

	if (b->offdb)
		return (const uint8_t *) b->outdb_path - 1 - ps;
	return b->data - ps;
}

/* Re-encode a parsed WKB raster in the serialized form; returns malloc'd bytes. */
static uint8_t *
to_serialized(const R4Raster *r, size_t *len_out)
{
	size_t		len = 64;
	size_t		pos;
	uint8_t    *out;
	uint32_t	word;
	int			k;
	size_t		i;

	for (k = 0; k < r->nbands; k++)
	{
		const R4RasterBand *b = &r->bands[k];
		size_t		ps = r4_pixtype_size(b->pixtype);
		size_t		body = b->offdb ? 2 + strlen(b->outdb_path) : b->data_size;

		len += (2 * ps + body + 7) / 8 * 8;
	}
	out = calloc(1, len);
	require(out != NULL, "calloc");
	word = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? (uint32_t) len << 2 : (uint32_t) len;
	memcpy(out, &word, 4);
	memcpy(out + 6, &r->nbands, 2);
	memcpy(out + 8, &r->scale_x, 8);
	memcpy(out + 16, &r->scale_y, 8);
	memcpy(out + 24, &r->ip_x, 8);
	memcpy(out + 32, &r->ip_y, 8);
	memcpy(out + 40, &r->skew_x, 8);
	memcpy(out + 48, &r->skew_y, 8);
	memcpy(out + 56, &r->srid, 4);
	memcpy(out + 60, &r->width, 2);
	memcpy(out + 62, &r->height, 2);
	pos = 64;
	for (k = 0; k < r->nbands; k++)
	{
		const R4RasterBand *b = &r->bands[k];
		size_t		ps = r4_pixtype_size(b->pixtype);

		out[pos] = b->flags;
		copy_order(out + pos + ps, nodata_bytes(b), ps, r->swap);
		pos += 2 * ps;
		if (b->offdb)
		{
			size_t		l = strlen(b->outdb_path) + 1;

			out[pos] = b->outdb_band;
			memcpy(out + pos + 1, b->outdb_path, l);
			pos += 1 + l;
		}
		else
		{
			for (i = 0; i < b->data_size; i += ps)
				copy_order(out + pos + i, b->data + i, ps, r->swap);
			pos += b->data_size;
		}
		pos = (pos + 7) / 8 * 8;
	}
	require(pos == len, "re-encoded size");
	*len_out = len;
	return out;
}

/* Decode r and s (the same raster in two encodings) and compare. */
static void
compare_decodes(const R4Raster *r, const R4Raster *s)
{
	R4Error		err;
	size_t		count;
	float	   *p1,
			   *p2;
	uint8_t    *m1,
			   *m2;
	R4Status	st1,
				st2;

	if (r4_raster_decode_count(r, r->nbands, &count, &err) != R4_OK || count > FUZZ_MAX_VALUES)
		return;
	p1 = malloc(count * sizeof(float));
	p2 = malloc(count * sizeof(float));
	m1 = malloc(count);
	m2 = malloc(count);
	require(p1 && p2 && m1 && m2, "malloc");
	st1 = r4_raster_decode(r, NULL, 0, p1, m1, &err);
	st2 = r4_raster_decode(s, NULL, 0, p2, m2, &err);
	require(st1 == st2, "decode status differs between WKB and serialized");
	require(st1 == (r4_raster_has_outdb(r, NULL, 0) ? R4_ERR_UNSUPPORTED : R4_OK), "decode status");
	if (st1 == R4_OK)
	{
		size_t		i;

		require(memcmp(p1, p2, count * sizeof(float)) == 0, "planes differ between encodings");
		require(memcmp(m1, m2, count) == 0, "masks differ between encodings");
		for (i = 0; i < count; i++)
			require(m1[i] <= 1, "mask not 0/1");
	}
	free(p1);
	free(p2);
	free(m1);
	free(m2);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fuzz entry point: parse WKB, re-encode as serialized, compare decodes. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	R4Raster	r;
	R4Raster	s;
	R4Error		err;
	uint8_t    *ser;
	size_t		ser_len;
	int			k;

	if (r4_raster_parse_wkb(data, size, &r, &err) != R4_OK)
	{
		require(r.bands == NULL && err.message[0] != '\0', "failed parse state");
		return 0;
	}
	ser = to_serialized(&r, &ser_len);
	require(r4_raster_parse_serialized(ser, ser_len, &s, &err) == R4_OK,
			"re-encoded raster does not parse");
	require(s.width == r.width && s.height == r.height && s.nbands == r.nbands &&
			s.srid == r.srid && !s.swap, "header differs");
	for (k = 0; k < r.nbands; k++)
	{
		const R4RasterBand *a = &r.bands[k];
		const R4RasterBand *b = &s.bands[k];

		require(a->pixtype == b->pixtype && a->offdb == b->offdb && a->hasnodata == b->hasnodata &&
				a->isnodata == b->isnodata && a->data_size == b->data_size &&
				a->outdb_band == b->outdb_band, "band header differs");
		require(memcmp(&a->nodata, &b->nodata, sizeof(double)) == 0 ||
				(a->nodata != a->nodata && b->nodata != b->nodata), "nodata differs");
	}
	compare_decodes(&r, &s);
	r4_raster_free(&s);
	r4_raster_free(&r);
	free(ser);
	return 0;
}
