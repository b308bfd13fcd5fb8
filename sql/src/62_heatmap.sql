-- ============================================================================
-- heatmap rasters: daily_heatmap, yearly_heatmap
-- ============================================================================

-- ---- heatmaps -----------------------------------------------------------------

CREATE FUNCTION rai4eo.change_heatmap(aoi geometry, first_day date, last_day date, model text, threshold float8,
	sensor text, tolerance integer, srid integer, year integer DEFAULT NULL)
RETURNS raster
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	cell float8;	-- one pixel per patch: the patches' width (600 m for RapidAI4EO, own grids their tile size)
	nodata CONSTANT float8 := -9999;
	a record;
	srids integer[];
	counts bigint[];
	ulx float8;
	uly float8;
	lrx float8;
	lry float8;
	w bigint;
	h bigint;
	cols integer[];
	rows_ integer[];
	rates float8[];
	means float8[];
	ns float8[];
	scores float8[];
	changes float8[];
	onsets float8[];
	b1 float8[];
	b2 float8[];
	b3 float8[];
	b4 float8[];
	b5 float8[];
	b6 float8[];
	d1 bytea;
	d2 bytea;
	d3 bytea;
	d4 bytea;
	d5 bytea;
	d6 bytea;
	band bytea;
	nbands integer := CASE WHEN year IS NULL THEN 3 ELSE 6 END;
BEGIN
	SELECT * INTO a FROM rai4eo.change_args(aoi, model, threshold, sensor, tolerance);
	IF first_day IS NULL OR last_day IS NULL THEN
		RETURN NULL;
	END IF;

	-- The grid first, from the footprints alone, so that a bad AOI fails before the work.
	SELECT array_agg(t.s ORDER BY t.s), array_agg(t.n ORDER BY t.s), min(t.x0), max(t.y1), max(t.x1), min(t.y0), min(t.cw)
	  INTO srids, counts, ulx, uly, lrx, lry, cell
	FROM (SELECT @postgis@.ST_SRID(p.geom) AS s, count(*) AS n,
				 min(@postgis@.ST_XMax(@postgis@.Box3D(p.geom)) - @postgis@.ST_XMin(@postgis@.Box3D(p.geom))) AS cw,
				 min(@postgis@.ST_XMin(@postgis@.Box3D(p.geom))) AS x0, max(@postgis@.ST_YMax(@postgis@.Box3D(p.geom))) AS y1,
				 max(@postgis@.ST_XMin(@postgis@.Box3D(p.geom))) AS x1, min(@postgis@.ST_YMax(@postgis@.Box3D(p.geom))) AS y0
		  FROM rai4eo.aoi_patches(aoi, srid) p GROUP BY 1) t;
	IF srids IS NULL THEN
		RETURN NULL;
	END IF;
	IF cardinality(srids) > 1 THEN
		RAISE EXCEPTION 'the AOI covers patches in % coordinate reference systems', cardinality(srids)
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Patches per SRID: %s.',
								  (SELECT string_agg(format('%s: %s', u.s, u.n), ', ') FROM unnest(srids, counts) u(s, n))),
				  HINT = format('A raster has one CRS: pass srid => %s (or another of them) to map the patches of one CRS, or clip the AOI to one UTM zone.', srids[1]);
	END IF;
	IF NOT cell > 0 THEN
		RAISE EXCEPTION 'the patches in the AOI have no width' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- Pixel (1, 1) is the upper-left patch; every patch lands on the cell of its upper-left corner.
	w := round((lrx - ulx) / cell) + 1;
	h := round((uly - lry) / cell) + 1;
	-- 2^24 cells (three 128 MiB arrays on the way) covers a UTM zone of scattered samples.
	IF w > 65535 OR h > 65535 OR w * h > 16777216 THEN
		RAISE EXCEPTION 'a heatmap of % x % pixels is too large', w, h
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Use a smaller AOI, or yearly_change() rows for scattered patches.';
	END IF;

	-- Patches sharing a cell (overlapping footprints) pool their compared days; of
	-- their decisions the cell keeps the highest score, changed if any, the earliest onset.
	IF year IS NULL THEN
		SELECT array_agg(c.cx), array_agg(c.cy), array_agg(c.k / c.n), array_agg(c.sd / c.n), array_agg(c.n)
		  INTO cols, rows_, rates, means, ns
		FROM (SELECT round((@postgis@.ST_XMin(@postgis@.Box3D(s.geom)) - ulx) / cell)::integer + 1 AS cx,
					 round((uly - @postgis@.ST_YMax(@postgis@.Box3D(s.geom))) / cell)::integer + 1 AS cy,
					 sum(s.days_compared)::float8 AS n, sum(s.days_changed)::float8 AS k,
					 sum(s.mean_distance * s.days_compared) AS sd
			  FROM rai4eo.patch_change_stats(aoi, srid, first_day, last_day, a.model_name, a.threshold_value,
											 sensor, tolerance) s
			  WHERE s.days_compared > 0
			  GROUP BY 1, 2) c;
	ELSE
		SELECT array_agg(c.cx), array_agg(c.cy), array_agg(c.k / c.n), array_agg(c.sd / c.n), array_agg(c.n),
			   array_agg(c.score), array_agg(c.changed), array_agg(c.onset)
		  INTO cols, rows_, rates, means, ns, scores, changes, onsets
		FROM (SELECT round((@postgis@.ST_XMin(@postgis@.Box3D(s.geom)) - ulx) / cell)::integer + 1 AS cx,
					 round((uly - @postgis@.ST_YMax(@postgis@.Box3D(s.geom))) / cell)::integer + 1 AS cy,
					 sum(s.days_compared)::float8 AS n, sum(s.days_changed)::float8 AS k,
					 sum(s.mean_distance * s.days_compared) AS sd,
					 max(s.score) AS score, max(s.changed::integer)::float8 AS changed,
					 min(extract(doy FROM s.onset))::float8 AS onset
			  FROM @extschema@.yearly_change(aoi, year, a.model_name, threshold, sensor, tolerance, srid) s
			  WHERE s.days_compared > 0
			  GROUP BY 1, 2) c;
	END IF;

	b1 := array_fill(NULL::float8, ARRAY[h::integer, w::integer]);
	b2 := b1;
	b3 := b1;
	b4 := b1;
	b5 := b1;
	b6 := b1;
	FOR i IN 1 .. coalesce(cardinality(cols), 0) LOOP
		b1[rows_[i]][cols[i]] := rates[i];
		b2[rows_[i]][cols[i]] := means[i];
		b3[rows_[i]][cols[i]] := ns[i];
		IF year IS NOT NULL THEN
			b4[rows_[i]][cols[i]] := scores[i];
			b5[rows_[i]][cols[i]] := changes[i];
			b6[rows_[i]][cols[i]] := onsets[i];
		END IF;
	END LOOP;

	-- Written as big-endian WKB (postgis-raster-format.md section 2) and parsed once:
	-- ST_SetValues costs about 10 us a pixel, this about 0.5 us.  A function scan
	-- returns unnest's rows in array (row-major) order.
	SELECT string_agg(float4send(coalesce(u.v1, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v2, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v3, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v4, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v5, nodata)::real), ''::bytea),
		   string_agg(float4send(coalesce(u.v6, nodata)::real), ''::bytea)
	  INTO d1, d2, d3, d4, d5, d6
	FROM unnest(b1, b2, b3, b4, b5, b6) u(v1, v2, v3, v4, v5, v6);
	band := '\x4a'::bytea || float4send(nodata::real);	-- 32BF (10) with a nodata value (0x40)
	RETURN @postgis@.ST_RastFromWKB('\x00'::bytea || int2send(0::smallint) || int2send(nbands::smallint)
		|| float8send(cell) || float8send(-cell) || float8send(ulx) || float8send(uly)
		|| float8send(0) || float8send(0) || int4send(srids[1])
		|| substring(int4send(w::integer) FROM 3) || substring(int4send(h::integer) FROM 3)
		|| band || d1 || band || d2 || band || d3
		|| CASE WHEN year IS NULL THEN ''::bytea ELSE band || d4 || band || d5 || band || d6 END);
