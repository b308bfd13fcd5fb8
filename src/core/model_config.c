/*
 * model_config.c — resolve a model's configuration from its weight shapes,
 * the safetensors metadata and the load-time configuration object: the part
 * every architecture shares.
 *
 * Which architecture a model is comes from "arch" or from the tensors (each
 * descriptor in arch.c's table names an anchor tensor); that descriptor then
 * resolves its own part (arch_vit.c, arch_resnet.c).  This file owns the
 * rest: reading keys from the configuration object or the metadata,
 * refusing unknown keys and other architectures' keys, the normalisation
 * keys (bands, scale, mean, std, input, img_size, change_threshold), the
 * classification head and its class names, and the canonical JSON.  The
 * helpers an architecture resolves its part with are declared in arch.h.
 */
#include "rai4eo/model_config.h"

#include "rai4eo/arch.h"
#include "rai4eo/head.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Keys a configuration object may set for every architecture (in messages). */
static const char *const settable_keys[] = {
	"arch", "img_size", "bands", "scale", "mean", "std", "input", "change_threshold",
	"head", "classes", "multilabel", "output",
	NULL
};

/*
 * Every key common to the architectures: the settable ones and the derived
 * ones every architecture asserts.  Keys outside these and the
 * architectures' own lists are typos.
 */
static const char *const common_keys[] = {
	"arch", "img_size", "bands", "scale", "mean", "std", "input", "change_threshold",
	"head", "classes", "multilabel", "output", "in_chans", "out_dim",
	NULL
};

/* The architecture, and which of its named variants "arch" gave, if one. */
typedef struct ArchChoice
{
	const R4ArchOps *arch;
	int			variant;		/* the architecture's variant index, or -1 */
	const char *origin;			/* where "arch" was given; NULL when detected */
} ArchChoice;

/* Free what r4_config_lookup parsed. */
void
r4_config_release(R4ConfigValue *cv)
{
	r4_json_free(cv->owned);
	cv->owned = NULL;
	cv->v = NULL;
}

/*
 * Find key in the configuration object, else in the metadata.  Metadata
 * values are JSON text, except that words_ok keys may hold a bare word.
 */
