#include "platform/firmware.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen2vm/proto/efi.h"
#include "gen2vm/proto/fw_sec.h"
#include "util/clock.h"
#include "util/log.h"
#include "vmm/boot.h"
#include "vmm/loader.h"

/* The built-in image (Makefile: $(FW_BLOB)); weak, so unit tests and fuzzers link without it. */
extern const uint8_t _binary_fw_elf_start[] __attribute__((weak));
extern const uint8_t _binary_fw_elf_end[] __attribute__((weak));

#define PAGE 4096ull
#define FW_BOOT_DATA_END 0x10000ull

bool firmware_builtin_available(void)
{
	return _binary_fw_elf_start && (uintptr_t)_binary_fw_elf_end > (uintptr_t)_binary_fw_elf_start;
}

static unsigned layout_add(struct fw_mem_range *out, unsigned n, unsigned max, uint64_t start, uint64_t end,
			   uint32_t type)
{
	if (end > start && n < max)
		out[n++] = (struct fw_mem_range){ start, end - start, type, 0 };
	return n;
}

unsigned firmware_mem_layout(const struct guest_mem *mem, uint64_t fw_end, uint64_t files_start,
			     struct fw_mem_range *out, unsigned max)
{
	unsigned n = 0;
	fw_end = (fw_end + PAGE - 1) & ~(PAGE - 1);
	n = layout_add(out, n, max, 0, FW_BOOT_DATA_END, FW_MEM_BOOT_DATA);
	n = layout_add(out, n, max, FW_BOOT_DATA_END, FW_SMBIOS_GPA, FW_MEM_RAM);
	n = layout_add(out, n, max, FW_SMBIOS_GPA, FW_SMBIOS_GPA + FW_SMBIOS_SIZE, FW_MEM_SMBIOS);
	n = layout_add(out, n, max, BOOT_ACPI_GPA, BOOT_ACPI_GPA + BOOT_ACPI_SIZE, FW_MEM_ACPI);
	n = layout_add(out, n, max, FW_LOAD_GPA, fw_end, FW_MEM_FIRMWARE);
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct guest_mem_region *r = &mem->region[i];
		uint64_t start = r->gpa < fw_end ? fw_end : r->gpa, end = r->gpa + r->size;
		if (r->gpa < GUEST_HIGH_RAM_START) {
			n = layout_add(out, n, max, start, files_start < end ? files_start : end, FW_MEM_RAM);
			n = layout_add(out, n, max, files_start > start ? files_start : start, end, FW_MEM_LOADED);
		} else {
			n = layout_add(out, n, max, start, end, FW_MEM_RAM);
		}
	}
	return n;
}

/* Places a file's contents below *top (page aligned, moving *top down). */
static int firmware_place_file(struct vm *vm, const char *path, uint64_t *top, uint64_t floor, uint64_t *gpa,
			       uint64_t *size)
{
	uint8_t *data;
	size_t len;
	int r = loader_read_file(path, &data, &len);
	if (r)
		return r;
	uint64_t need = (len + PAGE - 1) & ~(PAGE - 1);
	if (need + floor > *top) {
		log_error("%s: %zu bytes do not fit in the VM's memory below 4 GiB; give the VM more --memory",
			  path, len);
		free(data);
		return -E2BIG;
	}
	*top -= need;
	r = guest_mem_write(&vm->mem, *top, data, len);
	free(data);
	*gpa = *top;
	*size = len;
	return r;
}

static void firmware_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write);

