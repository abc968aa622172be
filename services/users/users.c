/*
 * services/users/users.c - accounts: register, log in, who am I.
 *
 *   POST /auth/register  stores "user:<username>" with SET NX: a taken name
 *                        answers 409 and is never overwritten
 *   POST /auth/login     checks the password and signs a JWT (kit/jwt.h)
 *   GET  /users/me       the caller's record, by req->user.subject
 *   PATCH /users/me      sets the caller's display_name ("user-profile:
 *                        <username>" {display_name, updated_at})
 *
 * A record is JSON {username, tier, password, created_at}; password is
 * password.c's PBKDF2 string. Every account registers as "free"; premium
 * is an operator's decision, never the registering client's: the
 * operator runs `users grant-premium NAME` (users_command(), the same
 * binary as a command instead of a server), which writes the hash
 * "user-tier:<username>" {tier, changed_at} beside the record. Login and
 * /users/me read it, and it wins over the record's own tier (which stays
 * what registration wrote), so `users revoke-premium NAME` can also take
 * premium back from an account registered when the tier was still given
 * by name (PREMIUM_USERS, no longer read). A token carries the tier it
 * was issued with: a change applies from the next login on. Login answers an unknown name and a wrong
 * password with the same 401 after the same PBKDF2 work (a dummy hash for
 * unknown names), so neither the answer nor its timing reveals who exists.
 * users_config is written by users_mount() before the server starts and
 * only read after, so worker threads share it without a lock.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "kit/kit.h"
#include "kit/text.h"
#include "users/password.h"
#include "users/users.h"

#define USERS_DISPLAY_NAME_MAX 64
#define USERS_PASSWORD_MIN 8
#define USERS_PASSWORD_MAX 128
/* PBKDF2 iterations below this need ALLOW_INSECURE_DEV_SECRET=true. */
#define USERS_ITERATIONS_FLOOR 100000

struct users_config {
	struct kit_jwt_config jwt;      /* JWT_*: key, algorithm, ttl of tokens  */
	unsigned iterations;            /* PASSWORD_PBKDF2_ITERATIONS, 600000    */
	/* A hash of a password nobody has, verified when the username is
	 * unknown so that a miss costs as much as a wrong password. */
	char dummy_hash[PASSWORD_ENCODED_MAX];
};

static struct users_config users_config;

/* users_logins_total{result="success"|"failure"}. */
static struct kit_metric *users_logins_total;

static bool users_username_is_valid(const char *username)
{
	/* The one rule (kit/jwt.h): a name this accepts is one a token can
	 * carry and a gateway can pass on. */
	return kit_username_is_valid(username, strnlen(username, KIT_USERNAME_MAX + 1));
}

/* PASSWORD_PBKDF2_ITERATIONS, with its floor. Returns 0, or -1 after
 * kit_app_fail(). */
static int users_load_iterations(struct kit_app *app)
{
	long iterations;
	bool insecure_allowed;

	if (kit_env_long("PASSWORD_PBKDF2_ITERATIONS",
			 PASSWORD_DEFAULT_ITERATIONS, PASSWORD_MIN_ITERATIONS,
			 PASSWORD_MAX_ITERATIONS,
			 &iterations) != 0 ||
	    kit_env_bool("ALLOW_INSECURE_DEV_SECRET", false,
			 &insecure_allowed) != 0) {
		kit_app_fail(app, "users: bad password hashing setting (see above)");
		return -1;
	}
	if (iterations < USERS_ITERATIONS_FLOOR) {
		if (!insecure_allowed) {
			kit_app_fail(app, "PASSWORD_PBKDF2_ITERATIONS: %ld is below the minimum of %d (ALLOW_INSECURE_DEV_SECRET=true allows it, for tests only)",
				     iterations, USERS_ITERATIONS_FLOOR);
			return -1;
		}
		fprintf(stderr, "users: WARNING: PASSWORD_PBKDF2_ITERATIONS=%ld is below %d; passwords are cheap to guess (ALLOW_INSECURE_DEV_SECRET=true, development only)\n",
			iterations, USERS_ITERATIONS_FLOOR);
	}
	users_config.iterations = (unsigned)iterations;
	return 0;
}

/* "user:<username>" into key. Returns 0, or -1 when it does not fit. */
static int users_key(char *key, size_t key_size, const char *username)
{
	int written = snprintf(key, key_size, "user:%s", username);

	if (written < 0 || (size_t)written >= key_size)
		return -1;
	return 0;
}

