/*
 * test_model_config.c — configuration resolution: shapes, metadata,
 * configuration object precedence, every validation error, and the JSON
 * round trip.  Weight files are built here in memory (zeros), so the
 * expectations come from the rules in model_config.h, not from the code.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/json.h"
#include "rai4eo/model_config.h"
#include "rai4eo/resnet.h"
#include "rai4eo/safetensors.h"
#include "rai4eo/vit.h"
#include "unit.h"

#define MAX_T 96

typedef struct Spec
{
	char		name[64];
	const char *dtype;
	int			ndim;
	int64_t		shape[4];
} Spec;

typedef struct Model
{
	Spec		t[MAX_T];
	int			n;
	const char *meta[16][2];
	int			nmeta;
} Model;

/* Append a tensor spec to the model. */
static void
add(Model *m, const char *name, const char *dtype, int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
	Spec	   *s = &m->t[m->n++];

	snprintf(s->name, sizeof(s->name), "%s", name);
	s->dtype = dtype;
	s->ndim = ndim;
	s->shape[0] = a;
	s->shape[1] = b;
	s->shape[2] = c;
	s->shape[3] = d;
}

/* Find a tensor spec by name. */
static Spec *
find(Model *m, const char *name)
{
	for (int i = 0; i < m->n; i++)
		if (strcmp(m->t[i].name, name) == 0)
			return &m->t[i];
	return NULL;
}

/* Remove a tensor spec by name. */
static void
drop(Model *m, const char *name)
{
	Spec	   *s = find(m, name);

	if (s != NULL)
		*s = m->t[--m->n];
}

/* Add a metadata entry. */
static void
meta(Model *m, const char *key, const char *value)
{
	m->meta[m->nmeta][0] = key;
	m->meta[m->nmeta][1] = value;
	m->nmeta++;
}

/* Describe a DINO-named ViT: D, in_chans C, patch P, training grid g, depth, MLP width Hd. */
static void
vit(Model *m, int D, int C, int P, int g, int depth, int Hd)
{
	char		n[64];

	memset(m, 0, sizeof(*m));
	add(m, "cls_token", "F32", 3, 1, 1, D, 0);
	add(m, "pos_embed", "F32", 3, 1, (int64_t) g * g + 1, D, 0);
	add(m, "patch_embed.proj.weight", "F32", 4, D, C, P, P);
	add(m, "patch_embed.proj.bias", "F32", 1, D, 0, 0, 0);
	for (int b = 0; b < depth; b++)
	{
#define BT(suffix, nd, a, bb) do { snprintf(n, sizeof(n), "blocks.%d.%s", b, suffix); \
		add(m, n, "F32", nd, a, bb, 0, 0); } while (0)
		BT("norm1.weight", 1, D, 0);
		BT("norm1.bias", 1, D, 0);
		BT("attn.qkv.weight", 2, 3 * D, D);
		BT("attn.qkv.bias", 1, 3 * D, 0);
		BT("attn.proj.weight", 2, D, D);
		BT("attn.proj.bias", 1, D, 0);
		BT("norm2.weight", 1, D, 0);
		BT("norm2.bias", 1, D, 0);
		BT("mlp.fc1.weight", 2, Hd, D);
		BT("mlp.fc1.bias", 1, Hd, 0);
		BT("mlp.fc2.weight", 2, D, Hd);
		BT("mlp.fc2.bias", 1, D, 0);
#undef BT
	}
	add(m, "norm.weight", "F32", 1, D, 0, 0, 0);
	add(m, "norm.bias", "F32", 1, D, 0, 0, 0);
}

/* Give the element size of the few dtypes the tests use. */
static int
dtype_bytes(const char *dt)
{
	if (strcmp(dt, "F32") == 0 || strcmp(dt, "I32") == 0)
		return 4;
	if (strcmp(dt, "I64") == 0 || strcmp(dt, "F64") == 0)
		return 8;
	if (strcmp(dt, "U8") == 0)
		return 1;
	return 2;
}

/* Append s to a JSON string literal, escaping quotes and backslashes. */
static size_t
put_str(char *buf, size_t at, const char *s)
{
	buf[at++] = '"';
	for (; *s; s++)
	{
		if (*s == '"' || *s == '\\')
			buf[at++] = '\\';
		buf[at++] = *s;
	}
	buf[at++] = '"';
	return at;
}

