/*
 * safetensors.c — validate a safetensors file and index its tensors.
 *
 * The checks mirror the reference reader (huggingface/safetensors,
 * SafeTensors::read_metadata and Metadata::validate; see
 * docs/formats.md, "safetensors"): header length bounds,
 * UTF-8, a JSON object header, known dtypes, tensors laid out back to back
 * from offset 0 with no gaps or overlaps, byte counts that match dtype and
 * shape, and a data section indexed to its last byte.  A file that passes
 * can be read through R4StTensor.data without further bounds checks.
 */
#include "rai4eo/safetensors.h"

#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "rai4eo/json.h"

#define NAME_EXCERPT 100		/* bytes of a tensor name quoted in messages */

typedef struct DTypeInfo
{
	const char *name;
	int			bits;
	bool		is_float;		/* converted by r4_tensor_to_f32 */
} DTypeInfo;

/* Indexed by R4DType; spellings and widths from the reference Dtype enum. */
static const DTypeInfo dtype_info[R4_DT_COUNT] = {
	[R4_DT_BOOL] = {"BOOL", 8, false},
	[R4_DT_U8] = {"U8", 8, false},
	[R4_DT_I8] = {"I8", 8, false},
	[R4_DT_I16] = {"I16", 16, false},
	[R4_DT_U16] = {"U16", 16, false},
	[R4_DT_F16] = {"F16", 16, true},
	[R4_DT_BF16] = {"BF16", 16, true},
	[R4_DT_I32] = {"I32", 32, false},
	[R4_DT_U32] = {"U32", 32, false},
	[R4_DT_F32] = {"F32", 32, true},
	[R4_DT_F64] = {"F64", 64, false},
	[R4_DT_I64] = {"I64", 64, false},
	[R4_DT_U64] = {"U64", 64, false},
	[R4_DT_C64] = {"C64", 64, false},
	[R4_DT_F8_E5M2] = {"F8_E5M2", 8, false},
	[R4_DT_F8_E4M3] = {"F8_E4M3", 8, false},
	[R4_DT_F8_E8M0] = {"F8_E8M0", 8, false},
	[R4_DT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8, false},
	[R4_DT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8, false},
	[R4_DT_F6_E2M3] = {"F6_E2M3", 6, false},
	[R4_DT_F6_E3M2] = {"F6_E3M2", 6, false},
	[R4_DT_F4] = {"F4", 4, false},
};

/* Give the dtype's spelling in the file. */
const char *
r4_dtype_name(R4DType t)
{
	if ((unsigned) t >= R4_DT_COUNT)
		return "unknown";
	return dtype_info[t].name;
}

/* Look up a dtype by its exact spelling. */
bool
r4_dtype_from_name(const char *name, R4DType *out)
{
	int			i;

	for (i = 0; i < R4_DT_COUNT; i++)
	{
		if (strcmp(dtype_info[i].name, name) == 0)
		{
			*out = (R4DType) i;
			return true;
		}
	}
	return false;
}

/* Give the bits per element of a dtype (0 for a value outside the enum). */
int
r4_dtype_bits(R4DType t)
{
	if ((unsigned) t >= R4_DT_COUNT)
		return 0;
	return dtype_info[t].bits;
}

/* Tell whether r4_tensor_to_f32 converts this dtype. */
bool
r4_dtype_is_float(R4DType t)
{
	if ((unsigned) t >= R4_DT_COUNT)
		return false;
	return dtype_info[t].is_float;
}

/* Release everything a parse allocated. */
void
r4_safetensors_free(R4SafeTensors *st)
{
	size_t		i;

	if (st == NULL)
		return;
	if (st->tensors != NULL)
		for (i = 0; i < st->count; i++)
			r4_free(st->tensors[i].name);
	if (st->meta_keys != NULL)
		for (i = 0; i < st->meta_count; i++)
			r4_free(st->meta_keys[i]);
	if (st->meta_values != NULL)
		for (i = 0; i < st->meta_count; i++)
			r4_free(st->meta_values[i]);
	r4_free(st->tensors);
	r4_free(st->meta_keys);
	r4_free(st->meta_values);
	memset(st, 0, sizeof(*st));
}

