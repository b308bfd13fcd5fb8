-- rai4eo.precision: fp32 by default, only fp32 and bf16 accepted (22023);
-- bf16 is either taken (a CPU with avx512_bf16) or refused with 0A000.
-- The embeddings themselves: test/parity/test_precision.py.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- The GUCs exist once the library is loaded (any rai4eo C function loads it).
SELECT '[1]'::embedding;
SHOW rai4eo.precision;
SELECT pg_temp.err($$SET rai4eo.precision = 'fp16'$$);
SELECT pg_temp.err($$SET rai4eo.precision = ''$$);
SELECT pg_temp.err($$SET rai4eo.precision = 'fp32'$$);
SELECT pg_temp.err($$SET rai4eo.precision = 'bf16'$$)
	IN ('no error', '0A000: rai4eo.precision = ''bf16'' needs a CPU with AVX-512 BF16 (avx512_bf16)') AS bf16_taken_or_refused;
SELECT setting IN ('fp32', 'bf16'), enumvals, context FROM pg_settings WHERE name = 'rai4eo.precision';
RESET rai4eo.precision;
SHOW rai4eo.precision;