/* Serialize the model as a safetensors file with all-zero data. */
static uint8_t *
serialize(const Model *m, size_t *len)
{
	static char hdr[65536];
	size_t		at = 0;
	size_t		off = 0;
	size_t		hlen;
	uint8_t    *buf;

	hdr[at++] = '{';
	if (m->nmeta)
	{
		at += sprintf(hdr + at, "\"__metadata__\":{");
		for (int i = 0; i < m->nmeta; i++)
		{
			if (i)
				hdr[at++] = ',';
			at = put_str(hdr, at, m->meta[i][0]);
			hdr[at++] = ':';
			at = put_str(hdr, at, m->meta[i][1]);
		}
		hdr[at++] = '}';
	}
	for (int i = 0; i < m->n; i++)
	{
		const Spec *s = &m->t[i];
		size_t		numel = 1;

		for (int d = 0; d < s->ndim; d++)
			numel *= (size_t) s->shape[d];
		if (at > 1)
			hdr[at++] = ',';
		at = put_str(hdr, at, s->name);
		at += sprintf(hdr + at, ":{\"dtype\":\"%s\",\"shape\":[", s->dtype);
		for (int d = 0; d < s->ndim; d++)
			at += sprintf(hdr + at, "%s%lld", d ? "," : "", (long long) s->shape[d]);
		at += sprintf(hdr + at, "],\"data_offsets\":[%zu,%zu]}", off,
					  off + numel * dtype_bytes(s->dtype));
		off += numel * dtype_bytes(s->dtype);
	}
	hdr[at++] = '}';
	while (at % 8)
		hdr[at++] = ' ';
	hlen = at;
	*len = 8 + hlen + off;
	buf = calloc(1, *len);
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t) (hlen >> (8 * i));
	memcpy(buf + 8, hdr, hlen);
	return buf;
}

/* Resolve a model with an optional configuration (JSON text). */
static R4Status
resolve(const Model *m, const char *config, R4ModelConfig *cfg, R4Error *err)
{
	size_t		len;
	uint8_t    *buf = serialize(m, &len);
	R4SafeTensors st;
	R4Json	   *cj = NULL;
	R4Status	rc;

	r4_error_clear(err);
	rc = r4_safetensors_parse(buf, len, &st, err);
	if (rc != R4_OK)
	{
		fprintf(stderr, "test setup: safetensors parse failed: %s\n", err->message);
		free(buf);
		return R4_ERR_INTERNAL;
	}
	if (config != NULL && r4_json_parse(config, strlen(config), &cj, err) != R4_OK)
	{
		fprintf(stderr, "test setup: bad JSON %s\n", config);
		rc = R4_ERR_INTERNAL;
	}
	else
		rc = r4_model_config_resolve(&st, cj, cfg, err);
	r4_json_free(cj);
	r4_safetensors_free(&st);
	free(buf);
	return rc;
}

/* Expect a failure with a status and a message fragment. */
#define EXPECT_FAIL(model, config, status, fragment) \
	do { R4ModelConfig c_; R4Error e_; \
		R4Status rc_ = resolve((model), (config), &c_, &e_); \
		CHECK_MSG(rc_ == (status), "status %s, want %s (%s)", r4_status_name(rc_), \
				  r4_status_name(status), e_.message); \
		CHECK_STR_CONTAINS(e_.message, (fragment)); } while (0)

static Model m;

