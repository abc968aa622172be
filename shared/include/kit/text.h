/*
 * kit/text.h - small text rules shared by the kit's parsers: a hex digit's
 * value (percent-escapes, chunk sizes, trace ids, JSON escapes), the one
 * check the kit makes on JSON text before cJSON parses it, and what text a
 * service may show a user (a display name, a notification).
 *
 * cJSON 1.7 turns the escape \u0000 into a NUL byte inside a C string, and
 * reads an escape with bad hex digits ("\u00zz") the same way; so
 * {"username": "alice\u0000x"} would reach a handler as "alice", a value
 * silently cut short (and a token's "sub" likewise). Every JSON text that
 * comes from outside (request bodies, tokens, the gateway's route file)
 * is checked with this first.
 */
#ifndef KIT_TEXT_H
#define KIT_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The value of the hex digit c (0-9, a-f, A-F), or -1 when c is not one. */
int kit_hex_digit(char c);

/* True when every \u escape inside a string of text[0..len) has four hex
 * digits and does not stand for NUL. Says nothing else about the text:
 * cJSON judges the rest. */
bool kit_json_escapes_are_sound(const char *text, size_t len);

/* True when text is 1..max bytes with no control character (below 0x20,
 * and 0x7f): text a user is shown and a log line carries, where a newline
 * or an escape sequence would forge another line or repaint a terminal.
 * Bytes from 0x80 up (UTF-8) are the writer's business. */
bool kit_text_is_displayable(const char *text, size_t max);

#endif
