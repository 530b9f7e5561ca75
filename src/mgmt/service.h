/* gen2vmd, the host service (`gen2vm service run`): supervises the VM store's VMs and serves the JSON
 * API (src/mgmt/api.h) on a Unix socket.
 *
 * One process, one epoll loop: the API socket, its connections (non-blocking, bounded buffers, a
 * deadline each), a signalfd (SIGCHLD, SIGTERM, SIGINT) and a pidfd per running VM. Every operation
 * on the store runs as a child process, `gen2vm vm VERB ...` with GEN2VM_DIRECT=1: the very code the
 * CLI runs without the service (so both give the same results), never blocking the loop (a start
 * waits for the control socket, a shutdown for the guest), isolated from the loop's state (the store
 * functions change the working directory), and a kill -9 of the service leaves the store exactly as
 * a kill -9 of the CLI would: consistent (vm.json is replaced atomically, the locks are flocks).
 *
 * VMs run in their own session (vm start detaches them), so they keep running when the service
 * ends or is killed; at start the service finds them again by their run lock and watches the pid the
 * lock file holds. The service is the child subreaper of what it starts, so it sees the exit code of
 * the VMs it started (a guest crash) and not only their end.
 *
 * <store>/gen2vmd.state (replaced atomically) remembers which VMs run and the host's boot id: after a
 * reboot, VMs with "automatic_start": "if_running" (the default) that ran are started again; after
 * a restart of the service alone, VMs that ended meanwhile are not (nothing is restarted silently).
 * <store>/gen2vmd.stopped names the VMs `service stop-vms` stopped (or saved) as the host went down,
 * with its boot id: the service sees them end and no longer counts them as running, yet they ran
 * when the host went down, so at the next boot they count as having run (a saved one is restored, as
 * `vm start` does). The service deletes the file once it has looked at it. */
#ifndef GEN2VM_MGMT_SERVICE_H
#define GEN2VM_MGMT_SERVICE_H

#define SERVICE_SOCKET "gen2vmd.sock"
#define SERVICE_STATE "gen2vmd.state"
#define SERVICE_STOPPED "gen2vmd.stopped"

/* Environment of the service's children: GEN2VM_DIRECT=1 makes `gen2vm vm` work on the store itself
 * (never through the API); GEN2VM_API_CODE_FD=N has it write its error code (api.h) to fd N. */
#define SERVICE_ENV_DIRECT "GEN2VM_DIRECT"
#define SERVICE_ENV_CODE_FD "GEN2VM_API_CODE_FD"

/* Runs the service on the store root (resolved as the vm verbs do) with its socket at socket_path
 * (NULL: <root>/gen2vmd.sock), until SIGTERM or SIGINT; the VMs keep running. group (NULL: none):
 * the socket belongs to that group (mode 0660) and, when it is in the store's root, the root too
 * (mode 0710: the group enters it, cannot list it; the VMs' directories stay 0700). Returns an exit
 * code (src/cli/exit.h), the error printed. */
int service_run(const char *store_opt, const char *socket_path, const char *group);

/* Applies each running VM's "automatic_stop" (shutdown, turned off after timeout_s if the guest does
 * not end; turn_off; or save), all at once, and waits for them: what the unit does at host shutdown.
 * The VMs are named in gen2vmd.stopped first (see above).
 * Returns an exit code: 0 when every VM is off. */
int service_stop_vms(const char *store_opt, unsigned timeout_s);

#endif
