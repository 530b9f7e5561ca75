#include "cli/vhd_cmd.h"
#include "cli/exit.h"
#include "disk/disk.h"
#include "disk/vhd.h"
#include "disk/vhdx.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/size.h"
#include "util/text.h"

#define MiB (1024ull * 1024)

int cli_size_parse(const char *s, unsigned long long *out)
{
	uint64_t v;
	int r = size_parse(s, 1, &v);
	if (!r)
		*out = v;
	return r;
}

/* --- progress ------------------------------------------------------------------------------------ */

struct progress {
	bool tty;
	int last;
	const char *what;
};

static void progress_init(struct progress *p, const char *what)
{
	p->tty = isatty(2);
	p->last = -1;
	p->what = what;
}

static void progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	struct progress *p = ctx;
	if (!p->tty || !total)
		return;
	int pct = (int)(done * 100 / total);
	if (pct == p->last)
		return;
	p->last = pct;
	char bar[41];
	int fill = pct * 40 / 100;
	for (int i = 0; i < 40; i++)
		bar[i] = i < fill ? '#' : ' ';
	bar[40] = 0;
	fprintf(stderr, "\r%s [%s] %3d%%", p->what, bar, pct);
	if (done >= total)
		fprintf(stderr, "\n");
}

static void progress_done(struct progress *p)
{
	if (p->tty && p->last >= 0 && p->last < 100)
		fprintf(stderr, "\n");
}

/* --- helpers ---------------------------------------------------------------------------------------- */

static const char *type_name(const struct disk *d)
{
	switch (d->type) {
	case DISK_TYPE_FIXED: return "Fixed";
	case DISK_TYPE_DYNAMIC: return "Dynamic";
	case DISK_TYPE_DIFFERENCING: return "Differencing";
	}
	return "Unknown";
}

static void guid_str(const uint8_t g[16], char out[39])
{
	snprintf(out, 39, "{%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X}",
		 g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12],
		 g[13], g[14], g[15]);
}

static const char *format_of_name(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot && !strcasecmp(dot, ".vhdx"))
		return "vhdx";
	if (dot && !strcasecmp(dot, ".vhd"))
		return "vhd";
	return NULL;
}

