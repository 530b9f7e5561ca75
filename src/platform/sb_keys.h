/* The Secure Boot templates' keys: Microsoft's public certificates (and Debian's PK) as EFI signature
 * lists, taken from Debian's ovmf package by scripts/sb_keys_gen.py into sb_keys_gen.c (checked in;
 * its first lines name the source file and its hash). secboot.c combines them into templates.
 */
#ifndef GEN2VM_PLATFORM_SB_KEYS_H
#define GEN2VM_PLATFORM_SB_KEYS_H

#include <stddef.h>
#include <stdint.h>

extern const uint8_t sb_key_pk[];             /* PK: "Debian UEFI Secure Boot (PK/KEK key)" */
extern const size_t sb_key_pk_size;
extern const uint8_t sb_key_kek_microsoft[];  /* KEK: "Microsoft Corporation KEK CA 2011" */
extern const size_t sb_key_kek_microsoft_size;
extern const uint8_t sb_key_db_windows_pca[]; /* db: "Microsoft Windows Production PCA 2011" */
extern const size_t sb_key_db_windows_pca_size;
extern const uint8_t sb_key_db_uefi_ca[];     /* db: "Microsoft Corporation UEFI CA 2011" */
extern const size_t sb_key_db_uefi_ca_size;
extern const uint8_t sb_key_dbx[];            /* dbx: the SHA-256 list Debian's ovmf enrols */
extern const size_t sb_key_dbx_size;

#endif
