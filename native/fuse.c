/*
 * dhtfs's FUSE binding: a small N-API addon over Debian's libfuse 3 (low-level, inode-based API).
 *
 * libfuse runs its multi-threaded loop on native threads. The addon keeps the kernel's inodes (node ids)
 * as names under their parents, so that JavaScript sees paths as the volume has them. Each request is
 * packed into a `req_t`, handed to the JavaScript thread through one threadsafe function, and the native
 * thread waits on the request's semaphore until JavaScript answers with `reply()`; the native thread then
 * answers the kernel (a release, which the kernel does not wait for, is answered at once and handed over
 * all the same). The event loop stays free: many requests can be in flight. Read and write buffers reach
 * JavaScript as external Buffers (no copy). Handles given a local descriptor (see "local reads and
 * writes") have their reads, writes and getattrs answered here, on the native threads, without
 * JavaScript. The addon sets max_read itself (a spliced reply must fit a pipe).
 *
 * Attribute caching is per inode: a directory's attributes are kept by the kernel as long as names
 * (entryTimeout; a migration never changes a directory), a file's never (a migration, or another client,
 * may change its size at any time). So the permission checks on a path's directories cost no request.
 *
 * JavaScript sees one dispatcher: handler(req, op, path, path2, nums, buf) where `nums` is an array of
 * numbers (mode, flags, offsets, sizes, ...; the last three are the caller's uid, gid and pid) whose
 * meaning depends on `op`. It answers with reply(req, result, extra): result >= 0 or -errno; `extra`
 * carries a stat array (getattr, setattr and the operations that make a name), names (readdir), bytes
 * (readlink, getxattr, listxattr), statvfs numbers (statfs) or [fh, direct_io, stat...] (open, create).
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <fuse3/fuse_lowlevel.h>
#include "check.h"
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <sys/xattr.h>
#include <sys/uio.h>
#include <linux/fuse.h>
#include "byte_lock.h"

#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36) /* protocol 7.39, Linux 6.6; libfuse knows it from 3.16 */
#endif

enum op {
  OP_GETATTR, OP_READLINK, OP_MKDIR, OP_UNLINK, OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_SETATTR,
  OP_OPEN, OP_READ, OP_WRITE, OP_STATFS, OP_RELEASE, OP_FSYNC, OP_SETXATTR, OP_GETXATTR, OP_LISTXATTR,
  OP_REMOVEXATTR, OP_READDIR, OP_CREATE, OP_MKNOD, OP_FALLOCATE, OP_COUNT
};
static const char *op_names[OP_COUNT] = {
  "getattr", "readlink", "mkdir", "unlink", "rmdir", "symlink", "rename", "link", "setattr",
  "open", "read", "write", "statfs", "release", "fsync", "setxattr", "getxattr", "listxattr",
  "removexattr", "readdir", "create", "mknod", "fallocate",
};

#define MAX_NUMS 16

/* One directory listing, taken whole at the first readdir of an open directory: each entry's name and
 * attributes (`full`: all of them, for READDIRPLUS; else the type and inode number only: '.' and '..'). */
typedef struct {
  size_t n;
  char **names;
  struct stat *sts;
  unsigned char *full;
  int loaded;
} listing_t;

typedef struct req {
  enum op op;
  fuse_req_t fr;       /* the kernel's request, answered by finish() */
  int async;           /* finish() runs on the JavaScript thread, in reply(); else the native thread waits */
  int detached;        /* answered to the kernel already: JavaScript's reply only frees it (release) */
  int lookup;          /* OP_GETATTR for a lookup: answered with an entry */
  char *path, *path2;  /* owned */
  fuse_ino_t ino;      /* open: the inode opened */
  fuse_ino_t parent, newparent; /* the names an answer makes, removes or moves, */
  char *name, *newname;         /* owned */
  struct fuse_file_info fi;     /* open, create: the kernel's, copied */
  size_t xsize;        /* getxattr, listxattr: the size asked for (0: the size only) */
  double nums[MAX_NUMS];
  char *buf;           /* read: where data goes (ours); write, setxattr: the data (libfuse's) */
  size_t size;         /* its size */
  int result;
  /* what JavaScript answered */
  struct stat st;
  int has_st;
  struct statvfs sv;
  uint64_t fh;
  int direct_io;
  char *out;           /* readlink, getxattr, listxattr: owned */
  size_t out_len;
  listing_t *listing;  /* readdir: filled */
  sem_t done;
} req_t;

typedef struct mount {
  struct fuse_session *se;
  pthread_t thread;
  napi_threadsafe_function tsfn;
  int running;
  unsigned max_io;
  unsigned max_read;   /* max_io, or less where a pipe cannot hold a max_io reply (see splice_read_size) */
  int splice;          /* local reads' replies are spliced */
  int direct_mmap;     /* the kernel maps direct-I/O files MAP_SHARED (see "direct I/O and mmap") */
  double entry_timeout;
  int unmounted; /* set by whichever of unmount() and the loop's end unmounts first */
} mount_t;

static void unmount_once(mount_t *m) {
  if (!__atomic_exchange_n(&m->unmounted, 1, __ATOMIC_SEQ_CST)) fuse_session_unmount(m->se);
}

/* One mount per process is what dhtfs needs; kept global so the C callbacks reach it. */
static mount_t *current = NULL;

/* --- the kernel's inodes as names under their parents ------------------------------------------------ */

typedef struct node {
  uint64_t id, parent;
  char *name;          /* NULL once the name is gone (unlinked, renamed over): reachable by id only */
  uint64_t nlookup;
  struct node *next_id, *next_name;
} node_t;

#define BUCKETS 65536
static node_t *by_id[BUCKETS], *by_name[BUCKETS];
static uint64_t next_id = 2; /* 1 is the root */
static pthread_rwlock_t nodes_lock = PTHREAD_RWLOCK_INITIALIZER;

static unsigned name_slot(uint64_t parent, const char *name) {
  uint32_t h = 2166136261u ^ (uint32_t)parent; /* FNV-1a */
  for (; *name; name++) h = (h ^ (unsigned char)*name) * 16777619u;
  return h % BUCKETS;
}
static node_t *find_id(uint64_t id) {
  for (node_t *n = by_id[id % BUCKETS]; n; n = n->next_id)
    if (n->id == id) return n;
  return NULL;
}
static node_t *find_name(uint64_t parent, const char *name) {
  for (node_t *n = by_name[name_slot(parent, name)]; n; n = n->next_name)
    if (n->parent == parent && strcmp(n->name, name) == 0) return n;
  return NULL;
}
static void unlink_name(node_t *n) {
  if (!n->name) return;
  node_t **p = &by_name[name_slot(n->parent, n->name)];
  while (*p && *p != n) p = &(*p)->next_name;
  if (*p) *p = n->next_name;
  free(n->name);
  n->name = NULL;
}
static void link_name(node_t *n, uint64_t parent, const char *name) {
  n->parent = parent;
  n->name = strdup(name);
  unsigned s = name_slot(parent, name);
  n->next_name = by_name[s];
  by_name[s] = n;
}
/* The node of (parent, name), made if new; one more lookup of it. Returns its id (0: out of memory). */
static uint64_t remember(uint64_t parent, const char *name) {
  pthread_rwlock_wrlock(&nodes_lock);
  node_t *n = find_name(parent, name);
  if (!n && (n = calloc(1, sizeof *n))) {
    n->id = next_id++;
    n->next_id = by_id[n->id % BUCKETS];
    by_id[n->id % BUCKETS] = n;
    link_name(n, parent, name);
  }
  uint64_t id = 0;
  if (n) {
    n->nlookup++;
    id = n->id;
  }
  pthread_rwlock_unlock(&nodes_lock);
  return id;
}
static void forget_locked(uint64_t id, uint64_t nlookup) {
  node_t *n = find_id(id);
  if (!n || id == FUSE_ROOT_ID) return;
  n->nlookup = nlookup >= n->nlookup ? 0 : n->nlookup - nlookup;
  if (n->nlookup > 0) return;
  unlink_name(n);
  node_t **p = &by_id[id % BUCKETS];
  while (*p && *p != n) p = &(*p)->next_id;
  if (*p) *p = n->next_id;
  free(n);
}
/* The name (parent, name) is gone (unlink, rmdir): its node stays for the kernel's open files. */
static void drop_name(uint64_t parent, const char *name) {
  pthread_rwlock_wrlock(&nodes_lock);
  node_t *n = find_name(parent, name);
  if (n) unlink_name(n);
  pthread_rwlock_unlock(&nodes_lock);
}
static void move_name(uint64_t parent, const char *name, uint64_t newparent, const char *newname) {
  pthread_rwlock_wrlock(&nodes_lock);
  node_t *over = find_name(newparent, newname);
  if (over) unlink_name(over);
  node_t *n = find_name(parent, name);
  if (n) {
    unlink_name(n);
    link_name(n, newparent, newname);
  }
  pthread_rwlock_unlock(&nodes_lock);
}
/* RENAME_EXCHANGE: the nodes of (parent, name) and (newparent, newname) swap their names. */
static void swap_names(uint64_t parent, const char *name, uint64_t newparent, const char *newname) {
  pthread_rwlock_wrlock(&nodes_lock);
  node_t *a = find_name(parent, name);
  node_t *b = find_name(newparent, newname);
  if (a) unlink_name(a);
  if (b) unlink_name(b);
  if (a) link_name(a, newparent, newname);
  if (b) link_name(b, parent, name);
  pthread_rwlock_unlock(&nodes_lock);
}
/* The path of node `id` (with `/name` after it if name is given); NULL with errno ENOENT if the node has
 * no name now, ENAMETOOLONG if the path is deeper than any path can be (PATH_MAX). */
