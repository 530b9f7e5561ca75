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
			if (n > (1u << 16))
				n = 1u << 16; /* the device splits it further as it needs */
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

static bool cluster_ok(const struct efi_fat *fs, uint32_t c)
{
	return c >= 2 && c < fs->clusters + 2;
}

static uint64_t cluster_off(const struct efi_fat *fs, uint32_t c)
{
	return fs->data_off + (uint64_t)(c - 2) * fs->cluster_size;
}

/* --- mount --------------------------------------------------------------------------------------- */

EFI_STATUS efi_fat_mount(struct efi_fat *fs, const struct efi_blk *b, uint64_t start_lba, uint64_t blocks)
{
	efi_memset(fs, 0, offsetof(struct efi_fat, fat_cache)); /* the caches need no clearing (each byte costs) */
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
	fs->fat_bytes = (uint32_t)(fatsz * bps);
	fs->nr_fats = bpb.num_fats;
	fs->free_count = 0xffffffffu;
	fs->next_free = 2;
	fs->date = 0x21;
	/* FSInfo is read when first needed (a write or a free-space query): a read-only boot never pays
	 * for it. */
	fs->fsinfo_loaded = fs->type != 32 || !x.fs_info || x.fs_info >= bpb.reserved_sectors;
	fs->fsinfo_off = fs->fsinfo_loaded ? 0 : (uint64_t)x.fs_info * bps;
	return EFI_SUCCESS;
}

/* The FAT entry of c (first copy), with end-of-chain values folded into EOC; 0 is a free cluster. */
static EFI_STATUS fat_raw(struct efi_fat *fs, uint32_t c, uint32_t *out)
{
	uint8_t v[4] = { 0 };
	uint32_t n;
	EFI_STATUS st;
	if (fs->type != 12 && fs->fat_cache_ok) {
		/* The common case of a chain walk: the entry is in the cached FAT block. Every emulated
		 * instruction counts in the firmware, and a big file's walk does this per cluster. */
		uint32_t w = fs->type / 8;
		uint64_t at = fs->base + fs->fat_off + (uint64_t)c * w;
		uint32_t bs = fs->blk->block_size;
		if (at / bs == fs->fat_cache_blk && fs->fat_off + (uint64_t)c * w + w <= fs->size) {
			const uint8_t *e = fs->fat_cache + at % bs;
			n = w == 2 ? efi_le16(e) : efi_le32(e) & 0x0fffffffu;
			if (n >= (w == 2 ? 0xfff8u : 0x0ffffff8u))
				n = EOC;
			*out = n;
			return EFI_SUCCESS;
		}
	}
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
	*out = n;
	return st;
}

/* Next cluster in the chain, EOC at its end; EFI_VOLUME_CORRUPTED for free, reserved or bad links. */
static EFI_STATUS fat_next(struct efi_fat *fs, uint32_t c, uint32_t *next)
{
	uint32_t n;
	EFI_STATUS st = fat_raw(fs, c, &n);
	if (EFI_ERROR(st))
		return st;
	if (n != EOC && (n < 2 || n >= fs->clusters + 2))
		return EFI_VOLUME_CORRUPTED;
	*next = n;
	return EFI_SUCCESS;
}

/* Brent's cycle detection along a chain: a looping chain is found within about twice the loop length
 * instead of after walking every cluster of the volume. */
#define chain efi_fat_chain

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
	uint64_t hops = byte / fs->cluster_size;
	if (hops > fs->clusters)
		return EFI_NOT_FOUND;
	struct chain ch;
	uint64_t at = 0;
	if (fs->dcur_ok && fs->dcur_first == c && fs->dcur_hops <= hops) {
		ch = fs->dcur; /* go on from where the previous access stopped */
		at = fs->dcur_hops;
	} else {
		chain_start(&ch, c);
	}
	for (; at < hops; at++) {
		EFI_STATUS st = chain_step(fs, &ch);
		if (EFI_ERROR(st))
			return st;
	}
	fs->dcur_ok = true;
	fs->dcur_first = c;
	fs->dcur_hops = hops;
	fs->dcur = ch;
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
	uint64_t lfn_start = 0;
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
				lfn_start = idx;
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
		out->parent_cluster = dir->is_root ? fs->root_cluster : dir->first_cluster;
		out->parent_is_root = dir->is_root;
		out->entry_idx = (uint32_t)idx;
		out->nr_lfn = have_lfn ? (uint32_t)(idx - lfn_start) : 0;
		out->has_entry = first != '.';
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

/* Starts ch at the cluster holding byte pos of the chain at first. A chain shorter than pos is
 * EFI_VOLUME_CORRUPTED (the directory entry claimed more). */
