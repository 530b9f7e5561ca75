/* Configuration tables (ACPI 2.0 and 1.0, SMBIOS 3.0: the VMM builds them, we point at them), the
 * RNG protocol backed by the host's entropy (FW_OP_RNG) and Device Path To Text. (The --initrd of an
 * --efi image is offered through LoadFile2 by image.c, with the image.) */
#include "fw.h"

#include "conio.h"
#include "efi/efi_dptext.h"
#include "gen2vm/proto/efi_console.h"
#include "gen2vm/proto/smbios.h"

/* ---- RNG ---- */

/* One request buffer: the firmware is single-threaded. Static, so it lies in the firmware image,
 * below 4 GiB as host calls need. */
static union {
	struct fw_rng_req req;
	uint8_t raw[sizeof(struct fw_rng_req) + FW_RNG_MAX];
} rng_buf __attribute__((aligned(16)));

static EFI_STATUS EFIAPI rng_get_info(EFI_RNG_PROTOCOL *This, UINTN *size, EFI_RNG_ALGORITHM *list)
{
	if (!size)
		return EFI_INVALID_PARAMETER;
	if (*size < sizeof(EFI_RNG_ALGORITHM) || !list) {
		*size = sizeof(EFI_RNG_ALGORITHM);
		return EFI_BUFFER_TOO_SMALL;
	}
	const EFI_GUID raw = EFI_RNG_ALGORITHM_RAW;
	efi_memcpy(list, &raw, sizeof(raw));
	*size = sizeof(EFI_RNG_ALGORITHM);
	return EFI_SUCCESS;
}

EFI_STATUS fw_rng_fill(void *out, size_t len)
{
	uint8_t *p = out;
	while (len) {
		uint32_t n = len > FW_RNG_MAX ? FW_RNG_MAX : (uint32_t)len;
		rng_buf.req.hdr.op = FW_OP_RNG;
		rng_buf.req.hdr.size = (uint32_t)sizeof(rng_buf.req) + n;
		rng_buf.req.len = n;
		rng_buf.req.pad = 0;
		EFI_STATUS s = fw_host_call(&rng_buf.req);
		if (s)
			return EFI_DEVICE_ERROR;
		efi_memcpy(p, rng_buf.req.data, n);
		/* What was handed out must not stay behind in firmware memory. */
		efi_memset(rng_buf.req.data, 0, n);
		p += n;
		len -= n;
	}
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI rng_get_rng(EFI_RNG_PROTOCOL *This, EFI_RNG_ALGORITHM *alg, UINTN len, uint8_t *value)
{
	if (!value || !len)
		return EFI_INVALID_PARAMETER;
	const EFI_GUID raw = EFI_RNG_ALGORITHM_RAW;
	/* NULL asks for the default algorithm: ours is the raw one (the host's getrandom()). */
	if (alg && !efi_guid_eq(alg, &raw))
		return EFI_UNSUPPORTED;
	return fw_rng_fill(value, len);
}

static EFI_RNG_PROTOCOL fw_rng = { rng_get_info, rng_get_rng };

/* ---- Device Path To Text ---- */

/* Texts are the caller's to FreePool, so they come from the boot-services pool. */
static CHAR16 *dp_text_alloc(size_t len)
{
	void *p = NULL;
	if (!fw.bs || fw.bs->AllocatePool(EfiBootServicesData, (len + 1) * sizeof(CHAR16), &p))
		return NULL;
	return p;
}

/* A path has no length of its own: its walk is bounded by this much (larger than any real one). */
#define DP_TEXT_MAX_BYTES (64u * 1024)

static CHAR16 *EFIAPI dp_node_to_text(const EFI_DEVICE_PATH_PROTOCOL *node, BOOLEAN display_only,
				      BOOLEAN shortcuts)
{
	if (!node)
		return NULL;
	size_t len = efi_dp_node_text16(node, NULL, 0);
	CHAR16 *out = dp_text_alloc(len);
	if (out)
		efi_dp_node_text16(node, out, len + 1);
	return out;
}

static CHAR16 *EFIAPI dp_path_to_text(const EFI_DEVICE_PATH_PROTOCOL *dp, BOOLEAN display_only, BOOLEAN shortcuts)
{
	if (!dp)
		return NULL;
	size_t len = efi_dp_text16(dp, DP_TEXT_MAX_BYTES, NULL, 0);
	CHAR16 *out = dp_text_alloc(len);
	if (out)
		efi_dp_text16(dp, DP_TEXT_MAX_BYTES, out, len + 1);
	return out;
}

static EFI_DEVICE_PATH_TO_TEXT_PROTOCOL fw_dp_to_text = { dp_node_to_text, dp_path_to_text };

/* ---- start-up ---- */

static bool tables_sig(uint64_t gpa, const char *sig, size_t n)
{
	return gpa && !efi_memcmp((const void *)(uintptr_t)gpa, sig, n);
}

EFI_STATUS fw_tables_init(void)
{
	if (!fw.bs)
		return EFI_SUCCESS; /* a build without boot services: nothing can be installed */
	EFI_STATUS s, first = EFI_SUCCESS;
	const struct fw_handoff *ho = fw.ho;
	if (tables_sig(ho->rsdp_gpa, "RSD PTR ", 8)) {
		EFI_GUID acpi20 = EFI_ACPI_20_TABLE_GUID, acpi10 = EFI_ACPI_10_TABLE_GUID;
		void *rsdp = (void *)(uintptr_t)ho->rsdp_gpa;
		/* A revision 2 RSDP begins with the revision 0 one: 1.0 readers find what they expect. */
		if ((s = fw.bs->InstallConfigurationTable(&acpi20, rsdp)) && !first)
			first = s;
		if ((s = fw.bs->InstallConfigurationTable(&acpi10, rsdp)) && !first)
			first = s;
	} else {
		fw_printf("gen2vm firmware: no ACPI tables from the VMM\n");
	}
	if (tables_sig(ho->smbios_gpa, SMBIOS3_ANCHOR_STR, 5)) {
		EFI_GUID smbios3 = EFI_SMBIOS3_TABLE_GUID;
		if ((s = fw.bs->InstallConfigurationTable(&smbios3, (void *)(uintptr_t)ho->smbios_gpa)) && !first)
			first = s;
	}

	EFI_HANDLE h = NULL;
	EFI_GUID rng = EFI_RNG_PROTOCOL_GUID, dptt = EFI_DEVICE_PATH_TO_TEXT_PROTOCOL_GUID;
	if ((s = fw.bs->InstallProtocolInterface(&h, &rng, EFI_NATIVE_INTERFACE, &fw_rng)) && !first)
		first = s;
	if ((s = fw.bs->InstallProtocolInterface(&h, &dptt, EFI_NATIVE_INTERFACE, &fw_dp_to_text)) && !first)
		first = s;

	return first;
}
