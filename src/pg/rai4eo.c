/*
 * rai4eo.c — module entry: the magic block and _PG_init.
 *
 * _PG_init stays light on purpose: it may run in the postmaster (preload) and
 * every backend pays for it.  No models are loaded and no BLAS work is done
 * here; that happens on first use in a backend.
 */
#include "postgres.h"

#include "fmgr.h"
#include "rai4eo/core.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Route core allocations to CurrentMemoryContext, failing softly */
static void *
CoreAlloc(size_t size, void *ctx)
{
	return MemoryContextAllocExtended(CurrentMemoryContext, size > 0 ? size : 1,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void
CoreFree(void *ptr, void *ctx)
{
	pfree(ptr);
}

void
_PG_init(void)
{
	static const R4Allocator allocator = {CoreAlloc, CoreFree, NULL};

	r4_set_allocator(&allocator);
}