static EFI_STATUS chain_seek(struct efi_fat *fs, uint32_t first, uint64_t pos, struct chain *ch)
{
	if (!cluster_ok(fs, first))
		return EFI_VOLUME_CORRUPTED;
	uint64_t hops = pos / fs->cluster_size;
	if (hops > fs->clusters)
		return EFI_VOLUME_CORRUPTED;
	chain_start(ch, first);
	for (; hops; hops--) {
		EFI_STATUS st = chain_step(fs, ch);
		if (EFI_ERROR(st))
			return st == EFI_NOT_FOUND ? EFI_VOLUME_CORRUPTED : st;
	}
	return EFI_SUCCESS;
}

/* The run of consecutive clusters that starts at ch->c, in bytes into it, covering at most left
 * bytes: *len gets its length. When the run ends before left, ch->c is the next run's first cluster.
 * *guard counts the steps taken over every run of one transfer (a loop is EFI_VOLUME_CORRUPTED). */
static EFI_STATUS chain_run(struct efi_fat *fs, struct chain *ch, uint32_t in, uint64_t left, uint64_t *guard,
			    uint64_t *len)
{
	uint32_t c = ch->c;
	uint64_t k = fs->cluster_size - in < left ? fs->cluster_size - in : left;
	while (k < left) {
		EFI_STATUS st = chain_step(fs, ch);
		if (EFI_ERROR(st))
			return st == EFI_NOT_FOUND ? EFI_VOLUME_CORRUPTED : st; /* chain shorter than the file */
		if (++*guard > fs->clusters)
			return EFI_VOLUME_CORRUPTED;
		if (ch->c != c + 1)
			break;
		c = ch->c;
		k += fs->cluster_size < left - k ? fs->cluster_size : left - k;
	}
	*len = k;
	return EFI_SUCCESS;
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
	struct chain ch;
	EFI_STATUS st = chain_seek(fs, file->first_cluster, off, &ch);
	if (EFI_ERROR(st))
		return st;
	uint8_t *d = buf;
	uint32_t in = (uint32_t)(off % fs->cluster_size);
	size_t done = 0;
	uint64_t guard = 0;
	while (done < want) {
		/* One device read per run of consecutive clusters, straight into the caller's buffer. */
		uint64_t start = cluster_off(fs, ch.c) + in, n;
		if (EFI_ERROR(st = chain_run(fs, &ch, in, want - done, &guard, &n)))
			return st;
		if (EFI_ERROR(st = vol_read(fs, start, d + done, (size_t)n, false)))
			return st;
		done += (size_t)n;
		*len = done;
		in = 0;
	}
	return EFI_SUCCESS;
}

/* --- writes -------------------------------------------------------------------------------------- */

static const uint8_t zero_block[EFI_FAT_CACHE];

static void cache_drop(struct efi_fat *fs, uint64_t blk, uint64_t n)
{
	if (fs->fat_cache_ok && fs->fat_cache_blk - blk < n)
		fs->fat_cache_ok = false;
	if (fs->dir_cache_ok && fs->dir_cache_blk - blk < n)
		fs->dir_cache_ok = false;
}

/* Writes [off, off + len) of the volume (src NULL: zeros): whole aligned blocks straight from src,
 * partial blocks read-modify-written through one cache; the other cache forgets that block. */
static EFI_STATUS vol_write(struct efi_fat *fs, uint64_t off, const void *src, size_t len, bool dir)
{
	const uint8_t *s = src;
	uint32_t bs = fs->blk->block_size;
	if (!fs->blk->write)
		return EFI_WRITE_PROTECTED;
	if (off > fs->size || len > fs->size - off)
		return EFI_VOLUME_CORRUPTED;
	uint64_t at = fs->base + off;
	while (len) {
		uint64_t blk = at / bs;
		uint32_t in = (uint32_t)(at % bs);
		if (blk >= fs->blk->num_blocks)
			return EFI_DEVICE_ERROR;
		if (!in && len >= bs) {
			uint64_t n = len / bs;
			if (!s)
				n = 1; /* zero_block holds one block */
			else if (n > (1u << 16))
				n = 1u << 16;
			if (blk + n > fs->blk->num_blocks)
				return EFI_DEVICE_ERROR;
			cache_drop(fs, blk, n);
			if (EFI_ERROR(fs->blk->write(fs->blk->ctx, blk, (uint32_t)n, s ? s : zero_block)))
				return EFI_DEVICE_ERROR;
			if (s)
				s += n * bs;
			at += n * bs;
			len -= n * bs;
			continue;
		}
		uint8_t *cache = dir ? fs->dir_cache : fs->fat_cache;
		if (dir ? (fs->fat_cache_ok && fs->fat_cache_blk == blk) : (fs->dir_cache_ok && fs->dir_cache_blk == blk))
			cache_drop(fs, blk, 1);
		EFI_STATUS st = dir ? cached_block(fs, blk, cache, &fs->dir_cache_blk, &fs->dir_cache_ok)
				    : cached_block(fs, blk, cache, &fs->fat_cache_blk, &fs->fat_cache_ok);
		if (EFI_ERROR(st))
			return st;
		size_t n = bs - in < len ? bs - in : len;
		if (s)
			efi_memcpy(cache + in, s, n);
		else
			efi_memset(cache + in, 0, n);
		if (EFI_ERROR(fs->blk->write(fs->blk->ctx, blk, 1, cache))) {
			cache_drop(fs, blk, 1);
			return EFI_DEVICE_ERROR;
		}
		if (s)
			s += n;
		at += n;
		len -= n;
	}
	return EFI_SUCCESS;
}

