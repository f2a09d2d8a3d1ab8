/*
 * Name-taking calls beneath a held brick-root descriptor, for DiskStorage (issue 17 item 7, issue 20
 * item 11). Node's fs has no *at calls: a path joined onto the brick's folder is resolved again by the
 * kernel on every call, through whatever a local user of the host renamed or swapped meanwhile, and a
 * brick path near PATH_MAX is longer than PATH_MAX once prefixed with the folder.
 *
 * Every call takes the root descriptor (openRoot) and a path relative to it ('' is the root). The parent
 * of the last component is resolved with openat2(2) RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS (a symlink anywhere above the last component: ELOOP; a file there: ENOTDIR; no
 * way out of the root: EXDEV), then the *at call acts on the last component without following it. On a
 * kernel without openat2 (before 5.6, or where seccomp answers ENOSYS for it), the parent is reached by an openat
 * O_PATH | O_DIRECTORY | O_NOFOLLOW walk, one component at a time, from the root descriptor (".." refused).
 *
 * Errors are thrown as Errors whose `code` is the errno's name (ELOOP, ENOENT, ...).
 *
 * Also here: the storage watchdog (issue 17 item 4): a native thread that takes the brick down when one
 * storage call has been in progress longer than a limit (see watchdogStart below).
 */
#define _GNU_SOURCE
#include "../check.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

static void at_throw(napi_env env, int err) {
  const char *code = strerrorname_np(err);
  napi_throw_error(env, code ? code : "EIO", strerror(err));
}

/* 0: openat2 works; 1: it is missing (ENOSYS, or refused by seccomp with EPERM): the openat walk. */
static atomic_int no_openat2 = 0;

/* The per-component walk: `dir` (a directory path relative to root, len bytes) opened O_PATH. */
static int walk_open(int root, const char *dir, size_t len) {
  int fd = fcntl(root, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return -1;
  size_t i = 0;
  char comp[NAME_MAX + 1];
  while (i < len) {
    size_t j = i;
    while (j < len && dir[j] != '/') j++;
    size_t n = j - i;
    if (n == 0 || (n == 1 && dir[i] == '.')) {
      i = j + 1;
      continue;
    }
    if (n > NAME_MAX) {
      close(fd);
      errno = ENAMETOOLONG;
      return -1;
    }
    if (n == 2 && dir[i] == '.' && dir[i + 1] == '.') {
      close(fd);
      errno = EXDEV;
      return -1;
    }
    memcpy(comp, dir + i, n);
    comp[n] = 0;
    int next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;
    if (next < 0) {
      /* A symlink opened O_PATH|O_NOFOLLOW with O_DIRECTORY is ENOTDIR: tell it as ELOOP, as openat2 does. */
      struct stat st;
      if (err == ENOTDIR && fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
      close(fd);
      errno = err;
      return -1;
    }
    close(fd);
    fd = next;
    i = j + 1;
  }
  return fd;
}

/* Opens `rel` (a path relative to root) beneath root with `flags`, no symlink anywhere in it. */
static int open_beneath(int root, const char *rel, size_t len, int flags, mode_t mode) {
  if (!atomic_load(&no_openat2)) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    const char *p;
    char small[PATH_MAX];
    if (len >= sizeof small) {
      errno = ENAMETOOLONG;
      return -1;
    }
    memcpy(small, rel, len);
    small[len] = 0;
    p = len == 0 ? "." : small;
    for (;;) {
      long fd = syscall(SYS_openat2, root, p, &how, sizeof how);
      if (fd >= 0) return (int)fd;
      if (errno == EAGAIN || errno == EINTR) continue; /* RESOLVE_* raced a rename elsewhere: again */
      if (errno == ENOSYS) {
        atomic_store(&no_openat2, 1);
        break;
      }
      return -1;
    }
  }
  /* The walk: the parent by components, then the last one with O_NOFOLLOW. */
  size_t slash = len;
  while (slash > 0 && rel[slash - 1] != '/') slash--;
  int dir = walk_open(root, rel, slash > 0 ? slash - 1 : 0);
  if (dir < 0) return -1;
  const char *last = rel + slash;
  size_t n = len - slash;
  char comp[NAME_MAX + 1];
  if (n > NAME_MAX) {
    close(dir);
    errno = ENAMETOOLONG;
    return -1;
  }
  if (n == 2 && last[0] == '.' && last[1] == '.') {
    close(dir);
    errno = EXDEV;
    return -1;
  }
  memcpy(comp, last, n);
  comp[n] = 0;
  int fd = openat(dir, n == 0 ? "." : comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
  int err = errno;
  close(dir);
  errno = err;
  return fd;
}

/*
 * Held parents (holdDirs/releaseDirs): while JavaScript holds them (one synchronous stretch of brick
 * work: DiskStorage releases them at the next microtask), a parent resolved once is reused by the
 * stretch's later calls instead of being resolved again: a create names the private directory five times
 * and its parent twice. Each was resolved beneath the root as any other (openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS), and a descriptor pins its directory exactly as the one a single call holds
 * between its openat2 and its *at call: a folder swapped for a symlink after it was resolved leaves the
 * calls in the directory itself, wherever it now is, never where the symlink points. A rename, an
 * exchange or an rmdir by the brick itself lets every held parent go (the names they were found under
 * may now name other directories, or none). At most HELD_MAX are held; past that a parent is resolved
 * and let go per call as before. Per thread: DiskStorage runs on the main thread only.
 */
#define HELD_MAX 8
typedef struct {
  int root, fd;
  size_t len;
  char *dir;
} held_t;
static __thread held_t held[HELD_MAX];
static __thread int held_n = 0;
static __thread int holding = 0;

static int held_find(int root, const char *dir, size_t len) {
  for (int i = 0; i < held_n; i++)
    if (held[i].root == root && held[i].len == len && memcmp(held[i].dir, dir, len) == 0) return held[i].fd;
  return -1;
}

static int is_held(int fd) {
  for (int i = 0; i < held_n; i++)
    if (held[i].fd == fd) return 1;
  return 0;
}

static void held_add(int root, const char *dir, size_t len, int fd) {
  assert(fd >= 0 && fd != root);
  if (!holding || held_n >= HELD_MAX) return;
  char *copy = malloc(len + 1);
  if (!copy) return;
  memcpy(copy, dir, len);
  copy[len] = 0;
  held[held_n++] = (held_t){.root = root, .fd = fd, .len = len, .dir = copy};
}

/* Lets every held parent go (their descriptors are closed). */
static void held_release(void) {
  for (int i = 0; i < held_n; i++) {
    close(held[i].fd);
    free(held[i].dir);
  }
  held_n = 0;
}

/*
 * Pinned directories (pinDir): the brick's own folders under its private `.glusterfs` (the folder new
 * names are made whole in, the gfid handle tree's first level), made 0700 by the brick, never named by a
 * client (a volume path cannot start with `.glusterfs`) and never renamed by the brick. Each is resolved
 * once beneath the root as any parent (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) and its descriptor
 * is kept for the storage's life: a create names two of them, and each resolution cost an openat2 and a
 * close. A pinned descriptor pins its directory as a held one does (a swap of the folder leaves the calls
 * in the directory itself, as long as it is beneath the root: see pin_at_t); the brick's own rename, exchange or rmdir of a pinned folder or of a folder
 * above one lets those pins go, and pinDir again replaces a pin (the brick makes its private folder again
 * when it went). Volume folders are never pinned: a swap of one is refused from the next stretch on.
 * An open-addressing index over a dense array; removal (rare) rebuilds the index. Per thread, as held_t.
 */
#define PIN_MAX 512
#define PIN_SLOTS 1024 /* a power of two, twice PIN_MAX */
#define PIN_FDS 65536  /* descriptors at or above this are not pinned (pinned_fd's bitmap) */
typedef held_t pin_t; /* the same record: the root, the folder's descriptor, its path */
static __thread pin_t pins[PIN_MAX];
static __thread int pin_n = 0;
static __thread int16_t pin_index[PIN_SLOTS];
static __thread int pin_index_ready = 0;
static __thread unsigned char pinned_fd[PIN_FDS / 8];
/*
 * A pinned folder is checked to be still beneath its root once per stretch before it is used: whoever can
 * enter the brick (its owner, root) could rename it, or a folder above it, out of the brick on the same
 * file system, and its descriptor would follow. The check climbs one ".." per component of its name
 * (one fstatat) and must reach the root's inode; a pin that fails it is let go, and its name is resolved
 * beneath the root again as any parent's (its descriptor, which the call may be using, is closed when
 * the stretch ends). pin_at: the root's device and inode, the stretch checked, and whether it failed.
 */
#define PIN_DEPTH_MAX 16
typedef struct {
  dev_t dev;
  ino_t ino;
  unsigned stretch;
  int gone;
} pin_at_t;
static __thread pin_at_t pin_at[PIN_MAX];
static __thread int pins_gone = 0;
static __thread unsigned stretch_n = 1; /* counts holdDirs: a pin checked in this stretch has it */

static uint32_t pin_hash(int root, const char *dir, size_t len) {
  uint32_t h = 2166136261u ^ (uint32_t)root;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)dir[i]) * 16777619u;
  return h;
}