/* Check that shapes give the dimensions and keys their defaults. */
static void
test_defaults_from_shapes(void)
{
	R4ModelConfig c;
	R4Error		e;

	vit(&m, 64, 2, 2, 3, 2, 32);
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_OK);
	CHECK(c.arch == &r4_arch_vit);
	CHECK_EQ_INT(r4_vit_cfg(&c)->embed_dim, 64);
	CHECK_EQ_INT(r4_vit_cfg(&c)->depth, 2);
	CHECK_EQ_INT(r4_vit_cfg(&c)->patch_size, 2);
	CHECK_EQ_INT(c.in_chans, 2);
	CHECK_EQ_INT(r4_vit_cfg(&c)->mlp_hidden, 32);
	CHECK_EQ_INT(r4_vit_cfg(&c)->pos_grid, 3);
	CHECK_EQ_INT(c.img_size, 6);
	CHECK_EQ_INT(r4_vit_cfg(&c)->num_heads, 1);
	CHECK_NEAR(r4_vit_cfg(&c)->ln_eps, 1e-6, 0);
	CHECK_EQ_INT(c.bands[0], 1);
	CHECK_EQ_INT(c.bands[1], 2);
	CHECK_NEAR(c.scale, 1.0, 0);
	CHECK_NEAR(c.mean[1], 0.0, 0);
	CHECK_NEAR(c.std[1], 1.0, 0);
	CHECK_EQ_INT(c.input, R4_INPUT_NATIVE);
	CHECK_EQ_INT(r4_vit_cfg(&c)->n_last_blocks, 1);
	CHECK(!r4_vit_cfg(&c)->avgpool);
	CHECK_EQ_INT(r4_vit_cfg(&c)->readout, R4_VIT_READOUT_CLS);
	CHECK(!c.has_change_threshold);
	CHECK_EQ_INT(c.out_dim, 64);

	/* ViT-S/16-like widths: heads default to D / 64. */
	vit(&m, 384, 4, 16, 2, 1, 1536);
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_OK);
	CHECK_EQ_INT(r4_vit_cfg(&c)->num_heads, 6);
	CHECK_EQ_INT(c.img_size, 32);

	/* Tensors outside the architecture are ignored, whatever their dtype. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	add(&m, "head.weight", "F32", 2, 10, 64, 0, 0);
	add(&m, "blocks.0.num_batches_tracked", "I64", 0, 0, 0, 0, 0);
	add(&m, "blocks.x.something", "U8", 1, 3, 0, 0, 0);
	add(&m, "blocks.01.norm1.weight", "F32", 1, 7, 0, 0, 0);	/* not a canonical index */
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_OK);
	CHECK_EQ_INT(r4_vit_cfg(&c)->depth, 2);
	CHECK_EQ_INT(c.n_classes, 10);
	CHECK_EQ_INT((int) c.class_names_len, 20);	/* "0".."9", each NUL-terminated */
	r4_model_config_free(&c);
	CHECK(c.class_names == NULL);

	/* Half-precision weights are fine. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	find(&m, "blocks.1.attn.qkv.weight")->dtype = "F16";
	find(&m, "norm.bias")->dtype = "BF16";
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_OK);
}

/* Check every key read from safetensors metadata text. */
static void
test_metadata_values(void)
{
	R4ModelConfig c;
	R4Error		e;

	vit(&m, 128, 3, 4, 2, 3, 256);
	meta(&m, "format", "pt");	/* the torch writer's key: ignored */
	meta(&m, "arch", "vit");
	meta(&m, "num_heads", "4");
	meta(&m, "ln_eps", "1e-5");
	meta(&m, "img_size", "16");
	meta(&m, "bands", "[4, 2, 7]");
	meta(&m, "scale", "0.0001");
	meta(&m, "mean", "0.5");
	meta(&m, "std", "[1, 2, 0.25]");
	meta(&m, "input", "resize");
	meta(&m, "n_last_blocks", "2");
	meta(&m, "avgpool", "true");
	meta(&m, "change_threshold", "0.25");
	meta(&m, "embed_dim", "999");	/* derived keys in metadata are informational */
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_OK);
	CHECK_EQ_INT(r4_vit_cfg(&c)->num_heads, 4);
	CHECK_NEAR(r4_vit_cfg(&c)->ln_eps, 1e-5, 0);
	CHECK_EQ_INT(c.img_size, 16);
	CHECK_EQ_INT(c.bands[0], 4);
	CHECK_EQ_INT(c.bands[1], 2);
	CHECK_EQ_INT(c.bands[2], 7);
	CHECK_NEAR(c.scale, 1e-4, 0);
	CHECK_NEAR(c.mean[0], 0.5, 0);
	CHECK_NEAR(c.mean[2], 0.5, 0);
	CHECK_NEAR(c.std[1], 2.0, 0);
	CHECK_NEAR(c.std[2], 0.25, 0);
	CHECK_EQ_INT(c.input, R4_INPUT_RESIZE);
	CHECK_EQ_INT(r4_vit_cfg(&c)->n_last_blocks, 2);
	CHECK(r4_vit_cfg(&c)->avgpool);
	CHECK(c.has_change_threshold);
	CHECK_NEAR(c.change_threshold, 0.25, 0);
	CHECK_EQ_INT(c.out_dim, 128 * 3);

	/* A JSON-quoted word works too. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	meta(&m, "input", "\"resize\"");
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_OK);
	CHECK_EQ_INT(c.input, R4_INPUT_RESIZE);
}

/* Check the readout key: its values, where it may come from, what it excludes. */
static void
test_readout(void)
{
	R4ModelConfig c;
	R4Error		e;
	char	   *json;

	/* From the configuration: twice the width, the CLS keys at their defaults. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	CHECK_EQ_INT(resolve(&m, "{\"readout\": \"token_stats\"}", &c, &e), R4_OK);
	CHECK_EQ_INT(r4_vit_cfg(&c)->readout, R4_VIT_READOUT_TOKEN_STATS);
	CHECK_EQ_INT(c.out_dim, 128);
	json = r4_model_config_to_json(&c);
	CHECK(json != NULL && strstr(json, "\"readout\":\"token_stats\"") != NULL);
	r4_free(json);
	/* A bare metadata word, as tools/train writes it. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	meta(&m, "readout", "token_stats");
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_OK);
	CHECK_EQ_INT(r4_vit_cfg(&c)->readout, R4_VIT_READOUT_TOKEN_STATS);
	/* The configuration overrides the metadata, "cls" included. */
	CHECK_EQ_INT(resolve(&m, "{\"readout\": \"cls\"}", &c, &e), R4_OK);
	CHECK_EQ_INT(r4_vit_cfg(&c)->readout, R4_VIT_READOUT_CLS);
	CHECK_EQ_INT(c.out_dim, 64);
	/* CLS recipes do not combine with it, from either source. */
	EXPECT_FAIL(&m, "{\"avgpool\": true}", R4_ERR_INVALID, "takes neither n_last_blocks 1 nor avgpool");
	EXPECT_FAIL(&m, "{\"n_last_blocks\": 2}", R4_ERR_INVALID, "takes neither n_last_blocks 2");
	vit(&m, 64, 2, 2, 3, 2, 32);
	meta(&m, "avgpool", "true");
	EXPECT_FAIL(&m, "{\"readout\": \"token_stats\"}", R4_ERR_INVALID, "nor avgpool true");
	CHECK_EQ_INT(resolve(&m, "{\"readout\": \"token_stats\", \"avgpool\": false}", &c, &e), R4_OK);
	/* Other values and types. */
	EXPECT_FAIL(&m, "{\"readout\": \"mean\"}", R4_ERR_INVALID, "\"readout\" in the configuration must be \"cls\" or \"token_stats\"");
	EXPECT_FAIL(&m, "{\"readout\": 1}", R4_ERR_INVALID, "must be \"cls\" or \"token_stats\"");
	/* A caller asserting out_dim gets the readout's. */
	EXPECT_FAIL(&m, "{\"readout\": \"token_stats\", \"avgpool\": false, \"out_dim\": 64}", R4_ERR_MISMATCH, "out_dim");

	/* readout_grid: g x g regions of [mean, std], 2 g^2 D values. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	CHECK_EQ_INT(resolve(&m, "{\"readout\": \"token_stats\"}", &c, &e), R4_OK);
	CHECK_EQ_INT(r4_vit_cfg(&c)->readout_grid, 1);
	CHECK_EQ_INT(resolve(&m, "{\"readout\": \"token_stats\", \"readout_grid\": 3}", &c, &e), R4_OK);
	CHECK_EQ_INT(r4_vit_cfg(&c)->readout_grid, 3);
	CHECK_EQ_INT(c.out_dim, 2 * 9 * 64);
	json = r4_model_config_to_json(&c);
	CHECK(json != NULL && strstr(json, "\"readout\":\"token_stats\",\"readout_grid\":3") != NULL);
	r4_free(json);
	meta(&m, "readout", "token_stats");
	meta(&m, "readout_grid", "2");
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_OK);
	CHECK_EQ_INT(c.out_dim, 2 * 4 * 64);
	/* The configuration's cls with the metadata's grid: the conflict is named. */
	EXPECT_FAIL(&m, "{\"readout\": \"cls\"}", R4_ERR_INVALID, "\"readout_grid\" 2 needs \"readout\": \"token_stats\"");
	CHECK_EQ_INT(resolve(&m, "{\"readout\": \"cls\", \"readout_grid\": 1}", &c, &e), R4_OK);
	vit(&m, 64, 2, 2, 3, 2, 32);
	EXPECT_FAIL(&m, "{\"readout_grid\": 2}", R4_ERR_INVALID, "needs \"readout\": \"token_stats\"");
	EXPECT_FAIL(&m, "{\"readout\": \"token_stats\", \"readout_grid\": 0}", R4_ERR_INVALID, "readout_grid");
	EXPECT_FAIL(&m, "{\"readout\": \"token_stats\", \"readout_grid\": 9}", R4_ERR_INVALID, "readout_grid");
	EXPECT_FAIL(&m, "{\"readout\": \"token_stats\", \"readout_grid\": 1.5}", R4_ERR_INVALID, "readout_grid");
}

