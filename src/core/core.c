/*
 * core.c — error records and the allocator hook shared by the core.
 */
#include "rai4eo/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *
default_alloc(size_t size, void *ctx)
{
	(void) ctx;
	return malloc(size ? size : 1);
}

static void
default_free(void *ptr, void *ctx)
{
	(void) ctx;
	free(ptr);
}

static R4Allocator current_allocator = {default_alloc, default_free, NULL};

/* Install an allocator; NULL restores malloc/free. */
void
r4_set_allocator(const R4Allocator *allocator)
{
	if (allocator == NULL)
	{
		current_allocator.alloc = default_alloc;
		current_allocator.free = default_free;
		current_allocator.ctx = NULL;
	}
	else
		current_allocator = *allocator;
}

void *
r4_alloc(size_t size)
{
	return current_allocator.alloc(size, current_allocator.ctx);
}

void *
r4_alloc_zero(size_t size)
{
	void	   *p = r4_alloc(size);

	if (p != NULL)
		memset(p, 0, size);
	return p;
}

void
r4_free(void *ptr)
{
	if (ptr != NULL)
		current_allocator.free(ptr, current_allocator.ctx);
}

R4Status
r4_fail(R4Error *err, R4Status status, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL)
		return status;
	err->status = status;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	err->detail[0] = '\0';
	return status;
}

R4Status
r4_fail_detail(R4Error *err, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL)
		return R4_ERR_INTERNAL;
	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
	return err->status;
}

void
r4_error_clear(R4Error *err)
{
	err->status = R4_OK;
	err->message[0] = '\0';
	err->detail[0] = '\0';
}

const char *
r4_status_name(R4Status status)
{
	switch (status)
	{
		case R4_OK:
			return "ok";
		case R4_ERR_INVALID:
			return "invalid input";
		case R4_ERR_UNSUPPORTED:
			return "not supported";
		case R4_ERR_RANGE:
			return "out of range";
		case R4_ERR_MISMATCH:
			return "mismatch";
		case R4_ERR_LIMIT:
			return "limit exceeded";
		case R4_ERR_NOMEM:
			return "out of memory";
		case R4_ERR_INTERNAL:
			return "internal error";
	}
	return "unknown status";
}
