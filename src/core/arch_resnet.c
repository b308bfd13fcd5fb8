/*
 * arch_resnet.c — torchvision's ResNet as an architecture: its tensors
 * (names and shapes), the variants it refuses, its configuration keys and
 * defaults, its JSON, its input limits and its descriptor.  The folded
 * convolutions and the forward pass are resnet.c's.
 *
 * A ResNet is torchvision's (timm's names are the same; docs/formats.md):
 * conv1 (7 x 7, stride 2, no bias), bn1, ReLU, 3 x 3 / 2 max-pool,
 * layer1..layer4 of BasicBlocks (conv1, conv2: 3 x 3) or Bottlenecks
 * (conv1 1 x 1, conv2 3 x 3 carrying the stride, conv3 1 x 1: "v1.5"),
 * stride 2 from layer2 on, downsample.0 (1 x 1 conv) + downsample.1 (BN)
 * where the shape changes, global average pooling.  Widths and blocks per
 * stage come from the tensors, the input channels from conv1.weight; fc.*
 * is the classification head's (head.c).
 */
#include "rai4eo/arch.h"
#include "rai4eo/resnet.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

_Static_assert(sizeof(R4ResNetConfig) <= R4_ARCH_CONFIG_BYTES,
			   "R4ResNetConfig outgrew R4_ARCH_CONFIG_BYTES");

/* The ResNet part of a configuration being resolved. */
#define RN(cfg) ((R4ResNetConfig *) (cfg)->arch_data.bytes)

const R4ResNetConfig *
r4_resnet_cfg(const R4ModelConfig *cfg)
{
	return cfg->arch == &r4_arch_resnet ? (const R4ResNetConfig *) cfg->arch_data.bytes : NULL;
}

/* The same for a ResNet. */
static const char *const own_keys[] = {"bn_eps", NULL};
static const char *const derived_keys[] = {"block", "layers", "width", NULL};

/* The entries of every BatchNorm, after its prefix. */
const char *const r4_resnet_bn_entries[] = {"weight", "bias", "running_mean", "running_var", NULL};

/* "layer<stage>.<block>.<part>": every tensor inside a residual block (stage 1-based). */
void
r4_resnet_block_name(char *buf, size_t size, int stage, long block, const char *part)
{
	snprintf(buf, size, "layer%d.%ld.%s", stage, block, part);
}

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
	format_layout(RN(cfg)->bottleneck, RN(cfg)->layers, have, sizeof(have));
	if ((v = r4_json_get(config, "block")) != NULL)
	{
		if (v->type != R4J_STRING ||
			(strcmp(v->string, "basic") != 0 && strcmp(v->string, "bottleneck") != 0))
			return r4_fail(err, R4_ERR_INVALID,
						   "\"block\" in the configuration must be \"basic\" or \"bottleneck\"");
		if ((strcmp(v->string, "bottleneck") == 0) != RN(cfg)->bottleneck)
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
			if (n != RN(cfg)->layers[s])
				return r4_fail(err, R4_ERR_MISMATCH,
							   "\"layers\" in the configuration does not match the weights, which have %s",
							   have);
		}
	}
	return R4_OK;
}

#define LOOKUP(key, words) \
	do { if ((rc = r4_config_lookup(st, config, (key), (words), &cv, err)) != R4_OK) return rc; } while (0)
#define DONE() \
	do { r4_config_release(&cv); if (rc != R4_OK) return rc; } while (0)

/* Apply the configuration keys of a ResNet on top of the defaults. */
static R4Status
apply_resnet_keys(const R4SafeTensors *st, const R4Json *config, int variant, const char *origin,
				  R4ModelConfig *cfg, R4Error *err)
{
	R4ConfigValue cv;
	R4Status	rc;

	/* bn_eps: strictly positive, or folding a zero running_var divides by zero */
	LOOKUP("bn_eps", false);
	if (cv.v != NULL)
	{
		rc = r4_config_number(cv.v, &cv, "bn_eps", &RN(cfg)->bn_eps, err);
		if (rc == R4_OK && !(RN(cfg)->bn_eps > 0.0 && RN(cfg)->bn_eps < 1.0))
			rc = r4_fail(err, R4_ERR_INVALID, "\"bn_eps\" in the %s must be in (0, 1)", cv.origin);
		DONE();
	}

	if ((rc = r4_config_apply_common(st, config, cfg, err)) != R4_OK)
		return rc;

	if (variant >= 0)
	{
		bool		same = resnet_variants[variant].bottleneck == RN(cfg)->bottleneck;
		char		have[96];

		for (int s = 0; s < R4_RESNET_STAGES; s++)
			same = same && resnet_variants[variant].layers[s] == RN(cfg)->layers[s];
		if (!same)
		{
			format_layout(RN(cfg)->bottleneck, RN(cfg)->layers, have, sizeof(have));
			return r4_fail(err, R4_ERR_MISMATCH,
						   "\"arch\" in the %s is \"%s\" but the weights have %s",
						   origin, resnet_variants[variant].name, have);
		}
	}
	if ((rc = assert_layout(config, cfg, err)) != R4_OK ||
		(rc = r4_config_assert_derived(st, config, "width", RN(cfg)->width, err)) != R4_OK ||
		(rc = r4_config_assert_derived(st, config, "in_chans", cfg->in_chans, err)) != R4_OK ||
		(rc = r4_config_assert_derived(st, config, "out_dim", cfg->out_dim, err)) != R4_OK)
		return rc;
	return R4_OK;
}

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
	return r4_name_in_list(r4_resnet_bn_entries, rest) || strcmp(rest, "num_batches_tracked") == 0;
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

