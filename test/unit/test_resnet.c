/*
 * test_resnet.c — the ResNet path: configuration resolution (layout from
 * the tensors, missing tensors named, shapes, variants, keys of the wrong
 * architecture, the JSON round trip) and the engine against a direct
 * double-precision computation of the same tiny networks with BatchNorm
 * applied unfolded, as PyTorch's eval mode does it.  Weight files are built
 * here in memory, so the expectations come from the rules in
 * model_config.h and resnet.h, not from the code under test.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/engine.h"
#include "rai4eo/json.h"
#include "rai4eo/model_config.h"
#include "rai4eo/resnet.h"
#include "rai4eo/safetensors.h"
#include "rai4eo/vit.h"
#include "unit.h"

#define MAX_T 320

typedef struct Tensor
{
	char		name[64];
	const char *dtype;
	int			ndim;
	int64_t		shape[4];
	float	   *data;			/* F32 values; NULL: zeros */
} Tensor;

typedef struct Net
{
	Tensor		t[MAX_T];
	int			n;
	const char *meta[8][2];
	int			nmeta;
	/* The layout the builder used, for the reference computation. */
	bool		bottleneck;
	int			layers[4];
	int			in_chans;
	int			width;
} Net;

static uint64_t rng_state = 88172645463325252ULL;

/* Draw a uniform double in [0, 1), deterministic. */
static double
urand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double) (rng_state >> 11) / 9007199254740992.0;
}

/* Draw a roughly normal double (sum of uniforms). */
static double
nrand(void)
{
	double		s = 0;

	for (int i = 0; i < 4; i++)
		s += urand();
	return (s - 2.0) * sqrt(3.0);
}

/* Append a tensor (data NULL: zeros in the file). */
static Tensor *
add(Net *net, const char *name, const char *dtype, int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
	Tensor	   *t = &net->t[net->n++];

	snprintf(t->name, sizeof(t->name), "%s", name);
	t->dtype = dtype;
	t->ndim = ndim;
	t->shape[0] = a;
	t->shape[1] = b;
	t->shape[2] = c;
	t->shape[3] = d;
	t->data = NULL;
	return t;
}

/* Find a tensor by name. */
static Tensor *
find(Net *net, const char *name)
{
	for (int i = 0; i < net->n; i++)
		if (strcmp(net->t[i].name, name) == 0)
			return &net->t[i];
	return NULL;
}

/* Remove a tensor by name. */
static void
drop(Net *net, const char *name)
{
	Tensor	   *t = find(net, name);

	if (t == NULL)
		return;
	free(t->data);
	*t = net->t[--net->n];
}

/* Free every tensor's data and empty the net. */
static void
reset(Net *net)
{
	for (int i = 0; i < net->n; i++)
		free(net->t[i].data);
	memset(net, 0, sizeof(*net));
}

/* Add a metadata entry. */
static void
meta(Net *net, const char *key, const char *value)
{
	net->meta[net->nmeta][0] = key;
	net->meta[net->nmeta][1] = value;
	net->nmeta++;
}

/* Count the values of a tensor. */
static size_t
numel(const Tensor *t)
{
	size_t		n = 1;

	for (int d = 0; d < t->ndim; d++)
		n *= (size_t) t->shape[d];
	return n;
}

/* Add a He-initialised convolution weight [cout, cin, k, k]. */
static void
conv(Net *net, bool data, const char *name, int cout, int cin, int k)
{
	Tensor	   *t = add(net, name, "F32", 4, cout, cin, k, k);

	if (data)
	{
		size_t		n = numel(t);

		t->data = malloc(sizeof(float) * n);
		for (size_t i = 0; i < n; i++)
			t->data[i] = (float) (nrand() * sqrt(2.0 / (cin * k * k)));
	}
}

/*
 * Add a BatchNorm with non-trivial statistics: gains in [0.5, 1.5] (last
 * of a block smaller), biases and means clearly non-zero, variances in
 * [0.5, 2] with one channel in four small (1e-3 .. 1e-2, gain scaled to
 * match), which makes the output depend on eps.
 */
static void
bn(Net *net, bool data, const char *prefix, int c, bool last)
{
	static const char *const entries[] = {"weight", "bias", "running_mean", "running_var"};
	float	   *v[4];
	char		name[64];

	for (int e = 0; e < 4; e++)
	{
		Tensor	   *t;

		snprintf(name, sizeof(name), "%s.%s", prefix, entries[e]);
		t = add(net, name, "F32", 1, c, 0, 0, 0);
		if (data)
			t->data = malloc(sizeof(float) * (size_t) c);
		v[e] = t->data;
	}
	snprintf(name, sizeof(name), "%s.num_batches_tracked", prefix);
	add(net, name, "I64", 0, 0, 0, 0, 0);
	if (!data)
		return;
	for (int i = 0; i < c; i++)
	{
		bool		small = urand() < 0.25;
		double		var = small ? 1e-3 + 9e-3 * urand() : 0.5 + 1.5 * urand();
		double		gain = last ? 0.15 + 0.3 * urand() : 0.5 + urand();

		v[0][i] = (float) (small ? gain * sqrt(var) : gain);
		v[1][i] = (float) (0.1 * nrand());
		v[2][i] = (float) (0.3 * nrand());
		v[3][i] = (float) var;
	}
}

/*
 * Describe a torchvision ResNet: BasicBlock or Bottleneck, blocks per
 * stage, input channels, stem width (stage widths width * 2^s, Bottleneck
 * output 4x).  With data, random weights; else zeros (shapes only).
 */