/* Check that the configuration object wins and asserts derived keys. */
static void
test_config_overrides_metadata(void)
{
	R4ModelConfig c;
	R4Error		e;

	vit(&m, 64, 2, 2, 3, 2, 32);
	meta(&m, "n_last_blocks", "2");
	meta(&m, "bands", "[1,2");	/* broken, but the configuration replaces it */
	meta(&m, "change_threshold", "0.5");
	meta(&m, "avgpool", "true");
	CHECK_EQ_INT(resolve(&m, "{\"n_last_blocks\": 1, \"bands\": [2, 3], \"change_threshold\": null}",
						 &c, &e), R4_OK);
	CHECK_EQ_INT(r4_vit_cfg(&c)->n_last_blocks, 1);
	CHECK_EQ_INT(c.bands[0], 2);
	CHECK(!c.has_change_threshold);
	CHECK(r4_vit_cfg(&c)->avgpool);
	CHECK_EQ_INT(c.out_dim, 128);
	/* Without the override the broken metadata is reported. */
	EXPECT_FAIL(&m, NULL, R4_ERR_INVALID, "metadata value of \"bands\" is not valid JSON");
	/* Derived keys in the configuration are assertions. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	CHECK_EQ_INT(resolve(&m, "{\"embed_dim\": 64, \"depth\": 2, \"patch_size\": 2, \"in_chans\": 2,"
						 " \"mlp_hidden\": 32, \"out_dim\": 64}", &c, &e), R4_OK);
	EXPECT_FAIL(&m, "{\"embed_dim\": 63}", R4_ERR_MISMATCH, "\"embed_dim\" in the configuration is 63 but the weights give 64");
	EXPECT_FAIL(&m, "{\"out_dim\": 128}", R4_ERR_MISMATCH, "out_dim");
	EXPECT_FAIL(&m, "{\"depth\": \"2\"}", R4_ERR_INVALID, "must be an integer");
}

/* Check the missing-tensor errors, their lists and the prefix hint. */
static void
test_missing_tensors(void)
{
	vit(&m, 64, 2, 2, 3, 2, 32);
	drop(&m, "blocks.1.mlp.fc2.bias");
	EXPECT_FAIL(&m, NULL, R4_ERR_INVALID, "lack 1 required tensor: blocks.1.mlp.fc2.bias");

	vit(&m, 64, 2, 2, 3, 2, 32);
	drop(&m, "norm.weight");
	drop(&m, "norm.bias");
	drop(&m, "blocks.0.norm1.weight");
	drop(&m, "blocks.0.norm1.bias");
	drop(&m, "blocks.1.attn.qkv.bias");
	drop(&m, "blocks.1.norm2.weight");
	drop(&m, "blocks.1.mlp.fc1.weight");
	EXPECT_FAIL(&m, NULL, R4_ERR_INVALID, "lack 7 required tensors: norm.weight, norm.bias, blocks.0.norm1.weight");
	EXPECT_FAIL(&m, NULL, R4_ERR_INVALID, "and 2 more");

	/* A whole missing block in the middle: depth comes from the highest index. */
	vit(&m, 64, 2, 2, 3, 3, 32);
	for (int i = m.n - 1; i >= 0; i--)
		if (strncmp(m.t[i].name, "blocks.1.", 9) == 0)
			drop(&m, m.t[i].name);
	EXPECT_FAIL(&m, NULL, R4_ERR_INVALID, "lack 12 required tensors: blocks.1.norm1.weight");

	/* A checkpoint with a prefix: the detail says which. */
	{
		R4ModelConfig c;
		R4Error		e;

		vit(&m, 64, 2, 2, 3, 2, 32);
		for (int i = 0; i < m.n; i++)
		{
			char		tmp[64];

			snprintf(tmp, sizeof(tmp), "module.backbone.%.40s", m.t[i].name);
			snprintf(m.t[i].name, sizeof(m.t[i].name), "%s", tmp);
		}
		CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_ERR_INVALID);
		CHECK_STR_CONTAINS(e.message, "cannot tell the model architecture");
		CHECK_STR_CONTAINS(e.detail, "prefix \"module.backbone.\"");
		CHECK_EQ_INT(resolve(&m, "{\"arch\": \"vit\"}", &c, &e), R4_ERR_INVALID);
		CHECK_STR_CONTAINS(e.message, "lack 18 required tensors: cls_token");
		CHECK_STR_CONTAINS(e.detail, "prefix \"module.backbone.\"");
	}
}

