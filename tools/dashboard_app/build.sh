#!/bin/sh
# Build the review page's front end: install MapLibre GL from the npm registry at the version
# package-lock.json pins (npm ci) and vendor its distribution into vendor/, which the dashboard
# serves itself: the page loads nothing from the network at run time.  vendor/ and
# node_modules/ are build outputs (git-ignored).
set -eu
cd "$(dirname "$0")"
if [ ! -f node_modules/maplibre-gl/dist/maplibre-gl.js ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	npm ci --no-audit --no-fund --loglevel=error
fi
mkdir -p vendor
cp node_modules/maplibre-gl/dist/maplibre-gl.js node_modules/maplibre-gl/dist/maplibre-gl.css vendor/
cp node_modules/maplibre-gl/LICENSE.txt vendor/maplibre-gl.LICENSE.txt
echo "dashboard: vendored maplibre-gl $(node -p 'require("./node_modules/maplibre-gl/package.json").version') into $(pwd)/vendor"
