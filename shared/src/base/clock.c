/*
 * clock.c - the time the kit reads: a monotonic clock for durations and
 * deadlines, and UTC timestamps for what people read (kit/request.h).
 *
 * Safe from any thread: no state.
 */
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "kit/request.h"

uint64_t kit_now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

int kit_utc_timestamp(long long when, char *out, size_t size)
{
	time_t seconds = (time_t)when;
	struct tm utc;

	if (gmtime_r(&seconds, &utc) == NULL ||
	    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &utc) == 0)
		return -1;
	return 0;
}