/* Check shape, dtype, variant and limit errors. */
static void
test_shapes_and_dtypes(void)
{
	Spec	   *s;

	vit(&m, 64, 2, 2, 3, 2, 32);
	find(&m, "blocks.0.attn.qkv.weight")->shape[0] = 191;
	EXPECT_FAIL(&m, NULL, R4_ERR_MISMATCH,
				"tensor \"blocks.0.attn.qkv.weight\" has shape [191, 64], expected [192, 64]");

	vit(&m, 64, 2, 2, 3, 2, 32);
	find(&m, "blocks.1.mlp.fc2.weight")->shape[1] = 31;
	EXPECT_FAIL(&m, NULL, R4_ERR_MISMATCH, "\"blocks.1.mlp.fc2.weight\" has shape [64, 31], expected [64, 32]");

	vit(&m, 64, 2, 2, 3, 2, 32);
	s = find(&m, "cls_token");
	s->ndim = 2;
	s->shape[1] = 64;
	EXPECT_FAIL(&m, NULL, R4_ERR_MISMATCH, "\"cls_token\" has shape [1, 64], expected [1, 1, 64]");

	vit(&m, 64, 2, 2, 3, 2, 32);
	find(&m, "pos_embed")->shape[1] = 9;	/* 8 patch positions: not a square */
	EXPECT_FAIL(&m, NULL, R4_ERR_MISMATCH, "8 patch positions, which is not a square grid");

	vit(&m, 64, 2, 2, 3, 2, 32);
	find(&m, "pos_embed")->shape[2] = 32;
	EXPECT_FAIL(&m, NULL, R4_ERR_MISMATCH, "\"pos_embed\" has shape [1, 10, 32], expected [1, tokens, 64]");

	vit(&m, 64, 2, 2, 3, 2, 32);
	find(&m, "patch_embed.proj.weight")->shape[3] = 3;
	EXPECT_FAIL(&m, NULL, R4_ERR_MISMATCH, "[64, 2, 2, 3], expected [embed_dim, in_chans, patch, patch]");

	vit(&m, 64, 2, 2, 3, 2, 32);
	find(&m, "norm.weight")->dtype = "I64";
	EXPECT_FAIL(&m, NULL, R4_ERR_UNSUPPORTED, "tensor \"norm.weight\" has dtype I64");

	vit(&m, 64, 2, 2, 3, 2, 32);
	find(&m, "blocks.0.attn.proj.weight")->dtype = "F64";
	EXPECT_FAIL(&m, NULL, R4_ERR_UNSUPPORTED, "dtype F64");

	/* timm variants whose extra tensors change the computation. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	add(&m, "blocks.1.ls1.gamma", "F32", 1, 64, 0, 0, 0);
	EXPECT_FAIL(&m, NULL, R4_ERR_UNSUPPORTED, "\"blocks.1.ls1.gamma\" belongs to a ViT variant");
	vit(&m, 64, 2, 2, 3, 2, 32);
	add(&m, "fc_norm.weight", "F32", 1, 64, 0, 0, 0);
	EXPECT_FAIL(&m, NULL, R4_ERR_UNSUPPORTED, "fc_norm.weight");
	vit(&m, 64, 2, 2, 3, 2, 32);
	add(&m, "reg_token", "F32", 3, 1, 4, 64, 0);
	EXPECT_FAIL(&m, NULL, R4_ERR_UNSUPPORTED, "reg_token");

	/* Limits. */
	vit(&m, 64, 300, 2, 3, 1, 32);
	EXPECT_FAIL(&m, NULL, R4_ERR_LIMIT, "300 input channels");
	vit(&m, 64, 2, 2, 3, 1, 32);
	add(&m, "blocks.5000.norm1.weight", "F32", 1, 64, 0, 0, 0);
	EXPECT_FAIL(&m, NULL, R4_ERR_LIMIT, "5001 blocks");
}

