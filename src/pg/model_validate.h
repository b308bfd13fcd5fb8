/*
 * model_validate.h — checking a model before it is stored.
 */
#ifndef RAI4EO_PG_MODEL_VALIDATE_H
#define RAI4EO_PG_MODEL_VALIDATE_H

#include "postgres.h"

#include "rai4eo/model_config.h"

/*
 * Validate weights + config completely by building the engine in a scratch
 * context.  Returns the canonical configuration JSON (palloc'd) and fills
 * cfg and parameters.  Errors name what is wrong (22P03 malformed file,
 * 22023 bad configuration, 22000 shape mismatch, 0A000 unsupported).
 */
char	   *ModelValidate(const uint8 *buf, size_t len, const char *config_json,
						  R4ModelConfig *cfg, int64 *parameters);

#endif							/* RAI4EO_PG_MODEL_VALIDATE_H */
