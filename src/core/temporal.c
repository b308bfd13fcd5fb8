/*
 * temporal.c — the temporal classifier (LSTM / GRU over a sequence of
 * embeddings, optional attention pooling, classification head): its
 * tensor layout, configuration, shape checks, build, forward and parameter
 * count, all in this one file (temporal.h describes the layout).
 *
 * The gate equations are PyTorch's (torch.nn.LSTM / torch.nn.GRU docs):
 *   LSTM  i,f,g,o = split(W_ih x + b_ih + W_hh h + b_hh)
 *         c' = sig(f) c + sig(i) tanh(g),  h' = sig(o) tanh(c')
 *   GRU   r = sig(W_ir x + b_ir + W_hr h + b_hr), z likewise,
 *         n = tanh(W_in x + b_in + r (W_hn h + b_hn)),  h' = (1 - z) n + z h
 * with h and c starting at zero.  The input projections of all T steps are
 * one sgemm per layer; the recurrence is one sgemv per step.
 */
#include "rai4eo/temporal.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/head.h"
#include "rai4eo/json.h"

typedef struct Layer
{
	int			in_dim;
	float	   *w_ih;			/* [G*H][in_dim] */
	float	   *w_hh;			/* [G*H][H] */
	float	   *b_ih;			/* [G*H] (zeros when the file has no biases) */
	float	   *b_hh;			/* [G*H] */
} Layer;

struct R4Temporal
{
	R4TemporalConfig cfg;		/* classes_json not kept */
	int			gates;
	Layer		layer[R4_TEMPORAL_MAX_LAYERS];
	float	   *attn_w;			/* [H] or NULL */
	float		attn_b;
	R4Head	   *head;
	/* scratch, grown on demand */
	int			cap_steps;
	float	   *seq_a;			/* [T][max(D, H)] */
	float	   *seq_b;			/* [T][max(D, H)] */
	float	   *xg;				/* [T][G*H] input projections */
	float	   *hg;				/* [G*H] */
	float	   *h;				/* [H] */
	float	   *c;				/* [H] */
	float	   *pooled;			/* [H] */
	float	   *score;			/* [T] */
};

/* ---- names ----------------------------------------------------------------- */

bool
r4_temporal_kind_from_name(const char *name, R4RnnKind *out)
{
	if (name == NULL)
		return false;
	if (strcmp(name, "lstm") == 0)
		*out = R4_RNN_LSTM;
	else if (strcmp(name, "gru") == 0)
		*out = R4_RNN_GRU;
	else
		return false;
	return true;
}

const char *
r4_temporal_kind_name(R4RnnKind kind)
{
	return kind == R4_RNN_LSTM ? "lstm" : "gru";
}

static int
gates_of(R4RnnKind kind)
{
	return kind == R4_RNN_LSTM ? 4 : 3;
}

/* ---- configuration ------------------------------------------------------------ */

static const char *const CONFIG_KEYS[] = {
	"arch", "classes", "multilabel", "l2_normalize", "input_model", "sensor",
	"input_dim", "hidden", "layers", "attention", "out_dim", "output", NULL
};

/*
 * One configuration value: from the config object (json), else the file's
 * metadata (text, which is JSON for non-string keys, or parsed into owned).
 */
typedef struct Value
{
	const R4Json *json;
	const char *text;			/* metadata text of a string key */
	R4Json	   *owned;
} Value;

static R4Status
lookup(const R4SafeTensors *st, const R4Json *config, const char *key, bool string_key,
	   Value *v, R4Error *err)
{
	const char *meta;

	memset(v, 0, sizeof(*v));
	if (config != NULL && (v->json = r4_json_get(config, key)) != NULL)
	{
		if (v->json->type == R4J_NULL)
			v->json = NULL;
		return R4_OK;
	}
	meta = r4_safetensors_meta(st, key);
	if (meta == NULL)
		return R4_OK;
	if (string_key)
	{
		v->text = meta;
		return R4_OK;
	}
	if (r4_json_parse(meta, strlen(meta), &v->owned, err) != R4_OK)
		return r4_fail(err, R4_ERR_INVALID, "metadata \"%s\" is not valid JSON text", key);
	v->json = v->owned;
	return R4_OK;
}

