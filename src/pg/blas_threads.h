/*
 * blas_threads.h — OpenBLAS's thread count for this backend's inference.
 */
#ifndef RAI4EO_PG_BLAS_THREADS_H
#define RAI4EO_PG_BLAS_THREADS_H

/*
 * Give OpenBLAS the thread count rai4eo.blas_threads asks for, before a
 * forward pass.  The setting is process-global in OpenBLAS, so it is applied
 * only when this backend's value changed since the last call.
 */
void		BlasThreadsApply(void);

#endif							/* RAI4EO_PG_BLAS_THREADS_H */
