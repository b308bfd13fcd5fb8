/*
 * guc.h — the extension's configuration parameters (defined in rai4eo.c).
 */
#ifndef RAI4EO_PG_GUC_H
#define RAI4EO_PG_GUC_H

/* rai4eo.default_model: the model used when a model argument is NULL ("" = none) */
extern char *rai4eo_default_model;

/* rai4eo.change_threshold: fallback change threshold ("" = unset) */
extern char *rai4eo_change_threshold;

/* rai4eo.blas_threads: OpenBLAS threads for this backend's inference */
extern int	rai4eo_blas_threads;

/* rai4eo.precision: the arithmetic of the engines' GEMMs (an R4Precision) */
extern int	rai4eo_precision;

#endif							/* RAI4EO_PG_GUC_H */
