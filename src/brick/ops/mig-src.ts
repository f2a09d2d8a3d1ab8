/** The migration protocol at src (docs/MIGRATION.md): lease, copy ranges, freeze, commit, abort, cleanup, and the legacy order's linkto xattr. */
import { planted } from '../../common/plant.js';
import { EMOVED, FsError, codeOf, ignoreCodes } from '../../common/errors.js';
import type { Attr } from '../../wire/types.js';
import { O_RDONLY, O_RDWR, LOCK_GATE, LOCK_WRITERS, type LocalName } from '../../storage/storage.js';
import { formatMoved, type DirtyRecord, type Moved } from '../../migration/records.js';
import { MIGRATE_DIR, handlePath, isReg } from '../format.js';
import { type Decoded } from '../../wire/ops.js';
import type { BrickCore, Session } from '../core.js';
import { closeQuietly } from '../fds.js';
import { dropHandleIfLast } from '../handles.js';
import { setLinkto } from './entry.js';

/** How long a lease waits for the local writes of its file in flight to end before giving up (EBUSY). */
const LOCAL_WRITERS_WAIT_MS = 5000;

/**
 * step `lease`: a lease with a token on a regular file, tied to this connection. Where clients may
 * write the file themselves (local writes), src first closes the file's gate and takes its writers'
 * lock, both held until the commit or the abort: no local write is then in flight or can begin, and
 * every change goes through this brick, which tracks it (docs/MIGRATION.md, "Local writes").
 */
export async function migLease(b: BrickCore, s: Session, a: Decoded<'migLease'>): Promise<{ token: string; attr: Attr }> {
  const rel = b.walk(a.path);
  const { gfid, dst, leaseMs, links } = a;
  const check = (locked: boolean): Attr => {
    const st = b.st.lstat(rel);
    const at = b.attr(rel, st);
    if (!isReg(st) || at.linkto !== undefined) throw new FsError('EINVAL', `/${rel} is not a data file`);
    if (at.gfid !== gfid) throw new FsError('ESTALE', `/${rel} is another file now`);
    if (at.moved) throw new FsError(EMOVED, `/${rel} was migrated already`, { ...at.moved });
    // A file with several names migrates only with all of them named (migInstall gives each its place).
    if (at.nlink > 1 && !(links && links.length === at.nlink && links.includes(rel) && links.every((l) => b.st.lstat(l).ino === st.ino))) {
      throw new FsError('EMLINK', `/${rel} has ${at.nlink} names; they migrate only all named together`);
    }
    if (b.mig.isActive(gfid) || (!locked && b.writerLocks.has(gfid))) throw new FsError('EBUSY', `file ${gfid} is being migrated`);
    // The migrator's connection closed while local writes drained: no one would use the lease.
    if (!b.sessions.has(s.id)) throw new FsError('ENOTCONN', 'the migrator is gone');
    return at;
  };
  check(false);
  if (b.st.lock && !planted.has('lease-ignores-local-writers')) {
    b.writerLocks.set(gfid, b.st.open(handlePath(gfid), O_RDWR, 0));
    try {
      await lockOut(b, b.writerLocks.get(gfid)!);
    } catch (e) {
      unlockWriters(b, gfid);
      throw e;
    }
  }
  try {
    const at = check(true); // the file may have changed while local writes drained
    return { token: b.mig.lease(gfid, s.id, dst, '/' + rel, leaseMs, at.nlink > 1 ? links : undefined), attr: at };
  } catch (e) {
    unlockWriters(b, gfid);
    throw e;
  }
}

/** Closes the gate, then waits for local writes in flight to end and takes the writers' lock. */
export async function lockOut(b: BrickCore, h: number): Promise<void> {
  const lock = b.st.lock!.bind(b.st);
  const deadline = b.clock.now() + LOCAL_WRITERS_WAIT_MS;
  for (const byte of [LOCK_GATE, LOCK_WRITERS]) {
    while (!lock(h, byte, 'exclusive')) {
      if (b.clock.now() >= deadline) throw new FsError('EBUSY', 'local writes of the file did not end');
      await b.clock.sleep(1);
    }
  }
}

/** A migration of the file ended (commit or abort), or never began: local writes may go on. */
export function unlockWriters(b: BrickCore, gfid: string): void {
  const h = b.writerLocks.get(gfid);
  if (h === undefined) return;
  b.writerLocks.delete(gfid);
  // Closing the description drops both locks: the writers' one first would be no safer.
  closeQuietly(b, h);
}

