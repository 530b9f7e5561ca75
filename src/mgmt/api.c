#include "mgmt/api.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* The stable error codes: clients test these, never the messages. README "Error codes" lists them. */
static const struct {
	const char *code;
	int status;
} api_codes[] = {
	{ "BadRequest", 400 },     { "InvalidName", 400 },   { "InvalidArgument", 400 }, { "InvalidConfig", 400 },
	{ "NotFound", 404 },       { "VmNotFound", 404 },    { "MethodNotAllowed", 405 }, { "RequestTimeout", 408 },
	{ "VmExists", 409 },       { "VmRunning", 409 },     { "VmNotRunning", 409 },    { "Conflict", 409 },
	{ "VmSaved", 409 },        { "TooLarge", 413 },       { "HeaderTooLarge", 431 }, { "StartFailed", 500 },    { "Failed", 500 },
	{ "NotSupported", 501 },   { "ServiceBusy", 503 },   { "Timeout", 504 },
};

int api_error_status(const char *code)
{
	for (size_t i = 0; i < sizeof(api_codes) / sizeof(api_codes[0]); i++)
		if (!strcmp(code, api_codes[i].code))
			return api_codes[i].status;
	return 500;
}

const char *api_error_code(int err)
{
	switch (-err) {
	case EBUSY: return "Conflict";
	case EEXIST: return "VmExists";
	case ENOENT: case EINVAL: case E2BIG: case EACCES: case EISDIR: case ENAMETOOLONG: return "InvalidArgument";
	case EOPNOTSUPP: return "NotSupported";
	case ETIMEDOUT: return "Timeout";
	default: return "Failed";
	}
}

int api_route_match(const char *method, const char *path, struct api_route *r, const char **code)
{
	static const char vms[] = "/v1/vms";
	memset(r, 0, sizeof(*r));
	*code = "NotFound";
	bool get = !strcmp(method, "GET");
	if (!strcmp(path, "/v1/events")) {
		r->op = API_EVENTS;
		return get ? 0 : (*code = "MethodNotAllowed", 405);
	}
	if (strncmp(path, vms, sizeof(vms) - 1))
		return 404;
	const char *p = path + sizeof(vms) - 1;
	if (!*p || !strcmp(p, "/")) {
		r->op = API_LIST;
		return get ? 0 : (*code = "MethodNotAllowed", 405);
	}
	if (*p++ != '/')
		return 404;
	const char *slash = strchr(p, '/');
	size_t nl = slash ? (size_t)(slash - p) : strlen(p);
	if (nl > STORE_NAME_MAX) {
		*code = "InvalidName";
		return 400;
	}
	memcpy(r->name, p, nl);
	r->name[nl] = 0;
	char err[128];
	if (store_name_check(r->name, err, sizeof(err))) {
		*code = "InvalidName";
		return 400;
	}
	if (!slash) {
		if (get)
			r->op = API_GET;
		else if (!strcmp(method, "PUT"))
			r->op = API_CREATE;
		else if (!strcmp(method, "PATCH"))
			r->op = API_MODIFY;
		else if (!strcmp(method, "DELETE"))
			r->op = API_DELETE;
		else
			return *code = "MethodNotAllowed", 405;
		return 0;
	}
	static const struct {
		const char *action;
		enum api_op op;
	} actions[] = {
		{ "start", API_START }, { "shutdown", API_SHUTDOWN }, { "terminate", API_TERMINATE },
		{ "restart", API_RESTART }, { "pause", API_PAUSE }, { "resume", API_RESUME },
	};
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
		if (strcmp(slash + 1, actions[i].action))
			continue;
		r->op = actions[i].op;
		return !strcmp(method, "POST") ? 0 : (*code = "MethodNotAllowed", 405);
	}
	return 404;
}
