#include "vmm/loader.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gen2vm/proto/linux_boot.h"
#include "util/file.h"
#include "util/log.h"
#include "util/text.h"
#include "vmm/boot.h"
#include "vmm/decompress.h"

#define LOADER_MAX_FILE (1ull << 30)
#define KERNEL_MAX_DECOMPRESSED (512ull << 20)
#define BZIMAGE_LOAD_GPA 0x100000ull

int loader_read_file(const char *path, uint8_t **data, size_t *len)
{
	char why[160];
	int r = file_read_user(path, LOADER_MAX_FILE, data, len, why, sizeof(why));
	if (r)
		log_error("%s: %s", text_show(path), why);
	return r;
}

int loader_elf_load(struct vm *vm, const uint8_t *img, size_t len, const char *name, uint64_t *entry,
		    uint64_t *end)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
	if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_machine != EM_X86_64) {
		log_error("%s: not an x86-64 ELF image", name);
		return -ENOEXEC;
	}
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
	    (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff) {
		log_error("%s: ELF program headers lie outside the file (truncated?)", name);
		return -ENOEXEC;
	}
	uint64_t hi = 0;
	bool entry_ok = false;
	unsigned loads = 0;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		/* Copied out: e_phoff comes from the file and need not be aligned. */
		Elf64_Phdr ph;
		memcpy(&ph, img + eh->e_phoff + (size_t)i * sizeof(ph), sizeof(ph));
		const Elf64_Phdr *p = &ph;
		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		if (p->p_filesz > p->p_memsz || p->p_offset > len || p->p_filesz > len - p->p_offset) {
			log_error("%s: ELF segment %u lies outside the file (truncated?)", name, i);
			return -ENOEXEC;
		}
		uint8_t *dst = guest_mem_ptr(&vm->mem, p->p_paddr, p->p_memsz);
		if (!dst) {
			log_error("%s: segment at 0x%" PRIx64 "+0x%" PRIx64 " does not fit in guest RAM (raise --memory)",
				  name, (uint64_t)p->p_paddr, (uint64_t)p->p_memsz);
			return -E2BIG;
		}
		memcpy(dst, img + p->p_offset, p->p_filesz);
		memset(dst + p->p_filesz, 0, p->p_memsz - p->p_filesz);
		if (p->p_paddr + p->p_memsz > hi)
			hi = p->p_paddr + p->p_memsz;
		if (eh->e_entry >= p->p_paddr && eh->e_entry < p->p_paddr + p->p_memsz)
			entry_ok = true;
		loads++;
	}
	if (!loads || !entry_ok) {
		log_error("%s: ELF entry point 0x%" PRIx64 " is not inside a loaded segment", name, (uint64_t)eh->e_entry);
		return -ENOEXEC;
	}
	*entry = eh->e_entry;
	*end = hi;
	return 0;
}

static void e820_add(struct linux_boot_params *bp, uint64_t addr, uint64_t size, uint32_t type)
{
	if (bp->e820_entries < E820_MAX_ENTRIES_ZEROPAGE && size)
		bp->e820_table[bp->e820_entries++] = (struct e820_entry){ addr, size, type };
}

static void loader_build_e820(struct vm *vm, struct linux_boot_params *bp)
{
	/* Low memory: RAM up to the EBDA, reserved hole with the ACPI tables, then RAM from 1 MiB. */
	e820_add(bp, 0, 0x9fc00, E820_RAM);
	e820_add(bp, 0x9fc00, 0x400, E820_RESERVED);
	e820_add(bp, BOOT_ACPI_GPA, BOOT_ACPI_SIZE, E820_ACPI);
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		struct guest_mem_region *r = &vm->mem.region[i];
		uint64_t start = r->gpa < 0x100000 ? 0x100000 : r->gpa;
		if (r->gpa + r->size > start)
			e820_add(bp, start, r->gpa + r->size - start, E820_RAM);
	}
}

