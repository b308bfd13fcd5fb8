/*
 * core_error.h — turn the core's R4Error into ereport().
 */
#ifndef RAI4EO_PG_CORE_ERROR_H
#define RAI4EO_PG_CORE_ERROR_H

#include "postgres.h"

#include "rai4eo/core.h"

/*
 * Raise err as an ERROR.  invalid_code is the SQLSTATE for R4_ERR_INVALID
 * (what "invalid input" means depends on the caller: a corrupt raster is
 * 22P03, a bad model file 22023); the other statuses map to fixed codes.
 */
void		ReportCoreError(const R4Error *err, int invalid_code) pg_attribute_noreturn();

#endif							/* RAI4EO_PG_CORE_ERROR_H */