/* --- new ------------------------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: gen2vm vhd new PATH --size SIZE [--fixed|--dynamic] [--parent P] [--format vhdx|vhd|raw]\n"
		"                        [--block-size SIZE] [--sector-size 512|4096] [--physical-sector-size N]\n"
		"       gen2vm vhd inspect PATH [--json]\n"
		"       gen2vm vhd convert SRC DST [--to vhdx|vhd|raw] [--dynamic|--fixed] [--block-size SIZE]\n"
		"       gen2vm vhd resize PATH --size SIZE\n"
		"       gen2vm vhd merge CHILD [--into PARENT]\n"
		"       gen2vm vhd compact PATH\n"
		"       gen2vm vhd repair PATH      (replays the log of an image that was not closed cleanly)\n"
		"The image format is detected from the contents; NEW images take it from --format, else\n"
		"from the name (.vhdx, .vhd), else VHDX.\n");
}

enum { OPT_FIXED = 1000, OPT_DYNAMIC, OPT_PARENT, OPT_BS, OPT_SS, OPT_PSS, OPT_FORMAT, OPT_SIZE,
       OPT_JSON, OPT_TO, OPT_INTO, OPT_SEED, OPT_JOURNAL, OPT_OPS };

static const struct option long_opts[] = {
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "fixed", no_argument, NULL, OPT_FIXED },
	{ "dynamic", no_argument, NULL, OPT_DYNAMIC },
	{ "parent", required_argument, NULL, OPT_PARENT },
	{ "block-size", required_argument, NULL, OPT_BS },
	{ "sector-size", required_argument, NULL, OPT_SS },
	{ "logical-sector-size", required_argument, NULL, OPT_SS },
	{ "physical-sector-size", required_argument, NULL, OPT_PSS },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "to", required_argument, NULL, OPT_TO },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "into", required_argument, NULL, OPT_INTO },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "journal", required_argument, NULL, OPT_JOURNAL },
	{ "ops", required_argument, NULL, OPT_OPS },
	{ "help", no_argument, NULL, 'h' },
	{ 0 }
};

struct args {
	unsigned long long size, bs, ss, pss, seed, ops;
	bool fixed, dynamic, json, size_given;
	const char *parent, *format, *to, *into, *journal;
	char *pos[3];
	int npos;
};

static int args_parse(int argc, char **argv, struct args *a)
{
	memset(a, 0, sizeof(*a));
	optind = 1;
	opterr = 1;
	int c;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		unsigned long long *sz = NULL;
		switch (c) {
		case OPT_SIZE: sz = &a->size; a->size_given = true; break;
		case OPT_BS: sz = &a->bs; break;
		case OPT_SS: sz = &a->ss; break;
		case OPT_PSS: sz = &a->pss; break;
		case OPT_SEED: sz = &a->seed; break;
		case OPT_OPS: sz = &a->ops; break;
		case OPT_FIXED: a->fixed = true; break;
		case OPT_DYNAMIC: a->dynamic = true; break;
		case OPT_JSON: a->json = true; break;
		case OPT_PARENT: a->parent = optarg; break;
		case OPT_FORMAT: a->format = optarg; break;
		case OPT_TO: a->to = optarg; break;
		case OPT_INTO: a->into = optarg; break;
		case OPT_JOURNAL: a->journal = optarg; break;
		case 'h': usage(); return CLI_EXIT_OK;
		default: usage(); return CLI_EXIT_USAGE;
		}
		if (sz && cli_size_parse(optarg, sz)) {
			fprintf(stderr, "gen2vm vhd: bad size '%s' (e.g. 64G, 512M, 4096)\n", text_show(optarg));
			return CLI_EXIT_USAGE;
		}
	}
	for (int i = optind; i < argc; i++) {
		if (a->npos == 3) {
			fprintf(stderr, "gen2vm vhd: unexpected argument '%s' (see gen2vm vhd --help)\n", text_show(argv[i]));
			return CLI_EXIT_USAGE;
		}
		a->pos[a->npos++] = argv[i];
	}
	if (a->fixed && a->dynamic) {
		fprintf(stderr, "gen2vm vhd: --fixed and --dynamic exclude each other\n");
		return CLI_EXIT_USAGE;
	}
	if (a->bs > UINT32_MAX || a->ss > 65536 || a->pss > 65536) {
		fprintf(stderr, "gen2vm vhd: block or sector size too large\n");
		return CLI_EXIT_USAGE;
	}
	return -1;
}

/* The positional arguments a command takes: one line naming what is missing or extra, CLI_EXIT_USAGE;
 * -1 when they are right. */
static int args_want(const struct args *a, const char *cmd, int n, const char *what)
{
	if (a->npos == n)
		return -1;
	if (a->npos < n)
		fprintf(stderr, "gen2vm vhd %s: missing %s (see gen2vm vhd --help)\n", cmd, what);
	else
		fprintf(stderr, "gen2vm vhd %s: unexpected argument '%s' (it takes %s)\n", cmd, text_show(a->pos[n]), what);
	return CLI_EXIT_USAGE;
}

static int cmd_new(struct args *a)
{
	int u = args_want(a, "new", 1, "PATH");
	if (u >= 0)
		return u;
	if (!a->size && !a->parent) {
		fprintf(stderr, "gen2vm vhd new: %s (e.g. --size 64G; a differencing disk takes --parent)\n",
			a->size_given ? "--size must be more than 0" : "--size SIZE is required");
		return CLI_EXIT_USAGE;
	}
	const char *path = a->pos[0];
	const char *fmt = a->format ? a->format : format_of_name(path) ? format_of_name(path) : "vhdx";
	struct progress p;
	progress_init(&p, "Creating");
	struct disk_create_opts o = { .format = fmt, .size = a->size, .fixed = a->fixed,
				      .parent = a->parent, .block_size = (uint32_t)a->bs,
				      .logical_sector = (uint32_t)a->ss,
				      .physical_sector = (uint32_t)a->pss, .progress = progress_cb,
				      .progress_ctx = &p };
	int rc = disk_create(path, &o);
	progress_done(&p);
	return cli_exit_code(rc);
}