static R4Status
value_string(const R4SafeTensors *st, const R4Json *config, const char *key, char *buf,
			 size_t size, R4Error *err)
{
	Value		v;
	const char *s = NULL;
	R4Status	rc = lookup(st, config, key, true, &v, err);

	if (rc != R4_OK)
		return rc;
	if (v.json != NULL)
	{
		if (v.json->type != R4J_STRING || strlen(v.json->string) != v.json->string_len)
			return r4_fail(err, R4_ERR_INVALID, "\"%s\" in the configuration must be a string", key);
		s = v.json->string;
	}
	else
		s = v.text;
	if (s != NULL)
	{
		if (strlen(s) >= size)
			return r4_fail(err, R4_ERR_INVALID, "\"%s\" is longer than %zu bytes", key, size - 1);
		memcpy(buf, s, strlen(s) + 1);
	}
	return R4_OK;
}

static R4Status
value_bool(const R4SafeTensors *st, const R4Json *config, const char *key, bool *out, R4Error *err)
{
	Value		v;
	R4Status	rc = lookup(st, config, key, false, &v, err);

	if (rc != R4_OK)
		return rc;
	if (v.json != NULL)
	{
		if (v.json->type != R4J_TRUE && v.json->type != R4J_FALSE)
			rc = r4_fail(err, R4_ERR_INVALID, "\"%s\" in the configuration must be true or false", key);
		else
			*out = v.json->type == R4J_TRUE;
	}
	r4_json_free(v.owned);
	return rc;
}

/* A derived integer key: if given it must equal the value the shapes say. */
static R4Status
assert_int(const R4SafeTensors *st, const R4Json *config, const char *key, int64_t expected,
		   R4Error *err)
{
	Value		v;
	int64_t		got;
	R4Status	rc = lookup(st, config, key, false, &v, err);

	if (rc != R4_OK)
		return rc;
	if (v.json != NULL)
	{
		if (!r4_json_get_int64(v.json, &got))
			rc = r4_fail(err, R4_ERR_INVALID, "\"%s\" in the configuration must be an integer", key);
		else if (got != expected)
			rc = r4_fail(err, R4_ERR_MISMATCH, "\"%s\" is %lld in the configuration but %lld in the weights",
						 key, (long long) got, (long long) expected);
	}
	r4_json_free(v.owned);
	return rc;
}

/* A growing text buffer for JSON output; ok false after an allocation failure. */
typedef struct Text
{
	char	   *s;
	size_t		len;
	size_t		cap;
	bool		ok;
} Text;

static void
text_add(Text *t, const char *p, size_t n)
{
	if (!t->ok)
		return;
	if (t->len + n + 1 > t->cap)
	{
		size_t		cap = t->cap ? t->cap : 256;
		char	   *s;

		while (cap < t->len + n + 1)
			cap *= 2;
		s = r4_alloc(cap);
		if (s == NULL)
		{
			t->ok = false;
			return;
		}
		if (t->s)
			memcpy(s, t->s, t->len);
		r4_free(t->s);
		t->s = s;
		t->cap = cap;
	}
	memcpy(t->s + t->len, p, n);
	t->len += n;
	t->s[t->len] = '\0';
}

static void
text_printf(Text *t, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
text_printf(Text *t, const char *fmt,...)
{
	char		buf[512];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= sizeof(buf))
	{
		t->ok = false;
		return;
	}
	text_add(t, buf, n);
}

static void
text_json_string(Text *t, const char *s, size_t n)
{
	text_add(t, "\"", 1);
	for (size_t i = 0; i < n; i++)
	{
		unsigned char ch = (unsigned char) s[i];

		if (ch == '"' || ch == '\\')
		{
			char		e[2] = {'\\', (char) ch};

			text_add(t, e, 2);
		}
		else if (ch < 0x20)
			text_printf(t, "\\u%04x", ch);
		else
			text_add(t, (const char *) &s[i], 1);
	}
	text_add(t, "\"", 1);
}