static void pin_reindex(void) {
  for (int i = 0; i < PIN_SLOTS; i++) pin_index[i] = -1;
  for (int i = 0; i < pin_n; i++) {
    uint32_t s = pin_hash(pins[i].root, pins[i].dir, pins[i].len) & (PIN_SLOTS - 1);
    while (pin_index[s] >= 0) s = (s + 1) & (PIN_SLOTS - 1);
    pin_index[s] = (int16_t)i;
  }
  pin_index_ready = 1;
}

/* The slot of pins[] holding (root, dir), or -1 (see pin_slot, which checks it). */
static int pin_find(int root, const char *dir, size_t len) {
  if (pin_n == 0) return -1;
  assert(pin_index_ready);
  uint32_t s = pin_hash(root, dir, len) & (PIN_SLOTS - 1);
  for (int k = 0; k < PIN_SLOTS && pin_index[s] >= 0; k++, s = (s + 1) & (PIN_SLOTS - 1)) {
    pin_t *p = &pins[pin_index[s]];
    if (p->root == root && p->len == len && memcmp(p->dir, dir, len) == 0) return pin_index[s];
  }
  return -1;
}

static int is_pinned(int fd) { return fd >= 0 && fd < PIN_FDS && (pinned_fd[fd >> 3] & (1u << (fd & 7))); }

/* The slot of pins[] holding (root, dir), still beneath root (checked once a stretch, see pin_at_t), or -1. */
static int pin_slot(int root, const char *dir, size_t len) {
  int i = pin_find(root, dir, len);
  if (i < 0 || pin_at[i].gone) return -1;
  if (holding && pin_at[i].stretch == stretch_n) return i;
  char up[3 * PIN_DEPTH_MAX];
  size_t n = 0;
  for (size_t k = 0; k <= len; k++)
    if (k == len || dir[k] == '/') {
      assert(n + 3 <= sizeof up);
      memcpy(up + n, "../", 3);
      n += 3;
    }
  up[n - 1] = 0;
  struct stat st;
  if (fstatat(pins[i].fd, up, &st, 0) == 0 && st.st_dev == pin_at[i].dev && st.st_ino == pin_at[i].ino) {
    pin_at[i].stretch = holding ? stretch_n : 0;
    return i;
  }
  pin_at[i].gone = pins_gone = 1;
  return -1;
}

static void pin_drop_at(int i) {
  assert(i >= 0 && i < pin_n);
  int fd = pins[i].fd;
  assert(is_pinned(fd));
  pinned_fd[fd >> 3] &= (unsigned char)~(1u << (fd & 7));
  close(fd);
  free(pins[i].dir);
  pins[i] = pins[--pin_n];
  pin_at[i] = pin_at[pin_n];
}

/* Lets go every pin of `root` naming `dir` (len bytes) or a folder beneath it; every pin of root when dir is NULL. */
static void pin_drop(int root, const char *dir, size_t len) {
  int dropped = 0;
  for (int i = pin_n - 1; i >= 0; i--) {
    pin_t *p = &pins[i];
    if (p->root != root) continue;
    if (dir && !(p->len >= len && memcmp(p->dir, dir, len) == 0 && (p->len == len || p->dir[len] == '/' || len == 0))) continue;
    pin_drop_at(i);
    dropped = 1;
  }
  if (dropped) pin_reindex();
}

/*
 * Pins `dir` (len bytes, relative to root) with its descriptor fd, just resolved beneath root; false (fd
 * not taken) when full or too deep.
 */
