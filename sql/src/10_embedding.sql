-- ============================================================================
-- embedding: a float4 vector with a dimension typmod, pgvector's text form
-- ============================================================================

CREATE TYPE embedding;

CREATE FUNCTION embedding_in(cstring, oid, integer) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_out(embedding) RETURNS cstring
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_typmod_in(cstring[]) RETURNS integer
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_typmod_out(integer) RETURNS cstring
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_recv(internal, oid, integer) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_send(embedding) RETURNS bytea
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE embedding (
	INPUT = embedding_in,
	OUTPUT = embedding_out,
	TYPMOD_IN = embedding_typmod_in,
	TYPMOD_OUT = embedding_typmod_out,
	RECEIVE = embedding_recv,
	SEND = embedding_send,
	STORAGE = external
);

COMMENT ON TYPE embedding IS 'A feature vector of float4 (1 to 16000 dimensions), text form [1,2,3] like pgvector''s vector; embedding(n) fixes the dimensions';
COMMENT ON FUNCTION embedding_in(cstring, oid, integer) IS 'Parse an embedding from its text form [x1,x2,...]';
COMMENT ON FUNCTION embedding_out(embedding) IS 'Write an embedding in its text form, shortest round-trip decimals';
COMMENT ON FUNCTION embedding_typmod_in(cstring[]) IS 'Parse the dimension modifier of embedding(n)';
COMMENT ON FUNCTION embedding_typmod_out(integer) IS 'Write the dimension modifier of embedding(n)';
COMMENT ON FUNCTION embedding_recv(internal, oid, integer) IS 'Read an embedding in binary form: int16 dimensions, int16 zero, float4 elements';
COMMENT ON FUNCTION embedding_send(embedding) IS 'Write an embedding in binary form: int16 dimensions, int16 zero, float4 elements';

-- ---- functions --------------------------------------------------------------

CREATE FUNCTION cosine_change(embedding, embedding) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cosine_similarity(embedding, embedding) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION l2_distance(embedding, embedding) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION inner_product(embedding, embedding) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_negative_inner_product(embedding, embedding) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_dims(embedding) RETURNS integer
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_norm(embedding) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION l2_normalize(embedding) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_add(embedding, embedding) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_sub(embedding, embedding) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_mul(embedding, embedding) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION cosine_change(embedding, embedding) IS 'Change score: 1 - cosine similarity, from 0 (same direction) to 2 (opposite); NaN if either is a zero vector';
COMMENT ON FUNCTION cosine_similarity(embedding, embedding) IS 'Cosine similarity, from -1 to 1; NaN if either is a zero vector';
COMMENT ON FUNCTION l2_distance(embedding, embedding) IS 'Euclidean distance';
COMMENT ON FUNCTION inner_product(embedding, embedding) IS 'Inner (dot) product';
COMMENT ON FUNCTION embedding_negative_inner_product(embedding, embedding) IS 'Negative inner product (the <#> operator: ascending order puts the largest inner product first)';
COMMENT ON FUNCTION embedding_dims(embedding) IS 'Number of dimensions';
COMMENT ON FUNCTION embedding_norm(embedding) IS 'Euclidean norm';
COMMENT ON FUNCTION l2_normalize(embedding) IS 'Scale to unit Euclidean norm; a zero vector stays zero';
COMMENT ON FUNCTION embedding_add(embedding, embedding) IS 'Element-wise sum';
COMMENT ON FUNCTION embedding_sub(embedding, embedding) IS 'Element-wise difference';
COMMENT ON FUNCTION embedding_mul(embedding, embedding) IS 'Element-wise product';

-- ---- ordering (btree support) ------------------------------------------------

CREATE FUNCTION embedding_lt(embedding, embedding) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_le(embedding, embedding) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_eq(embedding, embedding) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_ne(embedding, embedding) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_ge(embedding, embedding) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_gt(embedding, embedding) RETURNS bool
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_cmp(embedding, embedding) RETURNS integer
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION embedding_lt(embedding, embedding) IS 'Less than (element by element, then by dimensions)';
COMMENT ON FUNCTION embedding_le(embedding, embedding) IS 'Less than or equal (element by element, then by dimensions)';
COMMENT ON FUNCTION embedding_eq(embedding, embedding) IS 'Equal: same dimensions and elements';
COMMENT ON FUNCTION embedding_ne(embedding, embedding) IS 'Not equal';
COMMENT ON FUNCTION embedding_ge(embedding, embedding) IS 'Greater than or equal (element by element, then by dimensions)';
COMMENT ON FUNCTION embedding_gt(embedding, embedding) IS 'Greater than (element by element, then by dimensions)';
COMMENT ON FUNCTION embedding_cmp(embedding, embedding) IS 'Three-way comparison for the btree operator class';

-- ---- aggregates -------------------------------------------------------------

CREATE FUNCTION embedding_accum(float8[], embedding) RETURNS float8[]
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_combine(float8[], float8[]) RETURNS float8[]
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_avg(float8[]) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION embedding_accum(float8[], embedding) IS 'Transition function of avg(embedding): state is {count, sum1, sum2, ...}';
COMMENT ON FUNCTION embedding_combine(float8[], float8[]) IS 'Combine function of avg(embedding), for parallel aggregation';
COMMENT ON FUNCTION embedding_avg(float8[]) IS 'Final function of avg(embedding)';

CREATE AGGREGATE avg(embedding) (
	SFUNC = embedding_accum,
	STYPE = float8[],
	FINALFUNC = embedding_avg,
	COMBINEFUNC = embedding_combine,
	INITCOND = '{0}',
	PARALLEL = SAFE
);

