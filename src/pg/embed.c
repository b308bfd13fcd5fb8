/*
 * embed.c — rai4eo_embed (one raster or an array of them) and
 * rai4eo_model_input: PostGIS rasters through a model's preprocessing and
 * engine.
 *
 * Each call site keeps a model handle and a raster reader in fn_extra, so a
 * statement validates its model once and then only decodes and computes.
 * Per-raster scratch memory lives in a context reset after every raster: a
 * call inside a long PL/pgSQL loop does not accumulate.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core_error.h"
#include "embedding.h"
#include "fmgr.h"
#include "inference.h"
#include "model_cache.h"
#include "model_lookup.h"
#include "rai4eo/preprocess.h"
#include "raster.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

/* Images per engine call in the batched form: large enough to reach GEMM speed */
#define EMBED_MAX_BATCH 16

/* ... but a batch's input buffer stays below this (large rasters go fewer at a time) */
#define EMBED_MAX_BATCH_BYTES ((size_t) 256 * 1024 * 1024)

typedef struct EmbedCallSite
{
	ModelHandle model;
	RasterReader raster;
	char		purpose[NAMEDATALEN + 16];
	MemoryContext scratch;		/* reset after each raster */
} EmbedCallSite;

/* The call site's state; raster_type is the element type for the array form */
static EmbedCallSite *
GetCallSite(FunctionCallInfo fcinfo, Oid raster_type)
{
	EmbedCallSite *cs = (EmbedCallSite *) fcinfo->flinfo->fn_extra;

	if (cs == NULL)
	{
		MemoryContext mcxt = fcinfo->flinfo->fn_mcxt;

		cs = MemoryContextAllocZero(mcxt, sizeof(EmbedCallSite));
		ModelHandleInit(&cs->model, mcxt);
		RasterReaderInit(&cs->raster, raster_type, mcxt);
		cs->scratch = AllocSetContextCreate(mcxt, "rai4eo embed scratch", ALLOCSET_DEFAULT_SIZES);
		fcinfo->flinfo->fn_extra = cs;
	}
	return cs;
}

/* The model's size limits, checked from the raster header before decoding */
static void
CheckRasterSize(void *arg, int nbands, int width, int height)
{
	CachedModel *m = (CachedModel *) arg;
	R4Error		err;

	r4_error_clear(&err);
	if (r4_engine_check_input(&m->cfg, height, width, &err) == R4_OK)
		return;
	if (err.status == R4_ERR_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: model \"%s\" cannot read it", err.message, m->name),
				 errdetail("Rasters are refused from their size before being decoded; split the raster into tiles.")));
	/* too small for the model's readout: the raster, not a limit, is the problem */
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: model \"%s\" cannot read it", err.message, m->name)));
}

/* The model for this row: the handle re-validates only when the name changes */
static CachedModel *
GetModel(FunctionCallInfo fcinfo, EmbedCallSite *cs, int argno)
{
	char	   *name = ResolveModelName(PG_ARGISNULL(argno) ? NULL : PG_GETARG_TEXT_PP(argno));
	CachedModel *m = ModelHandleGet(&cs->model, name);

	snprintf(cs->purpose, sizeof(cs->purpose), "model \"%s\"", m->name);
	cs->raster.purpose = cs->purpose;
	cs->raster.check_size = CheckRasterSize;
	cs->raster.check_arg = m;
	return m;
}

/*
 * Parse one raster for the model (header checks, band numbers, size limits,
 * nothing decoded yet) and give the size of its model input, checking it is
 * large enough for the model.
 */
static void
OpenModelRaster(EmbedCallSite *cs, CachedModel *m, Datum rast, RasterSource *src,
				int *out_h, int *out_w)
{
	const R4ModelConfig *cfg = &m->cfg;
	int			oh,
				ow;

	RasterOpenDatum(&cs->raster, rast, cfg->bands, cfg->in_chans, src);
	r4_preprocess_output_size(cfg, src->raster->height, src->raster->width, &oh, &ow);
	if (oh < cfg->min_input || ow < cfg->min_input)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("raster of %d x %d pixels is smaller than one %d x %d patch of model \"%s\"",
						src->raster->width, src->raster->height, cfg->min_input, cfg->min_input,
						m->name)));
	*out_h = oh;
	*out_w = ow;
}

