-- Exactness where float lanes overflow or underflow, pgvector's answers for l2/ip,
-- aggregate states checked, and stored values checked against their dimension count.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- n copies of v as an embedding
CREATE FUNCTION pg_temp.fill(v float8, n int) RETURNS embedding LANGUAGE sql AS
$$ SELECT array_fill(v, ARRAY[n])::embedding $$;

-- large elements: below 16 dimensions (scalar tail) and at 16 and more (float lanes) alike
SELECT n,
       cosine_change(pg_temp.fill(1e20, n), pg_temp.fill(1e20, n)) AS same_change,
       cosine_similarity(pg_temp.fill(1e20, n), pg_temp.fill(-1e20, n)) AS opposite,
       embedding_norm(pg_temp.fill(3e38, n)) / (3e38 * sqrt(n)) AS norm_ratio,
       l2_normalize(pg_temp.fill(3e38, n)) = pg_temp.fill(1 / sqrt(n), n) AS normalized
FROM unnest(ARRAY[1, 4, 15, 16, 17, 64, 16000]) n;

-- tiny elements: squares underflow float, not double
SELECT n,
       cosine_change(pg_temp.fill(1e-30, n), pg_temp.fill(1e-30, n)) AS same_change,
       embedding_norm(pg_temp.fill(1e-30, n)) / (1e-30 * sqrt(n)) AS norm_ratio,
       l2_normalize(pg_temp.fill(1e-30, n)) = pg_temp.fill(1 / sqrt(n), n) AS normalized,
       l2_distance(pg_temp.fill(2e-30, n), pg_temp.fill(1e-30, n)) / (1e-30 * sqrt(n)) AS l2_ratio,
       inner_product(pg_temp.fill(1e-25, n), pg_temp.fill(1e-25, n)) / (1e-50 * n) AS ip_ratio
FROM unnest(ARRAY[1, 15, 16, 64]) n;

-- mixed signs that overflow lane by lane but cancel exactly
SELECT inner_product(('[' || array_to_string(array_fill(3e38::real, ARRAY[32]), ',') || ']')::embedding,
       ('[' || (SELECT string_agg(CASE WHEN i % 2 = 0 THEN '3e38' ELSE '-3e38' END, ',') FROM generate_series(1, 32) i) || ']')::embedding) AS cancels;

-- l2 distance and inner product are pgvector's (float4 sums): Infinity past FLT_MAX, at every width
SELECT n,
       l2_distance(pg_temp.fill(3e38, n), pg_temp.fill(-3e38, n)) AS l2,
       inner_product(pg_temp.fill(3e38, n), pg_temp.fill(3e38, n)) AS ip,
       inner_product(pg_temp.fill(3e38, n), pg_temp.fill(-3e38, n)) AS neg_ip,
       pg_temp.fill(3e38, n) <#> pg_temp.fill(3e38, n) AS neg_ip_op,
       l2_distance(pg_temp.fill(1e19, n), pg_temp.fill(0, n)) AS l2_of_1e19s
FROM unnest(ARRAY[1, 15, 16, 17]) n;

-- aggregate support functions check every state: 22023
SELECT pg_temp.err($$SELECT embedding_avg('{1}')$$);
SELECT pg_temp.err($$SELECT embedding_avg('{0,1,2}')$$);
SELECT pg_temp.err($$SELECT embedding_avg('{-1,1}')$$);
SELECT pg_temp.err($$SELECT embedding_avg('{1.5,1}')$$);
SELECT pg_temp.err($$SELECT embedding_avg('{NaN,1}')$$);
SELECT pg_temp.err($$SELECT embedding_avg('{1,Infinity}')$$);
SELECT pg_temp.err($$SELECT embedding_avg('{{1,2}}')$$);
SELECT pg_temp.err($$SELECT embedding_avg('{1,NULL}')$$);
SELECT pg_temp.err($$SELECT embedding_avg(array_fill(1::float8, ARRAY[16002]))$$);
SELECT embedding_dims(embedding_avg(array_fill(1::float8, ARRAY[16001]))) AS max_dims;
SELECT pg_temp.err($$SELECT embedding_accum('{2}', '[1]')$$);
SELECT pg_temp.err($$SELECT embedding_combine('{1,1}', '{1}')$$);
SELECT embedding_avg('{2,1,4}'), embedding_avg('{0}') IS NULL AS empty_is_null,
       embedding_avg(embedding_combine(embedding_accum('{0}', '[1,2]'), embedding_accum('{0}', '[3,4]')));

-- a stored value whose size does not match its dimension count: XX001, never a read past it
BEGIN;
CREATE CAST (bytea AS embedding) WITHOUT FUNCTION;
SELECT pg_temp.err($$SELECT embedding_norm('\x00100000'::bytea::embedding)$$);
SELECT pg_temp.err($$SELECT ('\x0200000000000000'::bytea::embedding)::text$$);
SELECT pg_temp.err($$SELECT '\x0000000000000000'::bytea::embedding <=> '[1]'$$);
SELECT embedding_norm('\x010000000000803f'::bytea::embedding) AS well_formed;
ROLLBACK;