static uint32_t eoc_value(const struct efi_fat *fs)
{
	return fs->type == 12 ? 0xfff : fs->type == 16 ? 0xffff : 0x0fffffff;
}

/* Sets the FAT entry of c in every FAT copy (v: 0 free, a cluster, or EOC). */
static EFI_STATUS fat_set(struct efi_fat *fs, uint32_t c, uint32_t v)
{
	fs->dcur_ok = false;
	if (v == EOC)
		v = eoc_value(fs);
	for (uint32_t k = 0; k < fs->nr_fats; k++) {
		uint64_t base = fs->fat_off + (uint64_t)k * fs->fat_bytes;
		uint8_t b[4];
		EFI_STATUS st;
		if (fs->type == 12) {
			uint64_t off = base + c + c / 2;
			if ((st = vol_read(fs, off, b, 2, false)))
				return st;
			uint16_t n = efi_le16(b);
			n = (c & 1) ? (uint16_t)((n & 0x000f) | (v & 0xfff) << 4) : (uint16_t)((n & 0xf000) | (v & 0xfff));
			efi_put16(b, n);
			st = vol_write(fs, off, b, 2, false);
		} else if (fs->type == 16) {
			efi_put16(b, (uint16_t)v);
			st = vol_write(fs, base + (uint64_t)c * 2, b, 2, false);
		} else {
			uint64_t off = base + (uint64_t)c * 4;
			if ((st = vol_read(fs, off, b, 4, false)))
				return st;
			efi_put32(b, (efi_le32(b) & 0xf0000000u) | (v & 0x0fffffffu));
			st = vol_write(fs, off, b, 4, false);
		}
		if (EFI_ERROR(st))
			return st;
	}
	return EFI_SUCCESS;
}

/* FSInfo (FAT spec 5): lead and structure signatures, then the free count and next-free hint. A
 * sector without the signatures is ignored (and never written). */
static void fsinfo_load(struct efi_fat *fs)
{
	if (fs->fsinfo_loaded)
		return;
	fs->fsinfo_loaded = true;
	uint8_t fi[512];
	if (EFI_ERROR(vol_read(fs, fs->fsinfo_off, fi, sizeof(fi), true)) || efi_le32(fi) != 0x41615252u ||
	    efi_le32(fi + 484) != 0x61417272u) {
		fs->fsinfo_off = 0;
		return;
	}
	if (efi_le32(fi + 488) <= fs->clusters)
		fs->free_count = efi_le32(fi + 488);
	if (cluster_ok(fs, efi_le32(fi + 492)))
		fs->next_free = efi_le32(fi + 492);
}

static void free_count_add(struct efi_fat *fs, int32_t d)
{
	if (fs->free_count != 0xffffffffu) {
		fs->free_count = (uint32_t)((int64_t)fs->free_count + d);
		fs->fsinfo_dirty = true;
	}
}

/* Takes a free cluster (marked end-of-chain) from the next-free hint on. */
static EFI_STATUS alloc_cluster(struct efi_fat *fs, uint32_t *out)
{
	fsinfo_load(fs);
	uint32_t c = cluster_ok(fs, fs->next_free) ? fs->next_free : 2;
	for (uint32_t i = 0; i < fs->clusters; i++) {
		uint32_t v;
		EFI_STATUS st = fat_raw(fs, c, &v);
		if (EFI_ERROR(st))
			return st;
		if (v == 0) {
			if ((st = fat_set(fs, c, EOC)))
				return st;
			free_count_add(fs, -1);
			fs->next_free = c + 1;
			fs->fsinfo_dirty = true;
			*out = c;
			return EFI_SUCCESS;
		}
		if (++c >= fs->clusters + 2)
			c = 2;
	}
	return EFI_VOLUME_FULL;
}

/* Frees the chain from c; stops at its end or at the first link that is not a cluster. */
static EFI_STATUS free_chain(struct efi_fat *fs, uint32_t c)
{
	fsinfo_load(fs);
	for (uint64_t guard = 0; cluster_ok(fs, c); guard++) {
		if (guard > fs->clusters)
			return EFI_VOLUME_CORRUPTED;
		uint32_t next;
		EFI_STATUS st = fat_raw(fs, c, &next);
		if (EFI_ERROR(st))
			return st;
		if (next == 0)
			break; /* already free: a damaged chain, stop rather than free someone else's */
		if ((st = fat_set(fs, c, 0)))
			return st;
		free_count_add(fs, 1);
		if (c < fs->next_free)
			fs->next_free = c;
		c = next;
	}
	return EFI_SUCCESS;
}

