/*
 * seeds_raster.c — write seed rasters for fuzz_raster_serialized and
 * fuzz_raster_wkb into the directory argv[1].
 *
 * Files are named ser_* (serialized datums, host order, 4-byte varlena
 * header), wkb_le_* and wkb_be_* (WKB in each byte order).  They cover every
 * pixel type with and without nodata, is-nodata bands, odd sizes, a mixed
 * multi-band raster, out-db bands, an empty raster and a zero-band one.
 * Both fuzzers read the whole directory; each simply rejects the other's
 * format quickly.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/raster.h"

typedef struct SeedBand
{
	int			pt;
	uint8_t		flags;			/* 0x80 out-db, 0x40 has nodata, 0x20 is nodata */
	const char *path;			/* out-db only */
	uint8_t		outdb_band;
} SeedBand;

typedef struct SeedRaster
{
	uint16_t	w,
				h;
	int			nb;
	SeedBand	b[6];
} SeedRaster;

static uint8_t out_buf[1 << 20];

/* Tell whether the host is little-endian. */
static bool
host_le(void)
{
	uint16_t	one = 1;
	uint8_t		first;

	memcpy(&first, &one, 1);
	return first == 1;
}

/* Write a host-order value, reversed when asked. */
static void
put(uint8_t *dst, const void *src, size_t n, bool reverse)
{
	const uint8_t *s = src;
	size_t		i;

	for (i = 0; i < n; i++)
		dst[i] = reverse ? s[n - 1 - i] : s[i];
}

/*
 * Pixel i of band k as host-order bytes: a varied pattern; pixel 0 equals
 * the nodata value so masks get hits.
 */
static void
pixel_bytes(int pt, int k, size_t i, uint8_t *out)
{
	size_t		ps = r4_pixtype_size((R4PixType) pt);
	uint32_t	x = (uint32_t) (i * 2654435761u + (uint32_t) k * 40503u);
	size_t		j;

	if (i % 5 == 0)
		x = 0x5A5A5A5Au;		/* same as the nodata below */
	switch (pt)
	{
		case R4_PT_32BF:
			{
				float		f = i % 5 == 0 ? -9999.0f : (float) ((int32_t) x) / 65536.0f;

				memcpy(out, &f, 4);
				return;
			}
		case R4_PT_64BF:
			{
				double		d = i % 5 == 0 ? -9999.0 : (double) ((int32_t) x) / 3.0;

				memcpy(out, &d, 8);
				return;
			}
		default:
			for (j = 0; j < ps; j++)
				out[j] = (uint8_t) (x >> (8 * (j % 4)));
	}
}

/* Write the nodata value every seed band uses, host order. */
static void
nodata_bytes(int pt, uint8_t *out)
{
	if (pt == R4_PT_32BF)
	{
		float		f = -9999.0f;

		memcpy(out, &f, 4);
	}
	else if (pt == R4_PT_64BF)
	{
		double		d = -9999.0;

		memcpy(out, &d, 8);
	}
	else
		memset(out, 0x5A, 8);
}

/* Encode serialized (wkb = false) or WKB in the given order; returns the size. */
static size_t
encode(const SeedRaster *t, bool wkb, bool big)
{
	static const double geo[6] = {3.0, -3.0, 500000.0, 5800000.0, 0.0, 0.0};
	bool		rev = wkb && (big == host_le());
	uint16_t	zero = 0;
	uint16_t	nb = (uint16_t) t->nb;
	int32_t		srid = 32632;
	size_t		pos;
	int			k;
	int			g;

	if (wkb)
	{
		out_buf[0] = big ? 0 : 1;
		put(out_buf + 1, &zero, 2, rev);
		put(out_buf + 3, &nb, 2, rev);
		for (g = 0; g < 6; g++)
			put(out_buf + 5 + 8 * g, &geo[g], 8, rev);
		put(out_buf + 53, &srid, 4, rev);
		put(out_buf + 57, &t->w, 2, rev);
		put(out_buf + 59, &t->h, 2, rev);
		pos = 61;
	}
	else
	{
		memset(out_buf, 0, 64);
		memcpy(out_buf + 6, &nb, 2);
		memcpy(out_buf + 8, geo, 48);
		memcpy(out_buf + 56, &srid, 4);
		memcpy(out_buf + 60, &t->w, 2);
		memcpy(out_buf + 62, &t->h, 2);
		pos = 64;
	}
	for (k = 0; k < t->nb; k++)
	{
		const SeedBand *b = &t->b[k];
		size_t		ps = r4_pixtype_size((R4PixType) b->pt);
		uint8_t		tmp[8];
		size_t		i;

		out_buf[pos] = (uint8_t) (b->pt | b->flags);
		if (!wkb)
			memset(out_buf + pos + 1, 0, ps - 1);
		pos += wkb ? 1 : ps;
		nodata_bytes(b->pt, tmp);
		put(out_buf + pos, tmp, ps, rev);
		pos += ps;
		if (b->flags & 0x80)
		{
			size_t		l = strlen(b->path) + 1;

			out_buf[pos++] = b->outdb_band;
			memcpy(out_buf + pos, b->path, l);
			pos += l;
		}
		else
			for (i = 0; i < (size_t) t->w * t->h; i++)
			{
				pixel_bytes(b->pt, k, i, tmp);
				put(out_buf + pos, tmp, ps, rev);
				pos += ps;
			}
		if (!wkb)
			while (pos % 8)
				out_buf[pos++] = 0;
	}
	if (!wkb)
	{
		uint32_t	word = host_le() ? (uint32_t) pos << 2 : (uint32_t) pos;

		memcpy(out_buf, &word, 4);
	}
	return pos;
}

