-- ============================================================================
-- models: weights (safetensors) and their configuration
-- ============================================================================

CREATE TABLE rai4eo.model (
	name		text PRIMARY KEY CHECK (name <> ''),
	arch		text NOT NULL CHECK (arch IN ('vit', 'resnet')),
	config		jsonb NOT NULL DEFAULT '{}',
	weights		bytea NOT NULL,
	sha256		bytea NOT NULL CHECK (length(sha256) = 32),
	created		timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE rai4eo.model ALTER COLUMN weights SET STORAGE EXTERNAL;

COMMENT ON TABLE rai4eo.model IS 'Feature extractors and classifiers: safetensors weights plus the resolved configuration';
COMMENT ON COLUMN rai4eo.model.name IS 'Model name, used by rai4eo_embed(rast, model) and the embedding table';
COMMENT ON COLUMN rai4eo.model.arch IS 'Architecture: vit or resnet';
COMMENT ON COLUMN rai4eo.model.config IS 'Configuration: bands, scale/mean/std, input mode, feature recipe, change_threshold, ...';
COMMENT ON COLUMN rai4eo.model.weights IS 'The safetensors file, stored uncompressed';
COMMENT ON COLUMN rai4eo.model.sha256 IS 'SHA-256 of weights: the per-backend model cache is keyed by it';
COMMENT ON COLUMN rai4eo.model.created IS 'When the model was stored';