R4Status
r4_config_lookup(const R4SafeTensors *st, const R4Json *config, const char *key,
			 bool words_ok, R4ConfigValue *cv, R4Error *err)
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
R4Status
r4_config_int(const R4ConfigValue *cv, const char *key, int64_t lo, int64_t hi,
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
R4Status
r4_config_number(const R4Json *v, const R4ConfigValue *cv, const char *key,
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
value_channels(const R4ConfigValue *cv, const char *key, int in_chans,
			   bool positive, double *out, R4Error *err)
{
	const R4Json *v = cv->v;
	R4Status	rc;

	if (v->type == R4J_NUMBER)
	{
		double		x = 0.0;

		if ((rc = r4_config_number(v, cv, key, &x, err)) != R4_OK)
			return rc;
		for (int c = 0; c < in_chans; c++)
			out[c] = x;
	}
	else if (v->type == R4J_ARRAY)
	{
		if (v->count == 1)
		{
			double		x = 0.0;

			if ((rc = r4_config_number(&v->items[0], cv, key, &x, err)) != R4_OK)
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
				if ((rc = r4_config_number(&v->items[c], cv, key, &out[c], err)) != R4_OK)
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
value_bands(const R4ConfigValue *cv, int in_chans, int *bands, R4Error *err)
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
R4Status
r4_config_bool(const R4ConfigValue *cv, const char *key, bool *out, R4Error *err)
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
void
r4_format_shape(const int64_t *shape, int ndim, char *buf, size_t size)
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
R4Status
r4_expect_shape(const R4SafeTensors *st, const char *name, int ndim,
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
	r4_format_shape(t->shape, t->ndim, have_s, sizeof(have_s));
	r4_format_shape(want, ndim, want_s, sizeof(want_s));
	return r4_fail(err, R4_ERR_MISMATCH, "tensor \"%s\" has shape %s, expected %s",
				   name, have_s, want_s);
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

/* Note name as missing if st lacks it. */
void
r4_need_tensor(const R4SafeTensors *st, const char *name, R4MissingList *ml)
{
	if (r4_safetensors_find(st, name) != NULL)
		return;
	if (ml->count < R4_MISSING_LISTED)
		snprintf(ml->listed[ml->count], R4_TENSOR_NAME_MAX, "%.*s", R4_TENSOR_NAME_MAX - 1, name);
	ml->count++;
}

/* Report the missing tensors (if any) with a hint about prefixes. */
R4Status
r4_report_missing(const R4SafeTensors *st, const R4MissingList *ml, const R4ArchOps *arch,
				  R4Error *err)
{
	char		msg[R4_MESSAGE_LEN];
	size_t		used;

	if (ml->count == 0)
		return R4_OK;
	used = snprintf(msg, sizeof(msg), "model weights lack %d required tensor%s: ",
					ml->count, ml->count == 1 ? "" : "s");
	for (int i = 0; i < ml->count && i < R4_MISSING_LISTED && used < sizeof(msg); i++)
		used += snprintf(msg + used, sizeof(msg) - used, "%s%s", i ? ", " : "", ml->listed[i]);
	if (ml->count > R4_MISSING_LISTED && used < sizeof(msg))
		snprintf(msg + used, sizeof(msg) - used, " and %d more", ml->count - R4_MISSING_LISTED);
	r4_fail(err, R4_ERR_INVALID, "%s", msg);
	hint_prefix(st, arch->anchor, arch->expected, err);
	return R4_ERR_INVALID;
}

/* Report whether key is in a NULL-terminated list. */
bool
r4_name_in_list(const char *const *list, const char *key)
{
	for (int k = 0; list[k]; k++)
		if (strcmp(list[k], key) == 0)
			return true;
	return false;
}

/* Report whether a configuration key is one we know: common, or some architecture's. */
static bool
known_key(const char *key)
{
	if (r4_name_in_list(common_keys, key))
		return true;
	for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL; a++)
		if (r4_name_in_list((*a)->own_keys, key) || r4_name_in_list((*a)->derived_keys, key))
			return true;
	return false;
}

/* Append the items of a NULL-terminated list to msg, separated by sep. */
static size_t
append_joined(char *msg, size_t size, size_t used, const char *const *items, const char *sep)
{
	for (int k = 0; items[k] != NULL && used < size; k++)
		used += snprintf(msg + used, size - used, "%s%s", k ? sep : "", items[k]);
	return used;
}

/* The architectures' names (display names when display), joined by sep. */
static void
join_arch_names(bool display, const char *sep, char *buf, size_t size)
{
	const char *names[16];
	int			n = 0;

	for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL && n < 15; a++)
		names[n++] = display ? (*a)->display : (*a)->name;
	names[n] = NULL;
	buf[0] = '\0';
	append_joined(buf, size, 0, names, sep);
}

/* Explain what tensor names were expected when no architecture fits. */
static void
hint_either(const R4SafeTensors *st, R4Error *err)
{
	char		msg[R4_MESSAGE_LEN];
	size_t		used;

	/* Name a prefix if some architecture's anchor sits under one. */
	for (size_t i = 0; i < st->count; i++)
	{
		const char *name = st->tensors[i].name;
		size_t		nl = strlen(name);

		for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL; a++)
		{
			size_t		al = strlen((*a)->anchor);

			if (nl > al && strcmp(name + nl - al, (*a)->anchor) == 0 && name[nl - al - 1] == '.')
			{
				hint_prefix(st, (*a)->anchor, (*a)->expected, err);
				return;
			}
		}
	}
	used = snprintf(msg, sizeof(msg), "expected ");
	for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL && used < sizeof(msg); a++)
		used += snprintf(msg + used, sizeof(msg) - used, "%s%s", a == r4_arch_table() ? "" : " or ",
						 (*a)->names_hint);
	r4_fail_detail(err, "%s", msg);
}

/* Resolve the architecture from "arch" or from the tensors present. */
static R4Status
resolve_arch(const R4SafeTensors *st, const R4Json *config, ArchChoice *ac, R4Error *err)
{
	R4ConfigValue cv;
	R4Status	rc = R4_OK;
	const R4ArchOps *found = NULL;
	int			nfound = 0;
	char		names[256];

	ac->arch = NULL;
	ac->variant = -1;
	ac->origin = NULL;
	if ((rc = r4_config_lookup(st, config, "arch", true, &cv, err)) != R4_OK)
		return rc;
	if (cv.v == NULL)
	{
		for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL; a++)
			if (r4_safetensors_find(st, (*a)->anchor) != NULL)
			{
				found = found ? found : *a;
				nfound++;
			}
		if (nfound > 1)
		{
			char		quoted[256];
			size_t		used = 0;

			join_arch_names(true, " and ", names, sizeof(names));
			r4_fail(err, R4_ERR_INVALID,
					"cannot tell the model architecture: the weights hold both %s tensors", names);
			for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL && used < sizeof(quoted); a++)
				used += snprintf(quoted + used, sizeof(quoted) - used, "%s\"%s\"",
								 a == r4_arch_table() ? "" : " or ", (*a)->name);
			return r4_fail_detail(err, "give \"arch\": %s in the configuration", quoted);
		}
		if (found != NULL)
		{
			ac->arch = found;
			return R4_OK;
		}
		join_arch_names(true, " or ", names, sizeof(names));
		r4_fail(err, R4_ERR_INVALID,
				"cannot tell the model architecture: no \"arch\" given and no %s tensors found", names);
		hint_either(st, err);
		return R4_ERR_INVALID;
	}
	if (cv.v->type != R4J_STRING)
	{
		rc = r4_fail(err, R4_ERR_INVALID, "\"arch\" in the %s must be a string", cv.origin);
		r4_config_release(&cv);
		return rc;
	}
	ac->origin = cv.origin;
	for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL && ac->arch == NULL; a++)
		if (strcasecmp(cv.v->string, (*a)->name) == 0)
			ac->arch = *a;
	for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL && ac->arch == NULL; a++)
		if ((*a)->variant != NULL && (ac->variant = (*a)->variant(cv.v->string)) >= 0)
			ac->arch = *a;
	if (ac->arch == NULL)
	{
		char		excerpt[48];
		char		detail[R4_MESSAGE_LEN];
		size_t		used;

		ac->variant = -1;
		r4_text_excerpt(cv.v->string, cv.v->string_len, excerpt, sizeof(excerpt));
		r4_fail(err, R4_ERR_INVALID, "unknown architecture \"%s\" in the %s", excerpt, cv.origin);
		join_arch_names(false, ", ", names, sizeof(names));
		used = snprintf(detail, sizeof(detail), "known architectures: %s", names);
		for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL && used < sizeof(detail); a++)
			if ((*a)->variants_hint != NULL)
				used += snprintf(detail + used, sizeof(detail) - used, " (or %s)", (*a)->variants_hint);
		rc = r4_fail_detail(err, "%s", detail);
	}
	r4_config_release(&cv);
	return rc;
}