/* Copy len bytes into a fresh NUL-terminated string. */
static char *
dup_text(const char *s, size_t len)
{
	char	   *d = r4_alloc(len + 1);

	if (d != NULL)
	{
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

/* Read a JSON value as a non-negative integer written in integer syntax. */
static bool
json_uint(const R4Json *v, uint64_t *out)
{
	int64_t		x;

	/* Like the reference (serde u64), "1.0" and "1e3" are not integers here. */
	if (!r4_json_is_integer_literal(v) || !r4_json_get_int64(v, &x) || x < 0)
		return false;
	*out = (uint64_t) x;
	return true;
}

/* Where a tensor sits in the data section, for sorting by offsets. */
typedef struct Extent
{
	size_t		begin;
	size_t		end;
	R4StTensor *tensor;
} Extent;

/* Order extents by (begin, end), then name, as the reference sorts them. */
static int
extent_cmp(const void *a, const void *b)
{
	const Extent *x = a;
	const Extent *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->tensor->name, y->tensor->name);
}

/* Order tensors by name for binary search. */
static int
tensor_name_cmp(const void *a, const void *b)
{
	return strcmp(((const R4StTensor *) a)->name, ((const R4StTensor *) b)->name);
}

/* Copy the string -> string __metadata__ object. */
static R4Status
read_metadata(const R4Json *meta, R4SafeTensors *out, R4Error *err)
{
	size_t		i;
	char		name[NAME_EXCERPT];

	if (meta->type != R4J_OBJECT)
		return r4_fail(err, R4_ERR_INVALID,
					   "safetensors __metadata__ must be a JSON object of strings");
	if (meta->count == 0)
		return R4_OK;
	out->meta_keys = r4_alloc_zero(meta->count * sizeof(char *));
	out->meta_values = r4_alloc_zero(meta->count * sizeof(char *));
	if (out->meta_keys == NULL || out->meta_values == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory reading safetensors metadata");
	for (i = 0; i < meta->count; i++)
	{
		const R4Json *v = &meta->items[i];

		r4_text_excerpt(meta->keys[i], meta->key_lens[i], name, sizeof(name));
		if (v->type != R4J_STRING)
			return r4_fail(err, R4_ERR_INVALID,
						   "safetensors __metadata__ value for \"%s\" is not a string", name);
		if (strlen(meta->keys[i]) != meta->key_lens[i] || strlen(v->string) != v->string_len)
			return r4_fail(err, R4_ERR_INVALID,
						   "safetensors __metadata__ entry \"%s\" contains a NUL character", name);
		out->meta_keys[i] = dup_text(meta->keys[i], meta->key_lens[i]);
		out->meta_values[i] = dup_text(v->string, v->string_len);
		/* Count the entry now so a failure below frees it. */
		out->meta_count = i + 1;
		if (out->meta_keys[i] == NULL || out->meta_values[i] == NULL)
			return r4_fail(err, R4_ERR_NOMEM, "out of memory reading safetensors metadata");
	}
	return R4_OK;
}

/* Read one tensor entry's dtype, shape and data_offsets. */
static R4Status
read_entry(const char *key, size_t key_len, const R4Json *entry,
		   R4StTensor *t, Extent *ext, R4Error *err)
{
	const R4Json *dtype;
	const R4Json *shape;
	const R4Json *offsets;
	char		name[NAME_EXCERPT];
	uint64_t	begin;
	uint64_t	end;
	size_t		i;

	r4_text_excerpt(key, key_len, name, sizeof(name));
	if (strlen(key) != key_len)
		return r4_fail(err, R4_ERR_INVALID,
					   "safetensors tensor name \"%s\" contains a NUL character", name);
	if (entry->type != R4J_OBJECT)
		return r4_fail(err, R4_ERR_INVALID,
					   "tensor \"%s\": its header entry is not a JSON object", name);

	/* Properties other than these three are ignored, as the reference reader does. */
	dtype = r4_json_get(entry, "dtype");
	shape = r4_json_get(entry, "shape");
	offsets = r4_json_get(entry, "data_offsets");
	if (dtype == NULL || shape == NULL || offsets == NULL)
		return r4_fail(err, R4_ERR_INVALID, "tensor \"%s\" lacks \"%s\"", name,
					   dtype == NULL ? "dtype" : shape == NULL ? "shape" : "data_offsets");

	if (dtype->type != R4J_STRING)
		return r4_fail(err, R4_ERR_INVALID, "tensor \"%s\": dtype is not a string", name);
	if (!r4_dtype_from_name(dtype->string, &t->dtype) || strlen(dtype->string) != dtype->string_len)
	{
		char		dname[40];

		r4_text_excerpt(dtype->string, dtype->string_len, dname, sizeof(dname));
		return r4_fail(err, R4_ERR_INVALID, "tensor \"%s\" has unknown dtype \"%s\"", name, dname);
	}

	if (shape->type != R4J_ARRAY)
		return r4_fail(err, R4_ERR_INVALID, "tensor \"%s\": shape is not an array", name);
	if (shape->count > R4_ST_MAX_DIMS)
		return r4_fail(err, R4_ERR_LIMIT, "tensor \"%s\" has %zu dimensions; at most %d are supported",
					   name, shape->count, R4_ST_MAX_DIMS);
	t->ndim = (int) shape->count;
	for (i = 0; i < shape->count; i++)
	{
		uint64_t	d;

		if (!json_uint(&shape->items[i], &d))
			return r4_fail(err, R4_ERR_INVALID,
						   "tensor \"%s\": shape[%zu] is not a non-negative integer", name, i);
		t->shape[i] = (int64_t) d;
	}

	if (offsets->type != R4J_ARRAY || offsets->count != 2)
		return r4_fail(err, R4_ERR_INVALID,
					   "tensor \"%s\": data_offsets must be an array [begin, end]", name);
	if (!json_uint(&offsets->items[0], &begin) || !json_uint(&offsets->items[1], &end) ||
		begin > SIZE_MAX || end > SIZE_MAX)
		return r4_fail(err, R4_ERR_INVALID,
					   "tensor \"%s\": data_offsets must hold non-negative integers", name);
	if (end < begin)
		return r4_fail(err, R4_ERR_INVALID,
					   "tensor \"%s\" has data_offsets [%llu, %llu]: end before begin",
					   name, (unsigned long long) begin, (unsigned long long) end);

	t->name = dup_text(key, key_len);
	if (t->name == NULL)
		return r4_fail(err, R4_ERR_NOMEM, "out of memory reading safetensors header");
	ext->begin = (size_t) begin;
	ext->end = (size_t) end;
	ext->tensor = t;
	return R4_OK;
}

/* Check that a tensor's byte span matches its dtype and shape. */
static R4Status
check_size(R4StTensor *t, size_t span, R4Error *err)
{
	char		name[NAME_EXCERPT];
	size_t		numel = 1;
	size_t		nbits;
	int			i;

	r4_text_excerpt(t->name, strlen(t->name), name, sizeof(name));
	for (i = 0; i < t->ndim; i++)
	{
		if ((uint64_t) t->shape[i] > SIZE_MAX ||
			r4_mul_size(numel, (size_t) t->shape[i], &numel) != 0)
			return r4_fail(err, R4_ERR_INVALID,
						   "tensor \"%s\": the element count of its shape overflows", name);
	}
	if (r4_mul_size(numel, (size_t) r4_dtype_bits(t->dtype), &nbits) != 0)
		return r4_fail(err, R4_ERR_INVALID,
					   "tensor \"%s\": the bit size of its shape overflows", name);
	if (nbits % 8 != 0)
		return r4_fail(err, R4_ERR_INVALID,
					   "tensor \"%s\" has %zu elements of %s, which do not fill whole bytes",
					   name, numel, r4_dtype_name(t->dtype));
	if (span != nbits / 8)
		return r4_fail(err, R4_ERR_INVALID,
					   "tensor \"%s\" has %zu bytes but its dtype and shape need %zu",
					   name, span, nbits / 8);
	t->numel = numel;
	t->nbytes = span;
	return R4_OK;
}

/* Build the index from a parsed header object. */
static R4Status
read_header(const R4Json *root, const uint8_t *data, size_t data_len,
			R4SafeTensors *out, R4Error *err)
{
	Extent	   *ext = NULL;
	size_t		n_tensors = root->count;
	size_t		i;
	size_t		k = 0;
	size_t		start = 0;
	R4Status	st = R4_OK;

	for (i = 0; i < root->count; i++)
		if (root->key_lens[i] == 12 && memcmp(root->keys[i], "__metadata__", 12) == 0)
			n_tensors--;
	if (n_tensors > 0)
	{
		out->tensors = r4_alloc_zero(n_tensors * sizeof(R4StTensor));
		ext = r4_alloc_zero(n_tensors * sizeof(Extent));
		if (out->tensors == NULL || ext == NULL)
		{
			r4_free(ext);
			return r4_fail(err, R4_ERR_NOMEM, "out of memory reading safetensors header");
		}
	}

	for (i = 0; i < root->count && st == R4_OK; i++)
	{
		if (root->key_lens[i] == 12 && memcmp(root->keys[i], "__metadata__", 12) == 0)
			st = read_metadata(&root->items[i], out, err);
		else
		{
			st = read_entry(root->keys[i], root->key_lens[i], &root->items[i],
							&out->tensors[k], &ext[k], err);
			if (out->tensors[k].name != NULL)
				out->count = ++k;
		}
	}
	if (st != R4_OK)
		goto done;

	/*
	 * Walk the tensors in offset order: each must begin where the previous
	 * one ended, so the data section is covered without gaps or overlaps.
	 */
	if (n_tensors > 1)
		qsort(ext, n_tensors, sizeof(Extent), extent_cmp);
	for (i = 0; i < n_tensors; i++)
	{
		char		name[NAME_EXCERPT];

		if (ext[i].begin != start)
		{
			r4_text_excerpt(ext[i].tensor->name, strlen(ext[i].tensor->name), name, sizeof(name));
			st = r4_fail(err, R4_ERR_INVALID,
						 ext[i].begin > start
						 ? "tensor \"%s\" begins at data offset %zu, leaving a gap after offset %zu"
						 : "tensor \"%s\" begins at data offset %zu, overlapping data that ends at %zu",
						 name, ext[i].begin, start);
			goto done;
		}
		st = check_size(ext[i].tensor, ext[i].end - ext[i].begin, err);
		if (st != R4_OK)
			goto done;
		start = ext[i].end;
	}
	if (start != data_len)
	{
		if (start > data_len)
		{
			char		name[NAME_EXCERPT];
			const char *last = ext[n_tensors - 1].tensor->name;

			r4_text_excerpt(last, strlen(last), name, sizeof(name));
			st = r4_fail(err, R4_ERR_INVALID,
						 "tensor \"%s\" ends at data offset %zu but the data section has only %zu bytes",
						 name, start, data_len);
		}
		else
			st = r4_fail(err, R4_ERR_INVALID,
						 "safetensors data section has %zu bytes but the tensors cover only %zu; "
						 "trailing bytes are not allowed",
						 data_len, start);
		goto done;
	}

	/* Only now is every span known to lie inside the buffer. */
	for (i = 0; i < n_tensors; i++)
		ext[i].tensor->data = data + ext[i].begin;
	if (n_tensors > 1)
		qsort(out->tensors, n_tensors, sizeof(R4StTensor), tensor_name_cmp);

done:
	r4_free(ext);
	return st;
}

/* Parse and validate a safetensors buffer. */
R4Status
r4_safetensors_parse(const uint8_t *buf, size_t len, R4SafeTensors *out, R4Error *err)
{
	uint64_t	n = 0;
	const char *header;
	size_t		pos = 0;
	size_t		bad;
	R4Json	   *root = NULL;
	R4Error		jerr;
	R4Status	st;
	int			i;

	memset(out, 0, sizeof(*out));
	if (buf == NULL && len > 0)
		return r4_fail(err, R4_ERR_INTERNAL, "safetensors buffer is NULL");
	if (len < 8)
		return r4_fail(err, R4_ERR_INVALID,
					   "safetensors data has %zu bytes; the 8-byte header length alone needs 8",
					   len);
	for (i = 7; i >= 0; i--)
		n = (n << 8) | buf[i];
	if (n > R4_ST_MAX_HEADER)
		return r4_fail(err, R4_ERR_LIMIT,
					   "safetensors header length %llu exceeds the limit of %d bytes",
					   (unsigned long long) n, R4_ST_MAX_HEADER);
	if (n > len - 8)
		return r4_fail(err, R4_ERR_INVALID,
					   "safetensors header length %llu runs past the end of the %zu-byte buffer",
					   (unsigned long long) n, len);
	header = (const char *) buf + 8;

	if (!r4_utf8_valid(header, (size_t) n, &bad))
		return r4_fail(err, R4_ERR_INVALID,
					   "safetensors header is not valid UTF-8 (header byte %zu)", bad);

	/* Writers may pad before the object to align the data; the object itself must come first. */
	while (pos < n && (header[pos] == ' ' || header[pos] == '\t' ||
					   header[pos] == '\n' || header[pos] == '\r'))
		pos++;
	if (pos >= n || header[pos] != '{')
		return r4_fail(err, R4_ERR_INVALID, "safetensors header is not a JSON object");

	r4_error_clear(&jerr);
	st = r4_json_parse(header, (size_t) n, &root, &jerr);
	if (st != R4_OK)
		return r4_fail(err, st, "invalid safetensors header: %s", jerr.message);

	st = read_header(root, buf + 8 + n, len - 8 - (size_t) n, out, err);
	r4_json_free(root);
	if (st != R4_OK)
		r4_safetensors_free(out);
	return st;
}

/* Find a tensor by name. */
const R4StTensor *
r4_safetensors_find(const R4SafeTensors *st, const char *name)
{
	size_t		lo = 0;
	size_t		hi;

	if (st == NULL || name == NULL || st->tensors == NULL)
		return NULL;
	hi = st->count;
	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;
		int			c = strcmp(name, st->tensors[mid].name);

		if (c == 0)
			return &st->tensors[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Look up a __metadata__ value. */
const char *
r4_safetensors_meta(const R4SafeTensors *st, const char *key)
{
	size_t		i;

	if (st == NULL || key == NULL)
		return NULL;
	for (i = 0; i < st->meta_count; i++)
		if (strcmp(st->meta_keys[i], key) == 0)
			return st->meta_values[i];
	return NULL;
}

/* Convert IEEE binary16 bits to float, exactly. */
float
r4_f16_to_f32(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exp = (h >> 10) & 0x1F;
	uint32_t	man = h & 0x3FF;
	uint32_t	bits;
	float		f;

	if (exp == 0)
	{
		if (man == 0)
			bits = sign;
		else
		{
			/* A subnormal half is a normal float: shift the leading 1 into the implicit bit. */
			uint32_t	e = 113;	/* 127 - 15 + 1 */

			do
			{
				e--;
				man <<= 1;
			} while ((man & 0x400) == 0);
			bits = sign | (e << 23) | ((man & 0x3FF) << 13);
		}
	}
	else if (exp == 31)
		bits = sign | 0x7F800000u | (man << 13);	/* inf, or NaN keeping its payload */
	else
		bits = sign | ((exp + 112) << 23) | (man << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

/* Convert bfloat16 bits to float. */
float
r4_bf16_to_f32(uint16_t h)
{
	uint32_t	bits = (uint32_t) h << 16;
	float		f;

	memcpy(&f, &bits, sizeof(f));
	return f;
}

/* Convert a float tensor to host-order float32. */
R4Status
r4_tensor_to_f32(const R4StTensor *t, float *out, R4Error *err)
{
	char		name[NAME_EXCERPT];
	size_t		elem;
	size_t		need;
	size_t		i;
	const uint8_t *d;

	if (t == NULL || t->name == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_tensor_to_f32 called without a tensor");
	r4_text_excerpt(t->name, strlen(t->name), name, sizeof(name));
	if (!r4_dtype_is_float(t->dtype))
		return r4_fail(err, R4_ERR_UNSUPPORTED,
					   "tensor \"%s\" has dtype %s; only F32, F16 and BF16 can be read as float32",
					   name, r4_dtype_name(t->dtype));
	elem = (size_t) r4_dtype_bits(t->dtype) / 8;
	if (r4_mul_size(t->numel, elem, &need) != 0 || need != t->nbytes)
		return r4_fail(err, R4_ERR_INVALID,
					   "tensor \"%s\" has %zu bytes, not %zu elements of %s",
					   name, t->nbytes, t->numel, r4_dtype_name(t->dtype));
	if (t->numel == 0)
		return R4_OK;
	if (out == NULL || t->data == NULL)
		return r4_fail(err, R4_ERR_INTERNAL, "r4_tensor_to_f32 called with a NULL buffer");
	d = t->data;

	switch (t->dtype)
	{
		case R4_DT_F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			memcpy(out, d, need);
#else
			for (i = 0; i < t->numel; i++)
			{
				uint32_t	bits = (uint32_t) d[4 * i] | (uint32_t) d[4 * i + 1] << 8 |
					(uint32_t) d[4 * i + 2] << 16 | (uint32_t) d[4 * i + 3] << 24;

				memcpy(&out[i], &bits, sizeof(float));
			}
#endif
			break;
		case R4_DT_F16:
			for (i = 0; i < t->numel; i++)
				out[i] = r4_f16_to_f32((uint16_t) (d[2 * i] | d[2 * i + 1] << 8));
			break;
		case R4_DT_BF16:
			for (i = 0; i < t->numel; i++)
				out[i] = r4_bf16_to_f32((uint16_t) (d[2 * i] | d[2 * i + 1] << 8));
			break;
		default:
			return r4_fail(err, R4_ERR_INTERNAL, "dtype %s marked float but not converted",
						   r4_dtype_name(t->dtype));
	}
	return R4_OK;
}

R4Status
r4_tensor_to_f32_finite(const R4StTensor *t, float *out, R4Error *err)
{
	R4Status	rc = r4_tensor_to_f32(t, out, err);

	if (rc != R4_OK)
		return rc;
	for (size_t i = 0; i < t->numel; i++)
		if (!isfinite(out[i]))
		{
			char		name[NAME_EXCERPT];

			r4_text_excerpt(t->name, strlen(t->name), name, sizeof(name));
			r4_fail(err, R4_ERR_INVALID, "tensor \"%s\" holds %s at element %zu",
					name, isnan(out[i]) ? "NaN" : "an infinite value", i);
			return r4_fail_detail(err, "Every weight must be a finite number: such a model gives NaN for every input.");
		}
	return R4_OK;
}