#define MAX_DEPTH 2048 /* PATH_MAX / 2: names of one byte and their slashes */
static char *path_of(uint64_t id, const char *name) {
  const char *parts[MAX_DEPTH];
  int k = 0;
  size_t len = name ? strlen(name) + 1 : 0;
  pthread_rwlock_rdlock(&nodes_lock);
  while (id != FUSE_ROOT_ID) {
    node_t *n = find_id(id);
    if (!n || !n->name || k == MAX_DEPTH) {
      pthread_rwlock_unlock(&nodes_lock);
      errno = k == MAX_DEPTH ? ENAMETOOLONG : ENOENT;
      return NULL;
    }
    parts[k++] = n->name;
    len += strlen(n->name) + 1;
    id = n->parent;
  }
  char *p = malloc(len + 2);
  if (p) {
    char *q = p;
    for (int i = k - 1; i >= 0; i--) {
      *q++ = '/';
      size_t l = strlen(parts[i]);
      memcpy(q, parts[i], l);
      q += l;
    }
    if (name) {
      *q++ = '/';
      strcpy(q, name);
      q += strlen(name);
    }
    if (q == p) *q++ = '/';
    *q = 0;
  }
  pthread_rwlock_unlock(&nodes_lock);
  return p;
}

/*
 * Directories' attributes as the JS side keeps them (FuseMount.keepDir). The kernel keeps them too, but
 * drops a directory's whenever it changes the directory itself (a name made or removed there), and the
 * next permission check asks: once per create in a directory being filled. A getattr by path is answered
 * from here, without a trip to JavaScript, until the entry's time is up or JavaScript drops it.
 * Direct-mapped: a colliding path takes the slot.
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
  if (!fi && !path) return 0;
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

/* --- local reads and writes --------------------------------------------------------------------------- */

/*
 * A handle whose data file sits on a brick of this host reads and writes it directly: JavaScript opens
 * the very inode the brick serves for the handle (same host, same path, same inode number, the gfid it
 * expects) and gives the descriptor to setLocal(). A read (or a getattr by handle) then takes the data
 * from the descriptor and afterwards checks that the file carries no commit record (the migration xattr,
 * which src's brick sets before a commit takes effect and never removes from a committed copy), and
 * answers without a trip to the JavaScript thread; with a record (or any error) the read goes the usual
 * way, through the brick, which follows the file to its new brick. No record at the check means no commit
 * was in force when the data was taken, so every write acknowledged before the read began had reached
 * this inode (docs/MIGRATION.md, "Local reads").
 *
 * A write (on a handle given a writable descriptor) passes the file's gate into its writers' lock: open
 * file description locks, shared, on bytes 0 and 1, which src's brick holds exclusive from the start of a
 * migration of the file to its commit or abort. Holding the writers' lock, it checks for the commit
 * record, writes, and lets the lock go; refused at the gate or the lock, or with a record, the write goes
 * through the brick (docs/MIGRATION.md, "Local writes").
 */
typedef struct local {
  uint64_t fh;
  int fd;
  int refs;            /* reads and writes using fd now */
  uint64_t ino;        /* the inode number the kernel knows the file by */
  int gone;            /* replaced or released: closed when the last read or write is done */
  int writable;        /* local writes allowed */
  int writing;         /* local writes holding the writers' lock (under wmu) */
  pthread_mutex_t wmu;
  char *record;        /* the commit record's xattr name */
  struct local *next;
} local_t;
#define LOCAL_SLOTS 1024
#define LOCK_GATE 0
#define LOCK_WRITERS 1
static local_t *locals[LOCAL_SLOTS];
static pthread_mutex_t locals_lock = PTHREAD_MUTEX_INITIALIZER;

static void local_free_locked(local_t *e) {
  close(e->fd);
  pthread_mutex_destroy(&e->wmu);
  free(e->record);
  free(e);
}
/* Unlinks fh's entry; it is freed now, or by the last read or write using it. */
static void local_drop_locked(uint64_t fh) {
  for (local_t **pp = &locals[fh % LOCAL_SLOTS]; *pp; pp = &(*pp)->next) {
    local_t *e = *pp;
    if (e->fh != fh) continue;
    *pp = e->next;
    e->gone = 1;
    if (e->refs == 0) local_free_locked(e);
    return;
  }
}
static void local_drop(uint64_t fh) {
  pthread_mutex_lock(&locals_lock);
  local_drop_locked(fh);
  pthread_mutex_unlock(&locals_lock);
}
static local_t *local_take(uint64_t fh) {
  local_t *hit = NULL;
  pthread_mutex_lock(&locals_lock);
  for (local_t *e = locals[fh % LOCAL_SLOTS]; e; e = e->next)
    if (e->fh == fh) {
      (hit = e)->refs++;
      break;
    }
  pthread_mutex_unlock(&locals_lock);
  return hit;
}
static void local_put(local_t *e) {
  pthread_mutex_lock(&locals_lock);
  if (--e->refs == 0 && e->gone) local_free_locked(e);
  pthread_mutex_unlock(&locals_lock);
}
/* Through the gate into the writers' lock (held while any local write of e is in flight); 0: shut out. */
static int local_enter(local_t *e) {
  pthread_mutex_lock(&e->wmu);
  int in = byte_lock(e->fd, LOCK_GATE, F_RDLCK) == 0;
  if (in) {
    in = e->writing > 0 || byte_lock(e->fd, LOCK_WRITERS, F_RDLCK) == 0;
    if (in) e->writing++;
    byte_lock(e->fd, LOCK_GATE, F_UNLCK);
  }
  pthread_mutex_unlock(&e->wmu);
  return in;
}
static void local_leave(local_t *e) {
  pthread_mutex_lock(&e->wmu);
  if (--e->writing == 0) byte_lock(e->fd, LOCK_WRITERS, F_UNLCK);
  pthread_mutex_unlock(&e->wmu);
}
/* Whether the file of e carries no commit record (checked after the data or attributes were taken). */
static int local_unmoved(local_t *e) {
  return fgetxattr(e->fd, e->record, NULL, 0) < 0 && errno == ENODATA;
}
/*
 * Each native thread keeps, for its local reads, a buffer and a pipe (freed when the thread ends). With
 * the pipe, a read splices the file's pages into it (no copy) and libfuse splices them on into the
 * kernel, which copies them once, into the reader's page cache; without it (splice unavailable), the
 * bytes are read into the buffer first.
 */
typedef struct {
  char *buf;
  size_t cap;
  int pipe[2];
} reader_t;
static pthread_key_t reader_key;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;
static int devnull = -1;
static void reader_free(void *p) {
  reader_t *r = p;
  free(r->buf);
  if (r->pipe[0] >= 0) close(r->pipe[0]);
  if (r->pipe[1] >= 0) close(r->pipe[1]);
  free(r);
}
static void reader_init(void) {
  pthread_key_create(&reader_key, reader_free);
  devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
}
static reader_t *reader(void) {
  pthread_once(&reader_once, reader_init);
  reader_t *r = pthread_getspecific(reader_key);
  if (r) return r;
  r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->pipe[0] = r->pipe[1] = -1;
  if (current && current->splice && pipe2(r->pipe, O_CLOEXEC) == 0 && fcntl(r->pipe[0], F_SETPIPE_SZ, (int)current->max_read) < 0) {
    close(r->pipe[0]);
    close(r->pipe[1]);
    r->pipe[0] = r->pipe[1] = -1;
  }
  pthread_setspecific(reader_key, r);
  return r;
}
/* Empties the pipe of what a failed reply left in it. */
static void reader_drain(reader_t *r) {
  int left = 0;
  while (ioctl(r->pipe[0], FIONREAD, &left) == 0 && left > 0)
    if (splice(r->pipe[0], NULL, devnull, NULL, (size_t)left, 0) <= 0) break;
}

