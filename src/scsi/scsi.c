/* SCSI target core: SPC/SBC disk and MMC DVD command sets (see scsi.h). */
#include "scsi/scsi.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "disk/disk.h"

/* --- byte helpers ------------------------------------------------------------------------------ */

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }

uint32_t scsi_iov_copy_to(const struct iovec *iov, int iovcnt, const void *src, uint32_t len)
{
	uint32_t done = 0;
	for (int i = 0; i < iovcnt && done < len; i++) {
		uint32_t n = (uint32_t)(iov[i].iov_len < len - done ? iov[i].iov_len : len - done);
		memcpy(iov[i].iov_base, (const uint8_t *)src + done, n);
		done += n;
	}
	return done;
}

uint32_t scsi_iov_copy_from(const struct iovec *iov, int iovcnt, void *dst, uint32_t len)
{
	uint32_t done = 0;
	for (int i = 0; i < iovcnt && done < len; i++) {
		uint32_t n = (uint32_t)(iov[i].iov_len < len - done ? iov[i].iov_len : len - done);
		memcpy((uint8_t *)dst + done, iov[i].iov_base, n);
		done += n;
	}
	return done;
}

void scsi_cmd_set_sense(struct scsi_cmd *c, uint8_t key, uint16_t asc)
{
	memset(c->sense, 0, sizeof(c->sense));
	c->sense[0] = 0x70; /* current error, fixed format */
	c->sense[2] = key & 0xF;
	c->sense[7] = SCSI_SENSE_LEN - 8;
	c->sense[12] = (uint8_t)(asc >> 8);
	c->sense[13] = (uint8_t)asc;
	c->sense_len = SCSI_SENSE_LEN;
	c->status = SCSI_STATUS_CHECK_CONDITION;
	c->xfer = 0;
	c->io.op = SCSI_IO_NONE;
}

static int fail(struct scsi_cmd *c, uint8_t key, uint16_t asc)
{
	scsi_cmd_set_sense(c, key, asc);
	return SCSI_DONE;
}

static int invalid_cdb(struct scsi_cmd *c)
{
	return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}

/* Data-in: at most alloc bytes of the n generated go to the buffer. */
static int reply(struct scsi_cmd *c, const void *data, uint32_t n, uint32_t alloc)
{
	if (n > alloc)
		n = alloc;
	if (c->dir != SCSI_DIR_IN)
		n = 0;
	c->xfer = scsi_iov_copy_to(c->iov, c->iovcnt, data, n < c->buf_len ? n : c->buf_len);
	c->status = SCSI_STATUS_GOOD;
	return SCSI_DONE;
}

static int good(struct scsi_cmd *c)
{
	c->status = SCSI_STATUS_GOOD;
	c->xfer = 0;
	return SCSI_DONE;
}

static bool has_media(const struct scsi_lun *l)
{
	return l->disk != NULL && l->nblocks != 0;
}

static int not_ready(struct scsi_lun *l, struct scsi_cmd *c)
{
	return fail(c, SCSI_SENSE_NOT_READY,
		    l->tray_open ? SCSI_ASC_MEDIUM_NOT_PRESENT_TRAY_OPEN : SCSI_ASC_MEDIUM_NOT_PRESENT);
}

/* --- LUN setup ---------------------------------------------------------------------------------- */

int scsi_lun_init(struct scsi_lun *l, enum scsi_dev_type type, struct disk *disk, bool readonly,
		  bool native_4k, uint32_t id, const char *serial)
{
	memset(l, 0, sizeof(*l));
	l->type = type;
	l->readonly = readonly || type == SCSI_TYPE_CDROM || (disk && disk->readonly);
	l->max_transfer = 1u << 20;
	l->wce = true;
	if (type == SCSI_TYPE_CDROM) {
		l->block_size = l->phys_block = 2048;
	} else {
		if (!disk)
			return -EINVAL;
		l->block_size = native_4k ? 4096 : (disk->logical_sector ? disk->logical_sector : 512);
		l->phys_block = disk->physical_sector > l->block_size ? disk->physical_sector : 4096;
		if (l->phys_block < l->block_size)
			l->phys_block = l->block_size;
	}
	if (serial && *serial)
		snprintf(l->serial, sizeof(l->serial), "%s", serial);
	else
		snprintf(l->serial, sizeof(l->serial), "GEN2VM%08X", id);
	/* NAA 6 (IEEE registered extended): a fixed company id, then the unit id twice over. */
	l->naa[0] = 0x60;
	l->naa[1] = 0x02;
	l->naa[2] = 0x24;
	l->naa[3] = 0x80; /* ours: "gen2vm" */
	put32(l->naa + 4, id);
	put32(l->naa + 8, id ^ 0x67656e32u);
	put32(l->naa + 12, 0x766d0000u | (id & 0xFFFF));
	if (disk) {
		l->disk = disk;
		l->nblocks = disk->size / l->block_size;
		if (!l->nblocks)
			return -EINVAL;
		l->can_discard = !l->readonly && disk->ops && disk->ops->discard;
		l->discard_zeroes = l->can_discard && disk->discard_zeroes;
	}
	return 0;
}

