#include "devices/disk_spec.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk/disk.h"
#include "util/text.h"

static int parse_int(const char *s, int max, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < 0 || v > max)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

int disk_spec_parse(const char *arg, bool dvd, struct disk_spec *out, char *err, size_t errlen)
{
	const char *opt = dvd ? "--dvd" : "--disk";
	memset(out, 0, sizeof(*out));
	out->dvd = dvd;
	out->lun = DISK_SPEC_AUTO;
	char *copy = strdup(arg), *save = NULL;
	if (!copy)
		return -ENOMEM;
	char *path = strtok_r(copy, ",", &save);
	if (!path || !*path) {
		snprintf(err, errlen, "%s '%s': expected PATH%s", opt, text_show(arg), dvd ? " or empty" : "");
		free(copy);
		return -EINVAL;
	}
	if (!(dvd && !strcmp(path, "empty")))
		out->path = strdup(path);
	for (char *o = strtok_r(NULL, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		int r = 0;
		if (!strcmp(o, "readonly") || !strcmp(o, "ro"))
			out->readonly = true;
		else if (!strcmp(o, "4k") && !dvd)
			out->native_4k = true;
		else if (!strncmp(o, "lun=", 4))
			r = parse_int(o + 4, 63, &out->lun);
		else if (!strncmp(o, "controller=", 11))
			r = parse_int(o + 11, 3, &out->controller);
		else if (!strncmp(o, "serial=", 7) && strlen(o + 7) <= 20) {
			free(out->serial); /* given twice: the last one counts */
			out->serial = strdup(o + 7);
		}
		else if (!strncmp(o, "format=", 7) && disk_format_flag(o + 7))
			out->format = disk_format_flag(o + 7);
		else
			r = -EINVAL;
		if (r) {
			snprintf(err, errlen,
				 "%s '%s': bad option '%s' (readonly, lun=0..63, controller=0..3%s, serial=TEXT of up to 20 "
				 "characters, format=raw|vhd|vhdx)",
				 opt, text_show(arg), text_show(o), dvd ? "" : ", 4k");
			free(copy);
			disk_spec_free(out);
			return -EINVAL;
		}
	}
	free(copy);
	return 0;
}

int disk_spec_from_json(const void *j, struct disk_spec *out, char *err, size_t errlen)
{
	json_object *o = (json_object *)j;
	if (json_object_is_type(o, json_type_string))
		return disk_spec_parse(json_object_get_string(o), false, out, err, errlen);
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "\"disks\": each entry is a string or an object");
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	out->lun = DISK_SPEC_AUTO;
	json_object_object_foreach(o, key, val) {
		enum json_type t = json_object_get_type(val);
		bool ok = true;
		if (!strcmp(key, "path") && t == json_type_string)
			out->path = strdup(json_object_get_string(val));
		else if (!strcmp(key, "dvd") && t == json_type_boolean)
			out->dvd = json_object_get_boolean(val);
		else if (!strcmp(key, "readonly") && t == json_type_boolean)
			out->readonly = json_object_get_boolean(val);
		else if (!strcmp(key, "native_4k") && t == json_type_boolean)
			out->native_4k = json_object_get_boolean(val);
		else if (!strcmp(key, "serial") && t == json_type_string && strlen(json_object_get_string(val)) <= 20)
			out->serial = strdup(json_object_get_string(val));
		else if (!strcmp(key, "format") && t == json_type_string && disk_format_flag(json_object_get_string(val)))
			out->format = disk_format_flag(json_object_get_string(val));
		else if (!strcmp(key, "lun") && t == json_type_int)
			ok = json_object_get_int(val) >= 0 && json_object_get_int(val) <= 63 &&
			     (out->lun = json_object_get_int(val), true);
		else if (!strcmp(key, "controller") && t == json_type_int)
			ok = json_object_get_int(val) >= 0 && json_object_get_int(val) <= 3 &&
			     (out->controller = json_object_get_int(val), true);
		else
			ok = false;
		if (!ok) {
			snprintf(err, errlen, "\"disks\": bad or unknown \"%s\"", text_show(key));
			disk_spec_free(out);
			return -EINVAL;
		}
	}
	if (!out->path && !out->dvd) {
		snprintf(err, errlen, "\"disks\": an entry without \"path\" must be a DVD drive (\"dvd\": true)");
		disk_spec_free(out);
		return -EINVAL;
	}
	return 0;
}

void disk_spec_free(struct disk_spec *d)
{
	free(d->path);
	free(d->serial);
	d->path = d->serial = NULL;
}
