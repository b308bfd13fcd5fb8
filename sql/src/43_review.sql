-- ============================================================================
-- review: the analysts' verdicts on candidate changes (a state fragment)
-- ============================================================================
--
-- People look at the candidate changes a model proposes (tools/dashboard) and
-- accept or reject them.  A verdict is about the place in a year; the model
-- is kept to say whose candidate list was reviewed.  The key leads with
-- patch_id like every corpus table, so the table distributes by patch_id.
-- The model is not a foreign key: dropping a model must not drop the labels
-- people made.

CREATE TABLE rai4eo.review (
	patch_id bigint NOT NULL REFERENCES rai4eo.patch ON DELETE CASCADE,
	year integer NOT NULL CHECK (year BETWEEN 2000 AND 2179),
	model text NOT NULL CHECK (model <> ''),
	verdict text NOT NULL CHECK (verdict IN ('accept', 'reject', 'unsure')),
	reviewer text NOT NULL DEFAULT current_user CHECK (reviewer <> ''),
	reviewed_at timestamptz NOT NULL DEFAULT now(),
	note text,
	PRIMARY KEY (patch_id, year, model, reviewer)
);

CREATE INDEX review_year_idx ON rai4eo.review (year, reviewed_at);

COMMENT ON TABLE rai4eo.review IS
'Analysts'' verdicts on candidate changes: one row per patch, year, model and reviewer (a new verdict of the same reviewer replaces the old one); rai4eo.review_truth turns them into calibration labels';
COMMENT ON COLUMN rai4eo.review.patch_id IS 'The reviewed patch';
COMMENT ON COLUMN rai4eo.review.year IS 'The year whose change was reviewed (yearly_change(aoi, year))';
COMMENT ON COLUMN rai4eo.review.model IS 'The model whose candidate was reviewed (a name of rai4eo.model when it was written)';
COMMENT ON COLUMN rai4eo.review.verdict IS 'accept: the place changed in that year; reject: it did not (a false alarm); unsure: no label';
COMMENT ON COLUMN rai4eo.review.reviewer IS 'Who gave the verdict (the database role by default)';
COMMENT ON COLUMN rai4eo.review.reviewed_at IS 'When the verdict was given';
COMMENT ON COLUMN rai4eo.review.note IS 'Free text of the reviewer';

-- Verdicts are data people made: pg_dump keeps their rows like the corpus's.
SELECT pg_catalog.pg_extension_config_dump('rai4eo.review', '');
