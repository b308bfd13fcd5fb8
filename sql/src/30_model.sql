-- ============================================================================
-- models: weights (safetensors) and their configuration
-- ============================================================================

CREATE TABLE rai4eo.model (
	name		text PRIMARY KEY CHECK (name <> ''),
	arch		text NOT NULL CHECK (arch IN ('vit', 'resnet', 'external', 'lstm', 'gru')),
	config		jsonb NOT NULL DEFAULT '{}',
	weights		bytea NOT NULL,
	-- The per-backend model cache trusts the digest: a CHECK, not a trigger, keeps
	-- every row honest (hand-written ones too), and Citus can make a table with a
	-- CHECK a reference table.  rai4eo_load_model and rai4eo_create_external_model
	-- compute it; an UPDATE of weights must set sha256 = sha256(weights) with them.
	sha256		bytea NOT NULL CONSTRAINT model_sha256_of_weights CHECK (sha256 = pg_catalog.sha256(weights)),
	parameters	bigint CHECK (parameters >= 0),
	created		timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE rai4eo.model ALTER COLUMN weights SET STORAGE EXTERNAL;

COMMENT ON TABLE rai4eo.model IS 'Feature extractors and classifiers: safetensors weights plus the resolved configuration';
COMMENT ON COLUMN rai4eo.model.name IS 'Model name, used by rai4eo_embed(rast, model) and the embedding table';
COMMENT ON COLUMN rai4eo.model.arch IS 'Architecture: vit or resnet (images), lstm or gru (temporal classifiers over embedding sequences), or external for embeddings computed outside the database';
COMMENT ON COLUMN rai4eo.model.config IS 'Configuration: bands, scale/mean/std, input mode, feature recipe, change_threshold, ...';
COMMENT ON COLUMN rai4eo.model.weights IS 'The safetensors file, stored uncompressed';
COMMENT ON COLUMN rai4eo.model.sha256 IS 'sha256(weights), kept true by the CHECK model_sha256_of_weights (writers set it: rai4eo_load_model does); the per-backend model cache is keyed by it';
COMMENT ON COLUMN rai4eo.model.parameters IS 'Number of weights the engine uses (set by rai4eo_load_model)';
COMMENT ON COLUMN rai4eo.model.created IS 'When the model was stored';

GRANT SELECT ON rai4eo.model TO PUBLIC;

-- ---- k-means states of a model's embeddings (rai4eo_cluster, 58_cluster.sql) ----

CREATE TABLE rai4eo.state (
	model		text NOT NULL REFERENCES rai4eo.model (name) ON DELETE CASCADE ON UPDATE CASCADE,
	state		integer NOT NULL CHECK (state >= 1),
	centre		embedding NOT NULL,
	members		bigint NOT NULL CHECK (members >= 0),
	PRIMARY KEY (model, state)
);
COMMENT ON TABLE rai4eo.state IS 'k-means states of a model''s embeddings (rai4eo_cluster): the cluster change score reads them';
COMMENT ON COLUMN rai4eo.state.model IS 'The model whose embeddings were clustered';
COMMENT ON COLUMN rai4eo.state.state IS 'State number, 1 .. k';
COMMENT ON COLUMN rai4eo.state.centre IS 'Unit-norm centre: an embedding''s state is the centre most similar in cosine';
COMMENT ON COLUMN rai4eo.state.members IS 'Sampled embeddings assigned to the state in the last iteration';
GRANT SELECT ON rai4eo.state TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('rai4eo.state', '');

-- The models are data people made too: pg_dump keeps their rows.
SELECT pg_catalog.pg_extension_config_dump('rai4eo.model', '');