/* Answers a read from fh's local descriptor; 0 when it cannot (no descriptor, a commit record, an error). */
static int local_read(fuse_req_t fr, uint64_t fh, size_t size, off_t off) {
  reader_t *r = reader();
  if (!r) return 0;
  local_t *e = local_take(fh);
  if (!e) return 0;
  ssize_t got = 0;
  int piped = r->pipe[0] >= 0 && devnull >= 0;
  if (!piped && r->cap < size) {
    free(r->buf);
    r->buf = malloc(size);
    r->cap = r->buf ? size : 0;
    if (!r->buf) got = -1;
  }
  loff_t at = off;
  while (got >= 0 && (size_t)got < size) {
    ssize_t n = piped ? splice(e->fd, &at, r->pipe[1], NULL, size - (size_t)got, 0) : pread(e->fd, r->buf + got, size - (size_t)got, off + got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0) got = -1;
      break;
    }
    got += n;
  }
  int done = got >= 0 && local_unmoved(e);
  local_put(e);
  if (done && piped) {
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT((size_t)got);
    bv.buf[0].flags = FUSE_BUF_IS_FD;
    bv.buf[0].fd = r->pipe[0];
    fuse_reply_data(fr, &bv, 0);
  } else if (done) fuse_reply_buf(fr, r->buf, (size_t)got);
  if (piped) reader_drain(r);
  return done;
}
/* A write by a caller other than root must drop the file's set-user-ID bit, and its set-group-ID bit
 * where the group may execute (the kernel leaves that to the file system on direct I/O): the brick does
 * it, so such a file's writes go through it. */
static int drops_privs(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return 1;
  return (st.st_mode & S_ISUID) || (st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP);
}
/* Answers a write with fh's local descriptor; 0 when it cannot (not writable, shut out, a commit record,
 * set-id bits a caller other than root drops, an error). */
static int local_write(fuse_req_t fr, uint64_t fh, const char *buf, size_t size, off_t off) {
  local_t *e = local_take(fh);
  if (!e) return 0;
  int done = 0;
  const struct fuse_ctx *ctx = fuse_req_ctx(fr);
  if (e->writable && ctx && ctx->uid != 0 && drops_privs(e->fd)) {
    local_put(e);
    return 0;
  }
  if (e->writable && local_enter(e)) {
    /* After the lock: a migration that committed set the record before it let the lock go. */
    if (local_unmoved(e)) {
      size_t put = 0;
      while (put < size) {
        ssize_t n = pwrite(e->fd, buf + put, size - put, off + (off_t)put);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        put += (size_t)n;
      }
      /* Short of that (a full disk, say), the write goes through the brick, which tells the error. */
      done = put == size;
    }
    local_leave(e);
  }
  local_put(e);
  if (done) fuse_reply_write(fr, size);
  return done;
}
/* A getattr by handle from fh's local descriptor, as the brick's fstat gives it; 0 when it cannot. */
static int local_stat(uint64_t fh, struct stat *st) {
  local_t *e = local_take(fh);
  if (!e) return 0;
  int done = fstat(e->fd, st) == 0 && local_unmoved(e);
  if (done) {
    st->st_ino = e->ino;
    /* the brick's handle (.glusterfs/xx/yy/gfid) is a name of its own */
    st->st_nlink = st->st_nlink > 0 ? st->st_nlink - 1 : 0;
    st->st_rdev = 0;
    st->st_dev = 0;
  }
  local_put(e);
  return done;
}

/* --- open handles per inode ----------------------------------------------------------------------------
 * The kernel asks a getattr of an open file by its inode alone (fstat(2) sends no handle): once the
 * file's name is gone (unlinked, or renamed over), its path cannot answer, but any handle open on the
 * inode can (the brick's fstat of it). So each handle is kept under its inode from its open (or create)
 * to its release. */

typedef struct openfh {
  uint64_t ino, fh;
  struct openfh *next;
} openfh_t;
#define OPEN_SLOTS 4096
static openfh_t *opens[OPEN_SLOTS];
static pthread_mutex_t opens_lock = PTHREAD_MUTEX_INITIALIZER;

static void open_add(uint64_t ino, uint64_t fh) {
  openfh_t *e = malloc(sizeof *e);
  if (!e) return; /* then only the name answers, as before */
  e->ino = ino;
  e->fh = fh;
  pthread_mutex_lock(&opens_lock);
  e->next = opens[ino % OPEN_SLOTS];
  opens[ino % OPEN_SLOTS] = e;
  pthread_mutex_unlock(&opens_lock);
}
static void open_del(uint64_t ino, uint64_t fh) {
  pthread_mutex_lock(&opens_lock);
  for (openfh_t **p = &opens[ino % OPEN_SLOTS]; *p; p = &(*p)->next) {
    if ((*p)->ino == ino && (*p)->fh == fh) {
      openfh_t *e = *p;
      *p = e->next;
      free(e);
      break;
    }
  }
  pthread_mutex_unlock(&opens_lock);
}
/* A handle open on inode `ino` into *fh: 1, or 0 if there is none. */
static int open_any(uint64_t ino, uint64_t *fh) {
  int found = 0;
  pthread_mutex_lock(&opens_lock);
  for (openfh_t *e = opens[ino % OPEN_SLOTS]; e && !found; e = e->next)
    if (e->ino == ino) {
      *fh = e->fh;
      found = 1;
    }
  pthread_mutex_unlock(&opens_lock);
  return found;
}

/* --- requests ------------------------------------------------------------------------------------------ */

/*
 * Most requests are answered from the JavaScript thread: the native thread hands the request over and
 * goes back to reading the next one, and reply() answers the kernel (libfuse's replies may come from any
 * thread). A write's and a setxattr's data live in libfuse's buffer, which the native thread must keep
 * until JavaScript is done with it: those wait, and so do a read (its reply copies up to a megabyte into
 * the kernel: better done on the native threads, in parallel, than on the JS one) and a readdir (served
 * from the open directory's listing).
 */
static req_t *new_req(fuse_req_t fr, enum op op, int async) {
  req_t *r = calloc(1, sizeof *r);
  if (!r) {
    fuse_reply_err(fr, ENOMEM);
    return NULL;
  }
  r->op = op;
  r->fr = fr;
  r->async = async;
  const struct fuse_ctx *ctx = fuse_req_ctx(fr);
  /* The caller: the last three numbers of every request. */
  r->nums[MAX_NUMS - 3] = ctx ? ctx->uid : 0;
  r->nums[MAX_NUMS - 2] = ctx ? ctx->gid : 0;
  r->nums[MAX_NUMS - 1] = ctx ? ctx->pid : 0;
  return r;
}
static void free_req(req_t *r) {
  free(r->path);
  free(r->path2);
  free(r->name);
  free(r->newname);
  free(r->out);
  free(r);
}

/* Hands JavaScript the release of handle `fh`, answered to nobody. */
static void release_fh(uint64_t fh) {
  req_t *r = current && current->running ? calloc(1, sizeof *r) : NULL;
  if (!r) return;
  r->op = OP_RELEASE;
  r->detached = 1;
  r->nums[0] = (double)fh;
  if (napi_call_threadsafe_function(current->tsfn, r, napi_tsfn_blocking) != napi_ok) free_req(r);
}