/* Check every configuration value error. */
static void
test_value_errors(void)
{
	vit(&m, 64, 2, 2, 3, 2, 32);
	EXPECT_FAIL(&m, "{\"n_last_block\": 2}", R4_ERR_INVALID, "unknown configuration key \"n_last_block\"");
	EXPECT_FAIL(&m, "[1, 2]", R4_ERR_INVALID, "must be a JSON object");
	EXPECT_FAIL(&m, "{\"bands\": [1, 2, 3]}", R4_ERR_MISMATCH, "lists 3 bands but the model has 2 input channels");
	EXPECT_FAIL(&m, "{\"bands\": [0, 2]}", R4_ERR_INVALID, "band numbers start at 1");
	EXPECT_FAIL(&m, "{\"bands\": [1.5, 2]}", R4_ERR_INVALID, "must hold integers");
	EXPECT_FAIL(&m, "{\"bands\": \"1,2\"}", R4_ERR_INVALID, "list of band numbers");
	EXPECT_FAIL(&m, "{\"mean\": [1, 2, 3]}", R4_ERR_MISMATCH, "\"mean\" in the configuration has 3 values");
	EXPECT_FAIL(&m, "{\"std\": [1, 0]}", R4_ERR_INVALID, "greater than zero (channel 2 is 0)");
	EXPECT_FAIL(&m, "{\"std\": -1}", R4_ERR_INVALID, "greater than zero");
	EXPECT_FAIL(&m, "{\"mean\": [1, null]}", R4_ERR_INVALID, "must be a number");
	EXPECT_FAIL(&m, "{\"num_heads\": 3}", R4_ERR_MISMATCH, "num_heads 3 does not divide embed_dim 64");
	EXPECT_FAIL(&m, "{\"num_heads\": 0}", R4_ERR_INVALID, "outside 1..64");
	EXPECT_FAIL(&m, "{\"n_last_blocks\": 3}", R4_ERR_INVALID, "\"n_last_blocks\" in the configuration is 3, outside 1..2");
	EXPECT_FAIL(&m, "{\"n_last_blocks\": 0}", R4_ERR_INVALID, "outside 1..2");
	EXPECT_FAIL(&m, "{\"n_last_blocks\": 1.5}", R4_ERR_INVALID, "must be an integer");
	EXPECT_FAIL(&m, "{\"input\": \"crop\"}", R4_ERR_INVALID, "\"native\" or \"resize\"");
	EXPECT_FAIL(&m, "{\"avgpool\": \"yes\"}", R4_ERR_INVALID, "true or false");
	EXPECT_FAIL(&m, "{\"change_threshold\": 3}", R4_ERR_INVALID, "cosine distance in [0, 2]");
	EXPECT_FAIL(&m, "{\"ln_eps\": -1e-6}", R4_ERR_INVALID, "\"ln_eps\"");
	EXPECT_FAIL(&m, "{\"scale\": 0}", R4_ERR_INVALID, "must not be zero");
	EXPECT_FAIL(&m, "{\"img_size\": 1}", R4_ERR_INVALID, "outside 2..65535");
	/* A ResNet architecture over ViT weights: the ResNet tensors are missing. */
	EXPECT_FAIL(&m, "{\"arch\": \"resnet50\"}", R4_ERR_INVALID, "lack 45 required tensors: conv1.weight, bn1.weight");
	EXPECT_FAIL(&m, "{\"arch\": \"resnet\"}", R4_ERR_INVALID, "lack 45 required tensors: conv1.weight");
	EXPECT_FAIL(&m, "{\"arch\": \"swin\"}", R4_ERR_INVALID, "unknown architecture \"swin\"");
	EXPECT_FAIL(&m, "{\"arch\": 1}", R4_ERR_INVALID, "must be a string");

	/* Metadata errors name the metadata. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	meta(&m, "n_last_blocks", "7");
	EXPECT_FAIL(&m, NULL, R4_ERR_INVALID, "\"n_last_blocks\" in the metadata is 7");

	/* No default head count when D is not a multiple of 64. */
	vit(&m, 48, 2, 2, 3, 1, 32);
	EXPECT_FAIL(&m, NULL, R4_ERR_INVALID, "num_heads not given and embed_dim 48");
	{
		R4ModelConfig c;
		R4Error		e;

		CHECK_EQ_INT(resolve(&m, "{\"num_heads\": 3}", &c, &e), R4_OK);
		CHECK_EQ_INT(r4_vit_cfg(&c)->num_heads, 3);
	}
}

