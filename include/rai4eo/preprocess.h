/*
 * preprocess.h — turn decoded raster bands into the tensor a model sees.
 *
 * model input = (raw * scale - mean[c]) / std[c], computed in double and
 * rounded once to float; nodata pixels (and NaN or infinite raw values,
 * which no model can use) become exactly 0 after normalisation, i.e. the
 * channel mean.  In native mode the output keeps the raster's size; in
 * resize mode the normalised planes are then resampled to img_size x
 * img_size with F.interpolate(mode='bilinear', align_corners=False,
 * antialias=False) arithmetic, nodata zeros included.
 */
#ifndef RAI4EO_PREPROCESS_H
#define RAI4EO_PREPROCESS_H

#include <stdint.h>

#include "rai4eo/core.h"
#include "rai4eo/model_config.h"
#include "rai4eo/raster.h"

/* Size of the model input for an H x W raster (H x W, or img_size square). */
void		r4_preprocess_output_size(const R4ModelConfig *cfg, int H, int W,
									  int *out_h, int *out_w);

/*
 * planes[in_chans][H][W] are the raster bands already picked in
 * cfg->bands order; mask (may be NULL) has the same layout, nonzero where
 * the pixel is nodata (what r4_raster_decode writes).  out receives
 * in_chans * out_h * out_w floats (see r4_preprocess_output_size); out_h
 * and out_w may be NULL.  Resize mode allocates one temporary plane set.
 * Errors: R4_ERR_RANGE for H or W < 1, R4_ERR_LIMIT for sizes that
 * overflow, R4_ERR_NOMEM.
 */
R4Status	r4_preprocess(const R4ModelConfig *cfg, const float *planes,
						  const uint8_t *mask, int H, int W,
						  float *out, int *out_h, int *out_w, R4Error *err);

/*
 * The same model input straight from a parsed raster r (its bands picked
 * by cfg->bands): out receives in_chans * out_h * out_w floats, bit for bit
 * what r4_raster_decode followed by r4_preprocess gives.  In native mode
 * the decoder normalises into out directly (no planes, no mask, no
 * temporary); resize mode allocates one normalised plane set to resample
 * from.  Errors as r4_raster_decode and r4_preprocess.
 */
R4Status	r4_preprocess_raster(const R4ModelConfig *cfg, const R4Raster *r, float *out,
								 R4Error *err);

#endif							/* RAI4EO_PREPROCESS_H */
