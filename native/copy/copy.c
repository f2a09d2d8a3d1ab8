/*
 * copy_file_range(2) and syncfs(2) for the brick (DiskStorage.copyRange, syncAll), on libuv's worker
 * threads. Node's fs has no binding for either (nor for copy_file_range with offsets).
 *
 * copyRange(fdIn, fdOut, offset, length) -> Promise<bytes copied> (fewer only at the end of the source),
 * the copied range's write-out to disk begun (sync_file_range WRITE, not waited for);
 * rejects with an Error whose `code` is the errno name (EXDEV, EINVAL, EOPNOTSUPP and ENOSYS, on which
 * the caller copies through memory instead; ENOSPC, EBADF; EIO for the rest), even after a partial copy.
 * fgetxattr(fd, name), lgetxattr(path, name): see below (clients' local reads, the brick's xattrs).
 * lock(fd, byte, mode): see below (local writes: the gate and writers' locks).
 */
#define _GNU_SOURCE
#include "../check.h"
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include "../byte_lock.h"

typedef struct {
  int syncfs; /* syncFs(fd) rather than copyRange */
  int in, out;
  int64_t offset;
  int64_t length;
  int64_t copied;
  int err;
  napi_deferred deferred;
  napi_async_work work;
} job_t;

static void execute(napi_env env, void *data) {
  (void)env;
  job_t *j = data;
  assert(j && j->in >= 0 && (j->syncfs || (j->out >= 0 && j->offset >= 0 && j->length >= 0)));
  if (j->syncfs) {
    if (syncfs(j->in) != 0) j->err = errno;
    return;
  }
  /* Only the source's data segments are copied (SEEK_DATA/SEEK_HOLE): its holes stay holes in the copy,
     which the caller sizes with ftruncate (copy_file_range itself would write a hole's zeros out on a
     file system that cannot share extents). `copied` counts the bytes really copied. */
  int64_t pos = j->offset, end = j->offset + j->length;
  int eof = 0;
  while (pos < end && !eof && !j->err) {
    off_t d = lseek(j->in, pos, SEEK_DATA);
    off_t h;
    if (d < 0) {
      if (errno == ENXIO) break; /* no data from pos on */
      if (errno != EINVAL && errno != EOPNOTSUPP) {
        j->err = errno;
        break;
      }
      d = pos; /* no SEEK_DATA here: all of it is data */
      h = end;
    } else {
      if (d >= end) break;
      h = lseek(j->in, d, SEEK_HOLE);
      if (h < 0 || h > end) h = end;
    }
    int64_t at = d;
    while (at < h) {
      loff_t a = at, b = at;
      ssize_t n = copy_file_range(j->in, &a, j->out, &b, (size_t)(h - at), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        j->err = errno;
        break;
      }
      if (n == 0) {
        eof = 1; /* end of the source */
        break;
      }
      at += n;
      j->copied += n;
    }
    pos = h;
  }
  /* The copied range starts going to disk now, while the next ranges are copied: the fsync that makes
     the copy durable then has little left to wait for. (A write-out error shows at that fsync.) */
  if (j->copied > 0) sync_file_range(j->out, j->offset, j->length, SYNC_FILE_RANGE_WRITE);
}

static const char *errno_name(int e) {
  switch (e) {
    case EXDEV: return "EXDEV";
    case EINVAL: return "EINVAL";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOSYS: return "ENOSYS";
    case ENOSPC: return "ENOSPC";
    case EBADF: return "EBADF";
    default: return "EIO";
  }
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  /* A failure part way fails the whole range: the caller must not take a partial copy for a whole one. */
  if (j->err) {
    napi_value msg, code, err;
    NAPI_OK(napi_create_string_utf8(env, strerror(j->err), NAPI_AUTO_LENGTH, &msg));
    NAPI_OK(napi_create_string_utf8(env, errno_name(j->err), NAPI_AUTO_LENGTH, &code));
    NAPI_OK(napi_create_error(env, code, msg, &err));
    NAPI_OK(napi_set_named_property(env, err, "code", code));
    NAPI_OK(napi_reject_deferred(env, j->deferred, err));
  } else {
    napi_value v;
    NAPI_OK(napi_create_double(env, (double)j->copied, &v));
    NAPI_OK(napi_resolve_deferred(env, j->deferred, v));
  }
  NAPI_OK(napi_delete_async_work(env, j->work));
  free(j);
}

