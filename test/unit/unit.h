/*
 * unit.h — a tiny test harness for the core's unit tests.
 *
 * Each test program includes this, uses CHECK/CHECK_EQ_* inside functions
 * registered with RUN(), and ends main() with "return unit_summary();",
 * which prints "N passed, N failed" (the closing line CI reads) and
 * returns non-zero when anything failed.
 */
#ifndef RAI4EO_UNIT_H
#define RAI4EO_UNIT_H

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static int	unit_passed;
static int	unit_failed;
static const char *unit_current = "";

#define CHECK(cond) \
	do { \
		if (cond) unit_passed++; \
		else { unit_failed++; \
			fprintf(stderr, "FAIL %s:%d [%s]: %s\n", __FILE__, __LINE__, unit_current, #cond); } \
	} while (0)

#define CHECK_MSG(cond, ...) \
	do { \
		if (cond) unit_passed++; \
		else { unit_failed++; \
			fprintf(stderr, "FAIL %s:%d [%s]: %s: ", __FILE__, __LINE__, unit_current, #cond); \
			fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
	} while (0)

#define CHECK_EQ_INT(a, b) \
	CHECK_MSG((long long) (a) == (long long) (b), "%lld != %lld", (long long) (a), (long long) (b))

#define CHECK_NEAR(a, b, tol) \
	CHECK_MSG(fabs((double) (a) - (double) (b)) <= (tol), "%.9g vs %.9g (tol %.3g)", \
			  (double) (a), (double) (b), (double) (tol))

#define CHECK_STR_CONTAINS(haystack, needle) \
	CHECK_MSG(strstr((haystack), (needle)) != NULL, "\"%s\" lacks \"%s\"", (haystack), (needle))

#define RUN(fn) \
	do { unit_current = #fn; fn(); } while (0)

/*
 * An allocator pair for out-of-memory tests: unit_failing_alloc succeeds
 * unit_alloc_budget times, then returns NULL; unit_alloc_live counts blocks
 * not yet freed, so a test can check that every failure path frees all.
 */
static long unit_alloc_budget __attribute__((unused));
static long unit_alloc_live __attribute__((unused));

static inline void *
unit_failing_alloc(size_t size, void *ctx)
{
	(void) ctx;
	if (unit_alloc_budget-- <= 0)
		return NULL;
	unit_alloc_live++;
	return malloc(size ? size : 1);
}

static inline void
unit_counting_free(void *p, void *ctx)
{
	(void) ctx;
	unit_alloc_live--;
	free(p);
}

static inline int
unit_summary(const char *suite)
{
	printf("%s: %d passed, %d failed\n", suite, unit_passed, unit_failed);
	return unit_failed == 0 ? 0 : 1;
}

#endif
