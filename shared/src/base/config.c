/*
 * config.c - reading settings from the environment (kit/config.h).
 *
 * The rule every setting follows: unset or empty means the documented
 * default; set to something wrong means start-up stops with the variable's
 * name and the problem. A typo in RATE_LIMIT_FREE must not quietly become
 * the default limit.
 *
 * Called from main() and init() functions only, before worker threads run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "kit/config.h"

const char *kit_env_string(const char *name, const char *fallback)
{
	const char *value = getenv(name);

	if (value == NULL || value[0] == '\0')
		return fallback;
	return value;
}

int kit_env_long(const char *name, long fallback, long min, long max,
		 long *out)
{
	const char *text = kit_env_string(name, NULL);
	char *end = NULL;
	long value;

	if (text == NULL) {
		*out = fallback;
		return 0;
	}
	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0') {
		fprintf(stderr, "%s: \"%s\" is not a whole number\n", name, text);
		return -1;
	}
	if (value < min || value > max) {
		fprintf(stderr, "%s: %ld is outside %ld..%ld\n", name, value, min,
			max);
		return -1;
	}
	*out = value;
	return 0;
}

int kit_env_bool(const char *name, bool fallback, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	const char *text = kit_env_string(name, NULL);

	if (text == NULL) {
		*out = fallback;
		return 0;
	}
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	fprintf(stderr, "%s: \"%s\" is not true/false (also 1/0, yes/no, on/off)\n",
		name, text);
	return -1;
}
