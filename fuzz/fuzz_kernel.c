/* libFuzzer target for the kernel and test-guest loaders (src/vmm/loader.c, src/vmm/decompress.c),
 * which read files the user names with --kernel, --initrd and --elf: ELF program headers, the bzImage
 * setup header, and its gzip/xz/zstd/LZ4 payload.
 *
 * Input: byte 0 flags (bit 0: also an initrd, the last quarter of the input; bit 1: a command line,
 * the first 64 bytes after the flags; bit 2: load as a test guest's ELF instead of a kernel; bit 3:
 * decompress the rest directly). The rest is the file. The loaders write only into guest RAM (64 MiB
 * here, no vCPU). Must never crash, hang or read outside the file. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/log.h"
#include "vmm/decompress.h"
#include "vmm/loader.h"
#include "vmm/memory.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vm vm;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR + 0);
	if (guest_mem_init(&vm.mem, 64ull << 20))
		abort();
	return 0;
}

/* A memfd holding n bytes of p, and its /proc path in path. -1 on failure. */
static int file_of(const uint8_t *p, size_t n, char path[64])
{
	int fd = memfd_create("fuzz-kernel", 0);
	if (fd < 0)
		return -1;
	if (n && write(fd, p, n) != (ssize_t)n) {
		close(fd);
		return -1;
	}
	snprintf(path, 64, "/proc/self/fd/%d", fd);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned flags = data[0];
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	if (flags & 8) {
		uint8_t *out = NULL;
		size_t outlen = 0;
		const char *fmt = NULL;
		if (!decompress_buffer(p, n, 0, 16u << 20, &out, &outlen, &fmt))
			free(out);
		return 0;
	}
	char cmdline[65] = "";
	if ((flags & 2) && n >= 64) {
		memcpy(cmdline, p, 64);
		p += 64;
		n -= 64;
	}
	size_t rdlen = (flags & 1) ? n / 4 : 0;
	char kpath[64], rpath[64];
	int kfd = file_of(p, n - rdlen, kpath), rfd = rdlen ? file_of(p + n - rdlen, rdlen, rpath) : -1;
	if (kfd >= 0) {
		if (flags & 4) {
			uint8_t *img;
			size_t len;
			uint64_t entry, end;
			if (!loader_read_file(kpath, &img, &len)) {
				loader_elf_load(&vm, img, len, kpath, &entry, &end);
				free(img);
			}
		} else {
			struct linux_boot_config c = { .kernel = kpath, .initrd = rfd >= 0 ? rpath : NULL,
						       .cmdline = (flags & 2) ? cmdline : NULL, .rsdp_gpa = 0xe0000 };
			struct linux_boot_info info;
			loader_linux_load(&vm, &c, &info);
		}
		close(kfd);
	}
	if (rfd >= 0)
		close(rfd);
	return 0;
}
