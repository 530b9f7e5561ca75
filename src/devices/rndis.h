/* RNDIS for the synthetic network adapter: pure functions, bytes in and bytes out, no I/O.
 *
 * rndis_control() answers the control messages (INITIALIZE, QUERY, SET, RESET, KEEPALIVE, HALT) from
 * a struct rndis_state; rndis_packet_parse() validates one data message (PACKET) and extracts its
 * per-packet info; rndis_rx_header() and rndis_indicate() build what the host sends. Every length and
 * offset in a guest message is checked before use: a malformed request gets the RNDIS failure status
 * the client expects (or no reply when none can be addressed) and a rate-limited log line.
 */
#ifndef GEN2VM_DEVICES_RNDIS_H
#define GEN2VM_DEVICES_RNDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/netvsc.h"

#define RNDIS_RSS_KEY_MAX 40u
#define RNDIS_RSS_ITAB_MAX 128u
#define RNDIS_MAX_PKT_PER_MSG 8u   /* RNDIS data messages we accept in one NVSP message */
#define RNDIS_CONTROL_REPLY_MAX 512u /* largest control reply we build */

struct rndis_state {
	/* host configuration (set before the guest talks) */
	uint8_t perm_mac[6];
	uint32_t mtu;              /* largest payload, 576..9000+ */
	uint64_t link_speed_bps;
	bool link_up;
	uint32_t max_queues;       /* RSS receive queues offered (1 = no vRSS) */
	uint32_t nvsp_version;     /* decides the size of the offload capability object */
	bool offload_tx_csum, offload_lso; /* what the backend can take */

	/* set by the guest */
	bool initialized;
	uint8_t cur_mac[6];
	uint32_t filter;
	uint32_t mcast_count;
	struct ndis_offload_params offload;
	bool tx_csum_v4, tx_csum_v6, lso_v4, lso_v6;
	bool rss_enabled;
	uint32_t rss_hashinfo;
	uint8_t rss_key[RNDIS_RSS_KEY_MAX];
	uint32_t rss_key_len;
	uint16_t rss_itab[RNDIS_RSS_ITAB_MAX];
	uint32_t rss_itab_len;
	uint32_t version_ok; /* last INIT's major version was 1 */
};

/* Fills defaults: MTU 1500, 10 Gbit/s, link up, one queue. mac may be NULL (all zero). */
void rndis_state_init(struct rndis_state *st, const uint8_t *mac);

/* Handles one control message of len bytes. Writes the reply (at most cap bytes,
 * RNDIS_CONTROL_REPLY_MAX suffices) to resp. Returns the reply length (> 0), 0 when the message takes
 * no reply (HALT, or one too malformed to address), -EINVAL when msg is a data message (PACKET) or not
 * a control message. */
int rndis_control(struct rndis_state *st, const void *msg, uint32_t len, void *resp, uint32_t cap);

/* What a guest data message asks for. Offsets count from the start of the RNDIS message. */
struct rndis_tx_info {
	uint32_t msg_len;
	uint32_t data_offset, data_len;
	bool has_csum, has_lso, has_vlan;
	uint32_t csum, lso, vlan;
};

/* Validates the data message at hdr. hdr_len: bytes of it available contiguously (the header, PPIs);
 * total: bytes that remain in the buffer it came from (msg_len must fit). Returns 0 or -EPROTO. */
int rndis_packet_parse(const void *hdr, uint32_t hdr_len, uint32_t total, struct rndis_tx_info *out);

/* Receive-side per-packet info the host may attach. */
struct rndis_rx_info {
	bool csum_ok;   /* checksums were verified (or the frame never left the host) */
	bool has_vlan;
	uint16_t vlan_tci;
	bool has_hash;
	uint32_t hash;
};
#define RNDIS_RX_HEADER_MAX (8u + 36u + 3u * 16u)

/* Builds the RNDIS header (and PPIs) of a received frame of frame_len bytes into out
 * (RNDIS_RX_HEADER_MAX bytes). Returns the header length: the frame goes right after it. */
uint32_t rndis_rx_header(void *out, uint32_t frame_len, const struct rndis_rx_info *ri);

/* Builds an INDICATE_STATUS message (status, optional u32 payload). Returns its length (<= 24). */
uint32_t rndis_indicate(void *out, uint32_t status, const uint32_t *payload);

/* Toeplitz hash of data with key (key_len >= len + 4). */
uint32_t rndis_toeplitz(const uint8_t *key, uint32_t key_len, const uint8_t *data, uint32_t len);

/* RSS: the queue for a frame (0 when RSS is off or the frame carries nothing to hash). *hash gets
 * the hash (0 if none). */
uint32_t rndis_rss_queue(const struct rndis_state *st, const uint8_t *frame, uint32_t len, uint32_t *hash);

#endif