int firmware_setup(struct firmware *fw, struct vm *vm, const struct firmware_config *cfg)
{
	memset(fw, 0, sizeof(*fw));
	fw->vm = vm;
	uint8_t *file = NULL;
	const uint8_t *img;
	size_t img_len;
	const char *name = cfg->path ? cfg->path : "built-in firmware";
	int r;
	if (cfg->path) {
		if ((r = loader_read_file(cfg->path, &file, &img_len)))
			return r;
		img = file;
	} else if (firmware_builtin_available()) {
		img = _binary_fw_elf_start;
		img_len = (size_t)(_binary_fw_elf_end - _binary_fw_elf_start);
	} else {
		log_error("this gen2vm was built without its firmware; give --firmware PATH, or boot Linux "
			  "directly with --kernel");
		return -ENOENT;
	}
	uint64_t entry, end;
	r = loader_elf_load(vm, img, img_len, name, &entry, &end);
	free(file);
	if (r)
		return r;
	if (entry < FW_LOAD_GPA || end > FW_LOAD_GPA + FW_LOAD_MAX || entry >= end) {
		log_error("%s: not a gen2vm firmware image (it must load within 0x%llx-0x%llx)", name,
			  FW_LOAD_GPA, FW_LOAD_GPA + FW_LOAD_MAX);
		return -ENOEXEC;
	}

	struct fw_handoff ho = {
		.magic = FW_HANDOFF_MAGIC,
		.version = FW_HANDOFF_VERSION,
		.size = sizeof(ho),
		.nr_vcpus = vm->nr_vcpus,
		.flags = (cfg->com1 ? FW_FLAG_COM1 : 0) | (cfg->debugcon ? FW_FLAG_DEBUGCON : 0) |
			 (cfg->nvram_file ? FW_FLAG_NVRAM_FILE : 0),
		.rsdp_gpa = cfg->rsdp_gpa,
		.smbios_gpa = cfg->smbios_gpa,
		.fw_start = FW_LOAD_GPA,
		.fw_end = (end + PAGE - 1) & ~(PAGE - 1),
	};
	memcpy(ho.system_uuid, cfg->system_uuid, 16);

	/* Files go at the top of the RAM below 4 GiB, above the firmware. */
	uint64_t low_end = vm->mem.ram_size < GUEST_MMIO_GAP_START ? vm->mem.ram_size : GUEST_MMIO_GAP_START;
	uint64_t top = low_end & ~(PAGE - 1), floor = ho.fw_end + (16ull << 20); /* leave the firmware room */
	uint64_t gpa, size;
	if (cfg->efi) {
		if ((r = firmware_place_file(vm, cfg->efi, &top, floor, &gpa, &size)))
			return r;
		ho.image_gpa = gpa;
		ho.image_size = size;
	}
	if (cfg->initrd) {
		if ((r = firmware_place_file(vm, cfg->initrd, &top, floor, &gpa, &size)))
			return r;
		ho.initrd_gpa = gpa;
		ho.initrd_size = size;
	}
	if (cfg->cmdline) {
		size_t cl = strlen(cfg->cmdline);
		uint64_t need = (cl + PAGE) & ~(PAGE - 1);
		if (need + floor > top || cl > 65536) {
			log_error("--cmdline: too long (%zu bytes)", cl);
			return -E2BIG;
		}
		top -= need;
		if ((r = guest_mem_write(&vm->mem, top, cfg->cmdline, cl)))
			return r;
		ho.cmdline_gpa = top;
		ho.cmdline_size = cl;
	}
	ho.nr_mem = firmware_mem_layout(&vm->mem, ho.fw_end, top, ho.mem, FW_MEM_MAX);
	if ((r = guest_mem_write(&vm->mem, FW_HANDOFF_GPA, &ho, sizeof(ho))))
		return r;
	if ((r = boot_write_tables(vm)))
		return r;
	if ((r = bus_register(&vm->pio, FW_HOST_PORT, 4, firmware_io, fw, "firmware")))
		return r;
	fw->start_ns = clock_mono_ns();
	return boot_enter_long_mode(&vm->vcpus[0], entry, BOOT_STACK_TOP, 0, FW_HANDOFF_GPA);
}

/* Text from the guest, made printable (it reaches a terminal). */
static void firmware_text(const struct fw_event_req *ev, uint32_t len, char *out, size_t cap)
{
	size_t k = 0;
	for (uint32_t i = 0; i < len && k + 1 < cap; i++) {
		unsigned char c = (unsigned char)ev->text[i];
		out[k++] = (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) ? (char)c : '?';
	}
	out[k] = 0;
}

