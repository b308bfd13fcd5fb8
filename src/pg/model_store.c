/*
 * model_store.c — rai4eo_load_model and rai4eo_load_model_file: validate a
 * safetensors file completely (by building the engine) and store it with its
 * resolved configuration in rai4eo.model.
 *
 * The row is written through SPI as the calling user, so the table's
 * privileges apply.  sha256 is computed here, in the statement that writes
 * the weights; the table's CHECK (sha256 = sha256(weights)) keeps rows written
 * by hand honest (a CHECK, not a trigger: Citus makes such a table a
 * reference table).  Replacing weights deletes the embeddings
 * computed with the old ones: they no longer describe the model.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "model_cache.h"
#include "model_lookup.h"
#include "model_validate.h"
#include "storage/fd.h"
#include "temporal.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#define MODEL_NAME_MAX 200

/* Reject NULL arguments that the function cannot do without */
static void
RequireArg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what)));
}

/* The name argument, checked */
static char *
GetModelName(FunctionCallInfo fcinfo)
{
	char	   *name;

	RequireArg(fcinfo, 0, "model name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (name[0] == '\0' || strlen(name) > MODEL_NAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must have 1 to %d bytes", MODEL_NAME_MAX)));
	return name;
}

/*
 * Refuse a caller who could not write the row before anything large is read,
 * validated or built: INSERT on rai4eo.model, and UPDATE too when replacing.
 */
static void
CheckStorePrivileges(bool replace)
{
	Oid			nsp = get_namespace_oid("rai4eo", false);
	Oid			rel = get_relname_relid("model", nsp);
	AclMode		need = ACL_INSERT | (replace ? ACL_UPDATE : 0);

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"rai4eo.model\" does not exist")));
	if (pg_class_aclmask(rel, GetUserId(), need, ACLMASK_ALL) != need)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table model"),
				 errdetail("Storing a model needs INSERT on rai4eo.model%s.",
						   replace ? ", and UPDATE to replace one" : "")));
}

/* Validate and store; returns the name */
static Datum
StoreModel(FunctionCallInfo fcinfo, const char *name, bytea *weights)
{
	char	   *config_in = PG_ARGISNULL(2) ? NULL
		: DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(2)));
	bool		replace = !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);
	R4ModelConfig cfg;
	int64		parameters;
	char	   *config;
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TEXTOID, BYTEAOID, INT8OID};
	Datum		values[5];
	bytea	   *old_sha = NULL;
	const char *arch;
	int			rc;

	CheckStorePrivileges(replace);
	/* Temporal classifiers (lstm, gru) are validated by their own file, src/pg/temporal.c */
	if (!TemporalModelValidate((const uint8 *) VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights),
							   config_in, &arch, &config, &parameters))
	{
		config = ModelValidate((const uint8 *) VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights),
							   config_in, &cfg, &parameters);
		arch = r4_arch_name(cfg.arch);
	}

	/*
	 * Wait for every transaction computing with this model to end, and keep
	 * new ones out until this one does (model_cache.c): no embedding of the
	 * old weights can be inserted after the DELETE below.
	 */
	ModelLock(name, true);

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(arch);
	values[2] = CStringGetTextDatum(config);
	values[3] = PointerGetDatum(weights);
	values[4] = Int64GetDatum(parameters);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* Lock the row (if any) so two loads of one name serialise */
	rc = SPI_execute_with_args("SELECT sha256 FROM rai4eo.model WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							   1, argtypes, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "model lookup failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		bool		isnull;

		if (!replace)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("model \"%s\" already exists", name),
					 errhint("Pass replace => true to replace it (its embeddings are deleted if the weights change).")));
		old_sha = DatumGetByteaPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		rc = SPI_execute_with_args("UPDATE rai4eo.model SET arch = $2, config = $3::pg_catalog.jsonb, weights = $4,"
								   " sha256 = pg_catalog.sha256($4), parameters = $5, created = pg_catalog.now()"
								   " WHERE name OPERATOR(pg_catalog.=) $1 RETURNING sha256",
								   5, argtypes, values, NULL, false, 0);
		if (rc != SPI_OK_UPDATE_RETURNING || SPI_processed != 1)
			elog(ERROR, "model update failed: %s", SPI_result_code_string(rc));
		/* This session's own call sites must not keep the old engine */
		ModelForget(name);
	}
	else
	{
		rc = SPI_execute_with_args("INSERT INTO rai4eo.model (name, arch, config, weights, sha256, parameters)"
								   " VALUES ($1, $2, $3::pg_catalog.jsonb, $4, pg_catalog.sha256($4), $5)",
								   5, argtypes, values, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "model insert failed: %s", SPI_result_code_string(rc));
	}

	if (old_sha != NULL)
	{
		bool		isnull;
		bytea	   *new_sha = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		if (isnull || VARSIZE_ANY_EXHDR(new_sha) != VARSIZE_ANY_EXHDR(old_sha) ||
			memcmp(VARDATA_ANY(new_sha), VARDATA_ANY(old_sha), VARSIZE_ANY_EXHDR(old_sha)) != 0)
		{
			rc = SPI_execute_with_args("DELETE FROM rai4eo.embedding WHERE model OPERATOR(pg_catalog.=) $1",
									   1, argtypes, values, NULL, false, 0);
			if (rc != SPI_OK_DELETE)
				elog(ERROR, "deleting old embeddings failed: %s", SPI_result_code_string(rc));
			if (SPI_processed > 0)
				ereport(NOTICE,
						(errmsg("deleted %llu embeddings computed with the old weights of model \"%s\"",
								(unsigned long long) SPI_processed, name)));
		}
	}
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

