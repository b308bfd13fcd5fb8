-- Binary send/recv: the wire format, and COPY (FORMAT binary) round trips.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- int16 dimensions, int16 zero, then float4 elements in network byte order
SELECT embedding_send('[1,2]');
SELECT embedding_send('[-0.5]');

CREATE TABLE bin_src (id int, e embedding);
INSERT INTO bin_src VALUES (1, '[1,2,3]'), (2, '[0.1,-2.5e-7,3.4028235e38]'), (3, '[7]');
COPY bin_src TO '/tmp/rai4eo_regress_binary.copy' (FORMAT binary);

CREATE TABLE bin_dst (id int, e embedding);
COPY bin_dst FROM '/tmp/rai4eo_regress_binary.copy' (FORMAT binary);
SELECT s.id, s.e = d.e AS same, d.e FROM bin_src s JOIN bin_dst d USING (id) ORDER BY id;

-- the typmod is enforced on binary input too
CREATE TABLE bin_dst3 (id int, e embedding(3));
SELECT pg_temp.err($$COPY bin_dst3 FROM '/tmp/rai4eo_regress_binary.copy' (FORMAT binary)$$);
SELECT count(*) AS nothing_half_loaded FROM bin_dst3;

-- a corrupt value (reserved field not zero) is refused: 22P03
CREATE TABLE bin_raw (b bytea);
-- build a binary COPY file by hand: signature, flags, extension length, one row with one field
INSERT INTO bin_raw VALUES (
	'\x5047434f50590aff0d0a00'::bytea || '\x00000000'::bytea || '\x00000000'::bytea
	|| '\x0001'::bytea || '\x00000008'::bytea || '\x00010001'::bytea || '\x3f800000'::bytea
	|| '\xffff'::bytea);
SELECT lo_from_bytea(424242, b) > 0 AS ok FROM bin_raw;
SELECT lo_export(424242, '/tmp/rai4eo_regress_bad.copy') = 1 AS exported;
SELECT lo_unlink(424242);
CREATE TABLE bin_one (e embedding);
SELECT pg_temp.err($$COPY bin_one FROM '/tmp/rai4eo_regress_bad.copy' (FORMAT binary)$$);

-- the same file with the reserved field zero loads
UPDATE bin_raw SET b = overlay(b placing '\x00010000'::bytea from 26 for 4);
SELECT lo_from_bytea(424243, b) > 0 AS ok FROM bin_raw;
SELECT lo_export(424243, '/tmp/rai4eo_regress_bad.copy') = 1 AS exported;
SELECT lo_unlink(424243);
COPY bin_one FROM '/tmp/rai4eo_regress_bad.copy' (FORMAT binary);
SELECT * FROM bin_one;

DROP TABLE bin_src, bin_dst, bin_dst3, bin_raw, bin_one;
