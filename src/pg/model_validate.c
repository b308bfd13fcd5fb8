/*
 * model_validate.c — what rai4eo_load_model checks before a model is stored.
 *
 * Validation is the whole load path a backend would later take (parse the
 * safetensors file, resolve the configuration, build the engine, which
 * converts every tensor), run once in a scratch memory context that is
 * dropped afterwards: a model that is stored can be built, and what fails
 * fails at load with the SQLSTATE of its cause, not at the first embed.
 */
#include "postgres.h"

#include "core_error.h"
#include "embedding.h"
#include "model_validate.h"
#include "rai4eo/engine.h"
#include "rai4eo/json.h"
#include "rai4eo/safetensors.h"
#include "utils/memutils.h"

char *
ModelValidate(const uint8 *buf, size_t len, const char *config_json,
			  R4ModelConfig *cfg, int64 *parameters)
{
	MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext, "rai4eo model validation",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(scratch);
	R4SafeTensors st = {0};
	R4Json	   *config = NULL;
	R4Engine   *engine = NULL;
	R4Error		err;
	char	   *json;
	char	   *result;

	r4_error_clear(&err);
	if (r4_safetensors_parse(buf, len, &st, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_BINARY_REPRESENTATION);
	if (config_json != NULL &&
		r4_json_parse(config_json, strlen(config_json), &config, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
	if (r4_model_config_resolve(&st, config, cfg, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
	/* Every embed would fail to store its vector: say so now, before building. */
	{
		int			dims = cfg->output == R4_OUTPUT_PROBABILITIES ? cfg->n_classes : cfg->out_dim;

		if (dims > EMBEDDING_MAX_DIM)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the model's embeddings would have %d dimensions; the embedding type holds at most %d",
							dims, EMBEDDING_MAX_DIM),
					 errhint("With \"readout\": \"token_stats\", a smaller \"readout_grid\" gives fewer.")));
	}
	/* Building converts every tensor: what fails here would fail at first use */
	if (r4_engine_build(&st, cfg, &engine, &err) != R4_OK)
		ReportCoreError(&err, ERRCODE_INVALID_PARAMETER_VALUE);
	*parameters = (int64) r4_engine_param_count(engine);
	json = r4_model_config_to_json(cfg);
	if (json == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	MemoryContextSwitchTo(old);
	result = pstrdup(json);
	MemoryContextDelete(scratch);
	/* The class names lived in the scratch context: the caller gets the rest */
	cfg->class_names = NULL;
	cfg->class_names_len = 0;
	return result;
}
