/*
 * services/notifications/notifications.h - a user's notifications: what
 * other services tell a user, kept for them to read (notifications.c).
 *
 * The kit's fourth service, and its worked example of adding one (docs/
 * phase2.md, "Adding a service"): the analytics service tells a link's
 * owner when the link passes a number of clicks.
 */
#ifndef NOTIFICATIONS_H
#define NOTIFICATIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "kit/app.h"

/* Most notifications GET /notifications returns, newest first. */
#define NOTIFICATIONS_LIST_MAX 50

/* GET /notifications (authenticated): the caller's. */
void notifications_mount(struct kit_app *app);

/* POST /internal/notifications {"id","user","kind","text","link"?,"at"?}:
 * for services; the gateway has no route to /internal. */
void notifications_mount_internal(struct kit_app *app);

/* The rules of a notification's fields (docs/api.md); pure, for tests. */
bool notifications_id_is_valid(const char *id);
bool notifications_kind_is_valid(const char *kind);
bool notifications_text_is_valid(const char *text);

#endif
