/*
 * preprocess.c — normalise decoded bands and, in resize mode, resample
 * them to the model's training size.  r4_preprocess_raster does it from
 * the parsed raster itself, decoding straight into the caller's buffer
 * (the batch slot) in native mode.
 */
#include "rai4eo/preprocess.h"

#include <math.h>

#include "rai4eo/nn.h"
#include "rai4eo/raster.h"

/* Report the model input size for an H x W raster. */
void
r4_preprocess_output_size(const R4ModelConfig *cfg, int H, int W,
						  int *out_h, int *out_w)
{
	if (cfg->input == R4_INPUT_RESIZE)
	{
		*out_h = cfg->img_size;
		*out_w = cfg->img_size;
	}
	else
	{
		*out_h = H;
		*out_w = W;
	}
}

/* Normalise every channel into dst[C][H][W], zeroing nodata. */
static void
normalise(const R4ModelConfig *cfg, const float *planes, const uint8_t *mask,
		  size_t HW, float *dst)
{
	for (int c = 0; c < cfg->in_chans; c++)
	{
		const float *src = planes + (size_t) c * HW;
		const uint8_t *msk = mask != NULL ? mask + (size_t) c * HW : NULL;
		float	   *o = dst + (size_t) c * HW;
		double		scale = cfg->scale;
		double		mean = cfg->mean[c];
		double		inv_std = 1.0 / cfg->std[c];

		for (size_t i = 0; i < HW; i++)
			o[i] = r4_normalise_value(src[i], msk != NULL && msk[i], scale, mean, inv_std);
	}
}

/* Build the model input from decoded bands. */
R4Status
r4_preprocess(const R4ModelConfig *cfg, const float *planes,
			  const uint8_t *mask, int H, int W,
			  float *out, int *out_h, int *out_w, R4Error *err)
{
	size_t		HW;
	size_t		bytes;
	int			oh,
				ow;

	if (cfg == NULL || planes == NULL || out == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_preprocess called with a NULL pointer");
	if (H < 1 || W < 1)
		return r4_fail(err, R4_ERR_RANGE, "raster of %d x %d pixels is empty", H, W);
	if (r4_mul_size((size_t) H, (size_t) W, &HW) != 0 ||
		r4_mul_size(HW, (size_t) cfg->in_chans * sizeof(float), &bytes) != 0)
		return r4_fail(err, R4_ERR_LIMIT, "raster of %d x %d pixels is too large", H, W);
	r4_preprocess_output_size(cfg, H, W, &oh, &ow);
	if (out_h != NULL)
		*out_h = oh;
	if (out_w != NULL)
		*out_w = ow;

	if (cfg->input != R4_INPUT_RESIZE)
		normalise(cfg, planes, mask, HW, out);
	else
	{
		/* Resample after normalising, as a torch pipeline does. */
		float	   *tmp = r4_alloc(bytes);

		if (tmp == NULL)
			return r4_fail(err, R4_ERR_NOMEM, "out of memory preprocessing a %d x %d raster", H, W);
		normalise(cfg, planes, mask, HW, tmp);
		r4_bilinear_resize_chw(tmp, cfg->in_chans, H, W, out, oh, ow);
		r4_free(tmp);
	}
	return R4_OK;
}

/* Build the model input straight from a parsed raster. */
R4Status
r4_preprocess_raster(const R4ModelConfig *cfg, const R4Raster *r, float *out, R4Error *err)
{
	size_t		HW;
	size_t		bytes;
	float	   *tmp;
	R4Status	rc;
	int			oh,
				ow;

	if (cfg == NULL || r == NULL || out == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_preprocess_raster called with a NULL pointer");
	if (r->height < 1 || r->width < 1)
		return r4_fail(err, R4_ERR_RANGE, "raster of %d x %d pixels is empty", r->width, r->height);
	if (cfg->input != R4_INPUT_RESIZE)
		return r4_raster_decode_normalised(r, cfg->bands, cfg->in_chans, cfg->scale, cfg->mean,
										   cfg->std, out, err);

	/* Resampling reads the normalised planes at their own size: one temporary set */
	if (r4_mul_size((size_t) r->height, (size_t) r->width, &HW) != 0 ||
		r4_mul_size(HW, (size_t) cfg->in_chans * sizeof(float), &bytes) != 0)
		return r4_fail(err, R4_ERR_LIMIT, "raster of %d x %d pixels is too large", r->height, r->width);
	tmp = r4_alloc(bytes);
	if (tmp == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory preprocessing a %d x %d raster",
					   r->height, r->width);
	rc = r4_raster_decode_normalised(r, cfg->bands, cfg->in_chans, cfg->scale, cfg->mean,
									 cfg->std, tmp, err);
	if (rc == R4_OK)
	{
		r4_preprocess_output_size(cfg, r->height, r->width, &oh, &ow);
		r4_bilinear_resize_chw(tmp, cfg->in_chans, r->height, r->width, out, oh, ow);
	}
	r4_free(tmp);
	return rc;
}
