#include "vmbus_ring.h"

/* The header fields sit in a packed struct but are 4-byte aligned in the page-aligned header; say so,
 * or clang would call libatomic for "misaligned" atomics. */
#define HDR_U32(p)      ((uint32_t *)__builtin_assume_aligned((void *)(p), 4))
#define LOAD_ACQ(p)     __atomic_load_n(HDR_U32(p), __ATOMIC_ACQUIRE)
#define LOAD_RELAXED(p) __atomic_load_n(HDR_U32(p), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n(HDR_U32(p), (v), __ATOMIC_RELEASE)
#define STORE_RELAXED(p, v) __atomic_store_n(HDR_U32(p), (v), __ATOMIC_RELAXED)
#define FULL_BARRIER()  __atomic_thread_fence(__ATOMIC_SEQ_CST)

#define DESC_SIZE ((uint32_t)sizeof(struct vmbus_packet_descriptor))

void vmbus_mem_copy(void *dst, const void *src, size_t n)
{
#if __STDC_HOSTED__
	__builtin_memcpy(dst, src, n);
#else
	/* -fno-builtin: the compiler would not inline memcpy; rep movsb is short and fast enough. */
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
#endif
}

void vmbus_mem_zero(void *dst, size_t n)
{
#if __STDC_HOSTED__
	__builtin_memset(dst, 0, n);
#else
	__asm__ volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(0) : "memory");
#endif
}

static bool ring_index_ok(const struct vmbus_ring *r, uint32_t idx)
{
	return idx < r->size && (idx & 7u) == 0;
}

int vmbus_ring_init(struct vmbus_ring *r, void *hdr, void *data, uint32_t data_size, bool mirrored)
{
	vmbus_mem_zero(r, sizeof(*r));
	if (data_size < HV_PAGE_SIZE || (data_size & 7u) || data_size > 0x80000000u)
		return -VMBUS_EINVAL;
	r->hdr = hdr;
	r->data = data;
	r->size = data_size;
	r->mirrored = mirrored;
	uint32_t rd = LOAD_ACQ(&r->hdr->read_index), wr = LOAD_ACQ(&r->hdr->write_index);
	if (!ring_index_ok(r, rd) || !ring_index_ok(r, wr)) {
		r->failed = true;
		return -VMBUS_EPROTO;
	}
	r->priv_read = r->start_read = rd;
	r->priv_write = wr;
	return 0;
}

/* Copies len (<= size) bytes at ring offset off (< size), in two pieces across the wrap unless the
 * data area is mirrored. */
static void ring_copy_out(const struct vmbus_ring *r, uint32_t off, void *dst, uint32_t len)
{
	uint32_t first = r->size - off;
	if (r->mirrored || len <= first) {
		vmbus_mem_copy(dst, r->data + off, len);
		return;
	}
	vmbus_mem_copy(dst, r->data + off, first);
	vmbus_mem_copy((uint8_t *)dst + first, r->data, len - first);
}

static uint32_t ring_copy_in(struct vmbus_ring *r, uint32_t off, const void *src, uint32_t len)
{
	uint32_t first = r->size - off;
	if (r->mirrored || len <= first) {
		vmbus_mem_copy(r->data + off, src, len);
	} else {
		vmbus_mem_copy(r->data + off, src, first);
		vmbus_mem_copy(r->data, (const uint8_t *)src + first, len - first);
	}
	off += len;
	return off >= r->size ? off - r->size : off;
}

/* Bytes between a read and a write index (the data waiting to be read). */
static uint32_t ring_used(const struct vmbus_ring *r, uint32_t rd, uint32_t wr)
{
	return wr >= rd ? wr - rd : r->size - (rd - wr);
}

/* Loads the other end's write_index ([A] acquire) and validates it. */
static int ring_load_write_index(struct vmbus_ring *r, uint32_t *wr)
{
	*wr = LOAD_ACQ(&r->hdr->write_index);
	if (!ring_index_ok(r, *wr)) {
		r->failed = true;
		return -VMBUS_EPROTO;
	}
	return 0;
}

uint32_t vmbus_ring_avail_read(struct vmbus_ring *r)
{
	uint32_t wr;
	if (r->failed || ring_load_write_index(r, &wr))
		return 0;
	return ring_used(r, r->priv_read, wr);
}

int vmbus_ring_read(struct vmbus_ring *r, void *buf, uint32_t cap, uint32_t *len)
{
	uint32_t wr;
	*len = 0;
	if (r->failed)
		return -VMBUS_EPROTO;
	if (ring_load_write_index(r, &wr))
		return -VMBUS_EPROTO;
	uint32_t avail = ring_used(r, r->priv_read, wr);
	if (avail == 0)
		return -VMBUS_EAGAIN;
	/* The writer publishes whole packets only, so a fragment is corruption, not "wait for more". */
	if (avail < DESC_SIZE + VMBUS_PACKET_TRAILER_SIZE)
		goto corrupt;
	struct vmbus_packet_descriptor d;
	ring_copy_out(r, r->priv_read, &d, DESC_SIZE);
	uint32_t pkt = (uint32_t)d.len8 * 8u, off = (uint32_t)d.offset8 * 8u;
	if (pkt < DESC_SIZE || off < DESC_SIZE || off > pkt || pkt + VMBUS_PACKET_TRAILER_SIZE > avail)
		goto corrupt;
	*len = pkt;
	if (cap < pkt)
		return -VMBUS_EMSGSIZE;
	ring_copy_out(r, r->priv_read, buf, pkt);
	/* The other end may have rewritten the descriptor since we checked it: keep the checked copy. */
	vmbus_mem_copy(buf, &d, DESC_SIZE);
	uint32_t next = r->priv_read + pkt + VMBUS_PACKET_TRAILER_SIZE;
	r->priv_read = next >= r->size ? next - r->size : next;
	return 0;
corrupt:
	r->failed = true;
	return -VMBUS_EPROTO;
}

