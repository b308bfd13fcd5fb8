/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors reader.
 *
 * Each input is tried twice: as a whole file, and as header text plus data
 * behind a length field derived from the first two bytes, so mutations of
 * the JSON header are not lost to a mismatched length field.  Accepted files
 * must satisfy the reader's promises: every span inside the buffer, byte
 * counts that match dtype and shape, names sorted and findable, and float
 * tensors convertible.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rai4eo/safetensors.h"

#define ASSERT(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* Parse one buffer and check the result. */
static void
check_file(const uint8_t *buf, size_t len)
{
	R4SafeTensors st;
	R4Error		err;
	R4Status	s;
	size_t		i;
	size_t		covered = 0;

	r4_error_clear(&err);
	s = r4_safetensors_parse(buf, len, &st, &err);
	if (s != R4_OK)
	{
		ASSERT(s == R4_ERR_INVALID || s == R4_ERR_LIMIT || s == R4_ERR_NOMEM);
		ASSERT(st.tensors == NULL && st.count == 0 && st.meta_count == 0);
		ASSERT(err.message[0] != '\0');
		r4_safetensors_free(&st);
		return;
	}
	for (i = 0; i < st.count; i++)
	{
		const R4StTensor *t = &st.tensors[i];
		size_t		numel = 1;
		int			d;

		ASSERT(t->ndim >= 0 && t->ndim <= R4_ST_MAX_DIMS);
		for (d = 0; d < t->ndim; d++)
		{
			ASSERT(t->shape[d] >= 0);
			numel *= (size_t) t->shape[d];
		}
		ASSERT(numel == t->numel);
		ASSERT(t->numel * (size_t) r4_dtype_bits(t->dtype) == t->nbytes * 8);
		ASSERT(t->data >= buf && t->data <= buf + len && t->nbytes <= (size_t) (buf + len - t->data));
		covered += t->nbytes;
		if (i > 0)
			ASSERT(strcmp(st.tensors[i - 1].name, t->name) < 0);
		ASSERT(r4_safetensors_find(&st, t->name) == t);
		if (r4_dtype_is_float(t->dtype))
		{
			float	   *out = malloc(t->numel ? t->numel * sizeof(float) : 1);

			ASSERT(out != NULL);
			ASSERT(r4_tensor_to_f32(t, out, &err) == R4_OK);
			free(out);
		}
		else
			ASSERT(r4_tensor_to_f32(t, NULL, &err) == R4_ERR_UNSUPPORTED);
	}
	/* The tensors tile the data section exactly. */
	{
		uint64_t	n = 0;
		int			b;

		for (b = 7; b >= 0; b--)
			n = (n << 8) | buf[b];
		ASSERT(covered == len - 8 - (size_t) n);
	}
	for (i = 0; i < st.meta_count; i++)
		ASSERT(r4_safetensors_meta(&st, st.meta_keys[i]) == st.meta_values[i]);
	r4_safetensors_free(&st);
}

/* Try the input as a file, then as header text behind a derived length field. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *buf;
	size_t		n;
	int			b;

	check_file(data, size);

	/* Second view: bytes 0-1 pick the header length within the rest. */
	if (size < 2)
		return 0;
	n = ((size_t) data[0] | (size_t) data[1] << 8) % (size - 1);
	buf = malloc(8 + size - 2);
	if (buf == NULL)
		return 0;
	for (b = 0; b < 8; b++)
		buf[b] = (uint8_t) ((uint64_t) n >> (8 * b));
	memcpy(buf + 8, data + 2, size - 2);
	check_file(buf, 8 + size - 2);
	free(buf);
	return 0;
}