int scsi_lun_set_media(struct scsi_lun *l, struct disk *d)
{
	if (l->type != SCSI_TYPE_CDROM)
		return -EINVAL;
	if (d && d->size / 2048 == 0)
		return -EINVAL;
	l->disk = d;
	l->nblocks = d ? d->size / 2048 : 0;
	l->tray_open = false;
	l->media_event = d ? SCSI_MEV_NEW_MEDIA : SCSI_MEV_MEDIA_REMOVAL;
	l->pending_ua = SCSI_ASC_MEDIUM_CHANGED;
	return 0;
}

/* --- INQUIRY ------------------------------------------------------------------------------------- */

static uint32_t inquiry_std(const struct scsi_lun *l, uint8_t *b)
{
	memset(b, 0, 36);
	if (!l) {
		b[0] = 0x7F; /* peripheral qualifier 3: no unit at this LUN */
	} else {
		b[0] = (uint8_t)l->type;
		b[1] = l->type == SCSI_TYPE_CDROM ? 0x80 : 0x00; /* RMB */
	}
	b[2] = 0x06; /* SPC-4 */
	b[3] = 0x02; /* response data format 2 */
	b[4] = 36 - 5;
	b[7] = 0x02; /* CMDQUE */
	memcpy(b + 8, "Msft    ", 8);
	memcpy(b + 16, l && l->type == SCSI_TYPE_CDROM ? "Virtual DVD-ROM " : "Virtual Disk    ", 16);
	memcpy(b + 32, "1.0 ", 4);
	return 36;
}

static int do_inquiry(struct scsi_lun *l, struct scsi_cmd *c)
{
	uint8_t b[256];
	uint32_t alloc = be16(c->cdb + 3), n;
	bool evpd = c->cdb[1] & 1;
	uint8_t page = c->cdb[2];
	if (!evpd) {
		if (page)
			return invalid_cdb(c);
		return reply(c, b, inquiry_std(l, b), alloc);
	}
	memset(b, 0, sizeof(b));
	b[0] = l ? (uint8_t)l->type : 0x7F;
	b[1] = page;
	if (!l)
		return invalid_cdb(c);
	bool disk = l->type == SCSI_TYPE_DISK;
	switch (page) {
	case 0x00: {
		static const uint8_t disk_pages[] = { 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2 };
		static const uint8_t dvd_pages[] = { 0x00, 0x80, 0x83 };
		const uint8_t *p = disk ? disk_pages : dvd_pages;
		n = disk ? sizeof(disk_pages) : sizeof(dvd_pages);
		memcpy(b + 4, p, n);
		break;
	}
	case 0x80:
		n = (uint32_t)strlen(l->serial);
		memcpy(b + 4, l->serial, n);
		break;
	case 0x83: {
		uint8_t *d = b + 4;
		/* NAA designator, binary, associated with the LU */
		d[0] = 0x01;
		d[1] = 0x03;
		d[3] = 16;
		memcpy(d + 4, l->naa, 16);
		d += 20;
		/* T10 vendor id designator, ASCII */
		uint32_t sl = (uint32_t)strlen(l->serial);
		d[0] = 0x02;
		d[1] = 0x01;
		d[3] = (uint8_t)(8 + sl);
		memcpy(d + 4, "Msft    ", 8);
		memcpy(d + 12, l->serial, sl);
		d += 12 + sl;
		n = (uint32_t)(d - (b + 4));
		break;
	}
	case 0xB0: /* block limits */
		if (!disk)
			return invalid_cdb(c);
		n = 0x3C;
		put16(b + 6, (uint16_t)(l->phys_block / l->block_size)); /* optimal granularity */
		put32(b + 8, l->max_transfer / l->block_size);            /* maximum transfer length */
		put32(b + 12, l->max_transfer / l->block_size);           /* optimal transfer length */
		if (l->can_discard) {
			put32(b + 20, 0xFFFFFFFFu);            /* maximum unmap LBA count */
			put32(b + 24, SCSI_MAX_UNMAP_DESC);    /* maximum unmap block descriptor count */
			put32(b + 28, l->phys_block / l->block_size); /* optimal unmap granularity */
			put64(b + 36, 0xFFFFFFFFu);            /* maximum write same length */
		}
		break;
	case 0xB1: /* block device characteristics */
		if (!disk)
			return invalid_cdb(c);
		n = 0x3C;
		put16(b + 4, 1); /* non-rotating medium */
		break;
	case 0xB2: /* logical block provisioning */
		if (!disk)
			return invalid_cdb(c);
		n = 4;
		if (l->can_discard) {
			b[5] = (uint8_t)(0x80 | (l->discard_zeroes ? 0x40 | 0x04 : 0)); /* LBPU, LBPWS, LBPRZ */
			b[6] = 0x02;        /* thin provisioned */
		}
		break;
	default:
		return invalid_cdb(c);
	}
	put16(b + 2, (uint16_t)n);
	return reply(c, b, n + 4, alloc);
}

