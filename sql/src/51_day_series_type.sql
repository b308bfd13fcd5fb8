-- ============================================================================
-- the day series type (a state fragment)
-- ============================================================================
--
-- What rai4eo.day_series (52_pairing.sql) reduces one patch's pairs to, and
-- rai4eo.patch_series_of returns per patch: a type, so it runs once, at
-- install (an upgrade creates it by hand, docs/upgrades.md).

CREATE TYPE rai4eo.day_series AS (
	days_compared integer,
	days_changed integer,
	mean_distance float8,
	days date[],
	distances float8[],
	state_changes float8[],
	composite float8[]
);

COMMENT ON TYPE rai4eo.day_series IS
'One patch''s pairs in date order (rai4eo.day_series aggregate): days compared, days changed (distance > t), mean distance, dates, distances, the 0/1 series "state differs from the partner''s" (NULL without centres), the composites {annual, seasonal, zscore} (NULL unless asked)';