static double timeout_for(mode_t mode) {
  return S_ISDIR(mode) && current ? current->entry_timeout : 0;
}
/* The kernel's entry for the name (r->parent, r->name), with r->st. */
static void reply_entry(req_t *r) {
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = remember(r->parent, r->name);
  if (!e.ino) {
    fuse_reply_err(r->fr, ENOMEM);
    return;
  }
  e.attr = r->st;
  e.attr_timeout = timeout_for(r->st.st_mode);
  e.entry_timeout = current ? current->entry_timeout : 0;
  if (r->op != OP_CREATE) {
    fuse_reply_entry(r->fr, &e);
    return;
  }
  fresh_put(r->fh, r->path, &r->st);
  r->fi.fh = r->fh;
  r->fi.direct_io = r->direct_io;
  r->fi.keep_cache = 0;
  open_add(e.ino, r->fh); /* before the kernel has it: its release may come at once */
  if (fuse_reply_create(r->fr, &e, &r->fi) == -ENOENT) {
    /* The kernel gave up on the request (interrupted): it will never forget the inode nor release the
     * handle, so both go here. */
    open_del(e.ino, r->fh);
    pthread_rwlock_wrlock(&nodes_lock);
    forget_locked(e.ino, 1);
    pthread_rwlock_unlock(&nodes_lock);
    release_fh(r->fh);
  }
}

/* Answers the kernel from what JavaScript answered (res: its result), and frees r. */
static void finish(req_t *r, int res) {
  fuse_req_t fr = r->fr;
  if (res < 0) {
    if (r->op == OP_READ) free(r->buf);
    fuse_reply_err(fr, -res);
    free_req(r);
    return;
  }
  switch (r->op) {
    case OP_GETATTR: case OP_SETATTR: case OP_MKDIR: case OP_MKNOD: case OP_SYMLINK: case OP_LINK: case OP_CREATE:
      if (!r->has_st) fuse_reply_err(fr, EIO);
      else if (r->lookup || r->name) reply_entry(r);
      else fuse_reply_attr(fr, &r->st, timeout_for(r->st.st_mode));
      break;
    case OP_READLINK:
      if (r->out) fuse_reply_readlink(fr, r->out);
      else fuse_reply_err(fr, EIO);
      break;
    case OP_UNLINK: case OP_RMDIR:
      drop_name(r->parent, r->name);
      fuse_reply_err(fr, 0);
      break;
    case OP_RENAME:
      if ((unsigned)r->nums[0] & RENAME_EXCHANGE) swap_names(r->parent, r->name, r->newparent, r->newname);
      else move_name(r->parent, r->name, r->newparent, r->newname);
      fuse_reply_err(fr, 0);
      break;
    case OP_OPEN:
      r->fi.fh = r->fh;
      r->fi.direct_io = r->direct_io;
      r->fi.keep_cache = 0;
      open_add(r->ino, r->fh);
      if (fuse_reply_open(fr, &r->fi) == -ENOENT) { /* interrupted: never released */
        open_del(r->ino, r->fh);
        release_fh(r->fh);
      }
      break;
    case OP_READ:
      fuse_reply_buf(fr, r->buf, (size_t)res);
      free(r->buf);
      break;
    case OP_WRITE:
      fuse_reply_write(fr, (size_t)res);
      break;
    case OP_STATFS:
      fuse_reply_statfs(fr, &r->sv);
      break;
    case OP_GETXATTR: case OP_LISTXATTR:
      /* size 0 asks for the size only */
      if (r->xsize == 0) fuse_reply_xattr(fr, r->out_len);
      else if (r->out_len > r->xsize) fuse_reply_err(fr, ERANGE);
      else fuse_reply_buf(fr, r->out ? r->out : "", r->out_len);
      break;
    default: /* fsync, setxattr, removexattr, fallocate */
      fuse_reply_err(fr, 0);
  }
  free_req(r);
}

/* Hands r to JavaScript: answered from there (async), or here once JavaScript has answered (a readdir's
 * caller reads r->result itself). */
static void go(req_t *r) {
  /* Once handed over, an async r belongs to the JavaScript thread, which may answer and free it before
   * this thread reads another field of it. */
  const int async = r->async;
  int ok = current && current->running;
  if (ok && !async) sem_init(&r->done, 0, 0);
  if (ok && napi_call_threadsafe_function(current->tsfn, r, napi_tsfn_blocking) != napi_ok) {
    if (!async) sem_destroy(&r->done);
    ok = 0;
  }
  if (!ok) {
    if (r->op == OP_READDIR) r->result = -ENOTCONN;
    else finish(r, -ENOTCONN);
    return;
  }
  if (async) return;
  while (sem_wait(&r->done) != 0 && errno == EINTR) {
  }
  sem_destroy(&r->done);
  if (r->op != OP_READDIR) finish(r, r->result);
}

/* The path of (parent, name) into *path and a copy of the name into *copy: 0, or the errno (ENOENT: the
 * parent has no name now). */
static int take_name(fuse_ino_t parent, const char *name, char **path, char **copy) {
  *path = path_of(parent, name);
  if (!*path) return errno;
  *copy = strdup(name);
  return *copy ? 0 : ENOMEM;
}
/* A request about the name (parent, name), or NULL with the error answered. */
static req_t *named(fuse_req_t fr, enum op op, fuse_ino_t parent, const char *name) {
  req_t *r = new_req(fr, op, 1);
  if (!r) return NULL;
  r->parent = parent;
  int err = take_name(parent, name, &r->path, &r->name);
  if (err) {
    fuse_reply_err(fr, err);
    free_req(r);
    return NULL;
  }
  return r;
}
/* A request about inode `ino` by its path (NULL allowed when `fi` names an open file). */
static req_t *on_inode(fuse_req_t fr, enum op op, fuse_ino_t ino, struct fuse_file_info *fi, int async) {
  req_t *r = new_req(fr, op, async);
  if (!r) return NULL;
  r->path = path_of(ino, NULL);
  if (!r->path && !fi) {
    fuse_reply_err(fr, errno);
    free_req(r);
    return NULL;
  }
  return r;
}

