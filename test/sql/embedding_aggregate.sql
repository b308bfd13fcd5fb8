-- avg and sum over embeddings, including parallel (partial + combine) aggregation.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT avg(e), sum(e) FROM (VALUES ('[1,2,3]'::embedding), ('[3,2,1]'), ('[5,5,5]')) v(e);
SELECT avg(e) IS NULL AS avg_null, sum(e) IS NULL AS sum_null FROM (SELECT '[1]'::embedding WHERE false) v(e);
SELECT avg(e), sum(e) FROM (VALUES ('[1,2]'::embedding), (NULL), ('[3,4]')) v(e);
SELECT avg(e) FROM (VALUES ('[1,2]'::embedding), ('[1,2,3]')) v(e);
SELECT pg_temp.err($$SELECT sum(e) FROM (VALUES ('[1,2]'::embedding), ('[1,2,3]')) v(e)$$);
SELECT pg_temp.err($$SELECT sum(e) FROM (VALUES ('[3e38]'::embedding), ('[3e38]')) v(e)$$);
SELECT g, avg(e) FROM (VALUES (1, '[0,2]'::embedding), (1, '[2,0]'), (2, '[9,9]')) v(g, e) GROUP BY g ORDER BY g;

-- parallel aggregation gives the serial result
CREATE TABLE agg_t (id int, e embedding(4)) WITH (parallel_workers = 2);
INSERT INTO agg_t SELECT i, ARRAY[i % 7, (i * 3) % 11, -(i % 5), 1]::real[] FROM generate_series(1, 60000) i;
ANALYZE agg_t;
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
EXPLAIN (COSTS OFF) SELECT avg(e), sum(e) FROM agg_t;
CREATE TEMP TABLE par AS SELECT avg(e) AS a, sum(e) AS s FROM agg_t;
RESET max_parallel_workers_per_gather;
SET max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE ser AS SELECT avg(e) AS a, sum(e) AS s FROM agg_t;
SELECT par.a = ser.a AS avg_same, par.s = ser.s AS sum_same, ser.a, ser.s FROM par, ser;
-- the exact mean, computed independently
SELECT avg(i % 7) AS m1, avg((i * 3) % 11) AS m2, avg(-(i % 5)) AS m3 FROM generate_series(1, 60000) i;
RESET ALL;
DROP TABLE agg_t;