/* --- inspect ---------------------------------------------------------------------------------------- */

struct layer_stats {
	uint64_t allocated_blocks, fragments;
};

static int layer_stats(struct disk *d, struct layer_stats *s)
{
	memset(s, 0, sizeof(*s));
	if (!d->map || !d->block_size)
		return 0;
	uint64_t prev_end = UINT64_MAX;
	for (uint64_t off = 0; off < d->size; off += d->block_size) {
		uint64_t len = d->size - off < d->block_size ? d->size - off : d->block_size;
		struct disk_extent e;
		int rc = disk_block_status(d, off, len, &e);
		if (rc)
			return rc;
		if (e.kind != DISK_EXT_DATA)
			continue;
		/* A block's data offset, less its in-block offset (0 here). VHD adds a bitmap. */
		if (s->allocated_blocks && e.file_off != prev_end)
			s->fragments++;
		s->allocated_blocks++;
		prev_end = e.file_off + d->block_size;
		if (!strcmp(d->ops->format, "vhd"))
			prev_end += (d->block_size / 512 / 8 + 511) / 512 * 512;
	}
	return 0;
}

/* Whether another open of the image holds a lock (d was opened without one, DISK_NOLOCK). */
static bool image_in_use(const struct disk *d)
{
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
	return fcntl(d->fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

/* A path for JSON output: JSON strings are UTF-8, a path need not be (bytes that are not become \xNN).
 * NULL gives JSON null. */
static json_object *json_path(const char *path)
{
	if (!path)
		return NULL;
	char *u = text_utf8_dup(path);
	json_object *j = json_object_new_string(u ? u : "");
	free(u);
	return j;
}

static int cmd_inspect(struct args *a)
{
	int u = args_want(a, "inspect", 1, "PATH");
	if (u >= 0)
		return u;
	struct disk *d;
	int rc = disk_open(a->pos[0], DISK_NOLOCK, &d);
	if (rc)
		return cli_exit_code(rc);
	struct stat st;
	fstat(d->fd, &st);
	struct layer_stats ls;
	if ((rc = layer_stats(d, &ls))) {
		fprintf(stderr, "%s: cannot read its block table: %s\n", text_show(d->path), strerror(-rc));
		disk_close(d);
		return cli_exit_code(rc);
	}
	unsigned frag = ls.allocated_blocks > 1 ? (unsigned)(ls.fragments * 100 / (ls.allocated_blocks - 1)) : 0;
	char id[39];
	guid_str(d->id, id);
	bool in_use = image_in_use(d);
	const char *fmt = d->ops->format;
	char fmtu[8];
	snprintf(fmtu, sizeof(fmtu), "%s", !strcmp(fmt, "vhdx") ? "VHDX" : !strcmp(fmt, "vhd") ? "VHD" : "Raw");
	json_object *j = json_object_new_object();
	json_object_object_add(j, "Path", json_path(d->path));
	json_object_object_add(j, "VhdFormat", json_object_new_string(fmtu));
	json_object_object_add(j, "VhdType", json_object_new_string(type_name(d)));
	json_object_object_add(j, "FileSize", json_object_new_int64((int64_t)st.st_size));
	json_object_object_add(j, "AllocatedSize", json_object_new_int64((int64_t)st.st_blocks * 512));
	json_object_object_add(j, "Size", json_object_new_int64((int64_t)d->size));
	json_object_object_add(j, "LogicalSectorSize", json_object_new_int((int)d->logical_sector));
	json_object_object_add(j, "PhysicalSectorSize", json_object_new_int((int)d->physical_sector));
	json_object_object_add(j, "BlockSize", json_object_new_int64(d->block_size));
	json_object_object_add(j, "AllocatedBlocks", json_object_new_int64((int64_t)ls.allocated_blocks));
	json_object_object_add(j, "FragmentationPercentage", json_object_new_int((int)frag));
	json_object_object_add(j, "DiskIdentifier", json_object_new_string(strcmp(fmt, "raw") ? id : ""));
	json_object_object_add(j, "Attached", json_object_new_boolean(in_use));
	json_object *chain = json_object_new_array();
	for (struct disk *p = d->parent; p; p = p->parent) {
		json_object *e = json_object_new_object();
		json_object_object_add(e, "Path", json_path(p->path));
		json_object_object_add(e, "VhdType", json_object_new_string(type_name(p)));
		json_object_array_add(chain, e);
	}
	json_object_object_add(j, "ParentPath", json_path(d->parent ? d->parent->path : NULL));
	json_object_object_add(j, "ParentChain", chain);
	if (a->json) {
		printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		printf("Path                    : %s\n", d->path);
		printf("VhdFormat               : %s\n", fmtu);
		printf("VhdType                 : %s\n", type_name(d));
		printf("FileSize                : %lld (allocated %lld)\n", (long long)st.st_size,
		       (long long)st.st_blocks * 512);
		printf("Size                    : %llu\n", (unsigned long long)d->size);
		printf("LogicalSectorSize       : %u\n", d->logical_sector);
		printf("PhysicalSectorSize      : %u\n", d->physical_sector);
		printf("BlockSize               : %u\n", d->block_size);
		printf("AllocatedBlocks         : %llu\n", (unsigned long long)ls.allocated_blocks);
		printf("FragmentationPercentage : %u\n", frag);
		printf("DiskIdentifier          : %s\n", strcmp(fmt, "raw") ? id : "");
		printf("Attached                : %s\n", in_use ? "True" : "False");
		printf("ParentPath              : %s\n", d->parent ? d->parent->path : "");
		int depth = 1;
		for (struct disk *p = d->parent; p; p = p->parent)
			printf("  parent %-2d             : %s (%s %s)\n", depth++, p->path,
			       p->ops->format, type_name(p));
	}
	json_object_put(j);
	disk_close(d);
	return CLI_EXIT_OK;
}

/* --- convert ----------------------------------------------------------------------------------------- */

static int copy_data(struct disk *src, struct disk *dst, bool skip_zero, const char *what)
{
	const uint64_t chunk = 2 * MiB;
	uint8_t *buf = aligned_alloc(4096, chunk);
	if (!buf)
		return -ENOMEM;
	struct progress p;
	progress_init(&p, what);
	int rc = 0;
	uint64_t n = src->size < dst->size ? src->size : dst->size;
	for (uint64_t off = 0; off < n && !rc; off += chunk) {
		uint64_t len = n - off < chunk ? n - off : chunk;
		rc = disk_pread(src, buf, len, off);
		if (rc) {
			fprintf(stderr, "%s: read failed at offset %llu: %s\n", src->path,
				(unsigned long long)off, strerror(-rc));
			break;
		}
		if (skip_zero && disk_all_zero(buf, len))
			continue;
		rc = disk_pwrite(dst, buf, len, off);
		if (rc)
			fprintf(stderr, "%s: write failed at offset %llu: %s\n", dst->path,
				(unsigned long long)off, strerror(-rc));
		progress_cb(&p, off + len, n);
	}
	progress_cb(&p, n, n);
	progress_done(&p);
	free(buf);
	if (!rc)
		rc = dst->ops->flush(dst);
	return rc;
}

static int cmd_convert(struct args *a)
{
	int u = args_want(a, "convert", 2, "SRC DST");
	if (u >= 0)
		return u;
	struct disk *src, *dst;
	const char *fmt = a->to ? a->to : format_of_name(a->pos[1]) ? format_of_name(a->pos[1]) : "raw";
	if (!disk_format_flag(fmt)) {
		fprintf(stderr, "gen2vm vhd convert: --to '%s': expected vhdx, vhd or raw\n", text_show(fmt));
		return CLI_EXIT_USAGE;
	}
	int rc = disk_open(a->pos[0], DISK_RDONLY, &src);
	if (rc)
		return cli_exit_code(rc);
	uint64_t size = src->size;
	if (strcmp(fmt, "raw") && size % 512) {
		fprintf(stderr, "%s: size %llu is not a multiple of 512 bytes; cannot convert to %s\n",
			text_show(src->path), (unsigned long long)size, fmt);
		disk_close(src);
		return CLI_EXIT_USAGE;
	}
	struct disk_create_opts o = { .format = fmt, .size = size, .fixed = a->fixed,
				      .block_size = (uint32_t)a->bs,
				      .logical_sector = a->ss ? (uint32_t)a->ss
						      : !strcmp(fmt, "vhdx") ? src->logical_sector : 0,
				      .physical_sector = !strcmp(fmt, "vhdx") ? src->physical_sector : 0 };
	if (!strcmp(fmt, "raw") && size % 512) {
		/* A raw source of odd size: keep it exact. */
		int fd = open(a->pos[1], O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 || ftruncate(fd, (off_t)size)) {
			rc = -errno;
			fprintf(stderr, "%s: cannot create: %s\n", text_show(a->pos[1]), strerror(errno));
			if (fd >= 0) {
				close(fd);
				unlink(a->pos[1]);
			}
			disk_close(src);
			return cli_exit_code(rc);
		}
		close(fd);
	} else if ((rc = disk_create(a->pos[1], &o))) {
		disk_close(src);
		return cli_exit_code(rc);
	}
	/* The new file is what --to says, whatever its name. */
	rc = disk_open(a->pos[1], disk_format_flag(fmt), &dst);
	if (!rc) {
		/* Fixed targets get every byte written; sparse ones skip zeros. */
		rc = copy_data(src, dst, dst->type != DISK_TYPE_FIXED || !strcmp(fmt, "raw"), "Converting");
		disk_close(dst);
	}
	disk_close(src);
	if (rc)
		unlink(a->pos[1]);
	return rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

/* --- resize ------------------------------------------------------------------------------------------ */

static int disk_resize(struct disk *d, uint64_t size)
{
	if (!strcmp(d->ops->format, "vhdx"))
		return vhdx_resize(d, size);
	if (!strcmp(d->ops->format, "raw")) {
		if (size < d->size) {
			fprintf(stderr, "%s: shrinking is not supported\n", text_show(d->path));
			return -EINVAL;
		}
		if (ftruncate(d->fd, (off_t)size) || fsync(d->fd)) {
			int e = errno;
			fprintf(stderr, "%s: cannot resize: %s\n", text_show(d->path), strerror(e));
			return -e;
		}
		d->size = size;
		return 0;
	}
	if (!strcmp(d->ops->format, "vhd"))
		return vhd_resize(d, size);
	fprintf(stderr, "%s: resizing %s images is not supported; convert it to VHDX first\n", text_show(d->path),
		d->ops->format);
	return -EOPNOTSUPP;
}

static int cmd_resize(struct args *a)
{
	int u = args_want(a, "resize", 1, "PATH");
	if (u >= 0)
		return u;
	if (!a->size) {
		fprintf(stderr, "gen2vm vhd resize: %s\n", a->size_given ? "--size must be more than 0" : "--size SIZE is required");
		return CLI_EXIT_USAGE;
	}
	struct disk *d;
	int rc = disk_open(a->pos[0], 0, &d);
	if (rc)
		return cli_exit_code(rc);
	rc = disk_resize(d, a->size);
	if (!rc)
		rc = d->ops->flush(d);
	disk_close(d);
	return cli_exit_code(rc);
}

/* --- merge -------------------------------------------------------------------------------------------- */

static bool same_file(const char *a, const char *b)
{
	struct stat x, y;
	return !stat(a, &x) && !stat(b, &y) && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

static int cmd_merge(struct args *a)
{
	int u = args_want(a, "merge", 1, "CHILD");
	if (u >= 0)
		return u;
	struct disk *child, *target = NULL;
	/* The chain is opened without locks (the target gets a write lock below, which our own
	 * read lock would conflict with); the child gets a read lock so no VM writes it meanwhile. */
	int r = disk_open(a->pos[0], DISK_NOLOCK, &child);
	if (r)
		return cli_exit_code(r);
	int rc = CLI_EXIT_FAILED;
	if ((r = disk_lock(child->path, child->fd, false))) {
		rc = cli_exit_code(r);
		goto out;
	}
	if (!child->parent) {
		fprintf(stderr, "%s: not a differencing disk, nothing to merge\n", text_show(child->path));
		rc = CLI_EXIT_USAGE;
		goto out;
	}
	struct disk *t = child->parent;
	if (a->into) {
		while (t && !same_file(t->path, a->into))
			t = t->parent;
		if (!t) {
			fprintf(stderr, "%s: %s is not in its parent chain\n", text_show(child->path), text_show(a->into));
			rc = CLI_EXIT_USAGE;
			goto out;
		}
	}
	if ((r = disk_open(t->path, DISK_KEEP_LINKAGE, &target)) ||
	    (target->size < child->size && (r = disk_resize(target, child->size)))) {
		rc = cli_exit_code(r);
		goto out;
	}
	uint64_t step = UINT64_MAX;
	for (struct disk *l = child; l != t; l = l->parent)
		if (l->block_size && l->block_size < step)
			step = l->block_size;
	if (step == UINT64_MAX)
		step = MiB;
	uint8_t *buf = malloc(step);
	if (!buf)
		goto out;
	struct progress p;
	progress_init(&p, "Merging");
	int err = 0;
	for (uint64_t off = 0; off < child->size && !err; off += step) {
		uint64_t len = child->size - off < step ? child->size - off : step;
		bool need = false;
		for (struct disk *l = child; l != t && !need && !err; l = l->parent) {
			for (uint64_t o = off; o < off + len && o < l->size;) {
				struct disk_extent e;
				uint64_t n = off + len - o;
				if (n > l->size - o)
					n = l->size - o;
				if ((err = disk_block_status(l, o, n, &e)))
					break;
				if (e.kind != DISK_EXT_PARENT) {
					need = true;
					break;
				}
				o += e.len;
			}
		}
		if (!need || err)
			continue;
		if ((err = disk_pread(child, buf, len, off))) {
			fprintf(stderr, "%s: read failed at %llu: %s\n", child->path,
				(unsigned long long)off, strerror(-err));
			break;
		}
		struct disk_extent te;
		if (disk_all_zero(buf, len) && !disk_block_status(target, off, len, &te) &&
		    te.kind == DISK_EXT_ZERO && te.len == len)
			continue;
		if ((err = disk_pwrite(target, buf, len, off)))
			fprintf(stderr, "%s: write failed at %llu: %s\n", target->path,
				(unsigned long long)off, strerror(-err));
		progress_cb(&p, off + len, child->size);
	}
	progress_done(&p);
	free(buf);
	if (!err)
		err = target->ops->flush(target);
	if (err)
		goto out;
	/* The merged layers are gone: what they held now lives in the target. */
	disk_close(target);
	target = NULL;
	for (struct disk *l = child; l != t; l = l->parent) {
		if (unlink(l->path))
			fprintf(stderr, "%s: merged, but cannot remove it: %s\n", l->path, strerror(errno));
	}
	rc = CLI_EXIT_OK;
out:
	disk_close(target);
	disk_close(child);
	return rc;
}

/* --- compact ----------------------------------------------------------------------------------------- */

static void human(uint64_t b, char out[32])
{
	if (b >= 10 * MiB)
		snprintf(out, 32, "%.1f MiB", (double)b / (double)MiB);
	else
		snprintf(out, 32, "%llu bytes", (unsigned long long)b);
}

static int cmd_compact(struct args *a)
{
	int u = args_want(a, "compact", 1, "PATH");
	if (u >= 0)
		return u;
	struct disk *d;
	/* Compacting does not change what the disk reads: keep DataWriteGuid, so that differencing
	 * children of this image still recognise their parent. The write lock refuses an image in
	 * use ("in use by ..."). */
	int r = disk_open(a->pos[0], DISK_KEEP_LINKAGE, &d);
	if (r)
		return cli_exit_code(r);
	if (!d->ops->release || !d->block_size || d->type == DISK_TYPE_FIXED) {
		printf("%s: %s %s disk, nothing to compact\n", text_show(d->path), type_name(d), d->ops->format);
		disk_close(d);
		return CLI_EXIT_OK;
	}
	bool diff = d->type == DISK_TYPE_DIFFERENCING;
	struct progress p;
	progress_init(&p, "Compacting");
	struct disk_compact_stats st;
	int rc = disk_compact(d, progress_cb, &p, &st);
	progress_done(&p);
	if (!rc)
		rc = d->ops->flush(d);
	disk_close(d);
	if (rc) {
		fprintf(stderr, "%s: compact failed: %s (the image is still consistent; run the command "
			"again to finish)\n", text_show(a->pos[0]), strerror(-rc));
		return CLI_EXIT_FAILED;
	}
	char sb[32], sa[32], ab[32], aa[32];
	human(st.size_before, sb);
	human(st.size_after, sa);
	human(st.alloc_before, ab);
	human(st.alloc_after, aa);
	char parent[64] = "";
	if (diff)
		snprintf(parent, sizeof(parent), ", %llu blocks that read as the parent",
			 (unsigned long long)st.parent_blocks);
	printf("%s: released %llu zero blocks%s, moved %llu blocks; file size %s -> %s "
	       "(allocated %s -> %s)\n", text_show(a->pos[0]), (unsigned long long)st.zero_blocks, parent,
	       (unsigned long long)st.moved_blocks, sb, sa, ab, aa);
	return CLI_EXIT_OK;
}

static int cmd_repair(struct args *a)
{
	int u = args_want(a, "repair", 1, "PATH");
	if (u >= 0)
		return u;
	struct disk *d;
	/* Opening read-write replays a pending VHDX log, after checking that what it leaves is valid. */
	int rc = disk_open(a->pos[0], 0, &d);
	if (rc)
		return cli_exit_code(rc);
	const char *done = vhdx_replay_summary(d);
	if (done)
		printf("%s: replayed its log (%s); consistent\n", text_show(a->pos[0]), done);
	else
		printf("%s: consistent (nothing to replay)\n", text_show(a->pos[0]));
	disk_close(d);
	return CLI_EXIT_OK;
}

/* --- crash-test helper (hidden) --------------------------------------------------------------------- */

#include "cli/vhd_selftest.h"

int cli_vhd_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage();
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	const char *sub = argv[1];
	struct args a;
	int rc = args_parse(argc - 1, argv + 1, &a);
	if (rc >= 0)
		return rc;
	if (!strcmp(sub, "new"))
		return cmd_new(&a);
	if (!strcmp(sub, "inspect"))
		return cmd_inspect(&a);
	if (!strcmp(sub, "convert"))
		return cmd_convert(&a);
	if (!strcmp(sub, "resize"))
		return cmd_resize(&a);
	if (!strcmp(sub, "merge"))
		return cmd_merge(&a);
	if (!strcmp(sub, "compact"))
		return cmd_compact(&a);
	if (!strcmp(sub, "repair"))
		return cmd_repair(&a);
	if (!strcmp(sub, "selftest-writer") || !strcmp(sub, "selftest-verify")) {
		if (a.npos != 1 || !a.journal) {
			fprintf(stderr, "usage: gen2vm vhd %s PATH --seed N --journal FILE [--ops N]\n", sub);
			return CLI_EXIT_USAGE;
		}
		if (!strcmp(sub, "selftest-writer"))
			return vhd_selftest_writer(a.pos[0], a.seed, a.journal, a.ops ? a.ops : 1000000);
		return vhd_selftest_verify(a.pos[0], a.seed, a.journal);
	}
	fprintf(stderr, "gen2vm vhd: unknown command '%s' (new, inspect, convert, resize, merge, compact, repair; see "
		"gen2vm vhd --help)\n", text_show(sub));
	return CLI_EXIT_USAGE;
}
