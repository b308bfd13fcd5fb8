/*
 * core_error.c — map core statuses to SQLSTATEs.
 */
#include "postgres.h"

#include "core_error.h"

void
ReportCoreError(const R4Error *err, int invalid_code)
{
	int			code;

	switch (err->status)
	{
		case R4_ERR_INVALID:
			code = invalid_code;
			break;
		case R4_ERR_UNSUPPORTED:
			code = ERRCODE_FEATURE_NOT_SUPPORTED;
			break;
		case R4_ERR_RANGE:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
		case R4_ERR_MISMATCH:
			code = ERRCODE_DATA_EXCEPTION;
			break;
		case R4_ERR_LIMIT:
			code = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			break;
		case R4_ERR_NOMEM:
			code = ERRCODE_OUT_OF_MEMORY;
			break;
		default:
			code = ERRCODE_INTERNAL_ERROR;
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg_internal("%s", err->message),
			 err->detail[0] ? errdetail_internal("%s", err->detail) : 0));
	pg_unreachable();
}
