#include "efi/efi_fat.h"

#include "efi/efi_lib.h"

#define EOC 0xffffffffu

/* --- byte-granular device access --------------------------------------------------------------- */

static EFI_STATUS cached_block(struct efi_fat *fs, uint64_t blk, uint8_t *cache, uint64_t *cblk, bool *ok)
{
	if (*ok && *cblk == blk)
		return EFI_SUCCESS;
	*ok = false;
	if (blk >= fs->blk->num_blocks || EFI_ERROR(fs->blk->read(fs->blk->ctx, blk, 1, cache)))
		return EFI_DEVICE_ERROR;
	*cblk = blk;
	*ok = true;
	return EFI_SUCCESS;
}

/* Reads [off, off + len) of the volume through one of the caches; whole aligned blocks go straight to
 * dst when no cache is given. */
static EFI_STATUS vol_read(struct efi_fat *fs, uint64_t off, void *dst, size_t len, bool dir)
{
	uint8_t *d = dst;
	uint32_t bs = fs->blk->block_size;
	if (off > fs->size || len > fs->size - off)
		return EFI_VOLUME_CORRUPTED;
	uint64_t at = fs->base + off;
	while (len) {
		uint64_t blk = at / bs;
		uint32_t in = (uint32_t)(at % bs);
		if (!in && len >= bs && !dir) {
			uint64_t n = len / bs;
			if (n > 128)
				n = 128;
			if (blk + n > fs->blk->num_blocks || EFI_ERROR(fs->blk->read(fs->blk->ctx, blk, (uint32_t)n, d)))
				return EFI_DEVICE_ERROR;
			d += n * bs;
			at += n * bs;
			len -= n * bs;
			continue;
		}
		uint8_t *cache = dir ? fs->dir_cache : fs->fat_cache;
		EFI_STATUS st = dir ? cached_block(fs, blk, cache, &fs->dir_cache_blk, &fs->dir_cache_ok)
				    : cached_block(fs, blk, cache, &fs->fat_cache_blk, &fs->fat_cache_ok);
		if (EFI_ERROR(st))
			return st;
		size_t n = bs - in < len ? bs - in : len;
		efi_memcpy(d, cache + in, n);
		d += n;
		at += n;
		len -= n;
	}
	return EFI_SUCCESS;
}

/* --- mount --------------------------------------------------------------------------------------- */

EFI_STATUS efi_fat_mount(struct efi_fat *fs, const struct efi_blk *b, uint64_t start_lba, uint64_t blocks)
{
	efi_memset(fs, 0, sizeof(*fs));
	if (!b->read || b->block_size < 512 || b->block_size > EFI_FAT_CACHE || (b->block_size & (b->block_size - 1)) ||
	    start_lba > b->num_blocks || blocks > b->num_blocks - start_lba)
		return EFI_UNSUPPORTED;
	fs->blk = b;
	fs->base = start_lba * b->block_size;
	fs->size = blocks * b->block_size;
	uint8_t bs[512];
	if (fs->size < 512)
		return EFI_UNSUPPORTED;
	EFI_STATUS st = vol_read(fs, 0, bs, sizeof(bs), true);
	if (EFI_ERROR(st))
		return st;
	struct fat_bpb bpb;
	struct fat32_ext x;
	efi_memcpy(&bpb, bs, sizeof(bpb));
	efi_memcpy(&x, bs + sizeof(bpb), sizeof(x));
	if (bs[510] != 0x55 || bs[511] != 0xaa || (bs[0] != 0xeb && bs[0] != 0xe9))
		return EFI_UNSUPPORTED;
	uint32_t bps = bpb.bytes_per_sector, spc = bpb.sectors_per_cluster;
	if (bps < 512 || bps > 4096 || (bps & (bps - 1)) || !spc || (spc & (spc - 1)) || bps * spc > (64u << 10) ||
	    !bpb.reserved_sectors || !bpb.num_fats || bpb.num_fats > 4)
		return EFI_UNSUPPORTED;
	uint64_t fatsz = bpb.fat_size16 ? bpb.fat_size16 : x.fat_size32;
	uint64_t total = bpb.total_sectors16 ? bpb.total_sectors16 : bpb.total_sectors32;
	uint64_t root_secs = ((uint64_t)bpb.root_entries * 32 + bps - 1) / bps;
	uint64_t meta = bpb.reserved_sectors + bpb.num_fats * fatsz + root_secs;
	if (!fatsz || !total || meta >= total || total * bps > fs->size)
		return EFI_VOLUME_CORRUPTED;
	uint64_t clusters = (total - meta) / spc;
	fs->type = clusters < 4085 ? 12 : clusters < 65525 ? 16 : 32;
	if (fs->type == 32 && (bpb.root_entries || bpb.fat_size16 || x.root_cluster < 2 ||
			       x.root_cluster >= clusters + 2 || clusters > 0x0ffffff5u))
		return EFI_VOLUME_CORRUPTED;
	if (fs->type != 32 && !bpb.root_entries)
		return EFI_VOLUME_CORRUPTED;
	/* The FAT must describe every cluster. */
	if (fatsz * bps * 8 / fs->type < clusters + 2)
		return EFI_VOLUME_CORRUPTED;
	fs->bps = bps;
	fs->cluster_size = bps * spc;
	fs->fat_off = (uint64_t)bpb.reserved_sectors * bps;
	fs->root_off = (bpb.reserved_sectors + bpb.num_fats * fatsz) * bps;
	fs->root_entries = bpb.root_entries;
	fs->root_cluster = fs->type == 32 ? x.root_cluster : 0;
	fs->data_off = meta * bps;
	fs->clusters = (uint32_t)clusters;
	return EFI_SUCCESS;
}