/* Loads a bzImage. Prefers decompressing its payload here (seconds of guest CPU time saved on
 * hosts that emulate guest kernel mode); falls back to the kernel's own 64-bit entry. */
static int loader_bzimage(struct vm *vm, const char *path, const uint8_t *img, size_t len,
			  struct linux_boot_params *bp, struct linux_boot_info *info)
{
	const struct linux_setup_header *h = (const struct linux_setup_header *)(img + 0x1f1);
	if (h->version < 0x20c || !(h->xloadflags & LINUX_XLF_KERNEL_64)) {
		log_error("%s: boot protocol %u.%02u has no 64-bit entry (needs a Linux 3.8+ x86-64 kernel)", path,
			  h->version >> 8, h->version & 0xff);
		return -ENOEXEC;
	}
	size_t setup = ((size_t)(h->setup_sects ? h->setup_sects : 4) + 1) * 512;
	if (setup >= len) {
		log_error("%s: truncated bzImage (setup of %zu bytes, file of %zu)", path, setup, len);
		return -ENOEXEC;
	}
	/* The setup header's own length is given by the jump at 0x200. */
	size_t hdr_end = 0x202 + img[0x201];
	if (hdr_end > 0x1f1 + sizeof(*h))
		hdr_end = 0x1f1 + sizeof(*h);
	memcpy(&bp->hdr, img + 0x1f1, hdr_end - 0x1f1);

	const uint8_t *payload = img + setup + h->payload_offset;
	size_t plen = h->payload_length;
	if (h->payload_offset < len - setup && plen <= len - setup - h->payload_offset && plen >= 8) {
		uint32_t usize = (uint32_t)payload[plen - 4] | (uint32_t)payload[plen - 3] << 8 |
				 (uint32_t)payload[plen - 2] << 16 | (uint32_t)payload[plen - 1] << 24;
		uint8_t *elf = NULL;
		size_t elf_len = 0;
		const char *fmt;
		int r = decompress_buffer(payload, plen, usize, KERNEL_MAX_DECOMPRESSED, &elf, &elf_len, &fmt);
		if (r == 0) {
			r = loader_elf_load(vm, elf, elf_len, path, &info->entry, &info->kernel_end);
			free(elf);
			if (r)
				return r;
			snprintf(info->how, sizeof(info->how), "bzImage (payload decompressed by the host: %s)", fmt);
			return 0;
		}
		log_info("%s: payload not decompressed here (%s, %s): the guest will decompress it", path, fmt,
			 strerror(-r));
	}
	/* The protected-mode kernel goes to 1 MiB (or its preferred address); entry = start + 0x200. */
	uint64_t load = BZIMAGE_LOAD_GPA;
	uint64_t need = h->init_size > len - setup ? h->init_size : len - setup;
	uint8_t *dst = guest_mem_ptr(&vm->mem, load, need);
	if (!dst) {
		log_error("%s: the kernel needs %" PRIu64 " MiB at 1 MiB: raise --memory", path, need >> 20);
		return -E2BIG;
	}
	memcpy(dst, img + setup, len - setup);
	bp->hdr.code32_start = (uint32_t)load;
	info->entry = load + 0x200;
	info->kernel_end = load + need;
	snprintf(info->how, sizeof(info->how), "bzImage (decompressed by the guest)");
	return 0;
}