export function migRenew(b: BrickCore, a: Decoded<'migRenew'>): Record<string, never> {
  b.mig.renew(a.gfid, a.token, a.leaseMs);
  return {};
}

/**
 * Where a brick on this host can read the file under migration directly (migPull), so that its bytes
 * need not cross the network twice through the migrator; null when this storage cannot be shared.
 */
export function migSource(b: BrickCore, a: Decoded<'migSource'>): { source: (LocalName & { path: string }) | null } {
  const gfid = a.gfid;
  b.mig.holds(gfid, a.token);
  const name = b.st.localName?.() ?? null;
  return { source: name ? { ...name, path: handlePath(gfid) } : null };
}

/**
 * steps `copy`, `recopy`, `final-copy` between hosts: a range of the file under migration, read for dst's
 * migFetch (peers.ts) under the lease's token, so that its bytes go from src's host to dst's directly.
 */
export async function migRead(b: BrickCore, a: Decoded<'migRead'>): Promise<{ data: Buffer }> {
  b.mig.holds(a.gfid, a.token);
  const h = b.st.open(handlePath(a.gfid), O_RDONLY, 0);
  try {
    return { data: await b.st.read(h, a.offset, a.length, Buffer.allocUnsafe(a.length)) };
  } finally {
    b.st.close(h);
  }
}

/** step `recopy`: the ranges changed since the last call. */
export function migDirty(b: BrickCore, a: Decoded<'migDirty'>): DirtyRecord & { size: number } {
  const gfid = a.gfid;
  const rec = b.mig.takeDirty(gfid, a.token);
  return { ...rec, size: b.st.lstat(handlePath(gfid)).size };
}

/**
 * step `copy`: the data segments of the file under migration from `offset` on (SEEK_DATA/SEEK_HOLE),
 * so that the copy skips its holes (GlusterFS since its bug 915554). At most `max` segments; `next` is
 * where to ask again (null: no more). What clients write meanwhile, holes included, is in the dirty
 * record as always.
 */
export function migSegments(b: BrickCore, a: Decoded<'migSegments'>): { segments: [number, number][]; next: number | null } {
  const gfid = a.gfid;
  b.mig.holds(gfid, a.token);
  const from = a.offset;
  const max = a.max ?? 4096;
  const hp = handlePath(gfid);
  const size = b.st.lstat(hp).size;
  const seek = b.st.seekData?.bind(b.st);
  if (!seek) return { segments: from < size ? [[from, size]] : [], next: null };
  const h = b.st.open(hp, O_RDONLY, 0);
  try {
    const segments: [number, number][] = [];
    let pos = from;
    while (pos < size && segments.length < max) {
      const d = seek(h, pos, false);
      if (d < 0 || d >= size) break;
      let e = seek(h, d, true);
      if (e < 0 || e > size) e = size;
      segments.push([d, e]);
      pos = e;
    }
    return { segments, next: pos < size && segments.length >= max ? pos : null };
  } finally {
    b.st.close(h);
  }
}

/** step `freeze`: changes are held from now on; the last ranges and the attributes to copy. */
export async function migFreeze(b: BrickCore, a: Decoded<'migFreeze'>): Promise<{ dirty: DirtyRecord; attr: Attr; xattrs: [string, Buffer][] }> {
  const gfid = a.gfid;
  const dirty = await b.mig.freeze(gfid, a.token);
  const hp = handlePath(gfid);
  const attr = b.attr(hp, b.st.lstat(hp), gfid);
  const xattrs: [string, Buffer][] = [];
  for (const n of b.st.listxattr(hp)) {
    if (!n.startsWith('user.') || b.X.reserved.some((r) => n.startsWith(r))) continue;
    const v = b.st.getxattr(hp, n);
    if (v) xattrs.push([n, v]);
  }
  return { dirty, attr, xattrs };
}

