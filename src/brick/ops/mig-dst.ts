/**
 * The migration protocol's storage work at dst (docs/MIGRATION.md): the private copy, its pull from a peer
 * brick, finalize and install, special files. The decisions are dst's rules (src/migration/dst-rules.ts).
 */
import { FsError, codeOf, ignoreCodes, rethrowBug } from '../../common/errors.js';
import { ioBuffers } from '../../wire/pool.js';
import type { Attr } from '../../wire/types.js';
import { O_RDONLY, O_CREAT, O_RDWR, O_TRUNC, S_IFLNK, S_IFMT, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, type Storage } from '../../storage/storage.js';
import { MIGRATE_DIR, parentOf, handlePath, isReg, isDir, deviceOf } from '../format.js';
import { bad, relPath, type Decoded } from '../../wire/ops.js';
import type { BrickCore, Session } from '../core.js';
import { addFd, fdOf } from '../fds.js';
import { dropHandleIfLast, handleOf, pointHandleAt } from '../handles.js';
import { makeLinkto, setLinkto } from './entry.js';
import { getTopology } from './volume.js';
import { planted } from '../../common/plant.js';
import { copyName, installAt, prepareAt, specialAt } from '../../migration/dst-rules.js';

/**
 * Copies a range of the file under migration into this migration copy straight from src's disk, when
 * src is a brick of this volume on this host (migSource named its file): the bytes cross neither the
 * network nor the migrator. Anything else is refused (EXDEV) and the migrator copies through itself.
 * What src's clients change meanwhile is tracked by src and copied again, as with any copy.
 */
export async function migPull(b: BrickCore, s: Session, a: Decoded<'migPull'>): Promise<{ copied: number }> {
  const f = fdOf(b, s, a.fd);
  if (!f.tempRel || !f.gfid) throw new FsError('EBADF', 'fd is not a migration copy');
  const offset = a.offset;
  const length = a.length;
  const src = a.source;
  const name = { host: src.host, root: src.root };
  if (src.path !== handlePath(f.gfid)) throw bad('source', 'is not the file of this copy');
  const peer = b.st.peer?.(name) ?? null;
  if (!peer) throw new FsError('EXDEV', 'the source is not on this host');
  // Only a brick of this very volume: its root carries this volume's id.
  const theirs = (() => {
    try {
      return peer.getxattr('', b.X.volumeId);
    } catch (e) {
      rethrowBug(e);
      return null;
    }
  })();
  const ours = b.st.getxattr('', b.X.volumeId);
  if (!theirs || !ours || !Buffer.from(theirs).equals(Buffer.from(ours))) throw new FsError('EXDEV', 'the source is not a brick of this volume');
  const h = peer.open(src.path, O_RDONLY, 0);
  try {
    // In the kernel where the storage can (copy_file_range); through memory otherwise. The kernel copy
    // skips src's holes, so a range copied again (`again`: a client changed it) is made a hole in the copy
    // first: it may be a hole on src now (punched, zeroed, or truncated away and grown back), and the
    // copy's old bytes there would stay. Where that cannot be done, the copy goes through memory (zeros
    // and all). The first copy's ranges hold nothing in the copy yet.
    const punched = !!b.st.copyRange && (!a.again || holeIn(b, f.h, offset, length));
    const inKernel = punched
      ? await b.st.copyRange!(peer, h, f.h, offset, length).catch((e) => {
          if (['EXDEV', 'EINVAL', 'EOPNOTSUPP', 'ENOSYS'].includes(codeOf(e))) return null;
          throw e;
        })
      : null;
    return { copied: inKernel ?? (await copyThroughMemory(b, peer, h, f.h, offset, length)) };
  } finally {
    peer.close(h);
  }
}

/**
 * Copies a range into this migration copy from src brick `from` on another host, over the brick path
 * (peers.ts; src answers migRead under the lease's token): the bytes go from src's host to this one
 * without crossing the migrator's. Only a brick of the topology stored here is reached.
 */
export async function migFetch(b: BrickCore, s: Session, a: Decoded<'migFetch'>): Promise<{ copied: number }> {
  const f = fdOf(b, s, a.fd);
  if (!f.tempRel || !f.gfid) throw new FsError('EBADF', 'fd is not a migration copy');
  if (!b.peers) throw new FsError('EXDEV', 'this brick does not reach its peers');
  if (a.from === b.cfg.name) throw bad('from', 'is this brick');
  const t = getTopology(b).topology as { bricks?: unknown } | null;
  const peer = (Array.isArray(t?.bricks) ? (t.bricks as { name?: unknown; host?: unknown; port?: unknown }[]) : []).find((x) => x?.name === a.from);
  if (!peer || typeof peer.host !== 'string' || typeof peer.port !== 'number' || !Number.isInteger(peer.port)) throw new FsError('EXDEV', `brick ${a.from} is not in this brick's topology`);
  const data = await b.peers.read({ name: a.from, host: peer.host, port: peer.port }, { gfid: f.gfid, token: a.token, offset: a.offset, length: a.length }, b.peerTimeoutMs);
  let written = 0;
  while (written < data.length) {
    const n = await b.st.write(f.h, a.offset + written, data.subarray(written));
    if (n <= 0) throw new FsError('EIO', 'short write to the migration copy');
    written += n;
  }
  return { copied: data.length };
}

