-- Text input and output of embedding, and every way a literal can be wrong.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- accepted forms; output is the shortest decimal that reads back the same float4
SELECT '[1,2,3]'::embedding;
SELECT '  [ 1 ,  2,3 ]  '::embedding;
SELECT E'[\t-1.5,\n+2e3, 0.1 ]'::embedding;
SELECT '[-0, 1e-45, 3.4028235e38, 1.17549435e-38]'::embedding;
SELECT '[0.1, 0.2, 0.30000001192092896]'::embedding;
SELECT '[1.5]'::embedding(1);
SELECT embedding_dims('[1,2,3,4]');

-- a text form that pgvector reads back unchanged: brackets, commas, no spaces
SELECT '[0.333333343267,2.5,-7]'::embedding::text;

-- malformed text: 22P02
SELECT '1,2'::embedding;
SELECT '[1,2'::embedding;
SELECT pg_temp.err($$SELECT ''::embedding$$);
SELECT pg_temp.err($$SELECT '[1,,2]'::embedding$$);
SELECT pg_temp.err($$SELECT '[,1]'::embedding$$);
SELECT pg_temp.err($$SELECT '[1,]'::embedding$$);
SELECT pg_temp.err($$SELECT '[1 2]'::embedding$$);
SELECT pg_temp.err($$SELECT '[a]'::embedding$$);
SELECT '[1]x'::embedding;
SELECT pg_temp.err($$SELECT '[1] ]'::embedding$$);
SELECT pg_temp.err($$SELECT '{1,2}'::embedding$$);

-- empty: 22000
SELECT '[]'::embedding;
SELECT pg_temp.err($$SELECT '[ ]'::embedding$$);

-- NaN and infinity: 22000
SELECT '[NaN, 1]'::embedding;
SELECT pg_temp.err($$SELECT '[1, inf]'::embedding$$);
SELECT pg_temp.err($$SELECT '[-Infinity]'::embedding$$);

-- out of range for float4: 22003
SELECT '[4e38]'::embedding;
SELECT pg_temp.err($$SELECT '[-1e39]'::embedding$$);
-- underflow rounds towards zero, as in pgvector (which uses strtof the same way)
SELECT '[1e-50]'::embedding, '[1e-46,1]'::embedding, '[-1e-46]'::embedding, '[1e-45]'::embedding;

-- dimension limits: 16000 is fine, 16001 is 54000
SELECT embedding_dims(('[' || array_to_string(array_fill(1, ARRAY[16000]), ',') || ']')::embedding);
SELECT pg_temp.err($$SELECT ('[' || array_to_string(array_fill(1, ARRAY[16001]), ',') || ']')::embedding$$);

-- typmod: 1..16000, exactly one; 22023
SELECT pg_temp.err($$SELECT '[1]'::embedding(0)$$);
SELECT pg_temp.err($$SELECT '[1]'::embedding(16001)$$);
SELECT pg_temp.err($$SELECT '[1]'::embedding(2,3)$$);
-- 16000 is a valid typmod: the error is about the value, not the modifier
SELECT pg_temp.err($$SELECT '[1,2]'::embedding(16000)$$);

-- dimensions against the typmod: 22000
SELECT '[1,2]'::embedding(3);
CREATE TABLE emb3 (id int, e embedding(3));
INSERT INTO emb3 VALUES (1, '[1,2,3]');
INSERT INTO emb3 VALUES (2, '[1,2]');
SELECT pg_temp.err($$INSERT INTO emb3 VALUES (3, '[1,2,3,4]'::embedding)$$);
UPDATE emb3 SET e = '[4,5,6]' WHERE id = 1;
SELECT * FROM emb3;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'emb3'::regclass AND attname = 'e';
-- storage is external: large embeddings are moved out of line but never compressed
SELECT typstorage FROM pg_type WHERE oid = 'embedding'::regtype;
DROP TABLE emb3;