/* Check that ResNet-only keys are refused for a ViT. */
static void
test_resnet_keys_refused(void)
{
	vit(&m, 64, 2, 2, 3, 2, 32);
	EXPECT_FAIL(&m, "{\"bn_eps\": 1e-5}", R4_ERR_INVALID,
				"\"bn_eps\" in the configuration applies to ResNet models only, and this model is a ViT");
	EXPECT_FAIL(&m, "{\"layers\": [2, 2, 2, 2]}", R4_ERR_INVALID, "\"layers\" in the configuration applies to ResNet");
	EXPECT_FAIL(&m, "{\"block\": \"basic\"}", R4_ERR_INVALID, "\"block\" in the configuration applies to ResNet");
	EXPECT_FAIL(&m, "{\"width\": 64}", R4_ERR_INVALID, "\"width\"");
	meta(&m, "bn_eps", "1e-5");
	EXPECT_FAIL(&m, NULL, R4_ERR_INVALID, "\"bn_eps\" in the metadata applies to ResNet models only");

	/* Derived ResNet keys in the metadata are informational, as the ViT's are. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	meta(&m, "layers", "[3, 4, 6, 3]");
	meta(&m, "block", "bottleneck");
	{
		R4ModelConfig c;
		R4Error		e;
		char	   *json;

		CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_OK);
		CHECK(c.arch == &r4_arch_vit && r4_resnet_cfg(&c) == NULL);
		/* The ViT JSON has no ResNet keys, so it feeds back. */
		json = r4_model_config_to_json(&c);
		CHECK(json != NULL && strstr(json, "bn_eps") == NULL && strstr(json, "layers") == NULL);
		r4_free(json);
	}
	/* An unknown architecture lists both. */
	EXPECT_FAIL(&m, "{\"arch\": \"swin\"}", R4_ERR_INVALID, "unknown architecture");
	{
		R4ModelConfig c;
		R4Error		e;

		resolve(&m, "{\"arch\": \"swin\"}", &c, &e);
		CHECK_STR_CONTAINS(e.detail, "vit, resnet");
	}
}

