/*
 * dhtfs's FUSE binding: a small N-API addon over Debian's libfuse 3 (high-level, path-based API).
 *
 * libfuse runs its multi-threaded loop on native threads. Each request is packed into a `req_t`, handed
 * to the JavaScript thread through one threadsafe function, and the native thread waits on the
 * request's semaphore until JavaScript answers with `reply()` (but for release, which the kernel does not
 * wait for: answered at once, handed over all the same). The event loop stays free: many requests can be
 * in flight. Read and write buffers reach JavaScript as external Buffers (no copy).
 *
 * JavaScript sees one dispatcher: handler(req, op, path, path2, nums, buf) where `nums` is an array of
 * numbers (mode, flags, offsets, sizes, caller uid/gid/pid, times...) whose meaning depends on `op`.
 * It answers with reply(req, result, extra): result >= 0 or -errno; `extra` carries a stat array
 * (getattr), names (readdir), bytes (readlink, getxattr, listxattr) or statvfs numbers (statfs).
 */
#define FUSE_USE_VERSION 312
#include <fuse3/fuse.h>
#include <node_api.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdint.h>
#include <time.h>

enum op {
  OP_GETATTR, OP_READLINK, OP_MKDIR, OP_UNLINK, OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_CHMOD,
  OP_CHOWN, OP_TRUNCATE, OP_OPEN, OP_READ, OP_WRITE, OP_STATFS, OP_FLUSH, OP_RELEASE, OP_FSYNC,
  OP_SETXATTR, OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR, OP_READDIR, OP_CREATE, OP_UTIMENS, OP_MKNOD,
  OP_COUNT
};
static const char *op_names[OP_COUNT] = {
  "getattr", "readlink", "mkdir", "unlink", "rmdir", "symlink", "rename", "link", "chmod",
  "chown", "truncate", "open", "read", "write", "statfs", "flush", "release", "fsync",
  "setxattr", "getxattr", "listxattr", "removexattr", "readdir", "create", "utimens", "mknod",
};

#define MAX_NUMS 8

typedef struct req {
  enum op op;
  const char *path, *path2;
  double nums[MAX_NUMS];
  int n;
  char *buf;          /* read: where data goes; write, setxattr: the data */
  size_t size;        /* its size */
  struct stat *st;
  struct statvfs *sv;
  void *dirbuf;
  fuse_fill_dir_t filler;
  struct fuse_file_info *fi;
  int result;
  int detached;       /* answered to the kernel already: JavaScript's reply only frees it (release) */
  sem_t done;
} req_t;

typedef struct mount {
  struct fuse *fuse;
  pthread_t thread;
  napi_threadsafe_function tsfn;
  int running;
  unsigned max_io;
  double entry_timeout;
  int unmounted; /* set by whichever of unmount() and the loop's end unmounts first */
} mount_t;

static void unmount_once(mount_t *m) {
  if (!__atomic_exchange_n(&m->unmounted, 1, __ATOMIC_SEQ_CST)) fuse_unmount(m->fuse);
}

/* One mount per process is what dhtfs needs; kept global so the C callbacks reach it. */
static mount_t *current = NULL;

static int dispatch(req_t *r) {
  struct fuse_context *ctx = fuse_get_context();
  /* The caller: the last three numbers of every request. */
  r->nums[MAX_NUMS - 3] = ctx ? ctx->uid : 0;
  r->nums[MAX_NUMS - 2] = ctx ? ctx->gid : 0;
  r->nums[MAX_NUMS - 1] = ctx ? ctx->pid : 0;
  if (!current || !current->running) return -ENOTCONN;
  sem_init(&r->done, 0, 0);
  if (napi_call_threadsafe_function(current->tsfn, r, napi_tsfn_blocking) != napi_ok) {
    sem_destroy(&r->done);
    return -ENOTCONN;
  }
  while (sem_wait(&r->done) != 0 && errno == EINTR) {
  }
  sem_destroy(&r->done);
  return r->result;
}

#define REQ(o) req_t r; memset(&r, 0, sizeof r); r.op = (o)

/*
 * Directories' attributes as the JS side keeps them (FuseMount.keepDir): with no attribute caching in the
 * kernel, every permission check on a path's directories asks for them, several times per create. A
 * getattr by path is answered from here, without a trip to JavaScript, until the entry's time is up or
 * JavaScript drops it. Direct-mapped: a colliding path takes the slot.
 */
