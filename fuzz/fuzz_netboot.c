/* libFuzzer target for the firmware's network boot parsers (guestlib/netboot_wire.c): every frame and
 * datagram they take comes from the network.
 *
 * Input: a selector byte, then the bytes: 0 an Ethernet frame for the UDP and ARP parsers, 1 a DHCP
 * reply (xid 0x01020304, the MAC below), 2 a TFTP message. Nothing may be read outside the input,
 * and what the parsers hand back must lie inside it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netboot_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t mac[6] = { 0x00, 0x15, 0x5d, 0x42, 0x00, 0x07 };
	if (size < 1 || size > 65536)
		return 0;
	uint8_t sel = data[0];
	/* an exact-size copy so that ASan sees any read past the end */
	size_t n = size - 1;
	uint8_t *p = malloc(n ? n : 1);
	if (!p)
		return 0;
	memcpy(p, data + 1, n);
	switch (sel % 3) {
	case 0: {
		struct nb_udp u;
		struct nb_arp a;
		if (!nb_udp4_parse(p, (uint32_t)n, &u) && (u.data < p || u.data + u.len > p + n))
			abort();
		(void)nb_arp_parse(p, (uint32_t)n, &a);
		break;
	}
	case 1: {
		struct nb_dhcp4_reply r;
		if (!nb_dhcp4_parse(p, (uint32_t)n, 0x01020304, mac, &r) &&
		    (strnlen(r.bootfile, sizeof(r.bootfile)) == sizeof(r.bootfile) ||
		     strnlen(r.tftp_server, sizeof(r.tftp_server)) == sizeof(r.tftp_server)))
			abort();
		break;
	}
	default: {
		struct nb_tftp t;
		if (!nb_tftp_parse(p, (uint32_t)n, &t) && t.op == TFTP_DATA && (t.data < p || t.data + t.len > p + n))
			abort();
		break;
	}
	}
	free(p);
	return 0;
}
