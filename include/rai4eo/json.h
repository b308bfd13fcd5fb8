/*
 * json.h — a strict RFC 8259 JSON parser into a small DOM.
 *
 * Used for the safetensors header and for model configuration text.  The
 * parser is bounded (nesting depth, input size), rejects anything RFC 8259
 * does not allow (trailing commas, comments, leading zeros, bare control
 * characters, invalid UTF-8, lone surrogate escapes, a byte-order mark),
 * rejects duplicate object keys, and refuses numbers that overflow a double.
 */
#ifndef RAI4EO_JSON_H
#define RAI4EO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rai4eo/core.h"

#define R4_JSON_MAX_DEPTH 64			/* arrays/objects nested deeper: R4_ERR_LIMIT */
#define R4_JSON_MAX_INPUT 100000000		/* bytes; longer input: R4_ERR_LIMIT */

typedef enum R4JsonType
{
	R4J_NULL,
	R4J_FALSE,
	R4J_TRUE,
	R4J_NUMBER,
	R4J_STRING,
	R4J_ARRAY,
	R4J_OBJECT
} R4JsonType;

typedef struct R4Json R4Json;

struct R4Json
{
	R4JsonType	type;
	double		number;			/* R4J_NUMBER: nearest double (finite) */
	const char *raw;			/* R4J_NUMBER: the number's text as written, NUL-terminated copy */
	char	   *string;			/* R4J_STRING: decoded UTF-8, NUL-terminated */
	size_t		string_len;		/* R4J_STRING: bytes, excluding the terminator; may hold NULs */
	R4Json	   *items;			/* R4J_ARRAY: items[count]; R4J_OBJECT: values[count] */
	size_t		count;
	char	  **keys;			/* R4J_OBJECT: keys[count], decoded, NUL-terminated, in document order */
	size_t	   *key_lens;		/* R4J_OBJECT: byte length of each key (keys may hold \u0000) */
};

/*
 * Parse text[0..len) as exactly one JSON value with optional surrounding
 * whitespace.  On success *out is a tree to release with r4_json_free.
 * Errors: R4_ERR_INVALID (syntax, UTF-8, duplicate key, number out of double
 * range; the message gives the byte offset), R4_ERR_LIMIT (depth or size),
 * R4_ERR_NOMEM.
 */
R4Status	r4_json_parse(const char *text, size_t len, R4Json **out, R4Error *err);

/* The value stored under key in an object; NULL if absent or not an object. */
const R4Json *r4_json_get(const R4Json *object, const char *key);

/*
 * True if v is a number whose exact value is an integer in int64 range; the
 * value is worked out from the raw text, so "9007199254740993", "1e3",
 * "-0" and "2.50e1" are exact, while "1.5" and "9223372036854775808" fail.
 */
bool		r4_json_get_int64(const R4Json *v, int64_t *out);

/* True if v is a number written in plain integer syntax: -?(0|[1-9][0-9]*). */
bool		r4_json_is_integer_literal(const R4Json *v);

/* Release a tree from r4_json_parse; NULL is fine. */
void		r4_json_free(R4Json *v);

/*
 * True if s[0..len) is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF).  On false, *bad_offset (if given) is the offset
 * of the first byte of the offending sequence.
 */
bool		r4_utf8_valid(const char *s, size_t len, size_t *bad_offset);

/*
 * Copy a name into buf for quoting in an error message: at most about
 * bufsize - 4 bytes, cut on a UTF-8 character boundary, control characters
 * and invalid bytes replaced by '?', "..." appended when shortened.
 */
void		r4_text_excerpt(const char *s, size_t len, char *buf, size_t bufsize);

#endif							/* RAI4EO_JSON_H */