/* Check the canonical JSON text and that it resolves back to itself. */
static void
test_json_round_trip(void)
{
	R4ModelConfig c,
				c2;
	R4Error		e;
	char	   *json;
	const char *want =
		"{\"arch\":\"vit\",\"embed_dim\":128,\"depth\":3,\"patch_size\":4,\"in_chans\":3,"
		"\"mlp_hidden\":256,\"num_heads\":2,\"ln_eps\":1e-06,\"img_size\":8,\"bands\":[3,1,2],"
		"\"scale\":0.0001,\"mean\":[0.1,0.2,0.3],\"std\":[1,2,0.5],\"input\":\"native\","
		"\"n_last_blocks\":3,\"avgpool\":true,\"readout\":\"cls\",\"change_threshold\":0.3,\"out_dim\":512}";

	vit(&m, 128, 3, 4, 2, 3, 256);
	CHECK_EQ_INT(resolve(&m, "{\"num_heads\": 2, \"bands\": [3, 1, 2], \"scale\": 0.0001,"
						 " \"mean\": [0.1, 0.2, 0.3], \"std\": [1, 2, 0.5], \"n_last_blocks\": 3,"
						 " \"avgpool\": true, \"change_threshold\": 0.3}", &c, &e), R4_OK);
	json = r4_model_config_to_json(&c);
	CHECK(json != NULL);
	if (json == NULL)
		return;
	CHECK_MSG(strcmp(json, want) == 0, "\n got %s\nwant %s", json, want);
	/* Fed back as the configuration it resolves to the same thing. */
	CHECK_EQ_INT(resolve(&m, json, &c2, &e), R4_OK);
	CHECK_EQ_INT(r4_vit_cfg(&c2)->num_heads, r4_vit_cfg(&c)->num_heads);
	CHECK_EQ_INT(c2.out_dim, c.out_dim);
	CHECK_EQ_INT(c2.bands[0], 3);
	CHECK(c2.mean[1] == c.mean[1] && c2.std[2] == c.std[2] && c2.scale == c.scale);
	CHECK(c2.change_threshold == c.change_threshold && r4_vit_cfg(&c2)->avgpool);
	r4_free(json);

	/* No threshold is written as null. */
	vit(&m, 64, 2, 2, 3, 2, 32);
	CHECK_EQ_INT(resolve(&m, "{\"input\": \"resize\"}", &c, &e), R4_OK);
	json = r4_model_config_to_json(&c);
	CHECK_STR_CONTAINS(json, "\"input\":\"resize\"");
	CHECK_STR_CONTAINS(json, "\"change_threshold\":null");
	CHECK_STR_CONTAINS(json, "\"mean\":[0,0],\"std\":[1,1]");
	r4_free(json);
}

/*
 * The messages that name the architectures come from the descriptor table:
 * they must read as they did when model_config.c named ViT and ResNet
 * itself (tools and users match on them).
 */
static void
test_table_messages(void)
{
	R4ModelConfig c;
	R4Error		e;

	vit(&m, 64, 2, 2, 3, 2, 32);
	CHECK_EQ_INT(resolve(&m, "{\"n_last_block\": 2}", &c, &e), R4_ERR_INVALID);
	CHECK(strcmp(e.detail, "known keys: arch, img_size, bands, scale, mean, std, input, change_threshold, "
				 "head, classes, multilabel, output; ViT: num_heads, ln_eps, n_last_blocks, avgpool, readout, "
				 "readout_grid; "
				 "ResNet: bn_eps") == 0);
	CHECK_EQ_INT(resolve(&m, "{\"arch\": \"convnext\"}", &c, &e), R4_ERR_INVALID);
	CHECK(strcmp(e.message, "unknown architecture \"convnext\" in the configuration") == 0);
	CHECK(strcmp(e.detail, "known architectures: vit, resnet (or resnet18, resnet34, resnet50, "
				 "resnet101, resnet152, which also assert the layout)") == 0);
	CHECK_EQ_INT(resolve(&m, "{\"bn_eps\": 1e-5}", &c, &e), R4_ERR_INVALID);
	CHECK(strcmp(e.message, "\"bn_eps\" in the configuration applies to ResNet models only, and this model is a ViT") == 0);

	/* Both anchors present and no "arch" */
	add(&m, "layer1.0.conv1.weight", "F32", 4, 8, 8, 3, 3);
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_ERR_INVALID);
	CHECK(strcmp(e.message, "cannot tell the model architecture: the weights hold both ViT and ResNet tensors") == 0);
	CHECK(strcmp(e.detail, "give \"arch\": \"vit\" or \"resnet\" in the configuration") == 0);

	/* Neither */
	memset(&m, 0, sizeof(m));
	add(&m, "something.weight", "F32", 1, 4, 0, 0, 0);
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_ERR_INVALID);
	CHECK(strcmp(e.message, "cannot tell the model architecture: no \"arch\" given and no ViT or ResNet tensors found") == 0);
	CHECK(strcmp(e.detail, "expected DINO/timm ViT tensor names such as \"blocks.0.attn.qkv.weight\" or "
				 "torchvision/timm ResNet names such as \"layer1.0.conv1.weight\"") == 0);

	/* Detection and the accessors */
	vit(&m, 64, 2, 2, 3, 2, 32);
	CHECK_EQ_INT(resolve(&m, NULL, &c, &e), R4_OK);
	CHECK(c.arch == &r4_arch_vit && strcmp(r4_arch_name(c.arch), "vit") == 0);
	CHECK(r4_vit_cfg(&c) != NULL && r4_resnet_cfg(&c) == NULL);
	CHECK_EQ_INT(c.min_input, 2);	/* a ViT's smallest input is one patch */
	r4_model_config_free(&c);
}

/* Run every model configuration test. */
int
main(void)
{
	RUN(test_defaults_from_shapes);
	RUN(test_metadata_values);
	RUN(test_config_overrides_metadata);
	RUN(test_readout);
	RUN(test_missing_tensors);
	RUN(test_shapes_and_dtypes);
	RUN(test_value_errors);
	RUN(test_resnet_keys_refused);
	RUN(test_json_round_trip);
	RUN(test_table_messages);
	return unit_summary("model_config");
}