/* A user's stored record. json owns the strings. */
struct users_record {
	cJSON *json;
	const char *username;
	const char *tier;
	const char *password;
	const char *created_at;
	struct kit_store_hash grant;  /* "user-tier:<username>", maybe empty */
};

static void users_record_free(struct users_record *record)
{
	cJSON_Delete(record->json);
	record->json = NULL;
	kit_store_hash_free(&record->grant);
}

static const char *users_record_string(const cJSON *json, const char *name)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, name);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* "user-tier:<username>": the operator's grant (users_command). Returns 0,
 * or -1 when it does not fit. */
static int users_tier_key(char *key, size_t key_size, const char *username)
{
	int written = snprintf(key, key_size, "user-tier:%s", username);

	if (written < 0 || (size_t)written >= key_size)
		return -1;
	return 0;
}

/* "user-profile:<username>": what the user may change (PATCH /users/me).
 * Returns 0, or -1 when it does not fit. */
static int users_profile_key(char *key, size_t key_size, const char *username)
{
	int written = snprintf(key, key_size, "user-profile:%s", username);

	if (written < 0 || (size_t)written >= key_size)
		return -1;
	return 0;
}

/* Reads "user:<username>" (username already valid) and the operator's
 * tier for it, which wins over the record's. Returns KIT_NEXT with
 * *found saying whether the user exists and, when it does, *record filled
 * (free with users_record_free()); or answers 503 (store) / 500 (a record
 * that is not what register wrote, or a tier the kit does not know) and
 * returns that status. */
static int users_record_load(struct kit_request *req, const char *username,
			     struct users_record *record, bool *found)
{
	struct kit_store *store = kit_request_store(req);
	char key[64];
	char *text = NULL;
	enum kit_store_result result;

	memset(record, 0, sizeof(*record));
	*found = false;
	if (users_key(key, sizeof(key), username) != 0)
		return KIT_NEXT; /* too long to be anyone's name */

	result = kit_store_get(store, key, &text, NULL);
	if (result == KIT_STORE_NOT_FOUND)
		return KIT_NEXT;
	if (result != KIT_STORE_OK)
		return kit_problem_store(req, store);

	record->json = cJSON_Parse(text);
	free(text);
	record->username = users_record_string(record->json, "username");
	record->tier = users_record_string(record->json, "tier");
	record->password = users_record_string(record->json, "password");
	record->created_at = users_record_string(record->json, "created_at");
	if (record->username == NULL || record->tier == NULL ||
	    record->password == NULL || record->created_at == NULL ||
	    !kit_tier_is_known(record->tier)) {
		fprintf(stderr, "users: request %s: record %s is damaged\n",
			req->request_id, key);
		users_record_free(record);
		return kit_problem(req, 500, "user record is damaged");
	}

	/* The operator's grant, when there is one. */
	if (users_tier_key(key, sizeof(key), username) != 0) {
		users_record_free(record);
		return kit_problem(req, 500, "could not build the tier key");
	}
	result = kit_store_hash_get_all(store, key, &record->grant);
	if (result == KIT_STORE_ERROR) {
		users_record_free(record);
		return kit_problem_store(req, store);
	}
	if (result == KIT_STORE_OK) {
		const char *granted = kit_store_hash_value(&record->grant, "tier");

		if (granted == NULL || !kit_tier_is_known(granted)) {
			fprintf(stderr, "users: request %s: %s is damaged\n",
				req->request_id, key);
			users_record_free(record);
			return kit_problem(req, 500, "user record is damaged");
		}
		record->tier = granted;
	}
	*found = true;
	return KIT_NEXT;
}

/* POST /auth/register {"username","password"} -> 201
 * {"username","tier","created_at"}; 409 when the name is taken. */
