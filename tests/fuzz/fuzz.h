/*
 * tests/fuzz/fuzz.h - what every fuzz target shares.
 *
 * A libFuzzer target is one function, LLVMFuzzerTestOneInput(), called
 * with one input at a time; AddressSanitizer and UBSan turn memory errors
 * and undefined behaviour into crashes the fuzzer reports. "Does not
 * crash" is only half a test, so every target also states properties of
 * the answer with FUZZ_CHECK(): when one does not hold, the target prints
 * which, with the input's details, and aborts, which libFuzzer reports as
 * a crash and saves the input (crash-<sha1>) like any other.
 *
 * fuzz_string() copies the input into a NUL-terminated buffer of exactly
 * size + 1 bytes, so a read one byte past the string is an ASan report.
 */
#ifndef KIT_FUZZ_H
#define KIT_FUZZ_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

__attribute__((noreturn, format(printf, 4, 5)))
static inline void fuzz_fail(const char *file, int line, const char *what,
			     const char *fmt, ...)
{
	va_list args;

	fprintf(stderr, "\nPROPERTY FAILED at %s:%d: %s\n  ", file, line, what);
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fputc('\n', stderr);
	abort();
}

/* FUZZ_CHECK(condition, "printf format", ...): a property of the answer. */
#define FUZZ_CHECK(cond, ...)                                            \
	do {                                                             \
		if (!(cond))                                             \
			fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
	} while (0)

/* The value of a hex digit, or -1: for the targets' reference readings. */
static inline int fuzz_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The input as a malloc'd C string (it ends at its first NUL, if any). */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

#endif