/* --- MODE SENSE / SELECT ------------------------------------------------------------------------ */

static uint32_t mode_page(const struct scsi_lun *l, uint8_t page, uint8_t pc, uint8_t *p)
{
	bool changeable = pc == 1;
	switch (page) {
	case 0x08: /* caching */
		memset(p, 0, 20);
		p[0] = 0x08;
		p[1] = 0x12;
		if (changeable)
			p[2] = 0x04;
		else
			p[2] = (pc == 2 || l->wce) ? 0x04 : 0x00; /* WCE; default is on */
		return 20;
	case 0x0A: /* control */
		memset(p, 0, 12);
		p[0] = 0x0A;
		p[1] = 0x0A;
		if (!changeable) {
			p[3] = 0x10; /* unrestricted reordering allowed */
			put16(p + 10, 0xFFFF);
		}
		return 12;
	case 0x2A: /* MM capabilities and mechanical status */
		memset(p, 0, 22);
		p[0] = 0x2A;
		p[1] = 0x14;
		if (changeable)
			return 22;
		p[2] = 0x3F; /* reads CD-R, CD-RW, method 2, DVD-ROM, DVD-R, DVD-RAM */
		p[5] = 0x01; /* CD-DA commands */
		p[6] = 0x29 | (l->prevent_removal ? 0x02 : 0); /* tray, eject, lock (+ lock state) */
		put16(p + 8, 706 * 8);
		put16(p + 12, 2);
		put16(p + 14, 706 * 8);
		return 22;
	}
	return 0;
}

static int do_mode_sense(struct scsi_lun *l, struct scsi_cmd *c, bool ten)
{
	uint8_t b[256];
	uint8_t page = c->cdb[2] & 0x3F, pc = c->cdb[2] >> 6, sub = c->cdb[3];
	bool dbd = c->cdb[1] & 0x08;
	uint32_t alloc = ten ? be16(c->cdb + 7) : c->cdb[4];
	if (pc == 3)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_SAVING_NOT_SUPPORTED);
	if (sub && !(page == 0x3F && sub == 0xFF))
		return invalid_cdb(c);
	uint32_t hdr = ten ? 8 : 4, n = hdr;
	memset(b, 0, sizeof(b));
	bool disk = l->type == SCSI_TYPE_DISK;
	if (disk && !dbd) {
		uint8_t *bd = b + n;
		put32(bd, l->nblocks > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)l->nblocks);
		put32(bd + 4, l->block_size & 0xFFFFFF);
		n += 8;
	}
	static const uint8_t disk_pages[] = { 0x08, 0x0A }, dvd_pages[] = { 0x2A };
	const uint8_t *pages = disk ? disk_pages : dvd_pages;
	uint32_t np = disk ? 2 : 1;
	bool found = false;
	for (uint32_t i = 0; i < np; i++)
		if (page == 0x3F || page == pages[i]) {
			n += mode_page(l, pages[i], pc, b + n);
			found = true;
		}
	if (!found)
		return invalid_cdb(c);
	uint8_t devspec = disk && l->readonly ? 0x80 : 0x00;
	if (ten) {
		put16(b, (uint16_t)(n - 2));
		b[3] = devspec;
		put16(b + 6, disk && !dbd ? 8 : 0);
	} else {
		b[0] = (uint8_t)(n - 1);
		b[2] = devspec;
		b[3] = disk && !dbd ? 8 : 0;
	}
	return reply(c, b, n, alloc);
}

