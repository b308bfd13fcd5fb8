/*
 * inference.c — the engine calls of a cached model.
 *
 * A forward pass runs in the model's own memory context (its activation
 * arena grows there and stays with the model), with CHECK_FOR_INTERRUPTS
 * between blocks; an arena grown past MODEL_KEEP_WORK_BYTES is freed after
 * the call, cancelled or not, so one huge raster does not pin memory for
 * the rest of the session.
 */
#include "postgres.h"

#include "blas_threads.h"
#include "core_error.h"
#include "inference.h"
#include "miscadmin.h"
#include "rai4eo/engine.h"

/*
 * Activation arenas above this size are freed after the call that grew them:
 * a batch of 16 ViT-S images of 224 x 224 needs about 70 MB and keeps its
 * arena, one 2048 x 2048 image (over 1 GB) does not keep it for the session.
 */
#define MODEL_KEEP_WORK_BYTES ((size_t) 128 * 1024 * 1024)

/* Interrupt check between blocks: CHECK_FOR_INTERRUPTS longjmps on a cancel */
static bool
CheckInterrupts(void *arg)
{
	CHECK_FOR_INTERRUPTS();
	return false;
}

/* Free the activation arena when it grew past what is worth keeping */
static void
TrimWork(CachedModel *m)
{
	if (r4_engine_work_bytes(m->engine) > MODEL_KEEP_WORK_BYTES)
		r4_engine_release_work(m->engine);
}

void
ModelForward(CachedModel *m, const float *input, int B, int H, int W, float *out)
{
	MemoryContext old;
	R4Error		err;
	R4Status	rc;

	BlasThreadsApply();
	r4_error_clear(&err);
	/* The arena grows inside the model's own context and stays with it */
	old = MemoryContextSwitchTo(m->mcxt);
	PG_TRY();
	{
		rc = r4_engine_forward(m->engine, input, B, H, W, out, CheckInterrupts, NULL, &err);
	}
	PG_CATCH();
	{
		/* A cancel longjmps out of the engine: do not keep a huge arena for it */
		MemoryContextSwitchTo(old);
		TrimWork(m);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	TrimWork(m);
	if (rc != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
}

void
ModelClassify(CachedModel *m, const float *features, int B, float *probs)
{
	MemoryContext old;
	R4Error		err;
	R4Status	rc;

	if (m->cfg.n_classes == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" has no classification head", m->name),
				 errhint("A classifier's file holds head.* or fc.* linear layers on top of the features.")));
	r4_error_clear(&err);
	old = MemoryContextSwitchTo(m->mcxt);
	rc = r4_engine_classify(m->engine, features, B, probs, &err);
	MemoryContextSwitchTo(old);
	if (rc != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
}

int
ModelEmbedDim(const CachedModel *m)
{
	return m->cfg.output == R4_OUTPUT_PROBABILITIES ? m->cfg.n_classes : m->cfg.out_dim;
}
