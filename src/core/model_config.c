/*
 * model_config.c — resolve a model's configuration from its weight shapes,
 * the safetensors metadata and the load-time configuration object.
 */
#include "rai4eo/model_config.h"

#include "rai4eo/head.h"

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
	"arch", "num_heads", "ln_eps", "bn_eps", "img_size", "bands", "scale", "mean", "std",
	"input", "n_last_blocks", "avgpool", "change_threshold",
	"embed_dim", "depth", "patch_size", "in_chans", "mlp_hidden", "out_dim",
	"block", "layers", "width",
	"head", "classes", "multilabel", "output",
	NULL
};

/* Keys that only mean something for a ViT: "set" ones, then derived ones. */
static const char *const vit_only_keys[] = {"num_heads", "ln_eps", "n_last_blocks", "avgpool", NULL};
static const char *const vit_derived_keys[] = {"embed_dim", "depth", "patch_size", "mlp_hidden", NULL};

/* The same for a ResNet. */
static const char *const resnet_only_keys[] = {"bn_eps", NULL};
static const char *const resnet_derived_keys[] = {"block", "layers", "width", NULL};

/* The entries of every BatchNorm, after its prefix. */
static const char *const bn_entries[] = {"weight", "bias", "running_mean", "running_var", NULL};

/* Torchvision's standard ResNets, which "arch" may name to assert the layout. */
static const struct
{
	const char *name;
	bool		bottleneck;
	int			layers[R4_RESNET_STAGES];
}			resnet_variants[] = {
	{"resnet18", false, {2, 2, 2, 2}},
	{"resnet34", false, {3, 4, 6, 3}},
	{"resnet50", true, {3, 4, 6, 3}},
	{"resnet101", true, {3, 4, 23, 3}},
	{"resnet152", true, {3, 8, 36, 3}},
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
	for (int c = 0; c < in_chans; c++)
	{
		if (positive && !(out[c] > 0.0))
			return r4_fail(err, R4_ERR_INVALID,
						   "\"%s\" in the %s must be greater than zero (channel %d is %g)",
						   key, cv->origin, c + 1, out[c]);
		if (positive ? (out[c] < R4_NORM_MIN || out[c] > R4_NORM_MAX) : fabs(out[c]) > R4_NORM_MAX)
			return r4_fail(err, R4_ERR_INVALID,
						   "\"%s\" in the %s is %g for channel %d; it must lie in [%g, %g]",
						   key, cv->origin, out[c], c + 1, positive ? R4_NORM_MIN : -R4_NORM_MAX,
						   R4_NORM_MAX);
	}
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
	/* JSON booleans only: 1 or "yes" would be a guess at what was meant */
	if (cv->v->type == R4J_TRUE || cv->v->type == R4J_FALSE)
		*out = cv->v->type == R4J_TRUE;
	else
		return r4_fail(err, R4_ERR_INVALID, "\"%s\" in the %s must be true or false (a JSON boolean)",
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

/*
 * Suggest stripping a prefix when the anchor tensor of an architecture is
 * there under one, else say what names were expected.
 */
static void
hint_prefix(const R4SafeTensors *st, const char *anchor, const char *expected, R4Error *err)
{
	size_t		wl = strlen(anchor);

	for (size_t i = 0; i < st->count; i++)
	{
		const char *name = st->tensors[i].name;
		size_t		nl = strlen(name);

		if (nl > wl && strcmp(name + nl - wl, anchor) == 0 && name[nl - wl - 1] == '.')
		{
			r4_fail_detail(err, "the tensor names carry the prefix \"%.*s\"; strip it when converting the checkpoint",
						   (int) (nl - wl), name);
			return;
		}
	}
	r4_fail_detail(err, "%s", expected);
}

#define VIT_ANCHOR "patch_embed.proj.weight"
#define VIT_EXPECTED "expected DINO/timm ViT tensor names such as \"blocks.0.attn.qkv.weight\""
#define RESNET_ANCHOR "layer1.0.conv1.weight"
#define RESNET_EXPECTED "expected torchvision/timm ResNet tensor names such as \"layer1.0.conv1.weight\""

/* Required tensors found missing, the first few by name. */
typedef struct MissingList
{
	char		listed[MISSING_LISTED][MAX_NAME];
	int			count;
} MissingList;

/* Note name as missing if st lacks it. */
static void
need_tensor(const R4SafeTensors *st, const char *name, MissingList *ml)
{
	if (r4_safetensors_find(st, name) != NULL)
		return;
	if (ml->count < MISSING_LISTED)
		snprintf(ml->listed[ml->count], MAX_NAME, "%.*s", MAX_NAME - 1, name);
	ml->count++;
}

/* Report the missing tensors (if any) with a hint about prefixes. */
static R4Status
report_missing(const R4SafeTensors *st, const MissingList *ml, const char *anchor,
			   const char *expected, R4Error *err)
{
	char		msg[R4_MESSAGE_LEN];
	size_t		used;

	if (ml->count == 0)
		return R4_OK;
	used = snprintf(msg, sizeof(msg), "model weights lack %d required tensor%s: ",
					ml->count, ml->count == 1 ? "" : "s");
	for (int i = 0; i < ml->count && i < MISSING_LISTED && used < sizeof(msg); i++)
		used += snprintf(msg + used, sizeof(msg) - used, "%s%s", i ? ", " : "", ml->listed[i]);
	if (ml->count > MISSING_LISTED && used < sizeof(msg))
		snprintf(msg + used, sizeof(msg) - used, " and %d more", ml->count - MISSING_LISTED);
	r4_fail(err, R4_ERR_INVALID, "%s", msg);
	hint_prefix(st, anchor, expected, err);
	return R4_ERR_INVALID;
}

/* Check that every required ViT tensor is present, naming the missing ones. */
static R4Status
check_present(const R4SafeTensors *st, int depth, R4Error *err)
{
	MissingList ml;
	char		name[MAX_NAME];

	ml.count = 0;
	for (int k = 0; global_tensors[k]; k++)
		need_tensor(st, global_tensors[k], &ml);
	for (int b = 0; b < depth; b++)
		for (int k = 0; block_tensors[k]; k++)
		{
			snprintf(name, sizeof(name), "blocks.%d.%s", b, block_tensors[k]);
			need_tensor(st, name, &ml);
		}
	return report_missing(st, &ml, VIT_ANCHOR, VIT_EXPECTED, err);
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

/* Report whether key is in a NULL-terminated list. */
static bool
in_list(const char *const *list, const char *key)
{
	for (int k = 0; list[k]; k++)
		if (strcmp(list[k], key) == 0)
			return true;
	return false;
}

/* Report whether a configuration key is one we know. */
static bool
known_key(const char *key)
{
	return in_list(known_keys, key);
}

/* The architecture, and which standard ResNet "arch" named, if one. */
typedef struct ArchChoice
{
	R4Arch		arch;
	int			variant;		/* index into resnet_variants, or -1 */
	const char *origin;			/* where "arch" was given; NULL when detected */
} ArchChoice;

/* Explain what tensor names were expected when no architecture fits. */
static void
hint_either(const R4SafeTensors *st, R4Error *err)
{
	size_t		vl = strlen(VIT_ANCHOR);
	size_t		rl = strlen(RESNET_ANCHOR);

	/* Name a prefix if either anchor sits under one. */
	for (size_t i = 0; i < st->count; i++)
	{
		const char *name = st->tensors[i].name;
		size_t		nl = strlen(name);

		if ((nl > vl && strcmp(name + nl - vl, VIT_ANCHOR) == 0 && name[nl - vl - 1] == '.'))
		{
			hint_prefix(st, VIT_ANCHOR, VIT_EXPECTED, err);
			return;
		}
		if ((nl > rl && strcmp(name + nl - rl, RESNET_ANCHOR) == 0 && name[nl - rl - 1] == '.'))
		{
			hint_prefix(st, RESNET_ANCHOR, RESNET_EXPECTED, err);
			return;
		}
	}
	r4_fail_detail(err, "expected DINO/timm ViT tensor names such as \"blocks.0.attn.qkv.weight\" or torchvision/timm ResNet names such as \"layer1.0.conv1.weight\"");
}

/* Resolve the architecture from "arch" or from the tensors present. */
static R4Status
resolve_arch(const R4SafeTensors *st, const R4Json *config, ArchChoice *ac, R4Error *err)
{
	ConfigValue cv;
	R4Status	rc = R4_OK;
	bool		vit = r4_safetensors_find(st, VIT_ANCHOR) != NULL;
	bool		resnet = r4_safetensors_find(st, RESNET_ANCHOR) != NULL;

	ac->arch = R4_ARCH_VIT;
	ac->variant = -1;
	ac->origin = NULL;
	if ((rc = lookup_value(st, config, "arch", true, &cv, err)) != R4_OK)
		return rc;
	if (cv.v == NULL)
	{
		if (vit && resnet)
		{
			r4_fail(err, R4_ERR_INVALID,
					"cannot tell the model architecture: the weights hold both ViT and ResNet tensors");
			return r4_fail_detail(err, "give \"arch\": \"vit\" or \"resnet\" in the configuration");
		}
		if (vit || resnet)
		{
			ac->arch = vit ? R4_ARCH_VIT : R4_ARCH_RESNET;
			return R4_OK;
		}
		r4_fail(err, R4_ERR_INVALID,
				"cannot tell the model architecture: no \"arch\" given and no ViT or ResNet tensors found");
		hint_either(st, err);
		return R4_ERR_INVALID;
	}
	if (cv.v->type != R4J_STRING)
	{
		rc = r4_fail(err, R4_ERR_INVALID, "\"arch\" in the %s must be a string", cv.origin);
		release_value(&cv);
		return rc;
	}
	ac->origin = cv.origin;
	if (strcasecmp(cv.v->string, "vit") == 0)
		ac->arch = R4_ARCH_VIT;
	else if (strcasecmp(cv.v->string, "resnet") == 0)
		ac->arch = R4_ARCH_RESNET;
	else
	{
		for (size_t i = 0; i < sizeof(resnet_variants) / sizeof(resnet_variants[0]); i++)
			if (strcasecmp(cv.v->string, resnet_variants[i].name) == 0)
			{
				ac->arch = R4_ARCH_RESNET;
				ac->variant = (int) i;
			}
		if (ac->variant < 0)
		{
			char		excerpt[48];

			r4_text_excerpt(cv.v->string, cv.v->string_len, excerpt, sizeof(excerpt));
			r4_fail(err, R4_ERR_INVALID, "unknown architecture \"%s\" in the %s", excerpt, cv.origin);
			rc = r4_fail_detail(err, "known architectures: vit, resnet (or resnet18, resnet34, resnet50, resnet101, resnet152, which also assert the layout)");
		}
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

/*
 * Refuse the keys of the other architecture: its own keys wherever they
 * are given, its derived keys in the configuration object (metadata ones
 * are informational).
 */
static R4Status
reject_foreign_keys(const R4SafeTensors *st, const R4Json *config, R4Arch arch, R4Error *err)
{
	const char *const *own = arch == R4_ARCH_VIT ? resnet_only_keys : vit_only_keys;
	const char *const *derived = arch == R4_ARCH_VIT ? resnet_derived_keys : vit_derived_keys;
	const char *kind = arch == R4_ARCH_VIT ? "ResNet" : "ViT";
	const char *this = arch == R4_ARCH_VIT ? "a ViT" : "a ResNet";

	for (int k = 0; own[k]; k++)
	{
		const char *origin = NULL;

		if (config != NULL && r4_json_get(config, own[k]) != NULL)
			origin = "configuration";
		else if (r4_safetensors_meta(st, own[k]) != NULL)
			origin = "metadata";
		if (origin != NULL)
			return r4_fail(err, R4_ERR_INVALID,
						   "\"%s\" in the %s applies to %s models only, and this model is %s",
						   own[k], origin, kind, this);
	}
	for (int k = 0; derived[k]; k++)
		if (config != NULL && r4_json_get(config, derived[k]) != NULL)
			return r4_fail(err, R4_ERR_INVALID,
						   "\"%s\" in the configuration applies to %s models only, and this model is %s",
						   derived[k], kind, this);
	return R4_OK;
}

#define LOOKUP(key, words) \
	do { if ((rc = lookup_value(st, config, (key), (words), &cv, err)) != R4_OK) return rc; } while (0)
#define DONE() \
	do { release_value(&cv); if (rc != R4_OK) return rc; } while (0)

/* Apply the keys every architecture has on top of the defaults. */
static R4Status
apply_common_keys(const R4SafeTensors *st, const R4Json *config, R4ModelConfig *cfg, R4Error *err)
{
	ConfigValue cv;
	R4Status	rc;
	int			C = cfg->in_chans;

	/* img_size: at least one patch (a ResNet's "patch" is its minimum input) */
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
		else if (rc == R4_OK && (fabs(cfg->scale) < R4_NORM_MIN || fabs(cfg->scale) > R4_NORM_MAX))
			rc = r4_fail(err, R4_ERR_INVALID, "\"scale\" in the %s is %g; its magnitude must lie in [%g, %g]",
						 cv.origin, cfg->scale, R4_NORM_MIN, R4_NORM_MAX);
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
	return R4_OK;
}

/* Apply the configuration keys of a ViT on top of the defaults. */
static R4Status
apply_vit_keys(const R4SafeTensors *st, const R4Json *config, R4ModelConfig *cfg, R4Error *err)
{
	ConfigValue cv;
	R4Status	rc;

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

	if ((rc = apply_common_keys(st, config, cfg, err)) != R4_OK)
		return rc;

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

/* Format a ResNet's layout for messages: "Bottleneck blocks, layers [3, 4, 6, 3]". */
static void
format_layout(bool bottleneck, const int *layers, char *buf, size_t size)
{
	snprintf(buf, size, "%s blocks, layers [%d, %d, %d, %d]",
			 bottleneck ? "Bottleneck" : "BasicBlock", layers[0], layers[1], layers[2], layers[3]);
}

/* Check the layout "block" and "layers" in the configuration assert. */
static R4Status
assert_layout(const R4Json *config, const R4ModelConfig *cfg, R4Error *err)
{
	const R4Json *v;
	char		have[96];

	if (config == NULL)
		return R4_OK;
	format_layout(cfg->resnet_bottleneck, cfg->resnet_layers, have, sizeof(have));
	if ((v = r4_json_get(config, "block")) != NULL)
	{
		if (v->type != R4J_STRING ||
			(strcmp(v->string, "basic") != 0 && strcmp(v->string, "bottleneck") != 0))
			return r4_fail(err, R4_ERR_INVALID,
						   "\"block\" in the configuration must be \"basic\" or \"bottleneck\"");
		if ((strcmp(v->string, "bottleneck") == 0) != cfg->resnet_bottleneck)
			return r4_fail(err, R4_ERR_MISMATCH,
						   "\"block\" in the configuration is \"%s\" but the weights have %s",
						   v->string, have);
	}
	if ((v = r4_json_get(config, "layers")) != NULL)
	{
		int64_t		n;

		if (v->type != R4J_ARRAY || v->count != R4_RESNET_STAGES)
			return r4_fail(err, R4_ERR_INVALID,
						   "\"layers\" in the configuration must be a list of %d block counts",
						   R4_RESNET_STAGES);
		for (int s = 0; s < R4_RESNET_STAGES; s++)
		{
			if (v->items[s].type != R4J_NUMBER || !r4_json_get_int64(&v->items[s], &n))
				return r4_fail(err, R4_ERR_INVALID,
							   "\"layers\" in the configuration must hold integers");
			if (n != cfg->resnet_layers[s])
				return r4_fail(err, R4_ERR_MISMATCH,
							   "\"layers\" in the configuration does not match the weights, which have %s",
							   have);
		}
	}
	return R4_OK;
}

/* Apply the configuration keys of a ResNet on top of the defaults. */
static R4Status
apply_resnet_keys(const R4SafeTensors *st, const R4Json *config, const ArchChoice *ac,
				  R4ModelConfig *cfg, R4Error *err)
{
	ConfigValue cv;
	R4Status	rc;

	/* bn_eps: strictly positive, or folding a zero running_var divides by zero */
	LOOKUP("bn_eps", false);
	if (cv.v != NULL)
	{
		rc = value_number(cv.v, &cv, "bn_eps", &cfg->bn_eps, err);
		if (rc == R4_OK && !(cfg->bn_eps > 0.0 && cfg->bn_eps < 1.0))
			rc = r4_fail(err, R4_ERR_INVALID, "\"bn_eps\" in the %s must be in (0, 1)", cv.origin);
		DONE();
	}

	if ((rc = apply_common_keys(st, config, cfg, err)) != R4_OK)
		return rc;

	if (ac->variant >= 0)
	{
		bool		same = resnet_variants[ac->variant].bottleneck == cfg->resnet_bottleneck;
		char		have[96];

		for (int s = 0; s < R4_RESNET_STAGES; s++)
			same = same && resnet_variants[ac->variant].layers[s] == cfg->resnet_layers[s];
		if (!same)
		{
			format_layout(cfg->resnet_bottleneck, cfg->resnet_layers, have, sizeof(have));
			return r4_fail(err, R4_ERR_MISMATCH,
						   "\"arch\" in the %s is \"%s\" but the weights have %s",
						   ac->origin, resnet_variants[ac->variant].name, have);
		}
	}
	if ((rc = assert_layout(config, cfg, err)) != R4_OK ||
		(rc = assert_derived(st, config, "width", cfg->resnet_width, err)) != R4_OK ||
		(rc = assert_derived(st, config, "in_chans", cfg->in_chans, err)) != R4_OK ||
		(rc = assert_derived(st, config, "out_dim", cfg->out_dim, err)) != R4_OK)
		return rc;
	return R4_OK;
}

/* Store class name i (text of len bytes) in cfg->class_names at *used */
static R4Status
add_class_name(R4ModelConfig *cfg, const char *text, size_t len, size_t *used, R4Error *err)
{
	if (len == 0 || memchr(text, '\0', len) != NULL)
		return r4_fail(err, R4_ERR_INVALID, "class names must be non-empty text without NUL characters");
	if (*used + len + 1 > sizeof(cfg->class_names))
		return r4_fail(err, R4_ERR_LIMIT, "class names take more than %zu bytes",
					   sizeof(cfg->class_names));
	memcpy(cfg->class_names + *used, text, len);
	cfg->class_names[*used + len] = '\0';
	*used += len + 1;
	return R4_OK;
}

/* Find the classification head and apply head, classes, multilabel, output. */
static R4Status
apply_head_keys(const R4SafeTensors *st, const R4Json *config, R4ModelConfig *cfg, R4Error *err)
{
	ConfigValue cv;
	R4Status	rc;
	int			layers,
				in_dim,
				k;
	bool		use = true;
	size_t		used = 0;

	if ((rc = r4_head_find(st, &layers, &in_dim, &k, err)) != R4_OK)
		return rc;
	LOOKUP("head", false);
	if (cv.v != NULL)
	{
		rc = value_bool(&cv, "head", &use, err);
		DONE();
	}
	cfg->head_disabled = layers > 0 && !use;
	if (layers > 0 && use)
	{
		if (in_dim != cfg->out_dim)
		{
			r4_fail(err, R4_ERR_MISMATCH, "the classification head takes %d features but the model gives %d",
					in_dim, cfg->out_dim);
			return r4_fail_detail(err, "Match n_last_blocks/avgpool to the head, or pass \"head\": false to ignore it.");
		}
		if (k > R4_MAX_CLASSES)
			return r4_fail(err, R4_ERR_LIMIT, "the classification head has %d classes; the limit is %d",
						   k, R4_MAX_CLASSES);
		cfg->n_classes = k;
	}

	LOOKUP("classes", false);
	if (cv.v != NULL)
	{
		if (cfg->n_classes == 0)
			rc = r4_fail(err, R4_ERR_INVALID, "\"classes\" in the %s, but the model has no classification head in use",
						 cv.origin);
		else if (cv.v->type != R4J_ARRAY || (int) cv.v->count != cfg->n_classes)
			rc = r4_fail(err, R4_ERR_MISMATCH, "\"classes\" in the %s must list %d class names, one per head output",
						 cv.origin, cfg->n_classes);
		for (size_t i = 0; rc == R4_OK && i < cv.v->count; i++)
		{
			const R4Json *item = &cv.v->items[i];
			int64_t		code;
			char		num[32];

			if (item->type == R4J_STRING)
				rc = add_class_name(cfg, item->string, item->string_len, &used, err);
			else if (item->type == R4J_NUMBER && r4_json_get_int64(item, &code))
			{
				snprintf(num, sizeof(num), "%lld", (long long) code);
				rc = add_class_name(cfg, num, strlen(num), &used, err);
			}
			else
				rc = r4_fail(err, R4_ERR_INVALID, "\"classes\" in the %s must hold strings or integers",
							 cv.origin);
		}
		DONE();
	}
	else
		for (int i = 0; i < cfg->n_classes && rc == R4_OK; i++)
		{
			char		num[32];

			snprintf(num, sizeof(num), "%d", i);
			if ((rc = add_class_name(cfg, num, strlen(num), &used, err)) != R4_OK)
				return rc;
		}

	LOOKUP("multilabel", false);
	if (cv.v != NULL)
	{
		rc = value_bool(&cv, "multilabel", &cfg->multilabel, err);
		if (rc == R4_OK && cfg->multilabel && cfg->n_classes == 0)
			rc = r4_fail(err, R4_ERR_INVALID, "\"multilabel\" in the %s, but the model has no classification head in use",
						 cv.origin);
		DONE();
	}

	LOOKUP("output", true);
	if (cv.v != NULL)
	{
		if (cv.v->type == R4J_STRING && strcmp(cv.v->string, "features") == 0)
			cfg->output = R4_OUTPUT_FEATURES;
		else if (cv.v->type == R4J_STRING && strcmp(cv.v->string, "probabilities") == 0)
		{
			cfg->output = R4_OUTPUT_PROBABILITIES;
			if (cfg->n_classes == 0)
				rc = r4_fail(err, R4_ERR_INVALID, "\"output\": \"probabilities\" in the %s needs a classification head",
							 cv.origin);
		}
		else
			rc = r4_fail(err, R4_ERR_INVALID, "\"output\" in the %s must be \"features\" or \"probabilities\"",
						 cv.origin);
		DONE();
	}
	return R4_OK;
}

#undef LOOKUP
#undef DONE

/*
 * Parse "layerS.N." at the start of name (S in 1..4, N in canonical
 * decimal); returns what follows, or NULL.  *stage is 0-based.
 */
static const char *
resnet_block_index(const char *name, int *stage, long *index)
{
	const char *p;
	long		n = 0;

	if (strncmp(name, "layer", 5) != 0 || name[5] < '1' || name[5] > '0' + R4_RESNET_STAGES ||
		name[6] != '.')
		return NULL;
	p = name + 7;
	if (*p < '0' || *p > '9' || (*p == '0' && p[1] != '.'))
		return NULL;
	for (; *p >= '0' && *p <= '9'; p++)
	{
		n = n * 10 + (*p - '0');
		if (n > 100000000L)
			return NULL;
	}
	if (*p != '.')
		return NULL;
	*stage = name[5] - '1';
	*index = n;
	return p + 1;
}

/* Report whether rest is an entry of BatchNorm bn ("bn1.running_var"). */
static bool
is_bn_entry(const char *rest, const char *bn)
{
	size_t		l = strlen(bn);

	if (strncmp(rest, bn, l) != 0 || rest[l] != '.')
		return false;
	rest += l + 1;
	return in_list(bn_entries, rest) || strcmp(rest, "num_batches_tracked") == 0;
}

/*
 * Reject ResNet variants: any tensor in the stem or inside a block that
 * torchvision's ResNet lacks changes the computation (deep stems, SE
 * modules, average-pool downsampling, conv biases), so it is refused
 * rather than silently ignored.
 */
static R4Status
check_resnet_variant(const R4SafeTensors *st, bool bottleneck, R4Error *err)
{
	for (size_t i = 0; i < st->count; i++)
	{
		const char *name = st->tensors[i].name;
		const char *rest;
		int			s;
		long		idx;
		bool		ok;

		if (strncmp(name, "conv1.", 6) == 0)
			ok = strcmp(name, "conv1.weight") == 0;
		else if (strncmp(name, "bn1.", 4) == 0)
			ok = is_bn_entry(name, "bn1");
		else if ((rest = resnet_block_index(name, &s, &idx)) != NULL)
			ok = strcmp(rest, "conv1.weight") == 0 || strcmp(rest, "conv2.weight") == 0 ||
				(bottleneck && strcmp(rest, "conv3.weight") == 0) ||
				is_bn_entry(rest, "bn1") || is_bn_entry(rest, "bn2") ||
				(bottleneck && is_bn_entry(rest, "bn3")) ||
				strcmp(rest, "downsample.0.weight") == 0 || is_bn_entry(rest, "downsample.1");
		else
			continue;
		if (!ok)
		{
			r4_fail(err, R4_ERR_UNSUPPORTED,
					"tensor \"%s\" belongs to a ResNet variant the engine does not implement", name);
			return r4_fail_detail(err, "supported: torchvision/timm ResNet with a 7 x 7 stem, BasicBlock or Bottleneck blocks without conv biases or extra modules, 1 x 1 convolution downsampling");
		}
	}
	return R4_OK;
}

/* Demand a float tensor (F32/F16/BF16). */
static R4Status
expect_float(const R4SafeTensors *st, const char *name, R4Error *err)
{
	const R4StTensor *t = r4_safetensors_find(st, name);

	if (r4_dtype_is_float(t->dtype))
		return R4_OK;
	r4_fail(err, R4_ERR_UNSUPPORTED, "tensor \"%s\" has dtype %s", name, r4_dtype_name(t->dtype));
	return r4_fail_detail(err, "model weights must be F32, F16 or BF16");
}

/* Demand a float convolution weight [cout, cin, k, k]. */
static R4Status
expect_conv(const R4SafeTensors *st, const char *name, int64_t cout, int64_t cin, int64_t k,
			R4Error *err)
{
	const int64_t want[4] = {cout, cin, k, k};
	const R4StTensor *t = r4_safetensors_find(st, name);
	R4Status	rc;

	if ((rc = expect_float(st, name, err)) != R4_OK)
		return rc;
	rc = expect_shape(st, name, 4, want, err);
	/* A narrower input dimension that divides the width is a grouped conv. */
	if (rc == R4_ERR_MISMATCH && t->ndim == 4 && t->shape[0] == cout && t->shape[1] >= 1 &&
		t->shape[1] < cin && cin % t->shape[1] == 0 && t->shape[2] == k)
		r4_fail_detail(err, "grouped convolutions (ResNeXt) are not supported");
	return rc;
}

/* Demand the four float entries of a BatchNorm over c channels. */
static R4Status
expect_bn(const R4SafeTensors *st, const char *prefix, int64_t c, R4Error *err)
{
	const int64_t want[1] = {c};
	char		name[MAX_NAME + 32];	/* prefix plus ".running_mean" */
	R4Status	rc;

	for (int k = 0; bn_entries[k]; k++)
	{
		snprintf(name, sizeof(name), "%s.%s", prefix, bn_entries[k]);
		if ((rc = expect_float(st, name, err)) != R4_OK ||
			(rc = expect_shape(st, name, 1, want, err)) != R4_OK)
			return rc;
	}
	return R4_OK;
}

/* Note a BatchNorm's entries as needed. */
static void
need_bn(const R4SafeTensors *st, const char *prefix, MissingList *ml)
{
	char		name[MAX_NAME + 32];	/* prefix plus ".running_mean" */

	for (int k = 0; bn_entries[k]; k++)
	{
		snprintf(name, sizeof(name), "%s.%s", prefix, bn_entries[k]);
		need_tensor(st, name, ml);
	}
}

/* Read the output width of a block's conv: its shape[0], if it is a 4-D weight. */
static R4Status
conv_width(const R4SafeTensors *st, const char *name, int64_t *width, R4Error *err)
{
	const R4StTensor *t = r4_safetensors_find(st, name);
	char		shape_s[96];

	if (t->ndim != 4 || t->shape[0] < 1)
	{
		format_shape(t->shape, t->ndim, shape_s, sizeof(shape_s));
		return r4_fail(err, R4_ERR_MISMATCH,
					   "tensor \"%s\" has shape %s, expected [out_channels, in_channels, k, k]",
					   name, shape_s);
	}
	if (t->shape[0] > R4_MAX_EMBED_DIM)
		return r4_fail(err, R4_ERR_LIMIT, "tensor \"%s\" has %lld output channels; the limit is %d",
					   name, (long long) t->shape[0], R4_MAX_EMBED_DIM);
	*width = t->shape[0];
	return R4_OK;
}

/*
 * Derive a ResNet's layout from the tensors (blocks per stage, block type,
 * widths, input channels) and check every tensor it uses: presence, dtype
 * and shape.
 */
static R4Status
check_resnet(const R4SafeTensors *st, R4ModelConfig *cfg, R4Error *err)
{
	const R4StTensor *stem;
	MissingList ml;
	char		name[MAX_NAME];
	char		shape_s[96];
	long		blocks[R4_RESNET_STAGES] = {0};
	int64_t		width[R4_RESNET_STAGES];	/* the 3 x 3 conv's width per stage */
	int64_t		outw[R4_RESNET_STAGES];	/* block output width per stage */
	int64_t		S,
				C,
				in;
	bool		bottleneck = false;
	R4Status	rc;

	/* Blocks per stage from the highest layerS.N present; block type from conv3. */
	for (size_t i = 0; i < st->count; i++)
	{
		const char *rest;
		int			s;
		long		idx;

		if ((rest = resnet_block_index(st->tensors[i].name, &s, &idx)) == NULL)
			continue;
		if (idx + 1 > R4_MAX_DEPTH)
			return r4_fail(err, R4_ERR_LIMIT, "layer%d has %ld blocks; the limit is %d",
						   s + 1, idx + 1, R4_MAX_DEPTH);
		if (idx + 1 > blocks[s])
			blocks[s] = idx + 1;
		if (strcmp(rest, "conv3.weight") == 0)
			bottleneck = true;
	}
	if ((rc = check_resnet_variant(st, bottleneck, err)) != R4_OK)
		return rc;

	/* Every tensor but the downsampling ones, which depend on the widths. */
	ml.count = 0;
	need_tensor(st, "conv1.weight", &ml);
	need_bn(st, "bn1", &ml);
	for (int s = 0; s < R4_RESNET_STAGES; s++)
	{
		if (blocks[s] == 0)
			blocks[s] = 1;		/* a stage cannot be empty: name its first block */
		for (long b = 0; b < blocks[s]; b++)
			for (int j = 1; j <= (bottleneck ? 3 : 2); j++)
			{
				snprintf(name, sizeof(name), "layer%d.%ld.conv%d.weight", s + 1, b, j);
				need_tensor(st, name, &ml);
				snprintf(name, sizeof(name), "layer%d.%ld.bn%d", s + 1, b, j);
				need_bn(st, name, &ml);
			}
	}
	if ((rc = report_missing(st, &ml, RESNET_ANCHOR, RESNET_EXPECTED, err)) != R4_OK)
		return rc;

	/* The stem: conv1 [S, C, 7, 7]. */
	stem = r4_safetensors_find(st, "conv1.weight");
	if (stem->ndim == 4 && stem->shape[2] == stem->shape[3] && stem->shape[2] != 7 &&
		stem->shape[2] >= 1)
	{
		r4_fail(err, R4_ERR_UNSUPPORTED,
				"tensor \"conv1.weight\" is a %lld x %lld stem convolution; the engine implements torchvision's 7 x 7 stride-2 stem",
				(long long) stem->shape[2], (long long) stem->shape[3]);
		return r4_fail_detail(err, "CIFAR-style ResNets (3 x 3 stem without max-pool) are not supported");
	}
	if (stem->ndim != 4 || stem->shape[0] < 1 || stem->shape[1] < 1 || stem->shape[2] != 7 ||
		stem->shape[3] != 7)
	{
		format_shape(stem->shape, stem->ndim, shape_s, sizeof(shape_s));
		return r4_fail(err, R4_ERR_MISMATCH,
					   "tensor \"conv1.weight\" has shape %s, expected [width, in_chans, 7, 7]", shape_s);
	}
	S = stem->shape[0];
	C = stem->shape[1];
	if (C > R4_MAX_CHANNELS)
		return r4_fail(err, R4_ERR_LIMIT, "the model has %lld input channels; the limit is %d",
					   (long long) C, R4_MAX_CHANNELS);
	if (S > R4_MAX_EMBED_DIM)
		return r4_fail(err, R4_ERR_LIMIT, "the stem has %lld channels; the limit is %d",
					   (long long) S, R4_MAX_EMBED_DIM);

	/* Widths per stage from each stage's first block. */
	for (int s = 0; s < R4_RESNET_STAGES; s++)
	{
		snprintf(name, sizeof(name), "layer%d.0.conv1.weight", s + 1);
		if ((rc = conv_width(st, name, &width[s], err)) != R4_OK)
			return rc;
		outw[s] = width[s];
		if (bottleneck)
		{
			snprintf(name, sizeof(name), "layer%d.0.conv3.weight", s + 1);
			if ((rc = conv_width(st, name, &outw[s], err)) != R4_OK)
				return rc;
		}
	}

	/* Downsampling: needed wherever the stride or the width changes. */
	ml.count = 0;
	in = S;
	for (int s = 0; s < R4_RESNET_STAGES; s++)
	{
		for (long b = 0; b < blocks[s]; b++)
		{
			int64_t		bin = b == 0 ? in : outw[s];
			int			stride = (b == 0 && s > 0) ? 2 : 1;

			snprintf(name, sizeof(name), "layer%d.%ld.downsample.0.weight", s + 1, b);
			if (r4_safetensors_find(st, name) != NULL || stride != 1 || bin != outw[s])
			{
				need_tensor(st, name, &ml);
				snprintf(name, sizeof(name), "layer%d.%ld.downsample.1", s + 1, b);
				need_bn(st, name, &ml);
			}
		}
		in = outw[s];
	}
	if ((rc = report_missing(st, &ml, RESNET_ANCHOR, RESNET_EXPECTED, err)) != R4_OK)
		return rc;

	/* Every shape and dtype, in forward order. */
	if ((rc = expect_conv(st, "conv1.weight", S, C, 7, err)) != R4_OK ||
		(rc = expect_bn(st, "bn1", S, err)) != R4_OK)
		return rc;
	in = S;
	for (int s = 0; s < R4_RESNET_STAGES; s++)
	{
		int64_t		P = width[s];
		int64_t		O = outw[s];

		for (long b = 0; b < blocks[s]; b++)
		{
			int64_t		bin = b == 0 ? in : O;
			char		pre[MAX_NAME];

#define BLOCK_NAME(suffix) (snprintf(name, sizeof(name), "layer%d.%ld.%s", s + 1, b, (suffix)), name)
			snprintf(pre, sizeof(pre), "layer%d.%ld.", s + 1, b);
			if (bottleneck)
				rc = expect_conv(st, BLOCK_NAME("conv1.weight"), P, bin, 1, err);
			else
				rc = expect_conv(st, BLOCK_NAME("conv1.weight"), P, bin, 3, err);
			if (rc == R4_OK)
				rc = expect_bn(st, BLOCK_NAME("bn1"), P, err);
			if (rc == R4_OK)
				rc = expect_conv(st, BLOCK_NAME("conv2.weight"), P, P, 3, err);
			if (rc == R4_OK)
				rc = expect_bn(st, BLOCK_NAME("bn2"), P, err);
			if (rc == R4_OK && bottleneck)
				rc = expect_conv(st, BLOCK_NAME("conv3.weight"), O, P, 1, err);
			if (rc == R4_OK && bottleneck)
				rc = expect_bn(st, BLOCK_NAME("bn3"), O, err);
			if (rc == R4_OK && r4_safetensors_find(st, BLOCK_NAME("downsample.0.weight")) != NULL)
			{
				rc = expect_conv(st, name, O, bin, 1, err);
				if (rc == R4_OK)
					rc = expect_bn(st, BLOCK_NAME("downsample.1"), O, err);
			}
#undef BLOCK_NAME
			if (rc != R4_OK)
				return rc;
		}
		in = O;
	}

	cfg->in_chans = (int) C;
	cfg->resnet_width = (int) S;
	cfg->resnet_bottleneck = bottleneck;
	cfg->depth = 0;
	for (int s = 0; s < R4_RESNET_STAGES; s++)
	{
		cfg->resnet_layers[s] = (int) blocks[s];
		cfg->depth += (int) blocks[s];
	}
	cfg->out_dim = (int) outw[R4_RESNET_STAGES - 1];
	cfg->embed_dim = cfg->out_dim;
	cfg->patch_size = R4_RESNET_MIN_SIZE;
	cfg->mlp_hidden = 0;
	cfg->pos_grid = 0;
	return R4_OK;
}

/* Give every input channel its default band, mean and std. */
static void
channel_defaults(R4ModelConfig *cfg)
{
	for (int c = 0; c < cfg->in_chans; c++)
	{
		cfg->bands[c] = c + 1;
		cfg->mean[c] = 0.0;
		cfg->std[c] = 1.0;
	}
}

/* Resolve a ViT: shapes, defaults, keys. */
static R4Status
resolve_vit(const R4SafeTensors *st, const R4Json *config, R4ModelConfig *cfg, R4Error *err)
{
	R4Status	rc;
	long		max_block = -1;

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
	cfg->depth = max_block < 0 ? 1 : (int) max_block + 1;

	if ((rc = check_present(st, cfg->depth, err)) != R4_OK ||
		(rc = check_dtypes(st, cfg->depth, err)) != R4_OK ||
		(rc = check_vit_shapes(st, cfg, err)) != R4_OK ||
		(rc = check_variant(st, err)) != R4_OK)
		return rc;

	channel_defaults(cfg);
	cfg->ln_eps = 1e-6;
	cfg->img_size = cfg->pos_grid * cfg->patch_size;
	cfg->n_last_blocks = 1;
	cfg->avgpool = false;
	return apply_vit_keys(st, config, cfg, err);
}

/* Resolve a ResNet: layout and shapes, defaults, keys. */
static R4Status
resolve_resnet(const R4SafeTensors *st, const R4Json *config, const ArchChoice *ac,
			   R4ModelConfig *cfg, R4Error *err)
{
	R4Status	rc;

	if ((rc = check_resnet(st, cfg, err)) != R4_OK)
		return rc;
	channel_defaults(cfg);
	cfg->bn_eps = 1e-5;
	cfg->img_size = 224;
	return apply_resnet_keys(st, config, ac, cfg, err);
}

/* Resolve a model's configuration; see model_config.h for the rules. */
R4Status
r4_model_config_resolve(const R4SafeTensors *st, const R4Json *config,
						R4ModelConfig *out, R4Error *err)
{
	R4ModelConfig cfg;
	ArchChoice	ac;
	R4Status	rc;

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
				return r4_fail_detail(err, "known keys: arch, img_size, bands, scale, mean, std, input, change_threshold, head, classes, multilabel, output; ViT: num_heads, ln_eps, n_last_blocks, avgpool; ResNet: bn_eps");
			}
	}

	memset(&cfg, 0, sizeof(cfg));
	if ((rc = resolve_arch(st, config, &ac, err)) != R4_OK)
		return rc;
	cfg.arch = ac.arch;
	if ((rc = reject_foreign_keys(st, config, cfg.arch, err)) != R4_OK)
		return rc;

	/* Defaults every architecture shares; shapes fill in_chans first. */
	cfg.scale = 1.0;
	cfg.input = R4_INPUT_NATIVE;
	if (ac.arch == R4_ARCH_VIT)
		rc = resolve_vit(st, config, &cfg, err);
	else
		rc = resolve_resnet(st, config, &ac, &cfg, err);
	if (rc == R4_OK)
		rc = apply_head_keys(st, config, &cfg, err);
	if (rc != R4_OK)
		return rc;
	/* Each bound alone still lets scale / std reach 1e60 */
	for (int c = 0; c < cfg.in_chans; c++)
		if (fabs(cfg.scale / cfg.std[c]) > R4_NORM_MAX || fabs(cfg.mean[c] / cfg.std[c]) > R4_NORM_MAX)
		{
			r4_fail(err, R4_ERR_INVALID,
					"channel %d normalises to overflow: scale %g, mean %g, std %g", c + 1,
					cfg.scale, cfg.mean[c], cfg.std[c]);
			return r4_fail_detail(err, "scale / std and mean / std must stay within %g in magnitude.",
								  R4_NORM_MAX);
		}
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

/* Append a JSON string literal, escaping quotes, backslashes and control characters. */
static void
buf_json_string(TextBuf *b, const char *text)
{
	buf_printf(b, "\"");
	for (const unsigned char *p = (const unsigned char *) text; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			buf_printf(b, "\\%c", *p);
		else if (*p < 0x20)
			buf_printf(b, "\\u%04x", *p);
		else
			buf_printf(b, "%c", *p);
	}
	buf_printf(b, "\"");
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
	if (cfg->arch == R4_ARCH_RESNET)
	{
		/* Only keys a ResNet accepts, so the text resolves back. */
		buf_printf(&b, "{\"arch\":\"resnet\",\"block\":\"%s\",\"layers\":[%d,%d,%d,%d],"
				   "\"width\":%d,\"in_chans\":%d,\"bn_eps\":",
				   cfg->resnet_bottleneck ? "bottleneck" : "basic",
				   cfg->resnet_layers[0], cfg->resnet_layers[1], cfg->resnet_layers[2],
				   cfg->resnet_layers[3], cfg->resnet_width, cfg->in_chans);
		buf_double(&b, cfg->bn_eps);
	}
	else
	{
		buf_printf(&b, "{\"arch\":\"%s\",\"embed_dim\":%d,\"depth\":%d,\"patch_size\":%d,"
				   "\"in_chans\":%d,\"mlp_hidden\":%d,\"num_heads\":%d,\"ln_eps\":",
				   r4_arch_name(cfg->arch), cfg->embed_dim, cfg->depth, cfg->patch_size,
				   cfg->in_chans, cfg->mlp_hidden, cfg->num_heads);
		buf_double(&b, cfg->ln_eps);
	}
	buf_printf(&b, ",\"img_size\":%d,\"bands\":[", cfg->img_size);
	for (int c = 0; c < cfg->in_chans; c++)
		buf_printf(&b, "%s%d", c ? "," : "", cfg->bands[c]);
	buf_printf(&b, "],\"scale\":");
	buf_double(&b, cfg->scale);
	buf_printf(&b, ",\"mean\":");
	buf_double_list(&b, cfg->mean, cfg->in_chans);
	buf_printf(&b, ",\"std\":");
	buf_double_list(&b, cfg->std, cfg->in_chans);
	buf_printf(&b, ",\"input\":\"%s\"", cfg->input == R4_INPUT_RESIZE ? "resize" : "native");
	if (cfg->arch != R4_ARCH_RESNET)
		buf_printf(&b, ",\"n_last_blocks\":%d,\"avgpool\":%s",
				   cfg->n_last_blocks, cfg->avgpool ? "true" : "false");
	buf_printf(&b, ",\"change_threshold\":");
	if (cfg->has_change_threshold)
		buf_double(&b, cfg->change_threshold);
	else
		buf_printf(&b, "null");
	buf_printf(&b, ",\"out_dim\":%d", cfg->out_dim);
	if (cfg->head_disabled)
		buf_printf(&b, ",\"head\":false");
	if (cfg->n_classes > 0)
	{
		const char *name = cfg->class_names;

		buf_printf(&b, ",\"classes\":[");
		for (int i = 0; i < cfg->n_classes; i++)
		{
			if (i)
				buf_printf(&b, ",");
			buf_json_string(&b, name);
			name += strlen(name) + 1;
		}
		buf_printf(&b, "],\"multilabel\":%s,\"output\":\"%s\"", cfg->multilabel ? "true" : "false",
				   cfg->output == R4_OUTPUT_PROBABILITIES ? "probabilities" : "features");
	}
	buf_printf(&b, "}");
	if (b.failed)
	{
		r4_free(b.data);
		return NULL;
	}
	return b.data;
}
