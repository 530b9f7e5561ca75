/* `gen2vm vhd ...`: create, inspect, convert, resize, merge, compact and repair disk images.
 * argv[0] is "vhd". Returns the process exit code: 0 success, 1 operation failed (the reason was
 * printed naming the file), 2 usage error. */
#ifndef GEN2VM_CLI_VHD_CMD_H
#define GEN2VM_CLI_VHD_CMD_H

int cli_vhd_main(int argc, char **argv);

/* "64G", "512M", "1T", "4096", "1.5G"... (K/M/G/T/P, binary units, optional "B"/"iB").
 * 0 and *out set, or -EINVAL. */
int cli_size_parse(const char *s, unsigned long long *out);

#endif
