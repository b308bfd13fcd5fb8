/*
 * safetensors.h — a validating reader for the safetensors weight format.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the
 * tensor bytes.  r4_safetensors_parse checks everything the reference
 * reader checks (docs/formats.md, "safetensors") and copies
 * no tensor data: each R4StTensor points into the caller's buffer, which
 * must outlive the R4SafeTensors.  Data may be unaligned in memory; use
 * r4_tensor_to_f32 (or memcpy) rather than casting the pointer.
 */
#ifndef RAI4EO_SAFETENSORS_H
#define RAI4EO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rai4eo/core.h"

#define R4_ST_MAX_DIMS 8				/* more dimensions: R4_ERR_LIMIT */
#define R4_ST_MAX_HEADER 100000000		/* the reference reader's MAX_HEADER_SIZE */

/* Every dtype string of the reference reader; r4_dtype_bits gives the width. */
typedef enum R4DType
{
	R4_DT_BOOL,					/* 8 bits */
	R4_DT_U8,					/* 8 */
	R4_DT_I8,					/* 8 */
	R4_DT_I16,					/* 16 */
	R4_DT_U16,					/* 16 */
	R4_DT_F16,					/* 16 */
	R4_DT_BF16,					/* 16 */
	R4_DT_I32,					/* 32 */
	R4_DT_U32,					/* 32 */
	R4_DT_F32,					/* 32 */
	R4_DT_F64,					/* 64 */
	R4_DT_I64,					/* 64 */
	R4_DT_U64,					/* 64 */
	R4_DT_C64,					/* 64 */
	R4_DT_F8_E5M2,				/* 8 */
	R4_DT_F8_E4M3,				/* 8 */
	R4_DT_F8_E8M0,				/* 8 */
	R4_DT_F8_E4M3FNUZ,			/* 8 */
	R4_DT_F8_E5M2FNUZ,			/* 8 */
	R4_DT_F6_E2M3,				/* 6 */
	R4_DT_F6_E3M2,				/* 6 */
	R4_DT_F4					/* 4 */
} R4DType;

#define R4_DT_COUNT (R4_DT_F4 + 1)

typedef struct R4StTensor
{
	char	   *name;
	R4DType		dtype;
	int			ndim;			/* 0 for a scalar */
	int64_t		shape[R4_ST_MAX_DIMS];	/* shape[0..ndim), each >= 0 */
	size_t		numel;			/* product of shape; 1 for a scalar */
	const uint8_t *data;		/* into the caller's buffer; may be unaligned */
	size_t		nbytes;			/* numel * bits / 8 */
} R4StTensor;

typedef struct R4SafeTensors
{
	R4StTensor *tensors;		/* sorted by name (strcmp) */
	size_t		count;
	char	  **meta_keys;		/* __metadata__, in header order */
	char	  **meta_values;
	size_t		meta_count;
} R4SafeTensors;

/*
 * Parse and validate a whole safetensors file held in buf[0..len).  On
 * success out owns the names and metadata (free with r4_safetensors_free);
 * on failure out is left zeroed.  R4_ERR_INVALID for malformed or
 * inconsistent input, R4_ERR_LIMIT for the header size limit or too many
 * dimensions, R4_ERR_NOMEM.  Tensor and metadata names holding a NUL
 * character are rejected, since the C API could not represent them.
 */
R4Status	r4_safetensors_parse(const uint8_t *buf, size_t len, R4SafeTensors *out, R4Error *err);

/* Find a tensor by name (binary search); NULL if absent. */
const R4StTensor *r4_safetensors_find(const R4SafeTensors *st, const char *name);

/* The __metadata__ value for key; NULL if absent. */
const char *r4_safetensors_meta(const R4SafeTensors *st, const char *key);

/* The dtype's spelling in the file ("F32", "BF16", ...). */
const char *r4_dtype_name(R4DType t);

/* Parse a dtype string (exact, case-sensitive); false if unknown. */
bool		r4_dtype_from_name(const char *name, R4DType *out);

/* Bits per element: 4, 6, 8, 16, 32 or 64. */
int			r4_dtype_bits(R4DType t);

/* True for the dtypes r4_tensor_to_f32 converts: F32, F16, BF16. */
bool		r4_dtype_is_float(R4DType t);

/*
 * Convert an F32/F16/BF16 tensor (little-endian, possibly unaligned) to
 * numel host-order floats in out.  F16 is exact for subnormals, infinities
 * and NaN payloads; BF16 is bits << 16.  Other dtypes: R4_ERR_UNSUPPORTED
 * naming the tensor and its dtype.
 */
R4Status	r4_tensor_to_f32(const R4StTensor *t, float *out, R4Error *err);

/*
 * r4_tensor_to_f32, then R4_ERR_INVALID naming the tensor and the element
 * when a value is NaN or infinite: what engines load, since such a weight
 * makes every output NaN.
 */
R4Status	r4_tensor_to_f32_finite(const R4StTensor *t, float *out, R4Error *err);

/* Convert one IEEE half (as its 16 bits) to float, exactly. */
float		r4_f16_to_f32(uint16_t h);

/* Convert one bfloat16 (as its 16 bits) to float. */
float		r4_bf16_to_f32(uint16_t h);

/* Release what r4_safetensors_parse allocated and zero the struct; safe on a zeroed struct. */
void		r4_safetensors_free(R4SafeTensors *st);

#endif							/* RAI4EO_SAFETENSORS_H */
