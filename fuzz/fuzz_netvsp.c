/* Fuzzes the NVSP and RNDIS parsers: the pure RNDIS functions on raw bytes, then netvsp itself through
 * the loopback guest (fresh adapter per input, so a crash reproduces from its input alone): the input
 * becomes an NVSP message, an RNDIS stream in a send section, a GPA-direct packet, a completion, or a
 * frame from the backend; or (mode bits 4 and 5) the adapter's saved state, altered by the input
 * (offset, xor byte triples; bit 3: cut to a length), restored into a new adapter over the same
 * guest after the server's restore, as a restored VM does. Invariants: no crash, no out-of-bounds
 * access, no leak; the adapter keeps answering. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "support/netvsc_guest.h"
#include "devices/netvsp.h"
#include "devices/rndis.h"
#include "util/log.h"
#include "support/loopback.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
	struct net_backend be;
	const uint8_t *in;
	uint32_t in_len;
	int frames;
};

static int sink_send(struct net_backend *be, uint32_t q, const struct virtio_net_hdr *vh, const struct iovec *iov,
		     int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++) {
		volatile const uint8_t *p = iov[i].iov_base;
		if (iov[i].iov_len) /* touch the first and last byte: ASan checks they are in bounds */
			t += p[0] + p[iov[i].iov_len - 1];
	}
	(void)t;
	return 0;
}

static int sink_recv(struct net_backend *be, uint32_t q, struct virtio_net_hdr *vh, void *buf, uint32_t cap)
{
	struct sink *s = (struct sink *)be;
	if (s->frames-- <= 0 || !s->in_len)
		return -EAGAIN;
	memset(vh, 0, sizeof(*vh));
	uint32_t n = s->in_len < cap ? s->in_len : cap;
	memcpy(buf, s->in, n);
	return (int)n;
}

static int sink_fd(struct net_backend *be, uint32_t q)
{
	return -1;
}

static void sink_destroy(struct net_backend *be)
{
	free(be);
}

static const struct net_backend_ops sink_ops = {
	.send = sink_send, .recv = sink_recv, .rx_fd = sink_fd, .destroy = sink_destroy,
};

static struct sink *fz_sink(void)
{
	struct sink *s = calloc(1, sizeof(*s));
	s->be.ops = &sink_ops;
	s->be.nr_queues = 2;
	s->be.caps = NET_BE_CAP_CSUM | NET_BE_CAP_TSO;
	return s;
}

/* nv's saved state altered by p, restored into a new adapter after the server's own restore (as a
 * restored VM: server reset, adapter made again). Returns the adapter the guest now has. */
