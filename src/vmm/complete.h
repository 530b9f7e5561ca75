/* Completes, on the vCPU thread, an instruction KVM's emulator rejected (see vmm/insn.h):
 * moves the vCPU's state between KVM and the pure completer and applies the outcome. */
#ifndef GEN2VM_VMM_COMPLETE_H
#define GEN2VM_VMM_COMPLETE_H

#include "vmm/vm.h"

/* A vm_emulation_fn. Returns 0 when the vCPU may run on (instruction done or exception queued);
 * otherwise stops the VM with "cannot complete instruction at RIP=…: bytes … (mnemonic)" and
 * returns -ENOTSUP (or the KVM error). */
int vcpu_complete_instruction(struct vcpu *vcpu, const uint8_t *insn, unsigned insn_len);

#endif