static void ll_lookup(fuse_req_t fr, fuse_ino_t parent, const char *name) {
  req_t *r = named(fr, OP_GETATTR, parent, name);
  if (!r) return;
  r->lookup = 1;
  r->nums[0] = -1;
  if (dcache_get(r->path, &r->st)) {
    r->has_st = 1;
    finish(r, 0);
  } else go(r);
}
static void ll_forget(fuse_req_t fr, fuse_ino_t ino, uint64_t nlookup) {
  pthread_rwlock_wrlock(&nodes_lock);
  forget_locked(ino, nlookup);
  pthread_rwlock_unlock(&nodes_lock);
  fuse_reply_none(fr);
}
static void ll_forget_multi(fuse_req_t fr, size_t count, struct fuse_forget_data *forgets) {
  pthread_rwlock_wrlock(&nodes_lock);
  for (size_t i = 0; i < count; i++) forget_locked(forgets[i].ino, forgets[i].nlookup);
  pthread_rwlock_unlock(&nodes_lock);
  fuse_reply_none(fr);
}
static void ll_getattr(fuse_req_t fr, fuse_ino_t ino, struct fuse_file_info *fi) {
  /* An open file whose name is gone is still there through its handle: the kernel's (fi), or, for a
   * getattr by inode alone (fstat), any handle open on the inode. */
  req_t *r = new_req(fr, OP_GETATTR, 1);
  if (!r) return;
  r->path = path_of(ino, NULL);
  struct fuse_file_info held;
  if (!r->path && !fi) {
    int err = errno;
    memset(&held, 0, sizeof held);
    if (!open_any(ino, &held.fh)) {
      fuse_reply_err(fr, err);
      free_req(r);
      return;
    }
    fi = &held;
  }
  r->nums[0] = fi ? (double)fi->fh : -1;
  if ((fi && local_stat(fi->fh, &r->st)) || fresh_take(fi, r->path, &r->st) || (!fi && r->path && dcache_get(r->path, &r->st))) {
    r->has_st = 1;
    finish(r, 0);
  } else go(r);
}
static void ll_setattr(fuse_req_t fr, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  fresh_drop(NULL);
  /* fchmod, fchown and futimens send no handle: a file whose name is gone goes through one open on it. */
  struct fuse_file_info held;
  if (!fi) {
    memset(&held, 0, sizeof held);
    char *p = path_of(ino, NULL);
    if (!p && open_any(ino, &held.fh)) fi = &held;
    free(p);
  }
  req_t *r = on_inode(fr, OP_SETATTR, ino, fi, 1);
  if (!r) return;
  /* [which, mode, uid, gid, size, atime s, ns, mtime s, ns, fh]; ns = UTIME_NOW for "now" */
  r->nums[0] = to_set;
  r->nums[1] = attr->st_mode & 07777;
  r->nums[2] = (double)attr->st_uid;
  r->nums[3] = (double)attr->st_gid;
  r->nums[4] = (double)attr->st_size;
  r->nums[5] = (double)attr->st_atim.tv_sec;
  r->nums[6] = to_set & FUSE_SET_ATTR_ATIME_NOW ? (double)UTIME_NOW : (double)attr->st_atim.tv_nsec;
  r->nums[7] = (double)attr->st_mtim.tv_sec;
  r->nums[8] = to_set & FUSE_SET_ATTR_MTIME_NOW ? (double)UTIME_NOW : (double)attr->st_mtim.tv_nsec;
  r->nums[9] = fi ? (double)fi->fh : -1;
  go(r);
}
static void ll_readlink(fuse_req_t fr, fuse_ino_t ino) {
  req_t *r = on_inode(fr, OP_READLINK, ino, NULL, 1);
  if (r) go(r);
}
/* The operations that make a name answer with its attributes: the kernel's entry for it. */
static void ll_mknod(fuse_req_t fr, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  fresh_drop(NULL);
  req_t *r = named(fr, OP_MKNOD, parent, name);
  if (!r) return;
  r->nums[0] = mode;
  r->nums[1] = (double)rdev;
  go(r);
}
static void ll_mkdir(fuse_req_t fr, fuse_ino_t parent, const char *name, mode_t mode) {
  fresh_drop(NULL);
  req_t *r = named(fr, OP_MKDIR, parent, name);
  if (!r) return;
  r->nums[0] = mode;
  go(r);
}
static void ll_symlink(fuse_req_t fr, const char *link, fuse_ino_t parent, const char *name) {
  fresh_drop(NULL);
  req_t *r = named(fr, OP_SYMLINK, parent, name);
  if (!r) return;
  r->path2 = strdup(link);
  go(r);
}
static void ll_link(fuse_req_t fr, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  fresh_drop(NULL);
  req_t *r = named(fr, OP_LINK, newparent, newname);
  if (!r) return;
  /* JavaScript: link(path: the existing file, path2: the new name) */
  r->path2 = r->path;
  r->path = path_of(ino, NULL);
  if (!r->path) {
    fuse_reply_err(fr, errno);
    free_req(r);
    return;
  }
  go(r);
}
static void ll_unlink(fuse_req_t fr, fuse_ino_t parent, const char *name) {
  fresh_drop(NULL);
  req_t *r = named(fr, OP_UNLINK, parent, name);
  if (r) go(r);
}
static void ll_rmdir(fuse_req_t fr, fuse_ino_t parent, const char *name) {
  fresh_drop(NULL);
  req_t *r = named(fr, OP_RMDIR, parent, name);
  if (r) go(r);
}
static void ll_rename(fuse_req_t fr, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  fresh_drop(NULL);
  req_t *r = named(fr, OP_RENAME, parent, name);
  if (!r) return;
  r->newparent = newparent;
  int err = take_name(newparent, newname, &r->path2, &r->newname);
  if (err) {
    fuse_reply_err(fr, err);
    free_req(r);
    return;
  }
  r->nums[0] = flags;
  go(r);
}
static void ll_open(fuse_req_t fr, fuse_ino_t ino, struct fuse_file_info *fi) {
  req_t *r = on_inode(fr, OP_OPEN, ino, NULL, 1);
  if (!r) return;
  r->ino = ino;
  r->fi = *fi;
  r->nums[0] = fi->flags;
  go(r);
}
static void ll_create(fuse_req_t fr, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  req_t *r = named(fr, OP_CREATE, parent, name);
  if (!r) return;
  r->fi = *fi;
  r->nums[0] = fi->flags;
  r->nums[1] = mode;
  go(r);
}
static void ll_read(fuse_req_t fr, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)ino;
  if (local_read(fr, fi->fh, size, off)) return;
  /* Waits: the reply copies the data into the kernel, which this thread does better than the JS one. */
  req_t *r = new_req(fr, OP_READ, 0);
  if (!r) return;
  r->buf = malloc(size ? size : 1);
  if (!r->buf) {
    fuse_reply_err(fr, ENOMEM);
    free_req(r);
    return;
  }
  r->size = size;
  r->nums[0] = (double)fi->fh;
  r->nums[1] = (double)off;
  go(r);
}
static void ll_write(fuse_req_t fr, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)ino;
  fresh_drop(fi);
  if (local_write(fr, fi->fh, buf, size, off)) return;
  req_t *r = new_req(fr, OP_WRITE, 0);
  if (!r) return;
  r->buf = (char *)buf; /* libfuse's, valid while this thread waits */
  r->size = size;
  r->nums[0] = (double)fi->fh;
  r->nums[1] = (double)off;
  go(r);
}
static void ll_statfs(fuse_req_t fr, fuse_ino_t ino) {
  (void)ino;
  req_t *r = new_req(fr, OP_STATFS, 1);
  if (!r) return;
  r->path = strdup("/");
  go(r);
}
/* release: the kernel does not wait for its answer (nor does the program, whose close(2) has returned),
 * so it is answered at once and the request goes to JavaScript on its own: the handle is closed there a
 * moment later. */
static void ll_release(fuse_req_t fr, fuse_ino_t ino, struct fuse_file_info *fi) {
  open_del(ino, fi->fh);
  fresh_drop(fi);
  local_drop(fi->fh);
  release_fh(fi->fh);
  fuse_reply_err(fr, 0);
}
static void ll_fsync(fuse_req_t fr, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)ino;
  req_t *r = new_req(fr, OP_FSYNC, 1);
  if (!r) return;
  r->nums[0] = (double)fi->fh;
  r->nums[1] = datasync;
  go(r);
}

/* fallocate: [fh, mode, offset, length]. The kernel passes the modes it knows a FUSE file system may
 * have (allocate, KEEP_SIZE, PUNCH_HOLE; others are EOPNOTSUPP before they reach here). */
static void ll_fallocate(fuse_req_t fr, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
  (void)ino;
  fresh_drop(fi);
  req_t *r = new_req(fr, OP_FALLOCATE, 1);
  if (!r) return;
  r->nums[0] = (double)fi->fh;
  r->nums[1] = mode;
  r->nums[2] = (double)offset;
  r->nums[3] = (double)length;
  go(r);
}

/* The kernel's and the security modules' xattrs (security.capability is asked before every write) are not
 * stored by the volume: answered here, without a trip to the JS thread. ACLs and security labels are not
 * supported (cp -a and rsync -X skip them on ENOTSUP). */
static int foreign_xattr(const char *name) {
  return strncmp(name, "security.", 9) == 0 || strncmp(name, "system.", 7) == 0;
}
static void ll_setxattr(fuse_req_t fr, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  fresh_drop(NULL);
  if (foreign_xattr(name)) { fuse_reply_err(fr, EOPNOTSUPP); return; }
  req_t *r = on_inode(fr, OP_SETXATTR, ino, NULL, 0);
  if (!r) return;
  r->path2 = strdup(name);
  r->buf = (char *)value; /* libfuse's, valid while this thread waits */
  r->size = size;
  r->nums[0] = flags;
  go(r);
}
static void ll_getxattr(fuse_req_t fr, fuse_ino_t ino, const char *name, size_t size) {
  if (foreign_xattr(name)) { fuse_reply_err(fr, ENODATA); return; }
  req_t *r = on_inode(fr, OP_GETXATTR, ino, NULL, 1);
  if (!r) return;
  r->path2 = strdup(name);
  r->xsize = size;
  go(r);
}
static void ll_listxattr(fuse_req_t fr, fuse_ino_t ino, size_t size) {
  req_t *r = on_inode(fr, OP_LISTXATTR, ino, NULL, 1);
  if (!r) return;
  r->xsize = size;
  go(r);
}
static void ll_removexattr(fuse_req_t fr, fuse_ino_t ino, const char *name) {
  fresh_drop(NULL);
  if (foreign_xattr(name)) { fuse_reply_err(fr, ENODATA); return; }
  req_t *r = on_inode(fr, OP_REMOVEXATTR, ino, NULL, 1);
  if (!r) return;
  r->path2 = strdup(name);
  go(r);
}

static void clear_listing(listing_t *l) {
  for (size_t i = 0; i < l->n; i++) free(l->names[i]);
  free(l->names);
  free(l->sts);
  free(l->full);
  l->names = NULL;
  l->sts = NULL;
  l->full = NULL;
  l->n = 0;
}
static void free_listing(listing_t *l) {
  if (!l) return;
  clear_listing(l);
  free(l);
}
static void ll_opendir(fuse_req_t fr, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  listing_t *l = calloc(1, sizeof *l);
  if (!l) { fuse_reply_err(fr, ENOMEM); return; }
  fi->fh = (uint64_t)(uintptr_t)l;
  fuse_reply_open(fr, fi);
}
/* The listing is read whole at offset 0 and served from the open directory's copy after that. Returns
 * 0, or an errno (the kernel answered). */