#define DCACHE_SLOTS 4096
typedef struct {
  char *path;
  struct stat st;
  struct timespec until;
} dattr_t;
static dattr_t dcache[DCACHE_SLOTS];
static pthread_mutex_t dcache_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned dcache_slot(const char *p) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
  return h % DCACHE_SLOTS;
}
static int before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}
/* The monotonic time `ns` from now. */
static struct timespec after_ns(long long ns) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  ns += t.tv_nsec;
  t.tv_sec += ns / 1000000000LL;
  t.tv_nsec = ns % 1000000000LL;
  return t;
}
static int dcache_get(const char *p, struct stat *st) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  int hit = 0;
  pthread_mutex_lock(&dcache_lock);
  dattr_t *e = &dcache[dcache_slot(p)];
  if (e->path && strcmp(e->path, p) == 0 && before(&now, &e->until)) {
    *st = e->st;
    hit = 1;
  }
  pthread_mutex_unlock(&dcache_lock);
  return hit;
}
static void dcache_drop_locked(dattr_t *e) {
  free(e->path);
  e->path = NULL;
}

/*
 * A new file's attributes from its create, for the getattrs libfuse (by handle, inside the create) and
 * the kernel (by path, right after it) make: each answered once, within 20 ms, and never after a write,
 * truncate or release of the file or any change to the namespace. Slots by handle number.
 */
#define FRESH_SLOTS 64
#define FRESH_NS (20 * 1000000L)
typedef struct {
  uint64_t fh;
  char *path;
  struct stat st;
  struct timespec until;
  int fh_used, path_used;
} fresh_t;
static fresh_t fresh[FRESH_SLOTS];
static pthread_mutex_t fresh_lock = PTHREAD_MUTEX_INITIALIZER;

static void fresh_free_locked(fresh_t *e) {
  free(e->path);
  e->path = NULL;
}
static void fresh_put(uint64_t fh, const char *path, const struct stat *st) {
  char *copy = strdup(path);
  if (!copy) return;
  struct timespec until = after_ns(FRESH_NS);
  pthread_mutex_lock(&fresh_lock);
  fresh_t *e = &fresh[fh % FRESH_SLOTS];
  fresh_free_locked(e);
  e->fh = fh;
  e->path = copy;
  e->st = *st;
  e->until = until;
  e->fh_used = e->path_used = 0;
  pthread_mutex_unlock(&fresh_lock);
}
/* Answers a getattr by handle (fi) from the handle's slot, or by path (fi NULL) from any slot. */
static int fresh_take(const struct fuse_file_info *fi, const char *path, struct stat *st) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  fresh_t *hit = NULL;
  pthread_mutex_lock(&fresh_lock);
  if (fi) {
    fresh_t *e = &fresh[fi->fh % FRESH_SLOTS];
    if (e->path && before(&now, &e->until) && e->fh == fi->fh && !e->fh_used) (hit = e)->fh_used = 1;
  } else {
    for (int i = 0; i < FRESH_SLOTS && !hit; i++) {
      fresh_t *e = &fresh[i];
      if (e->path && before(&now, &e->until) && !e->path_used && strcmp(e->path, path) == 0) (hit = e)->path_used = 1;
    }
  }
  if (hit) *st = hit->st;
  pthread_mutex_unlock(&fresh_lock);
  return hit != NULL;
}
static void fresh_drop(const struct fuse_file_info *fi) {
  pthread_mutex_lock(&fresh_lock);
  if (fi) {
    fresh_t *e = &fresh[fi->fh % FRESH_SLOTS];
    if (e->path && e->fh == fi->fh) fresh_free_locked(e);
  } else {
    for (int i = 0; i < FRESH_SLOTS; i++) fresh_free_locked(&fresh[i]);
  }
  pthread_mutex_unlock(&fresh_lock);
}

