/*
 * head.c — linear and MLP classification heads: find them by key, check
 * that the layers chain, run them with cblas_sgemm, turn logits into
 * probabilities.
 */
#include "rai4eo/head.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rai4eo/nn.h"

typedef struct HeadLayer
{
	const R4StTensor *w;
	const R4StTensor *b;		/* may be NULL */
} HeadLayer;

struct R4Head
{
	int			nlayers;
	int			dims[R4_HEAD_MAX_LAYERS + 1];	/* dims[0] = in_dim, dims[n] = classes */
	float	   *w[R4_HEAD_MAX_LAYERS];
	float	   *b[R4_HEAD_MAX_LAYERS];	/* NULL when the layer has no bias */
	bool		multilabel;
	size_t		params;
	float	   *scratch;
	size_t		scratch_len;
	float	   *block;			/* every weight and bias */
};

/* Collect the layers under prefix ("head" or "fc"); 0 layers if none */
static R4Status
CollectLayers(const R4SafeTensors *st, const char *prefix, HeadLayer *layers, int *n, R4Error *err)
{
	char		name[64];
	const R4StTensor *w;

	*n = 0;
	snprintf(name, sizeof(name), "%s.weight", prefix);
	if ((w = r4_safetensors_find(st, name)) != NULL)
	{
		layers[0].w = w;
		snprintf(name, sizeof(name), "%s.bias", prefix);
		layers[0].b = r4_safetensors_find(st, name);
		*n = 1;
		return R4_OK;
	}
	/* nn.Sequential: linear layers at increasing indices, activations in between */
	for (int idx = 0; idx < 64; idx++)
	{
		snprintf(name, sizeof(name), "%s.%d.weight", prefix, idx);
		if ((w = r4_safetensors_find(st, name)) == NULL || w->ndim != 2)
			continue;
		if (*n == R4_HEAD_MAX_LAYERS)
			return r4_fail(err, R4_ERR_LIMIT, "classification head %s.* has more than %d layers",
						   prefix, R4_HEAD_MAX_LAYERS);
		layers[*n].w = w;
		snprintf(name, sizeof(name), "%s.%d.bias", prefix, idx);
		layers[*n].b = r4_safetensors_find(st, name);
		(*n)++;
	}
	return R4_OK;
}

/* Check that the layers chain and are floats; fill dims */
static R4Status
CheckLayers(const HeadLayer *layers, int n, int *dims, R4Error *err)
{
	for (int i = 0; i < n; i++)
	{
		const R4StTensor *w = layers[i].w;
		const R4StTensor *b = layers[i].b;

		if (!r4_dtype_is_float(w->dtype) || (b != NULL && !r4_dtype_is_float(b->dtype)))
			return r4_fail(err, R4_ERR_UNSUPPORTED, "classification head tensor %s has dtype %s; F32, F16 or BF16 needed",
						   w->name, r4_dtype_name(!r4_dtype_is_float(w->dtype) ? w->dtype : b->dtype));
		if (w->ndim != 2 || w->shape[0] < 1 || w->shape[1] < 1 ||
			w->shape[0] > 1 << 20 || w->shape[1] > 1 << 20)
			return r4_fail(err, R4_ERR_MISMATCH, "classification head weight %s must be a non-empty matrix [out, in]",
						   w->name);
		if (i == 0)
			dims[0] = (int) w->shape[1];
		else if (w->shape[1] != dims[i])
			return r4_fail(err, R4_ERR_MISMATCH,
						   "classification head layer %s takes %lld inputs but the layer before gives %d",
						   w->name, (long long) w->shape[1], dims[i]);
		dims[i + 1] = (int) w->shape[0];
		if (b != NULL && (b->ndim != 1 || b->shape[0] != w->shape[0]))
			return r4_fail(err, R4_ERR_MISMATCH, "classification head bias %s must have shape [%lld]",
						   b->name, (long long) w->shape[0]);
	}
	return R4_OK;
}

/* The layers of the head st holds: head.* first, else fc.* */
static R4Status
FindLayers(const R4SafeTensors *st, HeadLayer *layers, int *n, int *dims, R4Error *err)
{
	R4Status	rc = CollectLayers(st, "head", layers, n, err);

	if (rc == R4_OK && *n == 0)
		rc = CollectLayers(st, "fc", layers, n, err);
	if (rc == R4_OK && *n > 0)
		rc = CheckLayers(layers, *n, dims, err);
	return rc;
}

