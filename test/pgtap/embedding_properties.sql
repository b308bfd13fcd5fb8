-- Properties of the embedding type that must hold for any input, checked on
-- random vectors, plus catalogue-wide promises (comments, volatility).
BEGIN;
SELECT plan(12);

CREATE TEMP TABLE rv AS
SELECT i,
       array_agg((random() - 0.5) * (1 + i % 5) ORDER BY j)::real[]::embedding AS a,
       array_agg((random() - 0.5) ORDER BY j)::real[]::embedding AS b
FROM generate_series(1, 300) i, generate_series(1, 384) j GROUP BY i;

SELECT is((SELECT count(*) FROM rv WHERE cosine_change(a, b) < 0 OR cosine_change(a, b) > 2), 0::bigint,
	'cosine_change stays within [0, 2]');
SELECT is((SELECT count(*) FROM rv WHERE abs(cosine_change(a, a)) > 1e-6), 0::bigint,
	'cosine_change of a vector with itself is 0');
SELECT is((SELECT count(*) FROM rv WHERE cosine_change(a, b) <> cosine_change(b, a)), 0::bigint,
	'cosine_change is symmetric');
SELECT is((SELECT count(*) FROM rv,
	LATERAL (SELECT array_agg(v * 3 ORDER BY k)::real[]::embedding AS a3 FROM unnest(a::real[]) WITH ORDINALITY u(v, k)) s
	WHERE abs(cosine_change(a, b) - cosine_change(a3, b)) > 1e-6), 0::bigint,
	'cosine_change ignores the scale of its inputs');
SELECT is((SELECT count(*) FROM rv
	WHERE abs(l2_distance(a, b) ^ 2 - (embedding_norm(a) ^ 2 + embedding_norm(b) ^ 2 - 2 * inner_product(a, b)))
	      > 1e-4 * (embedding_norm(a) ^ 2 + embedding_norm(b) ^ 2)), 0::bigint,
	'|a-b|^2 = |a|^2 + |b|^2 - 2ab');
SELECT is((SELECT count(*) FROM rv WHERE abs(cosine_change(l2_normalize(a), l2_normalize(b)) - (1 - inner_product(l2_normalize(a), l2_normalize(b)))) > 1e-6),
	0::bigint, 'for unit vectors cosine_change = 1 - inner product');
SELECT is((SELECT count(*) FROM rv WHERE a::text::embedding <> a OR b::text::embedding <> b), 0::bigint,
	'text output reads back to the identical embedding');
SELECT is((SELECT count(*) FROM rv WHERE length(embedding_send(a)) <> 4 + 4 * 384), 0::bigint,
	'binary form is 4 header bytes plus 4 per dimension');
SELECT ok((SELECT max(abs(x - y)) FROM unnest((SELECT avg(a) FROM rv)::real[],
	(SELECT array_agg(s / 300 ORDER BY k) FROM (SELECT k, sum(v::float8) AS s FROM rv, unnest(a::real[]) WITH ORDINALITY u(v, k) GROUP BY k) q)::real[]) u(x, y)) < 1e-6,
	'avg equals the per-dimension mean');
SELECT is((SELECT array_agg(i ORDER BY a, i) FROM rv), (SELECT array_agg(i ORDER BY a::real[], i) FROM rv),
	'ORDER BY embedding matches ORDER BY its real[] (element-wise order)');

-- every object the extension creates carries a comment
SELECT is(
	(SELECT array_agg(pg_describe_object(d.classid, d.objid, d.objsubid) ORDER BY 1)
	 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'rai4eo'
	 WHERE d.deptype = 'e' AND d.classid IN ('pg_proc'::regclass, 'pg_type'::regclass, 'pg_operator'::regclass,
	                                         'pg_opclass'::regclass, 'pg_class'::regclass)
	   AND obj_description(d.objid, (SELECT relname FROM pg_class WHERE oid = d.classid)::name) IS NULL
	   AND NOT (d.classid = 'pg_type'::regclass AND EXISTS (SELECT 1 FROM pg_type t WHERE t.oid = d.objid AND (t.typelem <> 0 AND t.typlen = -1 OR t.typrelid <> 0)))),
	NULL, 'every function, type, operator, operator class and relation has a COMMENT');

SELECT is(
	(SELECT array_agg(p.oid::regprocedure::text ORDER BY 1)
	 FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	 JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'rai4eo'
	 WHERE p.proparallel = 'u' AND p.provolatile <> 'v'),
	NULL, 'no IMMUTABLE or STABLE function of the extension is PARALLEL UNSAFE (only writers are)');

SELECT * FROM finish();
ROLLBACK;