/* Allocates n clusters linked into a chain ending in EOC; *first gets its head. On failure the
 * clusters taken so far are given back. */
static EFI_STATUS alloc_chain(struct efi_fat *fs, uint64_t n, uint32_t *first)
{
	uint32_t prev = 0;
	*first = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t c;
		EFI_STATUS st = alloc_cluster(fs, &c);
		if (!st && prev)
			st = fat_set(fs, prev, c);
		if (EFI_ERROR(st)) {
			free_chain(fs, *first);
			*first = 0;
			return st;
		}
		if (!prev)
			*first = c;
		prev = c;
	}
	return EFI_SUCCESS;
}

/* Writes (src NULL: zeros) [pos, pos + n) of the data of the chain at first, which must be long
 * enough. */
static EFI_STATUS chain_write(struct efi_fat *fs, uint32_t first, uint64_t pos, const uint8_t *src, uint64_t n)
{
	if (!n)
		return EFI_SUCCESS;
	struct chain ch;
	EFI_STATUS st = chain_seek(fs, first, pos, &ch);
	if (EFI_ERROR(st))
		return st;
	uint32_t in = (uint32_t)(pos % fs->cluster_size);
	uint64_t guard = 0;
	while (n) {
		/* One device write per run of consecutive clusters. */
		uint64_t start = cluster_off(fs, ch.c) + in, k;
		if (EFI_ERROR(st = chain_run(fs, &ch, in, n, &guard, &k)))
			return st;
		if (EFI_ERROR(st = vol_write(fs, start, src, (size_t)k, false)))
			return st;
		n -= k;
		if (src)
			src += k;
		in = 0;
	}
	return EFI_SUCCESS;
}

/* Clusters in the chain at first and its last one. */
static EFI_STATUS chain_measure(struct efi_fat *fs, uint32_t first, uint64_t *count, uint32_t *last)
{
	*count = 0;
	*last = 0;
	if (!first)
		return EFI_SUCCESS;
	if (!cluster_ok(fs, first))
		return EFI_VOLUME_CORRUPTED;
	struct chain ch;
	chain_start(&ch, first);
	for (uint64_t n = 1;; n++) {
		if (n > fs->clusters)
			return EFI_VOLUME_CORRUPTED;
		*count = n;
		*last = ch.c;
		EFI_STATUS st = chain_step(fs, &ch);
		if (st == EFI_NOT_FOUND)
			return EFI_SUCCESS;
		if (EFI_ERROR(st))
			return st;
	}
}

static void parent_of(const struct efi_fat *fs, const struct efi_fat_node *n, struct efi_fat_node *dir)
{
	efi_memset(dir, 0, sizeof(*dir));
	dir->attr = FAT_ATTR_DIRECTORY;
	dir->is_root = n->parent_is_root;
	dir->first_cluster = n->parent_is_root ? fs->root_cluster : n->parent_cluster;
}

static EFI_STATUS entry_io(struct efi_fat *fs, const struct efi_fat_node *dir, uint32_t idx, struct fat_dirent *e,
			   bool write)
{
	uint64_t off;
	EFI_STATUS st = dir_entry_off(fs, dir, idx, &off);
	if (EFI_ERROR(st))
		return st == EFI_NOT_FOUND ? EFI_VOLUME_CORRUPTED : st;
	return write ? vol_write(fs, off, e, sizeof(*e), true) : vol_read(fs, off, e, sizeof(*e), true);
}

static void entry_set_cluster(const struct efi_fat *fs, struct fat_dirent *e, uint32_t c)
{
	e->fst_clus_lo = (uint16_t)c;
	e->fst_clus_hi = fs->type == 32 ? (uint16_t)(c >> 16) : 0;
}

/* Writes node's cluster, size and attributes into its entry. */
static EFI_STATUS node_update(struct efi_fat *fs, const struct efi_fat_node *n)
{
	if (!n->has_entry)
		return EFI_ACCESS_DENIED;
	struct efi_fat_node dir;
	parent_of(fs, n, &dir);
	struct fat_dirent e;
	EFI_STATUS st = entry_io(fs, &dir, n->entry_idx, &e, false);
	if (EFI_ERROR(st))
		return st;
	entry_set_cluster(fs, &e, n->first_cluster);
	e.file_size = (n->attr & FAT_ATTR_DIRECTORY) ? 0 : n->size;
	e.attr = n->attr;
	e.wrt_date = e.lst_acc_date = fs->date;
	e.wrt_time = fs->time;
	return entry_io(fs, &dir, n->entry_idx, &e, true);
}