static int	failures;

/* Write out_buf[0..len) to dir/name. */
static void
write_file(const char *dir, const char *name, size_t len)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(out_buf, 1, len, f) != len || fclose(f) != 0)
	{
		fprintf(stderr, "seeds_raster: cannot write %s\n", path);
		failures++;
	}
}

/* Write one raster in all three encodings. */
static void
write_all(const char *dir, const char *name, const SeedRaster *t)
{
	char		fname[256];

	snprintf(fname, sizeof(fname), "ser_%s", name);
	write_file(dir, fname, encode(t, false, false));
	snprintf(fname, sizeof(fname), "wkb_le_%s", name);
	write_file(dir, fname, encode(t, true, false));
	snprintf(fname, sizeof(fname), "wkb_be_%s", name);
	write_file(dir, fname, encode(t, true, true));
}

/* Write all seed rasters into argv[1]. */
int
main(int argc, char **argv)
{
	static const uint16_t sizes[][2] = {{3, 2}, {7, 5}, {1, 1}, {17, 3}};
	static const uint8_t flag_sets[] = {0x00, 0x40, 0x60};
	static const char *const flag_names[] = {"plain", "nodata", "isnodata"};
	SeedRaster	t;
	char		name[128];
	int			pt;
	int			s;
	int			f;
	int			count = 0;

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s SEED_DIR\n", argv[0]);
		return 2;
	}

	/* every pixel type x flags x size, one band */
	for (pt = 0; pt < R4_PT_COUNT; pt++)
		for (f = 0; f < 3; f++)
			for (s = 0; s < 4; s++)
			{
				if (f != 1 && s > 0)
					continue;	/* all sizes only for the common case */
				memset(&t, 0, sizeof(t));
				t.w = sizes[s][0];
				t.h = sizes[s][1];
				t.nb = 1;
				t.b[0].pt = pt;
				t.b[0].flags = flag_sets[f];
				snprintf(name, sizeof(name), "%s_%s_%ux%u",
						 r4_pixtype_name((R4PixType) pt), flag_names[f], t.w, t.h);
				write_all(argv[1], name, &t);
				count += 3;
			}

	/* mixed multi-band: 4x 16BUI (PF-like), then 8BUI, 32BF, 64BF */
	memset(&t, 0, sizeof(t));
	t.w = 9;
	t.h = 7;
	t.nb = 6;
	t.b[0].pt = R4_PT_16BUI;
	t.b[0].flags = 0x40;
	t.b[1].pt = R4_PT_16BUI;
	t.b[2].pt = R4_PT_8BUI;
	t.b[2].flags = 0x60;
	t.b[3].pt = R4_PT_32BF;
	t.b[3].flags = 0x40;
	t.b[4].pt = R4_PT_64BF;
	t.b[4].flags = 0x40;
	t.b[5].pt = R4_PT_1BB;
	t.b[5].flags = 0x40;
	write_all(argv[1], "mixed_6band_9x7", &t);
	count += 3;

	/* out-db bands, alone and mixed with in-db */
	memset(&t, 0, sizeof(t));
	t.w = 4;
	t.h = 3;
	t.nb = 2;
	t.b[0].pt = R4_PT_16BSI;
	t.b[0].flags = 0xC0;
	t.b[0].path = "/tmp/outdb_test.tif";
	t.b[1].pt = R4_PT_8BUI;
	t.b[1].flags = 0x80;
	t.b[1].path = "/data/s2/tile_000123.tif";
	t.b[1].outdb_band = 11;
	write_all(argv[1], "outdb_2band", &t);
	t.b[1].flags = 0x40;
	write_all(argv[1], "outdb_mixed", &t);
	count += 6;

	/* empty (0 x 5) raster with a band, and a raster with no bands */
	memset(&t, 0, sizeof(t));
	t.w = 0;
	t.h = 5;
	t.nb = 1;
	t.b[0].pt = R4_PT_8BUI;
	t.b[0].flags = 0x40;
	write_all(argv[1], "empty_0x5", &t);
	t.w = 3;
	t.nb = 0;
	write_all(argv[1], "nobands_3x5", &t);
	count += 6;

	if (failures)
		return 1;
	printf("seeds_raster: wrote %d seeds to %s\n", count, argv[1]);
	return 0;
}