/** Punches [offset, offset + length) of the file open as `h` (size kept); false where the storage cannot. */
function holeIn(b: BrickCore, h: number, offset: number, length: number): boolean {
  if (!b.st.fallocate || length === 0) return length === 0;
  try {
    b.st.fallocate(h, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
    return true;
  } catch (e) {
    rethrowBug(e);
    return false;
  }
}

export async function copyThroughMemory(b: BrickCore, peer: Storage, from: number, h: number, offset: number, length: number): Promise<number> {
  const buf = ioBuffers.take(length);
  try {
    const data = await peer.read(from, offset, length, buf);
    let written = 0;
    while (written < data.length) {
      const n = await b.st.write(h, offset + written, data.subarray(written));
      if (n <= 0) throw new FsError('EIO', 'short write to the migration copy');
      written += n;
    }
    return data.length;
  } finally {
    ioBuffers.give(buf);
  }
}

/** A migration copy's private name. */
function tempPath(gfid: string, token: string): string {
  return `${MIGRATE_DIR}/${copyName(gfid, token)}`;
}

/** step `prepare-dst`: a linkto to src at the name if there is nothing, and a private copy to fill. */
export async function migPrepare(b: BrickCore, s: Session, a: Decoded<'migPrepare'>): Promise<{ fd: number }> {
  const rel = b.walk(a.path);
  const { gfid, src, uid, gid, links } = a;
  const tmp = tempPath(gfid, a.token);
  const todo = prepareAt(attrIfThere(b, rel), gfid, src, { name: `/${rel} on ${b.cfg.name}`, copy: tmp });
  if (todo === 'make-linkto') makeLinkto(b, rel, gfid, src, uid, gid);
  else if (todo === 'point-linkto') setLinkto(b, rel, src);
  b.ensureDir(MIGRATE_DIR, 0o700);
  const h = b.st.open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0o600);
  try {
    b.setGfid(tmp, gfid);
    // The file's other names, for migInstall (whoever installs: the record on src names only one).
    if (links) b.st.setxattr(tmp, b.X.links, Buffer.from(JSON.stringify(links.filter((l) => l !== rel))));
  } catch (e) {
    b.st.close(h);
    throw e;
  }
  const fd = addFd(b, s, { h, gfid, flags: O_RDWR, tempRel: tmp });
  await fsyncDir(b, MIGRATE_DIR); // the copy's name is durable before any commit can rely on it
  return { fd };
}

/** step `final-copy`: size, attributes and xattrs of the copy, then make it durable. */
export async function migFinalize(b: BrickCore, s: Session, a: Decoded<'migFinalize'>): Promise<Attr> {
  const f = fdOf(b, s, a.fd);
  if (!f.tempRel) throw new FsError('EINVAL', 'fd is not a migration copy');
  const { size, mode, uid, gid, atime, mtime, xattrs } = a;
  b.st.ftruncate(f.h, size);
  b.st.lchown(f.tempRel, uid, gid);
  b.st.chmod(f.tempRel, mode);
  b.copyUserXattrs(f.tempRel, xattrs);
  if (atime && mtime) b.st.lutimes(f.tempRel, atime, mtime);
  await b.st.fsync(f.h, false);
  return b.attr(f.tempRel, b.st.fstat(f.h), f.gfid);
}

export function fsyncDir(b: BrickCore, rel: string): Promise<void> {
  return b.fsyncDir(rel);
}

/**
 * step `install`: the committed copy replaces the linkto at the name. Idempotent. `durable` (the
 * migrator, before it removes src's commit record) makes the rename durable; a client that follows a
 * move does not need to wait for that: src's record still says where the copy is.
 */