static int pin_add(int root, const char *dir, size_t len, int fd) {
  if (pin_n >= PIN_MAX || fd < 0 || fd >= PIN_FDS) return 0;
  assert(!is_pinned(fd));
  int depth = 1;
  for (size_t i = 0; i < len; i++) depth += dir[i] == '/';
  struct stat rst;
  if (depth > PIN_DEPTH_MAX || fstat(root, &rst) != 0) return 0;
  pin_at[pin_n] = (pin_at_t){.dev = rst.st_dev, .ino = rst.st_ino, .stretch = holding ? stretch_n : 0, .gone = 0};
  char *copy = malloc(len + 1);
  if (!copy) return 0;
  memcpy(copy, dir, len);
  copy[len] = 0;
  pins[pin_n++] = (pin_t){.root = root, .fd = fd, .len = len, .dir = copy};
  pinned_fd[fd >> 3] |= (unsigned char)(1u << (fd & 7));
  pin_reindex();
  return 1;
}

/*
 * The parent directory of `rel` (opened O_PATH, or root itself) and its last component in `name`
 * (NAME_MAX + 1 bytes): "." for the root. Returns the descriptor, to release with put_dir, or -1. A
 * parent pinned or held is reused; one whose own parent is pinned is resolved beneath that one (one
 * component, no symlink: the handle tree's second level), the others beneath the root.
 */
static int parent_of(int root, const char *rel, char *name) {
  size_t len = strlen(rel);
  size_t slash = len;
  while (slash > 0 && rel[slash - 1] != '/') slash--;
  size_t n = len - slash;
  if (n > NAME_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  if (len == 0) {
    strcpy(name, ".");
    return root;
  }
  if ((n == 2 && rel[slash] == '.' && rel[slash + 1] == '.') || (n == 1 && rel[slash] == '.') || n == 0 || rel[0] == '/') {
    errno = EINVAL; /* the brick never asks this (relPath): refuse rather than resolve */
    return -1;
  }
  assert(n > 0 && n <= NAME_MAX && slash <= len);
  memcpy(name, rel + slash, n);
  name[n] = 0;
  if (slash == 0) return root;
  size_t dlen = slash - 1;
  int p = pin_slot(root, rel, dlen);
  if (p >= 0) return pins[p].fd;
  int fd = held_find(root, rel, dlen);
  if (fd >= 0) return fd;
  size_t up = dlen;
  while (up > 0 && rel[up - 1] != '/') up--;
  int above = up > 0 ? pin_slot(root, rel, up - 1) : -1;
  if (above >= 0)
    fd = open_beneath(pins[above].fd, rel + up, dlen - up, O_PATH | O_DIRECTORY, 0);
  else
    fd = open_beneath(root, rel, dlen, O_PATH | O_DIRECTORY, 0);
  if (fd >= 0) held_add(root, rel, dlen, fd);
  return fd;
}

static void put_dir(int root, int fd) {
  if (fd >= 0 && fd != root && !is_held(fd) && !is_pinned(fd)) close(fd);
}

/* --- arguments ---------------------------------------------------------------------------------- */

static char *str_arg(napi_env env, napi_value v, size_t *out_len) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "a string");
    return NULL;
  }
  char *s = malloc(len + 1);
  if (!s) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  NAPI_OK(napi_get_value_string_utf8(env, v, s, len + 1, &len));
  if (strlen(s) != len) { /* a NUL inside */
    free(s);
    napi_throw_error(env, "EINVAL", "NUL in a path");
    return NULL;
  }
  if (out_len) *out_len = len;
  return s;
}

#define ARGS(n)                                                                      \
  size_t argc = n;                                                                   \
  napi_value argv[n];                                                                \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) { \
    napi_throw_type_error(env, NULL, "missing arguments");                           \
    return NULL;                                                                     \
  }

static int int_arg(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, NULL, "an integer");
    return 0;
  }
  return 1;
}

static napi_value undef(napi_env env) {
  napi_value u;
  NAPI_CALL(env, napi_get_undefined(env, &u));
  return u;
}

/* A boolean or an int32 as a JavaScript value (NULL after throwing). */
static napi_value js_bool(napi_env env, bool b) {
  napi_value v;
  NAPI_CALL(env, napi_get_boolean(env, b, &v));
  return v;
}
static napi_value js_int(napi_env env, int32_t n) {
  napi_value v;
  NAPI_CALL(env, napi_create_int32(env, n, &v));
  return v;
}

/* argv[0], a root's descriptor, and argv[1], a path under it (to free), NULL after throwing. */
static char *root_and_path(napi_env env, napi_value *argv, int32_t *root, size_t *len) {
  if (!int_arg(env, argv[0], root)) return NULL;
  return str_arg(env, argv[1], len);
}

/* errno of the last failed resolve_args (after throwing; the main thread's only). */
static int resolve_err = 0;

/* Resolves argv[1] beneath argv[0]: the parent's descriptor and `name`; -1 after throwing. */
static int resolve_args(napi_env env, napi_value vroot, napi_value vrel, int *root, char *name) {
  int32_t r;
  resolve_err = EINVAL;
  if (!int_arg(env, vroot, &r)) return -1;
  *root = r;
  /* The path copied once into the stack (a longer one, rare, through str_arg's heap copy). */
  char small[1024];
  size_t len = 0;
  NAPI_CALL_RET(env, napi_get_value_string_utf8(env, vrel, small, sizeof small, &len), -1);
  char *rel = small;
  /* V8 copies no part of a character that does not fit: the whole path is here only when a 4-byte
     character would still have fitted after it (a longer one, cut up to 3 bytes early, is read again). */
  if (len >= sizeof small - 4) {
    rel = str_arg(env, vrel, &len);
    if (!rel) return -1;
  } else if (strlen(small) != len) { /* a NUL inside */
    napi_throw_error(env, "EINVAL", "NUL in a path");
    return -1;
  }
  int d = parent_of(r, rel, name);
  int err = errno;
  if (rel != small) free(rel);
  if (d < 0) {
    resolve_err = err;
    at_throw(env, err);
  }
  return d;
}

/* Lets go the pins of the folder a path names and of those beneath it (the brick renamed or removed it). */
static void unpin_arg(napi_env env, int root, napi_value vrel) {
  if (pin_n == 0) return;
  size_t len;
  char *rel = str_arg(env, vrel, &len);
  if (!rel) return;
  pin_drop(root, rel, len);
  free(rel);
}

/* --- the calls ---------------------------------------------------------------------------------- */