/* classes: a JSON array of strings or numbers, one per class; default "0", "1", ... */
static R4Status
resolve_classes(const R4SafeTensors *st, const R4Json *config, int n, char **out, R4Error *err)
{
	Value		v;
	Text		t = {NULL, 0, 0, true};
	R4Status	rc = lookup(st, config, "classes", false, &v, err);

	*out = NULL;
	if (rc != R4_OK)
		return rc;
	if (v.json != NULL && v.json->type != R4J_ARRAY)
		rc = r4_fail(err, R4_ERR_INVALID, "\"classes\" must be a JSON array of class names");
	else if (v.json != NULL && (int) v.json->count != n)
		rc = r4_fail(err, R4_ERR_MISMATCH, "\"classes\" has %zu names but the head has %d outputs",
					 v.json->count, n);
	if (rc == R4_OK)
	{
		text_add(&t, "[", 1);
		for (int i = 0; i < n; i++)
		{
			if (i > 0)
				text_add(&t, ", ", 2);
			if (v.json == NULL)
				text_printf(&t, "\"%d\"", i);
			else if (v.json->items[i].type == R4J_STRING)
				text_json_string(&t, v.json->items[i].string, v.json->items[i].string_len);
			else if (v.json->items[i].type == R4J_NUMBER)
				text_add(&t, v.json->items[i].raw, strlen(v.json->items[i].raw));
			else
			{
				rc = r4_fail(err, R4_ERR_INVALID, "class name %d is neither a string nor a number", i + 1);
				break;
			}
		}
		text_add(&t, "]", 1);
		if (rc == R4_OK && !t.ok)
			rc = r4_fail(err, R4_ERR_NOMEM, "out of memory writing the class names");
	}
	r4_json_free(v.owned);
	if (rc != R4_OK)
		r4_free(t.s);
	else
		*out = t.s;
	return rc;
}

static bool
parse_config(const char *config_json, R4Json **config, R4Error *err, R4Status *rc)
{
	*config = NULL;
	*rc = R4_OK;
	if (config_json == NULL)
		return true;
	*rc = r4_json_parse(config_json, strlen(config_json), config, err);
	if (*rc != R4_OK)
		return false;
	if ((*config)->type != R4J_OBJECT)
	{
		*rc = r4_fail(err, R4_ERR_INVALID, "the model configuration must be a JSON object");
		return false;
	}
	return true;
}

bool
r4_temporal_is_temporal(const R4SafeTensors *st, const char *config_json)
{
	R4Json	   *config;
	R4Error		err;
	R4Status	rc;
	char		arch[16] = "";
	R4RnnKind	kind;
	bool		yes;

	if (!parse_config(config_json, &config, &err, &rc))
	{
		r4_json_free(config);
		return false;
	}
	yes = value_string(st, config, "arch", arch, sizeof(arch), &err) == R4_OK &&
		r4_temporal_kind_from_name(arch, &kind);
	r4_json_free(config);
	return yes;
}

/* A float tensor of exactly this shape (cols 0: 1-d [rows]). */
static R4Status
expect(const R4SafeTensors *st, const char *name, int64_t rows, int64_t cols, R4Error *err)
{
	const R4StTensor *t = r4_safetensors_find(st, name);

	if (t == NULL)
		return r4_fail(err, R4_ERR_INVALID, "tensor \"%s\" is missing", name);
	if (!r4_dtype_is_float(t->dtype))
		return r4_fail(err, R4_ERR_UNSUPPORTED, "tensor \"%s\" has dtype %s; F32, F16 and BF16 are supported",
					   name, r4_dtype_name(t->dtype));
	if (cols == 0 ? (t->ndim != 1 || t->shape[0] != rows)
		: (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols))
	{
		if (cols == 0)
			return r4_fail(err, R4_ERR_MISMATCH, "tensor \"%s\" must have shape [%lld]", name, (long long) rows);
		return r4_fail(err, R4_ERR_MISMATCH, "tensor \"%s\" must have shape [%lld, %lld]", name,
					   (long long) rows, (long long) cols);
	}
	return R4_OK;
}

