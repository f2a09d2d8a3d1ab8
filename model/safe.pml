/*
 * dhtfs's safe migration protocol (docs/MIGRATION.md), abstracted to one file of one byte.
 * SPIN checks every interleaving exhaustively.
 *
 * - src's brick decides the file's fate. Before the commit, src is the only copy any client reads or
 *   writes; the copy on dst is a private temp file named by the migration's token. The commit is one
 *   brick-local step at src, under the migrator's lease, refused without it (fencing).
 * - src tracks writes made during the copy (dirty), and holds writes while frozen for the final copy.
 * - After the commit, src answers every fd operation and lookup with "moved" and the client installs
 *   dst's temp file at the name (idempotent) and moves its fds there.
 * - The migrator can crash at every step and is restarted; its lease can also expire while it runs
 *   (a hung migrator), after which its steps are refused.
 *
 * Checked: S1 (app1's read after app2's write+fsync+notify returns 1, through the brick or as a local
 * read; app2 writes through the brick or as a local write), S3 (dst never becomes data before
 * the commit; at the commit the copies are identical), S4 (every lookup finds the file), S2 and S5 at
 * the end (after a final recovery pass: the file holds 1 in one data copy, no leftover state), and no
 * deadlock (held writes are released when the lease goes).
 *
 * Steps (labels step_*) carry the names of SAFE_STEPS in src/rebalance/steps.ts.
 *
 * Mutations (spin -DMUT_...): each breaks one rule of the protocol and must make the check fail:
 *   MUT_NO_FREEZE_HOLD          src does not hold writes while frozen
 *   MUT_NO_DIRTY_TRACKING       src does not record writes made during the copy
 *   MUT_NO_FENCING              src commits without checking the migrator's lease
 *   MUT_READ_IGNORES_MOVED      src serves reads of a committed (moved) file
 *   MUT_INSTALL_BEFORE_COMMIT   dst's copy becomes the named data file before src commits
 *   MUT_TRACK_AT_ENTER          a write is tracked only if a migration was live when it entered
 *                               (a write in flight when the lease is granted is lost from the copy)
 *   MUT_FREEZE_NO_WAIT          freeze does not wait for writes in flight
 *   MUT_LOCAL_READ_NO_CHECK     a local read (FUSE mount on src's host) does not check for the commit record
 *   MUT_LEASE_IGNORES_WRITERS   src grants a lease without closing the gate to local writers and waiting
 *                               for those in flight (a local write then lands untracked during the copy)
 *   MUT_LOCAL_WRITE_NO_CHECK    a local write does not check for the commit record (it lands on src's
 *                               inode after the commit, where no one reads it)
 */

#define SRC 1
#define DST 2

/* the name on dst */
#define D_NONE 0
#define D_LINKTO 1   /* linkto -> src */
#define D_DATA 2     /* installed data file */

/* migration state kept in memory by src's brick */
#define M_NONE 0
#define M_TRACK 1
#define M_FROZEN 2

#define GARBAGE 9
#define MAX_RUNS 3
#define TOKENS 4     /* tokens 1..MAX_RUNS */

byte src_data = 0;
bool src_exists = 1;
bool moved = 0;            /* src's commit record (persisted xattr; kept in memory for open fds) */
byte moved_token = 0;
byte mig = M_NONE;
byte lease = 0;            /* token of the live lease at src; 0: none */
bool dirty = 0;

byte dst_name = D_NONE;
byte dst_data = GARBAGE;
byte tmp_data[TOKENS];
bool tmp_exists[TOKENS];

byte next_token = 1;
bool notified = 0;
bool app2_done = 0;
bool migrator_done = 0;
bool expired_once = 0;
bool fenced = 0;           /* the migrator's last step was refused */
byte inflight = 0;         /* writes entered at src and not landed yet */
bool locked = 0;           /* src holds the gate and the writers' lock exclusive (a migration starting or live) */
byte writers = 0;          /* local writes holding the writers' lock shared */

/* dst's brick: rename the committed temp file over the name. Idempotent. */
inline install(tok) {
  atomic {
    if
    :: tmp_exists[tok] -> dst_name = D_DATA; dst_data = tmp_data[tok]; tmp_exists[tok] = 0
    :: else -> assert(dst_name == D_DATA)   /* someone installed it already */
    fi
  }
}

/* src's brick drops the lease: the migration is aborted unless committed; held writes go on. */
inline drop_lease(tok) {
  atomic {
    if
    :: lease == tok -> lease = 0; mig = M_NONE; dirty = 0; locked = 0
    :: else -> skip
    fi
  }
}