/** step `commit`: under the lease and frozen, the durable record "moved to dst". */
export async function migCommit(b: BrickCore, a: Decoded<'migCommit'>): Promise<{ moved: Moved }> {
  const { gfid, token } = a;
  // The file commits only while each of its names the lease found still names it: a rename of a
  // directory holding one (which no tracking of the file sees) moved that name, the copy could not be
  // installed there, and the cleanup then lost the file, or every name of a file with several (the
  // simulator's names workload, seeds 35 and 47). Refused, the migration is aborted and the file stays
  // here, whole, for a later pass.
  {
    const ino = b.st.lstat(handlePath(gfid)).ino;
    for (const l of b.mig.namesOf(gfid, token)) {
      let same = false;
      try {
        same = b.st.lstat(l).ino === ino;
      } catch (e) {
        ignoreCodes(e, 'ENOENT', 'ENOTDIR');
      }
      if (!same) throw new FsError('ESTALE', `/${l} no longer names the file: a name moved since the lease`);
    }
  }
  const rec = b.mig.beginCommit(gfid, token);
  const hp = handlePath(gfid);
  try {
    b.st.setxattr(hp, b.X.migration, formatMoved(rec));
    const h = b.st.open(hp, O_RDONLY, 0);
    try {
      if (!planted.has('commit-skips-fsync')) await b.st.fsync(h, false);
    } finally {
      b.st.close(h);
    }
  } catch (e) {
    b.mig.failCommit(gfid);
    try {
      b.st.removexattr(hp, b.X.migration);
    } catch {
      /* the original error matters */
    }
    throw e;
  }
  return { moved: b.mig.endCommit(gfid, token) };
}

export function migAbort(b: BrickCore, a: Decoded<'migAbort'>): Record<string, never> {
  b.mig.abort(a.gfid, a.token, 'migrator gave up');
  return {};
}

/** step `cleanup`: remove src's data file of a committed migration. */
export function migCleanup(b: BrickCore, a: Decoded<'migCleanup'>): Record<string, never> {
  const rel = b.walk(a.path);
  const gfid = a.gfid;
  const st = b.st.lstat(rel);
  const at = b.attr(rel, st);
  if (at.gfid !== gfid) throw new FsError('ESTALE', `/${rel} is another file now`);
  if (!at.moved) throw new FsError('EINVAL', `/${rel} has not been migrated`);
  b.keepingTimes(rel, true, () => b.st.unlink(rel));
  dropHandleIfLast(b, gfid);
  // The fds still open on the old copy keep saying EMOVED; the gfid itself is free here again (the
  // file may migrate back to this brick one day).
  for (const s of b.sessions.values()) for (const f of s.fds.values()) if (f.gfid === gfid && !f.tempRel) f.moved = at.moved;
  b.mig.forgetMoved(gfid);
  return {};
}

/**
 * Removes migration copies that no migration will install: not open here, and older than `olderThanMs`.
 * The rebalancer calls it after a complete run (which installed every committed copy it met).
 */
export function migSweep(b: BrickCore, a: Decoded<'migSweep'>): { removed: number } {
  const olderThan = a.olderThanMs;
  let names: string[];
  try {
    names = b.st.readdir(MIGRATE_DIR).map((e) => e.name);
  } catch (e) {
    if (codeOf(e) === 'ENOENT') return { removed: 0 };
    throw e;
  }
  const open = new Set<string>();
  for (const s of b.sessions.values()) for (const f of s.fds.values()) if (f.tempRel) open.add(f.tempRel);
  let removed = 0;
  const now = b.clock.wallNow();
  for (const n of names) {
    const rel = `${MIGRATE_DIR}/${n}`;
    if (open.has(rel)) continue;
    const st = b.st.lstat(rel);
    if (now - (st.ctime[0] * 1000 + st.ctime[1] / 1e6) < olderThan) continue; // ctime: the last change
    b.st.unlink(rel);
    removed++;
  }
  return { removed };
}

/**
 * The legacy (GlusterFS) protocol's xattr steps: set the linkto xattr on a data file (phase 1 on src)
 * or remove it (dst-remove-linkto on dst). `target` null removes it.
 */
export function legacySetLinkto(b: BrickCore, a: Decoded<'legacySetLinkto'>): Attr {
  const rel = b.walk(a.path);
  const st = b.st.lstat(rel);
  if (!isReg(st)) throw new FsError('EINVAL', `/${rel} is not a regular file`);
  if (a.target === null) {
    try {
      b.st.removexattr(rel, b.X.linkto);
    } catch (e) {
      ignoreCodes(e, 'ENODATA');
    }
  } else {
    setLinkto(b, rel, a.target);
  }
  return b.attrOf(rel);
}
