/*
 * arch.h — one descriptor per image architecture, and the toolkit its
 * configuration resolver is written with.
 *
 * An architecture (a ViT, a ResNet, ...) is one R4ArchOps: the names that
 * detect it and that messages use, its own configuration keys, how it
 * resolves its part of a configuration from the tensors (tensor list,
 * shapes, defaults, keys), how it writes that part back as JSON, the input
 * sizes it accepts, and its engine (build, forward, parameter count,
 * activation memory, free).  model_config.c and engine.c never name an
 * architecture: they walk the table r4_arch_table returns (arch.c).
 * docs/architecture.md lists what adding one takes: its file, and one
 * entry in that table.
 */
#ifndef RAI4EO_ARCH_H
#define RAI4EO_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rai4eo/core.h"
#include "rai4eo/gemm.h"
#include "rai4eo/json.h"
#include "rai4eo/model_config.h"
#include "rai4eo/safetensors.h"

/*
 * Called before each block.  Returning true stops the forward pass with
 * R4_ERR_LIMIT ("inference interrupted").  The callback may also never
 * return (the PostgreSQL glue calls CHECK_FOR_INTERRUPTS, which longjmps):
 * at every call the model is in a consistent state, holds no lock and owns
 * all its memory, so abandoning the forward pass leaks nothing and the
 * model stays usable; only the caller's output buffer is left half written.
 */
typedef bool (*R4InterruptCheck) (void *arg);

/* A growing text buffer (the JSON writer); failed is set when out of memory. */
typedef struct R4TextBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;
} R4TextBuf;

struct R4ArchOps
{
	/* Naming */
	const char *name;			/* the "arch" value: "vit" */
	const char *display;		/* in messages: "ViT" */
	const char *a_display;		/* "a ViT" */
	const char *anchor;			/* a tensor that only this architecture has: detection */
	const char *expected;		/* detail when its tensors are missing */
	const char *names_hint;		/* "<kind> tensor names such as ..." for the combined hint */
	/* Keys only this architecture accepts: set ones, and derived assertions. */
	const char *const *own_keys;
	const char *const *derived_keys;
	/*
	 * Named variants that "arch" may give ("resnet50"): index of word, or
	 * -1.  NULL when there are none; variants_hint lists them for messages.
	 */
	int			(*variant) (const char *word);
	const char *variants_hint;

	/*
	 * Resolve the architecture's part of cfg from the tensors (presence,
	 * dtype, shapes: every tensor the engine will read), set its defaults,
	 * in_chans, min_input and out_dim, and apply its keys and the common
	 * ones (r4_config_apply_common, at the point its messages take
	 * precedence).  variant is what "arch" named (-1: the plain name or
	 * detection), variant_origin where it was given.  The part lives in
	 * cfg->arch_data.
	 */
	R4Status	(*resolve) (const R4SafeTensors *st, const R4Json *config, int variant,
							const char *variant_origin, R4ModelConfig *cfg, R4Error *err);
	/* JSON keys written right after "arch", and after "input" (each starts with ','). */
	void		(*json_lead) (const R4ModelConfig *cfg, R4TextBuf *b);
	void		(*json_tail) (const R4ModelConfig *cfg, R4TextBuf *b);
	/* Limits for a model input of oh x ow (from a W x H raster); R4_ERR_LIMIT. NULL: none. */
	R4Status	(*check_input) (const R4ModelConfig *cfg, int H, int W, int oh, int ow,
								R4Error *err);

	/* The engine: see engine.h for the contract of each call. */
	R4Status	(*build) (const R4SafeTensors *st, const R4ModelConfig *cfg, void **out,
						  R4Error *err);
	R4Status	(*forward) (void *m, const float *input, int B, int H, int W, float *out,
							R4InterruptCheck check, void *check_arg, R4Error *err);
	size_t		(*param_count) (const void *m);
	size_t		(*work_bytes) (const void *m);
	void		(*release_work) (void *m);
	void		(*free) (void *m);
	/*
	 * Optional (NULL: the architecture runs in fp32 only): switch the
	 * engine's GEMMs to a precision, and report the one in use.
	 */
	R4Status	(*set_precision) (void *m, R4Precision precision, R4Error *err);
	R4Precision (*precision) (const void *m);
};

