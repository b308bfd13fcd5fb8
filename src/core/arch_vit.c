/*
 * arch_vit.c — the DINO/timm Vision Transformer as an architecture: its
 * tensors (names and shapes), the variants it refuses, its configuration
 * keys and defaults, its JSON, its input limits and its descriptor.  The
 * forward pass and the weight block are vit.c's; both read the tensor names
 * from the lists here.
 *
 * Tensors (DINO's vision_transformer.py / timm's names, docs/formats.md):
 * cls_token [1, 1, D], pos_embed [1, g*g + 1, D], patch_embed.proj.weight
 * [D, C, P, P] and .bias [D], per block blocks.N.norm1.{weight,bias} [D],
 * attn.qkv.weight [3D, D] and .bias [3D], attn.proj.weight [D, D] and
 * .bias [D], norm2.{weight,bias} [D], mlp.fc1.weight [hidden, D] and .bias
 * [hidden], mlp.fc2.weight [D, hidden] and .bias [D]; norm.{weight,bias}
 * [D].  D, C, P, g and hidden come from the shapes, the depth from the
 * highest blocks.N present.
 */
#include "rai4eo/arch.h"
#include "rai4eo/vit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(R4ViTConfig) <= R4_ARCH_CONFIG_BYTES, "R4ViTConfig outgrew R4_ARCH_CONFIG_BYTES");

/* The ViT part of a configuration being resolved. */
#define VIT(cfg) ((R4ViTConfig *) (cfg)->arch_data.bytes)

const R4ViTConfig *
r4_vit_cfg(const R4ModelConfig *cfg)
{
	return cfg->arch == &r4_arch_vit ? (const R4ViTConfig *) cfg->arch_data.bytes : NULL;
}

/* Keys that only mean something for a ViT: "set" ones, then derived ones. */
static const char *const own_keys[] = {"num_heads", "ln_eps", "n_last_blocks", "avgpool", "readout",
	"readout_grid", NULL};
static const char *const derived_keys[] = {"embed_dim", "depth", "patch_size", "mlp_hidden", NULL};

/* The per-block tensors of a DINO/timm ViT, after "blocks.N.". */
const char *const r4_vit_block_tensors[] = {
	"norm1.weight", "norm1.bias",
	"attn.qkv.weight", "attn.qkv.bias",
	"attn.proj.weight", "attn.proj.bias",
	"norm2.weight", "norm2.bias",
	"mlp.fc1.weight", "mlp.fc1.bias",
	"mlp.fc2.weight", "mlp.fc2.bias",
	NULL
};

const char *const r4_vit_global_tensors[] = {
	"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
	"norm.weight", "norm.bias",
	NULL
};

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

/* Check that every required ViT tensor is present, naming the missing ones. */
static R4Status
check_present(const R4SafeTensors *st, int depth, R4Error *err)
{
	R4MissingList ml;
	char		name[R4_TENSOR_NAME_MAX];

	ml.count = 0;
	for (int k = 0; r4_vit_global_tensors[k]; k++)
		r4_need_tensor(st, r4_vit_global_tensors[k], &ml);
	for (int b = 0; b < depth; b++)
		for (int k = 0; r4_vit_block_tensors[k]; k++)
		{
			snprintf(name, sizeof(name), "blocks.%d.%s", b, r4_vit_block_tensors[k]);
			r4_need_tensor(st, name, &ml);
		}
	return r4_report_missing(st, &ml, &r4_arch_vit, err);
}

