/*
 * kit/config.h - reading settings from the environment.
 *
 * Every setting has a documented default (docs/configuration.md). A value
 * that is set but wrong is an error, never silently replaced by the
 * default: these helpers print "<NAME>: <what is wrong>" to stderr and
 * return -1, and the caller stops start-up.
 */
#ifndef KIT_CONFIG_H
#define KIT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* The variable's value, or fallback when unset or empty. */
const char *kit_env_string(const char *name, const char *fallback);

/* An integer in [min, max]; fallback when unset. */
int kit_env_long(const char *name, long fallback, long min, long max,
		 long *out);

/* true/false, 1/0, yes/no, on/off; fallback when unset. */
int kit_env_bool(const char *name, bool fallback, bool *out);

#endif
