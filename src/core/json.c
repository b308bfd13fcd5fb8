/*
 * json.c — a strict, bounded RFC 8259 parser building an R4Json tree.
 *
 * The parser is recursive descent; recursion is bounded by
 * R4_JSON_MAX_DEPTH, so stack use is small and known.  Every read checks
 * the position against the real input length: the input need not be
 * NUL-terminated.  On failure, whatever was built so far is released and
 * the error record carries the byte offset of the problem.
 */
#include "rai4eo/json.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct JsonParser
{
	const unsigned char *text;
	size_t		len;
	size_t		pos;
	R4Error    *err;
} JsonParser;

static R4Status parse_value(JsonParser *p, R4Json *out, int depth);

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 if malformed. */
static size_t
utf8_sequence(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80,
				hi = 0xBF;
	size_t		n;
	size_t		i;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		n = 3;
		/* Exclude overlong forms and the UTF-16 surrogate range. */
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		n = 4;
		/* Exclude overlong forms and code points above U+10FFFF. */
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	}
	else
		return 0;
	if (avail < n)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return n;
}

/* Check a byte range for well-formed UTF-8. */
bool
r4_utf8_valid(const char *s, size_t len, size_t *bad_offset)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		size_t		n;

		if (u[i] < 0x80)
		{
			i++;
			continue;
		}
		n = utf8_sequence(u + i, len - i);
		if (n == 0)
		{
			if (bad_offset != NULL)
				*bad_offset = i;
			return false;
		}
		i += n;
	}
	return true;
}

/* Copy a possibly long or odd name into a buffer fit for an error message. */
void
r4_text_excerpt(const char *s, size_t len, char *buf, size_t bufsize)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		limit;
	size_t		i = 0;
	size_t		o = 0;

	if (bufsize == 0)
		return;
	if (bufsize < 8)
	{
		buf[0] = '\0';
		return;
	}
	limit = bufsize - 4;		/* room for "..." and the terminator */
	while (i < len)
	{
		size_t		n = 1;

		if (u[i] >= 0x80)
			n = utf8_sequence(u + i, len - i);
		if (o + (n ? n : 1) > limit)
			break;
		if (n == 0 || (n == 1 && (u[i] < 0x20 || u[i] == 0x7F)))
		{
			/* Keep messages printable and valid UTF-8 whatever the input. */
			buf[o++] = '?';
			i++;
		}
		else
		{
			memcpy(buf + o, u + i, n);
			o += n;
			i += n;
		}
	}
	if (i < len)
	{
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
}

/* Record a syntax error at byte offset at. */
static R4Status
syntax_error(JsonParser *p, size_t at, const char *what)
{
	return r4_fail(p->err, R4_ERR_INVALID, "invalid JSON at byte %zu: %s", at, what);
}

/* Record an allocation failure. */
static R4Status
nomem(JsonParser *p)
{
	return r4_fail(p->err, R4_ERR_NOMEM, "out of memory while parsing JSON");
}