END
$$;

COMMENT ON FUNCTION rai4eo.change_heatmap(geometry, date, date, text, float8, text, integer, integer, integer) IS
'The raster under daily_heatmap and yearly_heatmap: change over first_day .. last_day, one pixel per patch cell (the patches'' width: 600 m for RapidAI4EO patches); with year, three more bands from yearly_change''s decision (score, changed, onset day of year)';

CREATE FUNCTION daily_heatmap(aoi geometry, day date, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS raster
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT rai4eo.change_heatmap($1, $2, $2, $3, $4, $5, $6, $7)
$$;

COMMENT ON FUNCTION daily_heatmap(geometry, date, text, float8, text, integer, integer) IS
'Daily change map of an AOI as a raster: one pixel per patch (the patches'' width: 600 m for RapidAI4EO patches), in the patches'' CRS, aligned to their grid (upper-left = the upper-left patch corner); three 32BF bands, nodata -9999 where there is no patch or no pair: 1 changed (1) or not (0), 2 the distance, 3 the number of comparisons (1). Arguments as daily_change. No patch in the AOI: NULL; patches in several CRSs: ERROR 22023 (pass srid).';

CREATE FUNCTION yearly_heatmap(aoi geometry, year integer, model text DEFAULT NULL, threshold float8 DEFAULT NULL,
	sensor text DEFAULT 'PF-SR', tolerance integer DEFAULT 2, srid integer DEFAULT NULL)
RETURNS raster
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT rai4eo.change_heatmap($1, make_date($2, 1, 1), make_date($2, 12, 31), $3, $4, $5, $6, $7, $2)
$$;

COMMENT ON FUNCTION yearly_heatmap(geometry, integer, text, float8, text, integer, integer) IS
'Yearly change heatmap of an AOI: one pixel per patch (the patches'' width: 600 m for RapidAI4EO patches), in the patches'' CRS, aligned to their grid; six 32BF bands, nodata -9999 where there is no patch or no compared day: 1 change_rate (share of compared days that changed), 2 mean distance, 3 days compared, and the model''s decision as in yearly_change: 4 score, 5 changed (1) or not (0), 6 onset as day of the year (nodata where not changed). Arguments as yearly_change. No patch in the AOI: NULL; patches in several CRSs: ERROR 22023 (pass srid).';
