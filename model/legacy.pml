/*
 * GlusterFS's file migration (dht_migrate_file, shared/reference/glusterfs-dht.md §3.3) and its client
 * rules (§3.4), abstracted to one file of one byte. SPIN must find the stale read of gluster#963 here.
 *
 * Two applications: app1 holds an fd opened before the migration; app2 looks the name up at any time,
 * opens, writes 1, fsyncs and notifies app1, which then reads. The migrator can crash at every step and
 * is restarted as GlusterFS's next rebalance run would treat what it left (§5.7).
 *
 * Steps (labels step_*) carry the names of LEGACY_STEPS in src/rebalance/steps.ts.
 */

#define SRC 1
#define DST 2

/* permission bits of a file, as DHT classifies them */
#define NORMAL 0   /* the user's mode M */
#define PHASE1 1   /* M | S_ISGID | S_ISVTX */
#define LINKTO 2   /* exactly 01000 */

#define GARBAGE 9  /* bytes that were never written by an application */

byte src_data = 0;
bool src_exists = 1;
byte src_mode = NORMAL;
bool src_lx = 0;            /* linkto xattr on src (-> dst) */

byte dst_data = GARBAGE;
bool dst_exists = 0;
byte dst_mode = LINKTO;
bool dst_lx = 0;            /* linkto xattr on dst (-> src) */

bool notified = 0;
byte runs = 0;
#define MAX_RUNS 2

/* A fresh lookup by name: the name hashes to dst. */
inline lookup(res) {
  atomic {
    if
    :: dst_exists && dst_mode == LINKTO && dst_lx ->
         /* follow the linkto to src; accept it if it is a data file */
         if
         :: src_exists && !(src_mode == LINKTO && src_lx) -> res = SRC
         :: else -> res = DST   /* lookup everywhere: the data file is on dst */
         fi
    :: dst_exists && !(dst_mode == LINKTO && dst_lx) -> res = DST
    :: else -> res = SRC        /* no entry on hashed: lookup everywhere finds src */
    fi
  }
}

/* dht_readv_cbk: only phase 2 (or ENOENT) redirects; phase 1 is served from src. */
inline fd_read(fd, v) {
  atomic {
    if
    :: fd == SRC && (src_mode == LINKTO || !src_exists) -> lookup(fd)
    :: else -> skip
    fi;
    if
    :: fd == SRC -> v = src_data
    :: else -> v = dst_data
    fi
  }
}

/* dht_writev_cbk: write where the fd is; phase 1 mirrors to dst afterwards, phase 2 redirects. */
inline fd_write(fd, val) {
  if
  :: fd == SRC ->
       atomic {
         if
         :: src_exists && src_mode != LINKTO -> src_data = val; mirror = (src_mode == PHASE1)
         :: else -> lookup(fd); redo = 1
         fi
       }
  :: else -> atomic { dst_data = val }
  fi;
  if
  :: mirror -> atomic { dst_data = val }; mirror = 0
  :: redo -> atomic { if :: fd == SRC -> src_data = val :: else -> dst_data = val fi }; redo = 0
  :: else -> skip
  fi
}

active proctype app1() {
  byte fd = SRC;   /* opened before the migration started */
  byte v;
  notified;
  fd_read(fd, v);
  if
  :: fd == SRC -> printf("app1 reads %d through its fd on src\n", v)
  :: else -> printf("app1 reads %d through its fd on dst\n", v)
  fi;
  assert(v == 1)   /* S1: a read after app2's write+fsync+notify returns it */
}

active proctype app2() {
  byte fd;
  bool mirror = 0;
  bool redo = 0;
  lookup(fd);
  if
  :: fd == SRC -> printf("app2 looks the name up and opens the file on src\n")
  :: else -> printf("app2 looks the name up and opens the file on dst\n")
  fi;
  fd_write(fd, 1);
  /* fsync: acknowledged by the brick the fd is on */
  printf("app2 wrote 1 and fsynced; notifies app1\n");
  notified = 1
}

active proctype migrator() {
  byte v;
restart:
  if
  :: runs < MAX_RUNS -> runs++
  :: else -> goto done
  fi;
  /* GlusterFS's next run: if dst already looks like the data file, hashed == cached and nothing moves. */
  if
  :: dst_exists && dst_mode != LINKTO -> goto done
  :: else -> skip
  fi;
step_create_dst:
  atomic { printf("migrator: create-dst\n"); dst_exists = 1; dst_mode = LINKTO; dst_lx = 1 };
  if :: goto crash :: skip fi;
step_phase1:
  atomic { printf("migrator: phase1\n"); src_lx = 1; src_mode = PHASE1 };
  if :: goto crash :: skip fi;
step_copy:
  atomic { v = src_data };
  atomic { printf("migrator: copy\n"); dst_data = v };
  if :: goto crash :: skip fi;
step_dst_data:
  atomic { printf("migrator: dst-data\n"); dst_mode = NORMAL };
  if :: goto crash :: skip fi;
step_src_linkto:
  atomic { printf("migrator: src-linkto\n"); src_mode = LINKTO };
  if :: goto crash :: skip fi;
step_truncate_src:
  atomic { printf("migrator: truncate-src\n"); src_data = GARBAGE };
  if :: goto crash :: skip fi;
step_dst_remove_linkto:
  atomic { printf("migrator: dst-remove-linkto\n"); dst_lx = 0 };
  if :: goto crash :: skip fi;
step_unlink_src:
  atomic { printf("migrator: unlink-src\n"); src_exists = 0 };
  goto done;
crash:
  printf("migrator: crash\n");
  /* exit-path cleanup does not run; locks go with the connection */
  goto restart;
done:
  skip
}