/* Runs the job on a worker thread; its promise. */
static napi_value queue(napi_env env, job_t *j, const char *what) {
  napi_value promise, name;
  NAPI_CALL(env, napi_create_promise(env, &j->deferred, &promise));
  NAPI_CALL(env, napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &name));
  NAPI_CALL(env, napi_create_async_work(env, NULL, name, execute, complete, j, &j->work));
  NAPI_CALL(env, napi_queue_async_work(env, j->work));
  return promise;
}

static napi_value copy_range(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) {
    napi_throw_type_error(env, NULL, "copyRange(fdIn, fdOut, offset, length)");
    return NULL;
  }
  job_t *j = calloc(1, sizeof *j);
  if (!j) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  int32_t in, out;
  if (napi_get_value_int32(env, argv[0], &in) != napi_ok || napi_get_value_int32(env, argv[1], &out) != napi_ok ||
      napi_get_value_int64(env, argv[2], &j->offset) != napi_ok || napi_get_value_int64(env, argv[3], &j->length) != napi_ok ||
      in < 0 || out < 0 || j->offset < 0 || j->length < 0) {
    free(j);
    napi_throw_type_error(env, NULL, "copyRange(fdIn, fdOut, offset, length): numbers >= 0");
    return NULL;
  }
  j->in = in;
  j->out = out;
  return queue(env, j, "dhtfs_copy_range");
}

/* syncFs(fd) -> Promise<0>: syncfs(2), everything of the file system the file is on, made durable. */
static napi_value sync_fs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "syncFs(fd)");
    return NULL;
  }
  job_t *j = calloc(1, sizeof *j);
  if (!j) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  j->syncfs = 1;
  j->in = fd;
  return queue(env, j, "dhtfs_syncfs");
}

/*
 * fgetxattr(fd, name) -> Buffer | null (no such xattr): an xattr of an open file. A client's local reads
 * check the brick's file they read for a migration's commit record on that very inode (by path, through
 * /proc/self/fd, @napi-rs/xattr reads the link itself). Throws (code EIO) on any other error.
 * lgetxattr(path, name) -> Buffer | null: an xattr of a path, not following a last symlink, for the
 * brick's Storage.getxattr. Throws with `code` the errno's name (ENOENT, ENOTDIR, EOPNOTSUPP, ...).
 * Both read small values (gfids, layouts, records: 16 to a few hundred bytes) in one system call, into
 * a buffer on the stack; @napi-rs/xattr asks for the size first, and reads after, every time.
 */
static void throw_errno(napi_env env, int err);
static napi_value get_xattr(napi_env env, int fd, const char *path, const char *name) {
  napi_value out;
  char small[512];
  for (int attempt = 0; attempt < 4; attempt++) {
    /* First the stack buffer; where the value is larger, its size, then the value. */
    ssize_t size = sizeof small;
    char *buf = small;
    if (attempt > 0) {
      size = path ? lgetxattr(path, name, NULL, 0) : fgetxattr(fd, name, NULL, 0);
      if (size < 0) break;
      buf = malloc(size > 0 ? (size_t)size : 1);
      if (!buf) {
        errno = ENOMEM;
        break;
      }
    }
    ssize_t n = path ? lgetxattr(path, name, buf, (size_t)size) : fgetxattr(fd, name, buf, (size_t)size);
    int err = errno;
    if (n >= 0) {
      void *data;
      assert(n <= size);
      napi_status st = napi_create_buffer_copy(env, (size_t)n, buf, &data, &out);
      if (buf != small) free(buf);
      NAPI_CALL(env, st);
      return out;
    }
    if (buf != small) free(buf);
    errno = err;
    if (errno != ERANGE) break; /* ERANGE: larger than the buffer (or it grew meanwhile) */
  }
  if (errno == ENODATA) {
    NAPI_CALL(env, napi_get_null(env, &out));
    return out;
  }
  if (!path) {
    napi_throw_error(env, "EIO", "fgetxattr failed");
    return NULL;
  }
  throw_errno(env, errno);
  return NULL;
}

static napi_value fget_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  char name[256];
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], name, sizeof name, &len) != napi_ok || len == 0 || len >= sizeof name - 1) {
    napi_throw_type_error(env, NULL, "fgetxattr(fd, name)");
    return NULL;
  }
  return get_xattr(env, fd, NULL, name);
}

/* A path argument, whole however long (the kernel answers ENAMETOOLONG): malloc'd; NULL after throwing. */
static char *path_arg(napi_env env, napi_value v) {
  size_t plen = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &plen) != napi_ok || plen == 0) {
    napi_throw_type_error(env, NULL, "a path");
    return NULL;
  }
  char *path = malloc(plen + 1);
  if (!path) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  NAPI_OK(napi_get_value_string_utf8(env, v, path, plen + 1, &plen));
  return path;
}