static int do_mode_select(struct scsi_lun *l, struct scsi_cmd *c, bool ten)
{
	uint32_t plen = ten ? be16(c->cdb + 7) : c->cdb[4];
	if (c->cdb[1] & 0x01) /* SP: we keep no saved pages */
		return invalid_cdb(c);
	if (!plen)
		return good(c);
	if (c->dir != SCSI_DIR_OUT || plen > c->buf_len || plen > 512)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
	uint8_t b[512];
	scsi_iov_copy_from(c->iov, c->iovcnt, b, plen);
	uint32_t hdr = ten ? 8 : 4;
	if (plen < hdr)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
	uint32_t bdl = ten ? be16(b + 6) : b[3];
	uint32_t off = hdr + bdl;
	bool wce = l->wce;
	if (off > plen)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
	while (off < plen) {
		if (plen - off < 2)
			return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
		uint8_t code = b[off] & 0x3F, len = b[off + 1];
		if (b[off] & 0x40 || off + 2u + len > plen) /* sub-page format, or truncated */
			return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_PARAM);
		if (l->type == SCSI_TYPE_DISK && code == 0x08 && len == 0x12)
			wce = b[off + 2] & 0x04;
		else if (!(l->type == SCSI_TYPE_DISK && code == 0x0A && len == 0x0A) &&
			 !(l->type == SCSI_TYPE_CDROM && code == 0x2A))
			return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_PARAM);
		off += 2u + len;
	}
	l->wce = wce;
	return good(c);
}

/* --- reads and writes --------------------------------------------------------------------------- */