R4Status
r4_head_find(const R4SafeTensors *st, int *layers, int *in_dim, int *classes, R4Error *err)
{
	HeadLayer	l[R4_HEAD_MAX_LAYERS];
	int			dims[R4_HEAD_MAX_LAYERS + 1];
	int			n = 0;
	R4Status	rc = FindLayers(st, l, &n, dims, err);

	*layers = rc == R4_OK ? n : 0;
	*in_dim = rc == R4_OK && n > 0 ? dims[0] : 0;
	*classes = rc == R4_OK && n > 0 ? dims[n] : 0;
	return rc;
}

R4Status
r4_head_build(const R4SafeTensors *st, bool multilabel, R4Head **out, R4Error *err)
{
	HeadLayer	l[R4_HEAD_MAX_LAYERS];
	R4Head	   *h;
	size_t		total = 0,
				off = 0,
				widest = 0;
	int			n = 0;
	R4Status	rc;

	*out = NULL;
	h = r4_alloc_zero(sizeof(*h));
	if (h == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory building the classification head");
	if ((rc = FindLayers(st, l, &n, h->dims, err)) != R4_OK)
		goto fail;
	if (n == 0)
	{
		rc = r4_fail(err, R4_ERR_INVALID, "the model has no classification head (head.* or fc.* linear layers)");
		goto fail;
	}
	for (int i = 0; i < n; i++)
	{
		total += (size_t) h->dims[i] * h->dims[i + 1] + (l[i].b ? (size_t) h->dims[i + 1] : 0);
		if ((size_t) h->dims[i + 1] > widest)
			widest = h->dims[i + 1];
	}
	h->block = r4_alloc(total * sizeof(float));
	h->scratch_len = 2 * widest;
	h->scratch = r4_alloc(h->scratch_len * sizeof(float));
	if (h->block == NULL || h->scratch == NULL)
	{
		rc = r4_fail(err, R4_ERR_NOMEM, "out of memory building the classification head");
		goto fail;
	}
	for (int i = 0; i < n; i++)
	{
		h->w[i] = h->block + off;
		if ((rc = r4_tensor_to_f32_finite(l[i].w, h->w[i], err)) != R4_OK)
			goto fail;
		off += (size_t) h->dims[i] * h->dims[i + 1];
		if (l[i].b != NULL)
		{
			h->b[i] = h->block + off;
			if ((rc = r4_tensor_to_f32_finite(l[i].b, h->b[i], err)) != R4_OK)
				goto fail;
			off += h->dims[i + 1];
		}
	}
	h->nlayers = n;
	h->params = total;
	h->multilabel = multilabel;
	*out = h;
	return R4_OK;

fail:
	r4_head_free(h);
	return rc;
}

/* Turn one row of logits into probabilities in place */
static void
Probabilities(float *z, int k, bool multilabel)
{
	if (multilabel)
	{
		for (int i = 0; i < k; i++)
			z[i] = (float) (1.0 / (1.0 + exp(-(double) z[i])));
		return;
	}
	{
		double		mx = -INFINITY,
					sum = 0.0;

		for (int i = 0; i < k; i++)
			if (z[i] > mx)
				mx = z[i];
		for (int i = 0; i < k; i++)
			sum += exp((double) z[i] - mx);
		for (int i = 0; i < k; i++)
			z[i] = (float) (exp((double) z[i] - mx) / sum);
	}
}

R4Status
r4_head_forward(R4Head *h, const float *x, int B, float *probs, R4Error *err)
{
	int			k = h->dims[h->nlayers];

	if (B < 1)
		return r4_fail(err, R4_ERR_RANGE, "batch size %d is below 1", B);
	/* Row by row: heads are tiny next to the backbone, and this needs no batch-sized buffer */
	for (int r = 0; r < B; r++)
	{
		const float *in = x + (size_t) r * h->dims[0];
		float	   *bufs[2] = {h->scratch, h->scratch + h->scratch_len / 2};

		for (int i = 0; i < h->nlayers; i++)
		{
			float	   *o = i == h->nlayers - 1 ? probs + (size_t) r * k : bufs[i % 2];

			r4_linear(o, in, h->w[i], h->b[i], 1, h->dims[i], h->dims[i + 1], false);
			if (i < h->nlayers - 1)
				for (int j = 0; j < h->dims[i + 1]; j++)
					o[j] = o[j] > 0.0f ? o[j] : 0.0f;
			in = o;
		}
		Probabilities(probs + (size_t) r * k, k, h->multilabel);
	}
	return R4_OK;
}

int
r4_head_in_dim(const R4Head *h)
{
	return h->dims[0];
}

int
r4_head_classes(const R4Head *h)
{
	return h->dims[h->nlayers];
}

size_t
r4_head_param_count(const R4Head *h)
{
	return h->params;
}

void
r4_head_free(R4Head *h)
{
	if (h == NULL)
		return;
	r4_free(h->block);
	r4_free(h->scratch);
	r4_free(h);
}