EFI_STATUS efi_fat_write(struct efi_fat *fs, struct efi_fat_node *file, uint64_t off, const void *buf, size_t *len)
{
	size_t want = *len;
	*len = 0;
	if (file->attr & FAT_ATTR_DIRECTORY || !file->has_entry)
		return EFI_INVALID_PARAMETER;
	if (file->attr & FAT_ATTR_READ_ONLY)
		return EFI_ACCESS_DENIED;
	if (off > 0xffffffffu || want > 0xffffffffu - off)
		return EFI_VOLUME_FULL; /* FAT files end below 4 GiB */
	uint64_t end = off + want, old_size = file->size;
	if (end < old_size)
		end = old_size;
	uint64_t have, need = (end + fs->cluster_size - 1) / fs->cluster_size;
	uint32_t last, first = file->first_cluster;
	EFI_STATUS st = chain_measure(fs, first, &have, &last);
	if (EFI_ERROR(st))
		return st;
	if (need > have) {
		/* New clusters are linked to the chain before the data is written, but the entry's size
		 * (what makes the data visible) is written last. */
		uint32_t more;
		if ((st = alloc_chain(fs, need - have, &more)))
			return st;
		if (last)
			st = fat_set(fs, last, more);
		else
			first = more;
		if (EFI_ERROR(st))
			return st;
	}
	if (off > old_size && (st = chain_write(fs, first, old_size, NULL, off - old_size)))
		return st;
	if ((st = chain_write(fs, first, off, buf, want)))
		return st;
	file->first_cluster = first;
	file->size = (uint32_t)end;
	if ((st = node_update(fs, file)))
		return st;
	*len = want;
	return EFI_SUCCESS;
}

EFI_STATUS efi_fat_truncate(struct efi_fat *fs, struct efi_fat_node *file, uint64_t size)
{
	if (file->attr & FAT_ATTR_DIRECTORY || !file->has_entry)
		return EFI_INVALID_PARAMETER;
	if (size >= file->size) {
		size_t zero = 0;
		return size == file->size ? EFI_SUCCESS : efi_fat_write(fs, file, size, NULL, &zero);
	}
	uint64_t keep = (size + fs->cluster_size - 1) / fs->cluster_size;
	uint32_t cut = 0, rest = file->first_cluster;
	if (keep) {
		struct chain ch;
		if (!cluster_ok(fs, file->first_cluster))
			return EFI_VOLUME_CORRUPTED;
		chain_start(&ch, file->first_cluster);
		for (uint64_t i = 1; i < keep; i++) {
			EFI_STATUS st = chain_step(fs, &ch);
			if (EFI_ERROR(st))
				return st == EFI_NOT_FOUND ? EFI_VOLUME_CORRUPTED : st;
		}
		cut = ch.c;
		EFI_STATUS st = fat_raw(fs, cut, &rest);
		if (EFI_ERROR(st))
			return st;
	}
	/* The entry shrinks first: a crash in between leaves lost clusters, not a short chain. */
	file->size = (uint32_t)size;
	if (!keep)
		file->first_cluster = 0;
	EFI_STATUS st = node_update(fs, file);
	if (EFI_ERROR(st))
		return st;
	if (cut && rest != EOC && (st = fat_set(fs, cut, EOC)))
		return st;
	return rest == EOC ? EFI_SUCCESS : free_chain(fs, rest);
}

EFI_STATUS efi_fat_set_attr(struct efi_fat *fs, struct efi_fat_node *node, uint8_t attr)
{
	if (!node->has_entry)
		return EFI_ACCESS_DENIED;
	node->attr = (uint8_t)((attr & (FAT_ATTR_READ_ONLY | FAT_ATTR_HIDDEN | FAT_ATTR_SYSTEM | FAT_ATTR_ARCHIVE)) |
			       (node->attr & FAT_ATTR_DIRECTORY));
	return node_update(fs, node);
}

EFI_STATUS efi_fat_delete(struct efi_fat *fs, const struct efi_fat_node *node)
{
	if (!node->has_entry || node->nr_lfn > node->entry_idx)
		return EFI_ACCESS_DENIED;
	if (node->attr & FAT_ATTR_DIRECTORY) {
		uint64_t cookie = 0;
		struct efi_fat_node child;
		EFI_STATUS st = efi_fat_readdir(fs, node, &cookie, &child);
		if (st == EFI_SUCCESS)
			return EFI_ACCESS_DENIED;
		if (st != EFI_NOT_FOUND)
			return st;
	}
	struct efi_fat_node dir;
	parent_of(fs, node, &dir);
	/* The entries go first: a crash then leaves lost clusters, never a name over freed ones. */
	for (uint32_t i = node->entry_idx - node->nr_lfn; i <= node->entry_idx; i++) {
		uint64_t off;
		EFI_STATUS st = dir_entry_off(fs, &dir, i, &off);
		if (EFI_ERROR(st))
			return st;
		uint8_t mark = FAT_DIRENT_FREE;
		if ((st = vol_write(fs, off, &mark, 1, true)))
			return st;
	}
	return node->first_cluster ? free_chain(fs, node->first_cluster) : EFI_SUCCESS;
}

/* --- creating entries ---------------------------------------------------------------------------- */

