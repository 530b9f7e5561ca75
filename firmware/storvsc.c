/* Synthetic SCSI (storvsc) BlockIo: one handle per LUN of every storvsp controller, its device path
 * the one the host writes into boot entries (efi_dp_vmbus_scsi_init). One request at a time per
 * controller; data moves by GPA_DIRECT ranges that name the caller's own pages (identity map), so
 * the host DMAs straight into the caller's buffer. Every wait is bounded.
 */
#include "storage.h"

#include "efi/efi_devpath.h"
#include "efi/efi_fmt.h"
#include "gen2vm/proto/scsi.h"
#include "gen2vm/proto/storvsp.h"
#include "storvsc_client.h"

#define STV_INIT_ID 0xFFFFFFFFFFFFFFFDull /* Linux's VMBUS_RQST_INIT: init packets' transaction id */
#define STV_RING_BYTES (8u << 10) /* a request with 257 page numbers is 2.2 KiB; one in flight */
#define STV_CTRL_TIMEOUT_US 5000000ull
#define STV_IO_TIMEOUT_US 30000000ull
#define STV_MAX_LUNS 64u
#define STV_MAX_XFER (1u << 20)
#define STV_MAX_PAGES (STV_MAX_XFER / 4096 + 1)

/* The ASC byte alone (the firmware does not look at ASCQ) */
#define ASC_NO_MEDIUM (SCSI_ASC_MEDIUM_NOT_PRESENT >> 8)
#define ASC_MEDIUM_CHANGED (SCSI_ASC_MEDIUM_CHANGED >> 8)

struct stv_ctrl {
	struct vmbus_client_channel ch;
	uint8_t instance[16];
	uint64_t next_id;
	uint32_t max_xfer;
	uint32_t nr;       /* controller number, for the console */
};

struct stv_lun {
	EFI_BLOCK_IO_PROTOCOL bio;
	EFI_BLOCK_IO_MEDIA media;
	struct stv_ctrl *c;
	uint16_t lun;
	bool dvd;
	bool wp;
	struct efi_dp_vmbus_scsi dp;
	struct fw_stor_dev dev;
};

struct stv_result {
	uint8_t sense_key, asc, ascq;
	uint32_t xfer;
};

/* One request and one reply in flight at a time: the firmware is single-threaded. */
static uint64_t stv_ext[2 + STV_MAX_PAGES];
static uint8_t stv_rx[512] __attribute__((aligned(8)));
static uint8_t *stv_small; /* a page for INQUIRY, capacity and REPORT LUNS data */

/* Sends pk and waits for the completion of id. EFI_TIMEOUT / EFI_DEVICE_ERROR. */
static EFI_STATUS stv_exchange(struct stv_ctrl *c, struct storvsp_packet *pk, uint64_t id, const void *ext,
			       uint32_t ext_len, uint64_t timeout_us)
{
	int rc = vmbus_client_send(&c->ch, ext ? VM_PKT_DATA_USING_GPA_DIRECT : VM_PKT_DATA_INBAND,
				   VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, id, ext, ext_len, pk, sizeof(*pk));
	if (rc)
		return EFI_DEVICE_ERROR;
	uint64_t end = fw_stor_now_us() + timeout_us;
	for (;;) {
		uint32_t len;
		EFI_STATUS s = fw_vmbus_recv_by(&c->ch, stv_rx, sizeof(stv_rx), &len, end);
		if (EFI_ERROR(s))
			return s;
		const struct vmbus_packet_descriptor *d = (const void *)stv_rx;
		uint32_t off = d->offset8 * 8u;
		if (len < sizeof(*d) || off > len || d->trans_id != id)
			continue; /* a late reply to a timed-out request, or an unsolicited packet */
		efi_memset(pk, 0, sizeof(*pk));
		efi_memcpy(pk, stv_rx + off, len - off < sizeof(*pk) ? len - off : sizeof(*pk));
		return EFI_SUCCESS;
	}
}

/* One control round trip for storvsc_client_init: 0, -VMBUS_ETIMEDOUT or -VMBUS_EIO. */
static int stv_ctrl_op(void *opaque, struct storvsp_packet *pk)
{
	pk->flags = STORVSP_FLAG_REQUEST_COMPLETION;
	EFI_STATUS s = stv_exchange(opaque, pk, STV_INIT_ID, NULL, 0, STV_CTRL_TIMEOUT_US);
	return s == EFI_SUCCESS ? 0 : s == EFI_TIMEOUT ? -VMBUS_ETIMEDOUT : -VMBUS_EIO;
}

