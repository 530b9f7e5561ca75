/* libFuzzer target for VHDX log replay (src/disk/vhdx.c: vhdx_log_load, vhdx_log_check_targets,
 * vhdx_log_apply). A log is untrusted input: fuzz_vhdx reaches it only through byte patches and
 * checksums that rarely line up, so here the harness builds well-formed logs (right signatures,
 * sequence numbers and CRC-32C) from a compact description, and the fuzzer chooses what they write:
 * where (relative to the region tables, BAT, metadata, log, allocated blocks or the end of the file),
 * how much, what, and how large the file was said to be.
 *
 * Input: byte 0 flags (bit 0 read-only open, bit 1 leave one entry's checksum wrong, bits 2-3
 * entries - 1); per entry: u8 descriptor count (mod 8), u8 entry flags (bit 0 tail = the first
 * entry, bit 1 skip a sequence number), u32 last_file_offset (in 64 KiB units); per descriptor:
 * u8 kind (0 data, 1 zero, 2 BAT sector with patched entries, 3 a bad signature), u8 anchor, u32
 * offset (4 KiB units, or bytes when the anchor is 7), u32 length (4 KiB units, zero descriptors),
 * u8 fill; then patch records as fuzz_common.h's (u32 offset, u8 length, bytes) over the whole image.
 *
 * Oracles (abort, so libFuzzer reports them): a refused open must leave the file byte for byte as it
 * was; an accepted read-write open must leave an image that opens again; the file never grows by
 * more than VHDX_LOG_MAX_GROWTH. */
#include "fuzz_common.h"
#include "disk/crc32c.h"
#include "disk/vhdx_format.h"

#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t lg_off, lg_len, bat_off, bat_len, meta_off, meta_len, blk_off[4];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct disk_create_opts o = { .format = "vhdx", .size = 64 << 20, .block_size = 1 << 20 };
	fz_template_make(&o);
	const uint8_t *t = fz_tpl[0].img;
	struct vhdx_header h;
	memcpy(&h, t + VHDX_HEADER1_OFF, sizeof(h));
	lg_off = h.log_offset;
	lg_len = h.log_length;
	static const uint8_t guid_bat[16] = { 0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42,
					      0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08 };
	struct vhdx_region_hdr rh;
	memcpy(&rh, t + VHDX_REGION1_OFF, sizeof(rh));
	for (uint32_t i = 0; i < rh.entry_count && i < 8; i++) {
		struct vhdx_region_entry re;
		memcpy(&re, t + VHDX_REGION1_OFF + 16 + 32 * i, sizeof(re));
		if (!memcmp(re.guid, guid_bat, 16)) {
			bat_off = re.file_offset;
			bat_len = re.length;
		} else {
			meta_off = re.file_offset;
			meta_len = re.length;
		}
	}
	/* The blocks fz_write_some allocated (at 0 and at the middle of the disk). */
	unsigned n = 0;
	for (uint64_t i = 0; i < bat_len / 8 && n < 4 && bat_off + 8 * i + 8 <= fz_tpl[0].len; i++) {
		uint64_t e;
		memcpy(&e, t + bat_off + 8 * i, 8);
		if ((e & 7) == VHDX_PAYLOAD_FULLY_PRESENT)
			blk_off[n++] = (e >> 20) << 20;
	}
	if (!lg_off || !bat_off || !meta_off || !n)
		abort();
	return 0;
}

struct rd {
	const uint8_t *p;
	size_t n;
};

static uint64_t rd_get(struct rd *r, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes; i++) {
		v |= (uint64_t)(r->n ? *r->p : 0) << (8 * i);
		if (r->n) {
			r->p++;
			r->n--;
		}
	}
	return v;
}

static uint64_t anchor_of(unsigned a, size_t len)
{
	switch (a % 8) {
	case 0: return VHDX_REGION1_OFF;
	case 1: return bat_off;
	case 2: return meta_off;
	case 3: return lg_off;
	case 4: return blk_off[0];
	case 5: return blk_off[1] ? blk_off[1] : blk_off[0];
	case 6: return (len + 4095) / 4096 * 4096; /* the end of the file: growth */
	default: return 0;
	}
}