static int users_register(struct kit_request *req)
{
	struct kit_store *store = kit_request_store(req);
	cJSON *body;
	const char *username;
	const char *password;
	size_t password_len;
	const char *tier;
	char encoded[PASSWORD_ENCODED_MAX];
	char created_at[32];
	char key[64];
	cJSON *record = NULL;
	char *record_text = NULL;
	cJSON *reply = NULL;
	enum kit_store_result result;
	int status;

	/* 1. The body: two strings that follow docs/api.md's rules. */
	status = kit_request_json(req, &body);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "username", true, &username);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "password", true, &password);
	if (status != KIT_NEXT)
		return status;
	if (!users_username_is_valid(username))
		return kit_problem(req, 400, "username must be 3-32 characters of a-z 0-9 _ . - starting with a letter or digit");
	password_len = strnlen(password, USERS_PASSWORD_MAX + 1);
	if (password_len < USERS_PASSWORD_MIN ||
	    password_len > USERS_PASSWORD_MAX)
		return kit_problem(req, 400, "password must be 8-128 bytes");

	/* 2. The record: every account starts free (premium is an
	 *    operator's grant, users_command), the password hashed. */
	tier = "free";
	if (password_hash(password, users_config.iterations, encoded,
			  sizeof(encoded)) != 0) {
		fprintf(stderr, "users: request %s: password hashing failed\n",
			req->request_id);
		return kit_problem(req, 500, "could not hash the password");
	}
	if (kit_utc_timestamp(time(NULL), created_at, sizeof(created_at)) != 0 ||
	    users_key(key, sizeof(key), username) != 0) {
		status = kit_problem(req, 500, "could not build the record");
		goto out;
	}
	record = cJSON_CreateObject();
	if (cJSON_AddStringToObject(record, "username", username) == NULL ||
	    cJSON_AddStringToObject(record, "tier", tier) == NULL ||
	    cJSON_AddStringToObject(record, "password", encoded) == NULL ||
	    cJSON_AddStringToObject(record, "created_at", created_at) == NULL) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	record_text = cJSON_PrintUnformatted(record);
	if (record_text == NULL) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}

	/* 3. Store it only if the name is free: never overwrite an account. */
	result = kit_store_set_nx(store, key, record_text, strlen(record_text));
	if (result == KIT_STORE_EXISTS) {
		status = kit_problem(req, 409, "username is taken");
		goto out;
	}
	if (result != KIT_STORE_OK) {
		status = kit_problem_store(req, store);
		goto out;
	}

	/* 4. Answer without the hash. */
	reply = cJSON_CreateObject();
	if (cJSON_AddStringToObject(reply, "username", username) == NULL ||
	    cJSON_AddStringToObject(reply, "tier", tier) == NULL ||
	    cJSON_AddStringToObject(reply, "created_at", created_at) == NULL) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	status = kit_respond_json(req, 201, reply);
out:
	cJSON_Delete(reply);
	free(record_text);
	cJSON_Delete(record);
	return status;
}

/* POST /auth/login {"username","password"} -> 200 {"token","token_type",
 * "expires_in","username","tier"}; 401 for a wrong name or password. */
static int users_login(struct kit_request *req)
{
	cJSON *body;
	const char *username;
	const char *password;
	struct users_record record = { 0 };
	bool found = false;
	bool password_ok;
	char *token = NULL;
	cJSON *reply = NULL;
	int status;

	/* 1. The body. */
	status = kit_request_json(req, &body);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "username", true, &username);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "password", true, &password);
	if (status != KIT_NEXT)
		return status;

	/* 2. The record. A name register would refuse cannot exist, so it
	 *    never reaches the store and is treated as unknown. */
	if (users_username_is_valid(username)) {
		status = users_record_load(req, username, &record, &found);
		if (status != KIT_NEXT)
			return status;
	}

	/* 3. The password. An unknown name costs the same PBKDF2 work as a
	 *    known one, and gets the same answer as a wrong password. */
	if (found) {
		password_ok = password_verify(password, record.password);
	} else {
		(void)password_verify(password, users_config.dummy_hash);
		password_ok = false;
	}
	if (!password_ok) {
		kit_metric_add(users_logins_total,
			       (const char *const[]){ "failure" }, 1);
		/* A 401 names its scheme (RFC 9110); no error code, since the
		 * client sent no token (RFC 6750 section 3.1). */
		kit_response_header(req, "WWW-Authenticate", "Bearer realm=\"api\"");
		status = kit_problem(req, 401, "wrong username or password");
		goto out;
	}

	/* 4. The token, with the tier the account was registered with. */
	token = kit_jwt_issue(&users_config.jwt, record.username, record.tier,
			      time(NULL));
	if (token == NULL) {
		fprintf(stderr, "users: request %s: signing a token failed\n",
			req->request_id);
		status = kit_problem(req, 500, "could not issue a token");
		goto out;
	}
	reply = cJSON_CreateObject();
	if (cJSON_AddStringToObject(reply, "token", token) == NULL ||
	    cJSON_AddStringToObject(reply, "token_type", "Bearer") == NULL ||
	    cJSON_AddNumberToObject(reply, "expires_in",
				    (double)users_config.jwt.ttl_seconds) == NULL ||
	    cJSON_AddStringToObject(reply, "username", record.username) == NULL ||
	    cJSON_AddStringToObject(reply, "tier", record.tier) == NULL) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	kit_metric_add(users_logins_total, (const char *const[]){ "success" },
		       1);
	status = kit_respond_json(req, 200, reply);