/*
 * Store a model: rai4eo_load_model(name, weights bytea, config jsonb,
 * replace boolean) returns the name.
 */
PG_FUNCTION_INFO_V1(rai4eo_load_model);
Datum
rai4eo_load_model(PG_FUNCTION_ARGS)
{
	char	   *name = GetModelName(fcinfo);

	RequireArg(fcinfo, 1, "weights");
	/* Before the (maybe huge) argument is detoasted */
	CheckStorePrivileges(!PG_ARGISNULL(3) && PG_GETARG_BOOL(3));
	return StoreModel(fcinfo, name, PG_GETARG_BYTEA_PP(1));
}

/* Read a whole server-side file into a bytea */
static bytea *
ReadServerFile(const char *path)
{
	int			fd;
	struct stat st;
	bytea	   *buf;
	size_t		done = 0;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for reading: %m", path)));
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	if (!S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a regular file", path)));
	if ((uint64) st.st_size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("file \"%s\" is too large for a model: %lld bytes", path, (long long) st.st_size),
				 errdetail("A bytea value holds at most 1 GB.")));
	buf = palloc(VARHDRSZ + st.st_size);
	while (done < (size_t) st.st_size)
	{
		ssize_t		n = read(fd, VARDATA(buf) + done, st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", path)));
		if (n == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("file \"%s\" shrank while being read", path)));
		done += n;
		CHECK_FOR_INTERRUPTS();
	}
	CloseTransientFile(fd);
	SET_VARSIZE(buf, VARHDRSZ + done);
	return buf;
}

/*
 * Store a model from a file on the database server:
 * rai4eo_load_model_file(name, path, config, replace).  Like COPY FROM a
 * file, only for superusers and members of pg_read_server_files.
 */
PG_FUNCTION_INFO_V1(rai4eo_load_model_file);
Datum
rai4eo_load_model_file(PG_FUNCTION_ARGS)
{
	char	   *name = GetModelName(fcinfo);
	char	   *path;

	if (!superuser() && !has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read model files on the server"),
				 errdetail("Only superusers and members of pg_read_server_files may call rai4eo_load_model_file()."),
				 errhint("Anyone may pass the file's contents to rai4eo_load_model(name, weights bytea), e.g. from a client library, or with psql's \\lo_import and lo_get().")));
	RequireArg(fcinfo, 1, "path");
	CheckStorePrivileges(!PG_ARGISNULL(3) && PG_GETARG_BOOL(3));
	path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	return StoreModel(fcinfo, name, ReadServerFile(path));
}