/* The recurrent layout: layers, hidden and input width from weight_*_l{k}. */
static R4Status
check_layout(const R4SafeTensors *st, R4TemporalConfig *cfg, R4Error *err)
{
	const R4StTensor *w0 = r4_safetensors_find(st, "weight_ih_l0");
	int			G = gates_of(cfg->kind);
	char		name[64];
	bool		bias;
	R4Status	rc;

	for (size_t i = 0; i < st->count; i++)
	{
		const char *n = st->tensors[i].name;

		if (strstr(n, "_reverse") != NULL && (strncmp(n, "weight_", 7) == 0 || strncmp(n, "bias_", 5) == 0))
			return r4_fail(err, R4_ERR_UNSUPPORTED, "bidirectional recurrent layers (\"%s\") are not supported", n);
		if (strncmp(n, "weight_hr_l", 11) == 0)
			return r4_fail(err, R4_ERR_UNSUPPORTED, "LSTMs with projections (\"%s\", proj_size) are not supported", n);
	}
	if (w0 == NULL)
		return r4_fail(err, R4_ERR_INVALID, "tensor \"weight_ih_l0\" is missing: not an nn.%s state dict",
					   cfg->kind == R4_RNN_LSTM ? "LSTM" : "GRU");
	if (w0->ndim != 2 || w0->shape[0] % G != 0 || w0->shape[0] == 0 || w0->shape[1] == 0)
		return r4_fail(err, R4_ERR_MISMATCH, "tensor \"weight_ih_l0\" must have shape [%d * hidden, input_dim]", G);
	if (w0->shape[0] / G > R4_TEMPORAL_MAX_HIDDEN || w0->shape[1] > R4_TEMPORAL_MAX_INPUT)
		return r4_fail(err, R4_ERR_LIMIT, "hidden size %lld or input width %lld is too large (at most %d and %d)",
					   (long long) (w0->shape[0] / G), (long long) w0->shape[1],
					   R4_TEMPORAL_MAX_HIDDEN, R4_TEMPORAL_MAX_INPUT);
	cfg->hidden = (int) (w0->shape[0] / G);
	cfg->input_dim = (int) w0->shape[1];
	bias = r4_safetensors_find(st, "bias_ih_l0") != NULL || r4_safetensors_find(st, "bias_hh_l0") != NULL;
	cfg->layers = 0;
	for (int k = 0;; k++)
	{
		snprintf(name, sizeof(name), "weight_ih_l%d", k);
		if (r4_safetensors_find(st, name) == NULL)
			break;
		if (k == R4_TEMPORAL_MAX_LAYERS)
			return r4_fail(err, R4_ERR_LIMIT, "more than %d recurrent layers", R4_TEMPORAL_MAX_LAYERS);
		if ((rc = expect(st, name, (int64_t) G * cfg->hidden, k == 0 ? cfg->input_dim : cfg->hidden, err)) != R4_OK)
			return rc;
		snprintf(name, sizeof(name), "weight_hh_l%d", k);
		if ((rc = expect(st, name, (int64_t) G * cfg->hidden, cfg->hidden, err)) != R4_OK)
			return rc;
		snprintf(name, sizeof(name), "bias_ih_l%d", k);
		if (bias && (rc = expect(st, name, (int64_t) G * cfg->hidden, 0, err)) != R4_OK)
			return rc;
		if (!bias && r4_safetensors_find(st, name) != NULL)
			return r4_fail(err, R4_ERR_INVALID, "tensor \"%s\" is present but layer 0 has no biases", name);
		snprintf(name, sizeof(name), "bias_hh_l%d", k);
		if (bias && (rc = expect(st, name, (int64_t) G * cfg->hidden, 0, err)) != R4_OK)
			return rc;
		cfg->layers = k + 1;
	}
	/* A gap (l0, l2) or a stray hidden-hidden weight means a different model */
	snprintf(name, sizeof(name), "weight_hh_l%d", cfg->layers);
	if (r4_safetensors_find(st, name) != NULL)
		return r4_fail(err, R4_ERR_INVALID, "tensor \"%s\" has no \"weight_ih_l%d\"", name, cfg->layers);
	for (size_t i = 0; i < st->count; i++)
	{
		const char *n = st->tensors[i].name;
		int			k;
		char		tail;

		if ((sscanf(n, "weight_ih_l%d%c", &k, &tail) == 1 || sscanf(n, "weight_hh_l%d%c", &k, &tail) == 1 ||
			 sscanf(n, "bias_ih_l%d%c", &k, &tail) == 1 || sscanf(n, "bias_hh_l%d%c", &k, &tail) == 1) &&
			(k < 0 || k >= cfg->layers))
			return r4_fail(err, R4_ERR_INVALID, "tensor \"%s\" belongs to no layer (the file has %d)", n, cfg->layers);
	}
	cfg->attention = r4_safetensors_find(st, "attn.weight") != NULL;
	if (cfg->attention)
	{
		if ((rc = expect(st, "attn.weight", 1, cfg->hidden, err)) != R4_OK)
			return rc;
		if ((rc = expect(st, "attn.bias", 1, 0, err)) != R4_OK)
			return rc;
	}
	else if (r4_safetensors_find(st, "attn.bias") != NULL)
		return r4_fail(err, R4_ERR_INVALID, "tensor \"attn.bias\" is present without \"attn.weight\"");
	return R4_OK;
}