/* Demand a float convolution weight [cout, cin, k, k]. */
static R4Status
expect_conv(const R4SafeTensors *st, const char *name, int64_t cout, int64_t cin, int64_t k,
			R4Error *err)
{
	const int64_t want[4] = {cout, cin, k, k};
	const R4StTensor *t = r4_safetensors_find(st, name);
	R4Status	rc;

	if ((rc = r4_expect_float(st, name, err)) != R4_OK)
		return rc;
	rc = r4_expect_shape(st, name, 4, want, err);
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
	char		name[R4_TENSOR_NAME_MAX + 32];	/* prefix plus ".running_mean" */
	R4Status	rc;

	for (int k = 0; r4_resnet_bn_entries[k]; k++)
	{
		snprintf(name, sizeof(name), "%s.%s", prefix, r4_resnet_bn_entries[k]);
		if ((rc = r4_expect_float(st, name, err)) != R4_OK ||
			(rc = r4_expect_shape(st, name, 1, want, err)) != R4_OK)
			return rc;
	}
	return R4_OK;
}

/* Note a BatchNorm's entries as needed. */
static void
need_bn(const R4SafeTensors *st, const char *prefix, R4MissingList *ml)
{
	char		name[R4_TENSOR_NAME_MAX + 32];	/* prefix plus ".running_mean" */

	for (int k = 0; r4_resnet_bn_entries[k]; k++)
	{
		snprintf(name, sizeof(name), "%s.%s", prefix, r4_resnet_bn_entries[k]);
		r4_need_tensor(st, name, ml);
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
		r4_format_shape(t->shape, t->ndim, shape_s, sizeof(shape_s));
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
	R4MissingList ml;
	char		name[R4_TENSOR_NAME_MAX];
	char		part[32];
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
	r4_need_tensor(st, "conv1.weight", &ml);
	need_bn(st, "bn1", &ml);
	for (int s = 0; s < R4_RESNET_STAGES; s++)
	{
		if (blocks[s] == 0)
			blocks[s] = 1;		/* a stage cannot be empty: name its first block */
		for (long b = 0; b < blocks[s]; b++)
			for (int j = 1; j <= (bottleneck ? 3 : 2); j++)
			{
				snprintf(part, sizeof(part), "conv%d.weight", j);
				r4_resnet_block_name(name, sizeof(name), s + 1, b, part);
				r4_need_tensor(st, name, &ml);
				snprintf(part, sizeof(part), "bn%d", j);
				r4_resnet_block_name(name, sizeof(name), s + 1, b, part);
				need_bn(st, name, &ml);
			}
	}
	if ((rc = r4_report_missing(st, &ml, &r4_arch_resnet, err)) != R4_OK)
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
		r4_format_shape(stem->shape, stem->ndim, shape_s, sizeof(shape_s));
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
		r4_resnet_block_name(name, sizeof(name), s + 1, 0, "conv1.weight");
		if ((rc = conv_width(st, name, &width[s], err)) != R4_OK)
			return rc;
		outw[s] = width[s];
		if (bottleneck)
		{
			r4_resnet_block_name(name, sizeof(name), s + 1, 0, "conv3.weight");
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

			r4_resnet_block_name(name, sizeof(name), s + 1, b, "downsample.0.weight");
			if (r4_safetensors_find(st, name) != NULL || stride != 1 || bin != outw[s])
			{
				r4_need_tensor(st, name, &ml);
				r4_resnet_block_name(name, sizeof(name), s + 1, b, "downsample.1");
				need_bn(st, name, &ml);
			}
		}
		in = outw[s];
	}
	if ((rc = r4_report_missing(st, &ml, &r4_arch_resnet, err)) != R4_OK)
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
			char		pre[R4_TENSOR_NAME_MAX];

#define BLOCK_NAME(suffix) (r4_resnet_block_name(name, sizeof(name), s + 1, b, (suffix)), name)
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
	RN(cfg)->width = (int) S;
	RN(cfg)->bottleneck = bottleneck;
	RN(cfg)->depth = 0;
	for (int s = 0; s < R4_RESNET_STAGES; s++)
	{
		RN(cfg)->layers[s] = (int) blocks[s];
		RN(cfg)->depth += (int) blocks[s];
	}
	cfg->out_dim = (int) outw[R4_RESNET_STAGES - 1];
	cfg->min_input = R4_RESNET_MIN_SIZE;
	return R4_OK;
}

