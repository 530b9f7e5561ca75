/* The firmware's storage stack (vmbus.c, storvsc.c, disk.c, fs.c; storage_mem.c): VMBus client, one BlockIo handle per SCSI LUN, DiskIo and partition children, FAT
 * file systems. What the boot manager needs is at the end: the list of storage handles.
 */
#ifndef GEN2VM_FIRMWARE_STORAGE_H
#define GEN2VM_FIRMWARE_STORAGE_H

#include "fw.h"

#include "efi/efi_part.h"
#include "gen2vm/proto/efi_storage.h"
#include "vmbus_client.h"

/* ---- memory and protocol installs (storage_mem.c, on the boot services) ---- */
/* n zeroed pages below 4 GiB (identity-mapped), or NULL. */
void *fw_stor_alloc_pages(uint32_t n);
void fw_stor_free_pages(void *p, uint32_t n);
/* Zeroed pool memory, or NULL; fw_stor_alloc leaves it as it is (clearing costs ~0.1 us a byte). */
void *fw_stor_zalloc(size_t size);
void *fw_stor_alloc(size_t size);
void fw_stor_free(void *p);
/* InstallMultipleProtocolInterfaces with the pairs already split (*handle NULL: a new handle). */
EFI_STATUS fw_stor_install(EFI_HANDLE *handle, size_t n, const EFI_GUID *const *protocols, void *const *ifaces);
/* A monotonic clock in microseconds (fw_time_100ns). */
uint64_t fw_stor_now_us(void);

/* ---- vmbus.c ---- */
/* Sets up the SynIC (polled), connects and collects offers. EFI_NOT_FOUND without a VMBus host. */
EFI_STATUS fw_vmbus_init(void);
/* The connected client, or NULL. */
struct vmbus_client *fw_vmbus_client(void);
/* Opens a channel (rings allocated here) and records it so that ExitBootServices closes it. */
EFI_STATUS fw_vmbus_channel_open(struct vmbus_client_channel *ch, uint32_t relid, uint32_t ring_bytes);
/* At ExitBootServices, fn(ctx) runs before ch is closed: a device whose host holds more of our memory
 * than the rings (netvsc's receive and send buffers) makes it let go there. fn may close ch itself. */
void fw_vmbus_channel_on_exit(struct vmbus_client_channel *ch, void (*fn)(void *ctx), void *ctx);
/* Waits (bounded by timeout_us) for the next packet on ch into buf; EFI_TIMEOUT. */
EFI_STATUS fw_vmbus_recv(struct vmbus_client_channel *ch, void *buf, uint32_t cap, uint32_t *len,
			 uint64_t timeout_us);
/* The same until a deadline on fw_stor_now_us()'s clock (EFI_TIMEOUT once it has passed). */
static inline EFI_STATUS fw_vmbus_recv_by(struct vmbus_client_channel *ch, void *buf, uint32_t cap, uint32_t *len,
					  uint64_t end_us)
{
	uint64_t now = fw_stor_now_us();
	return now >= end_us ? EFI_TIMEOUT : fw_vmbus_recv(ch, buf, cap, len, end_us - now);
}

/* ---- storvsc.c ---- */
/* One BlockIo device per SCSI LUN of every storvsp controller; returns the count. */
uint32_t fw_storvsc_init(void);

/* ---- disk.c, fs.c ---- */
enum fw_stor_kind { FW_STOR_DISK = 1, FW_STOR_DVD = 2, FW_STOR_PARTITION = 3 };

/* One storage handle: a LUN (whole device) or a partition of one. */
struct fw_stor_dev {
	EFI_HANDLE handle;
	uint8_t kind;                     /* enum fw_stor_kind */
	bool dvd;                         /* the LUN (or the partition's LUN) is a CD/DVD */
	bool esp;                         /* a partition of type EFI system partition */
	bool has_fs;                      /* EFI_SIMPLE_FILE_SYSTEM_PROTOCOL installed */
	uint16_t target, lun;
	EFI_DEVICE_PATH_PROTOCOL *path;   /* the device path installed on handle */
	EFI_BLOCK_IO_PROTOCOL *bio;
	struct fw_stor_dev *parent;       /* the LUN of a partition */
	struct efi_part part;             /* kind == FW_STOR_PARTITION */
	struct fw_stor_dev *next;
};

/* Installs DiskIo on a BlockIo device, scans its partitions (children get BlockIo, DiskIo,
 * PartitionInfo) and mounts FAT volumes; prints the device's summary line. */
EFI_STATUS fw_disk_attach(struct fw_stor_dev *d, const char *what);
/* Mounts a FAT volume on d and installs SimpleFileSystem. EFI_UNSUPPORTED when not FAT; *desc gets
 * "FAT32 volume" etc. or the reason it failed. */
EFI_STATUS fw_fs_attach(struct fw_stor_dev *d, char *desc, size_t desc_size);

/* ---- for the boot manager ---- */
/* Every storage handle in discovery order (LUNs followed by their partitions). dev->dvd tells disk
 * from DVD; dev->path is the handle's device path. */
struct fw_stor_dev *fw_storage_devices(void);
void fw_storage_add(struct fw_stor_dev *d);

#endif