/* Next cluster in the chain, EOC at its end; EFI_VOLUME_CORRUPTED for free, reserved or bad links. */
static EFI_STATUS fat_next(struct efi_fat *fs, uint32_t c, uint32_t *next)
{
	uint8_t v[4] = { 0 };
	uint32_t n;
	EFI_STATUS st;
	switch (fs->type) {
	case 12:
		st = vol_read(fs, fs->fat_off + c + c / 2, v, 2, false);
		n = efi_le16(v);
		n = (c & 1) ? n >> 4 : n & 0xfff;
		if (n >= 0xff8)
			n = EOC;
		break;
	case 16:
		st = vol_read(fs, fs->fat_off + (uint64_t)c * 2, v, 2, false);
		n = efi_le16(v);
		if (n >= 0xfff8)
			n = EOC;
		break;
	default:
		st = vol_read(fs, fs->fat_off + (uint64_t)c * 4, v, 4, false);
		n = efi_le32(v) & 0x0fffffffu;
		if (n >= 0x0ffffff8u)
			n = EOC;
		break;
	}
	if (EFI_ERROR(st))
		return st;
	if (n != EOC && (n < 2 || n >= fs->clusters + 2))
		return EFI_VOLUME_CORRUPTED;
	*next = n;
	return EFI_SUCCESS;
}

/* Brent's cycle detection along a chain: a looping chain is found within about twice the loop length
 * instead of after walking every cluster of the volume. */
struct chain {
	uint32_t c, tortoise;
	uint64_t power, lam;
};

static void chain_start(struct chain *ch, uint32_t c)
{
	*ch = (struct chain){ .c = c, .tortoise = c, .power = 1 };
}

/* Advances to the next cluster; EFI_NOT_FOUND at the end of the chain. */
static EFI_STATUS chain_step(struct efi_fat *fs, struct chain *ch)
{
	EFI_STATUS st = fat_next(fs, ch->c, &ch->c);
	if (EFI_ERROR(st))
		return st;
	if (ch->c == EOC)
		return EFI_NOT_FOUND;
	if (ch->c == ch->tortoise)
		return EFI_VOLUME_CORRUPTED;
	if (++ch->lam == ch->power) {
		ch->tortoise = ch->c;
		ch->power <<= 1;
		ch->lam = 0;
	}
	return EFI_SUCCESS;
}

static bool cluster_ok(const struct efi_fat *fs, uint32_t c)
{
	return c >= 2 && c < fs->clusters + 2;
}

static uint64_t cluster_off(const struct efi_fat *fs, uint32_t c)
{
	return fs->data_off + (uint64_t)(c - 2) * fs->cluster_size;
}

/* --- directories --------------------------------------------------------------------------------- */

/* Byte offset of directory entry idx of dir, or EFI_NOT_FOUND past its end. Walks the chain from the
 * start: directories are small, and this keeps no state a hostile volume could desynchronise. */
static EFI_STATUS dir_entry_off(struct efi_fat *fs, const struct efi_fat_node *dir, uint64_t idx, uint64_t *off)
{
	uint64_t byte = idx * 32;
	if (dir->is_root && fs->type != 32) {
		if (idx >= fs->root_entries)
			return EFI_NOT_FOUND;
		*off = fs->root_off + byte;
		return EFI_SUCCESS;
	}
	uint32_t c = dir->is_root ? fs->root_cluster : dir->first_cluster;
	if (!cluster_ok(fs, c))
		return EFI_VOLUME_CORRUPTED;
	struct chain ch;
	chain_start(&ch, c);
	uint64_t hops = byte / fs->cluster_size;
	if (hops > fs->clusters)
		return EFI_NOT_FOUND;
	for (; hops; hops--) {
		EFI_STATUS st = chain_step(fs, &ch);
		if (EFI_ERROR(st))
			return st;
	}
	*off = cluster_off(fs, ch.c) + byte % fs->cluster_size;
	return EFI_SUCCESS;
}

