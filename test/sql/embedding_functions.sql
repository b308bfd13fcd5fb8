-- Distances, norms and element-wise arithmetic.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- cosine_change = 1 - cosine similarity: 0 same direction, 1 orthogonal, 2 opposite
SELECT cosine_change('[1,2,3]', '[2,4,6]') AS same_direction,
       cosine_change('[1,0]', '[0,1]') AS orthogonal,
       cosine_change('[1,1]', '[-1,-1]') AS opposite,
       cosine_change('[1,2,3]', '[3,2,1]') AS some_change;
SELECT cosine_similarity('[1,0]', '[1,1]'), '[1,0]'::embedding <=> '[1,1]';
-- a zero vector has no direction: NaN, documented
SELECT cosine_change('[0,0]', '[1,1]'), cosine_similarity('[1,1]', '[0,0]');

SELECT l2_distance('[0,0]', '[3,4]'), '[0,0]'::embedding <-> '[3,4]';
SELECT inner_product('[1,2,3]', '[4,5,6]'), '[1,2,3]'::embedding <#> '[4,5,6]';
SELECT embedding_norm('[3,4]'), embedding_dims('[3,4]');
SELECT l2_normalize('[3,4]'), l2_normalize('[0,0]'), embedding_norm(l2_normalize('[1,2,3,4,5]'));

SELECT '[1,2,3]'::embedding + '[10,20,30]', '[1,2,3]'::embedding - '[10,20,30]', '[1,2,3]'::embedding * '[10,20,30]';
SELECT '[3e38]'::embedding + '[3e38]';
SELECT pg_temp.err($$SELECT '[-3e38]'::embedding - '[3e38]'$$);
SELECT pg_temp.err($$SELECT '[1e30]'::embedding * '[1e30]'$$);
SELECT pg_temp.err($$SELECT '[1e-30]'::embedding * '[1e-30]'$$);

-- operands must have the same dimensions: 22000, for every binary function
SELECT cosine_change('[1,2]', '[1,2,3]');
SELECT f, pg_temp.err(format('SELECT %s(%L::embedding, %L::embedding)', f, '[1,2]', '[1,2,3]'))
FROM unnest(ARRAY['cosine_change', 'cosine_similarity', 'l2_distance', 'inner_product',
                  'embedding_negative_inner_product', 'embedding_add', 'embedding_sub', 'embedding_mul']) f;

-- long vectors take the SIMD path; compare with the same sums done by SQL in double precision
CREATE TABLE pairs AS
SELECT i, array_agg(random() - 0.3 ORDER BY j)::real[] AS a, array_agg(random() - 0.6 ORDER BY j)::real[] AS b
FROM generate_series(1, 20) i, generate_series(1, 1 + (i * 97) % 1600) j GROUP BY i;
WITH ref AS (
	SELECT i, sum(x::float8 * y) AS dot, sum(x::float8 * x) AS na, sum(y::float8 * y) AS nb, sum((x::float8 - y) ^ 2) AS l2sq
	FROM pairs, unnest(a, b) AS u(x, y) GROUP BY i
)
SELECT count(*) AS pairs,
       max(abs(cosine_change(a::embedding, b::embedding) - (1 - dot / sqrt(na * nb)))) < 1e-6 AS cosine_ok,
       max(abs(inner_product(a::embedding, b::embedding) - dot) / greatest(abs(dot), 1)) < 1e-5 AS dot_ok,
       max(abs(l2_distance(a::embedding, b::embedding) - sqrt(l2sq)) / sqrt(l2sq)) < 1e-5 AS l2_ok,
       max(abs(embedding_norm(a::embedding) - sqrt(na)) / sqrt(na)) < 1e-5 AS norm_ok
FROM pairs JOIN ref USING (i);
DROP TABLE pairs;

-- everything the extension defines in C is IMMUTABLE STRICT PARALLEL SAFE
SELECT p.proname, p.provolatile, p.proisstrict, p.proparallel
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'rai4eo'
WHERE p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
  AND p.prokind = 'f' AND p.proname ~ '^(embedding|cosine|l2_|inner|array_to_embedding)'
  AND (p.provolatile <> 'i' OR NOT p.proisstrict OR p.proparallel <> 's');