static int do_rw(struct scsi_lun *l, struct scsi_cmd *c, bool write, uint64_t lba, uint32_t count, bool fua)
{
	if (!has_media(l))
		return not_ready(l, c);
	if (write && l->readonly)
		return fail(c, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	if (lba > l->nblocks || count > l->nblocks - lba)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	if (!count)
		return good(c);
	uint64_t bytes = (uint64_t)count * l->block_size;
	/* The CDB and the buffer must agree; the direction must match the command. */
	if (bytes != c->buf_len || c->dir != (write ? SCSI_DIR_OUT : SCSI_DIR_IN))
		return invalid_cdb(c);
	c->io.op = write ? SCSI_IO_WRITE : SCSI_IO_READ;
	c->io.off = lba * l->block_size;
	c->io.len = bytes;
	c->io.fua = write && (fua || !l->wce);
	return SCSI_NEED_IO;
}

static int do_unmap(struct scsi_lun *l, struct scsi_cmd *c)
{
	uint32_t plen = be16(c->cdb + 7);
	if (c->cdb[1] & 0x01) /* ANCHOR */
		return invalid_cdb(c);
	if (l->readonly)
		return fail(c, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	if (!plen)
		return good(c);
	if (plen < 8 || plen > c->buf_len || c->dir != SCSI_DIR_OUT)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
	uint8_t b[8 + 16 * SCSI_MAX_UNMAP_DESC];
	uint32_t n = plen < sizeof(b) ? plen : (uint32_t)sizeof(b);
	scsi_iov_copy_from(c->iov, c->iovcnt, b, n);
	uint32_t dlen = be16(b + 2);
	if (dlen % 16 || dlen / 16 > SCSI_MAX_UNMAP_DESC || 8 + dlen > plen)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_PARAM);
	c->io.nr_ranges = 0;
	for (uint32_t i = 0; i < dlen / 16; i++) {
		const uint8_t *d = b + 8 + 16 * i;
		uint64_t lba = be64(d);
		uint32_t cnt = be32(d + 8);
		if (lba > l->nblocks || cnt > l->nblocks - lba)
			return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
		if (!cnt)
			continue;
		c->io.range[c->io.nr_ranges].off = lba * l->block_size;
		c->io.range[c->io.nr_ranges].len = (uint64_t)cnt * l->block_size;
		c->io.nr_ranges++;
	}
	if (!c->io.nr_ranges || !l->can_discard) /* UNMAP is advisory */
		return good(c);
	c->io.op = SCSI_IO_DISCARD;
	return SCSI_NEED_IO;
}

static int do_write_same16(struct scsi_lun *l, struct scsi_cmd *c)
{
	bool unmap = c->cdb[1] & 0x08, ndob = c->cdb[1] & 0x01;
	uint64_t lba = be64(c->cdb + 2);
	uint32_t cnt = be32(c->cdb + 10);
	if (l->readonly)
		return fail(c, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	/* Only the unmapping form: the blocks must read back as zeros, which a discard of ours gives. */
	if (!unmap || !l->discard_zeroes || c->cdb[1] & 0x10)
		return invalid_cdb(c);
	if (lba > l->nblocks || cnt > l->nblocks - lba)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	if (!ndob) {
		if (c->buf_len != l->block_size || c->dir != SCSI_DIR_OUT)
			return invalid_cdb(c);
		uint8_t blk[4096];
		scsi_iov_copy_from(c->iov, c->iovcnt, blk, l->block_size);
		for (uint32_t i = 0; i < l->block_size; i++)
			if (blk[i])
				return invalid_cdb(c);
	}
	if (!cnt) /* "to the end of the medium" is not allowed without a limit: refuse */
		return invalid_cdb(c);
	c->io.op = SCSI_IO_DISCARD;
	c->io.nr_ranges = 1;
	c->io.range[0].off = lba * l->block_size;
	c->io.range[0].len = (uint64_t)cnt * l->block_size;
	return SCSI_NEED_IO;
}

static int do_sync_cache(struct scsi_lun *l, struct scsi_cmd *c, uint64_t lba, uint32_t cnt)
{
	if (!has_media(l))
		return l->type == SCSI_TYPE_CDROM ? not_ready(l, c) : good(c);
	if (lba > l->nblocks || cnt > l->nblocks - lba)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	if (l->readonly)
		return good(c);
	c->io.op = SCSI_IO_FLUSH;
	return SCSI_NEED_IO;
}

static int do_read_capacity(struct scsi_lun *l, struct scsi_cmd *c, bool sixteen)
{
	uint8_t b[32];
	if (!has_media(l))
		return not_ready(l, c);
	memset(b, 0, sizeof(b));
	uint64_t last = l->nblocks - 1;
	if (!sixteen) {
		put32(b, last > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)last);
		put32(b + 4, l->block_size);
		return reply(c, b, 8, 8);
	}
	put64(b, last);
	put32(b + 8, l->block_size);
	uint32_t ratio = l->phys_block / l->block_size, exp = 0;
	while ((1u << exp) < ratio && exp < 15)
		exp++;
	b[13] = (uint8_t)exp;
	if (l->can_discard)
		b[14] = (uint8_t)(0x80 | (l->discard_zeroes ? 0x40 : 0)); /* LBPME, LBPRZ */
	return reply(c, b, 32, be32(c->cdb + 10));
}

/* --- MMC ----------------------------------------------------------------------------------------- */

static void lba_to_msf(uint64_t lba, uint8_t *p)
{
	lba += 150;
	p[0] = 0;
	p[1] = (uint8_t)(lba / (75 * 60));
	p[2] = (uint8_t)((lba / 75) % 60);
	p[3] = (uint8_t)(lba % 75);
}

static int do_read_toc(struct scsi_lun *l, struct scsi_cmd *c)
{
	uint8_t b[64];
	bool msf = c->cdb[1] & 0x02;
	uint8_t fmt = c->cdb[2] & 0x0F, track = c->cdb[6];
	uint32_t alloc = be16(c->cdb + 7), n;
	if (!has_media(l))
		return not_ready(l, c);
	memset(b, 0, sizeof(b));
	if (fmt == 0) {
		if (track > 1 && track != 0xAA)
			return invalid_cdb(c);
		b[2] = 1;
		b[3] = 1;
		n = 4;
		if (track <= 1) {
			b[n + 1] = 0x14; /* ADR 1, data track */
			b[n + 2] = 1;
			if (msf)
				lba_to_msf(0, b + n + 4);
			n += 8;
		}
		b[n + 1] = 0x14;
		b[n + 2] = 0xAA; /* lead-out */
		if (msf)
			lba_to_msf(l->nblocks, b + n + 4);
		else
			put32(b + n + 4, (uint32_t)l->nblocks);
		n += 8;
	} else if (fmt == 1) { /* session information */
		b[2] = 1;
		b[3] = 1;
		b[5] = 0x14;
		b[6] = 1;
		if (msf)
			lba_to_msf(0, b + 8);
		n = 12;
	} else {
		return invalid_cdb(c);
	}
	put16(b, (uint16_t)(n - 2));
	return reply(c, b, n, alloc);
}

static int do_read_disc_info(struct scsi_lun *l, struct scsi_cmd *c)
{
	uint8_t b[34];
	if (c->cdb[1] & 0x07)
		return invalid_cdb(c);
	if (!has_media(l))
		return not_ready(l, c);
	memset(b, 0, sizeof(b));
	put16(b, 32);
	b[2] = 0x0E; /* last session complete, disc complete */
	b[3] = 1;    /* first track */
	b[4] = 1;    /* sessions */
	b[5] = 1;    /* first track in last session */
	b[6] = 1;    /* last track in last session */
	b[7] = 0x20; /* unrestricted use */
	put32(b + 16, 0xFFFFFFFFu);
	put32(b + 20, 0xFFFFFFFFu);
	return reply(c, b, sizeof(b), be16(c->cdb + 7));
}

static int do_get_configuration(struct scsi_lun *l, struct scsi_cmd *c)
{
	uint8_t rt = c->cdb[1] & 0x03;
	uint16_t start = be16(c->cdb + 2);
	uint8_t b[128];
	bool media = has_media(l);
	if (rt == 3)
		return invalid_cdb(c);
	memset(b, 0, sizeof(b));
	put16(b + 6, media ? 0x0010 : 0x0000); /* current profile: DVD-ROM */
	uint32_t n = 8;
	struct feat { uint16_t code; bool current; uint8_t len; uint8_t ver; } feats[] = {
		{ 0x0000, true, 8, 0 }, { 0x0001, true, 8, 2 }, { 0x0002, true, 4, 1 },
		{ 0x0003, true, 4, 2 }, { 0x0010, media, 8, 0 }, { 0x001E, media, 4, 2 },
		{ 0x001F, media, 4, 1 },
	};
	for (size_t i = 0; i < sizeof(feats) / sizeof(feats[0]); i++) {
		const struct feat *f = &feats[i];
		if (f->code < start || (rt == 2 && f->code != start) || (rt == 1 && !f->current))
			continue;
		uint8_t *p = b + n;
		put16(p, f->code);
		p[2] = (uint8_t)(f->ver << 2 | (f->code <= 3 ? 0x02 : 0) | (f->current ? 1 : 0));
		p[3] = f->len;
		switch (f->code) {
		case 0x0000: /* profile list */
			put16(p + 4, 0x0010);
			p[6] = media ? 1 : 0;
			put16(p + 8, 0x0008);
			break;
		case 0x0001: /* core: SCSI */
			put32(p + 4, 1);
			break;
		case 0x0003: /* removable medium: tray, eject, lock */
			p[4] = 0x29 | (l->prevent_removal ? 0x02 : 0);
			break;
		case 0x0010: /* random readable */
			put32(p + 4, 2048);
			put16(p + 8, 1);
			break;
		default:
			break;
		}
		n += 4u + f->len;
	}
	put32(b, n - 4);
	return reply(c, b, n, be16(c->cdb + 7));
}

static int do_gesn(struct scsi_lun *l, struct scsi_cmd *c)
{
	uint8_t b[8];
	if (!(c->cdb[1] & 0x01)) /* only polled operation */
		return invalid_cdb(c);
	memset(b, 0, sizeof(b));
	b[3] = 0x10; /* supported: media class */
	uint32_t n;
	if (c->cdb[4] & 0x10) {
		put16(b, 6);
		b[2] = 0x04; /* media class */
		b[4] = l->media_event;
		b[5] = (uint8_t)((has_media(l) ? 0x02 : 0) | (l->tray_open ? 0x01 : 0));
		l->media_event = SCSI_MEV_NONE;
		n = 8;
	} else {
		put16(b, 2);
		b[2] = 0x80; /* NEA */
		n = 4;
	}
	return reply(c, b, n, be16(c->cdb + 7));
}

static int do_start_stop(struct scsi_lun *l, struct scsi_cmd *c)
{
	bool loej = c->cdb[4] & 0x02, start = c->cdb[4] & 0x01;
	if (l->type != SCSI_TYPE_CDROM || !loej || (c->cdb[4] >> 4))
		return good(c);
	if (start) {
		l->tray_open = false;
		return good(c);
	}
	if (l->prevent_removal)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_REMOVAL_PREVENTED);
	if (l->disk)
		c->eject = true;
	l->disk = NULL;
	l->nblocks = 0;
	l->tray_open = true;
	l->media_event = SCSI_MEV_MEDIA_REMOVAL;
	return good(c);
}

