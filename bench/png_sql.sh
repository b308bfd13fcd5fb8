#!/usr/bin/env bash
# bench/png_sql.sh — heatmap_png (C on zlib) against the PL/pgSQL encoder it replaced
# (0.1.0's, kept here only, created in a scratch schema), timed in one backend, alternating,
# median of RUNS, on a 1000 x 1000 float band (the issue's case) and on 100 x 100 at scale 10.
# It also decodes both PNGs (Python's zlib) and checks they hold the same palette and pixels.
# Usage: bench/png_sql.sh [RUNS]
source "$(dirname "$0")/../scripts/lib.sh"
RUNS=${1:-3}
DB=rai4eo_bench_png
r4_start_cluster
r4_create_db $DB >/dev/null 2>&1 || r4_create_db $DB
r4_psql -d $DB <<'SQL'
CREATE SCHEMA old_png;
-- 0.1.0's encoder, verbatim but for the schema: 8-bit palette, stored deflate blocks,
-- CRC-32 and Adler-32 in PL/pgSQL, pixels through ST_DumpValues.
CREATE FUNCTION old_png.crc32_table() RETURNS bigint[] LANGUAGE sql IMMUTABLE AS $$
	WITH RECURSIVE r(n, k, c) AS (
		SELECT n, 0, n::bigint FROM generate_series(0, 255) n
		UNION ALL
		SELECT n, k + 1, CASE c & 1 WHEN 1 THEN 3988292384 # (c >> 1) ELSE c >> 1 END FROM r WHERE k < 8)
	SELECT array_agg(c ORDER BY n) FROM r WHERE k = 8 $$;
CREATE FUNCTION old_png.crc32(data bytea) RETURNS bigint LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
	t CONSTANT bigint[] := old_png.crc32_table();
	c bigint := 4294967295;
BEGIN
	FOR i IN 0 .. length(data) - 1 LOOP
		c := t[((c # get_byte(data, i)) & 255) + 1] # (c >> 8);
	END LOOP;
	RETURN c # 4294967295;
END $$;
CREATE FUNCTION old_png.adler32(data bytea) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT AS $$
	SELECT ((length($1) + coalesce(sum(((length($1) - i) % 65521) * get_byte($1, i)), 0)) % 65521) * 65536
		   + (1 + coalesce(sum(get_byte($1, i)), 0)) % 65521
	FROM generate_series(0, length($1) - 1) i $$;
CREATE FUNCTION old_png.png_chunk(kind text, data bytea) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS $$
	SELECT int4send(length($2)) || convert_to($1, 'UTF8') || $2
		   || substring(int8send(old_png.crc32(convert_to($1, 'UTF8') || $2)) FROM 5) $$;
CREATE FUNCTION old_png.heatmap_png(rast raster, band integer DEFAULT 1, min_value float8 DEFAULT 0, max_value float8 DEFAULT 1,
	ramp text DEFAULT 'heat', scale integer DEFAULT 1)
RETURNS bytea LANGUAGE plpgsql STABLE AS $$
DECLARE
	stops float8[];
	w integer;
	h integer;
	palette bytea := '\x000000';
	raw bytea;
	z bytea := '\x7801';
	n integer;
	pos integer := 0;
	len integer;
	t float8;
	f float8;
	j integer;
BEGIN
	stops := CASE ramp
		WHEN 'heat' THEN '{{0,255,255,204},{0.5,253,141,60},{1,189,0,38}}'::float8[]
		WHEN 'viridis' THEN '{{0,68,1,84},{0.25,59,82,139},{0.5,33,145,140},{0.75,94,201,98},{1,253,231,37}}'::float8[]
		WHEN 'gray' THEN '{{0,0,0,0},{1,255,255,255}}'::float8[]
	END;
	w := ST_Width(rast);
	h := ST_Height(rast);
	FOR i IN 1 .. 255 LOOP
		t := (i - 1) / 254.0;
		j := 1;
		WHILE j < array_length(stops, 1) - 1 AND t > stops[j + 1][1] LOOP
			j := j + 1;
		END LOOP;
		f := (t - stops[j][1]) / (stops[j + 1][1] - stops[j][1]);
		palette := palette || decode(
			lpad(to_hex(round(stops[j][2] + f * (stops[j + 1][2] - stops[j][2]))::integer), 2, '0') ||
			lpad(to_hex(round(stops[j][3] + f * (stops[j + 1][3] - stops[j][3]))::integer), 2, '0') ||
			lpad(to_hex(round(stops[j][4] + f * (stops[j + 1][4] - stops[j][4]))::integer), 2, '0'), 'hex');
	END LOOP;
	SELECT decode(string_agg(repeat('00' || r.line, scale), '' ORDER BY r.y), 'hex') INTO raw
	FROM (SELECT (u.k - 1) / w AS y,
				 string_agg(repeat(lpad(to_hex(CASE
					 WHEN u.v IS NULL OR u.v = 'NaN' THEN 0
					 ELSE 1 + round(254 * least(greatest((u.v - min_value) / (max_value - min_value), 0), 1))::integer
				 END), 2, '0'), scale), '' ORDER BY u.k) AS line
		  FROM unnest(ST_DumpValues(rast, band, true)) WITH ORDINALITY u(v, k)
		  GROUP BY 1) r;
	n := length(raw);
	LOOP
		len := least(65535, n - pos);
		z := z || CASE WHEN pos + len >= n THEN '\x01'::bytea ELSE '\x00'::bytea END
			   || decode(lpad(to_hex(len & 255), 2, '0') || lpad(to_hex(len >> 8), 2, '0')
						 || lpad(to_hex(~len & 255), 2, '0') || lpad(to_hex((~len >> 8) & 255), 2, '0'), 'hex')
			   || substring(raw FROM pos + 1 FOR len);
		pos := pos + len;
		EXIT WHEN pos >= n;
	END LOOP;
	z := z || substring(int8send(old_png.adler32(raw)) FROM 5);
	RETURN '\x89504e470d0a1a0a'::bytea
		|| old_png.png_chunk('IHDR', int4send(w * scale) || int4send(h * scale) || '\x0803000000'::bytea)
		|| old_png.png_chunk('PLTE', palette)
		|| old_png.png_chunk('tRNS', '\x00'::bytea)
		|| old_png.png_chunk('IDAT', z)
		|| old_png.png_chunk('IEND', ''::bytea);
END $$;

-- A smooth change-rate field with nodata holes, like a yearly heatmap: 1000 x 1000 and 100 x 100.
CREATE TABLE band (name text, r raster, scale integer);
INSERT INTO band
SELECT format('%s x %s, scale %s', n, n, s),
	   ST_SetValues(ST_AddBand(ST_MakeEmptyRaster(n, n, 0, 0, 600, -600, 0, 0, 32629), '32BF'::text, 0, -1), 1, 1, 1,
		   (SELECT array_agg(rv ORDER BY y) FROM (
			   SELECT y, array_agg(CASE WHEN (x * 31 + y * 17) % 97 = 0 THEN -1
										ELSE 0.5 + 0.5 * sin(x / (n / 20.0)) * cos(y / (n / 14.0)) END ORDER BY x) rv
			   FROM generate_series(1, n) y, generate_series(1, n) x GROUP BY y) q)), s
FROM (VALUES (1000, 1), (100, 10)) v(n, s);

-- Median ms of each encoder, alternating in this one backend.
CREATE FUNCTION time_png(runs integer) RETURNS TABLE (name text, old_ms float8, new_ms float8, old_bytes integer, new_bytes integer)
LANGUAGE plpgsql AS $$
DECLARE
	b record;
	t0 timestamptz;
	o float8[];
	c float8[];
	ob integer;
	nb integer;
BEGIN
	FOR b IN SELECT * FROM band ORDER BY name LOOP
		o := '{}';
		c := '{}';
		FOR i IN 1 .. runs LOOP
			t0 := clock_timestamp();
			ob := length(old_png.heatmap_png(b.r, scale => b.scale));
			o := o || (extract(epoch FROM clock_timestamp() - t0) * 1000)::float8;
			t0 := clock_timestamp();
			nb := length(heatmap_png(b.r, scale => b.scale));
			c := c || (extract(epoch FROM clock_timestamp() - t0) * 1000)::float8;
		END LOOP;
		name := b.name;
		old_ms := (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(o) x);
		new_ms := (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(c) x);
		old_bytes := ob;
		new_bytes := nb;
		RETURN NEXT;
	END LOOP;
END $$;
SQL

# Same palette and pixels: decode both with zlib.
r4_psql -d $DB -At -c "SELECT name || '|' || translate(encode(old_png.heatmap_png(r, scale => scale), 'base64'), E'\n', '') || '|' || translate(encode(heatmap_png(r, scale => scale), 'base64'), E'\n', '') FROM band ORDER BY name" \
| "$R4_PYTHON" -c '
import base64, sys, zlib
def chunks(b):
    pos, out = 8, {}
    while pos < len(b):
        n = int.from_bytes(b[pos:pos + 4], "big"); k = b[pos + 4:pos + 8]
        out[k] = out.get(k, b"") + b[pos + 8:pos + 8 + n]; pos += 12 + n
    return out
ok = True
for line in sys.stdin:
    name, old, new = line.strip().split("|")
    a, b = chunks(base64.b64decode(old)), chunks(base64.b64decode(new))
    same = all(a[k] == b[k] for k in (b"IHDR", b"PLTE", b"tRNS")) and zlib.decompress(a[b"IDAT"]) == zlib.decompress(b[b"IDAT"])
    ok &= same
    print(f"{name}: old and new PNG decode to the same header, palette and pixels: {same}")
sys.exit(0 if ok else 1)
'

r4_psql -d $DB -At -F '|' -c "SELECT * FROM time_png($RUNS)" | while IFS='|' read -r name old new ob nb; do
	"$R4_PYTHON" - "$name" "$old" "$new" "$ob" "$nb" "$RUNS" <<'PY'
import sys
name, old, new, ob, nb, runs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
print(f"{name}: median of {runs} in one backend: PL/pgSQL {old:.0f} ms ({ob} bytes); "
      f"C heatmap_png {new:.1f} ms ({nb} bytes); PL/pgSQL / C = {old / new:.0f}x")
PY
done