static int load_listing(fuse_req_t fr, fuse_ino_t ino, off_t off, listing_t *l) {
  if (off != 0 && l->loaded) return 0;
  req_t *r = on_inode(fr, OP_READDIR, ino, NULL, 0);
  if (!r) return ENOMEM;
  r->listing = l;
  clear_listing(l);
  go(r); /* waits; the listing is filled by reply() */
  int res = r->result;
  free_req(r);
  if (res < 0) {
    fuse_reply_err(fr, -res);
    return -res;
  }
  l->loaded = 1;
  return 0;
}
/*
 * READDIR, and READDIRPLUS (`plus`): each entry with the kernel's entry for it (its attributes, kept as
 * a lookup's are: directories' for the entry timeout, files' not at all), so that `ls -l`, `find` and
 * `du` need no LOOKUP of each name. Each entry given so counts as a lookup of its node; '.' and '..' go
 * without one.
 */
static void serve_listing(fuse_req_t fr, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi, int plus) {
  listing_t *l = (listing_t *)(uintptr_t)fi->fh;
  if (load_listing(fr, ino, off, l)) return;
  char *buf = malloc(size);
  if (!buf) { fuse_reply_err(fr, ENOMEM); return; }
  size_t used = 0;
  for (size_t i = (size_t)off; i < l->n; i++) {
    if (!plus) {
      size_t need = fuse_add_direntry(fr, buf + used, size - used, l->names[i], &l->sts[i], (off_t)(i + 1));
      if (need > size - used) break;
      used += need;
      continue;
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.attr = l->sts[i];
    if (fuse_add_direntry_plus(fr, NULL, 0, l->names[i], &e, (off_t)(i + 1)) > size - used) break;
    if (l->full[i]) {
      e.ino = remember(ino, l->names[i]);
      e.attr_timeout = timeout_for(e.attr.st_mode);
      e.entry_timeout = current ? current->entry_timeout : 0;
    }
    used += fuse_add_direntry_plus(fr, buf + used, size - used, l->names[i], &e, (off_t)(i + 1));
  }
  fuse_reply_buf(fr, buf, used);
  free(buf);
}
static void ll_readdir(fuse_req_t fr, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  serve_listing(fr, ino, size, off, fi, 0);
}
static void ll_readdirplus(fuse_req_t fr, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  serve_listing(fr, ino, size, off, fi, 1);
}
static void ll_releasedir(fuse_req_t fr, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  free_listing((listing_t *)(uintptr_t)fi->fh);
  fuse_reply_err(fr, 0);
}

/* --- direct I/O and mmap ------------------------------------------------------------------------------
 * A file opened for direct I/O has its reads and writes go to the mount whole, around the kernel's page
 * cache: a read costs one copy from the brick's file instead of two (into the FUSE file's pages, then to
 * the program). But the kernel refuses to map such a file MAP_SHARED unless the mount said
 * FUSE_DIRECT_IO_ALLOW_MMAP at INIT (Linux 6.6), and Debian's libfuse (3.14) cannot say it: it arrived
 * in libfuse 3.16. So the addon talks to /dev/fuse through libfuse's custom I/O hooks, which read and
 * write exactly what libfuse would, and adds that one flag to libfuse's INIT reply when the kernel
 * offered it. mount_t.direct_mmap records the outcome, which the JavaScript side asks with directMmap():
 * where it is set, every file is opened for direct I/O; elsewhere only write-only ones (never mapped). */

static uint64_t init_unique;   /* the INIT request's id, while its reply is pending */
static int init_offers_mmap;   /* the kernel's INIT offered FUSE_DIRECT_IO_ALLOW_MMAP */

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata) {
  (void)userdata;
  ssize_t n = read(fd, buf, len);
  if (n >= (ssize_t)(sizeof(struct fuse_in_header) + sizeof(struct fuse_init_in))) {
    const struct fuse_in_header *in = buf;
    if (in->opcode == FUSE_INIT) {
      const struct fuse_init_in *arg = (const void *)(in + 1);
      uint64_t flags = arg->flags;
      if (flags & FUSE_INIT_EXT) flags |= (uint64_t)arg->flags2 << 32;
      __atomic_store_n(&init_offers_mmap, (flags & FUSE_DIRECT_IO_ALLOW_MMAP) != 0, __ATOMIC_SEQ_CST);
      __atomic_store_n(&init_unique, in->unique, __ATOMIC_SEQ_CST);
    }
  }
  return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata) {
  (void)userdata;
  uint64_t pending = __atomic_load_n(&init_unique, __ATOMIC_SEQ_CST);
  if (pending && count >= 2 && iov[0].iov_len >= sizeof(struct fuse_out_header)) {
    const struct fuse_out_header *out = iov[0].iov_base;
    if (out->unique == pending && out->error == 0 && iov[1].iov_len >= sizeof(struct fuse_init_out)) {
      struct fuse_init_out *arg = iov[1].iov_base;
      __atomic_store_n(&init_unique, 0, __ATOMIC_SEQ_CST);
      if (init_offers_mmap && current) {
        arg->flags |= FUSE_INIT_EXT;
        arg->flags2 |= (uint32_t)(FUSE_DIRECT_IO_ALLOW_MMAP >> 32);
        ssize_t n = writev(fd, iov, count);
        if (n >= 0) current->direct_mmap = 1;
        return n;
      }
    }
  }
  return writev(fd, iov, count);
}

static ssize_t io_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len, unsigned flags,
                              void *userdata) {
  (void)userdata;
  return splice(fdin, offin, fdout, offout, len, flags);
}

static const struct fuse_custom_io custom_io = {
  .writev = io_writev, .read = io_read, .splice_send = io_splice_send,
};

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  if (current) {
    conn->max_write = current->max_io;
    conn->max_read = current->max_read;
    conn->max_readahead = current->max_io;
  }
  if (current && current->splice && (conn->capable & FUSE_CAP_SPLICE_WRITE)) conn->want |= FUSE_CAP_SPLICE_WRITE;
  else if (current) current->splice = 0;
  /* The kernel drops set-user-ID and set-group-ID bits on a write, truncate or chown by a caller without
   * CAP_FSETID, as it does on a local disk: libfuse would leave that to the file system, but the bricks
   * do the work as root, whom the rule spares. */
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
}

/* No flush (nothing to do: writes reach the brick before they return, fsync is its own request):
 * libfuse answers the first FLUSH with ENOSYS and the kernel sends no more. No access: the kernel
 * checks permissions itself (default_permissions). */
static const struct fuse_lowlevel_ops ops = {
  .init = ll_init, .lookup = ll_lookup, .forget = ll_forget, .forget_multi = ll_forget_multi,
  .getattr = ll_getattr, .setattr = ll_setattr, .readlink = ll_readlink, .mknod = ll_mknod,
  .mkdir = ll_mkdir, .unlink = ll_unlink, .rmdir = ll_rmdir, .symlink = ll_symlink, .rename = ll_rename,
  .link = ll_link, .open = ll_open, .read = ll_read, .write = ll_write, .release = ll_release,
  .fsync = ll_fsync, .opendir = ll_opendir, .readdir = ll_readdir, .readdirplus = ll_readdirplus, .releasedir = ll_releasedir,
  .statfs = ll_statfs, .setxattr = ll_setxattr, .getxattr = ll_getxattr, .listxattr = ll_listxattr,
  .removexattr = ll_removexattr, .create = ll_create, .fallocate = ll_fallocate,
};

/* --- JavaScript side -------------------------------------------------------------------------------- */


/* A string, or null; NULL (no exception) where N-API fails (call_js answers EIO then). */
static napi_value str_or_null(napi_env env, const char *s) {
  napi_value v;
  napi_status st = s ? napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v) : napi_get_null(env, &v);
  return st == napi_ok ? v : NULL;
}

static void noop_finalize(napi_env env, void *data, void *hint) { (void)env; (void)data; (void)hint; }

/* Wakes the native thread waiting for r (or frees r if nobody waits). */
static void answer(req_t *r, int result) {
  if (r->detached) free_req(r);
  else if (r->async) finish(r, result);
  else {
    r->result = result;
    sem_post(&r->done);
  }
}

/*
 * Runs on the JS thread: calls handler(req, op, path, path2, nums, buf). Every N-API status is checked:
 * where one fails, the request is answered EIO (the kernel never waits for a call that was not made).
 */