export async function migInstall(b: BrickCore, a: Decoded<'migInstall'>): Promise<Attr> {
  const rel = b.walk(a.path);
  const { gfid, durable } = a;
  const tmp = tempPath(gfid, a.token);
  const cur = attrIfThere(b, rel);
  let hasTemp = true;
  try {
    b.st.lstat(tmp);
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
    hasTemp = false;
  }
  if (installAt(cur, gfid, hasTemp, { name: `/${rel} on ${b.cfg.name}`, copy: `${tmp} on ${b.cfg.name}` }) === 'installed') {
    // Installed already (by another client, or an earlier try).
    if (!handleOf(b, gfid, b.st.lstat(rel))) pointHandleAt(b, rel, gfid); // an earlier try failed between the rename and this
    const dirs = installLinks(b, rel, gfid); // a brick that died part way through them
    if (durable) for (const d of new Set([parentOf(rel), ...dirs, ...handleDirs(gfid)])) await fsyncDir(b, d);
    return dirs.length > 0 ? b.attrOf(rel) : cur!;
  }
  b.keepingTimes(rel, true, () => b.st.rename(tmp, rel));
  pointHandleAt(b, rel, gfid); // it named the linkto's inode
  const dirs = installLinks(b, rel, gfid);
  if (durable && !planted.has('install-skips-dir-fsync')) for (const d of new Set([parentOf(rel), ...dirs, ...handleDirs(gfid)])) await fsyncDir(b, d);
  return b.attrOf(rel);
}

/**
 * The installed copy's other names (a file with several names: migPrepare kept them on the copy): each
 * becomes a link of the data where it is free or holds a linkto of this file, in this one brick call,
 * so that no client of this brick sees the data under one name and a linkto under another. A name that
 * holds another file now (or whose directory is gone) is left. Idempotent: the list goes last. Returns
 * the directories changed.
 */
export function installLinks(b: BrickCore, rel: string, gfid: string): string[] {
  const v = b.st.getxattr(rel, b.X.links);
  if (!v) return [];
  let names: string[] = [];
  try {
    names = (JSON.parse(Buffer.from(v).toString()) as unknown[]).map((l) => relPath(`/${String(l)}`, 'links'));
  } catch (e) {
    b.log('error', `/${rel}: unreadable list of the file's other names: ${(e as Error).message}`);
    throw new FsError('EIO', `/${rel}: unreadable list of the file's other names`);
  }
  const dirs: string[] = [];
  for (const name of names) {
    let cur: Attr | null = null;
    try {
      cur = b.attrOf(name);
    } catch (e) {
      ignoreCodes(e, 'ENOENT');
    }
    if (cur && (cur.gfid !== gfid || cur.linkto === undefined)) continue; // another file, or done
    const tmp = `${MIGRATE_DIR}/${gfid}.link`;
    try {
      b.st.unlink(tmp);
    } catch (e) {
      ignoreCodes(e, 'ENOENT');
    }
    try {
      b.st.link(rel, tmp);
      b.keepingTimes(name, true, () => b.st.rename(tmp, name));
      dirs.push(parentOf(name));
    } catch (e) {
      ignoreCodes(e, 'ENOENT'); // the name's directory is gone
      try {
        b.st.unlink(tmp);
      } catch (e2) {
        rethrowBug(e2); // not made
      }
    }
  }
  b.st.removexattr(rel, b.X.links);
  return dirs;
}

/**
 * A name with no data of its own (a symlink, a FIFO, a socket, a device node) moved to this brick, its hashed one, as
 * GlusterFS's migrate_special_files does: made under a private name with the file's gfid, owner, mode,
 * times and user xattrs, then renamed onto the name, which must be free or hold a linkto of this file
 * (rename(2): once there, the name never goes missing). The name's directory keeps its times (no user
 * made the name). The same file at the name already (a retry) gets the attributes given again.
 */
