/*
 * core.h — what every PostgreSQL-free part of rai4eo shares: status codes,
 * the error record, and the allocator hook.
 *
 * The core never longjmps and never calls PostgreSQL.  A function that can
 * fail returns an R4Status and fills an R4Error; the glue (src/pg) turns that
 * into ereport() with the SQLSTATE that fits the status.  All memory goes
 * through r4_alloc/r4_free so the glue can point it at a memory context
 * (allocation failure returns NULL instead of raising) and tests at malloc.
 */
#ifndef RAI4EO_CORE_H
#define RAI4EO_CORE_H

#include <stddef.h>
#include <stdint.h>

typedef enum R4Status
{
	R4_OK = 0,
	R4_ERR_INVALID,			/* malformed, truncated or inconsistent input value */
	R4_ERR_UNSUPPORTED,		/* well-formed but not supported (pixel type, dtype) */
	R4_ERR_RANGE,			/* an argument outside its valid range (band number) */
	R4_ERR_MISMATCH,		/* shapes or dimensions that do not fit together */
	R4_ERR_LIMIT,			/* exceeds a program limit (size, dimensions) */
	R4_ERR_NOMEM,			/* allocation failed */
	R4_ERR_INTERNAL			/* a bug: a state that cannot happen */
} R4Status;

#define R4_MESSAGE_LEN 256

typedef struct R4Error
{
	R4Status	status;
	char		message[R4_MESSAGE_LEN];	/* short and factual, no trailing period */
	char		detail[R4_MESSAGE_LEN];		/* optional; empty string when absent */
} R4Error;

/* Record an error and return its status, so callers can "return r4_fail(...)". */
R4Status	r4_fail(R4Error *err, R4Status status, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* Add a detail line to an error already recorded; returns err->status. */
R4Status	r4_fail_detail(R4Error *err, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/* Reset an error record to R4_OK with empty texts. */
void		r4_error_clear(R4Error *err);

/* Name of a status, for messages and tests ("invalid input", ...). */
const char *r4_status_name(R4Status status);

/*
 * Allocator hook.  alloc returns NULL on failure (never raises); free
 * accepts NULL.  The default is malloc/free.
 */
typedef struct R4Allocator
{
	void	   *(*alloc) (size_t size, void *ctx);
	void		(*free) (void *ptr, void *ctx);
	void	   *ctx;
} R4Allocator;

void		r4_set_allocator(const R4Allocator *allocator);
void	   *r4_alloc(size_t size);
void	   *r4_alloc_zero(size_t size);
void		r4_free(void *ptr);

/* Multiply sizes, reporting overflow: returns 0 and sets *out on success. */
static inline int
r4_mul_size(size_t a, size_t b, size_t *out)
{
	return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

static inline int
r4_add_size(size_t a, size_t b, size_t *out)
{
	return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

#endif							/* RAI4EO_CORE_H */
