#include "efi/efi_part.h"

#include "efi/efi_lib.h"

/* Entry arrays beyond this are refused: a real GPT has 128 entries (16 KiB). */
#define GPT_MAX_ARRAY (1u << 20)
#define EBR_MAX_CHAIN 128
#define ISO_MAX_DESCRIPTORS 32

static bool blk_ok(const struct efi_blk *b, size_t scratch_size)
{
	return b->block_size >= 512 && b->block_size <= 4096 && !(b->block_size & (b->block_size - 1)) &&
	       scratch_size >= b->block_size && b->read;
}

static void add(struct efi_part *out, uint32_t max, uint32_t *n, const struct efi_part *p)
{
	if (*n < max)
		out[(*n)++] = *p;
}

/* --- GPT ----------------------------------------------------------------------------------------- */

static EFI_STATUS gpt_header(const struct efi_blk *b, uint8_t *scratch, uint64_t lba, struct gpt_header *h)
{
	if (lba >= b->num_blocks)
		return EFI_NOT_FOUND;
	if (EFI_ERROR(b->read(b->ctx, lba, 1, scratch)))
		return EFI_DEVICE_ERROR;
	efi_memcpy(h, scratch, sizeof(*h));
	if (h->signature != GPT_HEADER_SIGNATURE || h->header_size < GPT_HEADER_MIN_SIZE ||
	    h->header_size > b->block_size || h->my_lba != lba)
		return EFI_NOT_FOUND;
	efi_put32(scratch + offsetof(struct gpt_header, header_crc32), 0);
	if (efi_crc32(scratch, h->header_size) != h->header_crc32)
		return EFI_NOT_FOUND;
	if (h->first_usable_lba > h->last_usable_lba || h->last_usable_lba >= b->num_blocks ||
	    h->first_usable_lba < 2)
		return EFI_NOT_FOUND;
	uint32_t es = h->size_of_partition_entry;
	if (es < sizeof(struct gpt_entry) || (es & (es - 1)) || !h->number_of_partition_entries ||
	    (uint64_t)h->number_of_partition_entries * es > GPT_MAX_ARRAY)
		return EFI_NOT_FOUND;
	uint64_t bytes = (uint64_t)h->number_of_partition_entries * es;
	uint64_t blocks = (bytes + b->block_size - 1) / b->block_size;
	uint64_t first = h->partition_entry_lba;
	if (first < 2 || first >= b->num_blocks || blocks > b->num_blocks - first || first == lba)
		return EFI_NOT_FOUND;
	/* The array must not overlap the usable area or the header itself. */
	if (!(first + blocks <= h->first_usable_lba || first > h->last_usable_lba) ||
	    (lba >= first && lba < first + blocks))
		return EFI_NOT_FOUND;
	return EFI_SUCCESS;
}

/* Streams the entry array through scratch: CRC over all of it, partitions out as found. */
static EFI_STATUS gpt_entries(const struct efi_blk *b, uint8_t *scratch, size_t scratch_size,
			      const struct gpt_header *h, struct efi_part *out, uint32_t max, uint32_t *n)
{
	uint32_t es = h->size_of_partition_entry;
	uint32_t unit = es > b->block_size ? es : b->block_size;
	if (scratch_size < unit)
		return EFI_UNSUPPORTED;
	uint64_t chunk = scratch_size / unit * unit;
	if (chunk > (1u << 20))
		chunk = 1u << 20;
	uint64_t total = (uint64_t)h->number_of_partition_entries * es, done = 0;
	uint64_t lba = h->partition_entry_lba;
	uint32_t crc = 0, index = 0, found = 0;
	while (done < total) {
		uint64_t want = total - done < chunk ? total - done : chunk;
		uint32_t nblk = (uint32_t)((want + b->block_size - 1) / b->block_size);
		if (EFI_ERROR(b->read(b->ctx, lba, nblk, scratch)))
			return EFI_DEVICE_ERROR;
		crc = efi_crc32_update(crc, scratch, want);
		for (uint64_t off = 0; off + es <= want; off += es, index++) {
			struct gpt_entry e;
			efi_memcpy(&e, scratch + off, sizeof(e));
			static const EFI_GUID unused;
			EFI_GUID type = e.partition_type_guid;
			if (efi_guid_eq(&type, &unused))
				continue;
			if (e.starting_lba > e.ending_lba || e.starting_lba < h->first_usable_lba ||
			    e.ending_lba > h->last_usable_lba)
				continue;
			struct efi_part p = { .kind = EFI_PART_GPT, .number = index + 1, .start = e.starting_lba,
					      .blocks = e.ending_lba - e.starting_lba + 1,
					      .type_guid = e.partition_type_guid, .attributes = e.attributes };
			efi_memcpy(p.signature, &e.unique_partition_guid, 16);
			add(out, max, &found, &p);
		}
		done += want;
		lba += nblk;
	}
	if (crc != h->partition_entry_array_crc32)
		return EFI_CRC_ERROR;
	*n = found;
	return EFI_SUCCESS;
}