static bool sfn_char_ok(CHAR16 c)
{
	if (c < 0x21 || c > 0x7e)
		return false;
	for (const char *bad = "\"*+,./:;<=>?[\\]|"; *bad; bad++)
		if (c == (CHAR16)*bad)
			return false;
	return true;
}

/* The 8.3 form of a name that needs no long name: upper case, base <= 8, extension <= 3. */
static bool sfn_exact(const CHAR16 *name, size_t len, char out[11])
{
	efi_memset(out, ' ', 11);
	size_t i = 0, k = 0;
	for (; i < len && name[i] != '.'; i++, k++) {
		if (k == 8 || !sfn_char_ok(name[i]) || (name[i] >= 'a' && name[i] <= 'z'))
			return false;
		out[k] = (char)name[i];
	}
	if (!k)
		return false;
	if (i < len) {
		i++;
		if (i == len)
			return false;
		for (k = 8; i < len; i++, k++) {
			if (k == 11 || !sfn_char_ok(name[i]) || (name[i] >= 'a' && name[i] <= 'z'))
				return false;
			out[k] = (char)name[i];
		}
	}
	if ((uint8_t)out[0] == 0xe5)
		out[0] = 0x05;
	return true;
}

/* The basis name of the FAT spec's alias generation (lossy): base and extension from the last dot,
 * upper-cased, characters FAT cannot hold replaced by '_', spaces and dots dropped. */
static void sfn_basis(const CHAR16 *name, size_t len, char out[11], size_t *base_len)
{
	efi_memset(out, ' ', 11);
	size_t dot = len;
	for (size_t i = len; i-- > 0;)
		if (name[i] == '.') {
			dot = i;
			break;
		}
	size_t k = 0;
	for (size_t i = 0; i < dot && k < 8; i++) {
		CHAR16 c = efi_toupper16(name[i]);
		if (c == ' ' || c == '.')
			continue;
		out[k++] = sfn_char_ok(c) ? (char)c : '_';
	}
	if (!k)
		out[k++] = '_';
	*base_len = k;
	k = 8;
	for (size_t i = dot + 1; i < len && k < 11; i++) {
		CHAR16 c = efi_toupper16(name[i]);
		if (c == ' ' || c == '.')
			continue;
		out[k++] = sfn_char_ok(c) ? (char)c : '_';
	}
}

/* Where the "~n" tail of alias n of a basis with base_len characters starts. */
static size_t tail_at(size_t base_len, uint32_t n)
{
	size_t digits = 1;
	for (uint32_t v = n; v >= 10; v /= 10)
		digits++;
	return base_len + digits + 1 > 8 ? 8 - digits - 1 : base_len;
}

/* One pass over dir marking in used[] (bit n) each numeric tail ~n that an entry already carries for
 * this basis: a directory holds at most 65536 entries, so a free tail below 65536 exists unless it is
 * full. */
static uint8_t tail_used[65536 / 8];
static EFI_STATUS sfn_tails(struct efi_fat *fs, const struct efi_fat_node *dir, const char basis[11], size_t base_len)
{
	efi_memset(tail_used, 0, sizeof(tail_used));
	for (uint32_t idx = 0; idx < (1u << 16); idx++) {
		struct fat_dirent e;
		EFI_STATUS st = entry_io(fs, dir, idx, &e, false);
		if (st == EFI_VOLUME_CORRUPTED)
			return EFI_SUCCESS; /* past the directory's end */
		if (EFI_ERROR(st))
			return st;
		if (e.name[0] == FAT_DIRENT_END)
			return EFI_SUCCESS;
		if ((uint8_t)e.name[0] == FAT_DIRENT_FREE || (e.attr & FAT_ATTR_LONG_NAME_MASK) == FAT_ATTR_LONG_NAME ||
		    efi_memcmp(e.name + 8, basis + 8, 3))
			continue;
		size_t t = 0;
		while (t < 8 && e.name[t] != '~')
			t++;
		if (t == 8 || t + 1 == 8 || e.name[t + 1] == '0')
			continue;
		uint32_t n = 0;
		size_t k = t + 1;
		for (; k < 8 && e.name[k] >= '0' && e.name[k] <= '9'; k++)
			n = n * 10 + (uint32_t)(e.name[k] - '0');
		bool rest_blank = true;
		for (size_t j = k; j < 8; j++)
			rest_blank &= e.name[j] == ' ';
		if (k == t + 1 || !rest_blank || n >= 65536 || tail_at(base_len, n) != t || efi_memcmp(e.name, basis, t))
			continue;
		tail_used[n / 8] |= (uint8_t)(1u << (n % 8));
	}
	return EFI_SUCCESS;
}

static EFI_STATUS zero_cluster(struct efi_fat *fs, uint32_t c)
{
	return vol_write(fs, cluster_off(fs, c), NULL, fs->cluster_size, true);
}