/* Builds one entry at *at in the log; returns its length (0 if it does not fit). */
static size_t log_entry_build(uint8_t *img, size_t len, struct rd *in, const uint8_t *guid, uint64_t *seq, size_t at)
{
	unsigned nd = (unsigned)rd_get(in, 1) % 8, eflags = (unsigned)rd_get(in, 1);
	uint64_t last = rd_get(in, 4) << 16;
	uint32_t tail = eflags & 1 ? (uint32_t)at : 0;
	*seq += 1 + (eflags >> 1 & 1);
	struct {
		char sig[4];
		uint64_t off, zlen;
		uint8_t sec[4096];
	} d[8];
	unsigned ndata = 0;
	for (unsigned i = 0; i < nd; i++) {
		unsigned kind = (unsigned)rd_get(in, 1) % 4, anchor = (unsigned)rd_get(in, 1);
		uint64_t off = rd_get(in, 4), zl = rd_get(in, 4);
		uint8_t fill = (uint8_t)rd_get(in, 1);
		d[i].off = anchor % 8 == 7 ? off : anchor_of(anchor, len) + off * 4096;
		d[i].zlen = zl * 4096;
		memset(d[i].sec, fill, 4096);
		memcpy(d[i].sig, kind == 1 ? "zero" : kind == 3 ? "xxxx" : "desc", 4);
		if (kind == 2 && d[i].off + 4096 <= len) {
			/* A BAT sector as it is, with two entries replaced: a plausible update. */
			memcpy(d[i].sec, img + d[i].off, 4096);
			for (int k = 0; k < 2; k++) {
				unsigned slot = (unsigned)rd_get(in, 1) % 512;
				uint64_t e = rd_get(in, 8);
				memcpy(d[i].sec + 8 * slot, &e, 8);
			}
		}
		ndata += kind != 1;
	}
	size_t desc_bytes = (64 + 32 * (size_t)nd + 4095) / 4096 * 4096, elen = desc_bytes + 4096 * (size_t)ndata;
	if (at + elen > lg_len || lg_off + at + elen > len)
		return 0;
	uint8_t *e = img + lg_off + at;
	memset(e, 0, elen);
	struct vhdx_log_hdr lh = { .entry_length = (uint32_t)elen, .tail = tail, .seq = *seq, .descriptor_count = nd,
				   .flushed_file_offset = last, .last_file_offset = last };
	memcpy(lh.signature, "loge", 4);
	memcpy(lh.log_guid, guid, 16);
	memcpy(e, &lh, sizeof(lh));
	for (unsigned i = 0, k = 0; i < nd; i++) {
		struct vhdx_log_desc ds = { .file_offset = d[i].off, .seq = *seq };
		memcpy(ds.signature, d[i].sig, 4);
		if (!memcmp(d[i].sig, "zero", 4)) {
			ds.leading_bytes = d[i].zlen;
		} else {
			memcpy(&ds.leading_bytes, d[i].sec, 8);
			memcpy(&ds.trailing_bytes, d[i].sec + 4092, 4);
			struct vhdx_log_data dt = { .seq_high = (uint32_t)(*seq >> 32), .seq_low = (uint32_t)*seq };
			memcpy(dt.signature, "data", 4);
			memcpy(dt.data, d[i].sec + 8, sizeof(dt.data));
			memcpy(e + desc_bytes + 4096 * k++, &dt, sizeof(dt));
		}
		memcpy(e + 64 + 32 * (size_t)i, &ds, sizeof(ds));
	}
	uint32_t c = crc32c(0, e, elen);
	memcpy(e + 4, &c, 4);
	return elen;
}

static void header_set_log_guid(uint8_t *img, const uint8_t *guid)
{
	for (int i = 0; i < 2; i++) {
		uint8_t *h = img + (i ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF);
		memcpy(h + 48, guid, 16);
		memset(h + 4, 0, 4);
		uint32_t c = crc32c(0, h, 4096);
		memcpy(h + 4, &c, 4);
	}
}

static void file_read_all(int fd, uint8_t *buf, size_t len)
{
	if (pread(fd, buf, len, 0) != (ssize_t)len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const struct fz_tpl *t = &fz_tpl[0];
	size_t len = t->len;
	uint8_t *img = malloc(len), *dirty = malloc(len / 4096 + 1);
	memcpy(img, t->img, len);
	memset(dirty, 1, len / 4096 + 1);
	struct rd in = { data + 1, size - 1 };
	int flags = data[0];
	uint8_t guid[16];
	memset(guid, 0x5c, sizeof(guid));
	header_set_log_guid(img, guid);
	unsigned nent = 1 + ((flags >> 2) & 3);
	size_t at = 0;
	uint64_t seq = 100;
	for (unsigned i = 0; i < nent; i++) {
		size_t n = log_entry_build(img, len, &in, guid, &seq, at);
		if (!n)
			break;
		if ((flags & 2) && i == nent - 1)
			img[lg_off + at + 4] ^= 1;
		at += n;
	}
	fz_patch(img, len, in.p - 1, in.n + 1, dirty); /* (fz_patch skips its first byte, a flags byte) */

	int fd = memfd_create("fuzz-vhdx-log", 0);
	if (fd < 0 || ftruncate(fd, (off_t)len) || pwrite(fd, img, len, 0) != (ssize_t)len)
		abort();
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct disk *d;
	bool ro = flags & 1;
	int rc = disk_open(path, ro ? DISK_RDONLY : 0, &d);
	struct stat st;
	if (fstat(fd, &st))
		abort();
	if (rc || ro) {
		/* Refused, or read-only: not one byte of the file may have changed. */
		uint8_t *now = malloc(len);
		if ((size_t)st.st_size != len)
			abort();
		file_read_all(fd, now, len);
		if (memcmp(now, img, len))
			abort();
		free(now);
	} else if ((uint64_t)st.st_size > len + VHDX_LOG_MAX_GROWTH + VHDX_MAX_BLOCK) {
		abort();
	}
	if (!rc) {
		uint8_t b[65536];
		disk_pread(d, b, sizeof(b), 0);
		disk_pread(d, b, sizeof(b), d->size / 2);
		disk_close(d);
		/* What a replay left must open again, as a valid image with nothing more to replay. */
		if (!ro && disk_open(path, DISK_RDONLY, &d))
			abort();
		if (!ro)
			disk_close(d);
	}
	close(fd);
	free(dirty);
	free(img);
	return 0;
}