/*
 * openRoot(path) -> fd: the brick's folder, O_PATH | O_DIRECTORY (a symlink as the folder itself is
 * followed: the admin's choice). Needs /proc (xattrs go through /proc/self/fd): ENOSYS without it.
 */
static napi_value at_open_root(napi_env env, napi_callback_info info) {
  ARGS(1);
  if (access("/proc/self/fd", X_OK) != 0) {
    napi_throw_error(env, "ENOSYS", "a brick needs /proc mounted (its xattr calls go through /proc/self/fd)");
    return NULL;
  }
  char *p = str_arg(env, argv[0], NULL);
  if (!p) return NULL;
  int fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int err = errno;
  free(p);
  if (fd < 0) {
    at_throw(env, err);
    return NULL;
  }
  return js_int(env, fd);
}

/*
 * lstat(root, rel, out: Float64Array(14)) -> boolean: false when there is no such name (ENOENT: every
 * negative lookup asks, so no exception for it). out: ino, mode, nlink, uid, gid, size, blocks, atime
 * sec, nsec, mtime sec, nsec, ctime sec, nsec, rdev.
 */
static napi_value at_lstat(napi_env env, napi_callback_info info) {
  ARGS(3);
  double *out;
  size_t n;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, argv[2], &type, &n, (void **)&out, NULL, NULL) != napi_ok || type != napi_float64_array || n < 14) {
    napi_throw_type_error(env, NULL, "lstat(root, rel, Float64Array(14))");
    return NULL;
  }
  int root;
  char name[NAME_MAX + 1];
  int d = resolve_args(env, argv[0], argv[1], &root, name);
  if (d < 0) {
    /* A missing directory above is a missing name too; the exception stands for anything else. */
    bool pending = false;
    NAPI_CALL(env, napi_is_exception_pending(env, &pending));
    if (resolve_err == ENOENT && pending) {
      napi_value e;
      NAPI_CALL(env, napi_get_and_clear_last_exception(env, &e));
      return js_bool(env, false);
    }
    return NULL;
  }
  struct stat st;
  int r = fstatat(d, name, &st, AT_SYMLINK_NOFOLLOW);
  int err = errno;
  put_dir(root, d);
  if (r != 0) {
    if (err == ENOENT) {
      return js_bool(env, false);
    }
    at_throw(env, err);
    return NULL;
  }
  out[0] = (double)st.st_ino;
  out[1] = st.st_mode;
  out[2] = (double)st.st_nlink;
  out[3] = st.st_uid;
  out[4] = st.st_gid;
  out[5] = (double)st.st_size;
  out[6] = (double)st.st_blocks;
  out[7] = (double)st.st_atim.tv_sec;
  out[8] = (double)st.st_atim.tv_nsec;
  out[9] = (double)st.st_mtim.tv_sec;
  out[10] = (double)st.st_mtim.tv_nsec;
  out[11] = (double)st.st_ctim.tv_sec;
  out[12] = (double)st.st_ctim.tv_nsec;
  out[13] = (double)st.st_rdev;
  return js_bool(env, true);
}

/* Runs `r` (the result of a call on the parent d), releases d, throws on failure. */
static napi_value finish(napi_env env, int root, int d, int r) {
  int err = errno;
  put_dir(root, d);
  if (r != 0) {
    at_throw(env, err);
    return NULL;
  }
  return undef(env);
}

/* mkdir(root, rel, mode) */
static napi_value at_mkdir(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t mode;
  if (!int_arg(env, argv[2], &mode)) return NULL;
  int root;
  char name[NAME_MAX + 1];
  int d = resolve_args(env, argv[0], argv[1], &root, name);
  if (d < 0) return NULL;
  return finish(env, root, d, mkdirat(d, name, (mode_t)mode));
}

/* unlink(root, rel, dir: boolean): unlinkat, AT_REMOVEDIR when dir. */
static napi_value at_unlink(napi_env env, napi_callback_info info) {
  ARGS(3);
  bool dir;
  if (napi_get_value_bool(env, argv[2], &dir) != napi_ok) {
    napi_throw_type_error(env, NULL, "unlink(root, rel, dir)");
    return NULL;
  }
  int root;
  char name[NAME_MAX + 1];
  int d = resolve_args(env, argv[0], argv[1], &root, name);
  if (d < 0) return NULL;
  int r = unlinkat(d, name, dir ? AT_REMOVEDIR : 0);
  int err = errno;
  put_dir(root, d);
  if (dir) {
    held_release(); /* a removed directory is held by no name any more */
    unpin_arg(env, root, argv[1]);
  }
  errno = err;
  return finish(env, root, -1, r);
}

/* rename(root, from, to) / link(root, existing, to) / exchange: both parents resolved beneath root. */
static napi_value two_names(napi_env env, napi_callback_info info, int link) {
  ARGS(3);
  int root;
  char a[NAME_MAX + 1], b[NAME_MAX + 1];
  int da = resolve_args(env, argv[0], argv[1], &root, a);
  if (da < 0) return NULL;
  int db = resolve_args(env, argv[0], argv[2], &root, b);
  if (db < 0) {
    put_dir(root, da);
    return NULL;
  }
  assert(da >= 0 && db >= 0);
  int r = link == 1 ? linkat(da, a, db, b, 0) : link == 2 ? renameat2(da, a, db, b, RENAME_EXCHANGE) : renameat(da, a, db, b);
  int err = errno;
  put_dir(root, da);
  put_dir(root, db);
  if (link != 1) {
    held_release(); /* a directory may have moved: its old name's held parent is no longer it */
    unpin_arg(env, root, argv[1]);
    unpin_arg(env, root, argv[2]);
  }
  if (r != 0) {
    at_throw(env, err);
    return NULL;
  }
  return undef(env);
}
static napi_value at_rename(napi_env env, napi_callback_info info) { return two_names(env, info, 0); }
static napi_value at_link(napi_env env, napi_callback_info info) { return two_names(env, info, 1); }
/* exchange(root, a, b): renameat2 RENAME_EXCHANGE, the two names' inodes swapped at once. */
static napi_value at_exchange(napi_env env, napi_callback_info info) { return two_names(env, info, 2); }

/* symlink(root, target, rel) */
static napi_value at_symlink(napi_env env, napi_callback_info info) {
  ARGS(3);
  char *target = str_arg(env, argv[1], NULL);
  if (!target) return NULL;
  int root;
  char name[NAME_MAX + 1];
  int d = resolve_args(env, argv[0], argv[2], &root, name);
  if (d < 0) {
    free(target);
    return NULL;
  }
  int r = symlinkat(target, d, name);
  int err = errno;
  free(target);
  errno = err;
  return finish(env, root, d, r);
}

