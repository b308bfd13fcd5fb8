/*
 * model_config.c — resolve a model's configuration from its weight shapes,
 * the safetensors metadata and the load-time configuration object.
 */
#include "rai4eo/model_config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_NAME 96				/* longest required tensor name, with room */
#define MISSING_LISTED 5		/* missing tensors named in the message */

/* Keys a configuration object may hold; anything else is a typo. */
static const char *const known_keys[] = {
	"arch", "num_heads", "ln_eps", "img_size", "bands", "scale", "mean", "std",
	"input", "n_last_blocks", "avgpool", "change_threshold",
	"embed_dim", "depth", "patch_size", "in_chans", "mlp_hidden", "out_dim",
	NULL
};

/* The per-block tensors of a DINO/timm ViT, after "blocks.N.". */
static const char *const block_tensors[] = {
	"norm1.weight", "norm1.bias",
	"attn.qkv.weight", "attn.qkv.bias",
	"attn.proj.weight", "attn.proj.bias",
	"norm2.weight", "norm2.bias",
	"mlp.fc1.weight", "mlp.fc1.bias",
	"mlp.fc2.weight", "mlp.fc2.bias",
	NULL
};

static const char *const global_tensors[] = {
	"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
	"norm.weight", "norm.bias",
	NULL
};

/* One configuration value, from the configuration object or the metadata. */
typedef struct ConfigValue
{
	const R4Json *v;			/* NULL when the key is given nowhere */
	R4Json	   *owned;			/* parsed metadata text, freed by release_value */
	R4Json		word;			/* a metadata word taken as a string */
	const char *origin;			/* "configuration" or "metadata" */
} ConfigValue;

/* Name an architecture. */
const char *
r4_arch_name(R4Arch arch)
{
	switch (arch)
	{
		case R4_ARCH_VIT:
			return "vit";
		case R4_ARCH_RESNET:
			return "resnet";
	}
	return "unknown";
}

/* Free what lookup_value parsed. */
static void
release_value(ConfigValue *cv)
{
	r4_json_free(cv->owned);
	cv->owned = NULL;
	cv->v = NULL;
}

/*
 * Find key in the configuration object, else in the metadata.  Metadata
 * values are JSON text, except that words_ok keys may hold a bare word.
 */