EFI_STATUS efi_gpt_scan(const struct efi_blk *b, void *scratch, size_t scratch_size, struct efi_part *out,
			uint32_t max, uint32_t *n, bool *used_alternate)
{
	*n = 0;
	if (used_alternate)
		*used_alternate = false;
	if (!blk_ok(b, scratch_size) || b->num_blocks < 4)
		return EFI_UNSUPPORTED;
	struct gpt_header h;
	EFI_STATUS st = gpt_header(b, scratch, 1, &h);
	if (st == EFI_DEVICE_ERROR)
		return st;
	if (!EFI_ERROR(st)) {
		st = gpt_entries(b, scratch, scratch_size, &h, out, max, n);
		if (st == EFI_DEVICE_ERROR || st == EFI_UNSUPPORTED || !EFI_ERROR(st))
			return st;
	}
	/* Primary header or array bad: the alternate header sits in the last block. */
	st = gpt_header(b, scratch, b->num_blocks - 1, &h);
	if (EFI_ERROR(st))
		return st;
	st = gpt_entries(b, scratch, scratch_size, &h, out, max, n);
	if (EFI_ERROR(st)) {
		*n = 0;
		return st == EFI_CRC_ERROR ? EFI_NOT_FOUND : st;
	}
	if (used_alternate)
		*used_alternate = true;
	return EFI_SUCCESS;
}

/* --- MBR ----------------------------------------------------------------------------------------- */

static bool mbr_is_extended(uint8_t t)
{
	return t == MBR_TYPE_EXTENDED_CHS || t == MBR_TYPE_EXTENDED_LBA || t == MBR_TYPE_EXTENDED_LINUX;
}

/* A sane table: boot flags 0 or 0x80, used entries inside the disk, no two overlapping. */
static bool mbr_sane(const struct mbr *m, uint64_t blocks)
{
	for (int i = 0; i < 4; i++) {
		const struct mbr_partition *p = &m->partition[i];
		if (p->boot_indicator != 0 && p->boot_indicator != 0x80)
			return false;
		if (!p->os_type)
			continue;
		if (!p->starting_lba || !p->size_in_lba ||
		    (uint64_t)p->starting_lba + p->size_in_lba > blocks)
			return false;
		for (int j = 0; j < i; j++) {
			const struct mbr_partition *q = &m->partition[j];
			if (q->os_type && p->starting_lba < (uint64_t)q->starting_lba + q->size_in_lba &&
			    q->starting_lba < (uint64_t)p->starting_lba + p->size_in_lba)
				return false;
		}
	}
	return true;
}

static void mbr_part(struct efi_part *p, const struct mbr *m, uint32_t number, uint64_t start,
		     const struct mbr_partition *e)
{
	*p = (struct efi_part){ .kind = EFI_PART_MBR, .number = number, .start = start,
				.blocks = e->size_in_lba, .mbr_type = e->os_type };
	efi_put32(p->signature, m->unique_mbr_signature);
}

static EFI_STATUS read_mbr(const struct efi_blk *b, uint8_t *scratch, uint64_t lba, struct mbr *m)
{
	if (EFI_ERROR(b->read(b->ctx, lba, 1, scratch)))
		return EFI_DEVICE_ERROR;
	efi_memcpy(m, scratch, sizeof(*m));
	return m->signature == MBR_SIGNATURE ? EFI_SUCCESS : EFI_NOT_FOUND;
}

