# gen2vm — one non-recursive Makefile for the VMM, the firmware, test guests, tests, benchmarks, fuzzers.
#
#   make            release build: build/gen2vm
#   make check      ASan+UBSan build, cmocka unit tests, pytest guest/integration tests
#   make unit       only the unit tests (sanitized)
#   make bench      build and run the benchmarks under bench/
#   make fuzz       build the libFuzzer targets under fuzz/ and run each for FUZZ_SECONDS from its seeds
#                   in tests/fuzz-corpus/ (make fuzz-merge keeps what added coverage)
#
# Sources are discovered, so adding a file needs no Makefile edit:
#   src/**/*.c (except src/main.c)  -> the VMM library, linked into gen2vm, unit tests, benches
#   guestlib/**/*.c                 -> freestanding code shared by firmware, test guests and the
#                                      host (the loopback guest); compiled for both worlds
#   tests/support/*.c               -> test fixtures (the in-process loopback guest, storvsc and netvsc
#                                      clients): linked into unit tests, benches and fuzzers, never gen2vm
#   tests/unit/test_*.c             -> one cmocka binary each
#   tests/guest/*.c                 -> one freestanding ELF guest each (tests/guest/lib/ is their runtime)
#   firmware/*.c, firmware/*.S      -> the UEFI firmware (with guestlib), embedded in gen2vm
#   tests/efi/*.c (except efiapp.c) -> one EFI application each, build/efi/NAME.efi (make efi-apps)
#   bench/*.c                       -> one benchmark binary each
#   fuzz/fuzz_*.c                   -> one libFuzzer target each

CC        ?= cc
CLANG     ?= clang
BUILD     ?= build
PYTHON    ?= /usr/bin/python3
V         ?= 0
Q         := $(if $(filter 1,$(V)),,@)

WARN      := -Wall -Wextra -Werror -Wmissing-prototypes -Wstrict-prototypes -Wmissing-declarations \
             -Wold-style-definition -Wvla -Wformat=2 -Wno-unused-parameter
CPPFLAGS  := -D_GNU_SOURCE -Isrc -Iinclude -Iguestlib $(VNC_CFLAGS)
CFLAGS    ?= -O2 -g
CFLAGS    += -std=gnu17 $(WARN) -fno-strict-aliasing -pthread
SANFLAGS  := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDLIBS    := -pthread -ljson-c -lpng -luring -llz4 -lz -llzma -lzstd
# OpenSSL's libcrypto (libssl-dev): Secure Boot's PKCS#7/X.509 checks in the VMM (src/platform/authenticode.c).
LDLIBS    += -lcrypto
# libvncserver (src/ui/vnc.c): Debian's libvncserver-dev, found through pkg-config.
VNC_CFLAGS := $(shell pkg-config --cflags libvncserver 2>/dev/null)
LDLIBS    += $(shell pkg-config --libs libvncserver 2>/dev/null || echo -lvncserver)
TEST_LDLIBS := -lcmocka

# Freestanding world (firmware and test guests): no libc, no red zone, no SSE, large enough code model.
FS_CFLAGS := -std=gnu17 $(WARN) -O2 -g -ffreestanding -fno-builtin -nostdlib -fno-stack-protector \
             -fno-pic -fno-pie -mno-red-zone -mno-sse -mno-mmx -mno-80387 -mgeneral-regs-only \
             -mcmodel=kernel -fno-asynchronous-unwind-tables -fcf-protection=none \
             -Iinclude -Iguestlib -Itests/guest/lib
FS_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,max-page-size=4096 -Wl,--no-warn-rwx-segments

# The firmware: freestanding like the guests, but position-independent code (runtime services keep
# working after the OS maps them elsewhere with SetVirtualAddressMap), hidden symbols (no GOT).
FW_CFLAGS := -std=gnu17 $(WARN) -Os -g -ffreestanding -fno-builtin -nostdlib -fno-stack-protector \
             -fpie -fvisibility=hidden -mno-red-zone -mno-sse -mno-mmx -mno-80387 -mgeneral-regs-only \
             -fno-asynchronous-unwind-tables -fcf-protection=none -fno-jump-tables \
             -ffunction-sections -fdata-sections -Iinclude -Iguestlib -Ifirmware

