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

/* --- PXE Base Code Protocol (24.3) -------------------------------------------------------------- */
#define EFI_PXE_BASE_CODE_PROTOCOL_GUID \
	EFI_GUID_INIT(0x03c4e603, 0xac28, 0x11d3, 0x9a, 0x2d, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d)
#define EFI_PXE_BASE_CODE_PROTOCOL_REVISION 0x00010000ull
#define EFI_PXE_BASE_CODE_MAX_IPCNT 8u
#define EFI_PXE_BASE_CODE_MAX_ARP_ENTRIES 8u
#define EFI_PXE_BASE_CODE_MAX_ROUTE_ENTRIES 8u

typedef enum {
	EFI_PXE_BASE_CODE_TFTP_FIRST,
	EFI_PXE_BASE_CODE_TFTP_GET_FILE_SIZE,
	EFI_PXE_BASE_CODE_TFTP_READ_FILE,
	EFI_PXE_BASE_CODE_TFTP_WRITE_FILE,
	EFI_PXE_BASE_CODE_TFTP_READ_DIRECTORY,
	EFI_PXE_BASE_CODE_MTFTP_GET_FILE_SIZE,
	EFI_PXE_BASE_CODE_MTFTP_READ_FILE,
	EFI_PXE_BASE_CODE_MTFTP_READ_DIRECTORY,
	EFI_PXE_BASE_CODE_MTFTP_LAST
} EFI_PXE_BASE_CODE_TFTP_OPCODE;

/* A DHCP or PXE packet as received (a UDP payload); the specification's union with the DHCPv4 and
 * DHCPv6 views is 4-byte aligned. */
typedef union {
	uint8_t Raw[1472];
	uint32_t Align;
} EFI_PXE_BASE_CODE_PACKET;
_Static_assert(sizeof(EFI_PXE_BASE_CODE_PACKET) == 1472, "EFI_PXE_BASE_CODE_PACKET");

typedef struct {
	uint8_t Filters;
	uint8_t IpCnt;
	uint16_t reserved;
	EFI_IP_ADDRESS IpList[EFI_PXE_BASE_CODE_MAX_IPCNT];
} EFI_PXE_BASE_CODE_IP_FILTER;

typedef struct {
	EFI_IP_ADDRESS IpAddr;
	EFI_MAC_ADDRESS MacAddr;
} EFI_PXE_BASE_CODE_ARP_ENTRY;

typedef struct {
	EFI_IP_ADDRESS IpAddr;
	EFI_IP_ADDRESS SubnetMask;
	EFI_IP_ADDRESS GwAddr;
} EFI_PXE_BASE_CODE_ROUTE_ENTRY;

typedef struct {
	uint8_t Type;
	uint8_t Code;
	uint16_t Checksum;
	union {
		uint32_t reserved;
		uint32_t Mtu;
		uint32_t Pointer;
		struct {
			uint16_t Identifier;
			uint16_t Sequence;
		} Echo;
	} u;
	uint8_t Data[494];
} EFI_PXE_BASE_CODE_ICMP_ERROR;

typedef struct {
	uint8_t ErrorCode;
	char ErrorString[127];
} EFI_PXE_BASE_CODE_TFTP_ERROR;

typedef struct {
	BOOLEAN Started;
	BOOLEAN Ipv6Available;
	BOOLEAN Ipv6Supported;
	BOOLEAN UsingIpv6;
	BOOLEAN BisSupported;
	BOOLEAN BisDetected;
	BOOLEAN AutoArp;
	BOOLEAN SendGUID;
	BOOLEAN DhcpDiscoverValid;
	BOOLEAN DhcpAckReceived;
	BOOLEAN ProxyOfferReceived;
	BOOLEAN PxeDiscoverValid;
	BOOLEAN PxeReplyReceived;
	BOOLEAN PxeBisReplyReceived;
	BOOLEAN IcmpErrorReceived;
	BOOLEAN TftpErrorReceived;
	BOOLEAN MakeCallbacks;
	uint8_t TTL;
	uint8_t ToS;
	EFI_IP_ADDRESS StationIp;
	EFI_IP_ADDRESS SubnetMask;
	EFI_PXE_BASE_CODE_PACKET DhcpDiscover;
	EFI_PXE_BASE_CODE_PACKET DhcpAck;
	EFI_PXE_BASE_CODE_PACKET ProxyOffer;
	EFI_PXE_BASE_CODE_PACKET PxeDiscover;
	EFI_PXE_BASE_CODE_PACKET PxeReply;
	EFI_PXE_BASE_CODE_PACKET PxeBisReply;
	EFI_PXE_BASE_CODE_IP_FILTER IpFilter;
	uint32_t ArpCacheEntries;
	EFI_PXE_BASE_CODE_ARP_ENTRY ArpCache[EFI_PXE_BASE_CODE_MAX_ARP_ENTRIES];
	uint32_t RouteTableEntries;
	EFI_PXE_BASE_CODE_ROUTE_ENTRY RouteTable[EFI_PXE_BASE_CODE_MAX_ROUTE_ENTRIES];
	EFI_PXE_BASE_CODE_ICMP_ERROR IcmpError;
	EFI_PXE_BASE_CODE_TFTP_ERROR TftpError;
} EFI_PXE_BASE_CODE_MODE;
/* GRUB's efinet reads DhcpAck at this offset (its own struct: 20 bytes of flags, two addresses). */
_Static_assert(offsetof(EFI_PXE_BASE_CODE_MODE, StationIp) == 20, "EFI_PXE_BASE_CODE_MODE layout");
_Static_assert(offsetof(EFI_PXE_BASE_CODE_MODE, DhcpAck) == 52 + 1472, "EFI_PXE_BASE_CODE_MODE layout");

