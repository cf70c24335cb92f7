# Top-level build.  Everything built lands under build/.
#
#   make            the nginx module and the worker
#   make test       install what is missing, build, start servers, run all tests
#   make demo       the local demo on the embedded defaults (SQLite)
#   make bench      side-by-side benchmarks
#   make fuzz       libFuzzer on the shared parsers (FUZZ_SECONDS, default 60)
#   make lint       cppcheck, clang-tidy and the module's style check
#   make coverage   line coverage of module and worker, 90 % gate each
#   make sanitize   module and worker suites under ASan + UBSan

BUILD    := $(CURDIR)/build
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Werror -Wstrict-prototypes -Wwrite-strings
COMMON   := common/pb_payload.c common/pb_envelope.c common/pb_keys.c

.PHONY: all module worker unit test demo bench fuzz lint coverage sanitize \
	clean

FUZZ_SECONDS ?= 60

all: module worker

module:
	scripts/build-module.sh

worker:
	$(MAKE) -C worker BUILD=$(BUILD)/worker

$(BUILD)/unit/test_common: t/unit/test_common.c t/unit/check.h $(COMMON) \
		common/*.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -std=gnu99 -Icommon -It/unit \
	    -DPB_SAMPLE_PAYLOAD='"t/data/webhook-payload.json"' \
	    t/unit/test_common.c $(COMMON) -ljansson -o $@

unit: $(BUILD)/unit/test_common
	$(BUILD)/unit/test_common

test:
	scripts/test.sh

demo:
	scripts/setup.sh
	$(MAKE) all
	scripts/demo.sh

bench:
	scripts/setup.sh bench
	$(MAKE) all
	scripts/bench/run.sh

fuzz:
	scripts/quality/fuzz.sh $(FUZZ_SECONDS)

lint:
	scripts/quality/lint.sh

coverage:
	scripts/quality/coverage.sh

sanitize:
	scripts/quality/sanitize.sh

clean:
	rm -rf $(BUILD) t/servroot*