static uint64_t firmware_event(struct firmware *fw, struct fw_event_req *ev, uint32_t size)
{
	uint32_t elen = ev->len, op = ev->hdr.op, code = ev->code; /* read once: the guest may change them */
	if (size < sizeof(*ev) || elen > FW_EVENT_TEXT_MAX || elen > size - sizeof(*ev))
		return EFI_INVALID_PARAMETER;
	char text[FW_EVENT_TEXT_MAX + 1];
	firmware_text(ev, elen, text, sizeof(text));
	struct vm *vm = fw->vm;
	switch (op) {
	case FW_OP_PANIC:
		vm_stop(vm, VM_EXIT_CRASH, "firmware fault: %s", text);
		return EFI_SUCCESS;
	case FW_OP_BOOT_FAILED:
		vm_stop(vm, VM_EXIT_NO_BOOT, "no operating system was loaded: every boot entry failed%s%s",
			elen ? "\n" : "", text);
		return EFI_SUCCESS;
	}
	switch (code) {
	case FW_EV_START:
		log_info("firmware: %s started", text);
		break;
	case FW_EV_BOOT_ENTRY:
		log_info("firmware: booting %s", text);
		break;
	case FW_EV_LOADER_START: {
		fw->loader_ns = clock_mono_ns();
		uint64_t exits = 0, insns = 0;
		for (unsigned i = 0; i < vm->nr_vcpus; i++) {
			for (int k = 0; k < VCPU_EXIT__COUNT; k++)
				exits += vm->vcpus[i].exits[k];
			insns += vm->vcpus[i].completed_insns;
		}
		fw->loader_exits = exits;
		fw->loader_insns = insns;
		log_info("firmware: starting %s (%.1f ms after the firmware's start, %" PRIu64 " exits)", text,
			 (double)(fw->loader_ns - fw->start_ns) / 1e6, exits);
		break;
	}
	case FW_EV_EXIT_BOOT_SERVICES:
		fw->ebs_ns = clock_mono_ns();
		log_info("firmware: the OS loader called ExitBootServices%s%s", elen ? ": " : "", text);
		if (fw->boot_services_ended)
			fw->boot_services_ended(fw->hooks_opaque);
		break;
	case FW_EV_BOOT_ENTRY_FAILED:
		log_info("firmware: boot entry failed: %s", text);
		break;
	default:
		log_info("firmware: %s", text);
		break;
	}
	return EFI_SUCCESS;
}

void firmware_continue(struct firmware *fw)
{
	atomic_store(&fw->continue_requested, true);
}

static uint64_t firmware_dispatch(struct firmware *fw, void *req, uint32_t size)
{
	uint32_t op = ((volatile struct fw_host_req *)req)->op;
	switch (op) {
	case FW_OP_NOP:
		return EFI_SUCCESS;
	case FW_OP_CONTINUE:
		return atomic_exchange(&fw->continue_requested, false) ? EFI_SUCCESS : EFI_NOT_READY;
	case FW_OP_WATCHED:
		return fw->watched && fw->watched(fw->hooks_opaque) ? EFI_SUCCESS : EFI_NOT_READY;
	case FW_OP_EVENT:
	case FW_OP_PANIC:
	case FW_OP_BOOT_FAILED:
		return firmware_event(fw, req, size);
	}
	if (op >= FW_OP_VAR_FIRST && op <= FW_OP_VAR_LAST && fw->var_fn)
		return fw->var_fn(fw->var_opaque, op, req, size);
	if (op >= FW_OP_MISC_FIRST && op <= FW_OP_MISC_LAST && fw->misc_fn)
		return fw->misc_fn(fw->misc_opaque, op, req, size);
	/* Image verification is a boot service: once the OS owns the machine there is nothing to
	 * verify, and the VMM's cryptography is not offered to it. */
	if (op >= FW_OP_SEC_FIRST && op <= FW_OP_SEC_LAST && fw->sec_fn)
		return fw->ebs_ns ? EFI_UNSUPPORTED : fw->sec_fn(fw->sec_opaque, op, req, size);
	log_guest("firmware: unknown host call %u", op);
	return EFI_UNSUPPORTED;
}

static void firmware_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	struct firmware *fw = opaque;
	if (!is_write) {
		memset(data, 0xff, len);
		return;
	}
	if (off != 0 || len != 4) {
		log_guest("firmware: host call port written with %u bytes at +%" PRIu64 "; ignored", len, off);
		return;
	}
	uint32_t gpa;
	memcpy(&gpa, data, 4);
	struct fw_host_req *h = guest_mem_ptr(&fw->vm->mem, gpa, sizeof(*h));
	if (!h || (gpa & 7)) {
		log_guest("firmware: host call at 0x%x is not in RAM or not 8-byte aligned", gpa);
		return;
	}
	uint32_t size = h->size;
	void *req = size >= sizeof(*h) && size <= FW_HOST_REQ_MAX ? guest_mem_ptr(&fw->vm->mem, gpa, size) : NULL;
	if (!req) {
		log_guest("firmware: host call %u has a bad size (%u bytes)", h->op, size);
		h->status = EFI_INVALID_PARAMETER;
		return;
	}
	/* The guest may change the request while we read it (another vCPU): handlers copy what they
	 * check before using it. */
	uint64_t st = firmware_dispatch(fw, req, size);
	((struct fw_host_req *)req)->status = st;
}