typedef struct {
	EFI_IP_ADDRESS MCastIp;
	uint16_t CPort, SPort, ListenTimeout, TransmitTimeout;
} EFI_PXE_BASE_CODE_MTFTP_INFO;

typedef struct EFI_PXE_BASE_CODE_PROTOCOL EFI_PXE_BASE_CODE_PROTOCOL;
struct EFI_PXE_BASE_CODE_PROTOCOL {
	uint64_t Revision;
	EFI_STATUS(EFIAPI *Start)(EFI_PXE_BASE_CODE_PROTOCOL *This, BOOLEAN UseIpv6);
	EFI_STATUS(EFIAPI *Stop)(EFI_PXE_BASE_CODE_PROTOCOL *This);
	EFI_STATUS(EFIAPI *Dhcp)(EFI_PXE_BASE_CODE_PROTOCOL *This, BOOLEAN SortOffers);
	EFI_STATUS(EFIAPI *Discover)(EFI_PXE_BASE_CODE_PROTOCOL *This, uint16_t Type, uint16_t *Layer, BOOLEAN UseBis,
				     void *Info);
	EFI_STATUS(EFIAPI *Mtftp)(EFI_PXE_BASE_CODE_PROTOCOL *This, EFI_PXE_BASE_CODE_TFTP_OPCODE Operation,
				  void *BufferPtr, BOOLEAN Overwrite, uint64_t *BufferSize, UINTN *BlockSize,
				  EFI_IP_ADDRESS *ServerIp, uint8_t *Filename, EFI_PXE_BASE_CODE_MTFTP_INFO *Info,
				  BOOLEAN DontUseBuffer);
	EFI_STATUS(EFIAPI *UdpWrite)(EFI_PXE_BASE_CODE_PROTOCOL *This, uint16_t OpFlags, EFI_IP_ADDRESS *DestIp,
				     uint16_t *DestPort, EFI_IP_ADDRESS *GatewayIp, EFI_IP_ADDRESS *SrcIp,
				     uint16_t *SrcPort, UINTN *HeaderSize, void *HeaderPtr, UINTN *BufferSize,
				     void *BufferPtr);
	EFI_STATUS(EFIAPI *UdpRead)(EFI_PXE_BASE_CODE_PROTOCOL *This, uint16_t OpFlags, EFI_IP_ADDRESS *DestIp,
				    uint16_t *DestPort, EFI_IP_ADDRESS *SrcIp, uint16_t *SrcPort, UINTN *HeaderSize,
				    void *HeaderPtr, UINTN *BufferSize, void *BufferPtr);
	EFI_STATUS(EFIAPI *SetIpFilter)(EFI_PXE_BASE_CODE_PROTOCOL *This, EFI_PXE_BASE_CODE_IP_FILTER *NewFilter);
	EFI_STATUS(EFIAPI *Arp)(EFI_PXE_BASE_CODE_PROTOCOL *This, EFI_IP_ADDRESS *IpAddr, EFI_MAC_ADDRESS *MacAddr);
	EFI_STATUS(EFIAPI *SetParameters)(EFI_PXE_BASE_CODE_PROTOCOL *This, BOOLEAN *NewAutoArp, BOOLEAN *NewSendGUID,
					  uint8_t *NewTTL, uint8_t *NewToS, BOOLEAN *NewMakeCallback);
	EFI_STATUS(EFIAPI *SetStationIp)(EFI_PXE_BASE_CODE_PROTOCOL *This, EFI_IP_ADDRESS *NewStationIp,
					 EFI_IP_ADDRESS *NewSubnetMask);
	EFI_STATUS(EFIAPI *SetPackets)(EFI_PXE_BASE_CODE_PROTOCOL *This, BOOLEAN *NewDhcpDiscoverValid,
				       BOOLEAN *NewDhcpAckReceived, BOOLEAN *NewProxyOfferReceived,
				       BOOLEAN *NewPxeDiscoverValid, BOOLEAN *NewPxeReplyReceived,
				       BOOLEAN *NewPxeBisReplyReceived, EFI_PXE_BASE_CODE_PACKET *NewDhcpDiscover,
				       EFI_PXE_BASE_CODE_PACKET *NewDhcpAck, EFI_PXE_BASE_CODE_PACKET *NewProxyOffer,
				       EFI_PXE_BASE_CODE_PACKET *NewPxeDiscover, EFI_PXE_BASE_CODE_PACKET *NewPxeReply,
				       EFI_PXE_BASE_CODE_PACKET *NewPxeBisReply);
	EFI_PXE_BASE_CODE_MODE *Mode;
};
_Static_assert(sizeof(EFI_PXE_BASE_CODE_PROTOCOL) == 112, "EFI_PXE_BASE_CODE_PROTOCOL");

#endif