out:
	cJSON_Delete(reply);
	free(token);
	users_record_free(&record);
	return status;
}

/* GET /users/me -> 200 {"username","display_name","tier","created_at"} of
 * the caller. */
static int users_me(struct kit_request *req)
{
	struct users_record record = { 0 };
	struct kit_store_hash profile = { 0 };
	const char *display_name;
	enum kit_store_result result;
	bool found = false;
	cJSON *reply = NULL;
	char key[64];
	int status;

	/* The subject comes from a verified token or the gateway's identity
	 * header; it is still checked before it becomes a store key. */
	if (users_username_is_valid(req->user.subject)) {
		status = users_record_load(req, req->user.subject, &record,
					   &found);
		if (status != KIT_NEXT)
			return status;
	}
	if (!found)
		return kit_problem(req, 404, "user no longer exists");

	/* The profile, when the user has set one: display_name defaults to
	 * the username. */
	if (users_profile_key(key, sizeof(key), record.username) != 0) {
		status = kit_problem(req, 500, "could not build the profile key");
		goto out;
	}
	result = kit_store_hash_get_all(kit_request_store(req), key, &profile);
	if (result == KIT_STORE_ERROR) {
		status = kit_problem_store(req, kit_request_store(req));
		goto out;
	}
	display_name = kit_store_hash_value(&profile, "display_name");
	reply = cJSON_CreateObject();
	if (cJSON_AddStringToObject(reply, "username", record.username) == NULL ||
	    cJSON_AddStringToObject(reply, "display_name",
				    display_name != NULL ? display_name : record.username) == NULL ||
	    cJSON_AddStringToObject(reply, "tier", record.tier) == NULL ||
	    cJSON_AddStringToObject(reply, "created_at", record.created_at) == NULL) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	/* A gateway may keep this answer for this user (and only for them)
	 * for 30 s: a PATCH through it drops the copy at once, a tier grant
	 * shows within 30 s (kit/cache.h). */
	kit_response_header(req, "Cache-Control", "private, max-age=30");
	status = kit_respond_json(req, 200, reply);
out:
	cJSON_Delete(reply);
	kit_store_hash_free(&profile);
	users_record_free(&record);
	return status;
}

/* Whether name is a display name: 1-64 bytes, no control characters
 * (it is shown in pages and logs; UTF-8 beyond that is the client's). */
static bool users_display_name_is_valid(const char *name)
{
	return kit_text_is_displayable(name, USERS_DISPLAY_NAME_MAX);
}

static int users_update_me(struct kit_request *req)
{
	struct users_record record = { 0 };
	struct kit_store *store = kit_request_store(req);
	const char *display_name;
	char key[64], updated_at[32];
	bool found = false;
	cJSON *body;
	int status;

	status = kit_request_json(req, &body);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "display_name", true, &display_name);
	if (status != KIT_NEXT)
		return status;
	if (!users_display_name_is_valid(display_name))
		return kit_problem(req, 400, "display_name must be 1-64 bytes without control characters");
	if (users_username_is_valid(req->user.subject)) {
		status = users_record_load(req, req->user.subject, &record, &found);
		if (status != KIT_NEXT)
			return status;
	}
	if (!found)
		return kit_problem(req, 404, "user no longer exists");
	users_record_free(&record);

	if (kit_utc_timestamp(time(NULL), updated_at, sizeof(updated_at)) != 0 ||
	    users_profile_key(key, sizeof(key), req->user.subject) != 0)
		return kit_problem(req, 500, "could not build the profile key");
	const struct kit_store_field_op ops[] = {
		{ .field = "display_name", .value = display_name },
		{ .field = "updated_at", .value = updated_at },
	};
	if (kit_store_hash_update(store, key, ops, 2) != KIT_STORE_OK)
		return kit_problem_store(req, store);
	return users_me(req);
}

