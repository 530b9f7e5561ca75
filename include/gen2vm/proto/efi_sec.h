/* UEFI Secure Boot's data formats (UEFI 2.10 sections 32.4 and 8.2.2): the signature databases' GUIDs,
 * EFI_SIGNATURE_LIST, and the names of the variables that hold them. Shared by the VMM (which owns
 * the variable store and verifies images) and the firmware.
 *
 * A signature database (PK, KEK, db, dbx) is a sequence of EFI_SIGNATURE_LISTs; each list holds
 * signatures of one type and one size: SignatureListSize = 28 + SignatureHeaderSize + n * SignatureSize,
 * every signature an owner GUID followed by SignatureSize - 16 bytes of data.
 */
#ifndef GEN2VM_PROTO_EFI_SEC_H
#define GEN2VM_PROTO_EFI_SEC_H

#include <stdint.h>

#include "gen2vm/proto/efi.h"

/* db and dbx live in this GUID; PK, KEK, SecureBoot and SetupMode in EFI_GLOBAL_VARIABLE_GUID. */
#define EFI_IMAGE_SECURITY_DATABASE_GUID \
	EFI_GUID_INIT(0xd719b2cb, 0x3d3a, 0x4596, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f)

/* Signature types (32.4.1). */
#define EFI_CERT_SHA256_GUID \
	EFI_GUID_INIT(0xc1c41626, 0x504c, 0x4092, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28)
#define EFI_CERT_X509_GUID \
	EFI_GUID_INIT(0xa5c059a1, 0x94e4, 0x4aa7, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72)
/* dbx entries that revoke a certificate by the hash of its TBSCertificate (to-be-signed part), each
 * the hash followed by an EFI_TIME TimeOfRevocation (32.4.1: EFI_CERT_X509_SHA256 and its siblings). */
#define EFI_CERT_X509_SHA256_GUID \
	EFI_GUID_INIT(0x3bd2a492, 0x96c0, 0x4079, 0xb4, 0x20, 0xfc, 0xf9, 0x8e, 0xf1, 0x03, 0xed)
#define EFI_CERT_X509_SHA384_GUID \
	EFI_GUID_INIT(0x7076876e, 0x80c2, 0x4ee6, 0xaa, 0xd2, 0x28, 0xb3, 0x49, 0xa6, 0x86, 0x5b)
#define EFI_CERT_X509_SHA512_GUID \
	EFI_GUID_INIT(0x446dbf63, 0x2502, 0x4cda, 0xbc, 0xfa, 0x24, 0x65, 0xd2, 0xb0, 0xfe, 0x9d)
#define EFI_CERT_TYPE_PKCS7_GUID \
	EFI_GUID_INIT(0x4aafd29d, 0x68df, 0x49ee, 0x8a, 0xa9, 0x34, 0x7d, 0x37, 0x56, 0x65, 0xa7)

/* Signature owners the templates use: Microsoft's, and the one Debian's ovmf gives its own keys. */
#define EFI_SIG_OWNER_MICROSOFT \
	EFI_GUID_INIT(0x77fa9abd, 0x0359, 0x4d32, 0xbd, 0x60, 0x28, 0xf4, 0xe7, 0x8f, 0x78, 0x4b)

typedef struct {
	EFI_GUID SignatureType;
	uint32_t SignatureListSize;
	uint32_t SignatureHeaderSize;
	uint32_t SignatureSize;
	/* uint8_t SignatureHeader[SignatureHeaderSize]; EFI_SIGNATURE_DATA Signatures[]; */
} __attribute__((packed)) EFI_SIGNATURE_LIST;
_Static_assert(sizeof(EFI_SIGNATURE_LIST) == 28, "EFI_SIGNATURE_LIST");

typedef struct {
	EFI_GUID SignatureOwner;
	/* uint8_t SignatureData[SignatureSize - 16]; */
} __attribute__((packed)) EFI_SIGNATURE_DATA;
_Static_assert(sizeof(EFI_SIGNATURE_DATA) == 16, "EFI_SIGNATURE_DATA");

#define EFI_SHA256_SIZE 32u

/* The attributes of PK, KEK, db and dbx (8.2.2): non-volatile, boot and runtime access, and written
 * only with a time-based authenticated write. */
#define EFI_SECURE_DB_ATTRIBUTES 0x27u

#endif
