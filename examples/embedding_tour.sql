-- A short guided tour of the embedding type (run by scripts/demo.sh).
\echo '-- embeddings are pgvector-style float4 vectors with an optional dimension typmod'
CREATE TABLE tour_image (id int PRIMARY KEY, place text, year int, emb embedding(4));
INSERT INTO tour_image VALUES
	(1, 'forest stand', 2018, '[0.9, 0.1, 0.3, 0.8]'),
	(2, 'forest stand', 2019, '[0.1, 0.8, 0.7, 0.2]'),   -- cleared in 2019
	(3, 'pasture',      2018, '[0.5, 0.5, 0.2, 0.6]'),
	(4, 'pasture',      2019, '[0.52, 0.49, 0.22, 0.61]');
SELECT * FROM tour_image ORDER BY id;

\echo '-- cosine_change (1 - cosine similarity) scores change between the two years'
SELECT a.place, round(cosine_change(a.emb, b.emb)::numeric, 4) AS change, a.emb <=> b.emb AS same_via_operator
FROM tour_image a JOIN tour_image b ON a.place = b.place AND a.year = 2018 AND b.year = 2019
ORDER BY change DESC;

\echo '-- distances, norms and aggregates'
SELECT l2_distance(emb, '[0,0,0,0]') AS l2, embedding_norm(emb) AS norm, l2_normalize(emb) AS unit
FROM tour_image WHERE id = 1;
SELECT year, avg(emb) AS mean_embedding FROM tour_image GROUP BY year ORDER BY year;

\echo '-- casts from SQL arrays, and the errors a user sees'
SELECT ARRAY[1, 2, 3]::embedding AS from_int_array, '[1,2,3]'::embedding::real[] AS to_real_array;
\set ON_ERROR_STOP 0
SELECT '[1,2'::embedding;
SELECT '[1,2]'::embedding(3);
\set ON_ERROR_STOP 1
DROP TABLE tour_image;