static int d_getattr(const char *p, struct stat *st, struct fuse_file_info *fi) {
  if (fresh_take(fi, p, st)) return 0;
  if (!fi && dcache_get(p, st)) return 0;
  REQ(OP_GETATTR); r.path = p; r.st = st; r.fi = fi;
  r.nums[0] = fi ? (double)fi->fh : -1;
  return dispatch(&r);
}
static int d_readlink(const char *p, char *buf, size_t size) {
  REQ(OP_READLINK); r.path = p; r.buf = buf; r.size = size;
  return dispatch(&r);
}
static int d_mkdir(const char *p, mode_t mode) {
  fresh_drop(NULL);
  REQ(OP_MKDIR); r.path = p; r.nums[0] = mode;
  return dispatch(&r);
}
static int d_mknod(const char *p, mode_t mode, dev_t dev) {
  fresh_drop(NULL);
  REQ(OP_MKNOD); r.path = p; r.nums[0] = mode; r.nums[1] = (double)dev;
  return dispatch(&r);
}
static int d_unlink(const char *p) { fresh_drop(NULL); REQ(OP_UNLINK); r.path = p; return dispatch(&r); }
static int d_rmdir(const char *p) { fresh_drop(NULL); REQ(OP_RMDIR); r.path = p; return dispatch(&r); }
static int d_symlink(const char *target, const char *p) {
  fresh_drop(NULL);
  REQ(OP_SYMLINK); r.path = p; r.path2 = target;
  return dispatch(&r);
}
static int d_rename(const char *from, const char *to, unsigned int flags) {
  fresh_drop(NULL);
  REQ(OP_RENAME); r.path = from; r.path2 = to; r.nums[0] = flags;
  return dispatch(&r);
}
static int d_link(const char *from, const char *to) {
  fresh_drop(NULL);
  REQ(OP_LINK); r.path = from; r.path2 = to;
  return dispatch(&r);
}
static int d_chmod(const char *p, mode_t mode, struct fuse_file_info *fi) {
  fresh_drop(NULL);
  REQ(OP_CHMOD); r.path = p; r.nums[0] = mode; r.nums[1] = fi ? (double)fi->fh : -1;
  return dispatch(&r);
}
static int d_chown(const char *p, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
  fresh_drop(NULL);
  REQ(OP_CHOWN); r.path = p; r.nums[0] = uid == (uid_t)-1 ? -1.0 : (double)uid; r.nums[1] = gid == (gid_t)-1 ? -1.0 : (double)gid;
  r.nums[2] = fi ? (double)fi->fh : -1;
  return dispatch(&r);
}
static int d_truncate(const char *p, off_t size, struct fuse_file_info *fi) {
  fresh_drop(NULL);
  REQ(OP_TRUNCATE); r.path = p; r.nums[0] = (double)size; r.nums[1] = fi ? (double)fi->fh : -1;
  return dispatch(&r);
}
static int d_open(const char *p, struct fuse_file_info *fi) {
  REQ(OP_OPEN); r.path = p; r.fi = fi; r.nums[0] = fi->flags;
  return dispatch(&r);
}
static int d_create(const char *p, mode_t mode, struct fuse_file_info *fi) {
  REQ(OP_CREATE); r.path = p; r.fi = fi; r.nums[0] = fi->flags; r.nums[1] = mode;
  return dispatch(&r);
}
static int d_read(const char *p, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  REQ(OP_READ); r.path = p; r.buf = buf; r.size = size; r.nums[0] = (double)fi->fh; r.nums[1] = (double)off;
  return dispatch(&r);
}
static int d_write(const char *p, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  fresh_drop(fi);
  REQ(OP_WRITE); r.path = p; r.buf = (char *)buf; r.size = size; r.nums[0] = (double)fi->fh; r.nums[1] = (double)off;
  return dispatch(&r);
}
static int d_statfs(const char *p, struct statvfs *sv) {
  REQ(OP_STATFS); r.path = p; r.sv = sv;
  return dispatch(&r);
}
/* flush has nothing to do (writes reach the brick before they return; fsync is its own request): there is
 * no flush operation, so libfuse answers the first FLUSH with ENOSYS and the kernel sends no more (one
 * round trip less per close(2)). */

/* The kernel's and the security modules' xattrs (security.capability is asked before every write) are not
 * stored by the volume: answered here, without a trip to the JS thread. ACLs and security labels are not
 * supported (cp -a and rsync -X skip them on ENOTSUP). */
static int foreign_xattr(const char *name) {
  return strncmp(name, "security.", 9) == 0 || strncmp(name, "system.", 7) == 0;
}
/* release: the kernel does not wait for its answer (nor does the program, whose close(2) has returned),
 * so the native thread answers at once and the request goes to JavaScript on its own: the handle is
 * closed there a moment later, and the native thread is free without waiting for that. */