/* readlink(root, rel) -> string */
static napi_value at_readlink(napi_env env, napi_callback_info info) {
  ARGS(2);
  int root;
  char name[NAME_MAX + 1];
  int d = resolve_args(env, argv[0], argv[1], &root, name);
  if (d < 0) return NULL;
  char buf[PATH_MAX + 1];
  ssize_t n = readlinkat(d, name, buf, sizeof buf - 1);
  int err = errno;
  put_dir(root, d);
  if (n < 0) {
    at_throw(env, err);
    return NULL;
  }
  napi_value v;
  NAPI_CALL(env, napi_create_string_utf8(env, buf, (size_t)n, &v));
  return v;
}

/*
 * readdir(root, rel) -> string[]: each entry's name after one character for its type: 'f' a regular
 * file, 'd' a directory, 'l' a symlink, 'o' anything else. The directory itself is opened beneath root
 * (no symlink in any component, the last one included), read through fdopendir.
 */
static napi_value at_readdir(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t root;
  size_t len;
  char *rel = root_and_path(env, argv, &root, &len);
  if (!rel) return NULL;
  int fd = open_beneath(root, rel, len, O_RDONLY | O_DIRECTORY | O_NONBLOCK, 0);
  int err = errno;
  free(rel);
  if (fd < 0) {
    at_throw(env, err);
    return NULL;
  }
  DIR *dir = fdopendir(fd);
  if (!dir) {
    err = errno;
    close(fd);
    at_throw(env, err);
    return NULL;
  }
  napi_value arr;
  NAPI_CALL(env, napi_create_array(env, &arr));
  uint32_t i = 0;
  char buf[NAME_MAX + 2];
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(dir);
    if (!e) break;
    if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
    unsigned char t = e->d_type;
    if (t == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        t = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_FIFO;
    }
    buf[0] = t == DT_REG ? 'f' : t == DT_DIR ? 'd' : t == DT_LNK ? 'l' : 'o';
    size_t n = strlen(e->d_name);
    memcpy(buf + 1, e->d_name, n);
    napi_value s;
    NAPI_CALL(env, napi_create_string_utf8(env, buf, n + 1, &s));
    NAPI_CALL(env, napi_set_element(env, arr, i++, s));
  }
  err = errno;
  closedir(dir);
  if (err) {
    at_throw(env, err);
    return NULL;
  }
  return arr;
}

/* chmod(root, rel, mode): never through a symlink (the last component one: EOPNOTSUPP, as lchmod). */
static napi_value at_chmod(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t mode;
  if (!int_arg(env, argv[2], &mode)) return NULL;
  int root;
  char name[NAME_MAX + 1];
  int d = resolve_args(env, argv[0], argv[1], &root, name);
  if (d < 0) return NULL;
  return finish(env, root, d, fchmodat(d, name, (mode_t)mode, AT_SYMLINK_NOFOLLOW));
}

/* lchown(root, rel, uid, gid) */
static napi_value at_lchown(napi_env env, napi_callback_info info) {
  ARGS(4);
  uint32_t uid, gid;
  if (napi_get_value_uint32(env, argv[2], &uid) != napi_ok || napi_get_value_uint32(env, argv[3], &gid) != napi_ok) {
    napi_throw_type_error(env, NULL, "lchown(root, rel, uid, gid)");
    return NULL;
  }
  int root;
  char name[NAME_MAX + 1];
  int d = resolve_args(env, argv[0], argv[1], &root, name);
  if (d < 0) return NULL;
  return finish(env, root, d, fchownat(d, name, uid, gid, AT_SYMLINK_NOFOLLOW));
}

/* lutimes(root, rel, atimeSec, atimeNsec, mtimeSec, mtimeNsec): utimensat to the nanosecond. */
static napi_value at_lutimes(napi_env env, napi_callback_info info) {
  ARGS(6);
  int64_t v[4];
  int ok = 1;
  for (int i = 0; ok && i < 4; i++) ok = napi_get_value_int64(env, argv[i + 2], &v[i]) == napi_ok;
  if (!ok || v[1] < 0 || v[1] > 999999999 || v[3] < 0 || v[3] > 999999999) {
    napi_throw_type_error(env, NULL, "lutimes(root, rel, atimeSec, atimeNsec, mtimeSec, mtimeNsec)");
    return NULL;
  }
  int root;
  char name[NAME_MAX + 1];
  int d = resolve_args(env, argv[0], argv[1], &root, name);
  if (d < 0) return NULL;
  struct timespec ts[2] = {{.tv_sec = v[0], .tv_nsec = v[1]}, {.tv_sec = v[2], .tv_nsec = v[3]}};
  return finish(env, root, d, utimensat(d, name, ts, AT_SYMLINK_NOFOLLOW));
}

/* An O_PATH descriptor of the last component itself, not followed; -1 after throwing. */
static int open_path(napi_env env, napi_value vroot, napi_value vrel) {
  int32_t root;
  if (!int_arg(env, vroot, &root)) return -1;
  size_t len;
  char *rel = str_arg(env, vrel, &len);
  if (!rel) return -1;
  int fd = open_beneath(root, rel, len, O_PATH | O_NOFOLLOW, 0);
  int err = errno;
  free(rel);
  if (fd < 0) at_throw(env, err);
  return fd;
}

/* truncate(root, rel, size): regular files only (a directory: EISDIR; anything else, a symlink too: EINVAL). */
static napi_value at_truncate(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t size;
  if (napi_get_value_int64(env, argv[2], &size) != napi_ok || size < 0) {
    napi_throw_type_error(env, NULL, "truncate(root, rel, size >= 0)");
    return NULL;
  }
  int fd = open_path(env, argv[0], argv[1]);
  if (fd < 0) return NULL;
  struct stat st;
  int r = fstat(fd, &st);
  if (r == 0 && !S_ISREG(st.st_mode)) {
    errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    r = -1;
  }
  if (r == 0) {
    /* The very inode the O_PATH descriptor holds, through its /proc link (no name resolved again). */
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    r = truncate(p, size);
  }
  int err = errno;
  close(fd);
  if (r != 0) {
    at_throw(env, err);
    return NULL;
  }
  return undef(env);
}

