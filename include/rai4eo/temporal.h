/*
 * temporal.h — a recurrent classifier over a sequence of embeddings: an
 * LSTM or GRU (PyTorch's nn.LSTM / nn.GRU, batch_first, unidirectional),
 * optionally pooled by temporal attention, then a classification head.
 *
 * The whole architecture (its tensor layout, shape checks, configuration,
 * build, forward and parameter count) lives in temporal.c.
 *
 * Tensors, with PyTorch's names (G = 4 for LSTM, gates i f g o; G = 3 for
 * GRU, gates r z n; H hidden units, D input width):
 *   weight_ih_l{k}  [G*H][D for k = 0, else H]
 *   weight_hh_l{k}  [G*H][H]
 *   bias_ih_l{k}, bias_hh_l{k}  [G*H]  (both absent: nn.LSTM(bias=False))
 *   attn.weight [1][H], attn.bias [1]   optional attention pooling:
 *                   a_t = softmax_t(attn.weight . h_t + attn.bias), pooled = sum_t a_t h_t
 *   head.weight/head.bias or head.N.*   the classifier on the pooled state
 *                   (see head.h); without attention the pooled state is the
 *                   top layer's last output h_T.
 * Bidirectional (`*_reverse`) and projected LSTMs (`weight_hr_l*`) are
 * refused as unsupported.
 *
 * Configuration keys (the config argument wins over the file's
 * __metadata__, key by key; unknown config keys are an error):
 *   arch          "lstm" or "gru" (required)
 *   classes       class names (strings or numbers), one per head output
 *   multilabel    sigmoid per class (default true) or softmax
 *   l2_normalize  scale each input embedding to unit norm first (default false)
 *   input_model   the model whose stored embeddings form the sequence
 *   sensor        the images' sensor (default "PF-SR")
 *   input_dim, hidden, layers, attention, out_dim, output   derived from
 *                 the shapes; if given they must agree
 */
#ifndef RAI4EO_TEMPORAL_H
#define RAI4EO_TEMPORAL_H

#include <stdbool.h>
#include <stddef.h>

#include "rai4eo/core.h"
#include "rai4eo/safetensors.h"

#define R4_TEMPORAL_MAX_LAYERS 16
#define R4_TEMPORAL_MAX_HIDDEN 4096
#define R4_TEMPORAL_MAX_INPUT 16000
#define R4_TEMPORAL_MAX_STEPS 100000	/* longer sequences: R4_ERR_LIMIT */
#define R4_TEMPORAL_NAME_MAX 200

typedef enum R4RnnKind
{
	R4_RNN_LSTM,
	R4_RNN_GRU
} R4RnnKind;

typedef struct R4TemporalConfig
{
	R4RnnKind	kind;
	int			input_dim;
	int			hidden;
	int			layers;
	bool		attention;
	int			n_classes;
	bool		multilabel;
	bool		l2_normalize;
	char		input_model[R4_TEMPORAL_NAME_MAX + 1];	/* "" when not set */
	char		sensor[16];
	char	   *classes_json;	/* the class names as a JSON array; r4_alloc'd */
} R4TemporalConfig;

typedef struct R4Temporal R4Temporal;

/* "lstm" / "gru" -> kind; false for any other text. */
bool		r4_temporal_kind_from_name(const char *name, R4RnnKind *out);
const char *r4_temporal_kind_name(R4RnnKind kind);

/*
 * The architecture a file and configuration text name ("arch" of the
 * config, else of the metadata) when it is a temporal one; false otherwise
 * (including a config that is not parseable: the caller reports that).
 */
bool		r4_temporal_is_temporal(const R4SafeTensors *st, const char *config_json);

/*
 * Resolve and check the configuration against the tensors (every shape).
 * config_json may be NULL.  On success cfg is filled (release with
 * r4_temporal_config_free).  R4_ERR_INVALID bad configuration or missing
 * tensors, R4_ERR_MISMATCH wrong shapes, R4_ERR_UNSUPPORTED variants and
 * dtypes, R4_ERR_LIMIT sizes.
 */
R4Status	r4_temporal_config_resolve(const R4SafeTensors *st, const char *config_json,
									   R4TemporalConfig *cfg, R4Error *err);

/* The resolved configuration as JSON text, every key spelled out; r4_alloc'd, NULL on no memory. */
char	   *r4_temporal_config_to_json(const R4TemporalConfig *cfg);

void		r4_temporal_config_free(R4TemporalConfig *cfg);

/* Build from tensors and a resolved configuration (weights copied as F32). */
R4Status	r4_temporal_build(const R4SafeTensors *st, const R4TemporalConfig *cfg,
							  R4Temporal **out, R4Error *err);

/*
 * Class probabilities probs[n_classes] for one sequence x[T][input_dim]
 * (T >= 1, oldest first).  Not thread-safe (scratch owned by the model).
 */
R4Status	r4_temporal_forward(R4Temporal *m, const float *x, int T, float *probs, R4Error *err);

/* Number of weights. */
size_t		r4_temporal_param_count(const R4Temporal *m);

void		r4_temporal_free(R4Temporal *m);

#endif							/* RAI4EO_TEMPORAL_H */
