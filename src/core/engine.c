/*
 * engine.c — dispatch from the architecture-neutral engine API to the
 * architecture's own implementation.
 */
#include "rai4eo/engine.h"
#include "rai4eo/preprocess.h"

#include "rai4eo/resnet.h"

struct R4Engine
{
	R4Arch		arch;
	R4ViT	   *vit;
	R4ResNet   *resnet;
	R4Head	   *head;			/* NULL when the model has no head in use */
};

R4Status
r4_engine_check_input(const R4ModelConfig *cfg, int H, int W, R4Error *err)
{
	int			oh,
				ow;

	if ((long long) H * W > R4_MAX_INPUT_PIXELS)
		return r4_fail(err, R4_ERR_LIMIT, "raster of %d x %d pixels exceeds the limit of %ld pixels",
					   W, H, R4_MAX_INPUT_PIXELS);
	r4_preprocess_output_size(cfg, H, W, &oh, &ow);
	switch (cfg->arch)
	{
		case R4_ARCH_VIT:
			if (cfg->patch_size > 0 &&
				(long long) (oh / cfg->patch_size) * (ow / cfg->patch_size) + 1 > R4_VIT_MAX_TOKENS)
				return r4_fail(err, R4_ERR_LIMIT,
							   "raster of %d x %d pixels makes %lld tokens; the limit is %d",
							   W, H, (long long) (oh / cfg->patch_size) * (ow / cfg->patch_size) + 1,
							   R4_VIT_MAX_TOKENS);
			break;
		case R4_ARCH_RESNET:
			if ((long long) oh * ow > R4_RESNET_MAX_PIXELS)
				return r4_fail(err, R4_ERR_LIMIT, "input of %d x %d pixels exceeds the limit of %d pixels",
							   ow, oh, R4_RESNET_MAX_PIXELS);
			break;
		default:
			break;
	}
	return R4_OK;
}

R4Status
r4_engine_build(const R4SafeTensors *st, const R4ModelConfig *cfg, R4Engine **out, R4Error *err)
{
	R4Engine   *e;
	R4Status	rc;

	*out = NULL;
	e = r4_alloc_zero(sizeof(*e));
	if (e == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory building the engine");
	e->arch = cfg->arch;
	switch (cfg->arch)
	{
		case R4_ARCH_VIT:
			rc = r4_vit_build(st, cfg, &e->vit, err);
			break;
		case R4_ARCH_RESNET:
			rc = r4_resnet_build(st, cfg, &e->resnet, err);
			break;
		default:
			rc = r4_fail(err, R4_ERR_UNSUPPORTED, "architecture \"%s\" is not supported yet",
						 r4_arch_name(cfg->arch));
			break;
	}
	if (rc == R4_OK && cfg->n_classes > 0)
		rc = r4_head_build(st, cfg->multilabel, &e->head, err);
	if (rc != R4_OK)
	{
		r4_engine_free(e);
		return rc;
	}
	*out = e;
	return R4_OK;
}

R4Status
r4_engine_set_precision(R4Engine *e, R4Precision precision, R4Error *err)
{
	/* Only the ViT has a bf16 path; a ResNet stays fp32 whatever is asked. */
	if (e->arch == R4_ARCH_VIT)
		return r4_vit_set_precision(e->vit, precision, err);
	return R4_OK;
}

R4Precision
r4_engine_precision(const R4Engine *e)
{
	return e->arch == R4_ARCH_VIT ? r4_vit_precision(e->vit) : R4_PRECISION_FP32;
}

R4Status
r4_engine_classify(R4Engine *e, const float *features, int B, float *probs, R4Error *err)
{
	if (e->head == NULL)
		return r4_fail(err, R4_ERR_INVALID, "the model has no classification head in use");
	return r4_head_forward(e->head, features, B, probs, err);
}

R4Status
r4_engine_forward(R4Engine *e, const float *input, int B, int H, int W, float *out,
				  R4InterruptCheck check, void *check_arg, R4Error *err)
{
	switch (e->arch)
	{
		case R4_ARCH_VIT:
			return r4_vit_forward(e->vit, input, B, H, W, out, check, check_arg, err);
		case R4_ARCH_RESNET:
			return r4_resnet_forward(e->resnet, input, B, H, W, out, check, check_arg, err);
		default:
			return r4_fail(err, R4_ERR_INTERNAL, "engine of an unknown architecture");
	}
}

const R4ModelConfig *
r4_engine_config(const R4Engine *e)
{
	switch (e->arch)
	{
		case R4_ARCH_VIT:
			return r4_vit_config(e->vit);
		case R4_ARCH_RESNET:
			return r4_resnet_config(e->resnet);
		default:
			return NULL;
	}
}

size_t
r4_engine_param_count(const R4Engine *e)
{
	size_t		head = e->head ? r4_head_param_count(e->head) : 0;

	switch (e->arch)
	{
		case R4_ARCH_VIT:
			return r4_vit_param_count(e->vit) + head;
		case R4_ARCH_RESNET:
			return r4_resnet_param_count(e->resnet) + head;
		default:
			return head;
	}
}

size_t
r4_engine_work_bytes(const R4Engine *e)
{
	switch (e->arch)
	{
		case R4_ARCH_VIT:
			return r4_vit_work_bytes(e->vit);
		case R4_ARCH_RESNET:
			return r4_resnet_work_bytes(e->resnet);
		default:
			return 0;
	}
}

void
r4_engine_release_work(R4Engine *e)
{
	if (e->vit != NULL)
		r4_vit_release_work(e->vit);
	if (e->resnet != NULL)
		r4_resnet_release_work(e->resnet);
}

void
r4_engine_free(R4Engine *e)
{
	if (e == NULL)
		return;
	r4_vit_free(e->vit);
	r4_resnet_free(e->resnet);
	r4_head_free(e->head);
	r4_free(e);
}