void users_mount(struct kit_app *app)
{
	/* 1. Configuration: signing key, hashing cost. */
	if (kit_jwt_config_from_env(&users_config.jwt) != 0) {
		kit_app_fail(app, "users: bad JWT setting (see above)");
		return;
	}
	if (users_load_iterations(app) != 0)
		return;
	/* PREMIUM_USERS once gave premium to whoever registered a listed name
	 * first. Ignoring it quietly would leave an operator believing those
	 * accounts are premium; refusing it says what replaced it. */
	if (kit_env_string("PREMIUM_USERS", NULL) != NULL) {
		kit_app_fail(app, "PREMIUM_USERS: no longer read: premium is granted to an existing account by an operator, `users grant-premium NAME` (docs/configuration.md)");
		return;
	}
	kit_app_use_store(app);

	/* 2. The dummy hash, at the configured cost so that it takes as long
	 *    to verify as a real one. */
	if (password_hash("users: no account has this password",
			  users_config.iterations, users_config.dummy_hash,
			  sizeof(users_config.dummy_hash)) != 0) {
		kit_app_fail(app, "users: could not compute the dummy password hash (OpenSSL)");
		return;
	}

	/* 3. Metrics and routes. */
	users_logins_total = kit_metric_register(
		KIT_COUNTER, "users_logins_total",
		"Login attempts by result (success or failure).",
		(const char *const[]){ "result", NULL }, NULL, 0);
	if (users_logins_total == NULL) {
		kit_app_fail(app, "users: could not register users_logins_total");
		return;
	}
	/* Both series exist from the start, so /metrics shows 0 rather than
	 * nothing and rate() has a first sample. */
	kit_metric_add(users_logins_total, (const char *const[]){ "success" }, 0);
	kit_metric_add(users_logins_total, (const char *const[]){ "failure" }, 0);
	kit_route(app, "POST", "/auth/register", users_register, KIT_PUBLIC);
	kit_route(app, "POST", "/auth/login", users_login, KIT_PUBLIC);
	kit_route(app, "GET", "/users/me", users_me, KIT_AUTHENTICATED);
	kit_route(app, "PATCH", "/users/me", users_update_me, KIT_AUTHENTICATED);
}

/* ---- the operator's commands ---- */

/* Sets the tier of an existing account: "user-tier:<name>" {tier,
 * changed_at}, atomically (one MULTI/EXEC). Returns the exit code. */
static int users_set_tier(const char *username, const char *tier)
{
	struct kit_store_config config;
	struct kit_store *store = NULL;
	char key[64], changed_at[32];
	char *record = NULL;
	enum kit_store_result result;
	int status = 1;

	if (!kit_username_is_valid(username, strnlen(username, KIT_USERNAME_MAX + 1))) {
		fprintf(stderr, "users: \"%s\" is not a username (3-32 of a-z 0-9 _ . -)\n", username);
		return 2;
	}
	if (kit_store_config_from_env(&config) != 0)
		return 2;
	/* STORE=memory lives inside each process: a grant written here would
	 * vanish with this command and never reach the service. */
	if (config.kind != KIT_STORE_REDIS) {
		fprintf(stderr, "users: STORE=memory: there is no shared store to write the tier to\n");
		return 2;
	}
	store = kit_store_open(&config);
	if (store == NULL) {
		fprintf(stderr, "users: out of memory\n");
		return 1;
	}
	/* Only an account that exists: a grant waiting for a name would give
	 * premium to whoever registers it first, the very thing this replaces. */
	if (users_key(key, sizeof(key), username) != 0)
		goto out;
	result = kit_store_get(store, key, &record, NULL);
	if (result == KIT_STORE_NOT_FOUND) {
		fprintf(stderr, "users: no account named \"%s\"\n", username);
		goto out;
	}
	if (result != KIT_STORE_OK) {
		fprintf(stderr, "users: the store: %s\n", kit_store_error(store));
		goto out;
	}
	if (users_tier_key(key, sizeof(key), username) != 0 ||
	    kit_utc_timestamp(time(NULL), changed_at, sizeof(changed_at)) != 0)
		goto out;
	const struct kit_store_field_op ops[] = {
		{ .field = "tier", .value = tier },
		{ .field = "changed_at", .value = changed_at },
	};
	if (kit_store_hash_update(store, key, ops, 2) != KIT_STORE_OK) {
		fprintf(stderr, "users: the store: %s\n", kit_store_error(store));
		goto out;
	}
	printf("%s: tier %s (tokens carry it from the next login on)\n", username, tier);
	status = 0;
out:
	free(record);
	kit_store_close(store);
	return status;
}

int users_command(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[0], "grant-premium") == 0)
		return users_set_tier(argv[1], "premium");
	if (argc == 2 && strcmp(argv[0], "revoke-premium") == 0)
		return users_set_tier(argv[1], "free");
	fprintf(stderr, "usage: users                       serve (PORT, REDIS_URL, JWT_SECRET, ...)\n"
			"       users grant-premium NAME    give an existing account the premium tier\n"
			"       users revoke-premium NAME   put it back on free\n"
			"The commands write to the store REDIS_URL names.\n");
	return 2;
}