/*
 * Decode and preprocess an opened raster straight into dst (in_chans *
 * out_h * out_w floats: a batch slot), then release the source.  The
 * decoder writes normalised values there directly: no float planes, mask
 * or preprocessed copy in between.
 */
static void
FillModelInput(CachedModel *m, RasterSource *src, float *dst)
{
	R4Error		err;

	r4_error_clear(&err);
	if (r4_preprocess_raster(&m->cfg, src->raster, dst, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
	RasterCloseSource(src);
}

/* One raster's model input as a palloc'd tensor (in the current context). */
static float *
ModelInput(EmbedCallSite *cs, CachedModel *m, Datum rast, int *out_h, int *out_w)
{
	RasterSource src;
	float	   *input;

	OpenModelRaster(cs, m, rast, &src, out_h, out_w);
	input = palloc_extended((size_t) m->cfg.in_chans * *out_h * *out_w * sizeof(float),
							MCXT_ALLOC_HUGE);
	FillModelInput(m, &src, input);
	return input;
}

/* Wrap engine output as an embedding value */
static Embedding *
MakeEmbedding(const float *x, int dim)
{
	Embedding  *e;

	EmbeddingCheckDim(dim);
	EmbeddingCheckElements(x, dim);
	e = InitEmbedding(dim);
	memcpy(e->x, x, sizeof(float) * dim);
	return e;
}

/* What a call returns: rai4eo_embed's output (features, or probabilities if so configured) or class probabilities */
typedef enum Want
{
	WANT_EMBEDDING,
	WANT_PROBABILITIES
} Want;

/* Width of a call's result */
static int
OutDim(CachedModel *m, Want want)
{
	if (want == WANT_PROBABILITIES)
	{
		if (m->cfg.n_classes == 0)
			ModelClassify(m, NULL, 0, NULL);	/* raises "no classification head" */
		return m->cfg.n_classes;
	}
	return ModelEmbedDim(m);
}

/* Run the engine (and the head when probabilities are wanted) on B inputs */
static void
RunModel(CachedModel *m, Want want, const float *input, int B, int H, int W, float *out)
{
	if (want == WANT_EMBEDDING && m->cfg.output == R4_OUTPUT_FEATURES)
	{
		ModelForward(m, input, B, H, W, out);
		return;
	}
	{
		float	   *feats = palloc_extended(sizeof(float) * (size_t) B * m->cfg.out_dim, MCXT_ALLOC_HUGE);

		ModelForward(m, input, B, H, W, feats);
		ModelClassify(m, feats, B, out);
		pfree(feats);
	}
}

/* Embed one raster with a model: rai4eo_embed(raster, text) */
PG_FUNCTION_INFO_V1(rai4eo_embed);
Datum
rai4eo_embed(PG_FUNCTION_ARGS)
{
	EmbedCallSite *cs;
	CachedModel *m;
	MemoryContext old;
	float	   *input;
	float	   *out;
	int			h,
				w,
				dim;
	Embedding  *result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	cs = GetCallSite(fcinfo, get_fn_expr_argtype(fcinfo->flinfo, 0));
	m = GetModel(fcinfo, cs, 1);

	dim = OutDim(m, WANT_EMBEDDING);
	old = MemoryContextSwitchTo(cs->scratch);
	input = ModelInput(cs, m, PG_GETARG_DATUM(0), &h, &w);
	out = palloc(sizeof(float) * dim);
	RunModel(m, WANT_EMBEDDING, input, 1, h, w, out);
	MemoryContextSwitchTo(old);

	result = MakeEmbedding(out, dim);
	MemoryContextReset(cs->scratch);
	PG_RETURN_EMBEDDING_P(result);
}

/* Class probabilities of one raster: rai4eo_classify(raster, text) returns real[] */
PG_FUNCTION_INFO_V1(rai4eo_classify);
Datum
rai4eo_classify(PG_FUNCTION_ARGS)
{
	EmbedCallSite *cs;
	CachedModel *m;
	MemoryContext old;
	float	   *input;
	float	   *out;
	int			h,
				w,
				k;
	Datum	   *datums;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	cs = GetCallSite(fcinfo, get_fn_expr_argtype(fcinfo->flinfo, 0));
	m = GetModel(fcinfo, cs, 1);
	k = OutDim(m, WANT_PROBABILITIES);
	old = MemoryContextSwitchTo(cs->scratch);
	input = ModelInput(cs, m, PG_GETARG_DATUM(0), &h, &w);
	out = palloc(sizeof(float) * k);
	RunModel(m, WANT_PROBABILITIES, input, 1, h, w, out);
	MemoryContextSwitchTo(old);

	datums = palloc(sizeof(Datum) * k);
	for (int i = 0; i < k; i++)
		datums[i] = Float4GetDatum(out[i]);
	MemoryContextReset(cs->scratch);
	PG_RETURN_ARRAYTYPE_P(construct_array(datums, k, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT));
}

/* Names the array element being embedded in error messages */
static void
ElementErrorContext(void *arg)
{
	errcontext("raster %d of the array", *(int *) arg);
}

/*
 * Run a model over an array of rasters: an embedding[] of the same shape,
 * NULL for NULL.  Consecutive rasters of the same size go through the
 * engine together, EMBED_MAX_BATCH at a time.
 */
static Datum
RunArray(FunctionCallInfo fcinfo, Want want)
{
	ArrayType  *arr;
	Oid			elemtype;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	EmbedCallSite *cs;
	CachedModel *m;
	Datum	   *results;
	int			dim;
	float	   *batch = NULL;
	float	   *out;
	int			batch_idx[EMBED_MAX_BATCH];
	int			nb = 0,
				bh = 0,
				bw = 0,
				batch_cap = EMBED_MAX_BATCH;
	size_t		per_image = 0;
	int			current = 0;
	ErrorContextCallback errcb;
	Oid			embedding_type;
	int16		etyplen;
	bool		etypbyval;
	char		etypalign;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	arr = PG_GETARG_ARRAYTYPE_P(0);
	elemtype = ARR_ELEMTYPE(arr);
	cs = GetCallSite(fcinfo, elemtype);
	m = GetModel(fcinfo, cs, 1);
	dim = OutDim(m, want);
	EmbeddingCheckDim(dim);

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, &elems, &nulls, &n);
	results = palloc0(sizeof(Datum) * Max(n, 1));
	out = palloc(sizeof(float) * dim * EMBED_MAX_BATCH);

	errcb.callback = ElementErrorContext;
	errcb.arg = &current;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (int i = 0; i <= n; i++)
	{
		RasterSource src;
		bool		have = false;
		int			h = 0,
					w = 0;

		/* The header first: limits and sizes are checked before any pixel is decoded */
		if (i < n && !nulls[i])
		{
			MemoryContext old = MemoryContextSwitchTo(cs->scratch);

			current = i + 1;
			OpenModelRaster(cs, m, elems[i], &src, &h, &w);
			MemoryContextSwitchTo(old);
			have = true;
		}

		/* Flush when the size changes, the batch is full, or at the end */
		if (nb > 0 && (i == n || (have && (h != bh || w != bw)) || nb == batch_cap))
		{
			current = batch_idx[0] + 1;
			RunModel(m, want, batch, nb, bh, bw, out);
			for (int k = 0; k < nb; k++)
				results[batch_idx[k]] = PointerGetDatum(MakeEmbedding(out + (size_t) k * dim, dim));
			nb = 0;
		}
		if (!have)
			continue;
		if (nb == 0 && (batch == NULL || h != bh || w != bw))
		{
			size_t		total;

			if (batch != NULL)
				pfree(batch);
			per_image = (size_t) m->cfg.in_chans * h * w;
			/* Room for the images still to come, within EMBED_MAX_BATCH_BYTES */
			batch_cap = Min(EMBED_MAX_BATCH, n - i);
			while (batch_cap > 1 && per_image * sizeof(float) * batch_cap > EMBED_MAX_BATCH_BYTES)
				batch_cap--;
			if (r4_mul_size(per_image, batch_cap * sizeof(float), &total) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("raster too large")));
			batch = palloc_extended(total, MCXT_ALLOC_HUGE);
		}
		bh = h;
		bw = w;
		{
			MemoryContext old = MemoryContextSwitchTo(cs->scratch);

			current = i + 1;
			FillModelInput(m, &src, batch + per_image * nb);
			MemoryContextSwitchTo(old);
		}
		batch_idx[nb++] = i;
		MemoryContextReset(cs->scratch);
	}
	error_context_stack = errcb.previous;

	embedding_type = get_fn_expr_rettype(fcinfo->flinfo);
	embedding_type = OidIsValid(embedding_type) ? get_element_type(embedding_type) : InvalidOid;
	if (!OidIsValid(embedding_type))
		elog(ERROR, "could not determine the embedding type");
	get_typlenbyvalalign(embedding_type, &etyplen, &etypbyval, &etypalign);
	for (int i = 0; i < n; i++)
		nulls[i] = nulls[i] || results[i] == (Datum) 0;
	PG_RETURN_ARRAYTYPE_P(construct_md_array(results, nulls, ARR_NDIM(arr), ARR_DIMS(arr),
											 ARR_LBOUND(arr), embedding_type, etyplen,
											 etypbyval, etypalign));
}