static int d_release(const char *p, struct fuse_file_info *fi) {
  (void)p;
  fresh_drop(fi);
  if (!current || !current->running) return 0;
  req_t *r = calloc(1, sizeof *r);
  if (!r) return 0;
  r->op = OP_RELEASE;
  r->detached = 1;
  r->nums[0] = (double)fi->fh;
  if (napi_call_threadsafe_function(current->tsfn, r, napi_tsfn_blocking) != napi_ok) free(r);
  return 0;
}
static int d_fsync(const char *p, int datasync, struct fuse_file_info *fi) {
  REQ(OP_FSYNC); r.path = p; r.nums[0] = (double)fi->fh; r.nums[1] = datasync;
  return dispatch(&r);
}
static int d_setxattr(const char *p, const char *name, const char *value, size_t size, int flags) {
  fresh_drop(NULL);
  if (foreign_xattr(name)) return -EOPNOTSUPP;
  REQ(OP_SETXATTR); r.path = p; r.path2 = name; r.buf = (char *)value; r.size = size; r.nums[0] = flags;
  return dispatch(&r);
}
static int d_getxattr(const char *p, const char *name, char *value, size_t size) {
  if (foreign_xattr(name)) return -ENODATA;
  REQ(OP_GETXATTR); r.path = p; r.path2 = name; r.buf = value; r.size = size;
  return dispatch(&r);
}
static int d_listxattr(const char *p, char *list, size_t size) {
  REQ(OP_LISTXATTR); r.path = p; r.buf = list; r.size = size;
  return dispatch(&r);
}
static int d_removexattr(const char *p, const char *name) {
  fresh_drop(NULL);
  if (foreign_xattr(name)) return -ENODATA;
  REQ(OP_REMOVEXATTR); r.path = p; r.path2 = name;
  return dispatch(&r);
}
static int d_readdir(const char *p, void *dirbuf, fuse_fill_dir_t filler, off_t off, struct fuse_file_info *fi,
                     enum fuse_readdir_flags flags) {
  (void)off; (void)fi; (void)flags;
  REQ(OP_READDIR); r.path = p; r.dirbuf = dirbuf; r.filler = filler;
  return dispatch(&r);
}
static int d_utimens(const char *p, const struct timespec tv[2], struct fuse_file_info *fi) {
  fresh_drop(NULL);
  REQ(OP_UTIMENS); r.path = p;
  /* seconds and nanoseconds of atime and mtime; nanoseconds carry UTIME_NOW / UTIME_OMIT. */
  r.nums[0] = (double)tv[0].tv_sec; r.nums[1] = (double)tv[0].tv_nsec;
  r.nums[2] = (double)tv[1].tv_sec; r.nums[3] = (double)tv[1].tv_nsec;
  r.nums[4] = fi ? (double)fi->fh : -1;
  return dispatch(&r);
}

static void *d_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  /* Names are kept entry_timeout (a migration never changes one); attributes and negative entries are not
   * cached by the kernel: another client or a migration may change them. */
  cfg->entry_timeout = current ? current->entry_timeout : 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  cfg->use_ino = 1; /* inode numbers from the file's gfid: hard links share one */
  cfg->hard_remove = 1; /* unlink of an open file: the daemon's handle keeps the file */
  cfg->nullpath_ok = 0;
  if (current) {
    conn->max_write = current->max_io;
    conn->max_read = current->max_io;
    conn->max_readahead = current->max_io;
  }
  return NULL;
}

static const struct fuse_operations ops = {
  .getattr = d_getattr, .readlink = d_readlink, .mknod = d_mknod, .mkdir = d_mkdir, .unlink = d_unlink,
  .rmdir = d_rmdir, .symlink = d_symlink, .rename = d_rename, .link = d_link, .chmod = d_chmod,
  .chown = d_chown, .truncate = d_truncate, .open = d_open, .read = d_read, .write = d_write,
  .statfs = d_statfs, .release = d_release, .fsync = d_fsync, .setxattr = d_setxattr,
  .getxattr = d_getxattr, .listxattr = d_listxattr, .removexattr = d_removexattr, .readdir = d_readdir,
  .init = d_init, .create = d_create, .utimens = d_utimens,
};

/* --- JavaScript side -------------------------------------------------------------------------------- */

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, #call " failed"); return NULL; } } while (0)

static napi_value str_or_null(napi_env env, const char *s) {
  napi_value v;
  if (s) napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  return v;
}