/* Check a derived value the configuration asserts. */
R4Status
r4_config_assert_derived(const R4SafeTensors *st, const R4Json *config, const char *key,
			   int actual, R4Error *err)
{
	R4ConfigValue cv;
	int64_t		v;
	R4Status	rc;

	if ((rc = r4_config_lookup(st, config, key, false, &cv, err)) != R4_OK)
		return rc;
	if (cv.v == NULL)
		return R4_OK;
	/* Metadata is informational; only the configuration object asserts. */
	if (strcmp(cv.origin, "metadata") == 0)
	{
		r4_config_release(&cv);
		return R4_OK;
	}
	if (cv.v->type != R4J_NUMBER || !r4_json_get_int64(cv.v, &v))
		rc = r4_fail(err, R4_ERR_INVALID, "\"%s\" in the %s must be an integer", key, cv.origin);
	else if (v != actual)
		rc = r4_fail(err, R4_ERR_MISMATCH, "\"%s\" in the %s is %lld but the weights give %d",
					 key, cv.origin, (long long) v, actual);
	r4_config_release(&cv);
	return rc;
}

/*
 * Refuse the keys of the other architectures: their own keys wherever they
 * are given, their derived keys in the configuration object (metadata ones
 * are informational).
 */
static R4Status
reject_foreign_keys(const R4SafeTensors *st, const R4Json *config, const R4ArchOps *arch,
					R4Error *err)
{
	for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL; a++)
	{
		const char *const *own = (*a)->own_keys;
		const char *const *derived = (*a)->derived_keys;

		if (*a == arch)
			continue;
		for (int k = 0; own[k]; k++)
		{
			const char *origin = NULL;

			/* a key both architectures accept is not foreign */
			if (r4_name_in_list(arch->own_keys, own[k]))
				continue;
			if (config != NULL && r4_json_get(config, own[k]) != NULL)
				origin = "configuration";
			else if (r4_safetensors_meta(st, own[k]) != NULL)
				origin = "metadata";
			if (origin != NULL)
				return r4_fail(err, R4_ERR_INVALID,
							   "\"%s\" in the %s applies to %s models only, and this model is %s",
							   own[k], origin, (*a)->display, arch->a_display);
		}
		for (int k = 0; derived[k]; k++)
			if (!r4_name_in_list(arch->derived_keys, derived[k]) &&
				config != NULL && r4_json_get(config, derived[k]) != NULL)
				return r4_fail(err, R4_ERR_INVALID,
							   "\"%s\" in the configuration applies to %s models only, and this model is %s",
							   derived[k], (*a)->display, arch->a_display);
	}
	return R4_OK;
}

