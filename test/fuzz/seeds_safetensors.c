/*
 * seeds_safetensors.c — write valid safetensors seed files for the fuzzers.
 *
 * Usage: seeds_safetensors DIR [JSONDIR]
 *
 * Files are laid out the way the reference writer does it (docs/formats.md, "safetensors"):
 * tensors sorted by dtype (descending alignment order) then name, packed
 * back to back, header padded with spaces to a multiple of 8.  Some seeds
 * deliberately break the alignment (leading whitespace, odd padding) as
 * older writers did.  For each file a "v2_" twin is also written in the
 * second form fuzz_safetensors reads (2-byte header length, header, data).
 * With JSONDIR, the header texts and some extra JSON documents are written
 * there as seeds for fuzz_json.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct SeedTensor
{
	const char *name;
	const char *dtype;
	int			elem_bits;
	int			ndim;
	int			shape[8];
	int			order;			/* writer's dtype rank; higher is written first */
} SeedTensor;

static const char *seed_dir;
static const char *json_dir;

/* Write bytes to DIR/name, exiting on failure (this is a tool, not the core). */
static void
write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char		path[1024];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
}

/* Order tensors as the reference writer does: dtype rank descending, then name. */
static int
writer_cmp(const void *a, const void *b)
{
	const SeedTensor *x = a;
	const SeedTensor *y = b;

	if (x->order != y->order)
		return y->order - x->order;
	return strcmp(x->name, y->name);
}

/*
 * Build and write one file.  lead: whitespace put before the '{'; pad: true
 * to pad the header to a multiple of 8 with spaces.
 */
static void
emit(const char *file, SeedTensor *ts, int n, const char *metadata, const char *lead, int pad)
{
	char		header[8192];
	size_t		h = 0;
	size_t		offset = 0;
	uint8_t    *out;
	size_t		total;
	size_t		i;
	int			k;
	int			d;

	if (n > 1)
		qsort(ts, (size_t) n, sizeof(SeedTensor), writer_cmp);
	h += (size_t) snprintf(header + h, sizeof(header) - h, "%s{", lead);
	if (metadata != NULL)
		h += (size_t) snprintf(header + h, sizeof(header) - h, "\"__metadata__\":%s%s", metadata,
							   n > 0 ? "," : "");
	for (k = 0; k < n; k++)
	{
		size_t		numel = 1;
		size_t		bytes;

		for (d = 0; d < ts[k].ndim; d++)
			numel *= (size_t) ts[k].shape[d];
		bytes = numel * (size_t) ts[k].elem_bits / 8;
		h += (size_t) snprintf(header + h, sizeof(header) - h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
							   k > 0 ? "," : "", ts[k].name, ts[k].dtype);
		for (d = 0; d < ts[k].ndim; d++)
			h += (size_t) snprintf(header + h, sizeof(header) - h, "%s%d", d > 0 ? "," : "", ts[k].shape[d]);
		h += (size_t) snprintf(header + h, sizeof(header) - h, "],\"data_offsets\":[%zu,%zu]}",
							   offset, offset + bytes);
		offset += bytes;
	}
	h += (size_t) snprintf(header + h, sizeof(header) - h, "}");
	while (pad && h % 8 != 0)
		header[h++] = ' ';

	total = 8 + h + offset;
	out = malloc(total + 2);
	for (i = 0; i < 8; i++)
		out[i] = (uint8_t) ((uint64_t) h >> (8 * i));
	memcpy(out + 8, header, h);
	/* Data: a byte pattern that makes varied float values, including specials. */
	for (i = 0; i < offset; i++)
		out[8 + h + i] = (uint8_t) (i * 37 + (i >> 3) * 11 + 0x3C);
	write_file(seed_dir, file, out, total);

	/* The twin for fuzz_safetensors' second view: 2-byte length, header, data. */
	if (h < 65536)
	{
		char		twin[256];

		out[6] = (uint8_t) (h & 0xFF);
		out[7] = (uint8_t) (h >> 8);
		snprintf(twin, sizeof(twin), "v2_%s", file);
		write_file(seed_dir, twin, out + 6, total - 6);
	}
	if (json_dir != NULL)
	{
		char		jname[256];

		snprintf(jname, sizeof(jname), "header_%s.json", file);
		write_file(json_dir, jname, header, h);
	}
	free(out);
}

