#include "efi/efi_dptext.h"

#include "efi/efi_devpath.h"
#include "efi/efi_fmt.h"
#include "efi/efi_lib.h"
#include "gen2vm/proto/efi_bs.h"
#include "gen2vm/proto/efi_console.h"

struct dpw {
	void *buf;
	bool wide;
	size_t cap, len;
};

static void w_ch(struct dpw *w, CHAR16 c)
{
	if (w->len + 1 < w->cap) {
		if (w->wide)
			((CHAR16 *)w->buf)[w->len] = c;
		else
			((char *)w->buf)[w->len] = (char)(c < 0x80 ? c : '?');
	}
	w->len++;
}

static void w_str(struct dpw *w, const char *s)
{
	while (*s)
		w_ch(w, (CHAR16)(unsigned char)*s++);
}

static void w_num(struct dpw *w, unsigned long long v, unsigned base, unsigned min_digits)
{
	static const char dig[] = "0123456789abcdef";
	char t[24];
	unsigned n = 0;
	do {
		t[n++] = dig[v % base];
		v /= base;
	} while (v || n < min_digits);
	while (n)
		w_ch(w, (CHAR16)t[--n]);
}

static void w_dec(struct dpw *w, unsigned long long v)
{
	w_num(w, v, 10, 1);
}

static void w_hex(struct dpw *w, unsigned long long v)
{
	w_str(w, "0x");
	w_num(w, v, 16, 1);
}

static void w_guid(struct dpw *w, const void *g)
{
	EFI_GUID copy;
	char t[37];
	efi_memcpy(&copy, g, sizeof(copy));
	w_str(w, efi_guid_str(&copy, t));
}

static void w_bytes(struct dpw *w, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		w_ch(w, (CHAR16)hex[p[i] >> 4]);
		w_ch(w, (CHAR16)hex[p[i] & 15]);
	}
}

static void w_generic(struct dpw *w, const uint8_t *n, uint16_t len)
{
	switch (n[0]) {
	case HARDWARE_DEVICE_PATH: w_str(w, "HardwarePath("); break;
	case ACPI_DEVICE_PATH: w_str(w, "AcpiPath("); break;
	case MESSAGING_DEVICE_PATH: w_str(w, "Msg("); break;
	case MEDIA_DEVICE_PATH: w_str(w, "MediaPath("); break;
	case BBS_DEVICE_PATH: w_str(w, "BbsPath("); break;
	default: w_str(w, "Path("); w_dec(w, n[0]); w_ch(w, ',');
	}
	w_dec(w, n[1]);
	if (len > 4) {
		w_ch(w, ',');
		w_bytes(w, n + 4, len - 4u);
	}
	w_ch(w, ')');
}

static void w_vendor(struct dpw *w, const char *name, const uint8_t *n, uint16_t len)
{
	w_str(w, name);
	w_ch(w, '(');
	w_guid(w, n + 4);
	if (len > 20) {
		w_ch(w, ',');
		w_bytes(w, n + 20, len - 20u);
	}
	w_ch(w, ')');
}

