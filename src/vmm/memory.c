#include "vmm/memory.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define TWO_MIB (2ull << 20)

static void guest_mem_add(struct guest_mem *m, uint64_t gpa, uint64_t size, uint64_t off)
{
	struct guest_mem_region *r = &m->region[m->nr_regions++];
	r->gpa = gpa;
	r->size = size;
	r->fd_offset = off;
	r->hva = m->base + off;
}

int guest_mem_init(struct guest_mem *m, uint64_t ram_size)
{
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	if (ram_size < TWO_MIB || ram_size % TWO_MIB)
		return -EINVAL;
	int fd = memfd_create("gen2vm-ram", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)ram_size) < 0) {
		int e = errno;
		close(fd);
		return e == EFBIG ? -ENOMEM : -e;
	}
	/* MAP_NORESERVE: the guest's RAM is touched lazily; a 64 GiB guest must not need 64 GiB free. */
	void *p = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		close(fd);
		return -e;
	}
	/* 2 MiB pages where the host allows them for shared memory (shmem_enabled "advise"): fewer TLB
	 * misses and nested page faults for the guest. Advice only: a host that refuses it is fine. */
	(void)madvise(p, ram_size, MADV_HUGEPAGE);
	m->memfd = fd;
	m->base = p;
	m->ram_size = ram_size;
	uint64_t low = ram_size < GUEST_MMIO_GAP_START ? ram_size : GUEST_MMIO_GAP_START;
	guest_mem_add(m, 0, low, 0);
	if (ram_size > low)
		guest_mem_add(m, GUEST_HIGH_RAM_START, ram_size - low, low);
	return 0;
}

void guest_mem_destroy(struct guest_mem *m)
{
	if (m->base)
		munmap(m->base, m->ram_size);
	if (m->memfd >= 0)
		close(m->memfd);
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
}

static const struct guest_mem_region *guest_mem_find(const struct guest_mem *m, uint64_t gpa)
{
	for (unsigned i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->region[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	const struct guest_mem_region *r = guest_mem_find(m, gpa);
	if (!r)
		return NULL;
	uint64_t off = gpa - r->gpa;
	if (len > r->size - off)
		return NULL;
	return r->hva + off;
}

int guest_mem_valid(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	return guest_mem_ptr(m, gpa, len) != NULL;
}

int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *buf, size_t len)
{
	const void *p = guest_mem_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *buf, size_t len)
{
	void *p = guest_mem_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	return 0;
}

int guest_mem_clear(struct guest_mem *m)
{
	if (m->memfd >= 0) {
		off_t end = lseek(m->memfd, 0, SEEK_END);
		if (end < 0 || fallocate(m->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, end) < 0)
			return -errno;
		return 0;
	}
	for (unsigned i = 0; i < m->nr_regions; i++)
		memset(m->region[i].hva, 0, m->region[i].size);
	return 0;
}