int
main(int argc, char **argv)
{
	static const char *extra_json[] = {
		"{\"a\":[1,-2.5e3,true,false,null],\"b\\u00e9\":{\"c\":\"\\ud83d\\ude00\\n\\t\\\"\\\\\\/\"}}",
		"[\"\xE2\x82\xAC\",[[]],{},0,-0,-0.0e-0,1E+2,9223372036854775807,-9223372036854775808]",
		("{\"arch\":\"vit_small\",\"num_heads\":6,\"bands\":[4,3,2,8],\"mean\":[0.485,0.456,0.406,0.5],"
		 "\"std\":[0.229,0.224,0.225,0.25],\"input\":\"native\",\"n_last_blocks\":4,\"avgpool\":false}"),
		"\"a\\u0000b\"",
		"[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]",
		" \t\r\n1e308 ",
	};
	size_t		i;

	if (argc < 2)
	{
		fprintf(stderr, "usage: %s DIR [JSONDIR]\n", argv[0]);
		return 2;
	}
	seed_dir = argv[1];
	json_dir = argc > 2 ? argv[2] : NULL;

	{
		/* A miniature ViT block: F32 weights. */
		SeedTensor	t[] = {
			{"cls_token", "F32", 32, 3, {1, 1, 4}, 11},
			{"pos_embed", "F32", 32, 3, {1, 5, 4}, 11},
			{"patch_embed.proj.weight", "F32", 32, 4, {4, 3, 2, 2}, 11},
			{"patch_embed.proj.bias", "F32", 32, 1, {4}, 11},
			{"blocks.0.attn.qkv.weight", "F32", 32, 2, {12, 4}, 11},
			{"blocks.0.attn.qkv.bias", "F32", 32, 1, {12}, 11},
			{"norm.weight", "F32", 32, 1, {4}, 11},
		};

		emit("vit_f32.safetensors", t, (int) (sizeof(t) / sizeof(t[0])),
			 "{\"format\":\"pt\",\"arch\":\"vit_small\",\"num_heads\":\"1\"}", "", 1);
	}
	{
		/* Mixed half precisions, as exported with model.half() or bfloat16. */
		SeedTensor	t[] = {
			{"a.weight", "F16", 16, 2, {3, 5}, 7},
			{"b.weight", "BF16", 16, 2, {5, 3}, 8},
			{"c.bias", "F16", 16, 1, {3}, 7},
			{"d", "F32", 32, 1, {2}, 11},
		};

		emit("half.safetensors", t, (int) (sizeof(t) / sizeof(t[0])), NULL, "", 1);
	}
	{
		/* A BatchNorm with the I64 0-rank counter, plus zero-size tensors. */
		SeedTensor	t[] = {
			{"bn1.weight", "F32", 32, 1, {4}, 11},
			{"bn1.bias", "F32", 32, 1, {4}, 11},
			{"bn1.running_mean", "F32", 32, 1, {4}, 11},
			{"bn1.running_var", "F32", 32, 1, {4}, 11},
			{"bn1.num_batches_tracked", "I64", 64, 0, {0}, 13},
			{"empty", "F32", 32, 2, {0, 7}, 11},
			{"empty_bf16", "BF16", 16, 1, {0}, 8},
		};

		emit("resnet_bn.safetensors", t, (int) (sizeof(t) / sizeof(t[0])), "{}", "", 1);
	}
	{
		/* One tensor of every dtype, 8 elements each (whole bytes for F4/F6). */
		SeedTensor	t[] = {
			{"t_bool", "BOOL", 8, 1, {8}, 0}, {"t_u8", "U8", 8, 1, {8}, 1},
			{"t_i8", "I8", 8, 1, {8}, 2}, {"t_f8e5m2", "F8_E5M2", 8, 1, {8}, 3},
			{"t_f8e4m3", "F8_E4M3", 8, 1, {8}, 4}, {"t_f8e8m0", "F8_E8M0", 8, 1, {8}, 4},
			{"t_f8e4m3fnuz", "F8_E4M3FNUZ", 8, 1, {8}, 4}, {"t_f8e5m2fnuz", "F8_E5M2FNUZ", 8, 1, {8}, 4},
			{"t_i16", "I16", 16, 1, {8}, 5}, {"t_u16", "U16", 16, 1, {8}, 6},
			{"t_f16", "F16", 16, 1, {8}, 7}, {"t_bf16", "BF16", 16, 1, {8}, 8},
			{"t_i32", "I32", 32, 1, {8}, 9}, {"t_u32", "U32", 32, 1, {8}, 10},
			{"t_f32", "F32", 32, 1, {8}, 11}, {"t_f64", "F64", 64, 1, {8}, 12},
			{"t_c64", "C64", 64, 1, {8}, 12}, {"t_i64", "I64", 64, 1, {8}, 13},
			{"t_u64", "U64", 64, 1, {8}, 14}, {"t_f6e2m3", "F6_E2M3", 6, 1, {8}, 0},
			{"t_f6e3m2", "F6_E3M2", 6, 1, {8}, 0}, {"t_f4", "F4", 4, 1, {8}, 0},
		};

		emit("all_dtypes.safetensors", t, (int) (sizeof(t) / sizeof(t[0])), NULL, "", 1);
	}
	{
		/* Unaligned data: leading whitespace and no padding, as older writers did. */
		SeedTensor	t[] = {
			{"w", "F32", 32, 2, {2, 2}, 11},
			{"h", "F16", 16, 3, {1, 2, 1}, 7},
		};

		emit("unaligned.safetensors", t, (int) (sizeof(t) / sizeof(t[0])),
			 "{\"note\":\"caf\xC3\xA9 \\u2603\"}", " \n ", 0);
	}
	{
		/* Empty files. */
		emit("empty.safetensors", NULL, 0, NULL, "", 1);
		emit("empty_meta.safetensors", NULL, 0, "{\"k\":\"v\"}", "", 0);
	}
	{
		/* Eight dimensions, the limit. */
		SeedTensor	t[] = {{"deep", "U8", 8, 8, {1, 2, 1, 3, 1, 1, 2, 1}, 1}};

		emit("dims.safetensors", t, 1, NULL, "\t", 1);
	}

	if (json_dir != NULL)
		for (i = 0; i < sizeof(extra_json) / sizeof(extra_json[0]); i++)
		{
			char		name[64];

			snprintf(name, sizeof(name), "doc_%zu.json", i);
			write_file(json_dir, name, extra_json[i], strlen(extra_json[i]));
		}
	return 0;
}
