/*
 * raster.h — read a PostGIS raster argument into float planes (glue side).
 */
#ifndef RAI4EO_PG_RASTER_H
#define RAI4EO_PG_RASTER_H

#include "postgres.h"

#include "fmgr.h"
#include "rai4eo/raster.h"

/* Decoded pixels of some bands of one raster, palloc'd in the caller's context. */
typedef struct RasterPixels
{
	int			nbands;
	int			width;
	int			height;
	float	   *planes;			/* nbands * height * width, band-major, row 0 on top */
	uint8	   *mask;			/* same shape; 1 where the pixel is nodata */
} RasterPixels;

/*
 * What a caller keeps between rasters of one call site: the raster type and
 * PostGIS's ST_AsBinary, looked up once.  purpose, when set, names what needs
 * the bands in the "too few bands" error (e.g. "model \"dino\"").
 */
typedef struct RasterReader
{
	Oid			raster_type;
	MemoryContext mcxt;			/* lives as long as the reader */
	bool		have_asbinary;
	FmgrInfo	asbinary;		/* ST_AsBinary(raster, outasin boolean) */
	const char *purpose;
	/* Called with the raster's size before anything is decoded; may raise */
	void		(*check_size) (void *arg, int nbands, int width, int height);
	void	   *check_arg;
} RasterReader;

/* Set up a reader for values of raster_type (InvalidOid: look up "raster"). */
void		RasterReaderInit(RasterReader *rd, Oid raster_type, MemoryContext mcxt);

/*
 * A raster datum parsed, its header checked, ready to decode: raster points
 * into the detoasted datum, or into PostGIS's WKB when a requested band is
 * out-db.  Release with RasterCloseSource.
 */
typedef struct RasterSource
{
	const R4Raster *raster;		/* what to decode from */
	int			nbands;			/* bands requested (all when bands is NULL) */
	R4Raster	serialized;		/* the datum's own parse */
	R4Raster	wkb;			/* ST_AsBinary(rast, true)'s, for out-db bands */
	struct varlena *datum;
	bool		detoasted;		/* datum is a copy to free */
} RasterSource;

/*
 * Parse a raster datum (maybe toasted) and check it for the given bands
 * (1-based; NULL = all): band numbers, the reader's check_size, out-db
 * access.  Nothing is decoded yet.
 */
void		RasterOpenDatum(RasterReader *rd, Datum rast, const int *bands, int nbands,
							RasterSource *out);

/* Free what RasterOpenDatum allocated. */
void		RasterCloseSource(RasterSource *src);

/*
 * Decode the given bands (1-based; NULL = all) of a raster datum (maybe
 * toasted) into out, allocated in CurrentMemoryContext.
 */
void		RasterReadDatum(RasterReader *rd, Datum rast, const int *bands, int nbands,
							RasterPixels *out);

/*
 * Decode the given bands (1-based; NULL = all) of a raster datum.  In-db
 * bands are read directly; when a requested band is out-db the pixels come
 * from PostGIS (ST_AsBinary(rast, true)), so PostGIS's settings decide
 * whether the file may be read.  flinfo caches the PostGIS lookups
 * (fn_extra) and gives the raster type (argument rast_argno).
 */
void		RasterReadPixels(FunctionCallInfo fcinfo, int rast_argno, const int *bands,
							 int nbands, RasterPixels *out);

#endif							/* RAI4EO_PG_RASTER_H */
