/*
 * engine.c — the architecture-neutral engine: the configuration's
 * descriptor (arch.h) builds and runs the architecture, this file adds the
 * classification head and the input checks every architecture shares.
 */
#include "rai4eo/engine.h"

#include "rai4eo/arch.h"
#include "rai4eo/preprocess.h"

struct R4Engine
{
	const R4ArchOps *ops;
	void	   *impl;			/* the architecture's engine */
	R4Head	   *head;			/* NULL when the model has no head in use */
	R4ModelConfig cfg;			/* a deep copy, class names included */
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
	if (cfg->arch != NULL && cfg->arch->check_input != NULL)
		return cfg->arch->check_input(cfg, H, W, oh, ow, err);
	return R4_OK;
}

R4Status
r4_engine_build(const R4SafeTensors *st, const R4ModelConfig *cfg, R4Engine **out, R4Error *err)
{
	R4Engine   *e;
	R4Status	rc;

	*out = NULL;
	if (cfg->arch == NULL)
		return r4_fail(err, R4_ERR_UNSUPPORTED, "architecture \"%s\" is not supported yet",
					   r4_arch_name(cfg->arch));
	e = r4_alloc_zero(sizeof(*e));
	if (e == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory building the engine");
	e->ops = cfg->arch;
	rc = r4_model_config_copy(&e->cfg, cfg, err);
	if (rc == R4_OK)
		rc = e->ops->build(st, cfg, &e->impl, err);
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
	/* An architecture without a bf16 path (ResNet today) stays fp32 whatever is asked. */
	if (e->ops->set_precision != NULL)
		return e->ops->set_precision(e->impl, precision, err);
	return R4_OK;
}

R4Precision
r4_engine_precision(const R4Engine *e)
{
	return e->ops->precision != NULL ? e->ops->precision(e->impl) : R4_PRECISION_FP32;
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
	return e->ops->forward(e->impl, input, B, H, W, out, check, check_arg, err);
}

const R4ModelConfig *
r4_engine_config(const R4Engine *e)
{
	return &e->cfg;
}

size_t
r4_engine_param_count(const R4Engine *e)
{
	size_t		head = e->head ? r4_head_param_count(e->head) : 0;

	return e->ops->param_count(e->impl) + head;
}

size_t
r4_engine_work_bytes(const R4Engine *e)
{
	return e->ops->work_bytes(e->impl);
}

void
r4_engine_release_work(R4Engine *e)
{
	e->ops->release_work(e->impl);
}

void
r4_engine_free(R4Engine *e)
{
	if (e == NULL)
		return;
	if (e->impl != NULL)
		e->ops->free(e->impl);
	r4_head_free(e->head);
	r4_model_config_free(&e->cfg);
	r4_free(e);
}