CREATE AGGREGATE sum(embedding) (
	SFUNC = embedding_add,
	STYPE = embedding,
	COMBINEFUNC = embedding_add,
	PARALLEL = SAFE
);

COMMENT ON AGGREGATE avg(embedding) IS 'Element-wise mean of embeddings (accumulated in double precision)';
COMMENT ON AGGREGATE sum(embedding) IS 'Element-wise sum of embeddings';

-- ---- casts ------------------------------------------------------------------

CREATE FUNCTION embedding(embedding, integer, boolean) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_embedding(integer[], integer, boolean) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_embedding(real[], integer, boolean) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_embedding(double precision[], integer, boolean) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_embedding(numeric[], integer, boolean) RETURNS embedding
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_to_float4(embedding, integer, boolean) RETURNS real[]
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION embedding(embedding, integer, boolean) IS 'Apply a dimension modifier: the dimensions must match';
COMMENT ON FUNCTION array_to_embedding(integer[], integer, boolean) IS 'Cast integer[] to embedding (1-D, no NULLs)';
COMMENT ON FUNCTION array_to_embedding(real[], integer, boolean) IS 'Cast real[] to embedding (1-D, no NULLs, finite)';
COMMENT ON FUNCTION array_to_embedding(double precision[], integer, boolean) IS 'Cast double precision[] to embedding (1-D, no NULLs, finite, within real range)';
COMMENT ON FUNCTION array_to_embedding(numeric[], integer, boolean) IS 'Cast numeric[] to embedding (1-D, no NULLs, finite, within real range)';
COMMENT ON FUNCTION embedding_to_float4(embedding, integer, boolean) IS 'Cast embedding to real[]';

CREATE CAST (embedding AS embedding) WITH FUNCTION embedding(embedding, integer, boolean) AS IMPLICIT;
CREATE CAST (integer[] AS embedding) WITH FUNCTION array_to_embedding(integer[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (real[] AS embedding) WITH FUNCTION array_to_embedding(real[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (double precision[] AS embedding) WITH FUNCTION array_to_embedding(double precision[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (numeric[] AS embedding) WITH FUNCTION array_to_embedding(numeric[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (embedding AS real[]) WITH FUNCTION embedding_to_float4(embedding, integer, boolean) AS IMPLICIT;

-- ---- operators --------------------------------------------------------------

CREATE OPERATOR <=> (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = cosine_change, COMMUTATOR = '<=>');
CREATE OPERATOR <-> (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = l2_distance, COMMUTATOR = '<->');
CREATE OPERATOR <#> (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_negative_inner_product, COMMUTATOR = '<#>');
CREATE OPERATOR + (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_add, COMMUTATOR = +);
CREATE OPERATOR - (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_sub);
CREATE OPERATOR * (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_mul, COMMUTATOR = *);

CREATE OPERATOR < (LEFTARG = embedding, RIGHTARG = embedding, PROCEDURE = embedding_lt,
	COMMUTATOR = >, NEGATOR = >=, RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR <= (LEFTARG = embedding, RIGHTARG = embedding, PROCEDURE = embedding_le,
	COMMUTATOR = >=, NEGATOR = >, RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR = (LEFTARG = embedding, RIGHTARG = embedding, PROCEDURE = embedding_eq,
	COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel, MERGES);
CREATE OPERATOR <> (LEFTARG = embedding, RIGHTARG = embedding, PROCEDURE = embedding_ne,
	COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR >= (LEFTARG = embedding, RIGHTARG = embedding, PROCEDURE = embedding_ge,
	COMMUTATOR = <=, NEGATOR = <, RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR > (LEFTARG = embedding, RIGHTARG = embedding, PROCEDURE = embedding_gt,
	COMMUTATOR = <, NEGATOR = <=, RESTRICT = scalargtsel, JOIN = scalargtjoinsel);

COMMENT ON OPERATOR <=> (embedding, embedding) IS 'Cosine distance (cosine_change)';
COMMENT ON OPERATOR <-> (embedding, embedding) IS 'Euclidean distance (l2_distance)';
COMMENT ON OPERATOR <#> (embedding, embedding) IS 'Negative inner product';
COMMENT ON OPERATOR + (embedding, embedding) IS 'Element-wise sum';
COMMENT ON OPERATOR - (embedding, embedding) IS 'Element-wise difference';
COMMENT ON OPERATOR * (embedding, embedding) IS 'Element-wise product';
COMMENT ON OPERATOR < (embedding, embedding) IS 'Less than';
COMMENT ON OPERATOR <= (embedding, embedding) IS 'Less than or equal';
COMMENT ON OPERATOR = (embedding, embedding) IS 'Equal';
COMMENT ON OPERATOR <> (embedding, embedding) IS 'Not equal';
COMMENT ON OPERATOR >= (embedding, embedding) IS 'Greater than or equal';
COMMENT ON OPERATOR > (embedding, embedding) IS 'Greater than';

CREATE OPERATOR CLASS embedding_ops
	DEFAULT FOR TYPE embedding USING btree AS
	OPERATOR 1 <,
	OPERATOR 2 <=,
	OPERATOR 3 =,
	OPERATOR 4 >=,
	OPERATOR 5 >,
	FUNCTION 1 embedding_cmp(embedding, embedding);

COMMENT ON OPERATOR CLASS embedding_ops USING btree IS 'Total order on embeddings: DISTINCT, GROUP BY, ORDER BY and unique indexes';