bool vmbus_ring_read_commit(struct vmbus_ring *r)
{
	if (r->failed)
		return false;
	uint32_t start = r->start_read;
	if (r->priv_read == start)
		return false;
	STORE_REL(&r->hdr->read_index, r->priv_read); /* [B] */
	r->start_read = r->priv_read;
	FULL_BARRIER(); /* [D] */
	uint32_t pending = LOAD_RELAXED(&r->hdr->pending_send_sz);
	if (!pending)
		return false;
	uint32_t wr;
	if (ring_load_write_index(r, &wr))
		return false;
	uint32_t free_now = r->size - ring_used(r, r->priv_read, wr);
	uint32_t freed = ring_used(r, start, r->priv_read);
	/* Signal only on the transition "not enough space" -> "enough space"; exactly enough is not
	 * enough, because a full ring could not be told apart from an empty one. */
	if (free_now - freed > pending)
		return false;
	return free_now > pending;
}

void vmbus_ring_mask(struct vmbus_ring *r)
{
	STORE_RELAXED(&r->hdr->interrupt_mask, 1u);
}

bool vmbus_ring_unmask(struct vmbus_ring *r)
{
	STORE_RELAXED(&r->hdr->interrupt_mask, 0u);
	FULL_BARRIER(); /* [C] */
	return vmbus_ring_avail_read(r) != 0;
}

/* Free bytes as the writer sees them, or -1 on a corrupt read_index ([B] acquire). */
static int64_t ring_free(struct vmbus_ring *r)
{
	uint32_t rd = LOAD_ACQ(&r->hdr->read_index);
	if (!ring_index_ok(r, rd)) {
		r->failed = true;
		return -1;
	}
	return (int64_t)r->size - ring_used(r, rd, r->priv_write);
}

uint32_t vmbus_ring_avail_write(struct vmbus_ring *r)
{
	int64_t f = r->failed ? 0 : ring_free(r);
	return f < 0 ? 0 : (uint32_t)f;
}

int vmbus_ring_write(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id,
		     const void *ext, uint32_t ext_len, const void *payload, uint32_t len, bool *signal)
{
	if (signal)
		*signal = false;
	if (r->failed)
		return -VMBUS_EPROTO;
	if (ext_len & 7u)
		return -VMBUS_EINVAL;
	if (ext_len >= r->size || len >= r->size)
		return -VMBUS_EMSGSIZE;
	uint32_t total = vmbus_ring_packet_bytes(ext_len, len);
	uint32_t pkt = total - VMBUS_PACKET_TRAILER_SIZE;
	if (total >= r->size || pkt / 8u > 0xFFFFu)
		return -VMBUS_EMSGSIZE;
	int64_t free_bytes = ring_free(r);
	if (free_bytes < 0)
		return -VMBUS_EPROTO;
	if (free_bytes <= total) {
		STORE_RELAXED(&r->hdr->pending_send_sz, total);
		FULL_BARRIER(); /* [D] */
		free_bytes = ring_free(r);
		if (free_bytes < 0)
			return -VMBUS_EPROTO;
		if (free_bytes <= total)
			return -VMBUS_EAGAIN;
	}
	if (LOAD_RELAXED(&r->hdr->pending_send_sz))
		STORE_RELAXED(&r->hdr->pending_send_sz, 0u);

	uint32_t old = r->priv_write, w = old;
	struct vmbus_packet_descriptor d = {
		.type = type,
		.offset8 = (uint16_t)((DESC_SIZE + ext_len) / 8u),
		.len8 = (uint16_t)(pkt / 8u),
		.flags = flags,
		.trans_id = trans_id,
	};
	w = ring_copy_in(r, w, &d, DESC_SIZE);
	if (ext_len)
		w = ring_copy_in(r, w, ext, ext_len);
	if (len)
		w = ring_copy_in(r, w, payload, len);
	static const uint8_t zeros[8];
	uint32_t pad = pkt - (DESC_SIZE + ext_len + len);
	if (pad)
		w = ring_copy_in(r, w, zeros, pad);
	uint64_t trailer = (uint64_t)old << 32;
	w = ring_copy_in(r, w, &trailer, sizeof(trailer));
	r->priv_write = w;
	STORE_REL(&r->hdr->write_index, w); /* [A] */

	FULL_BARRIER(); /* [C] */
	if (LOAD_RELAXED(&r->hdr->interrupt_mask))
		return 0;
	if (signal)
		*signal = LOAD_ACQ(&r->hdr->read_index) == old;
	return 0;
}