#define LOOKUP(key, words) \
	do { if ((rc = r4_config_lookup(st, config, (key), (words), &cv, err)) != R4_OK) return rc; } while (0)
#define DONE() \
	do { r4_config_release(&cv); if (rc != R4_OK) return rc; } while (0)

/* Apply the keys every architecture has on top of the defaults. */
R4Status
r4_config_apply_common(const R4SafeTensors *st, const R4Json *config, R4ModelConfig *cfg, R4Error *err)
{
	R4ConfigValue cv;
	R4Status	rc;
	int			C = cfg->in_chans;

	/* img_size: at least the smallest input the architecture takes */
	LOOKUP("img_size", false);
	if (cv.v != NULL)
	{
		rc = r4_config_int(&cv, "img_size", cfg->min_input, 65535, &cfg->img_size, err);
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
		rc = r4_config_number(cv.v, &cv, "scale", &cfg->scale, err);
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
			rc = r4_config_number(cv.v, &cv, "change_threshold", &cfg->change_threshold, err);
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

/* Store a class name (text of len bytes) in cfg->class_names (*cap bytes) at *used */
static R4Status
add_class_name(R4ModelConfig *cfg, const char *text, size_t len, size_t *used, size_t *cap,
			   R4Error *err)
{
	if (len == 0 || memchr(text, '\0', len) != NULL)
		return r4_fail(err, R4_ERR_INVALID, "class names must be non-empty text without NUL characters");
	if (*used + len + 1 > (size_t) R4_CLASS_NAMES_BYTES)
		return r4_fail(err, R4_ERR_LIMIT, "class names take more than %zu bytes",
					   (size_t) R4_CLASS_NAMES_BYTES);
	/* Grown by doubling up to the limit: most heads name a handful of classes */
	if (*used + len + 1 > *cap)
	{
		size_t		ncap = *cap ? *cap : 256;
		char	   *grown;

		while (ncap < *used + len + 1)
			ncap *= 2;
		if (ncap > (size_t) R4_CLASS_NAMES_BYTES)
			ncap = R4_CLASS_NAMES_BYTES;
		grown = r4_alloc(ncap);
		if (grown == NULL)
			return r4_fail(err, R4_ERR_NOMEM, "out of memory for the class names");
		if (*used > 0)
			memcpy(grown, cfg->class_names, *used);
		r4_free(cfg->class_names);
		cfg->class_names = grown;
		*cap = ncap;
	}
	memcpy(cfg->class_names + *used, text, len);
	cfg->class_names[*used + len] = '\0';
	*used += len + 1;
	cfg->class_names_len = *used;
	return R4_OK;
}

/* Find the classification head and apply head, classes, multilabel, output. */
static R4Status
apply_head_keys(const R4SafeTensors *st, const R4Json *config, R4ModelConfig *cfg, R4Error *err)
{
	R4ConfigValue cv;
	R4Status	rc;
	int			layers,
				in_dim,
				k;
	bool		use = true;
	size_t		used = 0;
	size_t		cap = 0;

	if ((rc = r4_head_find(st, &layers, &in_dim, &k, err)) != R4_OK)
		return rc;
	LOOKUP("head", false);
	if (cv.v != NULL)
	{
		rc = r4_config_bool(&cv, "head", &use, err);
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
				rc = add_class_name(cfg, item->string, item->string_len, &used, &cap, err);
			else if (item->type == R4J_NUMBER && r4_json_get_int64(item, &code))
			{
				snprintf(num, sizeof(num), "%lld", (long long) code);
				rc = add_class_name(cfg, num, strlen(num), &used, &cap, err);
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
			if ((rc = add_class_name(cfg, num, strlen(num), &used, &cap, err)) != R4_OK)
				return rc;
		}

	LOOKUP("multilabel", false);
	if (cv.v != NULL)
	{
		rc = r4_config_bool(&cv, "multilabel", &cfg->multilabel, err);
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

/* Demand a float tensor (F32/F16/BF16). */
R4Status
r4_expect_float(const R4SafeTensors *st, const char *name, R4Error *err)
{
	const R4StTensor *t = r4_safetensors_find(st, name);

	if (r4_dtype_is_float(t->dtype))
		return R4_OK;
	r4_fail(err, R4_ERR_UNSUPPORTED, "tensor \"%s\" has dtype %s", name, r4_dtype_name(t->dtype));
	return r4_fail_detail(err, "model weights must be F32, F16 or BF16");
}

/* Give every input channel its default band, mean and std. */
void
r4_config_channel_defaults(R4ModelConfig *cfg)
{
	for (int c = 0; c < cfg->in_chans; c++)
	{
		cfg->bands[c] = c + 1;
		cfg->mean[c] = 0.0;
		cfg->std[c] = 1.0;
	}
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
				char		detail[R4_MESSAGE_LEN];
				size_t		used;

				r4_text_excerpt(config->keys[i], strlen(config->keys[i]), excerpt, sizeof(excerpt));
				r4_fail(err, R4_ERR_INVALID, "unknown configuration key \"%s\"", excerpt);
				used = snprintf(detail, sizeof(detail), "known keys: ");
				used = append_joined(detail, sizeof(detail), used, settable_keys, ", ");
				for (const R4ArchOps *const *a = r4_arch_table(); *a != NULL && used < sizeof(detail); a++)
				{
					used += snprintf(detail + used, sizeof(detail) - used, "; %s: ", (*a)->display);
					if (used < sizeof(detail))
						used = append_joined(detail, sizeof(detail), used, (*a)->own_keys, ", ");
				}
				return r4_fail_detail(err, "%s", detail);
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
	rc = ac.arch->resolve(st, config, ac.variant, ac.origin, &cfg, err);
	if (rc == R4_OK)
		rc = apply_head_keys(st, config, &cfg, err);
	/* Each bound alone still lets scale / std reach 1e60 */
	for (int c = 0; rc == R4_OK && c < cfg.in_chans; c++)
		if (fabs(cfg.scale / cfg.std[c]) > R4_NORM_MAX || fabs(cfg.mean[c] / cfg.std[c]) > R4_NORM_MAX)
		{
			r4_fail(err, R4_ERR_INVALID,
					"channel %d normalises to overflow: scale %g, mean %g, std %g", c + 1,
					cfg.scale, cfg.mean[c], cfg.std[c]);
			rc = r4_fail_detail(err, "scale / std and mean / std must stay within %g in magnitude.",
								R4_NORM_MAX);
		}
	if (rc != R4_OK)
	{
		r4_model_config_free(&cfg);
		return rc;
	}
	*out = cfg;
	return R4_OK;
}

void
r4_model_config_free(R4ModelConfig *cfg)
{
	if (cfg == NULL)
		return;
	r4_free(cfg->class_names);
	cfg->class_names = NULL;
	cfg->class_names_len = 0;
}

R4Status
r4_model_config_copy(R4ModelConfig *dst, const R4ModelConfig *src, R4Error *err)
{
	char	   *names = NULL;

	if (src->class_names != NULL && src->class_names_len > 0)
	{
		names = r4_alloc(src->class_names_len);
		if (names == NULL)
			return r4_fail(err, R4_ERR_NOMEM, "out of memory copying the class names");
		memcpy(names, src->class_names, src->class_names_len);
	}
	*dst = *src;
	dst->class_names = names;
	dst->class_names_len = names != NULL ? src->class_names_len : 0;
	return R4_OK;
}

/* Name an architecture. */
const char *
r4_arch_name(const R4ArchOps *arch)
{
	return arch != NULL ? arch->name : "unknown";
}

/* Append formatted text, growing the buffer as needed. */
void
r4_buf_printf(R4TextBuf *b, const char *fmt,...)
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
void
r4_buf_double(R4TextBuf *b, double v)
{
	char		tmp[40];

	for (int prec = 1; prec <= 17; prec++)
	{
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	r4_buf_printf(b, "%s", tmp);
}

/* Append a JSON string literal, escaping quotes, backslashes and control characters. */
static void
buf_json_string(R4TextBuf *b, const char *text)
{
	r4_buf_printf(b, "\"");
	for (const unsigned char *p = (const unsigned char *) text; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			r4_buf_printf(b, "\\%c", *p);
		else if (*p < 0x20)
			r4_buf_printf(b, "\\u%04x", *p);
		else
			r4_buf_printf(b, "%c", *p);
	}
	r4_buf_printf(b, "\"");
}

/* Append a JSON list of per-channel doubles. */
void
r4_buf_double_list(R4TextBuf *b, const double *v, int n)
{
	r4_buf_printf(b, "[");
	for (int i = 0; i < n; i++)
	{
		if (i)
			r4_buf_printf(b, ",");
		r4_buf_double(b, v[i]);
	}
	r4_buf_printf(b, "]");
}

/* Write the resolved configuration as canonical JSON. */
char *
r4_model_config_to_json(const R4ModelConfig *cfg)
{
	R4TextBuf	b;

	b.cap = 512;
	b.len = 0;
	b.failed = false;
	b.data = r4_alloc(b.cap);
	if (b.data == NULL)
		return NULL;
	b.data[0] = '\0';
	/* Only keys the architecture accepts, so that the text resolves back */
	r4_buf_printf(&b, "{\"arch\":\"%s\"", r4_arch_name(cfg->arch));
	cfg->arch->json_lead(cfg, &b);
	r4_buf_printf(&b, ",\"img_size\":%d,\"bands\":[", cfg->img_size);
	for (int c = 0; c < cfg->in_chans; c++)
		r4_buf_printf(&b, "%s%d", c ? "," : "", cfg->bands[c]);
	r4_buf_printf(&b, "],\"scale\":");
	r4_buf_double(&b, cfg->scale);
	r4_buf_printf(&b, ",\"mean\":");
	r4_buf_double_list(&b, cfg->mean, cfg->in_chans);
	r4_buf_printf(&b, ",\"std\":");
	r4_buf_double_list(&b, cfg->std, cfg->in_chans);
	r4_buf_printf(&b, ",\"input\":\"%s\"", cfg->input == R4_INPUT_RESIZE ? "resize" : "native");
	if (cfg->arch->json_tail != NULL)
		cfg->arch->json_tail(cfg, &b);
	r4_buf_printf(&b, ",\"change_threshold\":");
	if (cfg->has_change_threshold)
		r4_buf_double(&b, cfg->change_threshold);
	else
		r4_buf_printf(&b, "null");
	r4_buf_printf(&b, ",\"out_dim\":%d", cfg->out_dim);
	if (cfg->head_disabled)
		r4_buf_printf(&b, ",\"head\":false");
	if (cfg->n_classes > 0)
	{
		const char *name = cfg->class_names;

		r4_buf_printf(&b, ",\"classes\":[");
		for (int i = 0; i < cfg->n_classes; i++)
		{
			if (i)
				r4_buf_printf(&b, ",");
			buf_json_string(&b, name);
			name += strlen(name) + 1;
		}
		r4_buf_printf(&b, "],\"multilabel\":%s,\"output\":\"%s\"", cfg->multilabel ? "true" : "false",
				   cfg->output == R4_OUTPUT_PROBABILITIES ? "probabilities" : "features");
	}
	r4_buf_printf(&b, "}");
	if (b.failed)
	{
		r4_free(b.data);
		return NULL;
	}
	return b.data;
}