static uint8_t sfn_checksum(const char *n)
{
	uint8_t sum = 0;
	for (int i = 0; i < 11; i++)
		sum = (uint8_t)(((sum & 1) << 7) + (sum >> 1) + (uint8_t)n[i]);
	return sum;
}

static void sfn_to_name(const struct fat_dirent *e, CHAR16 *out)
{
	int k = 0;
	for (int i = 0; i < 8 && e->name[i] != ' '; i++) {
		char c = (i == 0 && (uint8_t)e->name[0] == 0x05) ? (char)0xe5 : e->name[i];
		if ((e->nt_res & 0x08) && c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		out[k++] = (uint8_t)c;
	}
	if (e->name[8] != ' ') {
		out[k++] = '.';
		for (int i = 8; i < 11 && e->name[i] != ' '; i++) {
			char c = e->name[i];
			if ((e->nt_res & 0x10) && c >= 'A' && c <= 'Z')
				c = (char)(c + 32);
			out[k++] = (uint8_t)c;
		}
	}
	out[k] = 0;
}

/* Reads entries from *cookie on and returns the next file or directory, with its long name when the
 * long-name run before it is complete and matches. *cookie ends past the short entry. */
static EFI_STATUS dir_next(struct efi_fat *fs, const struct efi_fat_node *dir, uint64_t *cookie,
			   struct efi_fat_node *out, bool want_dots)
{
	CHAR16 lfn[20 * 13 + 1];
	int lfn_next = 0; /* ordinal expected next; 0: no run in progress */
	bool lfn_complete = false;
	uint8_t lfn_sum = 0;
	for (uint64_t idx = *cookie;; idx++) {
		if (idx >= (1u << 16))
			return EFI_NOT_FOUND; /* FAT caps a directory at 65536 entries */
		uint64_t off;
		EFI_STATUS st = dir_entry_off(fs, dir, idx, &off);
		if (EFI_ERROR(st))
			return st;
		struct fat_dirent e;
		st = vol_read(fs, off, &e, sizeof(e), true);
		if (EFI_ERROR(st))
			return st;
		uint8_t first = (uint8_t)e.name[0];
		if (first == FAT_DIRENT_END)
			return EFI_NOT_FOUND;
		if (first == FAT_DIRENT_FREE) {
			lfn_next = 0;
			lfn_complete = false;
			continue;
		}
		if ((e.attr & FAT_ATTR_LONG_NAME_MASK) == FAT_ATTR_LONG_NAME) {
			struct fat_lfn_entry l;
			efi_memcpy(&l, &e, sizeof(l));
			int ord = l.ord & 0x1f;
			lfn_complete = false;
			if (l.ord & FAT_LFN_LAST) {
				if (!ord || ord > 20) {
					lfn_next = 0;
					continue;
				}
				lfn[ord * 13] = 0;
				lfn_sum = l.checksum;
			} else if (!lfn_next || ord != lfn_next || l.checksum != lfn_sum) {
				lfn_next = 0;
				continue;
			}
			CHAR16 *p = &lfn[(ord - 1) * 13];
			for (int i = 0; i < 5; i++)
				p[i] = efi_le16(&l.name1[i]);
			for (int i = 0; i < 6; i++)
				p[5 + i] = efi_le16(&l.name2[i]);
			for (int i = 0; i < 2; i++)
				p[11 + i] = efi_le16(&l.name3[i]);
			lfn_next = ord - 1;
			lfn_complete = ord == 1;
			continue;
		}
		bool have_lfn = lfn_complete && lfn_sum == sfn_checksum(e.name);
		lfn_next = 0;
		lfn_complete = false;
		if (e.attr & FAT_ATTR_VOLUME_ID)
			continue;
		if (!want_dots && first == '.')
			continue;
		out->first_cluster = fs->type == 32 ? ((uint32_t)e.fst_clus_hi << 16 | e.fst_clus_lo) : e.fst_clus_lo;
		out->size = e.file_size;
		out->attr = e.attr;
		out->is_root = false;
		if (have_lfn) {
			size_t n = 0;
			while (n < EFI_FAT_NAME_MAX && lfn[n] && lfn[n] != 0xffff)
				n++;
			efi_memcpy(out->name, lfn, n * sizeof(CHAR16));
			out->name[n] = 0;
		} else {
			sfn_to_name(&e, out->name);
		}
		if (first == '.' && out->first_cluster == 0)
			out->is_root = true; /* ".." of a first-level directory */
		*cookie = idx + 1;
		return EFI_SUCCESS;
	}
}

void efi_fat_root(const struct efi_fat *fs, struct efi_fat_node *out)
{
	efi_memset(out, 0, sizeof(*out));
	out->is_root = true;
	out->attr = FAT_ATTR_DIRECTORY;
	out->first_cluster = fs->root_cluster;
}

EFI_STATUS efi_fat_readdir(struct efi_fat *fs, const struct efi_fat_node *dir, uint64_t *cookie,
			   struct efi_fat_node *out)
{
	if (!(dir->attr & FAT_ATTR_DIRECTORY))
		return EFI_INVALID_PARAMETER;
	return dir_next(fs, dir, cookie, out, false);
}

static bool name_eq(const CHAR16 *a, const CHAR16 *b, size_t blen)
{
	size_t i = 0;
	for (; i < blen; i++)
		if (!a[i] || efi_toupper16(a[i]) != efi_toupper16(b[i]))
			return false;
	return a[i] == 0;
}

EFI_STATUS efi_fat_lookup(struct efi_fat *fs, const struct efi_fat_node *dir, const CHAR16 *path,
			  struct efi_fat_node *out)
{
	struct efi_fat_node cur;
	if (!dir || path[0] == '\\' || path[0] == '/')
		efi_fat_root(fs, &cur);
	else
		cur = *dir;
	size_t i = 0;
	for (int depth = 0; depth < 256; depth++) {
		while (path[i] == '\\' || path[i] == '/')
			i++;
		if (!path[i]) {
			*out = cur;
			return EFI_SUCCESS;
		}
		size_t start = i;
		while (path[i] && path[i] != '\\' && path[i] != '/')
			i++;
		size_t len = i - start;
		if (len > EFI_FAT_NAME_MAX)
			return EFI_NOT_FOUND;
		if (len == 1 && path[start] == '.')
			continue;
		if (!(cur.attr & FAT_ATTR_DIRECTORY))
			return EFI_NOT_FOUND;
		if (cur.is_root && len == 2 && path[start] == '.' && path[start + 1] == '.')
			continue; /* the root is its own parent */
		uint64_t cookie = 0;
		struct efi_fat_node e;
		EFI_STATUS st;
		for (;;) {
			st = dir_next(fs, &cur, &cookie, &e, true);
			if (EFI_ERROR(st))
				return st == EFI_NOT_FOUND ? EFI_NOT_FOUND : st;
			if (name_eq(e.name, &path[start], len))
				break;
		}
		if (e.is_root)
			efi_fat_root(fs, &e);
		cur = e;
	}
	return EFI_NOT_FOUND;
}

EFI_STATUS efi_fat_read(struct efi_fat *fs, const struct efi_fat_node *file, uint64_t off, void *buf,
			size_t *len)
{
	if (file->attr & FAT_ATTR_DIRECTORY)
		return EFI_INVALID_PARAMETER;
	if (off >= file->size) {
		*len = 0;
		return EFI_SUCCESS;
	}
	size_t want = *len < file->size - off ? *len : (size_t)(file->size - off);
	*len = 0;
	uint32_t c = file->first_cluster;
	if (!cluster_ok(fs, c))
		return EFI_VOLUME_CORRUPTED;
	uint64_t hops = off / fs->cluster_size;
	if (hops > fs->clusters)
		return EFI_VOLUME_CORRUPTED;
	struct chain ch;
	chain_start(&ch, c);
	for (; hops; hops--) {
		EFI_STATUS st = chain_step(fs, &ch);
		if (EFI_ERROR(st))
			return st == EFI_NOT_FOUND ? EFI_VOLUME_CORRUPTED : st; /* chain shorter than the file */
	}
	c = ch.c;
	uint8_t *d = buf;
	uint32_t in = (uint32_t)(off % fs->cluster_size);
	size_t done = 0;
	for (uint64_t guard = 0; done < want; guard++) {
		if (guard > fs->clusters)
			return EFI_VOLUME_CORRUPTED;
		size_t n = fs->cluster_size - in < want - done ? fs->cluster_size - in : want - done;
		EFI_STATUS st = vol_read(fs, cluster_off(fs, c) + in, d + done, n, false);
		if (EFI_ERROR(st))
			return st;
		done += n;
		*len = done;
		in = 0;
		if (done < want) {
			st = chain_step(fs, &ch);
			if (EFI_ERROR(st))
				return st == EFI_NOT_FOUND ? EFI_VOLUME_CORRUPTED : st;
			c = ch.c;
		}
	}
	return EFI_SUCCESS;
}