static struct netvsp *fz_restore(struct vmbus_loopback *lb, struct netvsp *nv, const uint8_t *p, uint32_t n,
				 uint8_t mode)
{
	uint8_t *st = NULL, *vb = NULL;
	size_t sl = 0, vl = 0;
	netvsp_hold(nv, 0);
	int r = netvsp_save(nv, 0, &st, &sl);
	netvsp_release(nv);
	if (r || vmbus_server_save(lb->srv, &vb, &vl)) {
		free(st);
		return nv;
	}
	for (uint32_t i = 0; i + 2 < n && sl; i += 3)
		st[(p[i] | (size_t)p[i + 1] << 8) % sl] ^= p[i + 2];
	if (mode & 8)
		sl = n % (sl + 1);
	struct netvsp_config cfg = { .mem = &lb->mem, .mtu = mode & 0x80 ? 9000 : 1500 };
	cfg.mac[0] = 2;
	vmbus_server_reset(lb->srv);
	netvsp_destroy(nv);
	struct sink *s = fz_sink();
	cfg.backend = &s->be;
	if (netvsp_create(lb->srv, &cfg, &nv))
		abort(); /* the same adapter as before: it cannot be refused */
	char err[256];
	size_t used;
	if (!vmbus_server_restore(lb->srv, vb, vl, err, sizeof(err))) {
		netvsp_restore(nv, 0, st, sl, &used, err, sizeof(err));
		vmbus_server_kick_open(lb->srv);
	}
	free(vb);
	free(st);
	return nv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		log_set_level(LOG_ERROR);
		quiet = true;
	}
	if (size < 2)
		return 0;
	uint8_t mode = data[0];
	const uint8_t *p = data + 1;
	uint32_t n = (uint32_t)(size - 1 > 65536 ? 65536 : size - 1);

	/* Pure parsers. */
	struct rndis_state st;
	rndis_state_init(&st, NULL);
	st.max_queues = 4;
	uint8_t reply[RNDIS_CONTROL_REPLY_MAX];
	(void)rndis_control(&st, p, n, reply, sizeof(reply));
	struct rndis_tx_info ti;
	if (rndis_packet_parse(p, n < 256 ? n : 256, n, &ti) == 0 &&
	    (ti.data_offset > n || n - ti.data_offset < ti.data_len || ti.msg_len > n))
		abort();
	uint32_t hash;
	(void)rndis_rss_queue(&st, p, n, &hash);

	/* Through the adapter. */
	struct vmbus_loopback lb;
	if (vmbus_loopback_init(&lb, 16ull << 20, 2, NULL))
		return 0;
	struct sink *s = fz_sink();
	struct netvsp *nv;
	struct netvsp_config cfg = { .mem = &lb.mem, .backend = &s->be, .mtu = mode & 0x80 ? 9000 : 1500 };
	cfg.mac[0] = 2;
	if (netvsp_create(lb.srv, &cfg, &nv)) {
		free(s);
		vmbus_loopback_destroy(&lb);
		return 0;
	}
	struct netvsc_guest g;
	if (netvsc_guest_open(&g, &lb, 0, 256u << 10, 64u << 10) == 0 && netvsc_guest_rndis_init(&g) == 0) {
		uint32_t filter = NDIS_PACKET_TYPE_PROMISCUOUS;
		netvsc_guest_set(&g, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &filter, 4);
		if (mode & 0x40)
			netvsc_guest_subchannels(&g, 1);
		if ((mode & 0x30) == 0x30) {
			s->in = p;
			s->in_len = n < 1514 ? n : 1514;
			s->frames = 3;
			g.hold_completions = true; /* transactions the guest holds go into the state */
			netvsp_poll(nv, 64);
			netvsc_guest_poll(&g, 0);
			nv = fz_restore(&lb, nv, p, n, mode);
			g.hold_completions = false;
			netvsc_guest_release_held(&g, 0);
			netvsp_poll(nv, 64);
			s = NULL; /* the restored adapter has a backend of its own */
		} else
		switch (mode & 7) {
		case 0: /* raw NVSP message, inband */
			vmbus_client_send(&g.ch[0], VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 1, NULL,
					  0, p, n < 4096 ? n : 4096);
			break;
		case 1: /* RNDIS stream (data or control) in send section 0 */
		case 2:
			netvsc_guest_rndis_raw(&g, 0, mode & 1, p, n < g.ssec_size ? n : g.ssec_size, false);
			break;
		case 3: /* the same through GPA direct */
			netvsc_guest_rndis_raw(&g, 0, 0, p, n < 16384 ? n : 16384, true);
			break;
		case 4: { /* GPA direct packet with hostile ranges: ext from the input */
			uint32_t ext = n < 512 ? n & ~7u : 512;
			struct nvsp_message m = { .type = NVSP_MSG1_TYPE_SEND_RNDIS_PKT };
			m.u.rndis_pkt.send_buf_section_index = NVSP_INVALID_SECTION;
			if (ext >= 8)
				vmbus_client_send(&g.ch[0], VM_PKT_DATA_USING_GPA_DIRECT,
						  VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 2, p, ext, &m, sizeof(m));
			break;
		}
		case 5: { /* completion with an arbitrary id and body */
			uint64_t tid = 0;
			memcpy(&tid, p, n < 8 ? n : 8);
			vmbus_client_send(&g.ch[0], VM_PKT_COMP, 0, tid, NULL, 0, p, n < 64 ? n : 64);
			break;
		}
		case 6: { /* a frame from the backend, several times */
			s->in = p;
			s->in_len = n;
			s->frames = 1 + (mode >> 3 & 7);
			netvsp_poll(nv, 64);
			break;
		}
		case 7: { /* a received RSS parameter block then frames */
			netvsc_guest_set(&g, RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS, p, n < 1024 ? n : 1024);
			s->in = p;
			s->in_len = n;
			s->frames = 2;
			netvsp_poll(nv, 64);
			break;
		}
		}
		for (uint32_t c = 0; c < g.nchan; c++)
			netvsc_guest_poll(&g, c);
		/* The adapter still answers. */
		uint32_t v, len = 4;
		if (netvsc_guest_query(&g, RNDIS_OID_GEN_MEDIA_CONNECT_STATUS, NULL, 0, &v, &len) < 0 && (mode & 7) != 0)
			; /* mode 0 may have revoked the buffers: then no reply can come, legitimately */
	}
	netvsc_guest_close(&g);
	netvsp_destroy(nv);
	vmbus_loopback_destroy(&lb);
	return 0;
}