/* Check that every required tensor holds floats the engine can convert. */
static R4Status
check_dtypes(const R4SafeTensors *st, int depth, R4Error *err)
{
	char		name[R4_TENSOR_NAME_MAX];

	for (int b = -1; b < depth; b++)
		for (int k = 0; (b < 0 ? r4_vit_global_tensors[k] : r4_vit_block_tensors[k]) != NULL; k++)
		{
			const R4StTensor *t;

			if (b < 0)
				snprintf(name, sizeof(name), "%s", r4_vit_global_tensors[k]);
			else
				snprintf(name, sizeof(name), "blocks.%d.%s", b, r4_vit_block_tensors[k]);
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
	char		name[R4_TENSOR_NAME_MAX];
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
		r4_format_shape(pw->shape, pw->ndim, shape_s, sizeof(shape_s));
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
		r4_format_shape(pos->shape, pos->ndim, shape_s, sizeof(shape_s));
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
		r4_format_shape(fc1->shape, fc1->ndim, shape_s, sizeof(shape_s));
		return r4_fail(err, R4_ERR_MISMATCH,
					   "tensor \"blocks.0.mlp.fc1.weight\" has shape %s, expected [hidden, %lld]",
					   shape_s, (long long) D);
	}
	Hd = fc1->shape[0];
	if (Hd > 4 * (int64_t) R4_MAX_EMBED_DIM)
		return r4_fail(err, R4_ERR_LIMIT, "MLP width %lld exceeds the limit of %d",
					   (long long) Hd, 4 * R4_MAX_EMBED_DIM);

	VIT(cfg)->embed_dim = (int) D;
	cfg->in_chans = (int) C;
	VIT(cfg)->patch_size = (int) P;
	cfg->min_input = (int) P;
	VIT(cfg)->mlp_hidden = (int) Hd;
	VIT(cfg)->pos_grid = (int) g;

	/* pos_embed and the patch weight gave the dimensions above; the rest must fit them */
	{
		R4ViTShape	gs[R4_VIT_GLOBAL_TENSORS];
		const int	rest[4] = {0, 3, 4, 5};	/* cls_token, patch bias, norm weight and bias */

		r4_vit_global_shapes(VIT(cfg), (int) C, gs);
		for (int k = 0; k < 4; k++)
			if ((rc = r4_expect_shape(st, r4_vit_global_tensors[rest[k]], gs[rest[k]].ndim,
									  gs[rest[k]].dim, err)) != R4_OK)
				return rc;
	}
	for (int b = 0; b < VIT(cfg)->depth; b++)
	{
		R4ViTShape	shapes[R4_VIT_BLOCK_TENSORS];

		r4_vit_block_shapes(VIT(cfg), shapes);
		for (int k = 0; r4_vit_block_tensors[k]; k++)
		{
			snprintf(name, sizeof(name), "blocks.%d.%s", b, r4_vit_block_tensors[k]);
			rc = r4_expect_shape(st, name, shapes[k].ndim, shapes[k].dim, err);
			if (rc != R4_OK)
				return rc;
		}
	}
	return R4_OK;
}

void
r4_vit_global_shapes(const R4ViTConfig *v, int in_chans, R4ViTShape *shapes)
{
	const int64_t D = v->embed_dim;
	const int64_t P = v->patch_size;
	const int64_t G = (int64_t) v->pos_grid * v->pos_grid;
	const R4ViTShape s[R4_VIT_GLOBAL_TENSORS] = {
		{3, {1, 1, D}}, {3, {1, G + 1, D}}, {4, {D, in_chans, P, P}}, {1, {D}}, {1, {D}}, {1, {D}}
	};

	memcpy(shapes, s, sizeof(s));
}

void
r4_vit_block_shapes(const R4ViTConfig *v, R4ViTShape *shapes)
{
	const int64_t D = v->embed_dim;
	const int64_t Hd = v->mlp_hidden;
	const R4ViTShape s[R4_VIT_BLOCK_TENSORS] = {
		{1, {D}}, {1, {D}}, {2, {3 * D, D}}, {1, {3 * D}}, {2, {D, D}}, {1, {D}},
		{1, {D}}, {1, {D}}, {2, {Hd, D}}, {1, {Hd}}, {2, {D, Hd}}, {1, {D}}
	};

	memcpy(shapes, s, sizeof(s));
}

