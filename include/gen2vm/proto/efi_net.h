/* UEFI network protocols (UEFI 2.10 chapter 24) and the MAC device path node (10.3.4.11): what the
 * firmware's synthetic NIC driver offers to loaders (GRUB's efinet, iPXE's snpnet, shim). These
 * structures are not packed: the specification lays them out with natural alignment. */
#ifndef GEN2VM_PROTO_EFI_NET_H
#define GEN2VM_PROTO_EFI_NET_H

#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi.h"

typedef struct {
	uint8_t Addr[32];
} EFI_MAC_ADDRESS;
_Static_assert(sizeof(EFI_MAC_ADDRESS) == 32, "EFI_MAC_ADDRESS");

typedef union {
	uint32_t Addr[4];
	uint8_t v4[4];
	uint8_t v6[16];
} EFI_IP_ADDRESS;
_Static_assert(sizeof(EFI_IP_ADDRESS) == 16, "EFI_IP_ADDRESS");

/* MAC(address, IfType) */
typedef struct {
	EFI_DEVICE_PATH_PROTOCOL Header;
	EFI_MAC_ADDRESS MacAddress;
	uint8_t IfType;
} __attribute__((packed)) MAC_ADDR_DEVICE_PATH;
_Static_assert(sizeof(MAC_ADDR_DEVICE_PATH) == 37, "MAC_ADDR_DEVICE_PATH");

#define NET_IFTYPE_ETHERNET 0x01u

/* --- Simple Network Protocol (24.1) ------------------------------------------------------------ */
#define EFI_SIMPLE_NETWORK_PROTOCOL_GUID \
	EFI_GUID_INIT(0xa19832b9, 0xac25, 0x11d3, 0x9a, 0x2d, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d)
#define EFI_SIMPLE_NETWORK_PROTOCOL_REVISION 0x00010000ull

#define EfiSimpleNetworkStopped 0u
#define EfiSimpleNetworkStarted 1u
#define EfiSimpleNetworkInitialized 2u

#define EFI_SIMPLE_NETWORK_RECEIVE_UNICAST 0x01u
#define EFI_SIMPLE_NETWORK_RECEIVE_MULTICAST 0x02u
#define EFI_SIMPLE_NETWORK_RECEIVE_BROADCAST 0x04u
#define EFI_SIMPLE_NETWORK_RECEIVE_PROMISCUOUS 0x08u
#define EFI_SIMPLE_NETWORK_RECEIVE_PROMISCUOUS_MULTICAST 0x10u

#define EFI_SIMPLE_NETWORK_RECEIVE_INTERRUPT 0x01u
#define EFI_SIMPLE_NETWORK_TRANSMIT_INTERRUPT 0x02u
#define EFI_SIMPLE_NETWORK_COMMAND_INTERRUPT 0x04u
#define EFI_SIMPLE_NETWORK_SOFTWARE_INTERRUPT 0x08u

#define MAX_MCAST_FILTER_CNT 16u

typedef struct {
	uint32_t State;
	uint32_t HwAddressSize;
	uint32_t MediaHeaderSize;
	uint32_t MaxPacketSize;
	uint32_t NvRamSize;
	uint32_t NvRamAccessSize;
	uint32_t ReceiveFilterMask;
	uint32_t ReceiveFilterSetting;
	uint32_t MaxMCastFilterCount;
	uint32_t MCastFilterCount;
	EFI_MAC_ADDRESS MCastFilter[MAX_MCAST_FILTER_CNT];
	EFI_MAC_ADDRESS CurrentAddress;
	EFI_MAC_ADDRESS BroadcastAddress;
	EFI_MAC_ADDRESS PermanentAddress;
	uint8_t IfType;
	BOOLEAN MacAddressChangeable;
	BOOLEAN MultipleTxSupported;
	BOOLEAN MediaPresentSupported;
	BOOLEAN MediaPresent;
} EFI_SIMPLE_NETWORK_MODE;
_Static_assert(sizeof(EFI_SIMPLE_NETWORK_MODE) == 656, "EFI_SIMPLE_NETWORK_MODE");
_Static_assert(offsetof(EFI_SIMPLE_NETWORK_MODE, CurrentAddress) == 552, "EFI_SIMPLE_NETWORK_MODE layout");

typedef struct EFI_SIMPLE_NETWORK_PROTOCOL EFI_SIMPLE_NETWORK_PROTOCOL;
struct EFI_SIMPLE_NETWORK_PROTOCOL {
	uint64_t Revision;
	EFI_STATUS(EFIAPI *Start)(EFI_SIMPLE_NETWORK_PROTOCOL *This);
	EFI_STATUS(EFIAPI *Stop)(EFI_SIMPLE_NETWORK_PROTOCOL *This);
	EFI_STATUS(EFIAPI *Initialize)(EFI_SIMPLE_NETWORK_PROTOCOL *This, UINTN ExtraRxBufferSize,
				       UINTN ExtraTxBufferSize);
	EFI_STATUS(EFIAPI *Reset)(EFI_SIMPLE_NETWORK_PROTOCOL *This, BOOLEAN ExtendedVerification);
	EFI_STATUS(EFIAPI *Shutdown)(EFI_SIMPLE_NETWORK_PROTOCOL *This);
	EFI_STATUS(EFIAPI *ReceiveFilters)(EFI_SIMPLE_NETWORK_PROTOCOL *This, uint32_t Enable, uint32_t Disable,
					   BOOLEAN ResetMCastFilter, UINTN MCastFilterCnt, EFI_MAC_ADDRESS *MCastFilter);
	EFI_STATUS(EFIAPI *StationAddress)(EFI_SIMPLE_NETWORK_PROTOCOL *This, BOOLEAN Reset, EFI_MAC_ADDRESS *New);
	EFI_STATUS(EFIAPI *Statistics)(EFI_SIMPLE_NETWORK_PROTOCOL *This, BOOLEAN Reset, UINTN *StatisticsSize,
				       void *StatisticsTable);
	EFI_STATUS(EFIAPI *MCastIpToMac)(EFI_SIMPLE_NETWORK_PROTOCOL *This, BOOLEAN IPv6, EFI_IP_ADDRESS *IP,
					 EFI_MAC_ADDRESS *MAC);
	EFI_STATUS(EFIAPI *NvData)(EFI_SIMPLE_NETWORK_PROTOCOL *This, BOOLEAN ReadWrite, UINTN Offset,
				   UINTN BufferSize, void *Buffer);
	EFI_STATUS(EFIAPI *GetStatus)(EFI_SIMPLE_NETWORK_PROTOCOL *This, uint32_t *InterruptStatus, void **TxBuf);
	EFI_STATUS(EFIAPI *Transmit)(EFI_SIMPLE_NETWORK_PROTOCOL *This, UINTN HeaderSize, UINTN BufferSize,
				     void *Buffer, EFI_MAC_ADDRESS *SrcAddr, EFI_MAC_ADDRESS *DestAddr,
				     uint16_t *Protocol);
	EFI_STATUS(EFIAPI *Receive)(EFI_SIMPLE_NETWORK_PROTOCOL *This, UINTN *HeaderSize, UINTN *BufferSize,
				    void *Buffer, EFI_MAC_ADDRESS *SrcAddr, EFI_MAC_ADDRESS *DestAddr, uint16_t *Protocol);
	EFI_EVENT WaitForPacket;
	EFI_SIMPLE_NETWORK_MODE *Mode;
};
_Static_assert(sizeof(EFI_SIMPLE_NETWORK_PROTOCOL) == 128, "EFI_SIMPLE_NETWORK_PROTOCOL");

#endif