/*
 * Extended attributes of the last component, never followed: with the *xattrat calls (Linux 6.13) on
 * the parent's descriptor where the kernel has them; else the *xattr calls need a path, so the path is
 * the parent's /proc/self/fd link followed by the last component (l*xattr: not followed). Either way the
 * parent is pinned by its descriptor, so no rename of a folder above can redirect the call.
 */
#define SYS_setxattrat_ 463
#define SYS_getxattrat_ 464
#define SYS_listxattrat_ 465
#define SYS_removexattrat_ 466
struct xattr_args_ {
  uint64_t value __attribute__((aligned(8)));
  uint32_t size;
  uint32_t flags;
};
/* 1: the *xattrat calls answered ENOSYS once: /proc from then on. */
static atomic_int no_xattrat = 0;

typedef struct {
  int root, d;
  char name[NAME_MAX + 1];
  char path[NAME_MAX + 64];
} xat_t;

/* Resolves the parent; false after throwing. */
static int xat_open(napi_env env, napi_value vroot, napi_value vrel, xat_t *x) {
  x->d = resolve_args(env, vroot, vrel, &x->root, x->name);
  if (x->d < 0) return 0;
  assert(x->root >= 0);
  snprintf(x->path, sizeof x->path, "/proc/self/fd/%d/%s", x->d, x->name);
  return 1;
}

static ssize_t x_get(xat_t *x, const char *xn, void *buf, size_t size) {
  if (!atomic_load(&no_xattrat)) {
    struct xattr_args_ args = {.value = (uint64_t)(uintptr_t)buf, .size = (uint32_t)size, .flags = 0};
    long r = syscall(SYS_getxattrat_, x->d, x->name, AT_SYMLINK_NOFOLLOW, xn, &args, sizeof args);
    if (r >= 0 || errno != ENOSYS) return r;
    atomic_store(&no_xattrat, 1);
  }
  return lgetxattr(x->path, xn, buf, size);
}

static int x_set(xat_t *x, const char *xn, const void *value, size_t size) {
  if (!atomic_load(&no_xattrat)) {
    struct xattr_args_ args = {.value = (uint64_t)(uintptr_t)value, .size = (uint32_t)size, .flags = 0};
    long r = syscall(SYS_setxattrat_, x->d, x->name, AT_SYMLINK_NOFOLLOW, xn, &args, sizeof args);
    if (r >= 0 || errno != ENOSYS) return (int)r;
    atomic_store(&no_xattrat, 1);
  }
  return lsetxattr(x->path, xn, value, size, 0);
}

static int x_remove(xat_t *x, const char *xn) {
  if (!atomic_load(&no_xattrat)) {
    long r = syscall(SYS_removexattrat_, x->d, x->name, AT_SYMLINK_NOFOLLOW, xn);
    if (r >= 0 || errno != ENOSYS) return (int)r;
    atomic_store(&no_xattrat, 1);
  }
  return lremovexattr(x->path, xn);
}

static ssize_t x_list(xat_t *x, char *buf, size_t size) {
  if (!atomic_load(&no_xattrat)) {
    long r = syscall(SYS_listxattrat_, x->d, x->name, AT_SYMLINK_NOFOLLOW, buf, size);
    if (r >= 0 || errno != ENOSYS) return r;
    atomic_store(&no_xattrat, 1);
  }
  return llistxattr(x->path, buf, size);
}

static int xattr_name(napi_env env, napi_value v, char *name) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, name, XATTR_NAME_MAX + 1, &len) != napi_ok || len == 0 || len >= XATTR_NAME_MAX) {
    napi_throw_error(env, "ERANGE", "bad xattr name");
    return 0;
  }
  return 1;
}

/* getxattr(root, rel, name) -> Buffer | null (no such xattr) */
static napi_value at_getxattr(napi_env env, napi_callback_info info) {
  ARGS(3);
  char xn[XATTR_NAME_MAX + 1];
  if (!xattr_name(env, argv[2], xn)) return NULL;
  xat_t x;
  if (!xat_open(env, argv[0], argv[1], &x)) return NULL;
  char small[512];
  napi_value out;
  int err = 0;
  for (int attempt = 0; attempt < 4; attempt++) {
    ssize_t size = sizeof small;
    char *buf = small;
    if (attempt > 0) {
      size = x_get(&x, xn, NULL, 0);
      if (size < 0) {
        err = errno;
        break;
      }
      buf = malloc(size > 0 ? (size_t)size : 1);
      if (!buf) {
        err = ENOMEM;
        break;
      }
    }
    ssize_t n = x_get(&x, xn, buf, (size_t)size);
    err = errno;
    if (n >= 0) {
      void *data;
      assert(n <= size);
      napi_status st = napi_create_buffer_copy(env, (size_t)n, buf, &data, &out);
      if (buf != small) free(buf);
      put_dir(x.root, x.d);
      NAPI_CALL(env, st);
      return out;
    }
    if (buf != small) free(buf);
    if (err != ERANGE) break;
  }
  put_dir(x.root, x.d);
  if (err == ENODATA) {
    NAPI_CALL(env, napi_get_null(env, &out));
    return out;
  }
  at_throw(env, err);
  return NULL;
}

/* setxattr(root, rel, name, value: Uint8Array) */
static napi_value at_setxattr(napi_env env, napi_callback_info info) {
  ARGS(4);
  char xn[XATTR_NAME_MAX + 1];
  if (!xattr_name(env, argv[2], xn)) return NULL;
  void *data;
  size_t n;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, argv[3], &type, &n, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "setxattr(root, rel, name, Uint8Array)");
    return NULL;
  }
  xat_t x;
  if (!xat_open(env, argv[0], argv[1], &x)) return NULL;
  return finish(env, x.root, x.d, x_set(&x, xn, data, n));
}

/* removexattr(root, rel, name) */
static napi_value at_removexattr(napi_env env, napi_callback_info info) {
  ARGS(3);
  char xn[XATTR_NAME_MAX + 1];
  if (!xattr_name(env, argv[2], xn)) return NULL;
  xat_t x;
  if (!xat_open(env, argv[0], argv[1], &x)) return NULL;
  return finish(env, x.root, x.d, x_remove(&x, xn));
}

