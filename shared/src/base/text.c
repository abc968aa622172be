/*
 * text.c - kit/text.h: a hex digit's value, and kit_json_escapes_are_sound(),
 * a scan of the JSON text that follows strings and their escapes, so that
 * "\u" outside a string, or an escaped backslash before "u0000", is not
 * taken for an escape.
 */
#include <stdbool.h>
#include <stddef.h>

#include <string.h>

#include "kit/text.h"

int kit_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool kit_json_escapes_are_sound(const char *text, size_t len)
{
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		unsigned value = 0;

		if (!in_string) {
			in_string = text[i] == '"';
			continue;
		}
		if (text[i] == '"') {
			in_string = false;
			continue;
		}
		if (text[i] != '\\')
			continue;
		i++; /* the escaped character */
		if (i >= len)
			return false;
		if (text[i] != 'u')
			continue;
		if (len - i <= 4)
			return false; /* fewer than four characters follow */
		for (size_t k = 1; k <= 4; k++) {
			int digit = kit_hex_digit(text[i + k]);

			if (digit < 0)
				return false;
			value = value * 16 + (unsigned)digit;
		}
		if (value == 0)
			return false;
		i += 4;
	}
	return true;
}

bool kit_text_is_displayable(const char *text, size_t max)
{
	size_t len = strnlen(text, max + 1);

	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}
