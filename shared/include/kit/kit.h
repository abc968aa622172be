/*
 * kit/kit.h - everything a phase's main.c or a service needs, in one include.
 */
#ifndef KIT_KIT_H
#define KIT_KIT_H

#include "kit/app.h"
#include "kit/config.h"
#include "kit/jwt.h"
#include "kit/metrics.h"
#include "kit/middleware.h"
#include "kit/rate_limit.h"
#include "kit/request.h"
#include "kit/response.h"
#include "kit/router.h"
#include "kit/store.h"

#endif