/* A fresh lookup by name: the name hashes to dst. */
inline lookup(res) {
  byte seen;
  atomic { seen = dst_name };
  if
  :: seen == D_DATA -> res = DST
  :: else ->
       /* dst has a linkto to src, or nothing yet: ask src */
       atomic {
         if
         :: moved -> tok_seen = moved_token; res = DST
         :: !moved && src_exists -> res = SRC
         :: else -> res = 0
         fi
       };
       if
       :: res == DST -> install(tok_seen)
       :: res == 0 ->
            /* src is gone: it was cleaned after the install, so dst holds the data now */
            atomic { assert(dst_name == D_DATA) };   /* S4: the file is always found */
            res = DST
       :: else -> skip
       fi
  fi
}

/* An fd operation on src that src answers "moved": install, reopen on dst. */
inline follow(fd) {
  install(tok_seen);
  fd = DST
}

inline fd_read(fd, v) {
  if
  :: fd == SRC ->
       atomic {
         if
#ifndef MUT_READ_IGNORES_MOVED
         :: moved -> tok_seen = moved_token; go = 1
#endif
         :: else -> v = src_data; go = 0
         fi
       };
       if
       :: go -> follow(fd); atomic { v = dst_data }
       :: else -> skip
       fi
  :: else -> atomic { v = dst_data }
  fi
}

/*
 * The FUSE mount's local read (docs/MIGRATION.md, "Local reads"): a reader on src's host takes the data
 * from src's inode itself (held open: a cleanup does not take it away), and only then checks that inode
 * for the commit record; with a record, it reads through the brick (and follows the file).
 */
inline fd_read_local(fd, v) {
  if
  :: fd == SRC ->
       v = src_data;
       if
#ifndef MUT_LOCAL_READ_NO_CHECK
       :: moved -> fd_read(fd, v)
#endif
       :: else -> skip
       fi
  :: else -> fd_read(fd, v)
  fi
}

/*
 * Writes wait while src is frozen; after a commit they are answered "moved". A write at src is two
 * steps: it enters (counted in flight) and later lands; it is recorded as dirty in the migration that is
 * live when it lands, which may have begun after the write entered.
 */
inline fd_write(fd, val) {
  if
  :: fd == SRC ->
       atomic {
#ifndef MUT_NO_FREEZE_HOLD
         (mig != M_FROZEN || moved) ->
#endif
         if
         :: moved -> tok_seen = moved_token; go = 1
         :: else -> inflight++; tracked = (mig != M_NONE); go = 0
         fi
       };
       if
       :: go -> follow(fd); atomic { dst_data = val }
       :: else ->
            atomic {
              src_data = val;
#if defined(MUT_NO_DIRTY_TRACKING)
              skip;
#elif defined(MUT_TRACK_AT_ENTER)
              dirty = (dirty || tracked);
#else
              dirty = (dirty || mig != M_NONE);
#endif
              inflight--
            }
       fi
  :: else -> atomic { dst_data = val }
  fi
}

/*
 * A local write (docs/MIGRATION.md, "Local writes"): a writer on src's host writes src's inode itself.
 * It passes the gate into the writers' lock (shared), which src holds exclusive while a migration starts
 * or is live; then it checks the inode for the commit record; then the write lands and the lock is let
 * go. Refused at the gate, or with a record, the write goes through the brick.
 */
inline fd_write_local(fd, val) {
  if
  :: fd == SRC ->
       atomic {
         if
         :: !locked -> writers++; go = 1
         :: else -> go = 0
         fi
       };
       if
       :: go ->
            if
#ifndef MUT_LOCAL_WRITE_NO_CHECK
            :: moved -> atomic { writers-- }; fd_write(fd, val)
#endif
            :: else -> atomic { src_data = val; writers-- }
            fi
       :: else -> fd_write(fd, val)
       fi
  :: else -> fd_write(fd, val)
  fi
}

/* fsync acknowledges on the brick the fd is on; a moved file's fsync goes to dst. */
inline fd_fsync(fd) {
  if
  :: fd == SRC ->
       atomic {
         if
         :: moved -> tok_seen = moved_token; go = 1
         :: else -> go = 0
         fi
       };
       if
       :: go -> follow(fd)
       :: else -> skip
       fi
  :: else -> skip
  fi
}

active proctype app1() {
  byte fd = SRC;   /* opened before the migration started */
  byte v;
  byte tok_seen;
  bool go;
  notified;
  if
  :: true -> fd_read(fd, v)         /* through the brick */
  :: true -> fd_read_local(fd, v)   /* or as a FUSE mount on src's host does */
  fi;
  printf("app1 reads %d through its fd\n", v);
  assert(v == 1)   /* S1 */
}

active proctype app2() {
  byte fd;
  byte tok_seen;
  bool go;
  bool tracked;
  lookup(fd);
  if
  :: true -> fd_write(fd, 1)         /* through the brick */
  :: true -> fd_write_local(fd, 1)   /* or as a FUSE mount on src's host does */
  fi;
  fd_fsync(fd);
  notified = 1;
  app2_done = 1
}

