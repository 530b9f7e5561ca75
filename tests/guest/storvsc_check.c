/* storvsp from a guest, functionally, for host-backed disks: tests/integration/test_storvsp.py runs it
 * on a loop device (--disk /dev/loopN) and checks the backing file afterwards.
 *
 * READ CAPACITY(16) (what the host's BLKGETSIZE64 / BLKSSZGET gave), an 8 KiB write at byte 1 MiB read
 * back, the last block written and read back, a read past the end (must fail with CHECK CONDITION),
 * SYNCHRONIZE CACHE, and an UNMAP of the 1 MiB at byte 4 MiB (the host's BLKDISCARD). Disk byte o is
 * written as (uint8_t)(o * 7 + (o >> 12)). Prints storvsc-check: lines; exits non-zero on a failure.
 */
#include "storvsc.h"
#include "gen2vm/proto/scsi.h"

#define PAT_OFF (1u << 20)
#define PAT_LEN 8192u
#define UNMAP_OFF (4u << 20)
#define UNMAP_LEN (1u << 20)

static struct gstorvsc st;
static uint8_t wbuf[PAT_LEN] __attribute__((aligned(4096)));
static uint8_t rbuf[PAT_LEN] __attribute__((aligned(4096)));
static uint64_t next_id = 1;

static uint8_t pat(uint64_t o)
{
	return (uint8_t)(o * 7 + (o >> 12));
}

static void be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* One command, polled; returns the SRB status (SRB_STATUS_SUCCESS = 1) or 0 on a transport error. */
static unsigned cmd(const uint8_t *cdb, uint8_t cdb_len, uint8_t dir, void *buf, uint32_t len)
{
	if (gstorvsc_run(&st, next_id++, cdb, cdb_len, dir, buf, len) || st.reply.status)
		return 0;
	return st.reply.srb.srb_status & 0x3F;
}

static unsigned rw16(bool write, uint64_t lba, uint32_t blocks, void *buf, uint32_t len)
{
	uint8_t cdb[16] = { write ? SCSI_OP_WRITE16 : SCSI_OP_READ16 };
	be(cdb + 2, lba, 8);
	be(cdb + 10, blocks, 4);
	return cmd(cdb, 16, write ? STORVSP_DATA_OUT : STORVSP_DATA_IN, buf, len);
}

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	int r = gstorvsc_open(&st);
	if (r)
		return r;
	/* READ CAPACITY(16) */
	uint8_t cdb[16] = { SCSI_OP_SERVICE_IN16, SCSI_SAI_READ_CAPACITY16 };
	be(cdb + 10, 32, 4);
	if (cmd(cdb, 16, STORVSP_DATA_IN, rbuf, 32) != SRB_STATUS_SUCCESS)
		return 10;
	uint64_t last = 0;
	for (int i = 0; i < 8; i++)
		last = last << 8 | rbuf[i];
	uint32_t bs = (uint32_t)rbuf[8] << 24 | (uint32_t)rbuf[9] << 16 | (uint32_t)rbuf[10] << 8 | rbuf[11];
	gprintf("storvsc-check: capacity blocks=%u block_size=%u\n", last + 1, (uint64_t)bs);
	if (bs != 512 && bs != 4096)
		return 11;

	for (uint32_t i = 0; i < PAT_LEN; i++)
		wbuf[i] = pat(PAT_OFF + i);
	if (rw16(true, PAT_OFF / bs, PAT_LEN / bs, wbuf, PAT_LEN) != SRB_STATUS_SUCCESS ||
	    rw16(false, PAT_OFF / bs, PAT_LEN / bs, rbuf, PAT_LEN) != SRB_STATUS_SUCCESS || memcmp(wbuf, rbuf, PAT_LEN))
		return 12;
	gputs("storvsc-check: write and read back ok\n");

	uint64_t end_off = last * bs;
	for (uint32_t i = 0; i < bs; i++)
		wbuf[i] = pat(end_off + i);
	memset(rbuf, 0, bs);
	if (rw16(true, last, 1, wbuf, bs) != SRB_STATUS_SUCCESS || rw16(false, last, 1, rbuf, bs) != SRB_STATUS_SUCCESS ||
	    memcmp(wbuf, rbuf, bs))
		return 13;
	gputs("storvsc-check: last block ok\n");

	if (rw16(false, last + 1, 1, rbuf, bs) == SRB_STATUS_SUCCESS || st.reply.srb.scsi_status != 0x02)
		return 14;
	gputs("storvsc-check: read past the end refused\n");

	uint8_t sync[10] = { SCSI_OP_SYNC_CACHE10 };
	if (cmd(sync, 10, STORVSP_DATA_NONE, NULL, 0) != SRB_STATUS_SUCCESS)
		return 15;
	gputs("storvsc-check: flush ok\n");

	/* UNMAP: an 8-byte header and one 16-byte block descriptor. */
	uint8_t unmap[10] = { SCSI_OP_UNMAP };
	be(unmap + 7, 24, 2);
	memset(wbuf, 0, 24);
	be(wbuf, 22, 2);
	be(wbuf + 2, 16, 2);
	be(wbuf + 8, UNMAP_OFF / bs, 8);
	be(wbuf + 16, UNMAP_LEN / bs, 4);
	if (cmd(unmap, 10, STORVSP_DATA_OUT, wbuf, 24) != SRB_STATUS_SUCCESS)
		return 16;
	if (cmd(sync, 10, STORVSP_DATA_NONE, NULL, 0) != SRB_STATUS_SUCCESS)
		return 17;
	gputs("storvsc-check: unmap ok\n");
	gputs("storvsc-check: done\n");
	guest_poweroff();
}