/* need consecutive free entries of dir; a cluster-chained directory grows by a zeroed cluster. */
static EFI_STATUS dir_find_free(struct efi_fat *fs, const struct efi_fat_node *dir, uint32_t need, uint32_t *idx)
{
	uint32_t run = 0, start = 0;
	for (uint32_t i = 0; i < (1u << 16); i++) {
		uint64_t off;
		EFI_STATUS st = dir_entry_off(fs, dir, i, &off);
		if (st == EFI_NOT_FOUND) {
			if (dir->is_root && fs->type != 32)
				return EFI_VOLUME_FULL;
			uint64_t count;
			uint32_t last, c;
			uint32_t first = dir->is_root ? fs->root_cluster : dir->first_cluster;
			if ((st = chain_measure(fs, first, &count, &last)))
				return st;
			if (!last)
				return EFI_VOLUME_CORRUPTED;
			if ((st = alloc_cluster(fs, &c)) || (st = zero_cluster(fs, c)) || (st = fat_set(fs, last, c)))
				return st;
			st = dir_entry_off(fs, dir, i, &off);
		}
		if (EFI_ERROR(st))
			return st;
		uint8_t b;
		if ((st = vol_read(fs, off, &b, 1, true)))
			return st;
		if (b == FAT_DIRENT_FREE || b == FAT_DIRENT_END) {
			if (!run)
				start = i;
			if (++run == need) {
				*idx = start;
				return EFI_SUCCESS;
			}
		} else {
			run = 0;
		}
	}
	return EFI_VOLUME_FULL;
}

EFI_STATUS efi_fat_create(struct efi_fat *fs, const struct efi_fat_node *dir, const CHAR16 *name, uint8_t attr,
			  struct efi_fat_node *out)
{
	if (!(dir->attr & FAT_ATTR_DIRECTORY))
		return EFI_INVALID_PARAMETER;
	size_t len = efi_strnlen16(name, EFI_FAT_NAME_MAX + 1);
	while (len && (name[len - 1] == '.' || name[len - 1] == ' '))
		len--; /* as Windows does: trailing dots and spaces are not part of a FAT name */
	if (!len || len > EFI_FAT_NAME_MAX)
		return EFI_INVALID_PARAMETER;
	for (size_t i = 0; i < len; i++) {
		CHAR16 c = name[i];
		if (c < 0x20 || c == '"' || c == '*' || c == '/' || c == ':' || c == '<' || c == '>' || c == '?' ||
		    c == '\\' || c == '|')
			return EFI_INVALID_PARAMETER;
	}
	CHAR16 nm[EFI_FAT_NAME_MAX + 1];
	efi_memcpy(nm, name, len * sizeof(CHAR16));
	nm[len] = 0;
	struct efi_fat_node tmp;
	EFI_STATUS st = efi_fat_lookup(fs, dir, nm, &tmp);
	if (st == EFI_SUCCESS)
		return EFI_ACCESS_DENIED;
	if (st != EFI_NOT_FOUND)
		return st;

	char sfn[11];
	uint32_t nr_lfn = 0;
	if (!sfn_exact(nm, len, sfn)) {
		nr_lfn = (uint32_t)((len + 12) / 13);
		size_t base_len;
		char basis[11];
		sfn_basis(nm, len, basis, &base_len);
		if ((st = sfn_tails(fs, dir, basis, base_len)))
			return st;
		uint32_t n = 1;
		while (n < 65536 && (tail_used[n / 8] & (1u << (n % 8))))
			n++;
		if (n == 65536)
			return EFI_VOLUME_FULL;
		char tail[8];
		int tl = 0;
		for (uint32_t v = n; v; v /= 10)
			tail[tl++] = (char)('0' + v % 10);
		efi_memcpy(sfn, basis, 11);
		size_t at = tail_at(base_len, n);
		sfn[at++] = '~';
		while (tl)
			sfn[at++] = tail[--tl];
	}
	uint32_t idx = 0;
	if ((st = dir_find_free(fs, dir, nr_lfn + 1, &idx)))
		return st;

