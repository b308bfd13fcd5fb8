/*
 * rai4eo.c — module entry: the magic block, _PG_init and the GUCs.
 *
 * _PG_init stays light on purpose: it may run in the postmaster (preload) and
 * every backend pays for it.  No models are loaded and no BLAS work is done
 * here; that happens on first use in a backend.
 */
#include "postgres.h"

#include <math.h>
#include <unistd.h>

#include "fmgr.h"
#include "guc.h"
#include "rai4eo/core.h"
#include "rai4eo/gemm.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

char	   *rai4eo_default_model = NULL;
char	   *rai4eo_change_threshold = NULL;
int			rai4eo_blas_threads = 1;
int			rai4eo_precision = R4_PRECISION_FP32;

static const struct config_enum_entry precision_options[] = {
	{"fp32", R4_PRECISION_FP32, false},
	{"bf16", R4_PRECISION_BF16, false},
	{NULL, 0, false}
};

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

/* Accept "" (unset) or a cosine distance in [0, 2] */
static bool
CheckChangeThreshold(char **newval, void **extra, GucSource source)
{
	char	   *end;
	double		v;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	errno = 0;
	v = strtod(*newval, &end);
	while (*end == ' ')
		end++;
	if (errno != 0 || end == *newval || *end != '\0' || !isfinite(v) || v < 0 || v > 2)
	{
		GUC_check_errdetail("rai4eo.change_threshold must be empty or a number between 0 and 2 (a cosine distance).");
		return false;
	}
	return true;
}

/*
 * Cap rai4eo.blas_threads at the cores this machine has: more threads only
 * contend, and 256 once gave one backend 64 threads and 9 GB of address space
 * that a cancel could not stop.
 */
static bool
CheckBlasThreads(int *newval, void **extra, GucSource source)
{
	long		cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (cores < 1)
		cores = 1;
	if (*newval > cores)
	{
		GUC_check_errdetail("rai4eo.blas_threads is capped at the %ld cores of this machine.", cores);
		return false;
	}
	return true;
}

/*
 * bf16 needs the AVX-512 BF16 kernel: the portable loop computes the same
 * values but several times slower than fp32, which nobody opting in for
 * speed wants, so a CPU without avx512_bf16 refuses the setting.
 */
static bool
CheckPrecision(int *newval, void **extra, GucSource source)
{
	if (*newval == R4_PRECISION_BF16 && !r4_gemm_bf16_native())
	{
		GUC_check_errcode(ERRCODE_FEATURE_NOT_SUPPORTED);
		GUC_check_errmsg("rai4eo.precision = 'bf16' needs a CPU with AVX-512 BF16 (avx512_bf16)");
		GUC_check_errhint("Keep rai4eo.precision = 'fp32' on this server.");
		return false;
	}
	return true;
}

void
_PG_init(void)
{
	static const R4Allocator allocator = {CoreAlloc, CoreFree, NULL};

	r4_set_allocator(&allocator);

	DefineCustomStringVariable("rai4eo.default_model",
							   "Model used by rai4eo functions when their model argument is NULL.",
							   "Empty means no default: a NULL model argument is an error.",
							   &rai4eo_default_model,
							   "",
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("rai4eo.change_threshold",
							   "Cosine-distance threshold above which a day counts as changed, when neither an argument nor the model's calibrated threshold gives one.",
							   "Empty means unset.",
							   &rai4eo_change_threshold,
							   "",
							   PGC_USERSET, 0,
							   CheckChangeThreshold, NULL, NULL);
	/* Parallelism comes from PostgreSQL (backends, parallel workers), not BLAS */
	DefineCustomIntVariable("rai4eo.blas_threads",
							"OpenBLAS threads used by one backend's inference.",
							"Keep max_connections x blas_threads at or below the number of cores.",
							&rai4eo_blas_threads,
							1, 1, 256,
							PGC_USERSET, 0,
							CheckBlasThreads, NULL, NULL);
	DefineCustomEnumVariable("rai4eo.precision",
							 "Arithmetic of the models' matrix products: fp32 (exact, the default) or bf16 (bf16 inputs, fp32 sums; ViT models only).",
							 "bf16 needs a CPU with avx512_bf16; embeddings then differ slightly from fp32 ones (cosine >= 0.999 on the test models).",
							 &rai4eo_precision,
							 R4_PRECISION_FP32, precision_options,
							 PGC_USERSET, 0,
							 CheckPrecision, NULL, NULL);
	MarkGUCPrefixReserved("rai4eo");
}