static void call_js(napi_env env, napi_value handler, void *context, void *data) {
  (void)context;
  req_t *r = data;
  if (!r) {
    /* The loop ended: handler(null, "ended", ...) tells the JS side the file system is unmounted. */
    if (!env) return;
    napi_value argv[6], undefined;
    bool ok = napi_get_null(env, &argv[0]) == napi_ok && napi_create_string_utf8(env, "ended", NAPI_AUTO_LENGTH, &argv[1]) == napi_ok &&
              napi_get_null(env, &argv[2]) == napi_ok && napi_get_null(env, &argv[3]) == napi_ok &&
              napi_create_array_with_length(env, 0, &argv[4]) == napi_ok && napi_get_null(env, &argv[5]) == napi_ok &&
              napi_get_undefined(env, &undefined) == napi_ok;
    if (ok && napi_call_function(env, undefined, handler, 6, argv, NULL) != napi_ok) {
      napi_value exc;
      NAPI_OK(napi_get_and_clear_last_exception(env, &exc));
    }
    return;
  }
  if (!env) {
    answer(r, -ENOTCONN);
    return;
  }
  assert((int)r->op >= 0 && r->op < OP_COUNT);
  napi_value argv[6], undefined, nums;
  bool ok = napi_create_external(env, r, NULL, NULL, &argv[0]) == napi_ok && napi_create_string_utf8(env, op_names[r->op], NAPI_AUTO_LENGTH, &argv[1]) == napi_ok &&
            (argv[2] = str_or_null(env, r->path)) != NULL && (argv[3] = str_or_null(env, r->path2)) != NULL &&
            napi_create_array_with_length(env, MAX_NUMS, &nums) == napi_ok;
  for (int i = 0; ok && i < MAX_NUMS; i++) {
    napi_value n;
    ok = napi_create_double(env, r->nums[i], &n) == napi_ok && napi_set_element(env, nums, i, n) == napi_ok;
  }
  argv[4] = nums;
  if (ok && r->buf && r->size > 0) {
    ok = napi_create_external_buffer(env, r->size, r->buf, noop_finalize, NULL, &argv[5]) == napi_ok;
  } else if (ok) {
    ok = napi_get_null(env, &argv[5]) == napi_ok;
  }
  ok = ok && napi_get_undefined(env, &undefined) == napi_ok;
  if (!ok || napi_call_function(env, undefined, handler, 6, argv, NULL) != napi_ok) {
    /* N-API failed, or the handler threw: answer EIO rather than leave the kernel waiting. */
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value exc;
      NAPI_OK(napi_get_and_clear_last_exception(env, &exc));
    }
    answer(r, -EIO);
  }
}

static double num_at(napi_env env, napi_value arr, uint32_t i) {
  napi_value v;
  double d = 0;
  if (napi_get_element(env, arr, i, &v) != napi_ok || napi_get_value_double(env, v, &d) != napi_ok) d = 0; /* not a number: 0 */
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
  st->st_blksize = 128 * 1024; /* what programs size their I/O by: 1 MiB made some write 1 MiB at a time into sparse files */
}

/* A listing's entries: names ('.' and '..'), or [name, ...the entry's stat array] (see stat_from): the
 * type and inode number go with each entry, and READDIRPLUS gives the kernel all of its attributes. */
static void listing_from(napi_env env, napi_value a, listing_t *l) {
  uint32_t n = 0;
  NAPI_OK(napi_get_array_length(env, a, &n));
  l->names = calloc(n ? n : 1, sizeof(char *));
  l->sts = calloc(n ? n : 1, sizeof(struct stat));
  l->full = calloc(n ? n : 1, 1);
  if (!l->names || !l->sts || !l->full) return;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v, nv;
    bool entry = false;
    NAPI_OK(napi_get_element(env, a, i, &v));
    NAPI_OK(napi_is_array(env, v, &entry));
    nv = v;
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_mode = S_IFDIR;
    st.st_ino = 0xffffffff; /* FUSE_UNKNOWN_INO, as libfuse gives '.' and '..' */
    uint32_t len_a = 0;
    if (entry) {
      NAPI_OK(napi_get_element(env, v, 0, &nv));
      NAPI_OK(napi_get_array_length(env, v, &len_a));
      if (len_a >= 15) stat_from(env, v, 1, &st);
    }
    size_t len = 0;
    if (napi_get_value_string_utf8(env, nv, NULL, 0, &len) != napi_ok) continue;
    char *name = malloc(len + 1);
    if (!name) continue;
    NAPI_OK(napi_get_value_string_utf8(env, nv, name, len + 1, &len));
    l->names[l->n] = name;
    l->sts[l->n] = st;
    l->full[l->n] = len_a >= 15;
    l->n++;
  }
}

/* keepDir(path, stat array, ms): getattr of `path` is answered with these attributes for `ms`. */
static napi_value js_keep_dir(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t len = 0;
  double ms = 0;
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) return NULL;
  NAPI_CALL(env, napi_get_value_double(env, argv[2], &ms));
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
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t len = 0;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) NAPI_CALL(env, napi_typeof(env, argv[0], &t));
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

/*
 * setLocal(fh, fd, record, ino, writable): reads of handle fh are answered from descriptor fd (this addon
 * owns it from now on) while the file has no xattr `record`, and so are its writes if `writable`; the
 * caller has checked that fd is the handle's file (storage/disk.ts, openLocalFile). `ino` is the inode
 * number the kernel knows the file by. setLocal(fh) drops what was set for fh.
 */
static napi_value js_set_local(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double fhd = 0, fdd = -1, inod = 0;
  bool writable = false;
  if (argc < 1) return NULL;
  NAPI_CALL(env, napi_get_value_double(env, argv[0], &fhd));
  uint64_t fh = (uint64_t)fhd;
  napi_value ok;
  NAPI_CALL(env, napi_get_boolean(env, false, &ok));
  if (argc < 5) {
    local_drop(fh);
    return ok;
  }
  NAPI_CALL(env, napi_get_value_double(env, argv[1], &fdd));
  NAPI_CALL(env, napi_get_value_double(env, argv[3], &inod));
  NAPI_CALL(env, napi_get_value_bool(env, argv[4], &writable));
  int fd = (int)fdd;
  char record[256];
  size_t len = 0;
  int good = napi_get_value_string_utf8(env, argv[2], record, sizeof record, &len) == napi_ok && len > 0 && len < sizeof record - 1;
  local_t *e = good ? calloc(1, sizeof *e) : NULL;
  if (e) e->record = strdup(record);
  if (!e || !e->record) {
    if (e) free(e);
    if (fd >= 0) close(fd);
    return ok;
  }
  e->fh = fh;
  e->fd = fd;
  e->ino = (uint64_t)inod;
  e->writable = writable;
  pthread_mutex_init(&e->wmu, NULL);
  pthread_mutex_lock(&locals_lock);
  local_drop_locked(fh);
  e->next = locals[fh % LOCAL_SLOTS];
  locals[fh % LOCAL_SLOTS] = e;
  pthread_mutex_unlock(&locals_lock);
  NAPI_CALL(env, napi_get_boolean(env, true, &ok));
  return ok;
}

