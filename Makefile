# The API-gateway kit: one Makefile for every phase.
#
#   make up [PHASE=1]   install what is missing, build, start a phase on loopback
#   make down           stop what `make up` started (by pid)
#   make doctor [PHASE=1]  is this machine ready for that phase? (ports,
#                       packages, Docker, .run/), and what to do if not
#   make deps [SETS=..] install a set of packages (scripts/deps.sh; default:
#                       build and phase$(PHASE), what `make up` needs)
#   make test           install, build, run every test (unit, ASan, black-box)
#   make asan           build everything with AddressSanitizer + UBSan
#   make                build only
#   make bench          install, build, run the benchmarks (bench/run.sh):
#                       bench/results.md, .csv and .png; BENCH_ARGS="--duration 4"
#                       passes flags on
#   make bench-smoke    the benchmark harness, one second per scenario
#   make diagrams       draw docs/diagrams/*.svg again from their sources
#
# Objects go under build/ (build/asan/ for the sanitizer build); nothing else
# is written into the source tree (`make bench` writes bench/results.*,
# `make diagrams` docs/diagrams/*.svg, `make faults` docs/reliability.md).

PHASE ?= 1
# `make V=1` shows every command; by default one short line per step.
ifneq ($(V),1)
Q := @
endif
BUILD ?= build
CC ?= cc

# The libraries' flags come from pkg-config. On a bare machine neither
# pkg-config nor the libraries are there when make reads this file:
# scripts/deps.sh installs them, as the first step of `make up`, `make test`
# and `make bench`. Two rules make that work the first time:
#  - PKG_CFLAGS and PKG_LIBS are recursively expanded (`=`, not `:=`): make
#    runs pkg-config when a compile or link command uses them, never while
#    it reads this file. If pkg-config or a library is missing then, the
#    build stops there and says so, instead of compiling without the flags;
#  - `up`, `test` and `bench` run deps.sh in their recipe and only then start
#    a second make ($(MAKE) ...) for the build. As prerequisites (`up: deps
#    all`), deps and the build would run side by side under -j2.
PKGS := hiredis libjwt libcjson libcurl openssl
pkg_config = $(if $(shell pkg-config --exists $(PKGS) 2>/dev/null && echo yes),\
	$(shell pkg-config $(1) $(PKGS)),\
	$(error pkg-config cannot find $(PKGS): run `make deps` (scripts/deps.sh)))
PKG_CFLAGS = $(call pkg_config,--cflags)
PKG_LIBS = $(call pkg_config,--libs)

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