/* Throws the errno's name (EEXIST, ENOENT, ...) as `code`. */
static void throw_errno(napi_env env, int err) {
  const char *code = strerrorname_np(err);
  napi_throw_error(env, code ? code : "EIO", strerror(err));
}

static napi_value lget_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char name[256];
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, argv[1], name, sizeof name, &len) != napi_ok || len == 0 || len >= sizeof name - 1) {
    napi_throw_type_error(env, NULL, "lgetxattr(path, name)");
    return NULL;
  }
  /* The whole path, however long: the kernel answers ENAMETOOLONG, as it does @napi-rs/xattr. */
  char *path = path_arg(env, argv[0]);
  if (!path) return NULL;
  napi_value out = get_xattr(env, -1, path, name);
  free(path);
  return out;
}

/*
 * lock(fd, byte, mode) -> boolean: an open file description lock (F_OFD_SETLK, never waiting) on one
 * byte of the file: mode 0 unlocks, 1 locks shared, 2 exclusive. False when another description holds
 * a conflicting lock. Local writes use byte 0 as the gate and byte 1 as the writers' lock
 * (docs/MIGRATION.md, "Local writes"); Node's fs has no file locks. Throws (code EIO) on other errors.
 */
static napi_value ofd_lock(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd, byte, mode;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &byte) != napi_ok || napi_get_value_int32(env, argv[2], &mode) != napi_ok || byte < 0 || mode < 0 || mode > 2) {
    napi_throw_type_error(env, NULL, "lock(fd, byte, mode)");
    return NULL;
  }
  napi_value out;
  if (byte_lock(fd, byte, mode == 0 ? F_UNLCK : mode == 1 ? F_RDLCK : F_WRLCK) == 0) {
    NAPI_CALL(env, napi_get_boolean(env, true, &out));
    return out;
  }
  if (errno == EAGAIN || errno == EACCES) {
    NAPI_CALL(env, napi_get_boolean(env, false, &out));
    return out;
  }
  napi_throw_error(env, errno == EBADF ? "EBADF" : "EIO", "lock failed");
  return NULL;
}

/*
 * mknod(path, mode, rdev) -> undefined: a FIFO, a socket, or a block or character device (mode's type
 * bits say which; rdev: the device, glibc's makedev encoding, for device nodes) for the brick's
 * Storage.mknod; Node's fs has no mknod. A device node is made on the brick's disk as GlusterFS's
 * posix_mknod makes it: the brick never opens one (Brick.open refuses special files), and the brick
 * root is 0700, so only a mount's kernel uses it (docs/SECURITY.md). Regular files and directories are
 * refused (EPERM). Throws with `code` the errno's name (EEXIST, ENOENT, ...).
 */
static napi_value make_node(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint32_t mode;
  double rdev = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_uint32(env, argv[1], &mode) != napi_ok ||
      (argc >= 3 && napi_get_value_double(env, argv[2], &rdev) != napi_ok) || rdev < 0 || rdev > 4294967295.0) {
    napi_throw_type_error(env, NULL, "mknod(path, mode, rdev)");
    return NULL;
  }
  if (!S_ISFIFO(mode) && !S_ISSOCK(mode) && !S_ISBLK(mode) && !S_ISCHR(mode)) {
    napi_throw_error(env, "EPERM", "only FIFOs, sockets and device nodes");
    return NULL;
  }
  char *path = path_arg(env, argv[0]);
  if (!path) return NULL;
  int r = mknod(path, (mode_t)mode, S_ISBLK(mode) || S_ISCHR(mode) ? (dev_t)rdev : 0);
  int err = errno;
  free(path);
  if (r != 0) throw_errno(env, err);
  return NULL;
}

/*
 * lutimes(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec) -> undefined: utimensat(2) to the nanosecond,
 * not following a last symlink, for the brick's Storage.lutimes (Node's takes seconds as a double, which
 * keeps no more than microseconds of today's times). Throws with `code` the errno's name.
 */
