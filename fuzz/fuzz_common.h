/* Shared by the disk-image fuzz targets: a valid template image is patched by the input
 * (records of u32 offset, u8 length, bytes), checksums are optionally fixed up so the parsers'
 * deeper checks are reached, and the result is opened, read, written, trimmed and closed. */
#ifndef GEN2VM_FUZZ_COMMON_H
#define GEN2VM_FUZZ_COMMON_H

#include "disk/disk.h"
#include "util/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Two templates: [0] a dynamic image, [1] a differencing child of a parent made once at start-up
 * (its locator names the parent's absolute path, so the patched child still finds it). */
struct fz_tpl {
	uint8_t *img;
	size_t len;
	uint8_t *dirty; /* per 4 KiB page: non-zero in the template or patched */
};
static struct fz_tpl fz_tpl[2];
static char fz_parent_path[64];

static void fz_parent_cleanup(void)
{
	if (fz_parent_path[0])
		unlink(fz_parent_path);
}

static void fz_write_some(const char *path)
{
	struct disk *d;
	if (disk_open(path, 0, &d))
		abort();
	uint8_t b[8192];
	memset(b, 0x5a, sizeof(b));
	disk_pwrite(d, b, sizeof(b), 0);
	disk_pwrite(d, b, sizeof(b), d->size / 2);
	d->ops->flush(d);
	disk_close(d);
}

/* Makes both templates from o (a dynamic image of o->format); the parent of [1] is o too. */
static void fz_template_make(const struct disk_create_opts *o)
{
	log_set_level(LOG_ERROR);
	snprintf(fz_parent_path, sizeof(fz_parent_path), "/tmp/g2vm-fuzz-parent-%d", (int)getpid());
	unlink(fz_parent_path);
	if (disk_create(fz_parent_path, o))
		abort();
	atexit(fz_parent_cleanup);
	fz_write_some(fz_parent_path);
	for (int k = 0; k < 2; k++) {
		char path[] = "/tmp/g2vm-fuzz-XXXXXX";
		int fd = mkstemp(path);
		close(fd);
		unlink(path);
		struct disk_create_opts c = *o;
		if (k) {
			c.parent = fz_parent_path;
			c.size = 0;
		}
		if (disk_create(path, &c))
			abort();
		fz_write_some(path);
		FILE *f = fopen(path, "rb");
		fseek(f, 0, SEEK_END);
		struct fz_tpl *t = &fz_tpl[k];
		t->len = (size_t)ftell(f);
		fseek(f, 0, SEEK_SET);
		t->img = malloc(t->len);
		if (fread(t->img, 1, t->len, f) != t->len)
			abort();
		fclose(f);
		unlink(path);
		static const uint8_t zero[4096];
		t->dirty = calloc(t->len / 4096 + 1, 1);
		for (size_t pg = 0; pg * 4096 < t->len; pg++) {
			size_t n = t->len - pg * 4096 < 4096 ? t->len - pg * 4096 : 4096;
			t->dirty[pg] = memcmp(t->img + pg * 4096, zero, n) != 0;
		}
	}
	log_set_level(getenv("FUZZ_VERBOSE") ? LOG_DEBUG : LOG_ERROR);
}

/* A fresh copy of the template the flags byte picks (0x40: the differencing one). */
static const struct fz_tpl *fz_template_copy(const uint8_t *in, size_t n, uint8_t **img, uint8_t **dirty)
{
	const struct fz_tpl *t = &fz_tpl[n && (in[0] & 0x40) ? 1 : 0];
	*img = malloc(t->len);
	memcpy(*img, t->img, t->len);
	*dirty = malloc(t->len / 4096 + 1);
	memcpy(*dirty, t->dirty, t->len / 4096 + 1);
	return t;
}

/* Applies the patches; returns the flags byte (first input byte) or -1. */
static int fz_patch(uint8_t *img, size_t len, const uint8_t *in, size_t n, uint8_t *dirty)
{
	if (n < 1)
		return -1;
	int flags = in[0];
	size_t i = 1;
	while (i + 5 <= n) {
		uint32_t off;
		memcpy(&off, in + i, 4);
		uint8_t l = in[i + 4];
		i += 5;
		if (l > n - i)
			l = (uint8_t)(n - i);
		off %= (uint32_t)len;
		if (l > len - off)
			l = (uint8_t)(len - off);
		memcpy(img + off, in + i, l);
		for (size_t pg = off / 4096; l && pg <= (off + l - 1) / 4096; pg++)
			dirty[pg] = 1;
		i += l;
	}
	return flags;
}

/* Writes only the pages that can be non-zero: the images are mostly holes. */
static void fz_exercise(const uint8_t *img, size_t len, int flags, const uint8_t *dirty)
{
	int fd = memfd_create("fuzz-image", 0);
	if (fd < 0)
		return;
	if (ftruncate(fd, (off_t)len)) {
		close(fd);
		return;
	}
	for (size_t pg = 0; pg * 4096 < len; pg++) {
		size_t n = len - pg * 4096 < 4096 ? len - pg * 4096 : 4096;
		if (dirty[pg] && pwrite(fd, img + pg * 4096, n, (off_t)(pg * 4096)) != (ssize_t)n) {
			close(fd);
			return;
		}
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct disk *d;
	if (!disk_open(path, (flags & 1) ? DISK_RDONLY : 0, &d)) {
		uint8_t b[65536];
		uint64_t offs[4] = { 0, d->size / 2, d->size > sizeof(b) ? d->size - sizeof(b) : 0,
				     (d->size / 3) & ~511ull };
		for (int i = 0; i < 4; i++) {
			uint64_t n = d->size - offs[i] < sizeof(b) ? d->size - offs[i] : sizeof(b);
			disk_pread(d, b, n, offs[i]);
			if (!(flags & 1) && (flags & 2))
				disk_pwrite(d, b, n < 4096 ? n : 4096, offs[i]);
		}
		if (!(flags & 1) && (flags & 4) && d->ops->discard)
			d->ops->discard(d, 0, d->size < (4u << 20) ? d->size : (4u << 20));
		if (!(flags & 1) && (flags & 8)) {
			/* compact trusts only what open validated: it moves blocks and truncates. */
			struct disk_compact_stats st;
			disk_compact(d, NULL, NULL, &st);
		}
		disk_close(d);
	}
	close(fd);
}

#endif