static void w_node(struct dpw *w, const EFI_DEVICE_PATH_PROTOCOL *node)
{
	const uint8_t *n = (const uint8_t *)node;
	uint16_t len = efi_dp_node_len(node);
	unsigned type = n[0], sub = n[1];
	if (type == HARDWARE_DEVICE_PATH && sub == HW_PCI_DP && len == 6) {
		w_str(w, "Pci(");
		w_hex(w, n[5]);
		w_ch(w, ',');
		w_hex(w, n[4]);
		w_ch(w, ')');
	} else if (type == HARDWARE_DEVICE_PATH && sub == HW_MEMMAP_DP && len == 24) {
		w_str(w, "MemoryMapped(");
		w_hex(w, efi_le32(n + 4));
		w_ch(w, ',');
		w_hex(w, efi_le64(n + 8));
		w_ch(w, ',');
		w_hex(w, efi_le64(n + 16));
		w_ch(w, ')');
	} else if ((type == HARDWARE_DEVICE_PATH && sub == HW_VENDOR_DP) ||
		   (type == MESSAGING_DEVICE_PATH && sub == MSG_VENDOR_DP) ||
		   (type == MEDIA_DEVICE_PATH && sub == MEDIA_VENDOR_DP)) {
		if (len < 20)
			return w_generic(w, n, len);
		w_vendor(w, type == HARDWARE_DEVICE_PATH ? "VenHw" : type == MESSAGING_DEVICE_PATH ? "VenMsg" : "VenMedia",
			 n, len);
	} else if (type == ACPI_DEVICE_PATH && sub == ACPI_DP && len == 12) {
		uint32_t hid = efi_le32(n + 4), uid = efi_le32(n + 8);
		if (hid == 0x0a0341d0 || hid == 0x0a0841d0) { /* PNP0A03, PNP0A08 */
			w_str(w, hid == 0x0a0341d0 ? "PciRoot(" : "PcieRoot(");
		} else {
			/* EISA id: three compressed letters and a 16-bit product number */
			char t[16];
			uint16_t v = (uint16_t)hid;
			efi_snprintf(t, sizeof(t), "Acpi(%c%c%c%04X,", '@' + ((v >> 10) & 31), '@' + ((v >> 5) & 31),
				     '@' + (v & 31), (unsigned)(hid >> 16));
			w_str(w, t);
		}
		w_hex(w, uid);
		w_ch(w, ')');
	} else if (type == MESSAGING_DEVICE_PATH && sub == MSG_SCSI_DP && len == 8) {
		w_str(w, "Scsi(");
		w_hex(w, efi_le16(n + 4));
		w_ch(w, ',');
		w_hex(w, efi_le16(n + 6));
		w_ch(w, ')');
	} else if (type == MESSAGING_DEVICE_PATH && sub == MSG_MAC_ADDR_DP && len == 37) {
		/* Ethernet (IfType 0 or 1) shows its 6 bytes, as the specification's text form does */
		w_str(w, "MAC(");
		w_bytes(w, n + 4, n[36] <= 1 ? 6 : 32);
		w_ch(w, ',');
		w_hex(w, n[36]);
		w_ch(w, ')');
	} else if (type == MESSAGING_DEVICE_PATH && sub == MSG_URI_DP) {
		w_str(w, "Uri(");
		for (uint16_t i = 4; i < len; i++)
			w_ch(w, (CHAR16)(n[i] >= 0x20 && n[i] < 0x7f ? n[i] : '?'));
		w_ch(w, ')');
	} else if (type == MEDIA_DEVICE_PATH && sub == MEDIA_HARDDRIVE_DP && len == sizeof(HARDDRIVE_DEVICE_PATH)) {
		w_str(w, "HD(");
		w_dec(w, efi_le32(n + 4));
		w_ch(w, ',');
		uint8_t sigtype = n[41];
		if (sigtype == SIGNATURE_TYPE_GUID) {
			w_str(w, "GPT,");
			w_guid(w, n + 24);
		} else if (sigtype == SIGNATURE_TYPE_MBR) {
			w_str(w, "MBR,");
			w_str(w, "0x");
			w_num(w, efi_le32(n + 24), 16, 8);
		} else {
			w_dec(w, sigtype);
			w_str(w, ",0");
		}
		w_ch(w, ',');
		w_hex(w, efi_le64(n + 8));
		w_ch(w, ',');
		w_hex(w, efi_le64(n + 16));
		w_ch(w, ')');
	} else if (type == MEDIA_DEVICE_PATH && sub == MEDIA_CDROM_DP && len == sizeof(CDROM_DEVICE_PATH)) {
		w_str(w, "CDROM(");
		w_hex(w, efi_le32(n + 4));
		w_ch(w, ',');
		w_hex(w, efi_le64(n + 8));
		w_ch(w, ',');
		w_hex(w, efi_le64(n + 16));
		w_ch(w, ')');
	} else if (type == MEDIA_DEVICE_PATH && sub == MEDIA_FILEPATH_DP) {
		for (uint16_t i = 4; i + 1 < len; i += 2) {
			CHAR16 c = efi_le16(n + i);
			if (!c)
				break;
			w_ch(w, c);
		}
	} else if (type == MEDIA_DEVICE_PATH && (sub == MEDIA_PIWG_FW_FILE_DP || sub == MEDIA_PIWG_FW_VOL_DP) &&
		   len == 20) {
		w_str(w, sub == MEDIA_PIWG_FW_FILE_DP ? "FvFile(" : "Fv(");
		w_guid(w, n + 4);
		w_ch(w, ')');
	} else if (type == MEDIA_DEVICE_PATH && sub == MEDIA_RELATIVE_OFFSET_RANGE_DP && len == 24) {
		w_str(w, "Offset(");
		w_hex(w, efi_le64(n + 8));
		w_ch(w, ',');
		w_hex(w, efi_le64(n + 16));
		w_ch(w, ')');
	} else if (type == END_DEVICE_PATH_TYPE) {
		/* ends are separators, written by the path walk */
	} else {
		w_generic(w, n, len);
	}
}

static void w_end(struct dpw *w)
{
	if (w->cap) {
		size_t at = w->len < w->cap ? w->len : w->cap - 1;
		if (w->wide)
			((CHAR16 *)w->buf)[at] = 0;
		else
			((char *)w->buf)[at] = 0;
	}
}

size_t efi_dp_node_text16(const EFI_DEVICE_PATH_PROTOCOL *node, CHAR16 *out, size_t cap)
{
	struct dpw w = { out, true, cap, 0 };
	uint16_t len = efi_dp_node_len(node);
	if (len < 4)
		w_ch(&w, '?');
	else
		w_node(&w, node);
	w_end(&w);
	return w.len;
}

static void w_path(struct dpw *w, const EFI_DEVICE_PATH_PROTOCOL *dp, size_t max)
{
	const uint8_t *p = (const uint8_t *)dp;
	size_t off = 0;
	bool sep = false;
	for (;;) {
		if (max - off < 4) {
			w_str(w, sep ? "/?" : "?");
			return;
		}
		const EFI_DEVICE_PATH_PROTOCOL *n = (const EFI_DEVICE_PATH_PROTOCOL *)(p + off);
		uint16_t len = efi_dp_node_len(n);
		if (len < 4 || len > max - off) {
			w_str(w, sep ? "/?" : "?");
			return;
		}
		if (n->Type == END_DEVICE_PATH_TYPE) {
			if (n->SubType != END_INSTANCE_DEVICE_PATH_SUBTYPE)
				return;
			w_ch(w, ',');
			sep = false;
		} else {
			if (sep)
				w_ch(w, '/');
			w_node(w, n);
			sep = true;
		}
		off += len;
	}
}

size_t efi_dp_text16(const EFI_DEVICE_PATH_PROTOCOL *dp, size_t max, CHAR16 *out, size_t cap)
{
	struct dpw w = { out, true, cap, 0 };
	w_path(&w, dp, max);
	w_end(&w);
	return w.len;
}

size_t efi_dp_text8(const EFI_DEVICE_PATH_PROTOCOL *dp, size_t max, char *out, size_t cap)
{
	struct dpw w = { out, false, cap, 0 };
	w_path(&w, dp, max);
	w_end(&w);
	return w.len;
}