/* --- dispatch ------------------------------------------------------------------------------------ */

static uint32_t cdb_len_for(uint8_t op)
{
	switch (op >> 5) {
	case 0: return 6;
	case 1: case 2: return 10;
	case 4: return 16;
	case 5: return 12;
	default: return 6;
	}
}

static int do_request_sense(struct scsi_lun *l, struct scsi_cmd *c)
{
	struct scsi_cmd t = { 0 };
	if (l->pending_ua) {
		scsi_cmd_set_sense(&t, SCSI_SENSE_UNIT_ATTENTION, l->pending_ua);
		l->pending_ua = 0;
	} else if (l->type == SCSI_TYPE_CDROM && !has_media(l)) {
		not_ready(l, &t);
	} else {
		scsi_cmd_set_sense(&t, SCSI_SENSE_NO_SENSE, SCSI_ASC_NONE);
	}
	return reply(c, t.sense, SCSI_SENSE_LEN, c->cdb[4]);
}

static int report_luns(struct scsi_cmd *c)
{
	uint8_t b[8 + 8 * 256];
	uint32_t n = c->nr_luns > 256 ? 256 : c->nr_luns;
	if (be32(c->cdb + 6) < 16)
		return invalid_cdb(c);
	memset(b, 0, 8 + 8 * n);
	put32(b, 8 * n);
	for (uint32_t i = 0; i < n; i++) {
		b[8 + 8 * i] = (uint8_t)((c->luns[i] >> 8) & 0x3F);
		b[8 + 8 * i + 1] = (uint8_t)c->luns[i];
	}
	return reply(c, b, 8 + 8 * n, be32(c->cdb + 6));
}