#define LOOKUP(key, words) \
	do { if ((rc = r4_config_lookup(st, config, (key), (words), &cv, err)) != R4_OK) return rc; } while (0)
#define DONE() \
	do { r4_config_release(&cv); if (rc != R4_OK) return rc; } while (0)

/* Apply the configuration keys of a ViT on top of the defaults. */
static R4Status
apply_vit_keys(const R4SafeTensors *st, const R4Json *config, R4ModelConfig *cfg, R4Error *err)
{
	R4ConfigValue cv;
	R4Status	rc;

	/* num_heads */
	LOOKUP("num_heads", false);
	if (cv.v != NULL)
	{
		rc = r4_config_int(&cv, "num_heads", 1, VIT(cfg)->embed_dim, &VIT(cfg)->num_heads, err);
		DONE();
		if (VIT(cfg)->embed_dim % VIT(cfg)->num_heads != 0)
			return r4_fail(err, R4_ERR_MISMATCH, "num_heads %d does not divide embed_dim %d",
						   VIT(cfg)->num_heads, VIT(cfg)->embed_dim);
	}
	else
	{
		if (VIT(cfg)->embed_dim % 64 != 0)
		{
			r4_fail(err, R4_ERR_INVALID,
					"num_heads not given and embed_dim %d is not a multiple of 64", VIT(cfg)->embed_dim);
			return r4_fail_detail(err, "give \"num_heads\" in the configuration");
		}
		VIT(cfg)->num_heads = VIT(cfg)->embed_dim / 64;
	}

	/* ln_eps */
	LOOKUP("ln_eps", false);
	if (cv.v != NULL)
	{
		rc = r4_config_number(cv.v, &cv, "ln_eps", &VIT(cfg)->ln_eps, err);
		if (rc == R4_OK && !(VIT(cfg)->ln_eps > 0.0 && VIT(cfg)->ln_eps < 1.0))
			rc = r4_fail(err, R4_ERR_INVALID, "\"ln_eps\" in the %s must be in (0, 1)", cv.origin);
		DONE();
	}

	if ((rc = r4_config_apply_common(st, config, cfg, err)) != R4_OK)
		return rc;

	/* n_last_blocks */
	LOOKUP("n_last_blocks", false);
	if (cv.v != NULL)
	{
		rc = r4_config_int(&cv, "n_last_blocks", 1, VIT(cfg)->depth, &VIT(cfg)->n_last_blocks, err);
		DONE();
	}

	/* avgpool */
	LOOKUP("avgpool", false);
	if (cv.v != NULL)
	{
		rc = r4_config_bool(&cv, "avgpool", &VIT(cfg)->avgpool, err);
		DONE();
	}

	/* readout: after the two keys it excludes, so a conflict names both */
	LOOKUP("readout", true);
	if (cv.v != NULL)
	{
		if (cv.v->type == R4J_STRING && strcmp(cv.v->string, "cls") == 0)
			VIT(cfg)->readout = R4_VIT_READOUT_CLS;
		else if (cv.v->type == R4J_STRING && strcmp(cv.v->string, "token_stats") == 0)
			VIT(cfg)->readout = R4_VIT_READOUT_TOKEN_STATS;
		else
			rc = r4_fail(err, R4_ERR_INVALID, "\"readout\" in the %s must be \"cls\" or \"token_stats\"",
						 cv.origin);
		DONE();
	}

	/* readout_grid: the regions token_stats is taken over */
	LOOKUP("readout_grid", false);
	if (cv.v != NULL)
	{
		rc = r4_config_int(&cv, "readout_grid", 1, R4_VIT_MAX_READOUT_GRID, &VIT(cfg)->readout_grid, err);
		DONE();
	}

	if (VIT(cfg)->readout == R4_VIT_READOUT_TOKEN_STATS)
	{
		int			g = VIT(cfg)->readout_grid;

		/* n_last_blocks and avgpool choose among CLS recipes; silently dropping them would surprise. */
		if (VIT(cfg)->n_last_blocks != 1 || VIT(cfg)->avgpool)
		{
			r4_fail(err, R4_ERR_INVALID,
					"\"readout\": \"token_stats\" takes neither n_last_blocks %d nor avgpool true",
					VIT(cfg)->n_last_blocks);
			return r4_fail_detail(err, "n_last_blocks and avgpool describe the \"cls\" readout; "
								  "set \"avgpool\": false and \"n_last_blocks\": 1 with \"token_stats\".");
		}
		cfg->out_dim = 2 * g * g * VIT(cfg)->embed_dim;
	}
	else if (VIT(cfg)->readout_grid != 1)
	{
		r4_fail(err, R4_ERR_INVALID, "\"readout_grid\" %d needs \"readout\": \"token_stats\"",
				VIT(cfg)->readout_grid);
		return r4_fail_detail(err, "the \"cls\" readout has no regions; leave readout_grid out or set it to 1.");
	}
	else
		cfg->out_dim = VIT(cfg)->embed_dim * (VIT(cfg)->n_last_blocks + (VIT(cfg)->avgpool ? 1 : 0));

	if ((rc = r4_config_assert_derived(st, config, "embed_dim", VIT(cfg)->embed_dim, err)) != R4_OK ||
		(rc = r4_config_assert_derived(st, config, "depth", VIT(cfg)->depth, err)) != R4_OK ||
		(rc = r4_config_assert_derived(st, config, "patch_size", VIT(cfg)->patch_size, err)) != R4_OK ||
		(rc = r4_config_assert_derived(st, config, "in_chans", cfg->in_chans, err)) != R4_OK ||
		(rc = r4_config_assert_derived(st, config, "mlp_hidden", VIT(cfg)->mlp_hidden, err)) != R4_OK ||
		(rc = r4_config_assert_derived(st, config, "out_dim", cfg->out_dim, err)) != R4_OK)
		return rc;
	return R4_OK;
}

