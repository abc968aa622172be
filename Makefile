# The API-gateway kit: one Makefile for every phase.
#
#   make up [PHASE=1]   install what is missing, build, start a phase on loopback
#   make down           stop what `make up` started (by pid)
#   make test           install, build, run every test (unit, ASan, black-box)
#   make asan           build everything with AddressSanitizer + UBSan
#   make                build only
#   make bench          install, build, run the benchmarks (bench/run.sh):
#                       bench/results.md, .csv and .png; BENCH_ARGS="--duration 4"
#                       passes flags on
#   make bench-smoke    the benchmark harness, one second per scenario
#
# Objects go under build/ (build/asan/ for the sanitizer build); nothing is
# written into the source tree.

PHASE ?= 1
# `make V=1` shows every command; by default one short line per step.
ifneq ($(V),1)
Q := @
endif
BUILD ?= build
CC ?= cc

PKGS := hiredis libjwt libcjson libcurl openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
	  -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
	  -Wno-format-truncation -fno-strict-aliasing -pthread -MMD -MP \
	  -Ishared/include -Ishared/src -Iservices $(PKG_CFLAGS)
# -Wno-format-truncation: the kit truncates into fixed buffers with snprintf
# on purpose (ids, error texts); truncation there is safe and intended.
# Debian's civetweb ships no pkg-config file.
LDLIBS += -lcivetweb $(PKG_LIBS) -pthread -lm

ifeq ($(SANITIZE),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -O1
LDFLAGS += -fsanitize=address,undefined
endif

KIT_SRC := $(wildcard shared/src/*/*.c)
# Business code: every .c of a service except its process entry point.
SERVICE_SRC := $(filter-out %/main.c,$(wildcard services/*/*.c))
UNIT_SRC := $(wildcard tests/unit/test_*.c)

KIT_OBJ := $(KIT_SRC:%.c=$(BUILD)/%.o)
SERVICE_OBJ := $(SERVICE_SRC:%.c=$(BUILD)/%.o)
KIT_LIB := $(BUILD)/libkit.a
SERVICE_LIB := $(BUILD)/libservices.a

MONOLITH := $(BUILD)/bin/monolith
GATEWAY := $(BUILD)/bin/gateway
GATEWAY3 := $(BUILD)/bin/gateway-advanced
# The benchmark's proxy-only gateway: phase2's main without a middleware.
BENCH_BARE := $(BUILD)/bin/bench-gateway-bare
# Phase 2 runs each service as its own process: services/<name>/main.c.
SERVICE_NAMES := $(notdir $(patsubst %/main.c,%,$(wildcard services/*/main.c)))
SERVICE_BINS := $(SERVICE_NAMES:%=$(BUILD)/bin/%)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps up down test unit asan clean compose-check bench bench-smoke bench-bins
all: $(MONOLITH) $(GATEWAY) $(GATEWAY3) $(BENCH_BARE) $(SERVICE_BINS) $(UNIT_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(KIT_LIB): $(KIT_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	$(Q)$(AR) rcs $@ $^

$(SERVICE_LIB): $(SERVICE_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	$(Q)$(AR) rcs $@ $^

$(MONOLITH): $(BUILD)/phase1-monolith/main.o $(SERVICE_LIB) $(KIT_LIB)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(GATEWAY): $(BUILD)/phase2-gateway/main.o $(KIT_LIB)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(GATEWAY3): $(BUILD)/phase3-advanced/main.o $(KIT_LIB)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BENCH_BARE): $(BUILD)/bench/gateway_bare.o $(KIT_LIB)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/bin/%: $(BUILD)/services/%/main.o $(SERVICE_LIB) $(KIT_LIB)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(SERVICE_LIB) $(KIT_LIB)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

deps:
	@bash scripts/deps.sh

up: deps all
	@bash scripts/up.sh $(PHASE)

down:
	@bash scripts/down.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZE=1 all

unit: all
	@bash tests/run.sh unit

compose-check:
	@bash tests/compose.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory asan
	@bash tests/run.sh all

# The benchmarks need every binary but the Phase 3 gateway, which is built
# when it can be: without it bench/run.sh reports its scenarios as "not
# available" and goes on.
bench-bins:
	@$(MAKE) --no-print-directory $(MONOLITH) $(GATEWAY) $(BENCH_BARE) $(SERVICE_BINS)
	@$(MAKE) --no-print-directory $(GATEWAY3) 2>/dev/null || \
		echo "bench: $(GATEWAY3) does not build yet; its scenarios will be skipped"

bench: deps bench-bins
	@bash bench/run.sh $(BENCH_ARGS)

bench-smoke: bench-bins
	@bash bench/run.sh --smoke $(BENCH_ARGS)

# Every fault under load (tests/faults.sh --full, about three minutes):
# services, Redis and a Phase 3 gateway killed, stopped, frozen, filled;
# its figures go into docs/reliability.md. `make test` runs the short suite.
.PHONY: faults
faults: deps all
	@bash tests/faults.sh --full --report docs/reliability.md build/bin

clean:
	rm -rf build

# Keep the unit tests' objects (make would delete them as intermediates),
# so their .d files can say which headers they depend on.
.SECONDARY:
-include $(KIT_OBJ:.o=.d) $(SERVICE_OBJ:.o=.d) $(BUILD)/phase1-monolith/main.d \
	 $(BUILD)/phase2-gateway/main.d $(BUILD)/phase3-advanced/main.d $(BUILD)/bench/gateway_bare.d $(SERVICE_NAMES:%=$(BUILD)/services/%/main.d) \
	 $(UNIT_SRC:%.c=$(BUILD)/%.d)