/* Skip the four whitespace characters RFC 8259 allows. */
static void
skip_ws(JsonParser *p)
{
	while (p->pos < p->len)
	{
		unsigned char c = p->text[p->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

/* Release what a node owns, leaving the node itself. */
static void
free_contents(R4Json *v)
{
	size_t		i;

	switch (v->type)
	{
		case R4J_NUMBER:
			r4_free((void *) v->raw);
			break;
		case R4J_STRING:
			r4_free(v->string);
			break;
		case R4J_ARRAY:
		case R4J_OBJECT:
			for (i = 0; i < v->count; i++)
			{
				free_contents(&v->items[i]);
				if (v->keys != NULL)
					r4_free(v->keys[i]);
			}
			r4_free(v->items);
			r4_free(v->keys);
			r4_free(v->key_lens);
			break;
		default:
			break;
	}
	memset(v, 0, sizeof(*v));
}

/* Release a parsed tree. */
void
r4_json_free(R4Json *v)
{
	if (v == NULL)
		return;
	free_contents(v);
	r4_free(v);
}

/* Reallocate an array from old_cap to new_cap elements, keeping its contents. */
static bool
grow(void **arr, size_t elem, size_t old_cap, size_t new_cap)
{
	size_t		bytes;
	void	   *fresh;

	if (r4_mul_size(new_cap, elem, &bytes) != 0)
		return false;
	fresh = r4_alloc(bytes);
	if (fresh == NULL)
		return false;
	if (*arr != NULL)
		memcpy(fresh, *arr, old_cap * elem);
	r4_free(*arr);
	*arr = fresh;
	return true;
}

/* Read four hex digits of a \u escape. */
static bool
read_hex4(JsonParser *p, size_t at, unsigned *out)
{
	unsigned	v = 0;
	size_t		i;

	if (p->len - at < 4)
		return false;
	for (i = 0; i < 4; i++)
	{
		unsigned char c = p->text[at + i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned) (c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned) (c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned) (c - 'A' + 10);
		else
			return false;
	}
	*out = v;
	return true;
}

/* Append a code point as UTF-8. */
static size_t
put_utf8(char *dst, unsigned cp)
{
	unsigned char *d = (unsigned char *) dst;

	if (cp < 0x80)
	{
		d[0] = (unsigned char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		d[0] = (unsigned char) (0xC0 | (cp >> 6));
		d[1] = (unsigned char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		d[0] = (unsigned char) (0xE0 | (cp >> 12));
		d[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
		d[2] = (unsigned char) (0x80 | (cp & 0x3F));
		return 3;
	}
	d[0] = (unsigned char) (0xF0 | (cp >> 18));
	d[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
	d[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
	d[3] = (unsigned char) (0x80 | (cp & 0x3F));
	return 4;
}

/* Parse a string starting at the opening quote into a fresh NUL-terminated buffer. */
static R4Status
parse_string(JsonParser *p, char **out, size_t *out_len)
{
	size_t		start = p->pos;
	size_t		i = start + 1;
	size_t		span;
	char	   *buf;
	size_t		o = 0;

	/*
	 * Find the closing quote first: the decoded text is never longer than
	 * the escaped text, so one allocation of the span suffices.
	 */
	while (i < p->len && p->text[i] != '"')
		i += (p->text[i] == '\\') ? 2 : 1;
	if (i >= p->len)
		return syntax_error(p, start, "unterminated string");
	span = i - start - 1;
	buf = r4_alloc(span + 1);
	if (buf == NULL)
		return nomem(p);

	i = start + 1;
	while (p->text[i] != '"')
	{
		unsigned char c = p->text[i];

		if (c < 0x20)
		{
			r4_free(buf);
			return syntax_error(p, i, "control character in string must be escaped");
		}
		if (c >= 0x80)
		{
			size_t		n = utf8_sequence(p->text + i, p->len - i);

			if (n == 0)
			{
				r4_free(buf);
				return syntax_error(p, i, "invalid UTF-8 in string");
			}
			memcpy(buf + o, p->text + i, n);
			o += n;
			i += n;
			continue;
		}
		if (c != '\\')
		{
			buf[o++] = (char) c;
			i++;
			continue;
		}
		/* An escape; the scan above guarantees a byte follows. */
		switch (p->text[i + 1])
		{
			case '"':
				buf[o++] = '"';
				break;
			case '\\':
				buf[o++] = '\\';
				break;
			case '/':
				buf[o++] = '/';
				break;
			case 'b':
				buf[o++] = '\b';
				break;
			case 'f':
				buf[o++] = '\f';
				break;
			case 'n':
				buf[o++] = '\n';
				break;
			case 'r':
				buf[o++] = '\r';
				break;
			case 't':
				buf[o++] = '\t';
				break;
			case 'u':
				{
					unsigned	cp;
					unsigned	lo;

					if (!read_hex4(p, i + 2, &cp))
					{
						r4_free(buf);
						return syntax_error(p, i, "\\u must be followed by four hex digits");
					}
					if (cp >= 0xDC00 && cp <= 0xDFFF)
					{
						r4_free(buf);
						return syntax_error(p, i, "lone low surrogate in \\u escape");
					}
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						/* A high surrogate must pair with a \u low surrogate. */
						if (p->len - i < 12 || p->text[i + 6] != '\\' || p->text[i + 7] != 'u' ||
							!read_hex4(p, i + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF)
						{
							r4_free(buf);
							return syntax_error(p, i, "lone high surrogate in \\u escape");
						}
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						i += 6;
					}
					o += put_utf8(buf + o, cp);
					i += 4;		/* the hex digits; the 2 of "\u" follow below */
				}
				break;
			default:
				r4_free(buf);
				return syntax_error(p, i, "invalid escape in string");
		}
		i += 2;
	}
	buf[o] = '\0';
	p->pos = i + 1;
	*out = buf;
	*out_len = o;
	return R4_OK;
}

/* Convert number text to a double in the C locale's notation. */
static double
text_to_double(const char *raw, size_t n, bool *ok)
{
	const char *dp = localeconv()->decimal_point;
	double		d;
	char	   *end;

	*ok = true;
	errno = 0;
	if (dp == NULL || strcmp(dp, ".") == 0 || strchr(raw, '.') == NULL)
		d = strtod(raw, &end);
	else
	{
		/* strtod follows LC_NUMERIC; rewrite the point when that is not ".". */
		size_t		dplen = strlen(dp);
		size_t		cap;
		char	   *tmp;
		char	   *q;
		const char *s;

		if (r4_add_size(n, dplen + 1, &cap) != 0 || (tmp = r4_alloc(cap)) == NULL)
		{
			*ok = false;
			return 0.0;
		}
		for (s = raw, q = tmp; *s; s++)
		{
			if (*s == '.')
			{
				memcpy(q, dp, dplen);
				q += dplen;
			}
			else
				*q++ = *s;
		}
		*q = '\0';
		d = strtod(tmp, &end);
		r4_free(tmp);
	}
	return d;
}

/* Parse a number per the RFC 8259 grammar, keeping its text. */
static R4Status
parse_number(JsonParser *p, R4Json *out)
{
	const unsigned char *t = p->text;
	size_t		start = p->pos;
	size_t		i = start;
	size_t		n;
	char	   *raw;
	bool		ok;
	double		d;

	if (i < p->len && t[i] == '-')
		i++;
	if (i >= p->len || t[i] < '0' || t[i] > '9')
		return syntax_error(p, i, "expected a digit in number");
	if (t[i] == '0')
	{
		i++;
		if (i < p->len && t[i] >= '0' && t[i] <= '9')
			return syntax_error(p, i, "leading zero in number");
	}
	else
		while (i < p->len && t[i] >= '0' && t[i] <= '9')
			i++;
	if (i < p->len && t[i] == '.')
	{
		i++;
		if (i >= p->len || t[i] < '0' || t[i] > '9')
			return syntax_error(p, i, "expected a digit after the decimal point");
		while (i < p->len && t[i] >= '0' && t[i] <= '9')
			i++;
	}
	if (i < p->len && (t[i] == 'e' || t[i] == 'E'))
	{
		i++;
		if (i < p->len && (t[i] == '+' || t[i] == '-'))
			i++;
		if (i >= p->len || t[i] < '0' || t[i] > '9')
			return syntax_error(p, i, "expected a digit in the exponent");
		while (i < p->len && t[i] >= '0' && t[i] <= '9')
			i++;
	}
	n = i - start;
	raw = r4_alloc(n + 1);
	if (raw == NULL)
		return nomem(p);
	memcpy(raw, t + start, n);
	raw[n] = '\0';
	d = text_to_double(raw, n, &ok);
	if (!ok)
	{
		r4_free(raw);
		return nomem(p);
	}
	if (isinf(d) || isnan(d))
	{
		r4_free(raw);
		return syntax_error(p, start, "number is too large for a double");
	}
	out->type = R4J_NUMBER;
	out->number = d;
	out->raw = raw;
	p->pos = i;
	return R4_OK;
}

/* Match a literal keyword (true, false, null). */
static R4Status
parse_literal(JsonParser *p, const char *word, R4JsonType type, R4Json *out)
{
	size_t		n = strlen(word);

	if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
		return syntax_error(p, p->pos, "invalid literal");
	p->pos += n;
	out->type = type;
	return R4_OK;
}

/* Parse an array starting at '['. */
static R4Status
parse_array(JsonParser *p, R4Json *out, int depth)
{
	size_t		cap = 0;
	R4Status	st;

	out->type = R4J_ARRAY;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->text[p->pos] == ']')
	{
		p->pos++;
		return R4_OK;
	}
	for (;;)
	{
		if (out->count == cap)
		{
			size_t		new_cap = cap ? cap * 2 : 4;

			if (!grow((void **) &out->items, sizeof(R4Json), cap, new_cap))
				return nomem(p);
			cap = new_cap;
		}
		memset(&out->items[out->count], 0, sizeof(R4Json));
		skip_ws(p);
		st = parse_value(p, &out->items[out->count], depth + 1);
		if (st != R4_OK)
		{
			/* Count the partial item so free_contents releases it too. */
			out->count++;
			return st;
		}
		out->count++;
		skip_ws(p);
		if (p->pos >= p->len)
			return syntax_error(p, p->pos, "unterminated array");
		if (p->text[p->pos] == ',')
		{
			p->pos++;
			continue;
		}
		if (p->text[p->pos] == ']')
		{
			p->pos++;
			return R4_OK;
		}
		return syntax_error(p, p->pos, "expected ',' or ']' in array");
	}
}

typedef struct KeyRef
{
	const char *key;
	size_t		len;
} KeyRef;

/* Order keys bytewise, shorter first on a common prefix. */
static int
keyref_cmp(const void *a, const void *b)
{
	const KeyRef *x = a;
	const KeyRef *y = b;
	size_t		n = x->len < y->len ? x->len : y->len;
	int			c = memcmp(x->key, y->key, n);

	if (c != 0)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

/* Reject an object that has the same key twice. */
static R4Status
check_duplicates(JsonParser *p, const R4Json *obj, size_t at)
{
	KeyRef	   *refs;
	size_t		i;
	char		name[96];

	if (obj->count < 2)
		return R4_OK;
	/* Sorting keeps this O(n log n) for headers with many tensors. */
	refs = r4_alloc(obj->count * sizeof(KeyRef));
	if (refs == NULL)
		return nomem(p);
	for (i = 0; i < obj->count; i++)
	{
		refs[i].key = obj->keys[i];
		refs[i].len = obj->key_lens[i];
	}
	qsort(refs, obj->count, sizeof(KeyRef), keyref_cmp);
	for (i = 1; i < obj->count; i++)
	{
		if (keyref_cmp(&refs[i - 1], &refs[i]) == 0)
		{
			r4_text_excerpt(refs[i].key, refs[i].len, name, sizeof(name));
			r4_free(refs);
			return r4_fail(p->err, R4_ERR_INVALID,
						   "invalid JSON: duplicate key \"%s\" in the object at byte %zu",
						   name, at);
		}
	}
	r4_free(refs);
	return R4_OK;
}

/* Parse an object starting at '{'. */
static R4Status
parse_object(JsonParser *p, R4Json *out, int depth)
{
	size_t		start = p->pos;
	size_t		cap = 0;
	R4Status	st;

	out->type = R4J_OBJECT;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->text[p->pos] == '}')
	{
		p->pos++;
		return R4_OK;
	}
	for (;;)
	{
		char	   *key;
		size_t		key_len;

		skip_ws(p);
		if (p->pos >= p->len || p->text[p->pos] != '"')
			return syntax_error(p, p->pos, "expected a string key in object");
		if (out->count == cap)
		{
			size_t		new_cap = cap ? cap * 2 : 4;

			if (!grow((void **) &out->items, sizeof(R4Json), cap, new_cap) ||
				!grow((void **) &out->keys, sizeof(char *), cap, new_cap) ||
				!grow((void **) &out->key_lens, sizeof(size_t), cap, new_cap))
				return nomem(p);
			cap = new_cap;
		}
		st = parse_string(p, &key, &key_len);
		if (st != R4_OK)
			return st;
		memset(&out->items[out->count], 0, sizeof(R4Json));
		out->keys[out->count] = key;
		out->key_lens[out->count] = key_len;
		out->count++;
		skip_ws(p);
		if (p->pos >= p->len || p->text[p->pos] != ':')
			return syntax_error(p, p->pos, "expected ':' after object key");
		p->pos++;
		skip_ws(p);
		st = parse_value(p, &out->items[out->count - 1], depth + 1);
		if (st != R4_OK)
			return st;
		skip_ws(p);
		if (p->pos >= p->len)
			return syntax_error(p, p->pos, "unterminated object");
		if (p->text[p->pos] == ',')
		{
			p->pos++;
			continue;
		}
		if (p->text[p->pos] == '}')
		{
			p->pos++;
			return check_duplicates(p, out, start);
		}
		return syntax_error(p, p->pos, "expected ',' or '}' in object");
	}
}

/* Parse any value at the current position (whitespace already skipped). */
static R4Status
parse_value(JsonParser *p, R4Json *out, int depth)
{
	unsigned char c;

	if (p->pos >= p->len)
		return syntax_error(p, p->pos, "expected a value");
	c = p->text[p->pos];
	switch (c)
	{
		case '{':
		case '[':
			if (depth >= R4_JSON_MAX_DEPTH)
				return r4_fail(p->err, R4_ERR_LIMIT,
							   "JSON nesting at byte %zu is deeper than %d levels",
							   p->pos, R4_JSON_MAX_DEPTH);
			return c == '{' ? parse_object(p, out, depth) : parse_array(p, out, depth);
		case '"':
			{
				R4Status	st = parse_string(p, &out->string, &out->string_len);

				if (st == R4_OK)
					out->type = R4J_STRING;
				return st;
			}
		case 't':
			return parse_literal(p, "true", R4J_TRUE, out);
		case 'f':
			return parse_literal(p, "false", R4J_FALSE, out);
		case 'n':
			return parse_literal(p, "null", R4J_NULL, out);
		default:
			if (c == '-' || (c >= '0' && c <= '9'))
				return parse_number(p, out);
			return syntax_error(p, p->pos, "unexpected character");
	}
}

/* Parse text as one JSON value. */
R4Status
r4_json_parse(const char *text, size_t len, R4Json **out, R4Error *err)
{
	JsonParser	p;
	R4Json	   *root;
	R4Status	st;

	*out = NULL;
	if (len > R4_JSON_MAX_INPUT)
		return r4_fail(err, R4_ERR_LIMIT, "JSON text of %zu bytes exceeds the limit of %d bytes",
					   len, R4_JSON_MAX_INPUT);
	if (text == NULL && len > 0)
		return r4_fail(err, R4_ERR_INTERNAL, "JSON text is NULL");
	p.text = (const unsigned char *) text;
	p.len = len;
	p.pos = 0;
	p.err = err;
	root = r4_alloc_zero(sizeof(R4Json));
	if (root == NULL)
		return nomem(&p);
	skip_ws(&p);
	st = parse_value(&p, root, 0);
	if (st == R4_OK)
	{
		skip_ws(&p);
		if (p.pos != p.len)
			st = syntax_error(&p, p.pos, "unexpected data after the JSON value");
	}
	if (st != R4_OK)
	{
		r4_json_free(root);
		return st;
	}
	*out = root;
	return R4_OK;
}

/* Look up a key in an object. */
const R4Json *
r4_json_get(const R4Json *object, const char *key)
{
	size_t		klen;
	size_t		i;

	if (object == NULL || object->type != R4J_OBJECT || key == NULL)
		return NULL;
	klen = strlen(key);
	for (i = 0; i < object->count; i++)
		if (object->key_lens[i] == klen && memcmp(object->keys[i], key, klen) == 0)
			return &object->items[i];
	return NULL;
}

/* Tell whether a number was written as a plain integer. */
bool
r4_json_is_integer_literal(const R4Json *v)
{
	const char *s;

	if (v == NULL || v->type != R4J_NUMBER || v->raw == NULL)
		return false;
	for (s = v->raw; *s; s++)
		if (*s == '.' || *s == 'e' || *s == 'E')
			return false;
	return true;
}

/* Work out a number's exact integer value from its text. */
bool
r4_json_get_int64(const R4Json *v, int64_t *out)
{
	const char *s;
	bool		negative = false;
	const char *int_digits;
	size_t		n_int = 0;
	const char *frac_digits = NULL;
	size_t		n_frac = 0;
	int64_t		exp10 = 0;
	size_t		total;
	size_t		first;
	size_t		last;
	size_t		k;
	int64_t		scale;
	uint64_t	acc = 0;

	if (v == NULL || v->type != R4J_NUMBER || v->raw == NULL)
		return false;
	s = v->raw;
	if (*s == '-')
	{
		negative = true;
		s++;
	}
	int_digits = s;
	while (*s >= '0' && *s <= '9')
	{
		s++;
		n_int++;
	}
	if (*s == '.')
	{
		s++;
		frac_digits = s;
		while (*s >= '0' && *s <= '9')
		{
			s++;
			n_frac++;
		}
	}
	if (*s == 'e' || *s == 'E')
	{
		bool		eneg = false;

		s++;
		if (*s == '+' || *s == '-')
			eneg = (*s++ == '-');
		while (*s >= '0' && *s <= '9')
		{
			/* Saturate: anything this large is out of range or zero anyway. */
			if (exp10 < 1000000000)
				exp10 = exp10 * 10 + (*s - '0');
			s++;
		}
		if (eneg)
			exp10 = -exp10;
	}
	if (*s != '\0' || n_int == 0)
		return false;

	/* The digits as one sequence, int part then fraction; find the significant span. */
#define DIGIT_AT(i) ((i) < n_int ? int_digits[(i)] : frac_digits[(i) - n_int])
	total = n_int + n_frac;
	for (first = 0; first < total && DIGIT_AT(first) == '0'; first++)
		;
	if (first == total)
	{
		*out = 0;
		return true;
	}
	for (last = total - 1; DIGIT_AT(last) == '0'; last--)
		;
	scale = exp10 - (int64_t) n_frac + (int64_t) (total - 1 - last);
	if (scale < 0)
		return false;
	if ((int64_t) (last - first + 1) + scale > 19)
		return false;
	for (k = first; k <= last; k++)
		acc = acc * 10 + (uint64_t) (DIGIT_AT(k) - '0');
#undef DIGIT_AT
	for (; scale > 0; scale--)
	{
		if (acc > UINT64_MAX / 10)
			return false;
		acc *= 10;
	}
	if (negative)
	{
		if (acc > (uint64_t) INT64_MAX + 1)
			return false;
		*out = acc == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) acc;
	}
	else
	{
		if (acc > (uint64_t) INT64_MAX)
			return false;
		*out = (int64_t) acc;
	}
	return true;
}
