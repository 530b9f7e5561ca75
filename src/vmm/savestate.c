#include "vmm/savestate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "disk/crc32c.h"

static const uint8_t savestate_zeros[SAVESTATE_ALIGN];

static size_t savestate_pad(uint64_t len)
{
	return (size_t)((SAVESTATE_ALIGN - (len % SAVESTATE_ALIGN)) % SAVESTATE_ALIGN);
}

/* ---- writing ---- */

static int savestate_put(struct savestate_writer *w, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (w->error)
		return w->error;
	w->crc = crc32c(w->crc, data, len);
	while (len) {
		ssize_t n = write(w->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return w->error = n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		w->off += (uint64_t)n;
	}
	return 0;
}

static int savestate_put_padded(struct savestate_writer *w, const void *data, size_t len)
{
	savestate_put(w, data, len);
	return savestate_put(w, savestate_zeros, savestate_pad(len));
}

int savestate_write_begin(struct savestate_writer *w, int fd, const void *config, size_t config_len,
			  unsigned nr_vcpus, uint64_t ram_size)
{
	*w = (struct savestate_writer){ .fd = fd };
	if (config_len > SAVESTATE_CONFIG_MAX)
		return w->error = -E2BIG;
	struct savestate_header h = {
		.version = SAVESTATE_VERSION,
		.header_size = sizeof(h),
		.nr_vcpus = nr_vcpus,
		.ram_size = ram_size,
		.config_len = config_len,
		.config_crc = crc32c(0, config, config_len),
	};
	memcpy(h.magic, SAVESTATE_MAGIC, sizeof(h.magic));
	savestate_put(w, &h, sizeof(h));
	return savestate_put_padded(w, config, config_len);
}

int savestate_write_section(struct savestate_writer *w, uint32_t type, uint32_t index, const void *data,
			    size_t len)
{
	struct savestate_section s = { .type = type, .index = index, .length = len };
	savestate_put(w, &s, sizeof(s));
	return savestate_put_padded(w, data, len);
}

static bool savestate_page_zero(const uint8_t *p)
{
	static const uint8_t zero[SAVESTATE_PAGE];
	return !memcmp(p, zero, SAVESTATE_PAGE);
}

/* The next run of pages that are not all zeros among the n pages at mem, from page *p on: true with
 * the run [*p, *q), false when there is none. */
static bool savestate_next_run(const uint8_t *mem, uint64_t n, uint64_t *p, uint64_t *q)
{
	while (*p < n && savestate_page_zero(mem + *p * SAVESTATE_PAGE))
		(*p)++;
	if (*p >= n)
		return false;
	for (*q = *p + 1; *q < n && !savestate_page_zero(mem + *q * SAVESTATE_PAGE);)
		(*q)++;
	return true;
}

int savestate_write_memory(struct savestate_writer *w, const struct guest_mem *m)
{
	for (unsigned r = 0; r < m->nr_regions && !w->error; r++) {
		const struct guest_mem_region *reg = &m->region[r];
		uint64_t pages = reg->size / SAVESTATE_PAGE, q;
		for (uint64_t p = 0; !w->error && savestate_next_run(reg->hva, pages, &p, &q);) {
			struct savestate_mem_run run = { .gpa = reg->gpa + p * SAVESTATE_PAGE, .pages = q - p };
			struct savestate_section s = { .type = SAVESTATE_SEC_MEMORY,
						       .index = w->mem_runs++,
						       .length = sizeof(run) + run.pages * SAVESTATE_PAGE };
			savestate_put(w, &s, sizeof(s));
			savestate_put(w, &run, sizeof(run));
			savestate_put(w, reg->hva + p * SAVESTATE_PAGE, (size_t)(run.pages * SAVESTATE_PAGE));
			p = q;
		}
	}
	return w->error;
}

int savestate_write_devmem(struct savestate_writer *w, const uint8_t *mem, uint64_t size, uint64_t gpa, bool mapped)
{
	if (w->error)
		return w->error;
	if (size % SAVESTATE_PAGE || size > SAVESTATE_DEVMEM_MAX)
		return w->error = -EINVAL;
	/* Two passes: the section's length comes first. */
	struct savestate_devmem h = { .size = size, .gpa = mapped ? gpa : 0, .mapped = mapped };
	uint64_t len = sizeof(h), pages = size / SAVESTATE_PAGE, q;
	for (uint64_t p = 0; savestate_next_run(mem, pages, &p, &q);) {
		h.nr_runs++;
		len += sizeof(struct savestate_devmem_run) + (q - p) * SAVESTATE_PAGE;
		p = q;
	}
	struct savestate_section s = { .type = SAVESTATE_SEC_DEVMEM, .index = 0, .length = len };
	savestate_put(w, &s, sizeof(s));
	savestate_put(w, &h, sizeof(h));
	for (uint64_t p = 0; !w->error && savestate_next_run(mem, pages, &p, &q);) {
		struct savestate_devmem_run run = { .offset = p * SAVESTATE_PAGE, .pages = q - p };
		savestate_put(w, &run, sizeof(run));
		savestate_put(w, mem + p * SAVESTATE_PAGE, (size_t)(run.pages * SAVESTATE_PAGE));
		p = q;
	}
	/* len is a multiple of 8: no padding. */
	return w->error;
}

int savestate_write_end(struct savestate_writer *w)
{
	struct savestate_section s = { .type = SAVESTATE_SEC_END, .length = 8 };
	uint8_t tail[8] = { 0 };
	uint32_t crc = w->crc; /* of everything before END's own header */
	memcpy(tail, &crc, sizeof(crc));
	savestate_put(w, &s, sizeof(s));
	return savestate_put(w, tail, sizeof(tail));
}

/* ---- reading ---- */

static int savestate_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int savestate_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool savestate_type_known(uint32_t t)
{
	return t >= SAVESTATE_SEC_VCPU && t <= SAVESTATE_SEC_DEVMEM;
}

int savestate_open(struct savestate_file *f, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	*f = (struct savestate_file){ .buf = buf, .len = len };
	if (len < sizeof(f->hdr) || memcmp(buf, SAVESTATE_MAGIC, 8))
		return savestate_fail(err, errlen, "not a gen2vm saved-state file (bad signature)");
	memcpy(&f->hdr, buf, sizeof(f->hdr));
	if (f->hdr.version != SAVESTATE_VERSION)
		return savestate_fail(err, errlen, "saved-state format version %u, this gen2vm reads version %u",
				      f->hdr.version, SAVESTATE_VERSION);
	if (f->hdr.header_size != sizeof(f->hdr) || f->hdr.reserved0 || f->hdr.reserved1)
		return savestate_fail(err, errlen, "damaged saved-state file (bad header)");
	if (f->hdr.config_len > SAVESTATE_CONFIG_MAX ||
	    f->hdr.config_len + savestate_pad(f->hdr.config_len) > len - sizeof(f->hdr))
		return savestate_fail(err, errlen, "truncated or damaged saved-state file (configuration copy)");
	f->config = buf + sizeof(f->hdr);
	f->config_len = (size_t)f->hdr.config_len;
	if (crc32c(0, f->config, f->config_len) != f->hdr.config_crc)
		return savestate_fail(err, errlen, "damaged saved-state file (configuration checksum)");
	size_t off = sizeof(f->hdr) + f->config_len + savestate_pad(f->config_len);
	f->first = off;
	for (unsigned n = 0;; n++) {
		struct savestate_section s;
		if (len - off < sizeof(s))
			return savestate_fail(err, errlen, "truncated saved-state file: it ends before section %u", n);
		memcpy(&s, buf + off, sizeof(s));
		size_t room = len - off - sizeof(s);
		if (s.length > room || savestate_pad(s.length) > room - s.length)
			return savestate_fail(err, errlen, "truncated saved-state file: it ends inside section %u", n);
		if (s.type == SAVESTATE_SEC_END) {
			uint32_t want, zero;
			if (s.length != 8 || s.index)
				return savestate_fail(err, errlen, "damaged saved-state file (bad end section)");
			memcpy(&want, buf + off + sizeof(s), 4);
			memcpy(&zero, buf + off + sizeof(s) + 4, 4);
			if (zero || room != 8)
				return savestate_fail(err, errlen, "damaged saved-state file (bytes after its end)");
			if (crc32c(0, buf, off) != want)
				return savestate_fail(err, errlen, "damaged saved-state file (checksum mismatch)");
			f->end = off;
			return 0;
		}
		if (!savestate_type_known(s.type))
			return savestate_fail(err, errlen, "damaged saved-state file (section %u of unknown type %u)", n,
					      s.type);
		off += sizeof(s) + (size_t)s.length + savestate_pad(s.length);
	}
}

bool savestate_next(const struct savestate_file *f, size_t *pos, struct savestate_sec *out)
{
	size_t off = *pos ? *pos : f->first;
	if (off >= f->end)
		return false;
	struct savestate_section s;
	memcpy(&s, f->buf + off, sizeof(s));
	*out = (struct savestate_sec){ .type = s.type, .index = s.index, .data = f->buf + off + sizeof(s),
				       .len = (size_t)s.length };
	*pos = off + sizeof(s) + (size_t)s.length + savestate_pad(s.length);
	return true;
}

int savestate_find(const struct savestate_file *f, uint32_t type, uint32_t index, struct savestate_sec *s)
{
	size_t pos = 0;
	while (savestate_next(f, &pos, s))
		if (s->type == type && s->index == index)
			return 0;
	return -ENOENT;
}

int savestate_check_machine(const struct savestate_file *f, const void *config, size_t config_len,
			    unsigned nr_vcpus, uint64_t ram_size, char *err, size_t errlen)
{
	if (f->config_len != config_len || memcmp(f->config, config, config_len))
		return savestate_fail(err, errlen,
				      "the state was saved from another configuration of this VM (its hardware changed "
				      "since): discard the saved state, or put the configuration back");
	if (f->hdr.nr_vcpus != nr_vcpus)
		return savestate_fail(err, errlen, "the state was saved with %u vCPUs, the VM has %u", f->hdr.nr_vcpus,
				      nr_vcpus);
	if (f->hdr.ram_size != ram_size)
		return savestate_fail(err, errlen, "the state was saved with %llu bytes of RAM, the VM has %llu",
				      (unsigned long long)f->hdr.ram_size, (unsigned long long)ram_size);
	return 0;
}

/* The run a MEMORY section holds, checked against m: 0 with *run and *data, or -EINVAL. */
static int savestate_mem_run_get(const struct savestate_sec *s, const struct guest_mem *m,
				 struct savestate_mem_run *run, const uint8_t **data)
{
	if (s->len < sizeof(*run))
		return -EINVAL;
	memcpy(run, s->data, sizeof(*run));
	if (!run->pages || run->gpa % SAVESTATE_PAGE || run->pages > (s->len - sizeof(*run)) / SAVESTATE_PAGE ||
	    run->pages * SAVESTATE_PAGE != s->len - sizeof(*run) || !guest_mem_valid(m, run->gpa, s->len - sizeof(*run)))
		return -EINVAL;
	*data = s->data + sizeof(*run);
	return 0;
}

int savestate_check_memory(const struct savestate_file *f, const struct guest_mem *m, char *err, size_t errlen)
{
	size_t pos = 0;
	struct savestate_sec s;
	while (savestate_next(f, &pos, &s)) {
		struct savestate_mem_run run;
		const uint8_t *data;
		if (s.type == SAVESTATE_SEC_MEMORY && savestate_mem_run_get(&s, m, &run, &data))
			return savestate_fail(err, errlen, "damaged saved-state file (memory run %u is not in guest RAM)",
					      s.index);
	}
	return 0;
}

int savestate_load_memory(const struct savestate_file *f, const struct guest_mem *m)
{
	size_t pos = 0;
	struct savestate_sec s;
	while (savestate_next(f, &pos, &s)) {
		struct savestate_mem_run run;
		const uint8_t *data;
		if (s.type != SAVESTATE_SEC_MEMORY)
			continue;
		if (savestate_mem_run_get(&s, m, &run, &data))
			return -EFAULT;
		if (guest_mem_write(m, run.gpa, data, (size_t)(run.pages * SAVESTATE_PAGE)))
			return -EFAULT;
	}
	return 0;
}

int savestate_devmem_check(const struct savestate_sec *s, struct savestate_devmem *out, char *err, size_t errlen)
{
	struct savestate_devmem h;
	if (s->len < sizeof(h))
		return savestate_fail(err, errlen, "damaged saved-state file (device memory: truncated)");
	memcpy(&h, s->data, sizeof(h));
	if (!h.size || h.size % SAVESTATE_PAGE || h.size > SAVESTATE_DEVMEM_MAX || h.mapped > 1 || h.gpa % SAVESTATE_PAGE ||
	    (!h.mapped && h.gpa) || h.nr_runs > h.size / SAVESTATE_PAGE)
		return savestate_fail(err, errlen, "damaged saved-state file (device memory: bad header)");
	size_t off = sizeof(h);
	uint64_t next = 0; /* the first offset the next run may start at */
	for (uint32_t i = 0; i < h.nr_runs; i++) {
		struct savestate_devmem_run run;
		if (s->len - off < sizeof(run))
			return savestate_fail(err, errlen, "damaged saved-state file (device memory: run %u truncated)", i);
		memcpy(&run, s->data + off, sizeof(run));
		off += sizeof(run);
		/* size <= SAVESTATE_DEVMEM_MAX: offset < size and pages <= size / 4096 keep the sums small. */
		if (run.offset % SAVESTATE_PAGE || run.offset < next || run.offset >= h.size || !run.pages ||
		    run.pages > (h.size - run.offset) / SAVESTATE_PAGE || run.pages * SAVESTATE_PAGE > s->len - off)
			return savestate_fail(err, errlen, "damaged saved-state file (device memory: bad run %u)", i);
		off += (size_t)(run.pages * SAVESTATE_PAGE);
		next = run.offset + run.pages * SAVESTATE_PAGE;
	}
	if (off != s->len)
		return savestate_fail(err, errlen, "damaged saved-state file (device memory: bytes after its runs)");
	*out = h;
	return 0;
}

int savestate_devmem_load(const struct savestate_sec *s, uint8_t *mem, uint64_t size)
{
	struct savestate_devmem h;
	if (savestate_devmem_check(s, &h, NULL, 0) || h.size != size)
		return -EINVAL;
	size_t off = sizeof(h);
	for (uint32_t i = 0; i < h.nr_runs; i++) {
		struct savestate_devmem_run run;
		memcpy(&run, s->data + off, sizeof(run));
		off += sizeof(run);
		memcpy(mem + run.offset, s->data + off, (size_t)(run.pages * SAVESTATE_PAGE));
		off += (size_t)(run.pages * SAVESTATE_PAGE);
	}
	return 0;
}