static void noop_finalize(napi_env env, void *data, void *hint) { (void)env; (void)data; (void)hint; }

/* Runs on the JS thread: calls handler(req, op, path, path2, nums, buf). */
static void call_js(napi_env env, napi_value handler, void *context, void *data) {
  (void)context;
  req_t *r = data;
  if (!r) {
    /* The loop ended: handler(null, "ended", ...) tells the JS side the file system is unmounted. */
    if (!env) return;
    napi_value argv[6], undefined;
    napi_get_null(env, &argv[0]);
    napi_create_string_utf8(env, "ended", NAPI_AUTO_LENGTH, &argv[1]);
    napi_get_null(env, &argv[2]);
    napi_get_null(env, &argv[3]);
    napi_create_array_with_length(env, 0, &argv[4]);
    napi_get_null(env, &argv[5]);
    napi_get_undefined(env, &undefined);
    if (napi_call_function(env, undefined, handler, 6, argv, NULL) != napi_ok) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
    }
    return;
  }
  if (!env) {
    if (r->detached) free(r);
    else { r->result = -ENOTCONN; sem_post(&r->done); }
    return;
  }
  napi_value argv[6], undefined, nums;
  napi_create_external(env, r, NULL, NULL, &argv[0]);
  napi_create_string_utf8(env, op_names[r->op], NAPI_AUTO_LENGTH, &argv[1]);
  argv[2] = str_or_null(env, r->path);
  argv[3] = str_or_null(env, r->path2);
  napi_create_array_with_length(env, MAX_NUMS, &nums);
  for (int i = 0; i < MAX_NUMS; i++) {
    napi_value n;
    napi_create_double(env, r->nums[i], &n);
    napi_set_element(env, nums, i, n);
  }
  argv[4] = nums;
  if (r->buf && r->size > 0 && r->op != OP_READLINK) {
    napi_create_external_buffer(env, r->size, r->buf, noop_finalize, NULL, &argv[5]);
  } else {
    napi_get_null(env, &argv[5]);
  }
  napi_get_undefined(env, &undefined);
  if (napi_call_function(env, undefined, handler, 6, argv, NULL) != napi_ok) {
    /* The handler threw: answer EIO rather than leave the kernel waiting. */
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    if (r->detached) { free(r); return; }
    r->result = -EIO;
    sem_post(&r->done);
  }
}

static double num_at(napi_env env, napi_value arr, uint32_t i) {
  napi_value v;
  double d = 0;
  if (napi_get_element(env, arr, i, &v) == napi_ok) napi_get_value_double(env, v, &d);
  return d;
}

/* [mode, nlink, uid, gid, size, blocks, atime s, ns, mtime s, ns, ctime s, ns, ino, rdev], from a[at] on */
static void stat_from(napi_env env, napi_value a, uint32_t at, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_mode = (mode_t)num_at(env, a, at + 0);
  st->st_nlink = (nlink_t)num_at(env, a, at + 1);
  st->st_uid = (uid_t)num_at(env, a, at + 2);
  st->st_gid = (gid_t)num_at(env, a, at + 3);
  st->st_size = (off_t)num_at(env, a, at + 4);
  st->st_blocks = (blkcnt_t)num_at(env, a, at + 5);
  st->st_atim.tv_sec = (time_t)num_at(env, a, at + 6);
  st->st_atim.tv_nsec = (long)num_at(env, a, at + 7);
  st->st_mtim.tv_sec = (time_t)num_at(env, a, at + 8);
  st->st_mtim.tv_nsec = (long)num_at(env, a, at + 9);
  st->st_ctim.tv_sec = (time_t)num_at(env, a, at + 10);
  st->st_ctim.tv_nsec = (long)num_at(env, a, at + 11);
  st->st_ino = (ino_t)num_at(env, a, at + 12);
  st->st_rdev = (dev_t)num_at(env, a, at + 13);
  st->st_blksize = 1024 * 1024;
}

/* keepDir(path, stat array, ms): getattr of `path` is answered with these attributes for `ms`. */
static napi_value js_keep_dir(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t len = 0;
  double ms = 0;
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) return NULL;
  CHECK(napi_get_value_double(env, argv[2], &ms));
  struct stat st;
  stat_from(env, argv[1], 0, &st);
  struct timespec until = after_ns((long long)(ms * 1e6));
  char *copy = strdup(path);
  if (!copy) return NULL;
  pthread_mutex_lock(&dcache_lock);
  dattr_t *e = &dcache[dcache_slot(path)];
  dcache_drop_locked(e);
  e->path = copy;
  e->st = st;
  e->until = until;
  pthread_mutex_unlock(&dcache_lock);
  return NULL;
}