R4Status
r4_temporal_config_resolve(const R4SafeTensors *st, const char *config_json,
						   R4TemporalConfig *cfg, R4Error *err)
{
	R4Json	   *config = NULL;
	char		arch[16] = "";
	char		output[32] = "probabilities";
	int			head_layers,
				head_in;
	R4Status	rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->multilabel = true;
	strcpy(cfg->sensor, "PF-SR");
	if (!parse_config(config_json, &config, err, &rc))
		goto done;
	for (size_t i = 0; config != NULL && i < config->count; i++)
	{
		bool		known = false;

		for (int k = 0; CONFIG_KEYS[k] != NULL; k++)
			known |= strcmp(config->keys[i], CONFIG_KEYS[k]) == 0;
		/* change_threshold is what calibration writes on any model; it means nothing here */
		if (!known && strcmp(config->keys[i], "change_threshold") != 0)
		{
			rc = r4_fail(err, R4_ERR_INVALID, "unknown configuration key \"%s\" for a temporal model",
						 config->keys[i]);
			r4_fail_detail(err, "Keys: arch, classes, multilabel, l2_normalize, input_model, sensor "
						   "(input_dim, hidden, layers, attention, out_dim and output are derived).");
			goto done;
		}
	}
	if ((rc = value_string(st, config, "arch", arch, sizeof(arch), err)) != R4_OK)
		goto done;
	if (!r4_temporal_kind_from_name(arch, &cfg->kind))
	{
		rc = r4_fail(err, R4_ERR_INVALID, "\"arch\" of a temporal model must be \"lstm\" or \"gru\"");
		goto done;
	}
	if ((rc = value_string(st, config, "input_model", cfg->input_model, sizeof(cfg->input_model), err)) != R4_OK ||
		(rc = value_string(st, config, "sensor", cfg->sensor, sizeof(cfg->sensor), err)) != R4_OK ||
		(rc = value_string(st, config, "output", output, sizeof(output), err)) != R4_OK ||
		(rc = value_bool(st, config, "multilabel", &cfg->multilabel, err)) != R4_OK ||
		(rc = value_bool(st, config, "l2_normalize", &cfg->l2_normalize, err)) != R4_OK)
		goto done;
	if (strcmp(cfg->sensor, "PF-SR") != 0 && strcmp(cfg->sensor, "S2-SR") != 0)
	{
		rc = r4_fail(err, R4_ERR_INVALID, "\"sensor\" must be \"PF-SR\" or \"S2-SR\"");
		goto done;
	}
	if (strcmp(output, "probabilities") != 0)
	{
		rc = r4_fail(err, R4_ERR_INVALID, "\"output\" of a temporal model can only be \"probabilities\"");
		goto done;
	}
	if ((rc = check_layout(st, cfg, err)) != R4_OK)
		goto done;
	if ((rc = r4_head_find(st, &head_layers, &head_in, &cfg->n_classes, err)) != R4_OK)
		goto done;
	if (head_layers == 0)
	{
		rc = r4_fail(err, R4_ERR_INVALID, "a temporal model needs a classification head (\"head.weight\")");
		goto done;
	}
	if (head_in != cfg->hidden)
	{
		rc = r4_fail(err, R4_ERR_MISMATCH, "the head reads %d features but the recurrent layers give %d",
					 head_in, cfg->hidden);
		goto done;
	}
	if ((rc = assert_int(st, config, "input_dim", cfg->input_dim, err)) != R4_OK ||
		(rc = assert_int(st, config, "hidden", cfg->hidden, err)) != R4_OK ||
		(rc = assert_int(st, config, "layers", cfg->layers, err)) != R4_OK ||
		(rc = assert_int(st, config, "out_dim", cfg->n_classes, err)) != R4_OK)
		goto done;
	{
		bool		attention = cfg->attention;

		if ((rc = value_bool(st, config, "attention", &attention, err)) != R4_OK)
			goto done;
		if (attention != cfg->attention)
		{
			rc = r4_fail(err, R4_ERR_MISMATCH, "\"attention\" is %s in the configuration but the weights %s",
						 attention ? "true" : "false", cfg->attention ? "have attn.weight" : "have no attn.weight");
			goto done;
		}
	}
	rc = resolve_classes(st, config, cfg->n_classes, &cfg->classes_json, err);
done:
	r4_json_free(config);
	if (rc != R4_OK)
		r4_temporal_config_free(cfg);
	return rc;
}

