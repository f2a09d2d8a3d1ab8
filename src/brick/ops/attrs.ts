/** Attributes: setattr, and the user xattrs of files and directories. */
import { FsError, codeOf } from '../../common/errors.js';
import type { Attr } from '../../wire/types.js';
import type { Timespec } from '../../storage/storage.js';
import { isReg, isDir, isLnk } from '../format.js';
import { bad, type Decoded } from '../../wire/ops.js';
import type { BrickCore, OpenFile, Session } from '../core.js';
import { fattr, fdOf } from '../fds.js';
import { resolveGfid } from '../handles.js';

export function setattr(b: BrickCore, s: Session, a: Decoded<'setattr'>): Promise<Attr> {
  let rel: string;
  let gfid: string | null;
  if (a.fd !== undefined) {
    const f = fdOf(b, s, a.fd);
    if (!f.gfid) throw new FsError('EIO', 'open file has no gfid');
    b.mig.checkRead(f.gfid);
    gfid = f.gfid;
    try {
      rel = resolveGfid(b, f.gfid).rel;
    } catch (e) {
      // No name left (unlinked while open): its handle went with the last name, the open file is still
      // there (fchmod, fchown, futimens of it, as on a local disk).
      if (codeOf(e) !== 'ENOENT' || !b.st.fsetattr) throw e;
      return fsetattrUnnamed(b, f, a);
    }
  } else {
    if (a.path === undefined) throw bad('path', 'must be a string');
    rel = b.walk(a.path);
    gfid = b.readGfid(rel);
    b.refuseMoved(rel, gfid);
  }
  // `ctime` alone: the change time moves and nothing else (chown(2) with -1 for both).
  const { mode, uid, gid, atime, mtime, size, ctime } = a;
  let old = 0;
  return b.change(
    gfid,
    () => {
      old = b.st.lstat(rel).size;
      return applyAttrs(b, rel, { mode, uid, gid, atime, mtime, size, ctime });
    },
    () => (size === undefined ? null : [Math.min(old, size), Math.max(old, size)]),
  );
}

/** setattr of an open file that has no name left: on its descriptor (a truncate as ftruncate). */
function fsetattrUnnamed(b: BrickCore, f: OpenFile, a: Decoded<'setattr'>): Promise<Attr> {
  const { mode, uid, gid, atime, mtime, size, ctime } = a;
  let old = 0;
  return b.change(
    f.gfid,
    () => {
      old = b.st.fstat(f.h).size;
      if (size !== undefined) b.st.ftruncate(f.h, size);
      b.st.fsetattr!(f.h, { mode, uid: uid ?? (ctime ? -1 : undefined), gid, atime, mtime });
      return fattr(b, f);
    },
    () => (size === undefined ? null : [Math.min(old, size), Math.max(old, size)]),
  );
}

export function applyAttrs(b: BrickCore, rel: string, o: { mode?: number; uid?: number; gid?: number; atime?: Timespec; mtime?: Timespec; size?: number; ctime?: boolean }): Attr {
  const { mode, uid, gid, atime, mtime, size, ctime } = o;
  let st = b.st.lstat(rel);
  if (rel === '' && (mode !== undefined || uid !== undefined || gid !== undefined)) {
    // The volume root's mode and owner are kept in rootAttr (closeRoot); setting it moves ctime too.
    const r = b.rootAttr() ?? { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    b.writeRootAttr({ mode: mode ?? r.mode, uid: uid ?? r.uid, gid: gid ?? r.gid });
    return applyAttrs(b, rel, { atime, mtime, size });
  }
  if (size !== undefined) {
    if (!isReg(st)) throw new FsError(isDir(st) ? 'EISDIR' : 'EINVAL', 'truncate needs a regular file');
    b.st.truncate(rel, size);
  }
  if (uid !== undefined || gid !== undefined || ctime) b.st.lchown(rel, uid ?? -1, gid ?? -1);
  if (mode !== undefined && !isLnk(st)) b.st.chmod(rel, mode);
  if (atime || mtime) {
    st = b.st.lstat(rel);
    b.st.lutimes(rel, atime ?? st.atime, mtime ?? st.mtime);
  }
  return b.attrOf(rel);
}

/** A user xattr's name (decoded: 1..255 bytes) must be in the user namespace and none of the volume's own. */
function userXattr(b: BrickCore, name: string): string {
  if (!name.startsWith('user.') || b.X.reserved.some((r) => name.startsWith(r))) {
    throw new FsError('EPERM', `xattr ${name} is not in the user namespace or is reserved`);
  }
  return name;
}

export function getxattr(b: BrickCore, a: Decoded<'getxattr'>): { value: Buffer } {
  const rel = b.walk(a.path);
  const name = userXattr(b, a.name);
  b.refuseMoved(rel, b.readGfid(rel));
  const v = b.st.getxattr(rel, name);
  if (v === null) {
    b.st.lstat(rel);
    throw new FsError('ENODATA', `no xattr ${name}`);
  }
  return { value: v };
}

export function setxattr(b: BrickCore, a: Decoded<'setxattr'>): Promise<Attr> {
  const rel = b.walk(a.path);
  const gfid = b.readGfid(rel);
  b.refuseMoved(rel, gfid);
  return b.change(
    gfid,
    () => setxattrNow(b, rel, a),
    () => null,
  );
}

function setxattrNow(b: BrickCore, rel: string, a: Decoded<'setxattr'>): Attr {
  const name = userXattr(b, a.name);
  const { value, create, replace } = a;
  if (create || replace) {
    const exists = b.st.getxattr(rel, name) !== null;
    if (create && exists) throw new FsError('EEXIST', `xattr ${name} exists`);
    if (replace && !exists) throw new FsError('ENODATA', `no xattr ${name}`);
  }
  b.st.setxattr(rel, name, value);
  return b.attrOf(rel);
}

export function listxattr(b: BrickCore, a: Decoded<'listxattr'>): { names: string[] } {
  const rel = b.walk(a.path);
  b.refuseMoved(rel, b.readGfid(rel));
  const names = b.st.listxattr(rel).filter((n) => n.startsWith('user.') && !b.X.reserved.some((r) => n.startsWith(r)));
  return { names };
}

export function removexattr(b: BrickCore, a: Decoded<'removexattr'>): Promise<Attr> {
  const rel = b.walk(a.path);
  const name = userXattr(b, a.name);
  const gfid = b.readGfid(rel);
  b.refuseMoved(rel, gfid);
  return b.change(
    gfid,
    () => {
      b.st.removexattr(rel, name);
      return b.attrOf(rel);
    },
    () => null,
  );
}