/* dropDir(path) drops what keepDir kept for `path`; dropDir() drops everything. */
static napi_value js_drop_dir(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t len = 0;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  pthread_mutex_lock(&dcache_lock);
  if (t != napi_string) {
    for (int i = 0; i < DCACHE_SLOTS; i++) dcache_drop_locked(&dcache[i]);
  } else if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) == napi_ok) {
    dattr_t *e = &dcache[dcache_slot(path)];
    if (e->path && strcmp(e->path, path) == 0) dcache_drop_locked(e);
  }
  pthread_mutex_unlock(&dcache_lock);
  return NULL;
}

/* reply(req, result, extra) */
static napi_value js_reply(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  req_t *r;
  CHECK(napi_get_value_external(env, argv[0], (void **)&r));
  int32_t result;
  CHECK(napi_get_value_int32(env, argv[1], &result));
  napi_valuetype t = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &t);
  if (result >= 0 && t == napi_object) {
    napi_value extra = argv[2];
    bool isbuf = false, isarr = false;
    napi_is_buffer(env, extra, &isbuf);
    napi_is_array(env, extra, &isarr);
    if (r->op == OP_GETATTR && isarr) {
      stat_from(env, extra, 0, r->st);
    } else if (r->op == OP_STATFS && isarr) {
      /* [bsize, blocks, bfree, bavail, files, ffree, namemax] */
      struct statvfs *sv = r->sv;
      memset(sv, 0, sizeof *sv);
      sv->f_bsize = sv->f_frsize = (unsigned long)num_at(env, extra, 0);
      sv->f_blocks = (fsblkcnt_t)num_at(env, extra, 1);
      sv->f_bfree = (fsblkcnt_t)num_at(env, extra, 2);
      sv->f_bavail = (fsblkcnt_t)num_at(env, extra, 3);
      sv->f_files = (fsfilcnt_t)num_at(env, extra, 4);
      sv->f_ffree = sv->f_favail = (fsfilcnt_t)num_at(env, extra, 5);
      sv->f_namemax = (unsigned long)num_at(env, extra, 6);
    } else if (r->op == OP_READDIR && isarr) {
      uint32_t n = 0;
      napi_get_array_length(env, extra, &n);
      for (uint32_t i = 0; i < n; i++) {
        napi_value v;
        char name[1024];
        size_t len = 0;
        napi_get_element(env, extra, i, &v);
        /* A name, or [name, mode, ino]: the type and inode number go with the entry (d_type), so that
         * programs listing a directory need not stat every entry to know what it is. */
        bool entry = false;
        napi_is_array(env, v, &entry);
        napi_value nv = v;
        struct stat st, *stp = NULL;
        if (entry) {
          napi_get_element(env, v, 0, &nv);
          memset(&st, 0, sizeof st);
          st.st_mode = (mode_t)num_at(env, v, 1);
          st.st_ino = (ino_t)num_at(env, v, 2);
          stp = &st;
        }
        if (napi_get_value_string_utf8(env, nv, name, sizeof name, &len) != napi_ok) continue;
        if (r->filler(r->dirbuf, name, stp, 0, 0)) break;
      }
    } else if ((r->op == OP_OPEN || r->op == OP_CREATE) && isarr) {
      /* [fh, direct_io] or, for a create, [fh, direct_io, the new file's attributes...] */
      r->fi->fh = (uint64_t)num_at(env, extra, 0);
      r->fi->direct_io = num_at(env, extra, 1) != 0;
      r->fi->keep_cache = 0;
      uint32_t n = 0;
      napi_get_array_length(env, extra, &n);
      if (r->op == OP_CREATE && n >= 16) {
        struct stat st;
        stat_from(env, extra, 2, &st);
        fresh_put(r->fi->fh, r->path, &st);
      }
    } else if (isbuf && (r->op == OP_READLINK || r->op == OP_GETXATTR || r->op == OP_LISTXATTR)) {
      void *data;
      size_t len;
      napi_get_buffer_info(env, extra, &data, &len);
      if (r->op == OP_READLINK) {
        size_t n = len < r->size - 1 ? len : r->size - 1;
        memcpy(r->buf, data, n);
        r->buf[n] = 0;
        result = 0;
      } else if (r->size == 0) {
        result = (int32_t)len; /* the size asked for */
      } else if (len > r->size) {
        result = -ERANGE;
      } else {
        memcpy(r->buf, data, len);
        result = (int32_t)len;
      }
    }
  }
  if (r->detached) {
    free(r);
    return NULL;
  }
  r->result = result;
  sem_post(&r->done);
  return NULL;
}

