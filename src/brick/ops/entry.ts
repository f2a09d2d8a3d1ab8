/** Entry operations: lookups, names made and removed (files, directories, linktos, symlinks, FIFOs), renames and links, listings. */
import { EMOVED, FsError, codeOf, ignoreCodes } from '../../common/errors.js';
import { encodeRanges } from '../../wire/layout-xattr.js';
import type { Attr, DirEntryAttr } from '../../wire/types.js';
import { O_ACCMODE, O_APPEND, O_CREAT, O_EXCL, O_RDWR, O_WRONLY, S_IFMT, S_IFIFO, S_IFSOCK, S_IFBLK, S_IFCHR, S_ISGID, S_ISVTX } from '../../storage/storage.js';
import { HANDLE_DIR, RENAME_DIR, LINKTO_MODE, parentOf, handlePath, isDir, isLnk, deviceOf, encodeLinkto } from '../format.js';
import type { Decoded } from '../../wire/ops.js';
import type { BrickCore, OpenFile, Session } from '../core.js';
import { addFd, forgetFd, release } from '../fds.js';
import { dirOfHandle, dropHandleIfLast, linkHandle, resolveGfid, setDirHandle } from '../handles.js';

/**
 * With `parentLayout` (and `parentCommit`), an ENOENT is answered only if the client's view of the
 * parent's layout on this brick is this brick's own: otherwise ELAYOUT, and the client refreshes
 * before it trusts the absence (lookup-optimize's check, in the same step as the lookup).
 */
export function lookup(b: BrickCore, a: Decoded<'lookup'>): Attr {
  const rel = b.walk(a.path);
  try {
    return b.attrOf(rel);
  } catch (e) {
    if (codeOf(e) === 'ENOENT') b.checkParentLayout(rel, a.parentLayout, a.parentCommit);
    throw e;
  }
}

export function lookupGfid(b: BrickCore, a: Decoded<'lookupGfid'>): Attr {
  const { rel, st } = resolveGfid(b, a.gfid);
  return b.attr(rel, st);
}

/** With `watch`, the session watches the new directory (watch.ts): it knows the directory is empty. */
/**
 * A directory. A copy made for a brick that lacks it (`keepTimes`: a new brick, or one that was down) is
 * durable before the reply: clients then count on it there, and a copy a power loss took back answered
 * ENOENT for the directory to every request below it (the simulator's journal disk found it, seed 497).
 */
export function mkdir(b: BrickCore, a: Decoded<'mkdir'>, s?: Session): Attr | Promise<Attr> {
  const rel = b.walk(a.path);
  if (rel === '') throw new FsError('EEXIST', 'the root exists');
  const { watch, mode, gfid, layout, uid, gid, atime, mtime } = a;
  b.checkParentLayout(rel, a.parentLayout, a.parentCommit);
  try {
    b.st.lstat(rel);
    throw new FsError('EEXIST', `mkdir /${rel}: file already exists`);
  } catch (e) {
    if (codeOf(e) !== 'ENOENT') throw e;
  }
  if (a.keepTimes) {
    const moved = adoptRenamedDir(b, rel, gfid);
    if (moved) return moved;
  }
  // Made whole under a private name (gfid, layout, owner, mode) and then renamed into place, so that a
  // power loss never leaves the name as a directory without its gfid, which no lock, rebalance or
  // lookup by gfid could take again (the simulator's journal disk found it, seed 497). The name was
  // free just now, and this brick alone changes its directory's names, so the rename takes no one's.
  b.ensureRenameDir();
  const tmp = `${RENAME_DIR}/${gfid}.dir`;
  b.makeFresh(
    tmp,
    () => b.st.rmdir(tmp),
    () => b.st.mkdir(tmp, mode),
  );
  try {
    // mkdir(2) takes no set-group-ID bit from its mode, only from the parent (here, the private
    // directory's: none): a copy of a directory made for a new brick must have all of its bits, and a
    // new one its parent's. The volume root's bit is in rootAttr, not on the brick's root.
    const parent = parentOf(rel);
    const inherited = (parent === '' ? (b.rootAttr()?.mode ?? 0) : b.st.lstat(parent).mode) & S_ISGID;
    if ((mode | inherited) & S_ISGID) {
      const made = b.st.lstat(tmp).mode;
      if (!(made & S_ISGID)) b.st.chmod(tmp, (made | mode | inherited) & 0o7777);
    }
    b.setGfid(tmp, gfid);
    if (layout) b.st.setxattr(tmp, b.X.dht, encodeRanges(layout));
    const g = b.newGid(rel, gid);
    if (uid !== undefined || g !== undefined) b.st.lchown(tmp, uid ?? -1, g ?? -1);
    // keepTimes (a copy made for a brick that lacks it): see keepingTimes.
    b.keepingTimes(rel, a.keepTimes, () => b.st.rename(tmp, rel));
  } catch (e) {
    try {
      b.st.rmdir(tmp);
    } catch {
      /* the original error matters */
    }
    throw e;
  }
  try {
    setDirHandle(b, rel, gfid);
    if (atime && mtime) b.st.lutimes(rel, atime, mtime);
  } catch (e) {
    try {
      b.st.rmdir(rel);
    } catch {
      /* the original error matters */
    }
    throw e;
  }
  if (watch && s) b.watches.add(s, rel);
  const made = b.attr(rel, b.st.lstat(rel), gfid);
  return a.keepTimes ? b.fsyncDir(parentOf(rel)).then(() => made) : made;
}