export async function migSpecial(b: BrickCore, a: Decoded<'migSpecial'>): Promise<Attr> {
  const rel = b.walk(a.path);
  if (rel === '') throw new FsError('EEXIST', 'the root exists');
  const { gfid, mode, uid, gid, atime, mtime, xattrs, links } = a;
  const type = mode & S_IFMT; // a symlink's, a FIFO's, a socket's or a device's (specialMode)
  const rdev = deviceOf(type, a.rdev);
  if (type === S_IFLNK && a.target === undefined) throw bad('target', 'must be a string');
  const target = type === S_IFLNK ? a.target! : '';
  const apply = (p: string) => {
    b.st.lchown(p, uid, gid);
    if (type !== S_IFLNK) b.st.chmod(p, mode & 0o7777);
    b.copyUserXattrs(p, xattrs);
    if (atime && mtime) b.st.lutimes(p, atime, mtime); // last: the others move no time but ctime
  };
  const same = (cur: Attr) => (cur.mode & S_IFMT) === type && (cur.rdev ?? 0) === rdev;
  if (specialAt(attrIfThere(b, rel), gfid, same, { name: `/${rel} on ${b.cfg.name}` }) === 'there') {
    apply(rel);
    if (!handleOf(b, gfid, b.st.lstat(rel))) pointHandleAt(b, rel, gfid); // made before the handle came first
    await durable(b, rel, installLinks(b, rel, gfid), gfid); // (a retry: made, maybe not durable yet)
    return b.attrOf(rel);
  }
  b.ensureDir(MIGRATE_DIR, 0o700);
  const tmp = `${MIGRATE_DIR}/${gfid}.special`;
  try {
    b.st.unlink(tmp); // a leftover of a crash
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
  if (type === S_IFLNK) b.st.symlink(target, tmp);
  else {
    const mknod = b.st.mknod?.bind(b.st);
    if (!mknod) throw new FsError('EPERM', `${b.cfg.name} cannot make special files`);
    mknod(tmp, mode, rdev);
  }
  try {
    b.setGfid(tmp, gfid);
    // A name of several: the others get their places once this one is in place (installLinks).
    if (links) b.st.setxattr(tmp, b.X.links, Buffer.from(JSON.stringify(links.filter((l) => l !== rel))));
    apply(tmp);
    // The handle first (it named the linkto's inode, if one was at the name): pointed after the rename,
    // an error (ENOSPC on the link) left the name in place without it, a file of no links to every
    // lookup (the simulator, --names --errors seed 159).
    pointHandleAt(b, tmp, gfid);
    b.keepingTimes(rel, true, () => b.st.rename(tmp, rel));
  } catch (e) {
    try {
      b.st.unlink(tmp);
    } catch {
      /* the original error matters */
    }
    throw e;
  }
  await durable(b, rel, installLinks(b, rel, gfid), gfid);
  return b.attrOf(rel);
}

/**
 * The copy's names and its gfid handle made durable before the reply: the migrator removes src's copy
 * next, and a power loss that took back a rename not yet durable lost the name (the simulator's journal
 * disk, --names --errors seed 140: a FIFO gone after the rebalance).
 */
async function durable(b: BrickCore, rel: string, dirs: string[], gfid: string): Promise<void> {
  for (const d of new Set([parentOf(rel), ...dirs, ...handleDirs(gfid)])) await fsyncDir(b, d);
}

/**
 * The directories whose entries make a gfid handle durable: the handle's own and the two above it, which
 * the brick may have made for it. An install points the handle at the copy (and a linkto's handle may be
 * new): a power loss that took them back left the installed file at its name without a handle, and every
 * fd reopened by gfid answered ENOENT (the simulator's strict disk, seed 79).
 */
function handleDirs(gfid: string): string[] {
  const d = parentOf(handlePath(gfid));
  return [d, parentOf(d), parentOf(parentOf(d))];
}

/**
 * The old name of a special file whose copy is on its hashed brick now (migSpecial): removed if it is
 * still that file (gfid) and unchanged since the migrator read it (`ctime`; changed: EAGAIN, the
 * migrator copies the attributes again first). Its directory keeps its times. The removal is made durable
 * before the reply: the copy on dst is the file from then on, and a power loss that took back an unlink
 * brought the old name back beside it, a second copy a later rebalance moved over dst's linkto (the
 * simulator's journal disk, --names --errors seed 30186: a socket of three names drained off a brick).
 */
export async function migDropSpecial(b: BrickCore, a: Decoded<'migDropSpecial'>): Promise<Record<string, never>> {
  const rel = b.walk(a.path);
  const { gfid, ctime } = a;
  const st = b.st.lstat(rel);
  if (isDir(st) || isReg(st)) throw new FsError('EINVAL', `/${rel} is not a special file`);
  if (b.readGfid(rel) !== gfid) throw new FsError('ESTALE', `/${rel} is another file now`);
  if (ctime && (st.ctime[0] !== ctime[0] || st.ctime[1] !== ctime[1])) throw new FsError('EAGAIN', `/${rel} changed meanwhile`);
  // A file of several names goes under all of them at once (each unlink moves the inode's ctime).
  const links = a.links ?? [rel];
  if (!links.includes(rel) || links.length !== st.nlink - (handleOf(b, gfid, st) ? 1 : 0) || !links.every((l) => b.st.lstat(l).ino === st.ino)) {
    throw new FsError('ESTALE', `/${rel}: its names are not the ones given`);
  }
  for (const l of links) b.keepingTimes(l, true, () => b.st.unlink(l));
  dropHandleIfLast(b, gfid);
  for (const d of new Set([...links.map(parentOf), ...handleDirs(gfid)])) await fsyncDir(b, d);
  return {};
}

/** A name's attributes, or null when there is nothing by that name. */
function attrIfThere(b: BrickCore, rel: string): Attr | null {
  try {
    return b.attrOf(rel);
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
    return null;
  }
}