LIB_SRCS   := $(filter-out src/main.c,$(shell find src -name '*.c' | sort))
GLIB_SRCS  := $(shell find guestlib -name '*.c' 2>/dev/null | sort)
SUP_SRCS   := $(sort $(wildcard tests/support/*.c))
UNIT_SRCS  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_HELP  := $(filter-out $(UNIT_SRCS),$(sort $(wildcard tests/unit/*.c)))
GUEST_SRCS := $(sort $(wildcard tests/guest/*.c))
GUEST_LIB  := $(sort $(wildcard tests/guest/lib/*.c tests/guest/lib/*.S))
BENCH_SRCS := $(sort $(wildcard bench/*.c))
FUZZ_SRCS  := $(sort $(wildcard fuzz/fuzz_*.c))
FW_SRCS    := $(sort $(wildcard firmware/*.c firmware/*.S))

REL := $(BUILD)/rel
SAN := $(BUILD)/san
GST := $(BUILD)/guest

REL_OBJS := $(patsubst %.c,$(REL)/%.o,$(LIB_SRCS) $(GLIB_SRCS))
SAN_OBJS := $(patsubst %.c,$(SAN)/%.o,$(LIB_SRCS) $(GLIB_SRCS))
UNIT_BINS := $(patsubst tests/unit/%.c,$(SAN)/unit/%,$(UNIT_SRCS))
UNIT_HELP_OBJS := $(patsubst %.c,$(SAN)/%.o,$(UNIT_HELP))
SAN_SUP_OBJS := $(patsubst %.c,$(SAN)/%.o,$(SUP_SRCS))
REL_SUP_OBJS := $(patsubst %.c,$(REL)/%.o,$(SUP_SRCS))
GUEST_RT := $(patsubst %,$(GST)/%.o,$(GUEST_LIB)) $(patsubst %.c,$(GST)/%.o,$(GLIB_SRCS))
GUEST_ELFS := $(patsubst tests/guest/%.c,$(GST)/%.elf,$(GUEST_SRCS))
BENCH_BINS := $(patsubst bench/%.c,$(REL)/bench/%,$(BENCH_SRCS))
FUZZ_BINS := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
FW := $(BUILD)/fw
FW_OBJS := $(patsubst %,$(FW)/%.o,$(FW_SRCS)) $(patsubst %.c,$(FW)/%.c.o,$(GLIB_SRCS))
FW_ELF := $(FW)/gen2vm-fw.elf
FW_BLOB := $(FW)/fw_blob.o

.SECONDARY:
.PHONY: all check unit integration guests firmware bench bench-console fuzz fuzz-merge clean deps test-deps efi-apps
all: $(BUILD)/gen2vm

# --- release -----------------------------------------------------------------------------------
$(REL)/%.o: %.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(REL)/libgen2vm.a: $(REL_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/gen2vm: $(REL)/src/main.o $(REL)/libgen2vm.a $(FW_BLOB)
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# --- sanitized (what the test suite runs) ------------------------------------------------------
$(SAN)/%.o: %.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) -std=gnu17 $(WARN) -fno-strict-aliasing -pthread $(SANFLAGS) -MMD -MP -c $< -o $@

$(SAN)/libgen2vm.a: $(SAN_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(SAN)/gen2vm: $(SAN)/src/main.o $(SAN)/libgen2vm.a $(FW_BLOB)
	$(Q)$(CC) $(SANFLAGS) -o $@ $^ $(LDLIBS)

# Test code finds the fixtures as "support/...".
$(SAN)/tests/%.o $(REL)/tests/%.o: CPPFLAGS += -Itests

$(SAN)/unit/%: $(SAN)/tests/unit/%.o $(UNIT_HELP_OBJS) $(SAN_SUP_OBJS) $(SAN)/libgen2vm.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(SANFLAGS) -o $@ $^ $(TEST_LDLIBS) $(LDLIBS)

# --- freestanding test guests ------------------------------------------------------------------
$(GST)/%.c.o: %.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(FS_CFLAGS) -MMD -MP -c $< -o $@
$(GST)/%.S.o: %.S
	@mkdir -p $(@D)
	$(Q)$(CC) $(FS_CFLAGS) -MMD -MP -c $< -o $@
$(GST)/guestlib/%.o: guestlib/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(FS_CFLAGS) -MMD -MP -c $< -o $@
# The runtime is an archive: each guest links only the objects it uses (start.S always).
GUEST_START := $(GST)/tests/guest/lib/start.S.o
$(GST)/libguestrt.a: $(filter-out $(GUEST_START),$(GUEST_RT))
	$(Q)rm -f $@ && ar rcs $@ $^
$(GST)/%.elf: $(GST)/tests/guest/%.c.o $(GUEST_START) $(GST)/libguestrt.a tests/guest/lib/guest.ld
	$(Q)$(CC) $(FS_LDFLAGS) -T tests/guest/lib/guest.ld -o $@ $< $(GUEST_START) $(GST)/libguestrt.a -lgcc

guests: $(GUEST_ELFS)

# --- firmware ----------------------------------------------------------------------------------
$(FW)/%.c.o: %.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(FW_CFLAGS) -MMD -MP -c $< -o $@
$(FW)/%.S.o: %.S
	@mkdir -p $(@D)
	$(Q)$(CC) $(FW_CFLAGS) -MMD -MP -c $< -o $@
$(FW_ELF): $(FW_OBJS) firmware/fw.ld
	$(Q)$(CC) $(FS_LDFLAGS) -Wl,--gc-sections -T firmware/fw.ld -o $@ $(FW_OBJS) -lgcc
# Embedded in gen2vm, without debug information, as _binary_fw_elf_start/_end (src/platform/firmware.c).
$(FW_BLOB): $(FW_ELF)
	$(Q)objcopy --strip-debug $(FW_ELF) $(FW)/fw.elf
	$(Q)cd $(FW) && objcopy -I binary -O elf64-x86-64 -B i386:x86-64 \
	  --rename-section .data=.rodata,alloc,load,readonly,data,contents \
	  --add-section .note.GNU-stack=/dev/null --set-section-flags .note.GNU-stack=contents,readonly fw.elf fw_blob.o
firmware: $(FW_ELF)

# --- EFI test applications (tests/efi) ---------------------------------------------------------
# PE32+ x64 applications built from C without gnu-efi: a static PIE linked at 0 (tests/efi/efi.ld),
# turned into a PE image with base relocations by tests/efi/elf2efi.py. Each tests/efi/*.c except
# the runtime (efiapp.c) is one application, build/efi/NAME.efi; svc_test embeds hello.efi.
EFI_CFLAGS := -std=gnu17 $(WARN) -Os -g -ffreestanding -fno-builtin -nostdlib -fno-stack-protector -fpie \
              -fvisibility=hidden -mno-red-zone -mno-sse -mno-mmx -mno-80387 -mgeneral-regs-only -fshort-wchar \
              -fno-asynchronous-unwind-tables -fcf-protection=none -Iinclude -Iguestlib -Itests/efi
EFI_LDFLAGS := -nostdlib -static-pie -Wl,--no-dynamic-linker -Wl,-z,max-page-size=4096 -Wl,--build-id=none \
               -Wl,-z,norelro -Wl,--hash-style=sysv -T tests/efi/efi.ld
EFIB := $(BUILD)/efi
EFI_APP_SRCS := $(filter-out tests/efi/efiapp.c,$(sort $(wildcard tests/efi/*.c)))
EFI_APPS := $(patsubst tests/efi/%.c,$(EFIB)/%.efi,$(EFI_APP_SRCS))
EFI_RT := $(EFIB)/obj/tests/efi/efiapp.o $(patsubst %.c,$(EFIB)/obj/%.o,guestlib/efi/efi_fmt.c guestlib/efi/efi_lib.c \
          guestlib/efi/efi_devpath.c guestlib/netboot_wire.c guestlib/netboot6_wire.c)
$(EFIB)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(EFI_CFLAGS) -MMD -MP -c $< -o $@
# svc_test carries hello.efi (LoadImage from a buffer).
$(EFIB)/obj/tests/efi/svc_test.o: EFI_CFLAGS += -DHELLO_EFI_PATH='"$(abspath $(EFIB)/hello.efi)"'
$(EFIB)/obj/tests/efi/svc_test.o: $(EFIB)/hello.efi
$(EFIB)/%.elf: $(EFIB)/obj/tests/efi/%.o $(EFI_RT) tests/efi/efi.ld
	$(Q)$(CC) $(EFI_LDFLAGS) -o $@ $< $(EFI_RT) -lgcc
$(EFIB)/%.efi: $(EFIB)/%.elf tests/efi/elf2efi.py
	$(Q)$(PYTHON) tests/efi/elf2efi.py --subsystem 10 $< $@
efi-apps: $(EFI_APPS)

# --- benches and fuzzers -----------------------------------------------------------------------
$(REL)/bench/%: bench/%.c $(REL_SUP_OBJS) $(REL)/libgen2vm.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -o $@ $^ $(LDLIBS)

FUZZ_CFLAGS := -std=gnu17 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -DFUZZING \
               -Isrc -Iinclude -Iguestlib -Itests
$(BUILD)/fuzz/%: fuzz/%.c $(LIB_SRCS) $(GLIB_SRCS) $(SUP_SRCS)
	@mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRCS) $(GLIB_SRCS) $(SUP_SRCS) $(LDLIBS)

# --- entry points ------------------------------------------------------------------------------
unit: $(UNIT_BINS)
	@set -e; pass=0; fail=0; for t in $(UNIT_BINS); do \
	  if $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$t"; fi; done; \
	  echo "unit: $$pass binaries passed, $$fail failed"; test $$fail -eq 0

# Where this host's KVM cannot run guest user mode, tests/check_integration.py runs the real_guest tests
# in the nested test host (tests/nested) and the others here.
integration: $(SAN)/gen2vm $(BUILD)/gen2vm guests efi-apps
	$(PYTHON) tests/check_integration.py $(PYTEST_ARGS)

check: unit integration

bench: $(BUILD)/gen2vm $(BENCH_BINS) guests
	@set -e; for b in $(BENCH_BINS); do echo "== $$b"; $$b; done
	@for s in bench/*.sh; do [ -f "$$s" ] || continue; echo "== $$s"; bash $$s || exit 1; done

# One benchmark alone: the console's CPU time, idle and per full-screen update (bench/console.py).
bench-console: $(BUILD)/gen2vm
	bash bench/console.sh

# Each target starts from its committed seeds, tests/fuzz-corpus/TARGET/ (read only), and writes what it
# finds to build/fuzz/corpus-TARGET/; `make fuzz-merge` folds the inputs that add coverage back into
# tests/fuzz-corpus/ (libFuzzer -set_cover_merge=1: the fewest inputs that keep the coverage), so
# that a long campaign's coverage carries over to the next.
# FUZZ_TARGETS picks targets (default: all), e.g. make fuzz FUZZ_TARGETS="fuzz_vhdx fuzz_vhdx_log".
FUZZ_SECONDS ?= 30
FUZZ_CORPUS := tests/fuzz-corpus
FUZZ_TARGETS ?= $(notdir $(FUZZ_BINS))
fuzz: $(addprefix $(BUILD)/fuzz/,$(FUZZ_TARGETS))
	@set -e; for t in $(FUZZ_TARGETS); do f=$(BUILD)/fuzz/$$t; echo "== $$f ($(FUZZ_SECONDS)s)"; \
	  mkdir -p $(BUILD)/fuzz/corpus-$$t $(FUZZ_CORPUS)/$$t; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(BUILD)/fuzz/corpus-$$t $(FUZZ_CORPUS)/$$t 2>&1 | \
	  grep -E "^(stat::|#[0-9]+ *(INITED|DONE)|==|SUMMARY)" || true; done

fuzz-merge: $(addprefix $(BUILD)/fuzz/,$(FUZZ_TARGETS))
	@set -e; for t in $(FUZZ_TARGETS); do [ -d $(BUILD)/fuzz/corpus-$$t ] || continue; mkdir -p $(FUZZ_CORPUS)/$$t; \
	  $(BUILD)/fuzz/$$t -set_cover_merge=1 $(FUZZ_CORPUS)/$$t $(BUILD)/fuzz/corpus-$$t 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new" || true; \
	  echo "$$t: $$(ls $(FUZZ_CORPUS)/$$t | wc -l) seeds"; done

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' -type f -not -path '$(BUILD)/linux/*' -not -path '$(BUILD)/nested/*' 2>/dev/null)
