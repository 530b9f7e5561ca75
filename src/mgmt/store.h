/* The VM store: one directory per VM under a root (`gen2vm vm ...`).
 *
 *   <root>/<name>/vm.json        the configuration: the document `gen2vm run --config` reads
 *                 nvram.bin      the UEFI variables (`run --nvram`; nvram.bin.lock is the NVRAM's own)
 *                 diskN.vhdx     disks the store created (`--disk new:SIZE`)
 *                 console.log    COM1
 *                 vm.log         what the gen2vm run process printed (its errors)
 *                 control.sock   the running VM's control socket
 *                 console.sock   where clients attach to the running VM's COM1 (`vm console`)
 *                 vnc.sock       the running VM's VNC server, after `vm set NAME --console on`
 *                 run.lock       flock'ed by the gen2vm run process for its whole life; holds its pid
 *                 .lock-config   flock'ed around every read-modify-write of vm.json
 *                 vm.save        the saved state (`vm stop --save`), written by the run process
 *                                (vm.save.tmp renamed over it); `vm start` resumes from it
 *
 * The run lock is an flock(2) on an open file description that the run process inherits from the
 * `vm start` that took it: it goes with the process, so a VM killed with SIGKILL leaves no stale
 * lock behind. Everything here returns 0 or -errno; messages name the VM and the fix.
 */
#ifndef GEN2VM_MGMT_STORE_H
#define GEN2VM_MGMT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct json_object;

#define STORE_NAME_MAX 64

/* The store's own file names inside a VM's directory. */
#define STORE_CONFIG "vm.json"
#define STORE_NVRAM "nvram.bin"
#define STORE_CONSOLE_LOG "console.log"
#define STORE_RUN_LOG "vm.log"
#define STORE_CONTROL "control.sock"
#define STORE_CONSOLE_SOCK "console.sock"
#define STORE_VNC_SOCK "vnc.sock" /* where `vm set --console on` puts the VNC server */
#define STORE_RUN_LOCK "run.lock"
#define STORE_CONFIG_LOCK ".lock-config"
#define STORE_SAVED "vm.save" /* the saved state (`vm stop --save`): the VM is Saved while it exists */

/* Whether name may name a VM: 1 to STORE_NAME_MAX characters of [A-Za-z0-9._-], not starting with
 * '.' or '-' (so never ".", "..", a hidden file or an option). 0, or -EINVAL with err saying what
 * is wrong with it. */
int store_name_check(const char *name, char *err, size_t errlen);

/* The store's root: opt (--store) if given, else $GEN2VM_STORE, else $XDG_DATA_HOME/gen2vm, else
 * $HOME/.local/share/gen2vm. Nothing is created. 0, or -ENAMETOOLONG / -ENOENT (no HOME) with err. */
int store_root_resolve(const char *opt, char *out, size_t len, char *err, size_t errlen);

/* <root>/<name> or, with file, <root>/<name>/<file> into out. 0 or -ENAMETOOLONG. */
int store_path(const char *root, const char *name, const char *file, char *out, size_t len);

/* Creates the root (and its parents, mode 0700 for what is made) and <root>/<name> (0700), which
 * must not exist: -EEXIST "a VM named ... already exists". 0 or -errno with err. */
int store_vm_create_dir(const char *root, const char *name, char *err, size_t errlen);

/* Whether <root>/<name>/vm.json exists: 0, -ENOENT with err "no VM named ... (gen2vm vm list
 * shows them)", or another -errno. */
int store_vm_exists(const char *root, const char *name, char *err, size_t errlen);

/* Takes the run lock of the VM directory dir without waiting. Returns the lock's descriptor (no
 * O_CLOEXEC: `vm start` hands it to the run process), or -EBUSY when another process holds it (the
 * VM runs or is starting), or another -errno. Closing every descriptor of it releases it. */
int store_run_lock(const char *dir);

/* Whether a process holds dir's run lock (a shared lock taken and dropped at once: it cannot be had
 * while someone holds the exclusive one). 1 held, 0 not, -errno. */
int store_run_lock_held(const char *dir);

/* The pid written in dir's run lock file by the process that runs the VM, or 0 when there is none. */
pid_t store_run_pid(const char *dir);

/* Takes dir's config lock (.lock-config) for a read-modify-write of vm.json, waiting up to
 * wait_ms for another client to finish. Returns the descriptor (close it to release), -EBUSY when
 * it is still held after wait_ms, or another -errno. */
int store_config_lock(const char *dir, unsigned wait_ms);

/* Reads and validates dir's vm.json with the reader of `gen2vm run --config` and parses it into
 * *doc (a JSON object the caller puts). 0 or -errno with err naming the file.
 * The check runs from dir, as the run process does (relative paths in the document are relative to
 * the VM's directory): it changes the working directory for its duration, so it is for
 * single-threaded callers (the gen2vm vm commands), as is store_doc_write. */
int store_doc_read(const char *dir, struct json_object **doc, char *err, size_t errlen);

/* Validates doc with the reader of `gen2vm run --config` and, only if it passes, replaces dir's
 * vm.json with it atomically (temporary file, fsync, rename, fsync of the directory). The caller
 * holds the config lock. 0 or -errno with err (nothing changed). */
int store_doc_write(const char *dir, struct json_object *doc, char *err, size_t errlen);

#endif
