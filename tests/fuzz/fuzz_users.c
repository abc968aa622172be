/*
 * fuzz_users.c - libFuzzer target: the users service's JSON bodies
 * (services/users/users.c), through its real handlers. Input: a request
 * body.
 *
 * The app is the users process of Phase 2 (services/users/main.c) minus
 * what writes logs: request_id, metrics and identity_headers, then
 * users_mount(), on STORE=memory, emptied before every input. Each input
 * goes through fuzz_serve() (fake_request.c, which checks every response's
 * framing and JSON) as:
 *   1. POST /auth/register with the input as body;
 *   2. POST /auth/login with the same body;
 *   3. when 1 created the account: POST /auth/register once more, and
 *      GET /users/me as that user (X-User-Id, as the gateway sends it).
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - every answer is one the API documents for that route (201, 400, 413,
 *     415 for register; 200, 400, 401, 413, 415 for login); never a 5xx;
 *   - a created account answers with the body's username, its tier
 *     ("free": premium is an operator's grant, never registered) and no
 *     password;
 *   - registering the same name again is 409: an account is never
 *     overwritten;
 *   - login succeeds exactly when register created the account (the store
 *     was empty), and its token verifies (kit_jwt_verify, same secret)
 *     with that username as subject and that tier;
 *   - /users/me answers 200 with that username and tier.
 */
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "fake_request.h"
#include "fuzz.h"
#include "kit/app.h"
#include "kit/jwt.h"
#include "kit/store.h"
#include "users/users.h"

static struct kit_app *app;
static struct kit_jwt_config jwt;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	app = fuzz_service_app("users", 8083);
	users_mount(app);
	if (kit_jwt_config_from_env(&jwt) != 0)
		exit(1);
	return 0;
}

static int post(const char *path, const uint8_t *body, size_t size, struct fuzz_response *r)
{
	return fuzz_post_json(app, path, "", body, size, r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_response reg, login;
	cJSON *body = cJSON_ParseWithLength((const char *)data, size);
	const char *username = fuzz_json_string(body, "username");

	kit_store_memory_reset();

	/* 1. Register. */
	int r = post("/auth/register", data, size, &reg);
	FUZZ_CHECK(r == 201 || r == 400 || r == 413 || r == 415, "register answered %d: %.*s", r,
		   (int)reg.body_len, reg.body);
	char tier[16] = "";
	if (r == 201) {
		cJSON *reply = cJSON_ParseWithLength(reg.body, reg.body_len);
		FUZZ_CHECK(username != NULL && fuzz_json_string(reply, "username") != NULL &&
			   strcmp(fuzz_json_string(reply, "username"), username) == 0,
			   "registered \"%s\" for a body naming \"%s\"", fuzz_json_string(reply, "username"),
			   username);
		/* Premium is an operator's grant, never a registration's. */
		FUZZ_CHECK(fuzz_json_string(reply, "tier") != NULL &&
			   strcmp(fuzz_json_string(reply, "tier"), "free") == 0,
			   "tier %s for %s", fuzz_json_string(reply, "tier"), username);
		FUZZ_CHECK(cJSON_GetObjectItem(reply, "password") == NULL,
			   "the answer shows the password");
		snprintf(tier, sizeof(tier), "%s", fuzz_json_string(reply, "tier"));
		cJSON_Delete(reply);
	}

	/* 2. Log in with the same body. */
	int l = post("/auth/login", data, size, &login);
	FUZZ_CHECK(l == 200 || l == 400 || l == 401 || l == 413 || l == 415,
		   "login answered %d: %.*s", l, (int)login.body_len, login.body);
	FUZZ_CHECK((l == 200) == (r == 201), "register %d, then login %d", r, l);
	if (l == 200) {
		cJSON *reply = cJSON_ParseWithLength(login.body, login.body_len);
		const char *token = fuzz_json_string(reply, "token");
		struct kit_identity who;
		FUZZ_CHECK(token != NULL, "login gave no token: %.*s", (int)login.body_len,
			   login.body);
		enum kit_jwt_error e = kit_jwt_verify(&jwt, token, time(NULL), &who);
		FUZZ_CHECK(e == KIT_JWT_OK && strcmp(who.subject, username) == 0 &&
			   strcmp(who.tier, tier) == 0,
			   "the token (%s) does not verify as %s/%s: %d %s/%s", token, username,
			   tier, e, who.subject, who.tier);
		cJSON_Delete(reply);
	}

	/* 3. The account exists: not again, and /users/me shows it. */
	if (r == 201) {
		struct fuzz_response again, me;
		char head[256];
		int a = post("/auth/register", data, size, &again);
		FUZZ_CHECK(a == 409, "registering %s twice answered %d", username, a);
		fuzz_response_free(&again);

		int n = snprintf(head, sizeof(head),
				 "GET /users/me HTTP/1.1\r\nHost: users\r\nX-User-Id: %s\r\n"
				 "X-User-Tier: %s\r\n\r\n", username, tier);
		int m = fuzz_serve(app, head, (size_t)n, NULL, 0, &me);
		cJSON *reply = cJSON_ParseWithLength(me.body, me.body_len);
		FUZZ_CHECK(m == 200 && fuzz_json_string(reply, "username") != NULL &&
			   strcmp(fuzz_json_string(reply, "username"), username) == 0 &&
			   fuzz_json_string(reply, "tier") != NULL && strcmp(fuzz_json_string(reply, "tier"), tier) == 0,
			   "/users/me as %s answered %d: %.*s", username, m, (int)me.body_len,
			   me.body);
		cJSON_Delete(reply);
		fuzz_response_free(&me);
	}
	fuzz_response_free(&reg);
	fuzz_response_free(&login);
	cJSON_Delete(body);
	return 0;
}