.PHONY: all deps up down doctor test unit asan clean compose-check bench bench-smoke bench-bins
all: $(MONOLITH) $(GATEWAY) $(GATEWAY3) $(BENCH_BARE) $(SERVICE_BINS) $(UNIT_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# Each archive is written anew (rm first): `ar rcs` alone keeps the object
# of a source file that was renamed or deleted, and its symbols then clash.
$(KIT_LIB): $(KIT_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(SERVICE_LIB): $(SERVICE_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	$(Q)rm -f $@ && $(AR) rcs $@ $^

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

# The package sets each target installs (scripts/deps.sh, docs/setup.md).
SETS ?= build phase$(PHASE)
TEST_SETS := build phase3 test
BENCH_SETS := build bench
# What each phase runs: `make up` builds only those.
PHASE1_BINS := $(MONOLITH)
PHASE2_BINS := $(GATEWAY) $(SERVICE_BINS)
PHASE3_BINS := $(GATEWAY3) $(SERVICE_BINS)

deps:
	@bash scripts/deps.sh $(SETS)

# deps first, then a second make builds (see PKG_CFLAGS above), then start.
up:
	@case "$(PHASE)" in 1|2|3) ;; *) echo "make up: PHASE must be 1, 2 or 3, not '$(PHASE)'" >&2; exit 2 ;; esac
	@bash scripts/deps.sh build phase$(PHASE)
	@$(MAKE) --no-print-directory $(PHASE$(PHASE)_BINS)
	@bash scripts/up.sh $(PHASE)

down:
	@bash scripts/down.sh

doctor:
	@bash scripts/doctor.sh $(PHASE)

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZE=1 all

unit: all
	@bash tests/run.sh unit

# Docker (docs/docker.md): `make compose-up [PHASE=1]` builds and starts a
# phase in containers, `make compose-down` stops whichever runs.
# scripts/compose.sh finds the compose client, stops with a clear message
# when no Docker engine runs, and keeps the JWT secret in .env.
.PHONY: compose-up compose-down
compose-up:
	@bash scripts/compose.sh up $(PHASE)

compose-down:
	@bash scripts/compose.sh down

# tests/compose.sh compares the Dockerfile's runtime packages with the
# libraries the built programs load, so it needs them built.
compose-check: $(MONOLITH) $(GATEWAY) $(GATEWAY3) $(SERVICE_BINS)
	@bash tests/compose.sh

# Everything is compiled before the first suite starts, the fuzz targets
# included: clang compiling beside the ASan suites once slowed a
# LeakSanitizer check at exit past the tests' 60 s stop bound.
test:
	@bash scripts/deps.sh $(TEST_SETS)
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory fuzz-build
	@bash tests/run.sh all

# The benchmarks need every binary but the Phase 3 gateway, which is built
# when it can be: without it bench/run.sh reports its scenarios as "not
# available" and goes on.
bench-bins:
	@$(MAKE) --no-print-directory $(MONOLITH) $(GATEWAY) $(BENCH_BARE) $(SERVICE_BINS)
	@$(MAKE) --no-print-directory $(GATEWAY3) 2>/dev/null || \
		echo "bench: $(GATEWAY3) does not build yet; its scenarios will be skipped"

bench:
	@bash scripts/deps.sh $(BENCH_SETS)
	@$(MAKE) --no-print-directory bench-bins
	@bash bench/run.sh $(BENCH_ARGS)

bench-smoke: bench-bins
	@bash bench/run.sh --smoke $(BENCH_ARGS)

# Every fault under load (tests/faults.sh --full, about three minutes):
# services, Redis and a Phase 3 gateway killed, stopped, frozen, filled;
# its figures go into docs/reliability.md. `make test` runs the short suite.
# ---- diagrams: docs/diagrams/ ---------------------------------------------
# Each docs/diagrams/<name>.dot becomes <name>.svg (graphviz), ending with a
# comment that holds the sha256 of the source it was drawn from; and the
# trace in redirect-trace.jsonl (spans of a real `make up PHASE=3` redirect,
# as .run/traces.jsonl has them) becomes redirect-trace.svg. The SVGs are
# committed so the docs show them; tests/diagrams.sh (in `make test`) fails
# when one was not drawn from its source as it is now. (graphviz lays text
# out with the machine's fonts, so its SVG is compared by that hash, not
# byte for byte; the waterfall is the kit's own drawing, compared whole.)
DIAGRAM_SRC := $(wildcard docs/diagrams/*.dot)
DIAGRAMS := $(DIAGRAM_SRC:.dot=.svg) docs/diagrams/redirect-trace.svg

# make check N=03: the checker of docs/workshop/exercise-03-*.md, against
# this tree (tests/exercises/check-03.sh); it says pass or fail, and why.
.PHONY: check
check:
	@case "$(N)" in [0-9][0-9]) ;; *) echo "make check: N is an exercise's two digits (docs/workshop/exercise-NN-*.md), not '$(N)'" >&2; exit 2 ;; esac
	@test -f tests/exercises/check-$(N).sh || { echo "make check: no exercise $(N) (see docs/workshop/README.md)" >&2; exit 2; }
	@bash scripts/deps.sh build check
	@$(MAKE) --no-print-directory all
	@bash tests/exercises/check-$(N).sh

.PHONY: diagrams
diagrams:
	@bash scripts/deps.sh docs
	@$(MAKE) --no-print-directory $(DIAGRAMS)

docs/diagrams/%.svg: docs/diagrams/%.dot
	@echo "  DOT     $@"
	$(Q)dot -Tsvg $< -o $@.new && \
	  printf '<!-- drawn by make diagrams from %s, sha256 %s -->\n' '$<' \
	    "$$(sha256sum <$< | cut -c1-64)" >>$@.new && mv $@.new $@

docs/diagrams/redirect-trace.svg: docs/diagrams/redirect-trace.jsonl docs/diagrams/trace_waterfall.py
	@echo "  DRAW    $@"
	$(Q)python3 docs/diagrams/trace_waterfall.py $< >$@

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

# ---- fuzzing: tests/fuzz/, docs/security.md ---------------------------------
#
#   make fuzz           build the libFuzzer targets (build/fuzz/), then run each
#                       for FUZZ_SECONDS (60) on a work corpus under
#                       build/fuzz/corpus/<target>, seeded from
#                       tests/fuzz/corpus/<target>; FUZZ_TARGETS="jwt route_match"
#                       runs only those
#   make fuzz-smoke     each target for FUZZ_SMOKE_SECONDS (2): what `make test`
#                       runs (tests/fuzz.sh smoke)
#   make fuzz-merge     fold the work corpus's inputs that add coverage back
#                       into tests/fuzz/corpus/ (review; commit only a few)
#
# The kit's sources and the services' are compiled again with clang's
# coverage and sanitizer flags into build/fuzz/obj/, apart from the normal
# build; each tests/fuzz/fuzz_<name>.c is a target build/fuzz/<name>.
FUZZ_CC ?= clang
FUZZ_BUILD := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 2
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# The kit's warning flags; clang has no -Wformat-truncation to turn off.
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
	-Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wno-unused-parameter -fno-strict-aliasing -pthread -MMD -MP \
	-Ishared/include -Ishared/src -Iservices -Itests/fuzz $(PKG_CFLAGS) \
	$(FUZZ_SANITIZE) -fsanitize=fuzzer-no-link
FUZZ_LIB_OBJ := $(KIT_SRC:%.c=$(FUZZ_BUILD)/obj/%.o) $(SERVICE_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_LIB := $(FUZZ_BUILD)/libkit-fuzz.a
FUZZ_ALL := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

.PHONY: fuzz fuzz-build fuzz-check fuzz-smoke fuzz-merge

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC fuzz $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(FUZZ_BUILD)/%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/obj/tests/fuzz/fake_request.o $(FUZZ_LIB)
	@echo "  LINK    $@"
	$(Q)$(FUZZ_CC) $(FUZZ_SANITIZE) -fsanitize=fuzzer $^ $(LDLIBS) -o $@

fuzz-build: fuzz-check $(FUZZ_ALL:%=$(FUZZ_BUILD)/%)

fuzz-check:
	@command -v $(FUZZ_CC) >/dev/null || { echo "fuzz: $(FUZZ_CC) not found: apt-get install clang libclang-rt-14-dev" >&2; exit 1; }

fuzz: fuzz-build
	@bash tests/fuzz.sh run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke:
	@bash tests/fuzz.sh smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

fuzz-merge: fuzz-build
	@bash tests/fuzz.sh merge 0 $(FUZZ_TARGETS)

-include $(FUZZ_LIB_OBJ:.o=.d) $(wildcard $(FUZZ_BUILD)/obj/tests/fuzz/*.d)
