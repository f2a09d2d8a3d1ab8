/*
 * One byte's open file description lock (F_OFD_SETLK, never waiting): F_RDLCK, F_WRLCK or F_UNLCK.
 * 0 when taken (or let go), -1 with errno otherwise (EAGAIN or EACCES: another description holds a
 * conflicting lock). Local writes use byte 0 as the gate and byte 1 as the writers' lock
 * (docs/MIGRATION.md, "Local writes"): the FUSE addon (writers) and native/copy (bricks, library
 * clients) both take them with this.
 */
#ifndef DHTFS_BYTE_LOCK_H
#define DHTFS_BYTE_LOCK_H
#include <fcntl.h>
#include <string.h>

static int byte_lock(int fd, int byte, short type) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  return fcntl(fd, F_OFD_SETLK, &fl);
}
#endif