/* A hung migrator: its lease expires while it still runs (at most once). */
active proctype lease_expiry() {
  if
  :: atomic { lease != 0 && !expired_once -> expired_once = 1; lease = 0; mig = M_NONE; dirty = 0; locked = 0 }
  :: skip
  fi
}

active proctype migrator() {
  byte t;
  byte v;
  bool d;
  byte runs = 0;
restart:
  if
  :: runs < MAX_RUNS -> runs++
  :: else -> goto done
  fi;
  /* A previous run committed: finish it. */
  if
  :: moved -> install(moved_token); goto step_cleanup
  :: else -> skip
  fi;
step_lease:
  /* src closes the gate to local writers, waits for those in flight, then grants the lease */
#ifndef MUT_LEASE_IGNORES_WRITERS
  atomic { lease == 0 && !locked -> locked = 1 };
  atomic { writers == 0 -> t = next_token; next_token++; lease = t; mig = M_TRACK; dirty = 0 };
#else
  atomic { lease == 0 -> t = next_token; next_token++; lease = t; mig = M_TRACK; dirty = 0 };
#endif
  if :: goto crash :: skip fi;
step_prepare_dst:
  atomic {
    if :: dst_name == D_NONE -> dst_name = D_LINKTO :: else -> skip fi;
    tmp_exists[t] = 1; tmp_data[t] = GARBAGE
  };
  if :: goto crash :: skip fi;
step_copy:
  atomic { v = src_data };
  atomic { tmp_data[t] = v };
  if :: goto crash :: skip fi;
step_recopy:
  /* fetch and clear the dirty record under the lease; re-copy what was dirtied */
  atomic {
    if
    :: lease == t -> d = dirty; dirty = 0
    :: else -> d = 0; fenced = 1
    fi
  };
  if :: fenced -> goto abort :: else -> skip fi;
  if
  :: d -> atomic { v = src_data }; atomic { tmp_data[t] = v }
  :: else -> skip
  fi;
  if :: goto crash :: skip fi;
step_freeze:
  atomic {
    if
    :: lease == t -> mig = M_FROZEN
    :: else -> fenced = 1
    fi
  };
  if :: fenced -> goto abort :: else -> skip fi;
#ifndef MUT_FREEZE_NO_WAIT
  (inflight == 0);   /* wait for the writes in flight */
#endif
  atomic {
    if
    :: lease == t -> d = dirty; dirty = 0
    :: else -> fenced = 1
    fi
  };
  if :: fenced -> goto abort :: else -> skip fi;
  if :: goto crash :: skip fi;
step_final_copy:
  if
  :: d -> atomic { v = src_data }; atomic { tmp_data[t] = v }
  :: else -> skip
  fi;
  /* ...and fsync of the temp file */
  if :: goto crash :: skip fi;
step_commit:
#ifdef MUT_INSTALL_BEFORE_COMMIT
  install(t);
#endif
  atomic {
    if
#ifndef MUT_NO_FENCING
    :: lease == t && mig == M_FROZEN ->
#else
    :: true ->
#endif
         assert(tmp_data[t] == src_data);   /* S3: the copies are identical at the commit */
         moved = 1; moved_token = t; lease = 0; mig = M_NONE; locked = 0
    :: else -> fenced = 1
    fi
  };
  if :: fenced -> goto abort :: else -> skip fi;
  if :: goto crash :: skip fi;
step_install:
  install(t);
  if :: goto crash :: skip fi;
step_cleanup:
  atomic { src_exists = 0 };
  if :: goto crash :: skip fi;
step_release:
  drop_lease(t);
  goto done;
abort:
  fenced = 0;
  goto restart;
crash:
  /* the connection closes: src drops the lease */
  drop_lease(t);
  goto restart;
done:
  migrator_done = 1
}

/* Invariants checked in every state. */
active proctype invariants() {
  end:
  do
  :: atomic { (dst_name == D_DATA && !moved) -> assert(0) }   /* S3: no second data copy before the commit */
  :: atomic { (dst_name == D_DATA && moved) -> assert(dst_data != GARBAGE) }
  od
}

/* At the end: one more access finishes any leftover state; then the state must be canonical. */
active proctype end_check() {
  byte tok_seen;
  (app2_done && migrator_done);
  atomic {
    if
    :: moved && dst_name != D_DATA -> install(moved_token)
    :: else -> skip
    fi;
    if
    :: moved -> src_exists = 0   /* cleanup of a committed src */
    :: else -> skip
    fi;
    /* S5: exactly one data copy; S2: it holds the acknowledged write */
    if
    :: moved -> assert(dst_name == D_DATA && !src_exists && dst_data == 1)
    :: else -> assert(src_exists && dst_name != D_DATA && src_data == 1)
    fi
  }
}