/* One SRB. dir: STORVSP_DATA_*; buf may be anywhere below 4 GiB, len <= c->max_xfer. EFI_SUCCESS, or
 * EFI_DEVICE_ERROR with res->sense_key set when the device answered CHECK CONDITION. */
static EFI_STATUS stv_srb(struct stv_ctrl *c, uint16_t lun, const uint8_t *cdb, uint8_t cdb_len, uint8_t dir,
			  void *buf, uint32_t len, struct stv_result *res, uint64_t timeout_us)
{
	struct storvsp_packet pk = { .operation = STORVSP_OP_EXECUTE_SRB, .flags = STORVSP_FLAG_REQUEST_COMPLETION };
	pk.srb.length = sizeof(pk.srb);
	pk.srb.lun = (uint8_t)lun;
	pk.srb.cdb_length = cdb_len;
	pk.srb.sense_info_length = STORVSP_SENSE_SIZE;
	pk.srb.data_in = len ? dir : STORVSP_DATA_NONE;
	pk.srb.data_transfer_length = len;
	efi_memcpy(pk.srb.cdb, cdb, cdb_len);
	*res = (struct stv_result){ 0 };
	uint32_t ext_len = 0;
	if (len) {
		/* One multi-page range over the caller's pages, as Linux sends it. */
		uint64_t gpa = fw_virt_to_phys(buf);
		uint32_t off = (uint32_t)(gpa & 4095), pages = (off + len + 4095) / 4096;
		if (pages > STV_MAX_PAGES || gpa + len > (1ull << 32))
			return EFI_INVALID_PARAMETER;
		stv_ext[0] = 1ull << 32; /* reserved, range count 1 */
		stv_ext[1] = (uint64_t)off << 32 | len;
		for (uint32_t i = 0; i < pages; i++)
			stv_ext[2 + i] = (gpa >> 12) + i;
		ext_len = (2 + pages) * 8;
	}
	uint64_t id = ++c->next_id;
	EFI_STATUS s = stv_exchange(c, &pk, id, len ? stv_ext : NULL, ext_len, timeout_us);
	if (EFI_ERROR(s))
		return s == EFI_TIMEOUT ? EFI_DEVICE_ERROR : s;
	if (pk.operation != STORVSP_OP_COMPLETE_IO || pk.status != STORVSP_STATUS_SUCCESS)
		return EFI_DEVICE_ERROR;
	if ((pk.srb.srb_status & 0x3f) == SRB_STATUS_SUCCESS && pk.srb.scsi_status == 0) {
		res->xfer = pk.srb.data_transfer_length;
		return EFI_SUCCESS;
	}
	if (pk.srb.scsi_status == 2 && (pk.srb.srb_status & SRB_STATUS_AUTOSENSE_VALID) && pk.srb.sense_info_length >= 14) {
		res->sense_key = pk.srb.sense_data[2] & 0x0f;
		res->asc = pk.srb.sense_data[12];
		res->ascq = pk.srb.sense_data[13];
	}
	return EFI_DEVICE_ERROR;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* READ CAPACITY(16) into the media fields, noticing a missing or changed medium. */
static EFI_STATUS stv_lun_capacity(struct stv_lun *l)
{
	struct stv_result r;
	EFI_STATUS s = EFI_DEVICE_ERROR;
	for (int tries = 0; tries < 4; tries++) {
		uint8_t cdb[16] = { SCSI_OP_SERVICE_IN16, SCSI_SAI_READ_CAPACITY16 };
		put_be32(cdb + 10, 32);
		s = stv_srb(l->c, l->lun, cdb, 16, STORVSP_DATA_IN, stv_small, 32, &r, STV_CTRL_TIMEOUT_US);
		if (!EFI_ERROR(s) || r.sense_key != SCSI_SENSE_UNIT_ATTENTION)
			break;
	}
	if (EFI_ERROR(s)) {
		l->media.MediaPresent = 0;
		l->media.LastBlock = 0;
		return r.sense_key == SCSI_SENSE_NOT_READY && r.asc == ASC_NO_MEDIUM ? EFI_NO_MEDIA : s;
	}
	uint64_t last = (uint64_t)be32(stv_small) << 32 | be32(stv_small + 4);
	uint32_t bs = be32(stv_small + 8);
	if (bs < 512 || bs > 4096 || (bs & (bs - 1)))
		return EFI_UNSUPPORTED;
	l->media.BlockSize = bs;
	l->media.LastBlock = last;
	l->media.MediaPresent = 1;
	/* Revision 2 fields: logical blocks per physical block exponent, lowest aligned LBA (SBC-3). */
	l->media.LogicalBlocksPerPhysicalBlock = 1u << (stv_small[13] & 0x0f);
	l->media.LowestAlignedLba = (uint32_t)(stv_small[14] & 0x3f) << 8 | stv_small[15];
	l->media.OptimalTransferLengthGranularity = 0;
	return EFI_SUCCESS;
}

/* A failed command told us the medium went or changed: re-read the capacity so that the next
 * caller sees the new medium (UEFI 13.9: EFI_MEDIA_CHANGED once, with a new MediaId). */
static EFI_STATUS stv_lun_media_error(struct stv_lun *l, const struct stv_result *r)
{
	if (r->sense_key == SCSI_SENSE_UNIT_ATTENTION && r->asc == ASC_MEDIUM_CHANGED) {
		l->media.MediaId++;
		stv_lun_capacity(l);
		return EFI_MEDIA_CHANGED;
	}
	if (r->sense_key == SCSI_SENSE_NOT_READY && r->asc == ASC_NO_MEDIUM) {
		if (l->media.MediaPresent) {
			l->media.MediaPresent = 0;
			l->media.MediaId++;
			return EFI_MEDIA_CHANGED;
		}
		return EFI_NO_MEDIA;
	}
	return EFI_DEVICE_ERROR;
}

static EFI_STATUS stv_rw(struct stv_lun *l, uint32_t media_id, EFI_LBA lba, UINTN size, void *buf, bool write)
{
	EFI_BLOCK_IO_MEDIA *m = &l->media;
	if (!m->MediaPresent) {
		/* A medium may have been inserted since: look once. */
		if (!l->dvd || EFI_ERROR(stv_lun_capacity(l)))
			return EFI_NO_MEDIA;
		m->MediaId++;
		return EFI_MEDIA_CHANGED;
	}
	if (media_id != m->MediaId)
		return EFI_MEDIA_CHANGED;
	if (write && m->ReadOnly)
		return EFI_WRITE_PROTECTED;
	if (!size)
		return EFI_SUCCESS;
	if (!buf)
		return EFI_INVALID_PARAMETER;
	if (size % m->BlockSize)
		return EFI_BAD_BUFFER_SIZE;
	uint64_t n = size / m->BlockSize;
	if (lba > m->LastBlock || n > m->LastBlock - lba + 1)
		return EFI_INVALID_PARAMETER;
	if (fw_virt_to_phys(buf) + size > (1ull << 32))
		return EFI_INVALID_PARAMETER; /* the firmware's identity map ends at 4 GiB */
	uint32_t chunk_blocks = l->c->max_xfer / m->BlockSize;
	uint8_t *p = buf;
	while (n) {
		uint32_t k = n < chunk_blocks ? (uint32_t)n : chunk_blocks;
		/* MMC devices know READ(12), not READ(16); their LBAs fit 32 bits. */
		uint8_t cdb[16] = { 0 }, cdb_len = 16;
		if (l->dvd) {
			cdb[0] = write ? SCSI_OP_WRITE12 : SCSI_OP_READ12;
			put_be32(cdb + 2, (uint32_t)lba);
			put_be32(cdb + 6, k);
			cdb_len = 12;
		} else {
			cdb[0] = write ? SCSI_OP_WRITE16 : SCSI_OP_READ16;
			for (int i = 0; i < 8; i++)
				cdb[2 + i] = (uint8_t)(lba >> (56 - 8 * i));
			put_be32(cdb + 10, k);
		}
		struct stv_result r;
		uint32_t bytes = k * m->BlockSize;
		EFI_STATUS s = stv_srb(l->c, l->lun, cdb, cdb_len, write ? STORVSP_DATA_OUT : STORVSP_DATA_IN, p, bytes, &r,
				       STV_IO_TIMEOUT_US);
		if (EFI_ERROR(s))
			return s == EFI_DEVICE_ERROR ? stv_lun_media_error(l, &r) : s;
		if (r.xfer != bytes)
			return EFI_DEVICE_ERROR;
		p += bytes;
		lba += k;
		n -= k;
	}
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI stv_reset(EFI_BLOCK_IO_PROTOCOL *This, BOOLEAN ext)
{
	(void)This;
	(void)ext;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI stv_read(EFI_BLOCK_IO_PROTOCOL *This, uint32_t MediaId, EFI_LBA Lba, UINTN BufferSize,
				  void *Buffer)
{
	struct stv_lun *l = (struct stv_lun *)This;
	return stv_rw(l, MediaId, Lba, BufferSize, Buffer, false);
}

static EFI_STATUS EFIAPI stv_write(EFI_BLOCK_IO_PROTOCOL *This, uint32_t MediaId, EFI_LBA Lba, UINTN BufferSize,
				   void *Buffer)
{
	struct stv_lun *l = (struct stv_lun *)This;
	return stv_rw(l, MediaId, Lba, BufferSize, Buffer, true);
}

static EFI_STATUS EFIAPI stv_flush(EFI_BLOCK_IO_PROTOCOL *This)
{
	struct stv_lun *l = (struct stv_lun *)This;
	if (!l->media.MediaPresent)
		return EFI_NO_MEDIA;
	if (l->media.ReadOnly)
		return EFI_SUCCESS;
	uint8_t cdb[10] = { SCSI_OP_SYNC_CACHE10 };
	struct stv_result r;
	return stv_srb(l->c, l->lun, cdb, 10, STORVSP_DATA_NONE, NULL, 0, &r, STV_IO_TIMEOUT_US);
}

static EFI_STATUS stv_ctrl_init(struct stv_ctrl *c, uint32_t relid)
{
	EFI_STATUS s = fw_vmbus_channel_open(&c->ch, relid, STV_RING_BYTES);
	if (EFI_ERROR(s))
		return s;
	uint16_t version;
	struct storvsp_properties props;
	int rc = storvsc_client_init(stv_ctrl_op, c, 0, &version, &props);
	if (rc)
		return rc == -VMBUS_ETIMEDOUT ? EFI_TIMEOUT : rc == -VMBUS_ENODEV ? EFI_UNSUPPORTED : EFI_DEVICE_ERROR;
	c->max_xfer = props.max_transfer_bytes;
	if (c->max_xfer > STV_MAX_XFER || c->max_xfer < 4096)
		c->max_xfer = c->max_xfer < 4096 ? 4096 : STV_MAX_XFER;
	c->max_xfer &= ~4095u;
	return EFI_SUCCESS;
}

static void stv_lun_add(struct stv_ctrl *c, uint16_t lun)
{
	struct stv_result r;
	uint8_t inq[6] = { SCSI_OP_INQUIRY, 0, 0, 0, 36, 0 };
	if (EFI_ERROR(stv_srb(c, lun, inq, 6, STORVSP_DATA_IN, stv_small, 36, &r, STV_CTRL_TIMEOUT_US)))
		return;
	uint8_t qual = stv_small[0] >> 5, type = stv_small[0] & 0x1f;
	if (qual != 0 || (type != 0x00 && type != 0x05))
		return;
	struct stv_lun *l = fw_stor_zalloc(sizeof(*l));
	if (!l)
		return;
	l->c = c;
	l->lun = lun;
	l->dvd = type == 0x05;
	l->media.RemovableMedia = l->dvd || (stv_small[1] & 0x80);
	l->media.BlockSize = l->dvd ? 2048 : 512;
	EFI_STATUS cap = stv_lun_capacity(l);
	if (!l->dvd) {
		/* MODE SENSE(6): the write-protect bit of the device-specific parameter. */
		uint8_t ms[6] = { 0x1a, 0x08, 0x3f, 0, 4, 0 };
		if (!EFI_ERROR(stv_srb(c, lun, ms, 6, STORVSP_DATA_IN, stv_small, 4, &r, STV_CTRL_TIMEOUT_US)))
			l->wp = stv_small[2] & 0x80;
	}
	l->media.ReadOnly = l->dvd || l->wp;
	l->media.IoAlign = 0; /* GPA ranges carry any byte offset */
	l->bio.Revision = EFI_BLOCK_IO_PROTOCOL_REVISION3;
	l->bio.Media = &l->media;
	l->bio.Reset = stv_reset;
	l->bio.ReadBlocks = stv_read;
	l->bio.WriteBlocks = stv_write;
	l->bio.FlushBlocks = stv_flush;
	efi_dp_vmbus_scsi_init(&l->dp, c->instance, 0, lun);
	static const EFI_GUID dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID, bio_guid = EFI_BLOCK_IO_PROTOCOL_GUID;
	const EFI_GUID *guids[2] = { &dp_guid, &bio_guid };
	void *ifaces[2] = { &l->dp, &l->bio };
	EFI_HANDLE h = NULL;
	EFI_STATUS s = fw_stor_install(&h, 2, guids, ifaces);
	if (EFI_ERROR(s)) {
		fw_printf("storage: SCSI %u:%u: protocol install failed (0x%llx)\n", c->nr, lun, (unsigned long long)s);
		fw_stor_free(l);
		return;
	}
	l->dev.handle = h;
	l->dev.kind = l->dvd ? FW_STOR_DVD : FW_STOR_DISK;
	l->dev.dvd = l->dvd;
	l->dev.target = 0;
	l->dev.lun = lun;
	l->dev.path = &l->dp.vmbus.Header;
	l->dev.bio = &l->bio;
	fw_storage_add(&l->dev);
	char what[96];
	if (cap == EFI_NO_MEDIA)
		efi_snprintf(what, sizeof(what), "SCSI %u:%u DVD, no media", c->nr, lun);
	else if (EFI_ERROR(cap))
		efi_snprintf(what, sizeof(what), "SCSI %u:%u %s, capacity unreadable (0x%llx)", c->nr, lun,
			     l->dvd ? "DVD" : "disk", (unsigned long long)cap);
	else if (l->dvd)
		efi_snprintf(what, sizeof(what), "SCSI %u:%u DVD, %u-byte blocks", c->nr, lun, l->media.BlockSize);
	else
		efi_snprintf(what, sizeof(what), "SCSI %u:%u disk, %llu x %u bytes%s", c->nr, lun,
			     (unsigned long long)(l->media.LastBlock + 1), l->media.BlockSize, l->wp ? ", read-only" : "");
	fw_disk_attach(&l->dev, what);
}

uint32_t fw_storvsc_init(void)
{
	struct vmbus_client *cl = fw_vmbus_client();
	if (!cl)
		return 0;
	if (!stv_small && !(stv_small = fw_stor_alloc_pages(1)))
		return 0;
	struct vmbus_guid cls;
	vmbus_guid_parse(STORVSP_SCSI_CLASS_GUID_TEXT, &cls);
	uint32_t nr_ctrl = 0, nr_luns = 0;
	for (uint32_t i = 0; i < cl->nr_offers; i++) {
		const struct vmbus_client_offer *o = &cl->offers[i];
		if (o->rescinded || o->msg.offer.sub_channel_index != 0 ||
		    efi_memcmp(&o->msg.offer.if_type, &cls, sizeof(cls)))
			continue;
		struct stv_ctrl *c = fw_stor_zalloc(sizeof(*c));
		if (!c)
			break;
		c->nr = nr_ctrl++;
		efi_memcpy(c->instance, &o->msg.offer.if_instance, 16);
		EFI_STATUS s = stv_ctrl_init(c, o->msg.child_relid);
		if (EFI_ERROR(s)) {
			fw_printf("storage: SCSI controller %u: initialisation failed (0x%llx)\n", c->nr,
				  (unsigned long long)s);
			continue;
		}
		struct stv_result r;
		uint8_t cdb[12] = { SCSI_OP_REPORT_LUNS };
		uint32_t cap = 8 + 8 * STV_MAX_LUNS;
		put_be32(cdb + 6, cap);
		if (EFI_ERROR(stv_srb(c, 0, cdb, 12, STORVSP_DATA_IN, stv_small, cap, &r, STV_CTRL_TIMEOUT_US))) {
			fw_printf("storage: SCSI controller %u: REPORT LUNS failed\n", c->nr);
			continue;
		}
		uint32_t n = be32(stv_small) / 8;
		if (n > STV_MAX_LUNS)
			n = STV_MAX_LUNS;
		uint16_t luns[STV_MAX_LUNS];
		for (uint32_t k = 0; k < n; k++)
			luns[k] = (uint16_t)((stv_small[8 + 8 * k] & 0x3f) << 8 | stv_small[9 + 8 * k]);
		for (uint32_t k = 0; k < n; k++) {
			stv_lun_add(c, luns[k]);
			nr_luns++;
		}
	}
	return nr_luns;
}