/* Resolve a ViT: shapes, defaults, keys ("arch" names no ViT variants). */
static R4Status
resolve_vit(const R4SafeTensors *st, const R4Json *config, int variant,
			const char *variant_origin, R4ModelConfig *cfg, R4Error *err)
{
	R4Status	rc;
	long		max_block = -1;

	(void) variant;
	(void) variant_origin;

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
	VIT(cfg)->depth = max_block < 0 ? 1 : (int) max_block + 1;

	if ((rc = check_present(st, VIT(cfg)->depth, err)) != R4_OK ||
		(rc = check_dtypes(st, VIT(cfg)->depth, err)) != R4_OK ||
		(rc = check_vit_shapes(st, cfg, err)) != R4_OK ||
		(rc = check_variant(st, err)) != R4_OK)
		return rc;

	r4_config_channel_defaults(cfg);
	VIT(cfg)->ln_eps = 1e-6;
	cfg->img_size = VIT(cfg)->pos_grid * VIT(cfg)->patch_size;
	VIT(cfg)->n_last_blocks = 1;
	VIT(cfg)->avgpool = false;
	VIT(cfg)->readout = R4_VIT_READOUT_CLS;
	VIT(cfg)->readout_grid = 1;
	return apply_vit_keys(st, config, cfg, err);
}


/* {"arch":"vit" is written; then the shapes and the ViT keys. */
static void
json_lead(const R4ModelConfig *cfg, R4TextBuf *b)
{
	const R4ViTConfig *v = r4_vit_cfg(cfg);

	r4_buf_printf(b, ",\"embed_dim\":%d,\"depth\":%d,\"patch_size\":%d,"
				  "\"in_chans\":%d,\"mlp_hidden\":%d,\"num_heads\":%d,\"ln_eps\":",
				  v->embed_dim, v->depth, v->patch_size, cfg->in_chans, v->mlp_hidden, v->num_heads);
	r4_buf_double(b, v->ln_eps);
}