EFI_STATUS efi_mbr_scan(const struct efi_blk *b, void *scratch, size_t scratch_size, struct efi_part *out,
			uint32_t max, uint32_t *n)
{
	*n = 0;
	if (!blk_ok(b, scratch_size) || !b->num_blocks)
		return EFI_UNSUPPORTED;
	struct mbr m;
	EFI_STATUS st = read_mbr(b, scratch, 0, &m);
	if (EFI_ERROR(st))
		return st;
	bool any = false;
	for (int i = 0; i < 4; i++) {
		if (m.partition[i].os_type == MBR_TYPE_EFI_PROTECTIVE)
			return EFI_NOT_FOUND;
		any |= m.partition[i].os_type != 0;
	}
	if (!any || !mbr_sane(&m, b->num_blocks))
		return EFI_NOT_FOUND;
	uint32_t found = 0;
	for (uint32_t i = 0; i < 4; i++) {
		const struct mbr_partition *e = &m.partition[i];
		if (!e->os_type)
			continue;
		if (!mbr_is_extended(e->os_type)) {
			struct efi_part p;
			mbr_part(&p, &m, i + 1, e->starting_lba, e);
			add(out, max, &found, &p);
			continue;
		}
		/* Logical partitions: a chain of EBRs, each inside the extended partition. */
		uint64_t ext = e->starting_lba, ext_end = ext + e->size_in_lba, ebr = ext;
		uint32_t number = 5;
		for (int hop = 0; hop < EBR_MAX_CHAIN; hop++) {
			struct mbr x;
			st = read_mbr(b, scratch, ebr, &x);
			if (st == EFI_DEVICE_ERROR)
				return st;
			if (EFI_ERROR(st))
				break;
			const struct mbr_partition *l = &x.partition[0], *next = &x.partition[1];
			if (l->os_type && l->starting_lba && l->size_in_lba &&
			    ebr + l->starting_lba + l->size_in_lba <= ext_end) {
				struct efi_part p;
				mbr_part(&p, &m, number++, ebr + l->starting_lba, l);
				add(out, max, &found, &p);
			}
			if (!mbr_is_extended(next->os_type) || !next->starting_lba ||
			    ext + next->starting_lba <= ebr || ext + next->starting_lba >= ext_end)
				break; /* the chain only moves forward, so it ends */
			ebr = ext + next->starting_lba;
		}
	}
	*n = found;
	return EFI_SUCCESS;
}

/* --- El Torito ----------------------------------------------------------------------------------- */

EFI_STATUS efi_eltorito_scan(const struct efi_blk *b, void *scratch, size_t scratch_size,
			     struct efi_part *out, uint32_t max, uint32_t *n)
{
	uint8_t *s = scratch;
	*n = 0;
	if (!b->read || b->block_size != ISO_SECTOR_SIZE || scratch_size < ISO_SECTOR_SIZE)
		return EFI_UNSUPPORTED;
	uint64_t catalog = 0;
	for (uint64_t lba = ISO_VD_FIRST_SECTOR; lba < ISO_VD_FIRST_SECTOR + ISO_MAX_DESCRIPTORS; lba++) {
		if (lba >= b->num_blocks)
			return EFI_NOT_FOUND;
		if (EFI_ERROR(b->read(b->ctx, lba, 1, s)))
			return EFI_DEVICE_ERROR;
		if (efi_memcmp(s + 1, "CD001", 5))
			return EFI_NOT_FOUND;
		if (s[0] == ISO_VD_TYPE_TERMINATOR)
			return EFI_NOT_FOUND;
		const struct iso_boot_record *br = (const void *)s;
		if (s[0] == ISO_VD_TYPE_BOOT_RECORD &&
		    !efi_memcmp(br->boot_system_id, ELTORITO_SYSTEM_ID, sizeof(ELTORITO_SYSTEM_ID))) {
			catalog = efi_le32(s + offsetof(struct iso_boot_record, catalog_sector));
			break;
		}
	}
	if (!catalog || catalog >= b->num_blocks)
		return EFI_NOT_FOUND;
	if (EFI_ERROR(b->read(b->ctx, catalog, 1, s)))
		return EFI_DEVICE_ERROR;
	/* Validation entry: header 1, key 55 aa, the sixteen words sum to zero. */
	uint16_t sum = 0;
	for (int i = 0; i < 32; i += 2)
		sum = (uint16_t)(sum + efi_le16(s + i));
	if (s[0] != ELTORITO_HEADER_VALIDATION || s[30] != 0x55 || s[31] != 0xaa || sum)
		return EFI_NOT_FOUND;

