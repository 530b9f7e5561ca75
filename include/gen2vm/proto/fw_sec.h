/* Secure Boot between the firmware and the VMM (host-call ops 0x50-0x5f, include/gen2vm/proto/fw.h):
 * the VMM owns the signature databases (in its variable store) and does the cryptography (OpenSSL),
 * so LoadImage asks it whether an image may run, as Hyper-V's firmware trusts its host.
 *
 * FW_OP_IMAGE_VERIFY is a boot-services call: the VMM refuses it (EFI_UNSUPPORTED) once
 * ExitBootServices has succeeded, and it reads the image from guest RAM with range checks into its
 * own copy before hashing.
 */
#ifndef GEN2VM_PROTO_FW_SEC_H
#define GEN2VM_PROTO_FW_SEC_H

#include <stdint.h>

#include "gen2vm/proto/fw.h"

enum fw_sec_op {
	FW_OP_SEC_FIRST = 0x50,
	/* struct fw_image_verify_req. Status: EFI_SUCCESS the image may run (Secure Boot is not in force,
	 * or it passed: flags say which), EFI_SECURITY_VIOLATION refused (reason says why),
	 * EFI_INVALID_PARAMETER a range outside RAM or too large, EFI_UNSUPPORTED after ExitBootServices. */
	FW_OP_IMAGE_VERIFY = 0x50,
	FW_OP_SEC_LAST = 0x5f,
};

#define FW_VERIFY_F_CHECKED (1u << 0) /* out: Secure Boot is in force and the image was checked */
#define FW_VERIFY_REASON_MAX 232u

struct fw_image_verify_req {
	struct fw_host_req hdr;
	uint64_t image_gpa;  /* the file as read (not the loaded image) */
	uint64_t image_size;
	uint32_t flags;      /* out: FW_VERIFY_F_* */
	uint32_t reason_len; /* out: bytes of reason (UTF-8, no NUL) */
	char reason[FW_VERIFY_REASON_MAX]; /* out: why it was refused or allowed */
} __attribute__((packed));
_Static_assert(sizeof(struct fw_image_verify_req) == 272, "fw_image_verify_req");

#endif