/**
 * A copy of a directory made for a brick that lacks it (a heal), where this brick holds that directory
 * (its gfid) under another name: a directory rename cut off midway (an error or a brick down on some
 * bricks) left it at the old name here and at the new one elsewhere. A new empty copy would be refused
 * (the gfid is in use), and the walk of a drain skipped the directory, its names here lost at the
 * commit (the simulator, --names --errors, seeds 12, 73 and 245). So the directory is renamed into
 * place, with everything in it: the rename is finished (or undone) here as the healed name has it.
 */
function adoptRenamedDir(b: BrickCore, rel: string, gfid: string): Promise<Attr> | null {
  const was = dirOfHandle(b, gfid);
  if (was === null || was === rel || rel.startsWith(`${was}/`)) return null;
  b.st.rename(was, rel);
  setDirHandle(b, rel, gfid);
  const made = b.attr(rel, b.st.lstat(rel), gfid);
  return Promise.all([b.fsyncDir(parentOf(was)), b.fsyncDir(parentOf(rel))]).then(() => made);
}

export function create(b: BrickCore, s: Session, a: Decoded<'create'>): { fd: number; attr: Attr } | Promise<{ fd: number; attr: Attr }> {
  const rel = b.walk(a.path);
  if (rel === '') throw new FsError('EEXIST', 'the root exists');
  const { mode, flags, gfid, uid, gid } = a;
  b.checkParentLayout(rel, a.parentLayout, a.parentCommit);
  const acc = flags & O_ACCMODE;
  const oflags = (acc === O_WRONLY || acc === O_RDWR ? acc : O_RDWR) | O_CREAT | O_EXCL | (flags & O_APPEND);
  let h = -1;
  try {
    b.makeWhole(rel, gfid, uid, gid, (tmp) => (h = b.st.open(tmp, oflags, mode)));
  } catch (e) {
    if (h >= 0) b.st.close(h);
    throw e;
  }
  const f: OpenFile = { h, gfid, flags: oflags };
  const fd = addFd(b, s, f);
  const data = a.data;
  if (data === undefined) return { fd, attr: b.attr(rel, b.st.fstat(h), gfid) };
  // Compound create: write the initial data and optionally close, in one round trip.
  return createWrite(b, s, fd, f, data, a.close, rel, gfid);
}

export async function createWrite(b: BrickCore, s: Session, fd: number, f: OpenFile, data: Uint8Array, close: boolean, rel: string, gfid: string): Promise<{ fd: number; attr: Attr }> {
  try {
    let off = 0;
    while (off < data.length) {
      const n = await b.st.write(f.h, off, data.subarray(off));
      if (n <= 0) throw new FsError('EIO', 'short write');
      off += n;
    }
    return { fd: close ? -1 : fd, attr: b.attr(rel, b.st.fstat(f.h), gfid) };
  } finally {
    if (close && s.fds.get(fd) === f) {
      forgetFd(b, s, fd);
      release(b, f);
    }
  }
}