/* listxattr(root, rel) -> string[] */
static napi_value at_listxattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  xat_t x;
  if (!xat_open(env, argv[0], argv[1], &x)) return NULL;
  char *buf = NULL;
  ssize_t n = -1;
  int err = 0;
  for (int attempt = 0; attempt < 4; attempt++) {
    ssize_t size = x_list(&x, NULL, 0);
    if (size < 0) {
      err = errno;
      break;
    }
    free(buf);
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf) {
      err = ENOMEM;
      break;
    }
    n = x_list(&x, buf, (size_t)size);
    assert(n <= size);
    err = errno;
    if (n >= 0 || err != ERANGE) break;
  }
  put_dir(x.root, x.d);
  if (n < 0) {
    free(buf);
    at_throw(env, err);
    return NULL;
  }
  napi_value arr;
  NAPI_CALL(env, napi_create_array(env, &arr));
  uint32_t i = 0;
  for (ssize_t at = 0; at < n;) {
    size_t l = strnlen(buf + at, (size_t)(n - at));
    if (l > 0) {
      napi_value s;
      NAPI_CALL(env, napi_create_string_utf8(env, buf + at, l, &s));
      NAPI_CALL(env, napi_set_element(env, arr, i++, s));
    }
    at += (ssize_t)l + 1;
  }
  free(buf);
  return arr;
}

/* holdDirs(): parents resolved from now on are held for reuse until releaseDirs() (see held_t). */
static napi_value at_hold_dirs(napi_env env, napi_callback_info info) {
  (void)info;
  holding = 1;
  if (++stretch_n == 0) stretch_n = 1; /* 0: checked in no stretch */
  return undef(env);
}

/*
 * pinDir(root, rel) -> boolean: `rel`, a folder of the brick's own (see pin_t), resolved beneath root
 * (no symlink anywhere) and pinned for the storage's life, replacing a pin of that name; false where it
 * cannot be (no such folder, the table full): its calls then resolve it as any parent.
 */
static napi_value at_pin_dir(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t root;
  size_t len;
  char *rel = root_and_path(env, argv, &root, &len);
  if (!rel) return NULL;
  int ok = 0;
  if (len > 0 && rel[0] != '/') {
    pin_drop(root, rel, len);
    int fd = open_beneath(root, rel, len, O_PATH | O_DIRECTORY, 0);
    if (fd >= 0 && !(ok = pin_add(root, rel, len, fd))) close(fd);
  }
  free(rel);
  return js_bool(env, ok);
}

/* unpinAll(root): every pin of the root let go (the storage lets its root's descriptor go). */
static napi_value at_unpin_all(napi_env env, napi_callback_info info) {
  ARGS(1);
  int32_t root;
  if (!int_arg(env, argv[0], &root)) return NULL;
  pin_drop(root, NULL, 0);
  return undef(env);
}

/* releaseDirs(): every held parent let go, and none held until the next holdDirs(). */
static napi_value at_release_dirs(napi_env env, napi_callback_info info) {
  (void)info;
  holding = 0;
  held_release();
  if (pins_gone) { /* pins found moved out of the brick (pin_slot): their descriptors are used no more */
    for (int i = pin_n - 1; i >= 0; i--)
      if (pin_at[i].gone) pin_drop_at(i);
    pin_reindex();
    pins_gone = 0;
  }
  return undef(env);
}

/* open(root, rel, flags, mode) -> fd: O_NOFOLLOW and O_CLOEXEC added (the caller adds O_NONBLOCK). */
static napi_value at_open(napi_env env, napi_callback_info info) {
  ARGS(4);
  int32_t flags, mode;
  if (!int_arg(env, argv[2], &flags) || !int_arg(env, argv[3], &mode)) return NULL;
  int root;
  char name[NAME_MAX + 1];
  int d = resolve_args(env, argv[0], argv[1], &root, name);
  if (d < 0) return NULL;
  int fd = openat(d, name, flags | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
  int err = errno;
  put_dir(root, d);
  if (fd < 0) {
    at_throw(env, err);
    return NULL;
  }
  return js_int(env, fd);
}

/*
 * mknod(root, rel, mode, rdev): a FIFO, a socket, or a block or character device (rdev: glibc's makedev
 * encoding), as native/copy's mknod; regular files and directories: EPERM.
 */
static napi_value at_mknod(napi_env env, napi_callback_info info) {
  ARGS(4);
  uint32_t mode;
  double rdev = 0;
  if (napi_get_value_uint32(env, argv[2], &mode) != napi_ok || napi_get_value_double(env, argv[3], &rdev) != napi_ok || !(rdev >= 0) ||
      rdev > 4294967295.0) {
    napi_throw_type_error(env, NULL, "mknod(root, rel, mode, rdev)");
    return NULL;
  }
  if (!S_ISFIFO(mode) && !S_ISSOCK(mode) && !S_ISBLK(mode) && !S_ISCHR(mode)) {
    napi_throw_error(env, "EPERM", "only FIFOs, sockets and device nodes");
    return NULL;
  }
  int root;
  char name[NAME_MAX + 1];
  int d = resolve_args(env, argv[0], argv[1], &root, name);
  if (d < 0) return NULL;
  return finish(env, root, d, mknodat(d, name, (mode_t)mode, S_ISBLK(mode) || S_ISCHR(mode) ? (dev_t)rdev : 0));
}

/* --- the storage watchdog ------------------------------------------------------------------------ */

/*
 * The storage marks each synchronous call in a block of memory both sides see (watchdogBlock): the
 * wall-clock ms it began (0: none in progress), and the call's name and path as NUL-terminated bytes.
 * A native thread (watchdogStart) looks at it every quarter of the limit; a call in progress longer
 * than the limit (block's limit field, ms; 0: never) is a hung file system below the brick: the thread
 * writes one log line (pino's JSON, level fatal) to the log descriptor, shuts every socket of the
 * process down (clients see the brick down at once, even while the main thread stays stuck in the
 * kernel) and exits the process with the given code. takeDown(msg) does the same from JavaScript (the
 * health probe).
 *
 * Layout (Float64Array view over the first 16 bytes, bytes after): [0] since ms, [1] limit ms,
 * bytes 16..47 the call's name, 48..559 its path.
 */
#define WD_SIZE 560
#define WD_OP 16
#define WD_OP_LEN 32
#define WD_PATH 48
#define WD_PATH_LEN 512
_Static_assert(WD_OP + WD_OP_LEN <= WD_PATH && WD_PATH + WD_PATH_LEN <= WD_SIZE, "the watchdog block's fields fit it");
static _Alignas(8) unsigned char wd_block[WD_SIZE];
static pthread_t wd_thread;
static int wd_started = 0;
static int wd_exit_code = 1;
static int wd_log_fd = 2;
static char wd_brick[128];
static atomic_int wd_dying = 0;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (double)t.tv_sec * 1000.0 + (double)(t.tv_nsec / 1000000);
}