/* After "input": which features are returned. */
static void
json_tail(const R4ModelConfig *cfg, R4TextBuf *b)
{
	const R4ViTConfig *v = r4_vit_cfg(cfg);

	r4_buf_printf(b, ",\"n_last_blocks\":%d,\"avgpool\":%s,\"readout\":\"%s\"",
				  v->n_last_blocks, v->avgpool ? "true" : "false",
				  v->readout == R4_VIT_READOUT_TOKEN_STATS ? "token_stats" : "cls");
	/* Only token_stats has regions (the cls JSON stays as it was). */
	if (v->readout == R4_VIT_READOUT_TOKEN_STATS)
		r4_buf_printf(b, ",\"readout_grid\":%d", v->readout_grid);
}

/* The token count of an oh x ow input, before anything is decoded. */
static R4Status
check_input(const R4ModelConfig *cfg, int H, int W, int oh, int ow, R4Error *err)
{
	const R4ViTConfig *v = r4_vit_cfg(cfg);
	long long	tokens;

	if (v->patch_size <= 0)
		return R4_OK;
	tokens = (long long) (oh / v->patch_size) * (ow / v->patch_size) + 1;
	if (tokens > R4_VIT_MAX_TOKENS)
		return r4_fail(err, R4_ERR_LIMIT, "raster of %d x %d pixels makes %lld tokens; the limit is %d",
					   W, H, tokens, R4_VIT_MAX_TOKENS);
	/* (a raster smaller than one patch is the caller's own, clearer error) */
	if (oh >= v->patch_size && ow >= v->patch_size &&
		(oh / v->patch_size < v->readout_grid || ow / v->patch_size < v->readout_grid))
		return r4_fail(err, R4_ERR_INVALID,
					   "raster of %d x %d pixels makes a %d x %d token grid, smaller than readout_grid %d",
					   W, H, ow / v->patch_size, oh / v->patch_size, v->readout_grid);
	return R4_OK;
}

/* The engine calls, typed for the descriptor. */
static R4Status
build(const R4SafeTensors *st, const R4ModelConfig *cfg, void **out, R4Error *err)
{
	R4ViT	   *m = NULL;
	R4Status	rc = r4_vit_build(st, cfg, &m, err);

	*out = m;
	return rc;
}

static R4Status
forward(void *m, const float *input, int B, int H, int W, float *out,
		R4InterruptCheck check, void *check_arg, R4Error *err)
{
	return r4_vit_forward(m, input, B, H, W, out, check, check_arg, err);
}

static size_t
param_count(const void *m)
{
	return r4_vit_param_count(m);
}

static size_t
work_bytes(const void *m)
{
	return r4_vit_work_bytes(m);
}

static void
release_work(void *m)
{
	r4_vit_release_work(m);
}

static void
free_engine(void *m)
{
	r4_vit_free(m);
}

static R4Status
set_precision(void *m, R4Precision precision, R4Error *err)
{
	return r4_vit_set_precision(m, precision, err);
}

static R4Precision
precision(const void *m)
{
	return r4_vit_precision(m);
}

const R4ArchOps r4_arch_vit = {
	.name = "vit",
	.display = "ViT",
	.a_display = "a ViT",
	.anchor = "patch_embed.proj.weight",
	.expected = "expected DINO/timm ViT tensor names such as \"blocks.0.attn.qkv.weight\"",
	.names_hint = "DINO/timm ViT tensor names such as \"blocks.0.attn.qkv.weight\"",
	.own_keys = own_keys,
	.derived_keys = derived_keys,
	.variant = NULL,
	.variants_hint = NULL,
	.resolve = resolve_vit,
	.json_lead = json_lead,
	.json_tail = json_tail,
	.check_input = check_input,
	.build = build,
	.forward = forward,
	.param_count = param_count,
	.work_bytes = work_bytes,
	.release_work = release_work,
	.free = free_engine,
	.set_precision = set_precision,
	.precision = precision,
};