export function mklinkto(b: BrickCore, a: Decoded<'mklinkto'>): Attr | Promise<Attr> {
  const rel = b.walk(a.path);
  if (rel === '') throw new FsError('EEXIST', 'the root exists');
  const { gfid, target, uid, gid } = a;
  b.checkParentLayout(rel, a.parentLayout, a.parentCommit);
  // keepTimes (a repair's linkto): see keepingTimes.
  if (!a.replace) return b.keepingTimes(rel, a.keepTimes, () => makeLinkto(b, rel, gfid, target, uid, gid));
  return replaceWithLinkto(b, rel, gfid, target, uid, gid);
}

export function replaceWithLinkto(b: BrickCore, rel: string, gfid: string, target: string, uid?: number, gid?: number): Attr | Promise<Attr> {
  // Replace whatever file holds the name, atomically: the name never goes missing (rename(2)).
  let replaced: string | null = null;
  try {
    const tst = b.st.lstat(rel);
    if (isDir(tst)) throw new FsError('EISDIR', `/${rel} is a directory`);
    replaced = b.readGfid(rel);
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
  const wait = b.mig.whenSettled(replaced);
  if (wait) return wait.then(b.watches.resumed(() => replaceWithLinkto(b, rel, gfid, target, uid, gid)));
  if (replaced === gfid && b.st.lstat(rel).mode === LINKTO_MODE) {
    // This file's linkto already (a client taking up its interrupted rename again): point it at target.
    setLinkto(b, rel, target);
    return b.attr(rel, b.st.lstat(rel), gfid);
  }
  b.ensureRenameDir();
  const tmp = `${RENAME_DIR}/${gfid}`;
  try {
    b.st.unlink(tmp); // a leftover of a crash between the two steps
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
  makeLinkto(b, tmp, gfid, target, uid, gid);
  if (replaced) b.mig.entryChanged(replaced);
  b.st.rename(tmp, rel);
  try {
    b.st.unlink(tmp); // still there if it and rel were one inode already (rename(2) then does nothing)
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
  if (replaced && replaced !== gfid) dropHandleIfLast(b, replaced);
  return b.attr(rel, b.st.lstat(rel), gfid);
}

/** The linkto xattr: the target brick's name, NUL-terminated as GlusterFS writes it. */
export function setLinkto(b: BrickCore, rel: string, target: string): void {
  b.st.setxattr(rel, b.X.linkto, encodeLinkto(target));
}

export function makeLinkto(b: BrickCore, rel: string, gfid: string, target: string, uid?: number, gid?: number): Attr {
  // A linkto of this file under another name holds the gfid's handle here: another hard link whose name
  // hashes to this brick, or a stale linkto left by an earlier rename (removed when it is next met).
  // This name becomes one more link to that inode, as GlusterFS's posix links a linkto to its gfid.
  try {
    const hp = handlePath(gfid);
    if (b.st.lstat(hp).mode === LINKTO_MODE && b.readLinkto(hp) !== null) {
      b.st.link(hp, rel);
      setLinkto(b, rel, target);
      return b.attr(rel, b.st.lstat(rel), gfid);
    }
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
  // Made whole under a private name and then linked into place (core.ts makeWhole), so that a power loss
  // never leaves the name as an empty file of mode 01000 without its xattrs: a data file to everyone,
  // hiding the file it stood for (the simulator's journal disk found it, seed 218). link(2), as O_EXCL,
  // fails with EEXIST where the name is taken.
  b.makeWhole(rel, gfid, uid, gid, (tmp) => {
    b.st.close(b.st.open(tmp, O_WRONLY | O_CREAT | O_EXCL, S_ISVTX));
    try {
      setLinkto(b, tmp, target);
    } catch (e) {
      b.unlinkQuietly(tmp);
      throw e;
    }
  });
  return b.attr(rel, b.st.lstat(rel), gfid);
}

export function unlink(b: BrickCore, a: Decoded<'unlink'>): Attr | Promise<Attr> {
  const rel = b.walk(a.path);
  const { gfid: wantGfid, onlyIfLinkto, ifNotOpen, ifOtherNames, clearIntent } = a;
  const st = b.st.lstat(rel);
  if (isDir(st)) throw new FsError('EISDIR', `/${rel} is a directory`);
  const at = b.attr(rel, st);
  if (ifOtherNames && at.nlink < 2) throw new FsError('EBUSY', `/${rel} is the file's only name`);
  const wait = b.mig.whenSettled(at.gfid);
  if (wait) return wait.then(b.watches.resumed(() => unlink(b, a)));
  if (wantGfid && at.gfid !== wantGfid) throw new FsError('ESTALE', `/${rel} is another file now`);
  if (onlyIfLinkto && at.linkto === undefined) throw new FsError('EBUSY', `/${rel} is not a linkto file`);
  if (ifNotOpen && at.gfid && b.openFdCount(at.gfid) > 0) throw new FsError('EBUSY', `/${rel} is open`);
  // A committed migration's old copy is not the file any more: the client must unlink dst's copy.
  if (at.linkto === undefined) b.refuseMoved(rel, at.gfid);
  b.mig.entryChanged(at.gfid);
  b.keepingTimes(rel, a.keepTimes, () => b.st.unlink(rel));
  if (clearIntent && at.gfid && at.nlink > 1) {
    try {
      b.clearRenameIntent(at.gfid);
    } catch (e) {
      // The name back, so that the mark stays with the rename's two names, where it shows and is
      // settled: left on a file of one name, it stayed (--errors seed 137: an EIO here).
      try {
        b.st.link(handlePath(at.gfid), rel);
      } catch {
        /* the original error matters */
      }
      throw e;
    }
  } else if (at.nlink === 2) forgetIntentOfOneName(b, at.gfid);
  dropHandleIfLast(b, at.gfid);
  return { ...at, nlink: Math.max(0, at.nlink - 1) };
}

/**
 * A file that an unlink or a rename over one of its names left with one name forgets an unfinished rename
 * it was marked with (link `intent`): the mark is about its two names, and shows only beside a second
 * one, so on a file of one name no one met it again (the simulator, --errors seed 47: the rename cut off
 * by an EIO, and its new name renamed over since). With one name there is nothing left to settle.
 */
function forgetIntentOfOneName(b: BrickCore, gfid: string | null): void {
  if (!gfid) return;
  try {
    if (b.st.lstat(handlePath(gfid)).nlink === 2) b.clearRenameIntent(gfid); // the name and the handle
  } catch {
    /* best effort: the operation itself is done */
  }
}

export function rmdir(b: BrickCore, a: Decoded<'rmdir'>): Record<string, never> {
  const rel = b.walk(a.path);
  if (rel === '') throw new FsError('EBUSY', 'cannot remove the root');
  const st = b.st.lstat(rel);
  if (!isDir(st)) throw new FsError('ENOTDIR', `/${rel} is not a directory`);
  const gfid = b.readGfid(rel);
  if (a.purgeLinktos) {
    // Linkto files are DHT's own; when the client has found the directory empty they are stale.
    const entries = b.st.readdir(rel);
    const children = entries.map((e) => ({ e, st: b.st.lstat(`${rel}/${e.name}`) }));
    for (const c of children) {
      const cr = `${rel}/${c.e.name}`;
      const at = b.attr(cr, c.st);
      if (at.linkto === undefined && at.moved === undefined) throw new FsError('ENOTEMPTY', `/${rel} is not empty`);
      if (at.linkto !== undefined && at.gfid && b.openFdCount(at.gfid) > 0) throw new FsError('EBUSY', `${cr} is open`);
    }
    for (const c of children) {
      const cr = `${rel}/${c.e.name}`;
      const g = b.readGfid(cr);
      b.st.unlink(cr);
      dropHandleIfLast(b, g);
    }
  }
  b.st.rmdir(rel);
  if (gfid) {
    try {
      b.st.unlink(handlePath(gfid));
    } catch (e) {
      ignoreCodes(e, 'ENOENT');
    }
  }
  return {};
}

export function rename(b: BrickCore, a: Decoded<'rename'>): Attr | Promise<Attr> {
  const from = b.walk(a.from);
  const to = b.walk(a.to);
  if (from === '' || to === '') throw new FsError('EBUSY', 'cannot rename the root');
  const wantGfid = a.gfid;
  b.checkParentLayout(to, a.parentLayout, a.parentCommit);
  const st = b.st.lstat(from);
  const gfid = b.readGfid(from);
  if (wantGfid && gfid !== wantGfid) throw new FsError('ESTALE', `/${from} is another file now`);
  let replaced: string | null = null;
  try {
    const tst = b.st.lstat(to);
    if (tst.ino !== st.ino && !isDir(tst)) replaced = b.readGfid(to);
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
  const wait = b.mig.whenSettled(gfid) ?? b.mig.whenSettled(replaced);
  if (wait) return wait.then(b.watches.resumed(() => rename(b, a)));
  if (!isDir(st)) b.refuseMoved(from, gfid);
  // Nor over the old copy of a file that moved (its migration committed, not cleaned up yet): the name's
  // file is the installed copy on another brick, which this rename would not replace; a client that took
  // the old copy for the name's data would switch the name to nothing it replaced, and if the switch
  // then failed, a resume would see the new name's data here and call the rename done while the name
  // still led to the old file (sim --names --errors seed 30133). EMOVED with `replaced`: the client
  // cleans the old copy up and looks the name up again.
  if (replaced && replaced !== gfid) {
    const m = b.movedOf(to, replaced);
    if (m) throw new FsError(EMOVED, `/${to} was migrated to ${m.dst}`, { ...m, replaced });
  }
  b.mig.entryChanged(gfid);
  if (replaced) b.mig.entryChanged(replaced);
  b.st.rename(from, to);
  if (replaced && replaced !== gfid) {
    dropHandleIfLast(b, replaced);
    forgetIntentOfOneName(b, replaced);
  }
  if (isDir(st) && gfid) setDirHandle(b, to, gfid);
  return b.attr(to, b.st.lstat(to), gfid);
}

/**
 * RENAME_EXCHANGE of two names whose files both live here, under these names (DhtClient.exchange): one
 * renameat2, so every reader sees either both names as they were or both swapped. Not for a directory
 * (its copies on every brick cannot be swapped at once) nor a linkto (the data is elsewhere): EXDEV.
 * As a rename, it waits for a migration of either file that is switching, aborts one that has not
 * committed, and is refused (EMOVED) for a file that moved.
 */
export function exchange(b: BrickCore, a: Decoded<'exchange'>): Attr | Promise<Attr> {
  const from = b.walk(a.from);
  const to = b.walk(a.to);
  if (from === '' || to === '') throw new FsError('EBUSY', 'cannot exchange the root');
  b.checkParentLayout(from, a.fromLayout, a.parentCommit);
  b.checkParentLayout(to, a.parentLayout, a.parentCommit);
  const swap = b.st.exchange?.bind(b.st);
  if (!swap) throw new FsError('EXDEV', `${b.cfg.name} cannot exchange names`);
  for (const rel of [from, to]) {
    const st = b.st.lstat(rel);
    if (isDir(st)) throw new FsError('EXDEV', `/${rel} is a directory: RENAME_EXCHANGE of directories is not supported`);
    if (st.mode === LINKTO_MODE) throw new FsError('EXDEV', `/${rel} is a linkto on ${b.cfg.name}: its data is elsewhere`);
  }
  const [ga, gb] = [b.readGfid(from), b.readGfid(to)];
  if (ga !== a.gfid || gb !== a.toGfid) throw new FsError('ESTALE', `/${ga !== a.gfid ? from : to} is another file now`);
  const wait = b.mig.whenSettled(ga) ?? b.mig.whenSettled(gb);
  if (wait) return wait.then(b.watches.resumed(() => exchange(b, a)));
  b.refuseMoved(from, ga);
  b.refuseMoved(to, gb);
  b.mig.entryChanged(ga);
  b.mig.entryChanged(gb);
  swap(from, to);
  return b.attr(to, b.st.lstat(to), ga);
}

export function link(b: BrickCore, a: Decoded<'link'>): Attr | Promise<Attr> {
  const from = b.walk(a.from);
  const to = b.walk(a.to);
  const wantGfid = a.gfid;
  b.checkParentLayout(to, a.parentLayout, a.parentCommit);
  const st = b.st.lstat(from);
  if (isDir(st)) throw new FsError('EPERM', 'hard links to directories are not allowed');
  const gfid = b.readGfid(from);
  if (wantGfid && gfid !== wantGfid) throw new FsError('ESTALE', `/${from} is another file now`);
  const wait = b.mig.whenSettled(gfid);
  if (wait) return wait.then(b.watches.resumed(() => link(b, a)));
  b.refuseMoved(from, gfid);
  b.mig.entryChanged(gfid); // a file with two names is not migrated
  if (wantGfid) {
    // Made already (a client taking up its interrupted rename again): nothing to do.
    try {
      if (b.readGfid(to) === wantGfid) return b.attrOf(to);
    } catch (e) {
      ignoreCodes(e, 'ENOENT');
    }
  }
  b.st.link(from, to);
  if (a.intent) {
    // A rename's second name (DhtClient.rename): the file says which rename it belongs to until the
    // renamer (or whoever meets the file first, should the renamer be cut off) finishes or undoes it.
    try {
      const replaced = a.replaced;
      b.st.setxattr(to, b.X.rename, Buffer.from(JSON.stringify({ from: '/' + from, to: '/' + to, ...(replaced ? { replaced } : {}) })));
    } catch (e) {
      b.st.unlink(to);
      throw e;
    }
  }
  return b.attrOf(to);
}

/** The file's unfinished rename is settled (DhtClient.settleRename): it forgets it. */
export function renameSettled(b: BrickCore, a: Decoded<'renameSettled'>): Record<string, never> {
  b.clearRenameIntent(a.gfid);
  return {};
}

export function symlink(b: BrickCore, a: Decoded<'symlink'>): Attr {
  const rel = b.walk(a.path);
  return makeName(b, rel, a, (tmp) => b.st.symlink(a.target, tmp));
}

/** A name with no data of its own (a symlink, a FIFO, a socket, a device): `make` makes it under a private name, made whole and linked into place (BrickCore.makeWhole). */
function makeName(b: BrickCore, rel: string, a: Decoded<'symlink'> | Decoded<'mknod'>, make: (tmp: string) => void): Attr {
  const { gfid, uid, gid } = a;
  b.checkParentLayout(rel, a.parentLayout, a.parentCommit);
  b.makeWhole(rel, gfid, uid, gid, make);
  return b.attr(rel, b.st.lstat(rel), gfid);
}

/** A FIFO, a socket, or a block or character device (`mode`: type and permission bits; `rdev`: the device). */
export function mknod(b: BrickCore, a: Decoded<'mknod'>): Attr {
  const rel = b.walk(a.path);
  const mode = a.mode;
  const type = mode & S_IFMT;
  if (type !== S_IFIFO && type !== S_IFSOCK && type !== S_IFBLK && type !== S_IFCHR) throw new FsError('EPERM', 'mknod makes FIFOs, sockets and device nodes only');
  const rdev = deviceOf(type, a.rdev);
  const mknod = b.st.mknod?.bind(b.st);
  if (!mknod) throw new FsError('EPERM', `${b.cfg.name} cannot make special files`);
  return makeName(b, rel, a, (tmp) => mknod(tmp, mode, rdev));
}

export function readlink(b: BrickCore, a: Decoded<'readlink'>): { target: string; attr: Attr } {
  const rel = b.walk(a.path);
  const st = b.st.lstat(rel);
  if (!isLnk(st)) throw new FsError('EINVAL', `/${rel} is not a symlink`);
  return { target: b.st.readlink(rel), attr: b.attr(rel, st) };
}

export function readdir(b: BrickCore, a: Decoded<'readdir'>): { entries: DirEntryAttr[]; eof: boolean; attr: Attr } {
  const rel = b.walk(a.path);
  const { offset, limit } = a;
  const dst = b.st.lstat(rel);
  if (!isDir(dst)) throw new FsError('ENOTDIR', `/${rel} is not a directory`);
  let names = b.st.readdir(rel).map((e) => e.name);
  if (rel === '') names = names.filter((n) => n !== HANDLE_DIR);
  names.sort();
  const page = names.slice(offset, offset + limit);
  const entries: DirEntryAttr[] = [];
  for (const name of page) {
    const cr = rel === '' ? name : `${rel}/${name}`;
    try {
      entries.push({ name, attr: b.attrOf(cr) });
    } catch (e) {
      ignoreCodes(e, 'ENOENT');
    }
  }
  return { entries, eof: offset + limit >= names.length, attr: b.attr(rel, dst) };
}
