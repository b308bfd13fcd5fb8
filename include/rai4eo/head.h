/*
 * head.h — classification heads on top of an engine's features.
 *
 * A model file may carry a classifier: a linear layer (`head.weight`,
 * `head.bias`; or `fc.weight`, `fc.bias`, torchvision's ResNet name) or a
 * small MLP stored as an nn.Sequential (`head.0.weight`, `head.0.bias`,
 * `head.2.weight`, ... : linear layers at increasing indices, ReLU between
 * them).  `head.*` wins over `fc.*`.  Keys of other shapes under head.*
 * (DINO's projection head: head.mlp.*, head.last_layer.*) are not a
 * classifier and are ignored.  Biases may be absent (zero).
 *
 * Outputs are probabilities: softmax over the classes, or independent
 * sigmoids for a multi-label classifier.
 */
#ifndef RAI4EO_HEAD_H
#define RAI4EO_HEAD_H

#include <stdbool.h>

#include "rai4eo/core.h"
#include "rai4eo/safetensors.h"

#define R4_HEAD_MAX_LAYERS 8

typedef struct R4Head R4Head;

/*
 * Look for a classifier in st.  *layers is 0 when there is none; otherwise
 * in_dim and classes give its input width and number of classes.  Errors:
 * R4_ERR_MISMATCH when the layers do not chain (a layer's input width is
 * not the previous one's output width, a bias of the wrong length),
 * R4_ERR_UNSUPPORTED for a non-float tensor, R4_ERR_LIMIT for more than
 * R4_HEAD_MAX_LAYERS layers.
 */
R4Status	r4_head_find(const R4SafeTensors *st, int *layers, int *in_dim, int *classes,
						 R4Error *err);

/* Build the classifier r4_head_find found (copied as F32; st may be freed afterwards). */
R4Status	r4_head_build(const R4SafeTensors *st, bool multilabel, R4Head **out, R4Error *err);

/*
 * Probabilities for B feature rows x[B][in_dim] into probs[B][classes].
 * Uses a scratch buffer owned by the head (not thread-safe).
 */
R4Status	r4_head_forward(R4Head *h, const float *x, int B, float *probs, R4Error *err);

/* Input width and number of classes. */
int			r4_head_in_dim(const R4Head *h);
int			r4_head_classes(const R4Head *h);

/* Number of weights in the head. */
size_t		r4_head_param_count(const R4Head *h);

/* Release the head; NULL is fine. */
void		r4_head_free(R4Head *h);

#endif							/* RAI4EO_HEAD_H */