static napi_value lutimes_ns(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int64_t v[4];
  int ok = napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 5;
  for (int i = 0; ok && i < 4; i++) ok = napi_get_value_int64(env, argv[i + 1], &v[i]) == napi_ok;
  if (!ok || v[1] < 0 || v[1] > 999999999 || v[3] < 0 || v[3] > 999999999) {
    napi_throw_type_error(env, NULL, "lutimes(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec)");
    return NULL;
  }
  char *path = path_arg(env, argv[0]);
  if (!path) return NULL;
  struct timespec ts[2] = {{.tv_sec = v[0], .tv_nsec = v[1]}, {.tv_sec = v[2], .tv_nsec = v[3]}};
  int r = utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
  int err = errno;
  free(path);
  if (r != 0) throw_errno(env, err);
  return NULL;
}

/*
 * seekData(fd, offset, hole) -> offset | -1: lseek(2) SEEK_DATA (hole false) or SEEK_HOLE (hole true)
 * from offset; -1 for ENXIO (no data from there on, or offset at or past the end). A file system without
 * them answers as if the file were all data. Throws with `code` the errno's name.
 */
static napi_value seek_data(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t off;
  bool hole;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &off) != napi_ok || napi_get_value_bool(env, argv[2], &hole) != napi_ok || off < 0) {
    napi_throw_type_error(env, NULL, "seekData(fd, offset, hole)");
    return NULL;
  }
  off_t r = lseek(fd, off, hole ? SEEK_HOLE : SEEK_DATA);
  napi_value v;
  if (r < 0) {
    int err = errno;
    if (err == ENXIO) {
      NAPI_CALL(env, napi_create_double(env, -1, &v));
      return v;
    }
    if (err == EINVAL || err == EOPNOTSUPP) {
      struct stat st;
      if (fstat(fd, &st) != 0) {
        throw_errno(env, errno);
        return NULL;
      }
      if (off >= st.st_size) r = -1;
      else r = hole ? st.st_size : off;
    } else {
      throw_errno(env, err);
      return NULL;
    }
  }
  NAPI_CALL(env, napi_create_double(env, (double)r, &v));
  return v;
}

/* --- fallocate (issue 20, item 11) -------------------------------------------------------------------
 * fallocate(fd, mode, offset, length) -> undefined: fallocate(2) with the caller's mode (the brick checks
 * it: allocate, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE, COLLAPSE_RANGE, INSERT_RANGE); Node's fs has none.
 * Throws with `code` the errno's name (EOPNOTSUPP where the file system lacks the mode, EINVAL, ENOSPC). */
static napi_value fallocate_fd(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd, mode;
  int64_t off, len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &mode) != napi_ok || napi_get_value_int64(env, argv[2], &off) != napi_ok ||
      napi_get_value_int64(env, argv[3], &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "fallocate(fd, mode, offset, length)");
    return NULL;
  }
  int r;
  do r = fallocate(fd, mode, (off_t)off, (off_t)len);
  while (r != 0 && errno == EINTR);
  if (r != 0) throw_errno(env, errno);
  return NULL;
}

/* --- RENAME_EXCHANGE (issue 20, item 11) -------------------------------------------------------------
 * exchange(from, to) -> undefined: renameat2(2) with RENAME_EXCHANGE, the two names' inodes swapped at
 * once (Brick exchange); Node's fs has no renameat2. Throws with `code` the errno's name. */
#include <stdio.h> /* renameat2, RENAME_EXCHANGE */
static napi_value exchange_names(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "exchange(from, to)");
    return NULL;
  }
  char *from = path_arg(env, argv[0]);
  if (!from) return NULL;
  char *to = path_arg(env, argv[1]);
  if (!to) {
    free(from);
    return NULL;
  }
  int r = renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_EXCHANGE);
  int err = errno;
  free(from);
  free(to);
  if (r != 0) throw_errno(env, err);
  return NULL;
}

/* at.c: name-taking calls beneath a held brick-root descriptor, and the storage watchdog (`exports.at`). */
void dhtfs_at_register(napi_env env, napi_value exports);

NAPI_MODULE_INIT() {
  dhtfs_at_register(env, exports);
  static const struct {
    const char *name;
    napi_callback cb;
  } calls[] = {
      {"fallocate", fallocate_fd},
      {"exchange", exchange_names},
      {"seekData", seek_data},
      {"lock", ofd_lock},
      {"copyRange", copy_range},
      {"syncFs", sync_fs},
      {"fgetxattr", fget_xattr},
      {"lgetxattr", lget_xattr},
      {"mknod", make_node},
      {"lutimes", lutimes_ns},
  };
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    napi_value fn;
    NAPI_CALL(env, napi_create_function(env, calls[i].name, NAPI_AUTO_LENGTH, calls[i].cb, NULL, &fn));
    NAPI_CALL(env, napi_set_named_property(env, exports, calls[i].name, fn));
  }
  return exports;
}
