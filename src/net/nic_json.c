#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "net/nic.h"
#include "util/text.h"

int nic_config_from_json(struct json_object *v, struct nic_config *out, char *err, size_t errlen)
{
	if (json_object_is_type(v, json_type_string))
		return nic_config_parse(json_object_get_string(v), out, err, errlen);
	if (!json_object_is_type(v, json_type_object)) {
		snprintf(err, errlen, "nics: each entry is a string like \"tap=tap0\" or an object {\"tap\": \"tap0\"}");
		return -EINVAL;
	}
	/* Rebuild the --nic string so both forms share one parser and one set of messages. */
	char spec[256] = "";
	size_t n = 0;
	json_object_object_foreach(v, key, val)
	{
		char item[160];
		if (!strcmp(key, "legacy")) {
			if (!json_object_get_boolean(val))
				continue;
			snprintf(item, sizeof(item), "legacy");
		} else if (json_object_is_type(val, json_type_int)) {
			snprintf(item, sizeof(item), "%s=%lld", key, (long long)json_object_get_int64(val));
		} else if (json_object_is_type(val, json_type_string)) {
			const char *s = json_object_get_string(val);
			if (strchr(s, ',') || strchr(s, '=')) {
				snprintf(err, errlen, "nics: \"%s\": value '%s' may not contain ',' or '='", text_show(key), text_show(s));
				return -EINVAL;
			}
			snprintf(item, sizeof(item), "%s=%s", key, s);
		} else {
			snprintf(err, errlen, "nics: \"%s\" must be a string or a number", text_show(key));
			return -EINVAL;
		}
		int w = snprintf(spec + n, sizeof(spec) - n, "%s%s", n ? "," : "", item);
		if (w < 0 || (size_t)w >= sizeof(spec) - n) {
			snprintf(err, errlen, "nics: entry too long");
			return -EINVAL;
		}
		n += (size_t)w;
	}
	return nic_config_parse(spec, out, err, errlen);
}
