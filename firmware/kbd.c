/* The synthetic keyboard (synthkbd) client: protocol 1.0, then one EVENT a make or break in scan
 * code set 1 (include/gen2vm/proto/synthkbd.h), translated into EFI keys by efi_kbd_event
 * (guestlib/efi/efi_gfxcon.c). Polled from conio.c's input path, like COM1: reading the ring costs
 * no exit. fw_vmbus closes the channel at ExitBootServices, as the OS's driver connects afresh. */
#include "conio.h"
#include "storage.h"

#include "efi/efi_gfxcon.h"
#include "gen2vm/proto/synthkbd.h"

#define KBD_RING_BYTES (16u << 10)
#define KBD_TIMEOUT_US 2000000ull

static struct vmbus_client_channel kbd_ch;
static bool kbd_up;
static struct efi_kbd kbd_state;
static uint8_t kbd_rx[128] __attribute__((aligned(8)));

/* The message in a received packet (or NULL when it is too short), *n its bytes. */
static const uint8_t *kbd_msg(uint32_t len, uint32_t *n)
{
	const struct vmbus_packet_descriptor *d = (const void *)kbd_rx;
	uint32_t off = d->offset8 * 8u;
	if (len < sizeof(*d) || off > len || len - off < sizeof(struct synthkbd_hdr))
		return NULL;
	*n = len - off;
	return kbd_rx + off;
}

EFI_STATUS fw_kbd_init(void)
{
	struct vmbus_client *cl = fw_vmbus_client();
	if (!cl)
		return EFI_NOT_FOUND;
	struct vmbus_guid cls;
	vmbus_guid_parse(SYNTHKBD_CLASS_GUID_TEXT, &cls);
	const struct vmbus_client_offer *o = vmbus_client_find_offer(cl, &cls, 0);
	if (!o)
		return EFI_NOT_FOUND;
	EFI_STATUS s = fw_vmbus_channel_open(&kbd_ch, o->msg.child_relid, KBD_RING_BYTES);
	if (EFI_ERROR(s))
		return s;
	struct synthkbd_protocol_request rq = { { SYNTHKBD_MSG_PROTOCOL_REQUEST }, SYNTHKBD_VERSION_1_0 };
	if (vmbus_client_send(&kbd_ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 1, NULL, 0, &rq,
			      sizeof(rq)))
		s = EFI_DEVICE_ERROR;
	uint64_t end = fw_stor_now_us() + KBD_TIMEOUT_US;
	while (!EFI_ERROR(s)) {
		uint64_t now = fw_stor_now_us();
		uint32_t len, n;
		if (now >= end) {
			s = EFI_TIMEOUT;
			break;
		}
		if (EFI_ERROR(s = fw_vmbus_recv(&kbd_ch, kbd_rx, sizeof(kbd_rx), &len, end - now)))
			break;
		const uint8_t *m = kbd_msg(len, &n);
		struct synthkbd_protocol_response rs;
		if (!m || n < sizeof(rs))
			continue;
		efi_memcpy(&rs, m, sizeof(rs));
		if (rs.hdr.type != SYNTHKBD_MSG_PROTOCOL_RESPONSE)
			continue;
		if (!(rs.status & SYNTHKBD_PROTOCOL_ACCEPTED))
			s = EFI_UNSUPPORTED;
		break;
	}
	if (EFI_ERROR(s)) {
		fw_printf("keyboard: the synthetic keyboard did not connect (0x%llx)\n", (unsigned long long)s);
		vmbus_client_channel_close(&kbd_ch);
		return s;
	}
	kbd_up = true;
	return EFI_SUCCESS;
}

bool fw_kbd_present(void)
{
	return kbd_up && kbd_ch.open;
}

bool fw_kbd_poll(EFI_INPUT_KEY *key)
{
	uint32_t len, n;
	while (fw_kbd_present() && vmbus_client_recv(&kbd_ch, kbd_rx, sizeof(kbd_rx), &len) == 0) {
		const uint8_t *m = kbd_msg(len, &n);
		struct synthkbd_keystroke ks;
		bool ok = m && n >= sizeof(ks);
		if (ok)
			efi_memcpy(&ks, m, sizeof(ks));
		vmbus_client_recv_done(&kbd_ch);
		if (!ok || ks.hdr.type != SYNTHKBD_MSG_EVENT || (ks.info & (SYNTHKBD_INFO_UNICODE | SYNTHKBD_INFO_E1)))
			continue; /* E1 is Pause alone: no EFI key */
		if (efi_kbd_event(&kbd_state, ks.make_code, ks.info & SYNTHKBD_INFO_E0, ks.info & SYNTHKBD_INFO_BREAK, key))
			return true;
	}
	return false;
}

void fw_kbd_state(uint32_t *shift, uint8_t *toggle)
{
	*shift = efi_kbd_shift_state(&kbd_state);
	*toggle = efi_kbd_toggle_state(&kbd_state);
}