int scsi_lun_execute(struct scsi_lun *l, struct scsi_cmd *c)
{
	c->status = SCSI_STATUS_GOOD;
	c->sense_len = 0;
	c->xfer = 0;
	c->eject = false;
	c->io.op = SCSI_IO_NONE;
	c->io.nr_ranges = 0;
	if (c->cdb_len < 6 || c->cdb_len > 16)
		return invalid_cdb(c);
	uint8_t op = c->cdb[0];
	if (c->cdb_len < cdb_len_for(op))
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
	if (op == SCSI_OP_REPORT_LUNS)
		return report_luns(c);
	if (op == SCSI_OP_INQUIRY)
		return do_inquiry(l, c);
	if (!l)
		return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LUN_NOT_SUPPORTED);
	if (op == SCSI_OP_REQUEST_SENSE)
		return do_request_sense(l, c);
	if (l->pending_ua && op != SCSI_OP_GESN && op != SCSI_OP_GET_CONFIGURATION) {
		uint16_t ua = l->pending_ua;
		l->pending_ua = 0;
		return fail(c, SCSI_SENSE_UNIT_ATTENTION, ua);
	}
	const uint8_t *d = c->cdb;
	bool disk = l->type == SCSI_TYPE_DISK;
	switch (op) {
	case SCSI_OP_TEST_UNIT_READY:
		return has_media(l) ? good(c) : not_ready(l, c);
	case SCSI_OP_READ6:
	case SCSI_OP_WRITE6:
		if (!disk)
			break;
		return do_rw(l, c, op == SCSI_OP_WRITE6, (uint64_t)(d[1] & 0x1F) << 16 | be16(d + 2), d[4] ? d[4] : 256,
			     false);
	case SCSI_OP_READ10:
	case SCSI_OP_WRITE10:
		return do_rw(l, c, op == SCSI_OP_WRITE10, be32(d + 2), be16(d + 7), d[1] & 0x08);
	case SCSI_OP_READ12:
	case SCSI_OP_WRITE12:
		return do_rw(l, c, op == SCSI_OP_WRITE12, be32(d + 2), be32(d + 6), d[1] & 0x08);
	case SCSI_OP_READ16:
	case SCSI_OP_WRITE16:
		if (!disk)
			break;
		return do_rw(l, c, op == SCSI_OP_WRITE16, be64(d + 2), be32(d + 10), d[1] & 0x08);
	case SCSI_OP_READ_CAPACITY10:
		return do_read_capacity(l, c, false);
	case SCSI_OP_SERVICE_IN16:
		if ((d[1] & 0x1F) != SCSI_SAI_READ_CAPACITY16)
			return invalid_cdb(c);
		return do_read_capacity(l, c, true);
	case SCSI_OP_SYNC_CACHE10:
		return do_sync_cache(l, c, be32(d + 2), be16(d + 7));
	case SCSI_OP_SYNC_CACHE16:
		return do_sync_cache(l, c, be64(d + 2), be32(d + 10));
	case SCSI_OP_UNMAP:
		if (!disk)
			break;
		return do_unmap(l, c);
	case SCSI_OP_WRITE_SAME16:
		if (!disk)
			break;
		return do_write_same16(l, c);
	case SCSI_OP_MODE_SENSE6:
	case SCSI_OP_MODE_SENSE10:
		return do_mode_sense(l, c, op == SCSI_OP_MODE_SENSE10);
	case SCSI_OP_MODE_SELECT6:
	case SCSI_OP_MODE_SELECT10:
		return do_mode_select(l, c, op == SCSI_OP_MODE_SELECT10);
	case SCSI_OP_START_STOP:
		return do_start_stop(l, c);
	case SCSI_OP_PREVENT_ALLOW:
		if (!disk)
			l->prevent_removal = d[4] & 0x01;
		return good(c);
	case SCSI_OP_READ_TOC:
		if (disk)
			break;
		return do_read_toc(l, c);
	case SCSI_OP_READ_DISC_INFO:
		if (disk)
			break;
		return do_read_disc_info(l, c);
	case SCSI_OP_GET_CONFIGURATION:
		if (disk)
			break;
		return do_get_configuration(l, c);
	case SCSI_OP_GESN:
		if (disk)
			break;
		return do_gesn(l, c);
	case SCSI_OP_PR_IN:
	case SCSI_OP_PR_OUT:
	default:
		break;
	}
	return fail(c, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
}