/* rai4eo_embed(raster[], text) returns embedding[] */
PG_FUNCTION_INFO_V1(rai4eo_embed_array);
Datum
rai4eo_embed_array(PG_FUNCTION_ARGS)
{
	return RunArray(fcinfo, WANT_EMBEDDING);
}

/* rai4eo_classify(raster[], text) returns the probability vectors as embedding[] */
PG_FUNCTION_INFO_V1(rai4eo_classify_array);
Datum
rai4eo_classify_array(PG_FUNCTION_ARGS)
{
	return RunArray(fcinfo, WANT_PROBABILITIES);
}

/*
 * The tensor a model sees for a raster, as real[channel][row][column]:
 * rai4eo_model_input(raster, text).
 */
PG_FUNCTION_INFO_V1(rai4eo_model_input);
Datum
rai4eo_model_input(PG_FUNCTION_ARGS)
{
	EmbedCallSite *cs;
	CachedModel *m;
	float	   *input;
	int			h,
				w;
	size_t		count;
	Datum	   *datums;
	int			dims[3],
				lbs[3] = {1, 1, 1};

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	cs = GetCallSite(fcinfo, get_fn_expr_argtype(fcinfo->flinfo, 0));
	m = GetModel(fcinfo, cs, 1);
	input = ModelInput(cs, m, PG_GETARG_DATUM(0), &h, &w);
	count = (size_t) m->cfg.in_chans * h * w;
	if (count > MaxAllocSize / sizeof(Datum))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("model input too large for an array: %zu values", count)));
	datums = palloc(count * sizeof(Datum));
	for (size_t i = 0; i < count; i++)
		datums[i] = Float4GetDatum(input[i]);
	dims[0] = m->cfg.in_chans;
	dims[1] = h;
	dims[2] = w;
	PG_RETURN_ARRAYTYPE_P(construct_md_array(datums, NULL, 3, dims, lbs, FLOAT4OID,
											 sizeof(float4), true, TYPALIGN_INT));
}

/* The model name a NULL argument stands for, checked to exist: rai4eo.resolve_model(text) */
PG_FUNCTION_INFO_V1(rai4eo_resolve_model);
Datum
rai4eo_resolve_model(PG_FUNCTION_ARGS)
{
	char	   *name = ResolveModelName(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));

	ModelCheckExists(name);
	PG_RETURN_TEXT_P(cstring_to_text(name));
}