int loader_linux_load(struct vm *vm, const struct linux_boot_config *cfg, struct linux_boot_info *info)
{
	uint8_t *img = NULL;
	size_t len = 0;
	memset(info, 0, sizeof(*info));
	int r = loader_read_file(cfg->kernel, &img, &len);
	if (r)
		return r;
	struct linux_boot_params *bp = guest_mem_ptr(&vm->mem, BOOT_ZERO_PAGE_GPA, sizeof(*bp));
	if (!bp) {
		free(img);
		return -E2BIG;
	}
	memset(bp, 0, sizeof(*bp));
	if (len >= 4 && !memcmp(img, ELFMAG, SELFMAG)) {
		r = loader_elf_load(vm, img, len, cfg->kernel, &info->entry, &info->kernel_end);
		snprintf(info->how, sizeof(info->how), "vmlinux");
		/* No setup header in an ELF: fill in what the kernel reads. */
		bp->hdr.boot_flag = LINUX_BOOT_FLAG;
		bp->hdr.header = LINUX_HDRS_MAGIC;
		bp->hdr.version = 0x20f;
		bp->hdr.kernel_alignment = 0x1000000;
		bp->hdr.initrd_addr_max = 0x7fffffff;
	} else if (len >= 0x1f1 + sizeof(struct linux_setup_header) &&
		   ((const struct linux_setup_header *)(img + 0x1f1))->header == LINUX_HDRS_MAGIC) {
		r = loader_bzimage(vm, cfg->kernel, img, len, bp, info);
	} else {
		log_error("%s: not a Linux kernel (neither a bzImage nor an ELF vmlinux)", cfg->kernel);
		r = -ENOEXEC;
	}
	free(img);
	if (r)
		return r;

	bp->hdr.type_of_loader = 0xff;
	bp->hdr.loadflags |= LINUX_LOADFLAG_LOADED_HIGH | LINUX_LOADFLAG_CAN_USE_HEAP | LINUX_LOADFLAG_KEEP_SEGMENTS;
	bp->hdr.heap_end_ptr = 0xfe00;
	bp->acpi_rsdp_addr = cfg->rsdp_gpa;
	const char *cmdline = cfg->cmdline ? cfg->cmdline : "";
	size_t clen = strlen(cmdline);
	if (clen + 1 > BOOT_CMDLINE_MAX || (bp->hdr.cmdline_size && clen > bp->hdr.cmdline_size)) {
		log_error("--cmdline: %zu bytes is longer than the kernel accepts", clen);
		return -EINVAL;
	}
	guest_mem_write(&vm->mem, BOOT_CMDLINE_GPA, cmdline, clen + 1);
	bp->hdr.cmd_line_ptr = (uint32_t)BOOT_CMDLINE_GPA;
	loader_build_e820(vm, bp);

	if (cfg->initrd) {
		uint8_t *rd;
		size_t rdlen;
		if ((r = loader_read_file(cfg->initrd, &rd, &rdlen)))
			return r;
		/* As high as allowed in low RAM, page aligned, above the kernel. */
		uint64_t top = vm->mem.region[0].size;
		uint64_t max = (uint64_t)bp->hdr.initrd_addr_max + 1;
		if (top > max)
			top = max;
		uint64_t gpa = (top - rdlen) & ~0xfffull;
		if (rdlen > top || gpa < info->kernel_end) {
			log_error("%s: %zu MiB does not fit in guest RAM beside the kernel (raise --memory)", cfg->initrd,
				  rdlen >> 20);
			free(rd);
			return -E2BIG;
		}
		guest_mem_write(&vm->mem, gpa, rd, rdlen);
		free(rd);
		bp->hdr.ramdisk_image = (uint32_t)gpa;
		bp->hdr.ramdisk_size = (uint32_t)rdlen;
		bp->ext_ramdisk_image = (uint32_t)(gpa >> 32);
		bp->ext_ramdisk_size = (uint32_t)((uint64_t)rdlen >> 32);
		info->initrd_gpa = gpa;
		info->initrd_size = rdlen;
	}
	return boot_write_tables(vm);
}

int loader_linux_boot(struct vm *vm, const struct linux_boot_config *cfg, struct linux_boot_info *info)
{
	int r = loader_linux_load(vm, cfg, info);
	return r ? r : boot_enter_long_mode(&vm->vcpus[0], info->entry, BOOT_ZERO_PAGE_GPA, BOOT_ZERO_PAGE_GPA, 0);
}