char *
r4_temporal_config_to_json(const R4TemporalConfig *cfg)
{
	Text		t = {NULL, 0, 0, true};

	text_printf(&t, "{\"arch\": \"%s\", \"input_dim\": %d, \"hidden\": %d, \"layers\": %d, "
				"\"attention\": %s, \"out_dim\": %d, \"output\": \"probabilities\", \"multilabel\": %s, "
				"\"l2_normalize\": %s, \"sensor\": \"%s\", \"input_model\": ",
				r4_temporal_kind_name(cfg->kind), cfg->input_dim, cfg->hidden, cfg->layers,
				cfg->attention ? "true" : "false", cfg->n_classes, cfg->multilabel ? "true" : "false",
				cfg->l2_normalize ? "true" : "false", cfg->sensor);
	if (cfg->input_model[0])
		text_json_string(&t, cfg->input_model, strlen(cfg->input_model));
	else
		text_add(&t, "null", 4);
	text_add(&t, ", \"classes\": ", 13);
	text_add(&t, cfg->classes_json, strlen(cfg->classes_json));
	text_add(&t, "}", 1);
	if (!t.ok)
	{
		r4_free(t.s);
		return NULL;
	}
	return t.s;
}

void
r4_temporal_config_free(R4TemporalConfig *cfg)
{
	r4_free(cfg->classes_json);
	cfg->classes_json = NULL;
}

/* ---- build -------------------------------------------------------------------- */

