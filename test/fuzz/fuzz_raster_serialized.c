/*
 * fuzz_raster_serialized.c — libFuzzer target for r4_raster_parse_serialized,
 * r4_raster_decode and r4_raster_decode_normalised.
 *
 * Each input is parsed twice: as given, and with its varlena word rewritten
 * to the input length (so the fuzzer is not stuck guessing a consistent
 * VARSIZE), from an odd address so nothing may rely on alignment.  A raster
 * that parses is decoded, and the results are checked against what the API
 * promises; a broken promise aborts, which libFuzzer reports as a crash.
 */
#include "rai4eo/raster.h"

#include <math.h>
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
		fprintf(stderr, "fuzz_raster_serialized: broken promise: %s\n", what);
		abort();
	}
}

/* Whether a float holds the pixel's exact value, so the reference rule can be applied to it. */
static int
float_is_exact(R4PixType t)
{
	return t != R4_PT_32BSI && t != R4_PT_32BUI && t != R4_PT_64BF;
}

/* Decode all bands (and a reordered selection) and check the outputs. */
static void
check_decode(const R4Raster *r)
{
	R4Error		err;
	size_t		count;
	size_t		npix;
	float	   *planes;
	uint8_t    *mask;
	R4Status	st;
	size_t		i;
	int			k;
	int			sel[3];
	float	   *first_plane;

	st = r4_raster_decode_count(r, r->nbands, &count, &err);
	if (r->width == 0 || r->height == 0 || r->nbands == 0)
	{
		require(st == R4_ERR_INVALID, "empty raster counted");
		return;
	}
	require(st == R4_OK, "count failed");
	if (count > FUZZ_MAX_VALUES)
		return;
	npix = (size_t) r->width * r->height;
	/* room for the three-band selection below too */
	planes = malloc((r->nbands < 3 ? 3 * npix : count) * sizeof(float));
	mask = malloc(count);
	require(planes && mask, "malloc");

	st = r4_raster_decode(r, NULL, 0, planes, mask, &err);
	if (r4_raster_has_outdb(r, NULL, 0))
		require(st == R4_ERR_UNSUPPORTED && strstr(err.message, "out-db") != NULL,
				"out-db band decoded");
	else
	{
		require(st == R4_OK, "decode of a parsed raster failed");
		/* decoding straight into normalised values gives the two-step path's bits */
		{
			float	   *norm = malloc(count * sizeof(float));
			double	   *mean = malloc(r->nbands * sizeof(double));
			double	   *sd = malloc(r->nbands * sizeof(double));

			require(norm && mean && sd, "malloc");
			for (k = 0; k < r->nbands; k++)
			{
				mean[k] = 0.25 * k - 1.0;
				sd[k] = 0.5 + k;
			}
			require(r4_raster_decode_normalised(r, NULL, 0, 1e-3, mean, sd, norm, &err) == R4_OK,
					"normalised decode of a parsed raster failed");
			for (k = 0; k < r->nbands; k++)
				for (i = 0; i < npix; i++)
				{
					float		want = r4_normalise_value(planes[(size_t) k * npix + i],
														  mask[(size_t) k * npix + i], 1e-3,
														  mean[k], 1.0 / sd[k]);

					require(memcmp(&want, &norm[(size_t) k * npix + i], sizeof(float)) == 0,
							"normalised decode differs from decode + normalise");
				}
			free(norm);
			free(mean);
			free(sd);
		}
		for (k = 0; k < r->nbands; k++)
		{
			const R4RasterBand *b = &r->bands[k];

			for (i = 0; i < npix; i++)
			{
				uint8_t		m = mask[(size_t) k * npix + i];
				float		v = planes[(size_t) k * npix + i];

				require(m <= 1, "mask not 0/1");
				if (!b->hasnodata)
					require(m == 0, "mask set without nodata");
				else if (b->isnodata)
					require(m == 1, "is-nodata band with a valid pixel");
				else if (float_is_exact(b->pixtype))
					require(m == r4_pixel_is_nodata(b->pixtype, v, b->nodata),
							"mask differs from the reference rule");
			}
		}
	}

	/* a reversed selection with a repeat, without a mask; band 1 must not change */
	first_plane = malloc(npix * sizeof(float));
	require(first_plane != NULL, "malloc");
	memcpy(first_plane, planes, npix * sizeof(float));
	sel[0] = r->nbands;
	sel[1] = 1;
	sel[2] = r->nbands;
	st = r4_raster_decode(r, sel, 3, planes, NULL, &err);
	require(st == (r4_raster_has_outdb(r, sel, 3) ? R4_ERR_UNSUPPORTED : R4_OK),
			"selection decode status");
	if (st == R4_OK && !r4_raster_has_outdb(r, NULL, 0))
		require(memcmp(planes + npix, first_plane, npix * sizeof(float)) == 0,
				"band 1 decoded differently when selected");
	sel[0] = r->nbands + 1;
	require(r4_raster_decode(r, sel, 1, planes, mask, &err) == R4_ERR_RANGE, "band out of range");
	free(first_plane);
	free(planes);
	free(mask);
}

/* Parse one buffer and, when it parses, check and decode it. */
static void
run_one(const uint8_t *buf, size_t len)
{
	R4Raster	r;
	R4Error		err;

	if (r4_raster_parse_serialized(buf, len, &r, &err) == R4_OK)
	{
		int			k;

		for (k = 0; k < r.nbands; k++)
			require(r.bands[k].offdb ? r.bands[k].outdb_path != NULL && r.bands[k].data == NULL
					: r.bands[k].data != NULL, "band pointers");
		check_decode(&r);
	}
	else
		require(r.bands == NULL && r.nbands == 0 && err.message[0] != '\0', "failed parse state");
	r4_raster_free(&r);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fuzz entry point: the input as is, then with a consistent VARSIZE. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *block;
	uint8_t    *buf;

	run_one(data, size);
	if (size < 4 || size > 0x3FFFFFFF)
		return 0;

	/* exact-size copy at an odd address, with VARSIZE = size */
	block = malloc(size + 1);
	if (block == NULL)
		return 0;
	buf = block + 1;
	memcpy(buf, data, size);
	{
		uint32_t	word = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ?
			(uint32_t) size << 2 : (uint32_t) size;

		memcpy(buf, &word, 4);
	}
	run_one(buf, size);
	free(block);
	return 0;
}
