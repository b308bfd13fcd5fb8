-- The hand-written part of the upgrade from 0.1.0 to 0.2.0: what changes in the state
-- fragments (tables, the type), and the code objects whose shape changed (a routine's
-- return type, a view's columns) or that are gone; they are dropped here and the code
-- fragments appended after this part create them anew (docs/upgrades.md).  Types are
-- named plainly: the script runs with the extension's and PostGIS's schemas on its path.

-- yearly_change gains the decision columns score, changed and onset.
DROP FUNCTION @extschema@.yearly_change(geometry, integer, text, double precision, text, integer, integer);

-- rai4eo.model accepts the temporal classifiers (lstm, gru).
ALTER TABLE rai4eo.model DROP CONSTRAINT model_arch_check,
	ADD CONSTRAINT model_arch_check CHECK (arch IN ('vit', 'resnet', 'external', 'lstm', 'gru'));
