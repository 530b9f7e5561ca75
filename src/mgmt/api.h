/* The gen2vmd API (README "The service's API"): its routes and its stable error codes. Pure
 * functions, no I/O: src/mgmt/service.c serves them, the CLI's client (src/cli/vm_cmd.c) calls them. */
#ifndef GEN2VM_MGMT_API_H
#define GEN2VM_MGMT_API_H

#include <stddef.h>

#include "mgmt/store.h"

enum api_op {
	API_LIST,      /* GET    /v1/vms */
	API_GET,       /* GET    /v1/vms/NAME */
	API_CREATE,    /* PUT    /v1/vms/NAME            a VM document, or {"options": [vm new options]} */
	API_MODIFY,    /* PATCH  /v1/vms/NAME            {"memory": ...} or one drive/adapter change */
	API_DELETE,    /* DELETE /v1/vms/NAME */
	API_START,     /* POST   /v1/vms/NAME/start */
	API_SHUTDOWN,  /* POST   /v1/vms/NAME/shutdown   {"timeout": S} or {"save": true} optional */
	API_TERMINATE, /* POST   /v1/vms/NAME/terminate */
	API_RESTART,   /* POST   /v1/vms/NAME/restart    {"timeout": S, "turn_off": bool, "save": bool} optional */
	API_PAUSE,     /* POST   /v1/vms/NAME/pause */
	API_RESUME,    /* POST   /v1/vms/NAME/resume */
	API_EVENTS,    /* GET    /v1/events              newline-delimited JSON, kept open */
};

struct api_route {
	enum api_op op;
	char name[STORE_NAME_MAX + 1];
};

/* Matches a request's method and path (without query) to a route. Returns 0 with *r, or the HTTP
 * status to answer with code (a static string of the table below) into *code: 404 "NotFound" (no
 * such path), 405 "MethodNotAllowed", 400 "InvalidName" (a VM name store_name_check refuses). */
int api_route_match(const char *method, const char *path, struct api_route *r, const char **code);

/* The HTTP status of an error code of the table (README), 500 for a code not in it. */
int api_error_status(const char *code);

/* The error code for an operation that failed with -errno err and no more specific code: -ENOENT
 * "InvalidArgument" (a file the request named), -EBUSY "Conflict", -EEXIST "VmExists", -EINVAL
 * "InvalidArgument", -EOPNOTSUPP "NotSupported", -ETIMEDOUT "Timeout", others "Failed". */
const char *api_error_code(int err);

#endif