void scsi_cmd_io_done(struct scsi_cmd *c, int rc)
{
	enum scsi_io_op op = c->io.op;
	if (rc == 0 || (op == SCSI_IO_DISCARD && rc == -EOPNOTSUPP)) {
		c->status = SCSI_STATUS_GOOD;
		c->sense_len = 0;
		c->xfer = op == SCSI_IO_READ || op == SCSI_IO_WRITE ? (uint32_t)c->io.len : 0;
		return;
	}
	if (rc == -EROFS)
		scsi_cmd_set_sense(c, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	else if (op == SCSI_IO_READ)
		scsi_cmd_set_sense(c, SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_UNRECOVERED_READ);
	else
		scsi_cmd_set_sense(c, SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_WRITE_ERROR);
	c->io.op = op; /* set_sense cleared it; keep it for the caller's log line */
}

void scsi_lun_execute_sync(struct scsi_lun *l, struct scsi_cmd *c)
{
	if (scsi_lun_execute(l, c) != SCSI_NEED_IO)
		return;
	struct disk *d = l->disk;
	int rc = 0;
	switch (c->io.op) {
	case SCSI_IO_READ:
		rc = d->ops->readv(d, c->io.off, c->iov, c->iovcnt);
		break;
	case SCSI_IO_WRITE:
		rc = d->ops->writev(d, c->io.off, c->iov, c->iovcnt);
		if (!rc && c->io.fua)
			rc = d->ops->flush(d);
		break;
	case SCSI_IO_FLUSH:
		rc = d->ops->flush(d);
		break;
	case SCSI_IO_DISCARD:
		for (uint32_t i = 0; i < c->io.nr_ranges && !rc; i++)
			rc = d->ops->discard ? d->ops->discard(d, c->io.range[i].off, c->io.range[i].len) : 0;
		break;
	case SCSI_IO_NONE:
		break;
	}
	scsi_cmd_io_done(c, rc);
}