static void
resnet(Net *net, bool bottleneck, const int layers[4], int C, int width, bool data)
{
	char		n1[64];
	char		n2[64];
	int			in = width;

	reset(net);
	net->bottleneck = bottleneck;
	memcpy(net->layers, layers, sizeof(net->layers));
	net->in_chans = C;
	net->width = width;
	conv(net, data, "conv1.weight", width, C, 7);
	bn(net, data, "bn1", width, false);
	for (int s = 0; s < 4; s++)
	{
		int			P = width << s;
		int			O = bottleneck ? 4 * P : P;

		for (int b = 0; b < layers[s]; b++)
		{
			int			bin = b == 0 ? in : O;

#define N(fmt) (snprintf(n1, sizeof(n1), "layer%d.%d." fmt, s + 1, b), n1)
#define M(fmt) (snprintf(n2, sizeof(n2), "layer%d.%d." fmt, s + 1, b), n2)
			if (bottleneck)
			{
				conv(net, data, N("conv1.weight"), P, bin, 1);
				bn(net, data, M("bn1"), P, false);
				conv(net, data, N("conv2.weight"), P, P, 3);
				bn(net, data, M("bn2"), P, false);
				conv(net, data, N("conv3.weight"), O, P, 1);
				bn(net, data, M("bn3"), O, true);
			}
			else
			{
				conv(net, data, N("conv1.weight"), P, bin, 3);
				bn(net, data, M("bn1"), P, false);
				conv(net, data, N("conv2.weight"), P, P, 3);
				bn(net, data, M("bn2"), P, true);
			}
			if (b == 0 && (s > 0 || bin != O))
			{
				conv(net, data, N("downsample.0.weight"), O, bin, 1);
				bn(net, data, M("downsample.1"), O, true);
			}
#undef N
#undef M
		}
		in = O;
	}
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

/* Give the element size of the few dtypes the tests use. */
static size_t
dtype_bytes(const char *dt)
{
	if (strcmp(dt, "I64") == 0 || strcmp(dt, "F64") == 0)
		return 8;
	if (strcmp(dt, "F32") == 0)
		return 4;
	if (strcmp(dt, "U8") == 0)
		return 1;
	return 2;
}

/* Serialize the net as a safetensors file (F32 data or zeros; I64 scalars). */
static uint8_t *
serialize(const Net *net, size_t *len)
{
	static char hdr[1 << 17];
	size_t		at = 0;
	size_t		off = 0;
	size_t		hlen;
	uint8_t    *buf;

	hdr[at++] = '{';
	if (net->nmeta)
	{
		at += sprintf(hdr + at, "\"__metadata__\":{");
		for (int i = 0; i < net->nmeta; i++)
		{
			if (i)
				hdr[at++] = ',';
			at = put_str(hdr, at, net->meta[i][0]);
			hdr[at++] = ':';
			at = put_str(hdr, at, net->meta[i][1]);
		}
		hdr[at++] = '}';
	}
	for (int i = 0; i < net->n; i++)
	{
		const Tensor *t = &net->t[i];
		size_t		bytes = numel(t) * dtype_bytes(t->dtype);

		if (at > 1)
			hdr[at++] = ',';
		at = put_str(hdr, at, t->name);
		at += sprintf(hdr + at, ":{\"dtype\":\"%s\",\"shape\":[", t->dtype);
		for (int d = 0; d < t->ndim; d++)
			at += sprintf(hdr + at, "%s%lld", d ? "," : "", (long long) t->shape[d]);
		at += sprintf(hdr + at, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
		off += bytes;
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
	off = 8 + hlen;
	for (int i = 0; i < net->n; i++)
	{
		const Tensor *t = &net->t[i];
		size_t		n = numel(t);
		size_t		esize = dtype_bytes(t->dtype);

		if (t->data != NULL && strcmp(t->dtype, "F32") == 0)
			memcpy(buf + off, t->data, n * 4);	/* little-endian host */
		off += n * esize;
	}
	return buf;
}

/* A parsed file kept alive with its buffer. */
typedef struct Loaded
{
	uint8_t    *buf;
	R4SafeTensors st;
} Loaded;

/* Serialize and parse a net. */
static void
load(const Net *net, Loaded *l)
{
	size_t		len;
	R4Error		e;

	l->buf = serialize(net, &len);
	if (r4_safetensors_parse(l->buf, len, &l->st, &e) != R4_OK)
	{
		fprintf(stderr, "test setup: safetensors parse failed: %s\n", e.message);
		exit(2);
	}
}

/* Release a loaded file. */
static void
unload(Loaded *l)
{
	r4_safetensors_free(&l->st);
	free(l->buf);
}

/* Resolve a net with an optional configuration (JSON text). */
static R4Status
resolve(const Net *net, const char *config, R4ModelConfig *cfg, R4Error *err)
{
	Loaded		l;
	R4Json	   *cj = NULL;
	R4Status	rc;

	load(net, &l);
	r4_error_clear(err);
	if (config != NULL && r4_json_parse(config, strlen(config), &cj, err) != R4_OK)
	{
		fprintf(stderr, "test setup: bad JSON %s\n", config);
		rc = R4_ERR_INTERNAL;
	}
	else
		rc = r4_model_config_resolve(&l.st, cj, cfg, err);
	r4_json_free(cj);
	unload(&l);
	return rc;
}

/* Expect a failure with a status and a message fragment. */
#define EXPECT_FAIL(net, config, status, fragment) \
	do { R4ModelConfig c_; R4Error e_; \
		R4Status rc_ = resolve((net), (config), &c_, &e_); \
		CHECK_MSG(rc_ == (status), "status %s, want %s (%s)", r4_status_name(rc_), \
				  r4_status_name(status), e_.message); \
		CHECK_STR_CONTAINS(e_.message, (fragment)); } while (0)

static Net net;
static const int L1111[4] = {1, 1, 1, 1};
static const int L2222[4] = {2, 2, 2, 2};
static const int L2112[4] = {2, 1, 1, 2};

/* ---- configuration resolution ---------------------------------------------------- */

/* Check the layout and defaults derived from the tensors. */
static void
test_layout_from_tensors(void)
{
	R4ModelConfig c;
	R4Error		e;

	resnet(&net, false, L2222, 4, 8, false);
	CHECK_EQ_INT(resolve(&net, NULL, &c, &e), R4_OK);
	CHECK(c.arch == &r4_arch_resnet);
	CHECK(!r4_resnet_cfg(&c)->bottleneck);
	CHECK_EQ_INT(r4_resnet_cfg(&c)->layers[0], 2);
	CHECK_EQ_INT(r4_resnet_cfg(&c)->layers[3], 2);
	CHECK_EQ_INT(r4_resnet_cfg(&c)->width, 8);
	CHECK_EQ_INT(c.in_chans, 4);
	CHECK_EQ_INT(r4_resnet_cfg(&c)->depth, 8);
	CHECK_EQ_INT(c.out_dim, 64);	/* 8 * 2^3 */
	CHECK_EQ_INT(c.min_input, R4_RESNET_MIN_SIZE);
	CHECK_EQ_INT(c.img_size, 224);
	CHECK_NEAR(r4_resnet_cfg(&c)->bn_eps, 1e-5, 0);
	CHECK_EQ_INT(c.bands[3], 4);
	CHECK_NEAR(c.std[3], 1.0, 0);
	CHECK_EQ_INT(c.input, R4_INPUT_NATIVE);
	CHECK(!c.has_change_threshold);

	/* Bottleneck: 4x expansion, a downsample already in layer1. */
	resnet(&net, true, L2112, 13, 4, false);
	CHECK_EQ_INT(resolve(&net, NULL, &c, &e), R4_OK);
	CHECK(r4_resnet_cfg(&c)->bottleneck);
	CHECK_EQ_INT(r4_resnet_cfg(&c)->layers[0], 2);
	CHECK_EQ_INT(r4_resnet_cfg(&c)->layers[1], 1);
	CHECK_EQ_INT(r4_resnet_cfg(&c)->layers[3], 2);
	CHECK_EQ_INT(c.in_chans, 13);
	CHECK_EQ_INT(c.out_dim, 4 * 8 * 4);
	CHECK_EQ_INT(r4_resnet_cfg(&c)->depth, 6);

	/* A torchvision file: fc.* and num_batches_tracked are ignored; "arch" asserts. */
	resnet(&net, false, L2222, 3, 8, false);
	add(&net, "fc.weight", "F32", 2, 1000, 64, 0, 0);
	add(&net, "fc.bias", "F32", 1, 1000, 0, 0, 0);
	add(&net, "layer5.0.conv1.weight", "U8", 1, 3, 0, 0, 0);	/* outside the architecture */
	CHECK_EQ_INT(resolve(&net, "{\"arch\": \"resnet18\"}", &c, &e), R4_OK);
	r4_model_config_free(&c);
	CHECK_EQ_INT(resolve(&net, "{\"arch\": \"ResNet\"}", &c, &e), R4_OK);
	CHECK_EQ_INT(c.n_classes, 1000);
	r4_model_config_free(&c);
	EXPECT_FAIL(&net, "{\"arch\": \"resnet34\"}", R4_ERR_MISMATCH,
				"\"arch\" in the configuration is \"resnet34\" but the weights have BasicBlock blocks, layers [2, 2, 2, 2]");
	EXPECT_FAIL(&net, "{\"arch\": \"resnet50\"}", R4_ERR_MISMATCH, "BasicBlock");
	resnet(&net, true, (const int[]) {3, 4, 6, 3}, 3, 2, false);
	meta(&net, "arch", "resnet50");
	CHECK_EQ_INT(resolve(&net, NULL, &c, &e), R4_OK);
	CHECK_EQ_INT(r4_resnet_cfg(&c)->depth, 16);
	EXPECT_FAIL(&net, "{\"arch\": \"resnet101\"}", R4_ERR_MISMATCH, "layers [3, 4, 6, 3]");

	/* Keys from metadata and configuration. */
	resnet(&net, false, L1111, 2, 8, false);
	meta(&net, "bn_eps", "0.001");
	meta(&net, "bands", "[4, 3]");
	meta(&net, "input", "resize");
	meta(&net, "embed_dim", "999");	/* derived keys in metadata are informational */
	meta(&net, "layers", "whatever");
	CHECK_EQ_INT(resolve(&net, "{\"img_size\": 64, \"scale\": 0.0001, \"mean\": [1, 2], \"std\": 0.5,"
						 " \"change_threshold\": 0.2}", &c, &e), R4_OK);
	CHECK_NEAR(r4_resnet_cfg(&c)->bn_eps, 1e-3, 0);
	CHECK_EQ_INT(c.bands[0], 4);
	CHECK_EQ_INT(c.input, R4_INPUT_RESIZE);
	CHECK_EQ_INT(c.img_size, 64);
	CHECK_NEAR(c.mean[1], 2.0, 0);
	CHECK_NEAR(c.std[0], 0.5, 0);
	CHECK(c.has_change_threshold);
}

/* Check that missing tensors are named, downsampling ones included. */
static void
test_missing_tensors(void)
{
	R4ModelConfig c;
	R4Error		e;

	resnet(&net, false, L2222, 3, 8, false);
	drop(&net, "layer3.1.bn2.running_var");
	EXPECT_FAIL(&net, NULL, R4_ERR_INVALID, "lack 1 required tensor: layer3.1.bn2.running_var");

	resnet(&net, false, L2222, 3, 8, false);
	drop(&net, "bn1.running_mean");
	drop(&net, "layer1.0.conv2.weight");
	EXPECT_FAIL(&net, NULL, R4_ERR_INVALID, "lack 2 required tensors: bn1.running_mean, layer1.0.conv2.weight");

	/* The stride-2 stage's shortcut, whose need depends on the shapes. */
	resnet(&net, false, L2222, 3, 8, false);
	drop(&net, "layer2.0.downsample.0.weight");
	EXPECT_FAIL(&net, NULL, R4_ERR_INVALID, "lack 1 required tensor: layer2.0.downsample.0.weight");
	drop(&net, "layer2.0.downsample.1.weight");
	drop(&net, "layer2.0.downsample.1.bias");
	drop(&net, "layer2.0.downsample.1.running_mean");
	drop(&net, "layer2.0.downsample.1.running_var");
	EXPECT_FAIL(&net, NULL, R4_ERR_INVALID, "lack 5 required tensors: layer2.0.downsample.0.weight, layer2.0.downsample.1.weight");

	/* Bottleneck layer1 changes the width, so it needs one too. */
	resnet(&net, true, L1111, 3, 4, false);
	drop(&net, "layer1.0.downsample.0.weight");
	EXPECT_FAIL(&net, NULL, R4_ERR_INVALID, "layer1.0.downsample.0.weight");

	/* A missing block in the middle of a stage: blocks per stage come from the highest index. */
	resnet(&net, false, (const int[]) {3, 1, 1, 1}, 3, 8, false);
	for (int i = net.n - 1; i >= 0; i--)
		if (strncmp(net.t[i].name, "layer1.1.", 9) == 0)
			drop(&net, net.t[i].name);
	EXPECT_FAIL(&net, NULL, R4_ERR_INVALID, "lack 10 required tensors: layer1.1.conv1.weight");

	/* A whole stage missing. */
	resnet(&net, false, L1111, 3, 8, false);
	for (int i = net.n - 1; i >= 0; i--)
		if (strncmp(net.t[i].name, "layer4.", 7) == 0)
			drop(&net, net.t[i].name);
	EXPECT_FAIL(&net, NULL, R4_ERR_INVALID, "lack 10 required tensors: layer4.0.conv1.weight");

	/* Prefixed names: the detail says which prefix to strip. */
	resnet(&net, true, L1111, 3, 4, false);
	for (int i = 0; i < net.n; i++)
	{
		char		tmp[64];

		snprintf(tmp, sizeof(tmp), "module.%.50s", net.t[i].name);
		snprintf(net.t[i].name, sizeof(net.t[i].name), "%s", tmp);
	}
	CHECK_EQ_INT(resolve(&net, NULL, &c, &e), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(e.message, "no ViT or ResNet tensors found");
	CHECK_STR_CONTAINS(e.detail, "prefix \"module.\"");
	CHECK_EQ_INT(resolve(&net, "{\"arch\": \"resnet\"}", &c, &e), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(e.message, "required tensors: conv1.weight, bn1.weight");
	CHECK_STR_CONTAINS(e.detail, "prefix \"module.\"");
	/* Nothing recognisable at all. */
	reset(&net);
	add(&net, "weight", "F32", 1, 3, 0, 0, 0);
	CHECK_EQ_INT(resolve(&net, NULL, &c, &e), R4_ERR_INVALID);
	CHECK_STR_CONTAINS(e.detail, "\"layer1.0.conv1.weight\"");
}

/* Check shape, dtype, variant and limit errors. */
static void
test_shapes_and_variants(void)
{
	Tensor	   *t;
	R4ModelConfig c;
	R4Error		e;

	resnet(&net, false, L1111, 3, 8, false);
	find(&net, "layer1.0.conv2.weight")->shape[3] = 2;
	EXPECT_FAIL(&net, NULL, R4_ERR_MISMATCH,
				"tensor \"layer1.0.conv2.weight\" has shape [8, 8, 3, 2], expected [8, 8, 3, 3]");

	resnet(&net, false, L1111, 3, 8, false);
	find(&net, "layer4.0.bn1.running_mean")->shape[0] = 63;
	EXPECT_FAIL(&net, NULL, R4_ERR_MISMATCH, "\"layer4.0.bn1.running_mean\" has shape [63], expected [64]");

	/* A block whose input does not match what the previous stage gives. */
	resnet(&net, true, L1111, 3, 4, false);
	find(&net, "layer3.0.conv1.weight")->shape[1] = 16;
	EXPECT_FAIL(&net, NULL, R4_ERR_MISMATCH, "\"layer3.0.conv1.weight\" has shape [16, 16, 1, 1], expected [16, 32, 1, 1]");

	resnet(&net, false, L1111, 3, 8, false);
	find(&net, "layer2.0.downsample.0.weight")->shape[2] = 3;
	find(&net, "layer2.0.downsample.0.weight")->shape[3] = 3;
	EXPECT_FAIL(&net, NULL, R4_ERR_MISMATCH, "\"layer2.0.downsample.0.weight\" has shape [16, 8, 3, 3], expected [16, 8, 1, 1]");

	/* Grouped 3 x 3 convs (ResNeXt) are named as such. */
	resnet(&net, true, L1111, 3, 8, false);
	find(&net, "layer2.0.conv2.weight")->shape[1] = 4;
	CHECK_EQ_INT(resolve(&net, NULL, &c, &e), R4_ERR_MISMATCH);
	CHECK_STR_CONTAINS(e.message, "\"layer2.0.conv2.weight\" has shape [16, 4, 3, 3], expected [16, 16, 3, 3]");
	CHECK_STR_CONTAINS(e.detail, "grouped convolutions");

	/* Stems: a CIFAR-style 3 x 3 one is unsupported, a malformed one a mismatch. */
	resnet(&net, false, L1111, 3, 8, false);
	t = find(&net, "conv1.weight");
	t->shape[2] = t->shape[3] = 3;
	EXPECT_FAIL(&net, NULL, R4_ERR_UNSUPPORTED, "3 x 3 stem convolution");
	t->shape[2] = 7;
	t->shape[3] = 5;
	EXPECT_FAIL(&net, NULL, R4_ERR_MISMATCH, "\"conv1.weight\" has shape [8, 3, 7, 5], expected [width, in_chans, 7, 7]");

	/* Dtypes: the BatchNorm statistics must be floats too; num_batches_tracked is ignored. */
	resnet(&net, false, L1111, 3, 8, false);
	find(&net, "layer1.0.bn1.running_var")->dtype = "I64";
	EXPECT_FAIL(&net, NULL, R4_ERR_UNSUPPORTED, "tensor \"layer1.0.bn1.running_var\" has dtype I64");
	resnet(&net, false, L1111, 3, 8, false);
	find(&net, "layer3.0.conv2.weight")->dtype = "BF16";
	find(&net, "bn1.bias")->dtype = "F16";
	CHECK_EQ_INT(resolve(&net, NULL, &c, &e), R4_OK);

	/* Variants whose extra tensors change the computation. */
	resnet(&net, false, L1111, 3, 8, false);
	add(&net, "layer1.0.se.fc1.weight", "F32", 2, 2, 8, 0, 0);
	EXPECT_FAIL(&net, NULL, R4_ERR_UNSUPPORTED, "\"layer1.0.se.fc1.weight\" belongs to a ResNet variant");
	resnet(&net, false, L1111, 3, 8, false);
	add(&net, "layer2.0.conv1.bias", "F32", 1, 16, 0, 0, 0);
	EXPECT_FAIL(&net, NULL, R4_ERR_UNSUPPORTED, "layer2.0.conv1.bias");
	resnet(&net, false, L1111, 3, 8, false);
	add(&net, "layer3.0.downsample.2.weight", "F32", 1, 32, 0, 0, 0);	/* timm avg-pool downsample */
	EXPECT_FAIL(&net, NULL, R4_ERR_UNSUPPORTED, "layer3.0.downsample.2.weight");
	resnet(&net, false, L1111, 3, 8, false);
	drop(&net, "conv1.weight");
	add(&net, "conv1.0.weight", "F32", 4, 4, 3, 3, 3);	/* timm deep stem */
	EXPECT_FAIL(&net, NULL, R4_ERR_UNSUPPORTED, "\"conv1.0.weight\" belongs to a ResNet variant");
	resnet(&net, false, L1111, 3, 8, false);
	add(&net, "layer1.0.conv3.weight", "F32", 4, 8, 8, 1, 1);	/* conv3 in one BasicBlock */
	EXPECT_FAIL(&net, NULL, R4_ERR_INVALID, "lack");

	/* Limits. */
	resnet(&net, false, L1111, 300, 8, false);
	EXPECT_FAIL(&net, NULL, R4_ERR_LIMIT, "300 input channels");
	resnet(&net, false, L1111, 3, 8, false);
	add(&net, "layer2.5000.conv1.weight", "F32", 1, 1, 0, 0, 0);
	EXPECT_FAIL(&net, NULL, R4_ERR_LIMIT, "layer2 has 5001 blocks");
}

/* Check the keys of the wrong architecture and value errors. */
static void
test_keys(void)
{
	R4ModelConfig c;
	R4Error		e;

	resnet(&net, false, L1111, 3, 8, false);
	EXPECT_FAIL(&net, "{\"n_last_blocks\": 1}", R4_ERR_INVALID,
				"\"n_last_blocks\" in the configuration applies to ViT models only, and this model is a ResNet");
	EXPECT_FAIL(&net, "{\"avgpool\": false}", R4_ERR_INVALID, "\"avgpool\" in the configuration applies to ViT models only");
	EXPECT_FAIL(&net, "{\"num_heads\": 2}", R4_ERR_INVALID, "\"num_heads\" in the configuration applies to ViT");
	EXPECT_FAIL(&net, "{\"ln_eps\": 1e-6}", R4_ERR_INVALID, "\"ln_eps\" in the configuration applies to ViT");
	EXPECT_FAIL(&net, "{\"embed_dim\": 64}", R4_ERR_INVALID, "\"embed_dim\" in the configuration applies to ViT");
	EXPECT_FAIL(&net, "{\"patch_size\": 32}", R4_ERR_INVALID, "\"patch_size\" in the configuration applies to ViT");
	meta(&net, "avgpool", "true");
	EXPECT_FAIL(&net, NULL, R4_ERR_INVALID, "\"avgpool\" in the metadata applies to ViT models only");

	resnet(&net, false, L1111, 3, 8, false);
	EXPECT_FAIL(&net, "{\"bn_eps\": 0}", R4_ERR_INVALID, "\"bn_eps\" in the configuration must be in (0, 1)");
	EXPECT_FAIL(&net, "{\"bn_eps\": \"1e-5\"}", R4_ERR_INVALID, "\"bn_eps\"");
	EXPECT_FAIL(&net, "{\"img_size\": 31}", R4_ERR_INVALID, "outside 32..65535");
	EXPECT_FAIL(&net, "{\"bands\": [1, 2]}", R4_ERR_MISMATCH, "lists 2 bands but the model has 3 input channels");
	EXPECT_FAIL(&net, "{\"bn_eps\": 1e-5, \"typo\": 1}", R4_ERR_INVALID, "unknown configuration key \"typo\"");
	EXPECT_FAIL(&net, "{\"arch\": \"resnet20\"}", R4_ERR_INVALID, "unknown architecture \"resnet20\"");
	/* Derived keys assert. */
	CHECK_EQ_INT(resolve(&net, "{\"block\": \"basic\", \"layers\": [1, 1, 1, 1], \"width\": 8,"
						 " \"in_chans\": 3, \"out_dim\": 64}", &c, &e), R4_OK);
	EXPECT_FAIL(&net, "{\"block\": \"bottleneck\"}", R4_ERR_MISMATCH,
				"\"block\" in the configuration is \"bottleneck\" but the weights have BasicBlock blocks");
	EXPECT_FAIL(&net, "{\"block\": \"wide\"}", R4_ERR_INVALID, "\"basic\" or \"bottleneck\"");
	EXPECT_FAIL(&net, "{\"layers\": [1, 1, 2, 1]}", R4_ERR_MISMATCH, "\"layers\" in the configuration does not match");
	EXPECT_FAIL(&net, "{\"layers\": [1, 1, 1]}", R4_ERR_INVALID, "list of 4 block counts");
	EXPECT_FAIL(&net, "{\"width\": 64}", R4_ERR_MISMATCH, "\"width\" in the configuration is 64 but the weights give 8");
	EXPECT_FAIL(&net, "{\"out_dim\": 512}", R4_ERR_MISMATCH, "out_dim");

	/* Both architectures' tensors: "arch" decides. */
	resnet(&net, false, L1111, 3, 8, false);
	add(&net, "patch_embed.proj.weight", "F32", 4, 64, 3, 16, 16);
	EXPECT_FAIL(&net, NULL, R4_ERR_INVALID, "hold both ViT and ResNet tensors");
	CHECK_EQ_INT(resolve(&net, "{\"arch\": \"resnet\"}", &c, &e), R4_OK);
	EXPECT_FAIL(&net, "{\"arch\": \"vit\"}", R4_ERR_INVALID, "required tensors: cls_token");
}

/* Check the canonical JSON of a ResNet and that it resolves back to itself. */
static void
test_json_round_trip(void)
{
	R4ModelConfig c,
				c2;
	R4Error		e;
	char	   *json;
	const char *want =
		"{\"arch\":\"resnet\",\"block\":\"bottleneck\",\"layers\":[2,1,1,2],\"width\":4,"
		"\"in_chans\":3,\"bn_eps\":0.001,\"img_size\":96,\"bands\":[3,1,2],\"scale\":0.0001,"
		"\"mean\":[0.1,0.2,0.3],\"std\":[1,2,0.5],\"input\":\"resize\",\"change_threshold\":0.3,"
		"\"out_dim\":128}";

	resnet(&net, true, L2112, 3, 4, false);
	CHECK_EQ_INT(resolve(&net, "{\"bn_eps\": 1e-3, \"img_size\": 96, \"bands\": [3, 1, 2],"
						 " \"scale\": 0.0001, \"mean\": [0.1, 0.2, 0.3], \"std\": [1, 2, 0.5],"
						 " \"input\": \"resize\", \"change_threshold\": 0.3}", &c, &e), R4_OK);
	json = r4_model_config_to_json(&c);
	CHECK(json != NULL);
	if (json == NULL)
		return;
	CHECK_MSG(strcmp(json, want) == 0, "\n got %s\nwant %s", json, want);
	CHECK_EQ_INT(resolve(&net, json, &c2, &e), R4_OK);
	CHECK(memcmp(&c, &c2, sizeof(c)) == 0);
	r4_free(json);

	/* What jsonb makes of it (keys reordered, 0.001 kept as it is) also resolves. */
	CHECK_EQ_INT(resolve(&net, "{\"std\": [1, 2, 0.5], \"mean\": [0.1, 0.2, 0.3], \"arch\": \"resnet\","
						 " \"bands\": [3, 1, 2], \"block\": \"bottleneck\", \"input\": \"resize\","
						 " \"scale\": 0.0001, \"width\": 4, \"bn_eps\": 0.001, \"layers\": [2, 1, 1, 2],"
						 " \"out_dim\": 128, \"img_size\": 96, \"in_chans\": 3, \"change_threshold\": 0.3}",
						 &c2, &e), R4_OK);
	CHECK(memcmp(&c, &c2, sizeof(c)) == 0);
}

/* ---- the engine against a direct computation -------------------------------------- */

/* One image's feature map in double. */
typedef struct Map
{
	double	   *d;
	int			C,
				H,
				W;
} Map;

/* Allocate a zeroed map. */
static Map
map_new(int C, int H, int W)
{
	Map			m = {calloc((size_t) C * H * W, sizeof(double)), C, H, W};

	return m;
}

/*
 * Convolution (no bias) then BatchNorm as PyTorch's eval mode does it,
 * (x - mean) / sqrt(var + eps) * gamma + beta, then ReLU if asked; all
 * straight loops in double.
 */
static Map
conv_bn_ref(Net *n, const char *wname, const char *bnp, const Map *in, int stride,
			double eps, bool relu)
{
	Tensor	   *w = find(n, wname);
	char		name[64];
	const float *v[4];
	static const char *const entries[] = {"weight", "bias", "running_mean", "running_var"};
	int			cout = (int) w->shape[0];
	int			k = (int) w->shape[2];
	int			pad = k / 2;
	int			Ho = (in->H + 2 * pad - k) / stride + 1;
	int			Wo = (in->W + 2 * pad - k) / stride + 1;
	Map			out = map_new(cout, Ho, Wo);

	for (int e = 0; e < 4; e++)
	{
		snprintf(name, sizeof(name), "%s.%s", bnp, entries[e]);
		v[e] = find(n, name)->data;
	}
	for (int o = 0; o < cout; o++)
		for (int y = 0; y < Ho; y++)
			for (int x = 0; x < Wo; x++)
			{
				double		s = 0;

				for (int c = 0; c < in->C; c++)
					for (int i = 0; i < k; i++)
						for (int j = 0; j < k; j++)
						{
							int			iy = y * stride - pad + i;
							int			ix = x * stride - pad + j;

							if (iy >= 0 && iy < in->H && ix >= 0 && ix < in->W)
								s += (double) w->data[((o * in->C + c) * k + i) * k + j] *
									in->d[((size_t) c * in->H + iy) * in->W + ix];
						}
				s = (s - v[2][o]) / sqrt((double) v[3][o] + eps) * v[0][o] + v[1][o];
				out.d[((size_t) o * Ho + y) * Wo + x] = relu && s < 0 ? 0 : s;
			}
	return out;
}

/* Compute torchvision's forward with fc = Identity, in double, for one image. */
static void
resnet_ref(Net *n, const float *img, int H, int W, double eps, double *feat)
{
	Map			x = map_new(n->in_chans, H, W);
	Map			s,
				p;
	char		w[64],
				b[64];

	for (size_t i = 0; i < (size_t) n->in_chans * H * W; i++)
		x.d[i] = img[i];
	s = conv_bn_ref(n, "conv1.weight", "bn1", &x, 2, eps, true);
	free(x.d);
	/* Max-pool 3 x 3 / 2, padding 1 (never chosen). */
	p = map_new(s.C, (s.H - 1) / 2 + 1, (s.W - 1) / 2 + 1);
	for (int c = 0; c < s.C; c++)
		for (int y = 0; y < p.H; y++)
			for (int xx = 0; xx < p.W; xx++)
			{
				double		m = -INFINITY;

				for (int i = -1; i <= 1; i++)
					for (int j = -1; j <= 1; j++)
					{
						int			iy = 2 * y + i,
									ix = 2 * xx + j;

						if (iy >= 0 && iy < s.H && ix >= 0 && ix < s.W &&
							s.d[((size_t) c * s.H + iy) * s.W + ix] > m)
							m = s.d[((size_t) c * s.H + iy) * s.W + ix];
					}
				p.d[((size_t) c * p.H + y) * p.W + xx] = m;
			}
	free(s.d);
	x = p;
	for (int st = 0; st < 4; st++)
		for (int bi = 0; bi < n->layers[st]; bi++)
		{
			int			stride = (bi == 0 && st > 0) ? 2 : 1;
			Map			a,
						c,
						id;

#define NM(buf, fmt) (snprintf(buf, sizeof(buf), "layer%d.%d." fmt, st + 1, bi), buf)
			if (n->bottleneck)
			{
				Map			t;

				a = conv_bn_ref(n, NM(w, "conv1.weight"), NM(b, "bn1"), &x, 1, eps, true);
				t = conv_bn_ref(n, NM(w, "conv2.weight"), NM(b, "bn2"), &a, stride, eps, true);
				free(a.d);
				c = conv_bn_ref(n, NM(w, "conv3.weight"), NM(b, "bn3"), &t, 1, eps, false);
				free(t.d);
			}
			else
			{
				a = conv_bn_ref(n, NM(w, "conv1.weight"), NM(b, "bn1"), &x, stride, eps, true);
				c = conv_bn_ref(n, NM(w, "conv2.weight"), NM(b, "bn2"), &a, 1, eps, false);
				free(a.d);
			}
			if (find(n, NM(w, "downsample.0.weight")) != NULL)
				id = conv_bn_ref(n, w, NM(b, "downsample.1"), &x, stride, eps, false);
			else
				id = x;
#undef NM
			for (size_t i = 0; i < (size_t) c.C * c.H * c.W; i++)
			{
				double		v = c.d[i] + id.d[i];

				c.d[i] = v < 0 ? 0 : v;
			}
			if (id.d != x.d)
				free(id.d);
			free(x.d);
			x = c;
		}
	for (int ch = 0; ch < x.C; ch++)
	{
		double		sum = 0;

		for (int i = 0; i < x.H * x.W; i++)
			sum += x.d[(size_t) ch * x.H * x.W + i];
		feat[ch] = sum / (x.H * x.W);
	}
	free(x.d);
}

/* Resolve and build an engine for net; NULL (and a failed check) on error. */
static R4ResNet *
build(Net *n, const char *config, Loaded *l, R4ModelConfig *cfg)
{
	R4Json	   *cj = NULL;
	R4ResNet   *m = NULL;
	R4Error		e;
	R4Status	rc;

	load(n, l);
	r4_error_clear(&e);
	if (config != NULL)
		r4_json_parse(config, strlen(config), &cj, &e);
	rc = r4_model_config_resolve(&l->st, cj, cfg, &e);
	if (rc == R4_OK)
		rc = r4_resnet_build(&l->st, cfg, &m, &e);
	CHECK_MSG(rc == R4_OK, "build: %s", e.message);
	r4_json_free(cj);
	return m;
}

/* Fill B random images. */
static float *
images(int B, int C, int H, int W)
{
	float	   *x = malloc(sizeof(float) * (size_t) B * C * H * W);

	for (size_t i = 0; i < (size_t) B * C * H * W; i++)
		x[i] = (float) nrand();
	return x;
}

/* Measure the largest |got - want| relative to the largest |want|. */
static double
rel_diff(const float *got, const double *want, size_t count)
{
	double		d = 0,
				m = 0;

	for (size_t i = 0; i < count; i++)
	{
		if (fabs(got[i] - want[i]) > d || isnan(got[i]))
			d = isnan(got[i]) ? INFINITY : fabs(got[i] - want[i]);
		if (fabs(want[i]) > m)
			m = fabs(want[i]);
	}
	return d / m;
}

/* Find the largest |v|. */
static double
max_abs(const double *v, size_t count)
{
	double		m = 0;

	for (size_t i = 0; i < count; i++)
		if (fabs(v[i]) > m)
			m = fabs(v[i]);
	return m;
}

/* Run the engine on a batch and compare each image with the direct computation. */
static void
check_against_reference(Net *n, int B, int H, int W, const char *label)
{
	Loaded		l;
	R4ModelConfig cfg;
	R4ResNet   *m = build(n, NULL, &l, &cfg);
	float	   *x = images(B, n->in_chans, H, W);
	float	   *out;
	float	   *single;
	double	   *want,
			   *wrong;
	size_t		D;
	R4Error		e;
	double		rel,
				rel_wrong,
				rel_single = 0;

	if (m == NULL)
		return;
	D = (size_t) cfg.out_dim;
	out = malloc(sizeof(float) * B * D);
	single = malloc(sizeof(float) * D);
	want = malloc(sizeof(double) * B * D);
	wrong = malloc(sizeof(double) * B * D);
	CHECK_EQ_INT(r4_resnet_forward(m, x, B, H, W, out, NULL, NULL, &e), R4_OK);
	for (int b = 0; b < B; b++)
	{
		const float *img = x + (size_t) b * n->in_chans * H * W;

		resnet_ref(n, img, H, W, 1e-5, want + b * D);
		resnet_ref(n, img, H, W, 1e-3, wrong + b * D);
		/* One image alone gives what it gave in the batch. */
		CHECK_EQ_INT(r4_resnet_forward(m, img, 1, H, W, single, NULL, NULL, &e), R4_OK);
		for (size_t i = 0; i < D; i++)
			if (fabs(single[i] - out[b * D + i]) > rel_single)
				rel_single = fabs(single[i] - out[b * D + i]);
	}
	rel = rel_diff(out, want, B * D);
	rel_wrong = rel_diff(out, wrong, B * D);
	CHECK_MSG(rel <= 1e-5, "%s: max |engine - double| / max |double| = %.3g", label, rel);
	/* The comparison can tell a wrong BatchNorm epsilon apart. */
	CHECK_MSG(rel_wrong > 1e-3, "%s: eps 1e-3 is only %.3g away", label, rel_wrong);
	rel_single /= max_abs(want, B * D);
	CHECK_MSG(rel_single <= 1e-6, "%s: batch vs single differ by %.3g of max |want|", label, rel_single);
	printf("  %s: rel diff %.2e (wrong eps %.2e)\n", label, rel, rel_wrong);
	free(x);
	free(out);
	free(single);
	free(want);
	free(wrong);
	r4_resnet_free(m);
	unload(&l);
}

/* Check BasicBlock and Bottleneck nets against the unfolded double computation. */
static void
test_forward_matches_direct_computation(void)
{
	/* BasicBlock, odd non-square input: every padding edge and rounding of the strides. */
	resnet(&net, false, L1111, 3, 8, true);
	check_against_reference(&net, 2, 45, 37, "BasicBlock [1,1,1,1] 45x37");
	/* Two blocks per stage: identity blocks summed in place. */
	resnet(&net, false, L2222, 2, 4, true);
	check_against_reference(&net, 1, 32, 32, "BasicBlock [2,2,2,2] 32x32 (minimum)");
	/* Bottleneck with a layer1 downsample and repeated blocks. */
	resnet(&net, true, L2112, 5, 4, true);
	check_against_reference(&net, 3, 64, 50, "Bottleneck [2,1,1,2] 64x50");
}

/* Check the chunked im2col: a large image splits every 3 x 3 conv into many GEMMs. */
static void
test_chunked_columns(void)
{
	Loaded		l;
	R4ModelConfig cfg;
	R4ResNet   *m;
	R4GemmShape shapes[64];
	int			count = 0;
	int			chunks = 0;
	R4Error		e;

	resnet(&net, false, L1111, 1, 4, true);
	m = build(&net, NULL, &l, &cfg);
	if (m == NULL)
		return;
	CHECK_EQ_INT(r4_resnet_gemm_plan(m, 1, 512, 512, shapes, 64, &count, &e), R4_OK);
	for (int i = 0; i < count && i < 64; i++)
		chunks += shapes[i].N < shapes[i].ldc;
	CHECK(chunks >= 4);			/* the stem's 65536 columns in chunks */
	CHECK(count > 1 + 4 * 2 + 3);
	r4_resnet_free(m);
	unload(&l);
	check_against_reference(&net, 1, 300, 260, "BasicBlock 1-band 300x260 (chunked im2col)");
}

/* Count interrupt checks and stop at one of them. */
typedef struct Stopper
{
	int			calls;
	int			stop_at;		/* -1: never */
} Stopper;

/* Stop when the count reaches stop_at. */
static bool
stopper(void *arg)
{
	Stopper    *s = arg;

	return s->calls++ == s->stop_at;
}

/* Check interrupts, size errors, the arena, the GEMM plan and the engine API. */
static void
test_forward_contract(void)
{
	Loaded		l;
	R4ModelConfig cfg;
	R4ResNet   *m;
	R4Engine   *eng = NULL;
	R4Error		e;
	float	   *x;
	float		out[2 * 64],
				again[2 * 64];
	Stopper		s = {0, -1};
	size_t		work;
	R4GemmShape shapes[32];
	int			count = 0;
	double		macs = 0,
				want_macs = 0;

	resnet(&net, false, L1111, 3, 8, true);
	m = build(&net, NULL, &l, &cfg);
	if (m == NULL)
		return;
	x = images(2, 3, 64, 48);

	/* One check before the stem and one before each block. */
	CHECK_EQ_INT(r4_resnet_forward(m, x, 2, 64, 48, out, stopper, &s, &e), R4_OK);
	CHECK_EQ_INT(s.calls, 1 + 4);
	s = (Stopper) {0, 2};
	CHECK_EQ_INT(r4_resnet_forward(m, x, 2, 64, 48, again, stopper, &s, &e), R4_ERR_LIMIT);
	CHECK_STR_CONTAINS(e.message, "inference interrupted before block layer2.0");
	s = (Stopper) {0, 0};
	CHECK_EQ_INT(r4_resnet_forward(m, x, 2, 64, 48, again, stopper, &s, &e), R4_ERR_LIMIT);
	CHECK_STR_CONTAINS(e.message, "before the stem");
	CHECK_EQ_INT(r4_resnet_forward(m, x, 2, 64, 48, again, NULL, NULL, &e), R4_OK);
	CHECK(memcmp(out, again, sizeof(out)) == 0);

	/* Sizes. */
	CHECK_EQ_INT(r4_resnet_forward(m, x, 0, 64, 48, out, NULL, NULL, &e), R4_ERR_RANGE);
	CHECK_EQ_INT(r4_resnet_forward(m, x, 1, 31, 64, out, NULL, NULL, &e), R4_ERR_RANGE);
	CHECK_STR_CONTAINS(e.message, "smaller than the 32 x 32");
	CHECK_EQ_INT(r4_resnet_forward(m, x, 1, 4096, 2048, out, NULL, NULL, &e), R4_ERR_LIMIT);
	CHECK_EQ_INT(r4_resnet_gemm_plan(m, 1 << 30, 1024, 1024, NULL, 0, &count, &e), R4_ERR_LIMIT);

	/* The arena grows for a larger shape only. */
	work = r4_resnet_work_bytes(m);
	CHECK(work > 0);
	CHECK_EQ_INT(r4_resnet_forward(m, x, 1, 32, 32, out, NULL, NULL, &e), R4_OK);
	CHECK_EQ_INT(r4_resnet_work_bytes(m), work);
	CHECK_EQ_INT(r4_resnet_forward(m, x, 2, 64, 48, out, NULL, NULL, &e), R4_OK);
	CHECK(memcmp(out, again, sizeof(out)) == 0);

	/* The GEMM plan covers exactly the convolutions' multiply-adds. */
	CHECK_EQ_INT(r4_resnet_gemm_plan(m, 2, 64, 48, shapes, 32, &count, &e), R4_OK);
	CHECK_EQ_INT(count, 1 + 4 * 2 + 3);	/* stem, two convs per block, three downsamples */
	CHECK_EQ_INT(shapes[0].M, 8);
	CHECK_EQ_INT(shapes[0].K, 3 * 49);
	CHECK_EQ_INT(shapes[0].N, 2 * 32 * 24);
	for (int i = 0; i < count; i++)
		macs += (double) shapes[i].M * shapes[i].N * shapes[i].K;
	{
		/* conv MACs = cout * cin * k * k * Ho * Wo per image; maps 32x24 after the stem, 16x12 after the pool */
		int			h = 16,
					w = 12,
					in = 8;

		want_macs = 8.0 * 3 * 49 * 32 * 24;
		for (int st = 0; st < 4; st++)
		{
			int			P = 8 << st;

			if (st > 0)
			{
				h = (h - 1) / 2 + 1;
				w = (w - 1) / 2 + 1;
				want_macs += (double) P * in * h * w;	/* downsample */
			}
			want_macs += (double) P * in * 9 * h * w + (double) P * P * 9 * h * w;
			in = P;
		}
		want_macs *= 2;
	}
	CHECK_NEAR(macs, want_macs, 0);
	CHECK_EQ_INT(r4_resnet_param_count(m), 3 * 8 * 49 + 2 * 8 +
				 (8 * 8 * 9 * 2 + 4 * 8) +
				 (16 * 8 * 9 + 16 * 16 * 9 + 16 * 8 + 6 * 16) +
				 (32 * 16 * 9 + 32 * 32 * 9 + 32 * 16 + 6 * 32) +
				 (64 * 32 * 9 + 64 * 64 * 9 + 64 * 32 + 6 * 64));
	CHECK(r4_resnet_weight_bytes(m) >= r4_resnet_param_count(m) * sizeof(float) / 2);

	/* Through the architecture-neutral API. */
	CHECK_EQ_INT(r4_engine_build(&l.st, &cfg, &eng, &e), R4_OK);
	if (eng != NULL)
	{
		CHECK(r4_engine_config(eng)->arch == &r4_arch_resnet);
		CHECK_EQ_INT(r4_engine_param_count(eng), r4_resnet_param_count(m));
		CHECK_EQ_INT(r4_engine_forward(eng, x, 2, 64, 48, again, NULL, NULL, &e), R4_OK);
		CHECK(memcmp(out, again, sizeof(out)) == 0);
		r4_engine_free(eng);
	}

	/* A configuration that does not fit the weights is refused, not trusted. */
	{
		R4ModelConfig bad = cfg;
		R4ResNet   *m2 = NULL;

		bad.out_dim = 32;
		CHECK_EQ_INT(r4_resnet_build(&l.st, &bad, &m2, &e), R4_ERR_MISMATCH);
		bad = cfg;
		((R4ResNetConfig *) bad.arch_data.bytes)->bottleneck = true;
		CHECK_EQ_INT(r4_resnet_build(&l.st, &bad, &m2, &e), R4_ERR_MISMATCH);
		bad = cfg;
		bad.in_chans = 4;
		CHECK_EQ_INT(r4_resnet_build(&l.st, &bad, &m2, &e), R4_ERR_MISMATCH);
		bad = cfg;
		bad.arch = &r4_arch_vit;
		CHECK_EQ_INT(r4_resnet_build(&l.st, &bad, &m2, &e), R4_ERR_UNSUPPORTED);
		CHECK(m2 == NULL);
	}
	free(x);
	r4_resnet_free(m);
	unload(&l);

	/* A negative running variance cannot be folded. */
	resnet(&net, false, L1111, 3, 8, true);
	find(&net, "layer2.0.bn2.running_var")->data[3] = -1.0f;
	{
		R4ResNet   *m3 = NULL;

		load(&net, &l);
		CHECK_EQ_INT(r4_model_config_resolve(&l.st, NULL, &cfg, &e), R4_OK);
		CHECK_EQ_INT(r4_resnet_build(&l.st, &cfg, &m3, &e), R4_ERR_INVALID);
		CHECK_STR_CONTAINS(e.message, "\"layer2.0.bn2.running_var\" holds -1 at channel 3");
		unload(&l);
	}
}

/* Check that every allocation failure is reported and frees everything. */
static void
test_out_of_memory(void)
{
	Loaded		l;
	R4ModelConfig cfg;
	R4Error		e;
	R4Allocator failing = {unit_failing_alloc, unit_counting_free, NULL};
	float	   *x;
	float		out[64];
	int			failures = 0;

	resnet(&net, false, L1111, 3, 8, true);
	load(&net, &l);
	CHECK_EQ_INT(r4_model_config_resolve(&l.st, NULL, &cfg, &e), R4_OK);
	x = images(1, 3, 40, 40);
	r4_set_allocator(&failing);
	for (long budget = 0; budget < 8; budget++)
	{
		R4ResNet   *m = NULL;
		R4Status	rc;

		unit_alloc_budget = budget;
		unit_alloc_live = 0;
		rc = r4_resnet_build(&l.st, &cfg, &m, &e);
		if (rc == R4_OK)
			rc = r4_resnet_forward(m, x, 1, 40, 40, out, NULL, NULL, &e);
		if (rc != R4_OK)
		{
			failures++;
			CHECK_EQ_INT(rc, R4_ERR_NOMEM);
		}
		r4_resnet_free(m);
		CHECK_EQ_INT(unit_alloc_live, 0);
	}
	r4_set_allocator(NULL);
	CHECK(failures >= 4);		/* blocks, slots, params, bn scratch, arena */
	free(x);
	unload(&l);
}

/* Run the ResNet tests. */
int
main(void)
{
	RUN(test_layout_from_tensors);
	RUN(test_missing_tensors);
	RUN(test_shapes_and_variants);
	RUN(test_keys);
	RUN(test_json_round_trip);
	RUN(test_forward_matches_direct_computation);
	RUN(test_chunked_columns);
	RUN(test_forward_contract);
	RUN(test_out_of_memory);
	reset(&net);
	return unit_summary("resnet");
}
