/* --disk / --dvd specifications ("PATH[,readonly][,lun=N][,controller=N][,4k][,serial=S][,format=F]",
 * "PATH|empty"), from the command line or the JSON config ("disks": [ "spec" or { "path", "readonly",
 * "lun", "controller", "dvd", "native_4k", "serial", "format" } ]). Parsing only: the storage class
 * (src/devices/storvsp_class.c) builds the controllers from them. */
#ifndef GEN2VM_DEVICES_DISK_SPEC_H
#define GEN2VM_DEVICES_DISK_SPEC_H

#include <stdbool.h>
#include <stddef.h>

#define DISK_SPEC_AUTO -1

struct disk_spec {
	char *path;      /* owned (malloc); NULL: an empty DVD drive */
	bool dvd, readonly, native_4k;
	int lun;         /* 0..63 or DISK_SPEC_AUTO (first free) */
	int controller;  /* 0..3, default 0 */
	char *serial;    /* owned, may be NULL */
	unsigned format; /* DISK_FORMAT_RAW/VHD/VHDX (format=): the format the image must have; 0 detects it */
};

/* Parses one --disk (dvd=false) or --dvd (dvd=true) argument into *out. 0 or -EINVAL with a
 * message naming the problem in err. */
int disk_spec_parse(const char *arg, bool dvd, struct disk_spec *out, char *err, size_t errlen);

/* json: a json_object * (a string spec or an object). 0 or -EINVAL with err. */
int disk_spec_from_json(const void *json, struct disk_spec *out, char *err, size_t errlen);

void disk_spec_free(struct disk_spec *d);

#endif