static void *loop_thread(void *arg) {
  mount_t *m = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, 16);
  fuse_loop_cfg_set_idle_threads(cfg, 16);
  fuse_loop_mt(m->fuse, cfg);
  fuse_loop_cfg_destroy(cfg);
  m->running = 0;
  unmount_once(m);
  /* Lets the JS side know the loop ended (an unmount from outside, or exit()), then lets it go. */
  napi_call_threadsafe_function(m->tsfn, NULL, napi_tsfn_blocking);
  napi_release_threadsafe_function(m->tsfn, napi_tsfn_release);
  return NULL;
}

/* mount(mountpoint, options: string[], maxIo: number, handler, entryTimeout: number) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (current) { napi_throw_error(env, "EBUSY", "already mounted"); return NULL; }
  char mnt[4096];
  size_t len;
  CHECK(napi_get_value_string_utf8(env, argv[0], mnt, sizeof mnt, &len));
  uint32_t nopts = 0;
  CHECK(napi_get_array_length(env, argv[1], &nopts));
  int32_t maxio = 1 << 20;
  napi_get_value_int32(env, argv[2], &maxio);
  char **fargv = calloc(nopts * 2 + 2, sizeof(char *));
  int fargc = 0;
  fargv[fargc++] = strdup("dhtfs");
  for (uint32_t i = 0; i < nopts; i++) {
    napi_value v;
    char buf[1024];
    napi_get_element(env, argv[1], i, &v);
    napi_get_value_string_utf8(env, v, buf, sizeof buf, &len);
    fargv[fargc++] = strdup("-o");
    fargv[fargc++] = strdup(buf);
  }
  struct fuse_args args = FUSE_ARGS_INIT(fargc, fargv);
  mount_t *m = calloc(1, sizeof *m);
  m->max_io = (unsigned)maxio;
  m->entry_timeout = 0;
  if (argc >= 5) napi_get_value_double(env, argv[4], &m->entry_timeout);
  napi_value name;
  napi_create_string_utf8(env, "dhtfs-fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &m->tsfn) != napi_ok) {
    free(m);
    napi_throw_error(env, NULL, "cannot create the request queue");
    return NULL;
  }
  current = m;
  m->fuse = fuse_new(&args, &ops, sizeof ops, NULL);
  fuse_opt_free_args(&args);
  for (int i = 0; i < fargc; i++) free(fargv[i]);
  free(fargv);
  if (!m->fuse) {
    current = NULL;
    napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort);
    free(m);
    napi_throw_error(env, "EINVAL", "fuse_new failed (bad mount options?)");
    return NULL;
  }
  if (fuse_mount(m->fuse, mnt) != 0) {
    fuse_destroy(m->fuse);
    current = NULL;
    napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort);
    free(m);
    napi_throw_error(env, "EIO", "fuse_mount failed (is /dev/fuse there, and the mount point an empty directory?)");
    return NULL;
  }
  m->running = 1;
  if (pthread_create(&m->thread, NULL, loop_thread, m) != 0) {
    fuse_unmount(m->fuse);
    fuse_destroy(m->fuse);
    current = NULL;
    napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort);
    free(m);
    napi_throw_error(env, NULL, "cannot start the FUSE loop thread");
    return NULL;
  }
  return NULL;
}

/* unmount(): ends the loop; the kernel mount goes when the loop thread unmounts. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  (void)info;
  mount_t *m = current;
  if (!m) return NULL;
  if (m->running) {
    fuse_exit(m->fuse);
    /* fuse_exit only sets a flag: unmounting wakes the threads blocked reading /dev/fuse. */
    unmount_once(m);
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
    {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL},
    {"reply", NULL, js_reply, NULL, NULL, NULL, napi_default, NULL},
    {"keepDir", NULL, js_keep_dir, NULL, NULL, NULL, napi_default, NULL},
    {"dropDir", NULL, js_drop_dir, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