	/* A directory's cluster, with "." and "..", is written before any entry names it. */
	uint32_t first = 0;
	bool is_dir = attr & FAT_ATTR_DIRECTORY;
	if (is_dir) {
		if ((st = alloc_cluster(fs, &first)) || (st = zero_cluster(fs, first)))
			return st;
		struct fat_dirent dots[2];
		efi_memset(dots, 0, sizeof(dots));
		efi_memset(dots[0].name, ' ', 11);
		efi_memset(dots[1].name, ' ', 11);
		dots[0].name[0] = dots[1].name[0] = dots[1].name[1] = '.';
		dots[0].attr = dots[1].attr = FAT_ATTR_DIRECTORY;
		dots[0].crt_date = dots[0].wrt_date = dots[0].lst_acc_date = fs->date;
		dots[1].crt_date = dots[1].wrt_date = dots[1].lst_acc_date = fs->date;
		entry_set_cluster(fs, &dots[0], first);
		entry_set_cluster(fs, &dots[1], dir->is_root ? 0 : dir->first_cluster);
		if ((st = vol_write(fs, cluster_off(fs, first), dots, sizeof(dots), true)))
			return st;
	}
	uint8_t sum = sfn_checksum(sfn);
	for (uint32_t k = 0; k < nr_lfn; k++) {
		uint32_t ord = nr_lfn - k; /* stored last part first */
		struct fat_lfn_entry l;
		efi_memset(&l, 0, sizeof(l));
		l.ord = (uint8_t)(ord | (k == 0 ? FAT_LFN_LAST : 0));
		l.attr = FAT_ATTR_LONG_NAME;
		l.checksum = sum;
		CHAR16 part[13];
		for (uint32_t j = 0; j < 13; j++) {
			size_t pos = (ord - 1) * 13 + j;
			part[j] = pos < len ? nm[pos] : pos == len ? 0 : 0xffff;
		}
		efi_memcpy(l.name1, part, 10);
		efi_memcpy(l.name2, part + 5, 12);
		efi_memcpy(l.name3, part + 11, 4);
		struct fat_dirent e;
		efi_memcpy(&e, &l, sizeof(e));
		if ((st = entry_io(fs, dir, idx + k, &e, true)))
			return st;
	}
	struct fat_dirent e;
	efi_memset(&e, 0, sizeof(e));
	efi_memcpy(e.name, sfn, 11);
	e.attr = (uint8_t)(attr & (FAT_ATTR_READ_ONLY | FAT_ATTR_HIDDEN | FAT_ATTR_SYSTEM | FAT_ATTR_DIRECTORY |
				   FAT_ATTR_ARCHIVE));
	if (!is_dir)
		e.attr |= FAT_ATTR_ARCHIVE;
	e.crt_date = e.wrt_date = e.lst_acc_date = fs->date;
	e.crt_time = e.wrt_time = fs->time;
	entry_set_cluster(fs, &e, first);
	if ((st = entry_io(fs, dir, idx + nr_lfn, &e, true)))
		return st;

	efi_memset(out, 0, sizeof(*out));
	out->first_cluster = first;
	out->attr = e.attr;
	out->parent_cluster = dir->is_root ? fs->root_cluster : dir->first_cluster;
	out->parent_is_root = dir->is_root;
	out->entry_idx = idx + nr_lfn;
	out->nr_lfn = nr_lfn;
	out->has_entry = true;
	efi_memcpy(out->name, nm, (len + 1) * sizeof(CHAR16));
	return EFI_SUCCESS;
}

EFI_STATUS efi_fat_flush(struct efi_fat *fs)
{
	if (!fs->fsinfo_dirty || !fs->fsinfo_off)
		return EFI_SUCCESS;
	uint8_t b[8];
	efi_put32(b, fs->free_count);
	efi_put32(b + 4, cluster_ok(fs, fs->next_free) ? fs->next_free : 0xffffffffu);
	EFI_STATUS st = vol_write(fs, fs->fsinfo_off + 488, b, sizeof(b), true);
	if (!EFI_ERROR(st))
		fs->fsinfo_dirty = false;
	return st;
}

EFI_STATUS efi_fat_free_clusters(struct efi_fat *fs, uint32_t *n)
{
	fsinfo_load(fs);
	if (fs->free_count == 0xffffffffu) {
		uint32_t count = 0;
		for (uint32_t c = 2; c < fs->clusters + 2; c++) {
			uint32_t v;
			EFI_STATUS st = fat_raw(fs, c, &v);
			if (EFI_ERROR(st))
				return st;
			count += v == 0;
		}
		fs->free_count = count;
		fs->fsinfo_dirty = fs->blk->write != NULL; /* worth recording where the volume is writable */
	}
	*n = fs->free_count;
	return EFI_SUCCESS;
}

EFI_STATUS efi_fat_label(struct efi_fat *fs, CHAR16 out[12])
{
	out[0] = 0;
	struct efi_fat_node root;
	efi_fat_root(fs, &root);
	for (uint32_t idx = 0; idx < (1u << 16); idx++) {
		struct fat_dirent e;
		EFI_STATUS st = entry_io(fs, &root, idx, &e, false);
		if (st == EFI_VOLUME_CORRUPTED || e.name[0] == FAT_DIRENT_END)
			return EFI_SUCCESS; /* the end of the root: no label */
		if (EFI_ERROR(st))
			return st;
		if ((uint8_t)e.name[0] == FAT_DIRENT_FREE || (e.attr & FAT_ATTR_LONG_NAME_MASK) == FAT_ATTR_LONG_NAME ||
		    !(e.attr & FAT_ATTR_VOLUME_ID))
			continue;
		int n = 11;
		while (n && e.name[n - 1] == ' ')
			n--;
		for (int i = 0; i < n; i++)
			out[i] = (uint8_t)e.name[i];
		out[n] = 0;
		return EFI_SUCCESS;
	}
	return EFI_SUCCESS;
}
