-- Comparison operators and the btree operator class: ORDER BY, DISTINCT, GROUP BY, unique indexes.
SELECT '[1,2]'::embedding < '[1,3]', '[1,2]'::embedding = '[1,2]', '[1,2]'::embedding <> '[1,2]',
       '[1,2]'::embedding < '[1,2,0]', '[2]'::embedding > '[1,9]', '[1,2]'::embedding >= '[1,2]',
       '[1,2]'::embedding <= '[0,9]', embedding_cmp('[1]', '[1]');
-- -0 and 0 compare equal, as in float4
SELECT '[-0]'::embedding = '[0]';

CREATE TABLE bt (id serial, e embedding);
INSERT INTO bt (e) VALUES ('[3,1]'), ('[1,2]'), ('[1,2]'), ('[1,2,0]'), ('[-1,5]'), ('[3,1]'), ('[2]');
SELECT e FROM bt ORDER BY e, id;
SELECT DISTINCT e FROM bt ORDER BY e;
SELECT e, count(*) FROM bt GROUP BY e ORDER BY e;
SET enable_hashagg = off;
SELECT e, count(*) FROM bt GROUP BY e ORDER BY e DESC;
RESET enable_hashagg;

CREATE INDEX bt_e ON bt (e);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM bt WHERE e = '[1,2]';
SELECT id FROM bt WHERE e = '[1,2]' ORDER BY id;
SELECT e FROM bt WHERE e > '[1,2]' ORDER BY e;
RESET enable_seqscan;

CREATE TABLE uq (e embedding UNIQUE);
INSERT INTO uq VALUES ('[1,2,3]'), ('[1,2,4]');
INSERT INTO uq VALUES ('[1,2,3]');
DROP TABLE bt, uq;