	uint32_t found = 0, entry = 0;
	uint8_t platform = s[1];
	bool in_section = false, last_section = false;
	uint32_t left = 1; /* entries left in the current section; the default entry counts as one */
	for (uint32_t off = 32; off + 32 <= ISO_SECTOR_SIZE; off += 32) {
		const uint8_t *e = s + off;
		if (!left) {
			if (last_section || (e[0] != ELTORITO_HEADER_MORE && e[0] != ELTORITO_HEADER_FINAL))
				break;
			last_section = e[0] == ELTORITO_HEADER_FINAL;
			platform = e[1];
			left = efi_le16(e + 2);
			in_section = true;
			continue;
		}
		if (in_section && e[0] == 0x44)
			continue; /* selection criteria extension of the previous entry */
		left--;
		struct eltorito_boot_entry be;
		efi_memcpy(&be, e, sizeof(be));
		uint32_t number = entry++;
		if (be.boot_indicator != ELTORITO_BOOTABLE || !be.load_rba || be.load_rba >= b->num_blocks)
			continue;
		/* sector_count is in 512-byte units; 0 or 1 (images over 32 MiB, or lazy tools): to the end. */
		uint64_t blocks = be.sector_count < 2 ? b->num_blocks - be.load_rba
						     : ((uint64_t)be.sector_count * 512 + ISO_SECTOR_SIZE - 1) /
							       ISO_SECTOR_SIZE;
		if (blocks > b->num_blocks - be.load_rba)
			blocks = b->num_blocks - be.load_rba;
		struct efi_part p = { .kind = EFI_PART_ELTORITO, .number = number, .start = be.load_rba,
				      .blocks = blocks, .platform = platform,
				      .media_type = be.media_type & ELTORITO_MEDIA_MASK };
		add(out, max, &found, &p);
	}
	*n = found;
	return found ? EFI_SUCCESS : EFI_NOT_FOUND;
}

EFI_STATUS efi_part_scan(const struct efi_blk *b, void *scratch, size_t scratch_size, struct efi_part *out,
			 uint32_t max, uint32_t *n)
{
	EFI_STATUS st;
	*n = 0;
	if (b->block_size == ISO_SECTOR_SIZE) {
		st = efi_eltorito_scan(b, scratch, scratch_size, out, max, n);
		if (st != EFI_NOT_FOUND)
			return st;
	}
	st = efi_mbr_scan(b, scratch, scratch_size, out, max, n);
	if (st != EFI_NOT_FOUND)
		return st;
	return efi_gpt_scan(b, scratch, scratch_size, out, max, n, NULL);
}

size_t efi_part_devpath_node(const struct efi_part *p, void *buf)
{
	if (p->kind == EFI_PART_ELTORITO) {
		CDROM_DEVICE_PATH cd = { .Header = { MEDIA_DEVICE_PATH, MEDIA_CDROM_DP, { sizeof(cd), 0 } },
					 .BootEntry = p->number, .PartitionStart = p->start,
					 .PartitionSize = p->blocks };
		efi_memcpy(buf, &cd, sizeof(cd));
		return sizeof(cd);
	}
	HARDDRIVE_DEVICE_PATH hd = { .Header = { MEDIA_DEVICE_PATH, MEDIA_HARDDRIVE_DP, { sizeof(hd), 0 } },
				     .PartitionNumber = p->number, .PartitionStart = p->start,
				     .PartitionSize = p->blocks };
	efi_memcpy(hd.Signature, p->signature, 16);
	hd.MBRType = p->kind == EFI_PART_GPT ? MBR_TYPE_EFI_PARTITION_TABLE_HEADER : MBR_TYPE_PCAT;
	hd.SignatureType = p->kind == EFI_PART_GPT ? SIGNATURE_TYPE_GUID : SIGNATURE_TYPE_MBR;
	efi_memcpy(buf, &hd, sizeof(hd));
	return sizeof(hd);
}