/* Resolve a ResNet: layout and shapes, defaults, keys. */
static R4Status
resolve_resnet(const R4SafeTensors *st, const R4Json *config, int variant,
			   const char *variant_origin, R4ModelConfig *cfg, R4Error *err)
{
	R4Status	rc;

	if ((rc = check_resnet(st, cfg, err)) != R4_OK)
		return rc;
	r4_config_channel_defaults(cfg);
	RN(cfg)->bn_eps = 1e-5;
	cfg->img_size = 224;
	return apply_resnet_keys(st, config, variant, variant_origin, cfg, err);
}


/* "arch" may name a standard torchvision ResNet, which asserts the layout. */
static int
named_variant(const char *word)
{
	for (size_t i = 0; i < sizeof(resnet_variants) / sizeof(resnet_variants[0]); i++)
		if (strcasecmp(word, resnet_variants[i].name) == 0)
			return (int) i;
	return -1;
}

/* {"arch":"resnet" is written; then the layout and bn_eps (only keys a ResNet accepts). */
static void
json_lead(const R4ModelConfig *cfg, R4TextBuf *b)
{
	const R4ResNetConfig *r = r4_resnet_cfg(cfg);

	r4_buf_printf(b, ",\"block\":\"%s\",\"layers\":[%d,%d,%d,%d],\"width\":%d,\"in_chans\":%d,\"bn_eps\":",
				  r->bottleneck ? "bottleneck" : "basic",
				  r->layers[0], r->layers[1], r->layers[2], r->layers[3], r->width, cfg->in_chans);
	r4_buf_double(b, r->bn_eps);
}

/* The pixel count of an oh x ow input, before anything is decoded. */
static R4Status
check_input(const R4ModelConfig *cfg, int H, int W, int oh, int ow, R4Error *err)
{
	(void) cfg;
	(void) H;
	(void) W;
	if ((long long) oh * ow > R4_RESNET_MAX_PIXELS)
		return r4_fail(err, R4_ERR_LIMIT, "input of %d x %d pixels exceeds the limit of %d pixels",
					   ow, oh, R4_RESNET_MAX_PIXELS);
	return R4_OK;
}

/* The engine calls, typed for the descriptor. */
static R4Status
build(const R4SafeTensors *st, const R4ModelConfig *cfg, void **out, R4Error *err)
{
	R4ResNet   *m = NULL;
	R4Status	rc = r4_resnet_build(st, cfg, &m, err);

	*out = m;
	return rc;
}

static R4Status
forward(void *m, const float *input, int B, int H, int W, float *out,
		R4InterruptCheck check, void *check_arg, R4Error *err)
{
	return r4_resnet_forward(m, input, B, H, W, out, check, check_arg, err);
}

static size_t
param_count(const void *m)
{
	return r4_resnet_param_count(m);
}

static size_t
work_bytes(const void *m)
{
	return r4_resnet_work_bytes(m);
}

static void
release_work(void *m)
{
	r4_resnet_release_work(m);
}

static void
free_engine(void *m)
{
	r4_resnet_free(m);
}

const R4ArchOps r4_arch_resnet = {
	.name = "resnet",
	.display = "ResNet",
	.a_display = "a ResNet",
	.anchor = "layer1.0.conv1.weight",
	.expected = "expected torchvision/timm ResNet tensor names such as \"layer1.0.conv1.weight\"",
	.names_hint = "torchvision/timm ResNet names such as \"layer1.0.conv1.weight\"",
	.own_keys = own_keys,
	.derived_keys = derived_keys,
	.variant = named_variant,
	.variants_hint = "resnet18, resnet34, resnet50, resnet101, resnet152, which also assert the layout",
	.resolve = resolve_resnet,
	.json_lead = json_lead,
	.json_tail = NULL,
	.check_input = check_input,
	.build = build,
	.forward = forward,
	.param_count = param_count,
	.work_bytes = work_bytes,
	.release_work = release_work,
	.free = free_engine,
};