static float *
copy_tensor(const R4SafeTensors *st, const char *name, size_t n, R4Status *rc, R4Error *err)
{
	const R4StTensor *t = r4_safetensors_find(st, name);
	float	   *out = r4_alloc_zero(n * sizeof(float));

	if (out == NULL)
	{
		*rc = r4_fail(err, R4_ERR_NOMEM, "out of memory copying \"%s\"", name);
		return NULL;
	}
	/* Absent (a bias-free model): zeros */
	if (t != NULL && (*rc = r4_tensor_to_f32(t, out, err)) != R4_OK)
	{
		r4_free(out);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (!isfinite(out[i]))
		{
			*rc = r4_fail(err, R4_ERR_INVALID, "tensor \"%s\" holds a NaN or infinite value", name);
			r4_free(out);
			return NULL;
		}
	return out;
}

R4Status
r4_temporal_build(const R4SafeTensors *st, const R4TemporalConfig *cfg, R4Temporal **out, R4Error *err)
{
	R4Temporal *m;
	R4Status	rc = R4_OK;
	int			G = gates_of(cfg->kind);
	size_t		GH = (size_t) G * cfg->hidden;
	char		name[64];

	*out = NULL;
	m = r4_alloc_zero(sizeof(*m));
	if (m == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory building the temporal model");
	m->cfg = *cfg;
	m->cfg.classes_json = NULL;
	m->gates = G;
	for (int k = 0; k < cfg->layers && rc == R4_OK; k++)
	{
		Layer	   *L = &m->layer[k];

		L->in_dim = k == 0 ? cfg->input_dim : cfg->hidden;
		snprintf(name, sizeof(name), "weight_ih_l%d", k);
		if ((L->w_ih = copy_tensor(st, name, GH * L->in_dim, &rc, err)) == NULL)
			break;
		snprintf(name, sizeof(name), "weight_hh_l%d", k);
		if ((L->w_hh = copy_tensor(st, name, GH * cfg->hidden, &rc, err)) == NULL)
			break;
		snprintf(name, sizeof(name), "bias_ih_l%d", k);
		if ((L->b_ih = copy_tensor(st, name, GH, &rc, err)) == NULL)
			break;
		snprintf(name, sizeof(name), "bias_hh_l%d", k);
		if ((L->b_hh = copy_tensor(st, name, GH, &rc, err)) == NULL)
			break;
	}
	if (rc == R4_OK && cfg->attention)
	{
		float	   *b;

		if ((m->attn_w = copy_tensor(st, "attn.weight", cfg->hidden, &rc, err)) != NULL &&
			(b = copy_tensor(st, "attn.bias", 1, &rc, err)) != NULL)
		{
			m->attn_b = b[0];
			r4_free(b);
		}
	}
	if (rc == R4_OK)
		rc = r4_head_build(st, cfg->multilabel, &m->head, err);
	if (rc == R4_OK)
	{
		m->hg = r4_alloc(GH * sizeof(float));
		m->h = r4_alloc(cfg->hidden * sizeof(float));
		m->c = r4_alloc(cfg->hidden * sizeof(float));
		m->pooled = r4_alloc(cfg->hidden * sizeof(float));
		if (!m->hg || !m->h || !m->c || !m->pooled)
			rc = r4_fail(err, R4_ERR_NOMEM, "out of memory building the temporal model");
	}
	if (rc != R4_OK)
	{
		r4_temporal_free(m);
		return rc;
	}
	*out = m;
	return R4_OK;
}

size_t
r4_temporal_param_count(const R4Temporal *m)
{
	size_t		n = r4_head_param_count(m->head);
	size_t		GH = (size_t) m->gates * m->cfg.hidden;

	for (int k = 0; k < m->cfg.layers; k++)
		n += GH * (m->layer[k].in_dim + m->cfg.hidden + 2);
	if (m->attn_w)
		n += m->cfg.hidden + 1;
	return n;
}

void
r4_temporal_free(R4Temporal *m)
{
	if (m == NULL)
		return;
	for (int k = 0; k < R4_TEMPORAL_MAX_LAYERS; k++)
	{
		r4_free(m->layer[k].w_ih);
		r4_free(m->layer[k].w_hh);
		r4_free(m->layer[k].b_ih);
		r4_free(m->layer[k].b_hh);
	}
	r4_free(m->attn_w);
	r4_head_free(m->head);
	r4_free(m->seq_a);
	r4_free(m->seq_b);
	r4_free(m->xg);
	r4_free(m->score);
	r4_free(m->hg);
	r4_free(m->h);
	r4_free(m->c);
	r4_free(m->pooled);
	r4_free(m);
}

/* ---- forward ------------------------------------------------------------------ */

static float
sigmoidf(float x)
{
	return 1.0f / (1.0f + expf(-x));
}

static R4Status
reserve(R4Temporal *m, int T, R4Error *err)
{
	size_t		width = m->cfg.input_dim > m->cfg.hidden ? m->cfg.input_dim : m->cfg.hidden;
	size_t		GH = (size_t) m->gates * m->cfg.hidden;

	if (T <= m->cap_steps)
		return R4_OK;
	r4_free(m->seq_a);
	r4_free(m->seq_b);
	r4_free(m->xg);
	r4_free(m->score);
	m->seq_a = r4_alloc((size_t) T * width * sizeof(float));
	m->seq_b = r4_alloc((size_t) T * width * sizeof(float));
	m->xg = r4_alloc((size_t) T * GH * sizeof(float));
	m->score = r4_alloc((size_t) T * sizeof(float));
	if (!m->seq_a || !m->seq_b || !m->xg || !m->score)
	{
		m->cap_steps = 0;
		return r4_fail(err, R4_ERR_NOMEM, "out of memory for a sequence of %d steps", T);
	}
	m->cap_steps = T;
	return R4_OK;
}

/* One layer over in[T][L->in_dim] into out[T][H]. */
static void
run_layer(R4Temporal *m, const Layer *L, const float *in, int T, float *out)
{
	int			H = m->cfg.hidden;
	int			GH = m->gates * H;

	/* xg = in . W_ih^T + b_ih, for every step at once */
	for (int t = 0; t < T; t++)
		memcpy(m->xg + (size_t) t * GH, L->b_ih, GH * sizeof(float));
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, GH, L->in_dim, 1.0f, in, L->in_dim,
				L->w_ih, L->in_dim, 1.0f, m->xg, GH);
	memset(m->h, 0, H * sizeof(float));
	memset(m->c, 0, H * sizeof(float));
	for (int t = 0; t < T; t++)
	{
		const float *xg = m->xg + (size_t) t * GH;
		float	   *hg = m->hg;

		memcpy(hg, L->b_hh, GH * sizeof(float));
		cblas_sgemv(CblasRowMajor, CblasNoTrans, GH, H, 1.0f, L->w_hh, H, m->h, 1, 1.0f, hg, 1);
		if (m->cfg.kind == R4_RNN_LSTM)
		{
			for (int j = 0; j < H; j++)
			{
				float		i = sigmoidf(xg[j] + hg[j]);
				float		f = sigmoidf(xg[H + j] + hg[H + j]);
				float		g = tanhf(xg[2 * H + j] + hg[2 * H + j]);
				float		o = sigmoidf(xg[3 * H + j] + hg[3 * H + j]);

				m->c[j] = f * m->c[j] + i * g;
				m->h[j] = o * tanhf(m->c[j]);
			}
		}
		else
		{
			for (int j = 0; j < H; j++)
			{
				float		r = sigmoidf(xg[j] + hg[j]);
				float		z = sigmoidf(xg[H + j] + hg[H + j]);
				float		n = tanhf(xg[2 * H + j] + r * hg[2 * H + j]);

				m->h[j] = (1.0f - z) * n + z * m->h[j];
			}
		}
		memcpy(out + (size_t) t * H, m->h, H * sizeof(float));
	}
}

R4Status
r4_temporal_forward(R4Temporal *m, const float *x, int T, float *probs, R4Error *err)
{
	int			D = m->cfg.input_dim;
	int			H = m->cfg.hidden;
	float	   *in,
			   *out;
	R4Status	rc;

	if (T < 1)
		return r4_fail(err, R4_ERR_RANGE, "a sequence needs at least one step");
	if (T > R4_TEMPORAL_MAX_STEPS)
		return r4_fail(err, R4_ERR_LIMIT, "a sequence of %d steps is too long (at most %d)", T,
					   R4_TEMPORAL_MAX_STEPS);
	if ((rc = reserve(m, T, err)) != R4_OK)
		return rc;
	in = m->seq_a;
	memcpy(in, x, (size_t) T * D * sizeof(float));
	for (size_t i = 0; i < (size_t) T * D; i++)
		if (!isfinite(in[i]))
			return r4_fail(err, R4_ERR_INVALID, "the sequence holds a NaN or infinite value");
	if (m->cfg.l2_normalize)
	{
		/* Like torch.nn.functional.normalize (eps 1e-12), in double for the norm */
		for (int t = 0; t < T; t++)
		{
			float	   *v = in + (size_t) t * D;
			double		s = 0.0;

			for (int j = 0; j < D; j++)
				s += (double) v[j] * v[j];
			s = sqrt(s);
			if (s < 1e-12)
				s = 1e-12;
			for (int j = 0; j < D; j++)
				v[j] = (float) (v[j] / s);
		}
	}
	out = m->seq_b;
	for (int k = 0; k < m->cfg.layers; k++)
	{
		float	   *tmp;

		run_layer(m, &m->layer[k], in, T, out);
		tmp = in;
		in = out;
		out = tmp;
	}
	/* in now holds the top layer's outputs [T][H] */
	if (m->attn_w != NULL)
	{
		float		mx = -INFINITY;
		double		sum = 0.0;

		for (int t = 0; t < T; t++)
		{
			float		s = m->attn_b;

			for (int j = 0; j < H; j++)
				s += m->attn_w[j] * in[(size_t) t * H + j];
			m->score[t] = s;
			if (s > mx)
				mx = s;
		}
		for (int t = 0; t < T; t++)
		{
			m->score[t] = expf(m->score[t] - mx);
			sum += m->score[t];
		}
		memset(m->pooled, 0, H * sizeof(float));
		for (int t = 0; t < T; t++)
		{
			float		a = (float) (m->score[t] / sum);

			for (int j = 0; j < H; j++)
				m->pooled[j] += a * in[(size_t) t * H + j];
		}
	}
	else
		memcpy(m->pooled, in + (size_t) (T - 1) * H, H * sizeof(float));
	return r4_head_forward(m->head, m->pooled, 1, probs, err);
}
