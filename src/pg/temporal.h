/*
 * temporal.h — the temporal classifiers (LSTM / GRU, src/core/temporal.c)
 * as the store sees them.
 */
#ifndef RAI4EO_PG_TEMPORAL_H
#define RAI4EO_PG_TEMPORAL_H

#include "postgres.h"

/*
 * If the file and configuration name a temporal architecture ("arch":
 * "lstm" or "gru", in config or __metadata__), validate them completely by
 * building the model and return true with the architecture's name, the
 * resolved configuration JSON and the parameter count (all palloc'd);
 * errors as ModelValidate's.  False for any other architecture.
 */
bool		TemporalModelValidate(const uint8 *buf, size_t len, const char *config_json,
								  const char **arch, char **config, int64 *parameters);

#endif							/* RAI4EO_PG_TEMPORAL_H */