static R4Status
lookup_value(const R4SafeTensors *st, const R4Json *config, const char *key,
			 bool words_ok, ConfigValue *cv, R4Error *err)
{
	const char *text;
	const char *p;
	R4Status	rc;

	memset(cv, 0, sizeof(*cv));
	if (config != NULL && (cv->v = r4_json_get(config, key)) != NULL)
	{
		cv->origin = "configuration";
		return R4_OK;
	}
	text = st != NULL ? r4_safetensors_meta(st, key) : NULL;
	if (text == NULL)
		return R4_OK;
	cv->origin = "metadata";
	for (p = text; *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'; p++)
		;
	if (words_ok && *p != '"')
	{
		cv->word.type = R4J_STRING;
		cv->word.string = (char *) text;
		cv->word.string_len = strlen(text);
		cv->v = &cv->word;
		return R4_OK;
	}
	rc = r4_json_parse(text, strlen(text), &cv->owned, err);
	if (rc != R4_OK)
	{
		char		excerpt[64];

		if (rc == R4_ERR_NOMEM)
			return rc;
		r4_text_excerpt(text, strlen(text), excerpt, sizeof(excerpt));
		r4_fail(err, R4_ERR_INVALID,
				"metadata value of \"%s\" is not valid JSON: \"%s\"", key, excerpt);
		return r4_fail_detail(err, "safetensors metadata values are strings holding JSON text, e.g. \"bands\": \"[1,2,3]\"");
	}
	cv->v = cv->owned;
	return R4_OK;
}

/* Read an integer value within [lo, hi]. */
static R4Status
value_int(const ConfigValue *cv, const char *key, int64_t lo, int64_t hi,
		  int *out, R4Error *err)
{
	int64_t		v;

	if (cv->v->type != R4J_NUMBER || !r4_json_get_int64(cv->v, &v))
		return r4_fail(err, R4_ERR_INVALID, "\"%s\" in the %s must be an integer",
					   key, cv->origin);
	if (v < lo || v > hi)
		return r4_fail(err, R4_ERR_INVALID,
					   "\"%s\" in the %s is %lld, outside %lld..%lld",
					   key, cv->origin, (long long) v, (long long) lo, (long long) hi);
	*out = (int) v;
	return R4_OK;
}

/* Read a finite number. */
static R4Status
value_number(const R4Json *v, const ConfigValue *cv, const char *key,
			 double *out, R4Error *err)
{
	if (v->type != R4J_NUMBER || !isfinite(v->number))
		return r4_fail(err, R4_ERR_INVALID, "\"%s\" in the %s must be a number or a list of numbers",
					   key, cv->origin);
	*out = v->number;
	return R4_OK;
}

/*
 * Read mean or std: one number for every channel, or a list of in_chans
 * numbers.  positive demands values > 0.
 */
static R4Status
value_channels(const ConfigValue *cv, const char *key, int in_chans,
			   bool positive, double *out, R4Error *err)
{
	const R4Json *v = cv->v;
	R4Status	rc;

	if (v->type == R4J_NUMBER)
	{
		double		x = 0.0;

		if ((rc = value_number(v, cv, key, &x, err)) != R4_OK)
			return rc;
		for (int c = 0; c < in_chans; c++)
			out[c] = x;
	}
	else if (v->type == R4J_ARRAY)
	{
		if (v->count == 1)
		{
			double		x = 0.0;

			if ((rc = value_number(&v->items[0], cv, key, &x, err)) != R4_OK)
				return rc;
			for (int c = 0; c < in_chans; c++)
				out[c] = x;
		}
		else if (v->count != (size_t) in_chans)
			return r4_fail(err, R4_ERR_MISMATCH,
						   "\"%s\" in the %s has %zu values but the model has %d input channels",
						   key, cv->origin, v->count, in_chans);
		else
			for (int c = 0; c < in_chans; c++)
				if ((rc = value_number(&v->items[c], cv, key, &out[c], err)) != R4_OK)
					return rc;
	}
	else
		return r4_fail(err, R4_ERR_INVALID, "\"%s\" in the %s must be a number or a list of numbers",
					   key, cv->origin);
	if (positive)
		for (int c = 0; c < in_chans; c++)
			if (!(out[c] > 0.0))
				return r4_fail(err, R4_ERR_INVALID,
							   "\"%s\" in the %s must be greater than zero (channel %d is %g)",
							   key, cv->origin, c + 1, out[c]);
	return R4_OK;
}

/* Read the band list: one band number per input channel. */
static R4Status
value_bands(const ConfigValue *cv, int in_chans, int *bands, R4Error *err)
{
	const R4Json *v = cv->v;
	const R4Json *items = v;
	size_t		count = 1;

	if (v->type == R4J_ARRAY)
	{
		items = v->items;
		count = v->count;
	}
	else if (v->type != R4J_NUMBER)
		return r4_fail(err, R4_ERR_INVALID, "\"bands\" in the %s must be a list of band numbers",
					   cv->origin);
	if (count != (size_t) in_chans)
		return r4_fail(err, R4_ERR_MISMATCH,
					   "\"bands\" in the %s lists %zu bands but the model has %d input channels",
					   cv->origin, count, in_chans);
	for (size_t i = 0; i < count; i++)
	{
		int64_t		b;

		if (items[i].type != R4J_NUMBER || !r4_json_get_int64(&items[i], &b))
			return r4_fail(err, R4_ERR_INVALID, "\"bands\" in the %s must hold integers",
						   cv->origin);
		if (b < 1 || b > 65535)
			return r4_fail(err, R4_ERR_INVALID,
						   "\"bands\" in the %s holds band %lld; band numbers start at 1",
						   cv->origin, (long long) b);
		bands[i] = (int) b;
	}
	return R4_OK;
}

/* Read a boolean (true/false, or 0/1 for hand-written metadata). */
static R4Status
value_bool(const ConfigValue *cv, const char *key, bool *out, R4Error *err)
{
	int64_t		v;

	if (cv->v->type == R4J_TRUE || cv->v->type == R4J_FALSE)
		*out = cv->v->type == R4J_TRUE;
	else if (cv->v->type == R4J_NUMBER && r4_json_get_int64(cv->v, &v) && (v == 0 || v == 1))
		*out = v == 1;
	else
		return r4_fail(err, R4_ERR_INVALID, "\"%s\" in the %s must be true or false",
					   key, cv->origin);
	return R4_OK;
}

/* Format a tensor shape as "[1, 197, 384]". */
static void
format_shape(const int64_t *shape, int ndim, char *buf, size_t size)
{
	size_t		used = 0;

	used += snprintf(buf, size, "[");
	for (int i = 0; i < ndim && used < size; i++)
		used += snprintf(buf + used, size - used, "%s%lld", i ? ", " : "",
						 (long long) shape[i]);
	if (used < size)
		snprintf(buf + used, size - used, "]");
}

/* Demand a tensor of exactly the given shape. */
static R4Status
expect_shape(const R4SafeTensors *st, const char *name, int ndim,
			 const int64_t *want, R4Error *err)
{
	const R4StTensor *t = r4_safetensors_find(st, name);
	char		have_s[96];
	char		want_s[96];
	bool		ok;

	ok = t->ndim == ndim;
	for (int i = 0; ok && i < ndim; i++)
		ok = t->shape[i] == want[i];
	if (ok)
		return R4_OK;
	format_shape(t->shape, t->ndim, have_s, sizeof(have_s));
	format_shape(want, ndim, want_s, sizeof(want_s));
	return r4_fail(err, R4_ERR_MISMATCH, "tensor \"%s\" has shape %s, expected %s",
				   name, have_s, want_s);
}

/* Parse "blocks.N." at the start of name; N in canonical decimal. */
static bool
block_index(const char *name, long *index)
{
	const char *p;
	long		n = 0;

	if (strncmp(name, "blocks.", 7) != 0)
		return false;
	p = name + 7;
	if (*p < '0' || *p > '9' || (*p == '0' && p[1] != '.'))
		return false;
	for (; *p >= '0' && *p <= '9'; p++)
	{
		n = n * 10 + (*p - '0');
		if (n > 100000000L)
			return false;
	}
	if (*p != '.')
		return false;
	*index = n;
	return true;
}

/* Reject timm ViT variants whose extra tensors change the computation. */
static R4Status
check_variant(const R4SafeTensors *st, R4Error *err)
{
	static const char *const top[] = {"reg_token", "dist_token", NULL};
	static const char *const top_prefix[] = {"norm_pre.", "fc_norm.", NULL};
	static const char *const in_block[] = {".ls1.", ".ls2.", ".q_norm.", ".k_norm.", NULL};

	for (size_t i = 0; i < st->count; i++)
	{
		const char *name = st->tensors[i].name;
		long		idx;

		for (int k = 0; top[k]; k++)
			if (strcmp(name, top[k]) == 0)
				goto unsupported;
		for (int k = 0; top_prefix[k]; k++)
			if (strncmp(name, top_prefix[k], strlen(top_prefix[k])) == 0)
				goto unsupported;
		if (block_index(name, &idx))
			for (int k = 0; in_block[k]; k++)
				if (strstr(name, in_block[k]) != NULL)
					goto unsupported;
		continue;
unsupported:
		r4_fail(err, R4_ERR_UNSUPPORTED,
				"tensor \"%s\" belongs to a ViT variant the engine does not implement", name);
		return r4_fail_detail(err, "supported: DINO/timm ViT without LayerScale, q/k norm, register or distillation tokens, pre-norm or fc_norm");
	}
	return R4_OK;
}

/* Suggest stripping a prefix when the ViT tensors are there under one. */
static void
hint_prefix(const R4SafeTensors *st, R4Error *err)
{
	const char *want = "patch_embed.proj.weight";
	size_t		wl = strlen(want);

	for (size_t i = 0; i < st->count; i++)
	{
		const char *name = st->tensors[i].name;
		size_t		nl = strlen(name);

		if (nl > wl && strcmp(name + nl - wl, want) == 0 && name[nl - wl - 1] == '.')
		{
			r4_fail_detail(err, "the tensor names carry the prefix \"%.*s\"; strip it when converting the checkpoint",
						   (int) (nl - wl), name);
			return;
		}
	}
	r4_fail_detail(err, "expected DINO/timm ViT tensor names such as \"blocks.0.attn.qkv.weight\"");
}

/* Check that every required ViT tensor is present, naming the missing ones. */
static R4Status
check_present(const R4SafeTensors *st, int depth, R4Error *err)
{
	char		listed[MISSING_LISTED][MAX_NAME];
	int			missing = 0;
	char		name[MAX_NAME];
	char		msg[R4_MESSAGE_LEN];
	size_t		used;

	for (int k = 0; global_tensors[k]; k++)
		if (r4_safetensors_find(st, global_tensors[k]) == NULL)
		{
			if (missing < MISSING_LISTED)
				snprintf(listed[missing], MAX_NAME, "%s", global_tensors[k]);
			missing++;
		}
	for (int b = 0; b < depth; b++)
		for (int k = 0; block_tensors[k]; k++)
		{
			snprintf(name, sizeof(name), "blocks.%d.%s", b, block_tensors[k]);
			if (r4_safetensors_find(st, name) == NULL)
			{
				if (missing < MISSING_LISTED)
					snprintf(listed[missing], MAX_NAME, "%s", name);
				missing++;
			}
		}
	if (missing == 0)
		return R4_OK;
	used = snprintf(msg, sizeof(msg), "model weights lack %d required tensor%s: ",
					missing, missing == 1 ? "" : "s");
	for (int i = 0; i < missing && i < MISSING_LISTED && used < sizeof(msg); i++)
		used += snprintf(msg + used, sizeof(msg) - used, "%s%s", i ? ", " : "", listed[i]);
	if (missing > MISSING_LISTED && used < sizeof(msg))
		snprintf(msg + used, sizeof(msg) - used, " and %d more", missing - MISSING_LISTED);
	r4_fail(err, R4_ERR_INVALID, "%s", msg);
	hint_prefix(st, err);
	return R4_ERR_INVALID;
}

/* Check that every required tensor holds floats the engine can convert. */
static R4Status
check_dtypes(const R4SafeTensors *st, int depth, R4Error *err)
{
	char		name[MAX_NAME];

	for (int b = -1; b < depth; b++)
		for (int k = 0; (b < 0 ? global_tensors[k] : block_tensors[k]) != NULL; k++)
		{
			const R4StTensor *t;

			if (b < 0)
				snprintf(name, sizeof(name), "%s", global_tensors[k]);
			else
				snprintf(name, sizeof(name), "blocks.%d.%s", b, block_tensors[k]);
			t = r4_safetensors_find(st, name);
			if (!r4_dtype_is_float(t->dtype))
			{
				r4_fail(err, R4_ERR_UNSUPPORTED, "tensor \"%s\" has dtype %s", name,
						r4_dtype_name(t->dtype));
				return r4_fail_detail(err, "model weights must be F32, F16 or BF16");
			}
		}
	return R4_OK;
}

/* Derive the ViT dimensions from the shapes and check every tensor's shape. */
static R4Status
check_vit_shapes(const R4SafeTensors *st, R4ModelConfig *cfg, R4Error *err)
{
	const R4StTensor *pw = r4_safetensors_find(st, "patch_embed.proj.weight");
	const R4StTensor *pos = r4_safetensors_find(st, "pos_embed");
	const R4StTensor *fc1 = r4_safetensors_find(st, "blocks.0.mlp.fc1.weight");
	char		shape_s[96];
	char		name[MAX_NAME];
	int64_t		D,
				C,
				P,
				Hd,
				N,
				g;
	R4Status	rc;

	if (pw->ndim != 4 || pw->shape[0] < 1 || pw->shape[1] < 1 || pw->shape[2] < 1 ||
		pw->shape[2] != pw->shape[3])
	{
		format_shape(pw->shape, pw->ndim, shape_s, sizeof(shape_s));
		return r4_fail(err, R4_ERR_MISMATCH,
					   "tensor \"patch_embed.proj.weight\" has shape %s, expected [embed_dim, in_chans, patch, patch]",
					   shape_s);
	}
	D = pw->shape[0];
	C = pw->shape[1];
	P = pw->shape[2];
	if (D > R4_MAX_EMBED_DIM)
		return r4_fail(err, R4_ERR_LIMIT, "embed_dim %lld exceeds the limit of %d",
					   (long long) D, R4_MAX_EMBED_DIM);
	if (C > R4_MAX_CHANNELS)
		return r4_fail(err, R4_ERR_LIMIT, "the model has %lld input channels; the limit is %d",
					   (long long) C, R4_MAX_CHANNELS);
	if (P > R4_MAX_PATCH)
		return r4_fail(err, R4_ERR_LIMIT, "patch size %lld exceeds the limit of %d",
					   (long long) P, R4_MAX_PATCH);

	if (pos->ndim != 3 || pos->shape[0] != 1 || pos->shape[1] < 2 || pos->shape[2] != D)
	{
		format_shape(pos->shape, pos->ndim, shape_s, sizeof(shape_s));
		return r4_fail(err, R4_ERR_MISMATCH,
					   "tensor \"pos_embed\" has shape %s, expected [1, tokens, %lld]",
					   shape_s, (long long) D);
	}
	N = pos->shape[1] - 1;
	g = (int64_t) llround(sqrt((double) N));
	if (g * g != N || g > 65535)
		return r4_fail(err, R4_ERR_MISMATCH,
					   "tensor \"pos_embed\" has %lld patch positions, which is not a square grid",
					   (long long) N);

	if (fc1->ndim != 2 || fc1->shape[1] != D || fc1->shape[0] < 1)
	{
		format_shape(fc1->shape, fc1->ndim, shape_s, sizeof(shape_s));
		return r4_fail(err, R4_ERR_MISMATCH,
					   "tensor \"blocks.0.mlp.fc1.weight\" has shape %s, expected [hidden, %lld]",
					   shape_s, (long long) D);
	}
	Hd = fc1->shape[0];
	if (Hd > 4 * (int64_t) R4_MAX_EMBED_DIM)
		return r4_fail(err, R4_ERR_LIMIT, "MLP width %lld exceeds the limit of %d",
					   (long long) Hd, 4 * R4_MAX_EMBED_DIM);

	cfg->embed_dim = (int) D;
	cfg->in_chans = (int) C;
	cfg->patch_size = (int) P;
	cfg->mlp_hidden = (int) Hd;
	cfg->pos_grid = (int) g;

	{
		const int64_t vec_d[1] = {D};
		const int64_t cls[3] = {1, 1, D};
		const int64_t pb[1] = {D};

		if ((rc = expect_shape(st, "cls_token", 3, cls, err)) != R4_OK ||
			(rc = expect_shape(st, "patch_embed.proj.bias", 1, pb, err)) != R4_OK ||
			(rc = expect_shape(st, "norm.weight", 1, vec_d, err)) != R4_OK ||
			(rc = expect_shape(st, "norm.bias", 1, vec_d, err)) != R4_OK)
			return rc;
	}
	for (int b = 0; b < cfg->depth; b++)
	{
		/* Shapes in block_tensors order. */
		const int64_t shapes[12][2] = {
			{D, 0}, {D, 0}, {3 * D, D}, {3 * D, 0}, {D, D}, {D, 0},
			{D, 0}, {D, 0}, {Hd, D}, {Hd, 0}, {D, Hd}, {D, 0}
		};

		for (int k = 0; block_tensors[k]; k++)
		{
			snprintf(name, sizeof(name), "blocks.%d.%s", b, block_tensors[k]);
			rc = expect_shape(st, name, shapes[k][1] ? 2 : 1, shapes[k], err);
			if (rc != R4_OK)
				return rc;
		}
	}
	return R4_OK;
}

/* Report whether a configuration key is one we know. */
static bool
known_key(const char *key)
{
	for (int k = 0; known_keys[k]; k++)
		if (strcmp(known_keys[k], key) == 0)
			return true;
	return false;
}

/* Resolve the architecture from "arch" or from the tensors present. */
static R4Status
resolve_arch(const R4SafeTensors *st, const R4Json *config, R4Arch *arch, R4Error *err)
{
	ConfigValue cv;
	R4Status	rc;

	if ((rc = lookup_value(st, config, "arch", true, &cv, err)) != R4_OK)
		return rc;
	if (cv.v == NULL)
	{
		if (r4_safetensors_find(st, "patch_embed.proj.weight") != NULL)
		{
			*arch = R4_ARCH_VIT;
			return R4_OK;
		}
		r4_fail(err, R4_ERR_INVALID,
				"cannot tell the model architecture: no \"arch\" given and no ViT tensors found");
		hint_prefix(st, err);
		return R4_ERR_INVALID;
	}
	if (cv.v->type != R4J_STRING)
	{
		rc = r4_fail(err, R4_ERR_INVALID, "\"arch\" in the %s must be a string", cv.origin);
		release_value(&cv);
		return rc;
	}
	if (strcasecmp(cv.v->string, "vit") == 0)
	{
		*arch = R4_ARCH_VIT;
		rc = R4_OK;
	}
	else if (strncasecmp(cv.v->string, "resnet", 6) == 0)
		rc = r4_fail(err, R4_ERR_UNSUPPORTED, "architecture \"%.40s\" is not supported yet",
					 cv.v->string);
	else
	{
		char		excerpt[48];

		r4_text_excerpt(cv.v->string, cv.v->string_len, excerpt, sizeof(excerpt));
		r4_fail(err, R4_ERR_INVALID, "unknown architecture \"%s\" in the %s", excerpt, cv.origin);
		rc = r4_fail_detail(err, "known architectures: vit");
	}
	release_value(&cv);
	return rc;
}

/* Check a derived value the configuration asserts. */
static R4Status
assert_derived(const R4SafeTensors *st, const R4Json *config, const char *key,
			   int actual, R4Error *err)
{
	ConfigValue cv;
	int64_t		v;
	R4Status	rc;

	if ((rc = lookup_value(st, config, key, false, &cv, err)) != R4_OK)
		return rc;
	if (cv.v == NULL)
		return R4_OK;
	/* Metadata is informational; only the configuration object asserts. */
	if (strcmp(cv.origin, "metadata") == 0)
	{
		release_value(&cv);
		return R4_OK;
	}
	if (cv.v->type != R4J_NUMBER || !r4_json_get_int64(cv.v, &v))
		rc = r4_fail(err, R4_ERR_INVALID, "\"%s\" in the %s must be an integer", key, cv.origin);
	else if (v != actual)
		rc = r4_fail(err, R4_ERR_MISMATCH, "\"%s\" in the %s is %lld but the weights give %d",
					 key, cv.origin, (long long) v, actual);
	release_value(&cv);
	return rc;
}

/* Apply the configuration keys of a ViT on top of the defaults. */
static R4Status
apply_vit_keys(const R4SafeTensors *st, const R4Json *config, R4ModelConfig *cfg, R4Error *err)
{
	ConfigValue cv;
	R4Status	rc;
	int			C = cfg->in_chans;

#define LOOKUP(key, words) \
	do { if ((rc = lookup_value(st, config, (key), (words), &cv, err)) != R4_OK) return rc; } while (0)
#define DONE() \
	do { release_value(&cv); if (rc != R4_OK) return rc; } while (0)

	/* num_heads */
	LOOKUP("num_heads", false);
	if (cv.v != NULL)
	{
		rc = value_int(&cv, "num_heads", 1, cfg->embed_dim, &cfg->num_heads, err);
		DONE();
		if (cfg->embed_dim % cfg->num_heads != 0)
			return r4_fail(err, R4_ERR_MISMATCH, "num_heads %d does not divide embed_dim %d",
						   cfg->num_heads, cfg->embed_dim);
	}
	else
	{
		if (cfg->embed_dim % 64 != 0)
		{
			r4_fail(err, R4_ERR_INVALID,
					"num_heads not given and embed_dim %d is not a multiple of 64", cfg->embed_dim);
			return r4_fail_detail(err, "give \"num_heads\" in the configuration");
		}
		cfg->num_heads = cfg->embed_dim / 64;
	}

	/* ln_eps */
	LOOKUP("ln_eps", false);
	if (cv.v != NULL)
	{
		rc = value_number(cv.v, &cv, "ln_eps", &cfg->ln_eps, err);
		if (rc == R4_OK && !(cfg->ln_eps > 0.0 && cfg->ln_eps < 1.0))
			rc = r4_fail(err, R4_ERR_INVALID, "\"ln_eps\" in the %s must be in (0, 1)", cv.origin);
		DONE();
	}

	/* img_size */
	LOOKUP("img_size", false);
	if (cv.v != NULL)
	{
		rc = value_int(&cv, "img_size", cfg->patch_size, 65535, &cfg->img_size, err);
		DONE();
	}

	/* bands */
	LOOKUP("bands", false);
	if (cv.v != NULL)
	{
		rc = value_bands(&cv, C, cfg->bands, err);
		DONE();
	}

	/* scale */
	LOOKUP("scale", false);
	if (cv.v != NULL)
	{
		rc = value_number(cv.v, &cv, "scale", &cfg->scale, err);
		if (rc == R4_OK && cfg->scale == 0.0)
			rc = r4_fail(err, R4_ERR_INVALID, "\"scale\" in the %s must not be zero", cv.origin);
		DONE();
	}

	/* mean, std */
	LOOKUP("mean", false);
	if (cv.v != NULL)
	{
		rc = value_channels(&cv, "mean", C, false, cfg->mean, err);
		DONE();
	}
	LOOKUP("std", false);
	if (cv.v != NULL)
	{
		rc = value_channels(&cv, "std", C, true, cfg->std, err);
		DONE();
	}

	/* input */
	LOOKUP("input", true);
	if (cv.v != NULL)
	{
		if (cv.v->type == R4J_STRING && strcmp(cv.v->string, "native") == 0)
			cfg->input = R4_INPUT_NATIVE;
		else if (cv.v->type == R4J_STRING && strcmp(cv.v->string, "resize") == 0)
			cfg->input = R4_INPUT_RESIZE;
		else
			rc = r4_fail(err, R4_ERR_INVALID, "\"input\" in the %s must be \"native\" or \"resize\"",
						 cv.origin);
		DONE();
	}

	/* n_last_blocks */
	LOOKUP("n_last_blocks", false);
	if (cv.v != NULL)
	{
		rc = value_int(&cv, "n_last_blocks", 1, cfg->depth, &cfg->n_last_blocks, err);
		DONE();
	}

	/* avgpool */
	LOOKUP("avgpool", false);
	if (cv.v != NULL)
	{
		rc = value_bool(&cv, "avgpool", &cfg->avgpool, err);
		DONE();
	}

	/* change_threshold */
	LOOKUP("change_threshold", false);
	if (cv.v != NULL)
	{
		if (cv.v->type == R4J_NULL)
			cfg->has_change_threshold = false;
		else
		{
			rc = value_number(cv.v, &cv, "change_threshold", &cfg->change_threshold, err);
			if (rc == R4_OK && !(cfg->change_threshold >= 0.0 && cfg->change_threshold <= 2.0))
				rc = r4_fail(err, R4_ERR_INVALID,
							 "\"change_threshold\" in the %s must be a cosine distance in [0, 2]",
							 cv.origin);
			cfg->has_change_threshold = rc == R4_OK;
		}
		DONE();
	}
#undef LOOKUP
#undef DONE

	cfg->out_dim = cfg->embed_dim * (cfg->n_last_blocks + (cfg->avgpool ? 1 : 0));

	if ((rc = assert_derived(st, config, "embed_dim", cfg->embed_dim, err)) != R4_OK ||
		(rc = assert_derived(st, config, "depth", cfg->depth, err)) != R4_OK ||
		(rc = assert_derived(st, config, "patch_size", cfg->patch_size, err)) != R4_OK ||
		(rc = assert_derived(st, config, "in_chans", cfg->in_chans, err)) != R4_OK ||
		(rc = assert_derived(st, config, "mlp_hidden", cfg->mlp_hidden, err)) != R4_OK ||
		(rc = assert_derived(st, config, "out_dim", cfg->out_dim, err)) != R4_OK)
		return rc;
	return R4_OK;
}

/* Resolve a model's configuration; see model_config.h for the rules. */
R4Status
r4_model_config_resolve(const R4SafeTensors *st, const R4Json *config,
						R4ModelConfig *out, R4Error *err)
{
	R4ModelConfig cfg;
	R4Status	rc;
	long		max_block = -1;

	if (st == NULL || out == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_model_config_resolve called without weights");
	if (config != NULL)
	{
		if (config->type != R4J_OBJECT)
			return r4_fail(err, R4_ERR_INVALID, "model configuration must be a JSON object");
		for (size_t i = 0; i < config->count; i++)
			if (strlen(config->keys[i]) != config->key_lens[i] || !known_key(config->keys[i]))
			{
				char		excerpt[64];

				r4_text_excerpt(config->keys[i], strlen(config->keys[i]), excerpt, sizeof(excerpt));
				r4_fail(err, R4_ERR_INVALID, "unknown configuration key \"%s\"", excerpt);
				return r4_fail_detail(err, "known keys: arch, num_heads, ln_eps, img_size, bands, scale, mean, std, input, n_last_blocks, avgpool, change_threshold");
			}
	}

	memset(&cfg, 0, sizeof(cfg));
	if ((rc = resolve_arch(st, config, &cfg.arch, err)) != R4_OK)
		return rc;

	/* Depth is the number of blocks.N present; block 0 is always required. */
	for (size_t i = 0; i < st->count; i++)
	{
		long		idx;

		if (block_index(st->tensors[i].name, &idx) && idx > max_block)
			max_block = idx;
	}
	if (max_block + 1 > R4_MAX_DEPTH)
		return r4_fail(err, R4_ERR_LIMIT, "the model has %ld blocks; the limit is %d",
					   max_block + 1, R4_MAX_DEPTH);
	cfg.depth = max_block < 0 ? 1 : (int) max_block + 1;

	if ((rc = check_present(st, cfg.depth, err)) != R4_OK ||
		(rc = check_dtypes(st, cfg.depth, err)) != R4_OK ||
		(rc = check_vit_shapes(st, &cfg, err)) != R4_OK ||
		(rc = check_variant(st, err)) != R4_OK)
		return rc;

	/* Defaults, then the keys. */
	cfg.ln_eps = 1e-6;
	cfg.img_size = cfg.pos_grid * cfg.patch_size;
	cfg.scale = 1.0;
	for (int c = 0; c < cfg.in_chans; c++)
	{
		cfg.bands[c] = c + 1;
		cfg.mean[c] = 0.0;
		cfg.std[c] = 1.0;
	}
	cfg.input = R4_INPUT_NATIVE;
	cfg.n_last_blocks = 1;
	cfg.avgpool = false;
	if ((rc = apply_vit_keys(st, config, &cfg, err)) != R4_OK)
		return rc;
	*out = cfg;
	return R4_OK;
}

/* A growing text buffer for the JSON writer. */
typedef struct TextBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;
} TextBuf;

/* Append formatted text, growing the buffer as needed. */
__attribute__((format(printf, 2, 3)))
static void
buf_printf(TextBuf *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	if (b->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
	{
		b->failed = true;
		return;
	}
	if ((size_t) n >= b->cap - b->len)
	{
		size_t		cap = b->cap;
		char	   *grown;

		while ((size_t) n >= cap - b->len)
			cap *= 2;
		grown = r4_alloc(cap);
		if (grown == NULL)
		{
			b->failed = true;
			return;
		}
		memcpy(grown, b->data, b->len);
		r4_free(b->data);
		b->data = grown;
		b->cap = cap;
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t) n;
}

/* Append the shortest decimal that reads back as the same double. */
static void
buf_double(TextBuf *b, double v)
{
	char		tmp[40];

	for (int prec = 1; prec <= 17; prec++)
	{
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	buf_printf(b, "%s", tmp);
}

/* Append a JSON list of per-channel doubles. */
static void
buf_double_list(TextBuf *b, const double *v, int n)
{
	buf_printf(b, "[");
	for (int i = 0; i < n; i++)
	{
		if (i)
			buf_printf(b, ",");
		buf_double(b, v[i]);
	}
	buf_printf(b, "]");
}

/* Write the resolved configuration as canonical JSON. */
char *
r4_model_config_to_json(const R4ModelConfig *cfg)
{
	TextBuf		b;

	b.cap = 512;
	b.len = 0;
	b.failed = false;
	b.data = r4_alloc(b.cap);
	if (b.data == NULL)
		return NULL;
	b.data[0] = '\0';
	buf_printf(&b, "{\"arch\":\"%s\",\"embed_dim\":%d,\"depth\":%d,\"patch_size\":%d,"
			   "\"in_chans\":%d,\"mlp_hidden\":%d,\"num_heads\":%d,\"ln_eps\":",
			   r4_arch_name(cfg->arch), cfg->embed_dim, cfg->depth, cfg->patch_size,
			   cfg->in_chans, cfg->mlp_hidden, cfg->num_heads);
	buf_double(&b, cfg->ln_eps);
	buf_printf(&b, ",\"img_size\":%d,\"bands\":[", cfg->img_size);
	for (int c = 0; c < cfg->in_chans; c++)
		buf_printf(&b, "%s%d", c ? "," : "", cfg->bands[c]);
	buf_printf(&b, "],\"scale\":");
	buf_double(&b, cfg->scale);
	buf_printf(&b, ",\"mean\":");
	buf_double_list(&b, cfg->mean, cfg->in_chans);
	buf_printf(&b, ",\"std\":");
	buf_double_list(&b, cfg->std, cfg->in_chans);
	buf_printf(&b, ",\"input\":\"%s\",\"n_last_blocks\":%d,\"avgpool\":%s,\"change_threshold\":",
			   cfg->input == R4_INPUT_RESIZE ? "resize" : "native",
			   cfg->n_last_blocks, cfg->avgpool ? "true" : "false");
	if (cfg->has_change_threshold)
		buf_double(&b, cfg->change_threshold);
	else
		buf_printf(&b, "null");
	buf_printf(&b, ",\"out_dim\":%d}", cfg->out_dim);
	if (b.failed)
	{
		r4_free(b.data);
		return NULL;
	}
	return b.data;
}