/* reply(req, result, extra) */
static napi_value js_reply(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  req_t *r;
  NAPI_CALL(env, napi_get_value_external(env, argv[0], (void **)&r));
  assert(r);
  /* From here on the request is answered whatever fails (EIO): the kernel never waits for ever. */
  int32_t result;
  if (argc < 2 || napi_get_value_int32(env, argv[1], &result) != napi_ok) {
    answer(r, -EIO);
    napi_throw_type_error(env, NULL, "reply(req, result, extra): result is an integer");
    return NULL;
  }
  napi_valuetype t = napi_undefined;
  if (argc >= 3 && napi_typeof(env, argv[2], &t) != napi_ok) t = napi_undefined;
  if (result >= 0 && t == napi_object && !r->detached) {
    napi_value extra = argv[2];
    bool isbuf = false, isarr = false;
    if (napi_is_buffer(env, extra, &isbuf) != napi_ok || napi_is_array(env, extra, &isarr) != napi_ok) result = -EIO;
    if (result < 0) {
      /* N-API failed: answered EIO below */
    } else if (r->op == OP_STATFS && isarr) {
      /* [bsize, blocks, bfree, bavail, files, ffree, namemax] */
      struct statvfs *sv = &r->sv;
      memset(sv, 0, sizeof *sv);
      sv->f_bsize = sv->f_frsize = (unsigned long)num_at(env, extra, 0);
      sv->f_blocks = (fsblkcnt_t)num_at(env, extra, 1);
      sv->f_bfree = (fsblkcnt_t)num_at(env, extra, 2);
      sv->f_bavail = (fsblkcnt_t)num_at(env, extra, 3);
      sv->f_files = (fsfilcnt_t)num_at(env, extra, 4);
      sv->f_ffree = sv->f_favail = (fsfilcnt_t)num_at(env, extra, 5);
      sv->f_namemax = (unsigned long)num_at(env, extra, 6);
    } else if (r->op == OP_READDIR && isarr) {
      listing_from(env, extra, r->listing);
    } else if ((r->op == OP_OPEN || r->op == OP_CREATE) && isarr) {
      /* [fh, direct_io] or, for a create, [fh, direct_io, the new file's attributes...] */
      r->fh = (uint64_t)num_at(env, extra, 0);
      r->direct_io = num_at(env, extra, 1) != 0;
      uint32_t n = 0;
      if (napi_get_array_length(env, extra, &n) != napi_ok) n = 0; /* an array: cannot fail */
      if (r->op == OP_CREATE && n >= 16) {
        stat_from(env, extra, 2, &r->st);
        r->has_st = 1;
      }
    } else if (isarr) {
      /* getattr, setattr, and the operations that make a name: the attributes */
      stat_from(env, extra, 0, &r->st);
      r->has_st = 1;
    } else if (isbuf && (r->op == OP_READLINK || r->op == OP_GETXATTR || r->op == OP_LISTXATTR)) {
      void *data;
      size_t len;
      if (napi_get_buffer_info(env, extra, &data, &len) != napi_ok) result = -EIO;
      else if ((r->out = malloc(len + 1))) {
        memcpy(r->out, data, len);
        r->out[len] = 0;
        r->out_len = len;
      } else result = -ENOMEM;
    }
  }
  answer(r, result);
  return NULL;
}

static void *loop_thread(void *arg) {
  mount_t *m = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, 16);
  fuse_loop_cfg_set_idle_threads(cfg, 16);
  fuse_session_loop_mt(m->se, cfg);
  fuse_loop_cfg_destroy(cfg);
  m->running = 0;
  unmount_once(m);
  /* Lets the JS side know the loop ended (an unmount from outside, or exit()), then lets it go. */
  napi_status st = napi_call_threadsafe_function(m->tsfn, NULL, napi_tsfn_blocking);
  assert(st == napi_ok || st == napi_closing); /* closing: the process is ending, nobody to tell */
  st = napi_release_threadsafe_function(m->tsfn, napi_tsfn_release);
  assert(st == napi_ok || st == napi_closing);
  (void)st;
  return NULL;
}

/*
 * The largest read whose reply can be spliced, 0 if none: libfuse moves a spliced reply through a pipe
 * that holds the data, its header and three pages more, and a pipe grows past
 * /proc/sys/fs/pipe-max-size (1 MiB by default) only with CAP_SYS_RESOURCE, which root may lack (a
 * container's). Then reads are made a little smaller than max_io rather than not spliced.
 */
static unsigned splice_read_size(unsigned max_io) {
  long page = sysconf(_SC_PAGESIZE);
  int p[2];
  if (page <= 0 || pipe2(p, O_CLOEXEC) != 0) return 0;
  unsigned n = 0;
  if (fcntl(p[0], F_SETPIPE_SZ, (int)(max_io + 4 * page)) >= 0) n = max_io;
  else {
    long most = 0;
    FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
    if (f) {
      if (fscanf(f, "%ld", &most) != 1) most = 0;
      fclose(f);
    }
    if (most - 4 * page >= 256 * 1024 && fcntl(p[0], F_SETPIPE_SZ, (int)most) >= 0) n = (unsigned)(most - 4 * page);
  }
  close(p[0]);
  close(p[1]);
  return n < max_io ? n - n % (unsigned)page : max_io;
}

/* mount(mountpoint, options: string[], maxIo: number, handler, entryTimeout: number) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (current) { napi_throw_error(env, "EBUSY", "already mounted"); return NULL; }
  char mnt[4096];
  size_t len;
  NAPI_CALL(env, napi_get_value_string_utf8(env, argv[0], mnt, sizeof mnt, &len));
  uint32_t nopts = 0;
  NAPI_CALL(env, napi_get_array_length(env, argv[1], &nopts));
  int32_t maxio = 1 << 20;
  NAPI_CALL(env, napi_get_value_int32(env, argv[2], &maxio));
  unsigned spliced = splice_read_size((unsigned)maxio);
  unsigned max_read_n = spliced ? spliced : (unsigned)maxio;
  char **fargv = calloc(nopts * 2 + 4, sizeof(char *));
  int fargc = 0;
  fargv[fargc++] = strdup("dhtfs");
  char max_read[64];
  snprintf(max_read, sizeof max_read, "max_read=%u", max_read_n);
  fargv[fargc++] = strdup("-o");
  fargv[fargc++] = strdup(max_read);
  for (uint32_t i = 0; i < nopts; i++) {
    napi_value v;
    char buf[1024];
    NAPI_CALL(env, napi_get_element(env, argv[1], i, &v));
    NAPI_CALL(env, napi_get_value_string_utf8(env, v, buf, sizeof buf, &len));
    fargv[fargc++] = strdup("-o");
    fargv[fargc++] = strdup(buf);
  }
  struct fuse_args args = FUSE_ARGS_INIT(fargc, fargv);
  mount_t *m = calloc(1, sizeof *m);
  m->max_io = (unsigned)maxio;
  m->max_read = max_read_n;
  m->splice = spliced > 0;
  m->entry_timeout = 0;
  if (argc >= 5 && napi_get_value_double(env, argv[4], &m->entry_timeout) != napi_ok) m->entry_timeout = 0;
  napi_value name;
  NAPI_CALL(env, napi_create_string_utf8(env, "dhtfs-fuse", NAPI_AUTO_LENGTH, &name));
  if (napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &m->tsfn) != napi_ok) {
    free(m);
    napi_throw_error(env, NULL, "cannot create the request queue");
    return NULL;
  }
  current = m;
  m->se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  fuse_opt_free_args(&args);
  for (int i = 0; i < fargc; i++) free(fargv[i]);
  free(fargv);
  if (!m->se) {
    current = NULL;
    NAPI_OK(napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort));
    free(m);
    napi_throw_error(env, "EINVAL", "fuse_session_new failed (bad mount options?)");
    return NULL;
  }
  if (fuse_session_mount(m->se, mnt) != 0) {
    fuse_session_destroy(m->se);
    current = NULL;
    NAPI_OK(napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort));
    free(m);
    napi_throw_error(env, "EIO", "fuse_mount failed (is /dev/fuse there, and the mount point an empty directory?)");
    return NULL;
  }
  /* Same descriptor, same reads and writes; see "direct I/O and mmap". Without the hooks the mount
   * works as before, with direct_mmap 0. */
  if (fuse_session_custom_io(m->se, &custom_io, fuse_session_fd(m->se)) != 0)
    fprintf(stderr, "dhtfs: libfuse refused custom I/O: only write-only files bypass the page cache\n");
  m->running = 1;
  if (pthread_create(&m->thread, NULL, loop_thread, m) != 0) {
    fuse_session_unmount(m->se);
    fuse_session_destroy(m->se);
    current = NULL;
    NAPI_OK(napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort));
    free(m);
    napi_throw_error(env, NULL, "cannot start the FUSE loop thread");
    return NULL;
  }
  return NULL;
}

/* directMmap(): whether the kernel accepted FUSE_DIRECT_IO_ALLOW_MMAP (known once INIT is answered,
 * before the kernel sends any open). */
static napi_value js_direct_mmap(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  NAPI_CALL(env, napi_get_boolean(env, current && current->direct_mmap, &v));
  return v;
}

/* unmount(): ends the loop; the kernel mount goes when the loop thread unmounts. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  mount_t *m = current;
  if (!m) return NULL;
  if (m->running) {
    fuse_session_exit(m->se);
    /* fuse_session_exit only sets a flag: unmounting wakes the threads blocked reading /dev/fuse. */
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
    {"directMmap", NULL, js_direct_mmap, NULL, NULL, NULL, napi_default, NULL},
    {"setLocal", NULL, js_set_local, NULL, NULL, NULL, napi_default, NULL},
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