/* JSON string contents: printable ASCII kept, the rest escaped or dropped. */
static size_t json_text(char *out, size_t cap, const char *s, size_t max) {
  size_t o = 0;
  for (size_t i = 0; s[i] && i < max && o + 7 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20 || c >= 0x7f) {
      o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c < 0x20 ? c : 0xfffd);
    } else
      out[o++] = (char)c;
  }
  out[o] = 0;
  return o;
}

/* Logs, shuts the sockets down and exits: never returns. Safe from any thread (only system calls). */
static void take_down(const char *msg) {
  if (atomic_exchange(&wd_dying, 1)) {
    for (;;) pause(); /* another thread is at it */
  }
  char m[1024], b[256], line[1600];
  json_text(m, sizeof m, msg, 900);
  json_text(b, sizeof b, wd_brick, 120);
  int n = snprintf(line, sizeof line, "{\"level\":60,\"time\":%.0f,\"pid\":%d,\"brick\":\"%s\",\"exitCode\":%d,\"msg\":\"%s\"}\n", now_ms(), (int)getpid(), b,
                   wd_exit_code, m);
  if (n > 0) {
    ssize_t w = write(wd_log_fd, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
    (void)w;
  }
  /* Every socket down: the listener refuses, connections end (the process may not finish exiting while
     its main thread is stuck in a call that cannot be interrupted). */
  DIR *fds = opendir("/proc/self/fd");
  if (fds) {
    struct dirent *e;
    while ((e = readdir(fds))) {
      int fd = atoi(e->d_name);
      struct stat st;
      if (fd > 2 && fd != dirfd(fds) && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) shutdown(fd, SHUT_RDWR);
    }
    closedir(fds);
  }
  _exit(wd_exit_code);
}

static void *wd_loop(void *arg) {
  (void)arg;
  volatile double *f = (volatile double *)wd_block;
  for (;;) {
    double limit = f[1];
    double since = f[0];
    long step = limit > 0 ? (long)(limit / 4) : 1000;
    if (step < 20) step = 20;
    if (step > 1000) step = 1000;
    if (limit > 0 && since > 0 && now_ms() - since > limit && f[0] == since) {
      char op[WD_OP_LEN + 1], path[WD_PATH_LEN + 1], msg[900];
      memcpy(op, wd_block + WD_OP, WD_OP_LEN);
      op[WD_OP_LEN] = 0;
      memcpy(path, wd_block + WD_PATH, WD_PATH_LEN);
      path[WD_PATH_LEN] = 0;
      snprintf(msg, sizeof msg, "storage call %s('%.300s') stuck for %.0f ms (health-check-timeout %.0f ms): the file system below the brick hangs; taking the brick down",
               op, path, now_ms() - since, limit);
      take_down(msg);
    }
    struct timespec t = {.tv_sec = step / 1000, .tv_nsec = (step % 1000) * 1000000L};
    nanosleep(&t, NULL);
  }
  return NULL;
}

/* watchdogBlock() -> ArrayBuffer over the block (one per process). */
static napi_value wd_get_block(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value ab;
  if (napi_create_external_arraybuffer(env, wd_block, WD_SIZE, NULL, NULL, &ab) != napi_ok) {
    /* Runtimes that refuse external buffers: no watchdog. */
    napi_value n;
    NAPI_CALL(env, napi_get_null(env, &n));
    return n;
  }
  return ab;
}

/* watchdogStart(brickName, exitCode, logFd): starts the thread (once per process; later calls update the name, code and fd). */
static napi_value wd_start(napi_env env, napi_callback_info info) {
  ARGS(3);
  size_t len;
  int32_t code, fd;
  if (napi_get_value_string_utf8(env, argv[0], wd_brick, sizeof wd_brick, &len) != napi_ok || !int_arg(env, argv[1], &code) || !int_arg(env, argv[2], &fd))
    return NULL;
  wd_exit_code = code;
  wd_log_fd = fd;
  if (!wd_started) {
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&wd_thread, &a, wd_loop, NULL) != 0) {
      pthread_attr_destroy(&a);
      at_throw(env, errno);
      return NULL;
    }
    pthread_attr_destroy(&a);
    wd_started = 1;
  }
  return undef(env);
}

/* takeDown(msg): the same end as the watchdog's, for the health probe. */
static napi_value wd_take_down(napi_env env, napi_callback_info info) {
  ARGS(1);
  char msg[900];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], msg, sizeof msg, &len) != napi_ok) strcpy(msg, "health check failed");
  take_down(msg);
  return NULL;
}

/* Registers the calls above on `exports.at` (native/copy's module init calls this). */
void dhtfs_at_register(napi_env env, napi_value exports) {
  napi_value at, fn;
  NAPI_OK(napi_create_object(env, &at));
  static const struct {
    const char *name;
    napi_callback cb;
  } calls[] = {
      {"openRoot", at_open_root}, {"lstat", at_lstat},       {"mkdir", at_mkdir},           {"unlink", at_unlink},
      {"rename", at_rename},      {"link", at_link},         {"symlink", at_symlink},       {"readlink", at_readlink},
      {"readdir", at_readdir},    {"chmod", at_chmod},       {"lchown", at_lchown},         {"lutimes", at_lutimes},
      {"truncate", at_truncate},  {"getxattr", at_getxattr}, {"setxattr", at_setxattr},     {"removexattr", at_removexattr},
      {"listxattr", at_listxattr}, {"open", at_open},        {"mknod", at_mknod},           {"watchdogBlock", wd_get_block},
      {"watchdogStart", wd_start}, {"takeDown", wd_take_down}, {"exchange", at_exchange},
      {"holdDirs", at_hold_dirs}, {"releaseDirs", at_release_dirs}, {"pinDir", at_pin_dir}, {"unpinAll", at_unpin_all},
  };
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    NAPI_OK(napi_create_function(env, calls[i].name, NAPI_AUTO_LENGTH, calls[i].cb, NULL, &fn));
    NAPI_OK(napi_set_named_property(env, at, calls[i].name, fn));
  }
  NAPI_OK(napi_set_named_property(env, exports, "at", at));
}
