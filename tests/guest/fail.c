/* Reports failure code 7 through the debug exit port: the VMM must end with an error. */
#include "guest.h"

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	return 7;
}
