/*
 * blas_threads.c — OpenBLAS threads per backend.
 *
 * rai4eo.blas_threads (rai4eo.c defines and caps it) says how many threads
 * one backend's GEMMs may use.  OpenBLAS keeps that number process-wide and
 * setting it is not free (it may start or park threads), so this file
 * remembers what it last applied and calls OpenBLAS only on a change.
 */
#include "postgres.h"

#include "blas_threads.h"
#include "guc.h"

/* OpenBLAS runtime API (declared here so any cblas.h will do) */
extern void openblas_set_num_threads(int num_threads);

static int	applied_blas_threads = 0;

void
BlasThreadsApply(void)
{
	if (applied_blas_threads != rai4eo_blas_threads)
	{
		openblas_set_num_threads(rai4eo_blas_threads);
		applied_blas_threads = rai4eo_blas_threads;
	}
}