/* The architectures built in, NULL-terminated, in detection order. */
const R4ArchOps *const *r4_arch_table(void);

/* ---- the resolver's toolkit (model_config.c), for the architectures ---- */

/* One configuration value, from the configuration object or the metadata. */
typedef struct R4ConfigValue
{
	const R4Json *v;			/* NULL when the key is given nowhere */
	R4Json	   *owned;			/* parsed metadata text, freed by r4_config_release */
	R4Json		word;			/* a metadata word taken as a string */
	const char *origin;			/* "configuration" or "metadata" */
} R4ConfigValue;

/*
 * Find key in the configuration object, else in the metadata.  Metadata
 * values are JSON text, except that words_ok keys may hold a bare word.
 */
R4Status	r4_config_lookup(const R4SafeTensors *st, const R4Json *config, const char *key,
							 bool words_ok, R4ConfigValue *cv, R4Error *err);
void		r4_config_release(R4ConfigValue *cv);

/* An integer within [lo, hi]; a finite number; a JSON boolean. */
R4Status	r4_config_int(const R4ConfigValue *cv, const char *key, int64_t lo, int64_t hi,
						  int *out, R4Error *err);
R4Status	r4_config_number(const R4Json *v, const R4ConfigValue *cv, const char *key,
							 double *out, R4Error *err);
R4Status	r4_config_bool(const R4ConfigValue *cv, const char *key, bool *out, R4Error *err);

/* Check a derived value the configuration object asserts (metadata ones are informational). */
R4Status	r4_config_assert_derived(const R4SafeTensors *st, const R4Json *config,
									 const char *key, int actual, R4Error *err);

/* Every input channel's default band, mean and std (after in_chans is known). */
void		r4_config_channel_defaults(R4ModelConfig *cfg);

/*
 * Apply the keys every architecture has (img_size, at least min_input;
 * bands, scale, mean, std, input, change_threshold) on top of the defaults.
 */
R4Status	r4_config_apply_common(const R4SafeTensors *st, const R4Json *config,
								   R4ModelConfig *cfg, R4Error *err);

/* Whether key is in a NULL-terminated list. */
bool		r4_name_in_list(const char *const *list, const char *key);

/* Format a tensor shape as "[1, 197, 384]". */
void		r4_format_shape(const int64_t *shape, int ndim, char *buf, size_t size);

/* Demand a tensor (present) of exactly the given shape; R4_ERR_MISMATCH. */
R4Status	r4_expect_shape(const R4SafeTensors *st, const char *name, int ndim,
							const int64_t *want, R4Error *err);

/* Demand a float tensor (F32/F16/BF16); R4_ERR_UNSUPPORTED. */
R4Status	r4_expect_float(const R4SafeTensors *st, const char *name, R4Error *err);

#define R4_TENSOR_NAME_MAX 96	/* longest required tensor name, with room */
#define R4_MISSING_LISTED 5		/* missing tensors named in the message */

/* Required tensors found missing, the first few by name. */
typedef struct R4MissingList
{
	char		listed[R4_MISSING_LISTED][R4_TENSOR_NAME_MAX];
	int			count;
} R4MissingList;

/* Note name as missing if st lacks it. */
void		r4_need_tensor(const R4SafeTensors *st, const char *name, R4MissingList *ml);

/* Report the missing tensors (if any, R4_ERR_INVALID) with a hint about prefixes. */
R4Status	r4_report_missing(const R4SafeTensors *st, const R4MissingList *ml,
							  const R4ArchOps *arch, R4Error *err);

/* Append formatted text; the shortest decimal that reads back as v; a JSON list of doubles. */
void		r4_buf_printf(R4TextBuf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
void		r4_buf_double(R4TextBuf *b, double v);
void		r4_buf_double_list(R4TextBuf *b, const double *v, int n);

#endif							/* RAI4EO_ARCH_H */
