-- Casts between embedding and SQL arrays.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT ARRAY[1,2,3]::embedding;
SELECT ARRAY[1.5,2.25]::real[]::embedding;
SELECT ARRAY[0.1,2.5]::double precision[]::embedding;
SELECT ARRAY[0.1,2.5]::numeric[]::embedding;
SELECT '[1,2.5,-3]'::embedding::real[];
SELECT ('[1,2.5,-3]'::embedding::real[])[2];

-- assignment casts: arrays go straight into embedding columns
CREATE TABLE cast_t (e embedding(2));
INSERT INTO cast_t VALUES (ARRAY[1,2]), (ARRAY[1.5,2.5]::real[]), (ARRAY[3,4]::float8[]), (ARRAY[5,6]::numeric[]);
SELECT * FROM cast_t;
SELECT pg_temp.err($$INSERT INTO cast_t VALUES (ARRAY[1,2,3])$$);
DROP TABLE cast_t;

-- typmod through a cast
SELECT ARRAY[1,2]::embedding(2);
SELECT pg_temp.err($$SELECT ARRAY[1,2]::embedding(3)$$);

-- bad arrays: NULL elements 22004, 2-D 22000, empty 22000
SELECT ARRAY[1,NULL,3]::embedding;
SELECT pg_temp.err($$SELECT ARRAY[1,NULL,3]::embedding$$);
SELECT pg_temp.err($$SELECT ARRAY[[1,2],[3,4]]::embedding$$);
SELECT pg_temp.err($$SELECT '{}'::int[]::embedding$$);

-- values a float4 cannot hold: 22003; NaN and infinity: 22000
SELECT ARRAY[1e39]::float8[]::embedding;
SELECT pg_temp.err($$SELECT ARRAY[1e-50]::float8[]::embedding$$);
SELECT pg_temp.err($$SELECT ARRAY[1e39]::numeric[]::embedding$$);
SELECT pg_temp.err($$SELECT ARRAY['NaN']::float8[]::embedding$$);
SELECT pg_temp.err($$SELECT ARRAY['Infinity']::real[]::embedding$$);
SELECT pg_temp.err($$SELECT ARRAY['NaN']::numeric[]::embedding$$);

-- round trip through real[] keeps every bit
SELECT count(*) AS mismatches
FROM (SELECT ARRAY[random(), -random() * 1e6, random() * 1e-30]::real[] AS a FROM generate_series(1, 500)) s
WHERE a::embedding::real[] <> a;
