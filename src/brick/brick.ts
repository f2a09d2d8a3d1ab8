/**
 * The brick: serves one exported directory to DHT clients. A state machine over Storage, Clock and
 * Random; no sockets, no `fs`. Each request is validated completely before it touches storage, and its
 * metadata section runs without interleaving with other requests (Storage metadata calls are synchronous).
 *
 * This file is the dispatch: the brick's lifecycle (init), sessions, and the table from each operation's
 * name to its handler in ops/. The on-disk format is in format.ts, the shared state in core.ts.
 */
import { FsError, codeOf, detailOf, ignoreCodes } from '../common/errors.js';
import { LimitLog } from '../wire/limits.js';
import type { Clock, Random } from '../common/env.js';
import { ROOT_GFID, gfidFromBytes, gfidToBytes } from '../common/gfid.js';
import type { RequestHandler } from '../wire/rpc.js';
import type { Storage } from '../storage/storage.js';
import { HANDLE_DIR, handlePath, isDir } from './format.js';
import { Refused, decodeArgs, isOp, type Decoded, type OpName, type Reply } from '../wire/ops.js';
import { BrickCore, type BrickConfig, type LogFn, type Session } from './core.js';
import { checkFdTable, releaseAll } from './fds.js';
import { ensureHandleDir } from './handles.js';
import { getxattr, listxattr, removexattr, setattr, setxattr } from './ops/attrs.js';
import { closeFd, fallocate, fdLocal, fstat, fsync, ftruncate, open, read, seek, write } from './ops/data.js';
import { create, exchange, link, lookup, lookupGfid, mkdir, mklinkto, mknod, readdir, readlink, rename, renameSettled, rmdir, symlink, unlink } from './ops/entry.js';
import { entrylk, inodelk } from './ops/locks.js';
import { migDropSpecial, migFetch, migFinalize, migInstall, migPrepare, migPull, migSpecial } from './ops/mig-dst.js';
import { legacySetLinkto, migAbort, migCleanup, migCommit, migDirty, migFreeze, migLease, migRead, migRenew, migSegments, migSource, migSweep } from './ops/mig-src.js';
import { getTopology, rootInfo, setCommitHash, setLayout, setTopology, statfs } from './ops/volume.js';

/** Each operation's handler, given the request's decoded arguments (wire/ops.ts); its reply type is the schema's. */
type Handler<N extends OpName> = (b: Brick, s: Session, a: Decoded<N>) => Reply<N> | Promise<Reply<N>>;

const HANDLERS: { [N in OpName]: Handler<N> } = {
  // The volume (ops/volume.ts).
  ping: () => ({}),
  rootInfo: (b) => rootInfo(b),
  getTopology: (b) => getTopology(b),
  setTopology: (b, s, a) => setTopology(b, a, s),
  statfs: (b) => statfs(b),
  setCommitHash: (b, s, a) => setCommitHash(b, a, s),
  setLayout: (b, _s, a) => setLayout(b, a),
  watchAck: (b, _s, a) => b.watches.ack(a.id),
  // Names (ops/entry.ts).
  lookup: (b, _s, a) => lookup(b, a),
  lookupGfid: (b, _s, a) => lookupGfid(b, a),
  mkdir: (b, s, a) => mkdir(b, a, s),
  create: (b, s, a) => create(b, s, a),
  mklinkto: (b, _s, a) => mklinkto(b, a),
  symlink: (b, _s, a) => symlink(b, a),
  mknod: (b, _s, a) => mknod(b, a),
  unlink: (b, _s, a) => unlink(b, a),
  rmdir: (b, _s, a) => rmdir(b, a),
  rename: (b, _s, a) => rename(b, a),
  link: (b, _s, a) => link(b, a),
  exchange: (b, _s, a) => exchange(b, a),
  renameSettled: (b, _s, a) => renameSettled(b, a),
  readlink: (b, _s, a) => readlink(b, a),
  readdir: (b, _s, a) => readdir(b, a),
  // Open files (ops/data.ts).
  open: (b, s, a) => open(b, s, a),
  read: (b, s, a) => read(b, s, a),
  write: (b, s, a) => write(b, s, a),
  fsync: (b, s, a) => fsync(b, s, a),
  ftruncate: (b, s, a) => ftruncate(b, s, a),
  fallocate: (b, s, a) => fallocate(b, s, a),
  fstat: (b, s, a) => fstat(b, s, a),
  fdLocal: (b, s, a) => fdLocal(b, s, a),
  seek: (b, s, a) => seek(b, s, a),
  close: (b, s, a) => closeFd(b, s, a),
  // Attributes (ops/attrs.ts).
  setattr: (b, s, a) => setattr(b, s, a),
  getxattr: (b, _s, a) => getxattr(b, a),
  setxattr: (b, _s, a) => setxattr(b, a),
  listxattr: (b, _s, a) => listxattr(b, a),
  removexattr: (b, _s, a) => removexattr(b, a),
  // Locks (ops/locks.ts).
  inodelk: (b, s, a) => inodelk(b, s, a),
  entrylk: (b, s, a) => entrylk(b, s, a),
  // Migration at src (ops/mig-src.ts).
  migLease: (b, s, a) => migLease(b, s, a),
  migRenew: (b, _s, a) => migRenew(b, a),
  migSource: (b, _s, a) => migSource(b, a),
  migDirty: (b, _s, a) => migDirty(b, a),
  migSegments: (b, _s, a) => migSegments(b, a),
  migFreeze: (b, _s, a) => migFreeze(b, a),
  migCommit: (b, _s, a) => migCommit(b, a),
  migAbort: (b, _s, a) => migAbort(b, a),
  migCleanup: (b, _s, a) => migCleanup(b, a),
  migSweep: (b, _s, a) => migSweep(b, a),
  legacySetLinkto: (b, _s, a) => legacySetLinkto(b, a),
  // Migration at dst (ops/mig-dst.ts).
  migPrepare: (b, s, a) => migPrepare(b, s, a),
  migPull: (b, s, a) => migPull(b, s, a),
  migFetch: (b, s, a) => migFetch(b, s, a),
  migRead: (b, _s, a) => migRead(b, a),
  migFinalize: (b, s, a) => migFinalize(b, s, a),
  migInstall: (b, _s, a) => migInstall(b, a),
  migSpecial: (b, _s, a) => migSpecial(b, a),
  migDropSpecial: (b, _s, a) => migDropSpecial(b, a),
};

export class Brick extends BrickCore implements RequestHandler<Session> {
  /** Prepares the brick directory: volume id, root gfid, handle directory. Refuses a foreign brick. */
  init(): void {
    const root = this.st.lstat('');
    if (!isDir(root)) throw new Error('brick root is not a directory');
    const want = gfidToBytes(this.cfg.volumeId);
    const have = this.st.getxattr('', this.X.volumeId);
    if (have && !Buffer.from(have).equals(want)) {
      throw new Error(`brick directory belongs to volume ${gfidFromBytes(have)}, not ${this.cfg.volumeId}`);
    }
    const brickIdKey = this.X.brickId;
    const id = this.cfg.brickId ?? this.cfg.name;
    const claimed = this.st.getxattr('', brickIdKey);
    if (claimed && Buffer.from(claimed).toString('utf8') !== id) {
      throw new Error(`brick directory is already brick ${Buffer.from(claimed).toString('utf8')} of volume ${this.cfg.volumeId}; refusing to serve it as ${this.cfg.name} (${id})`);
    }
    if (!have) this.st.setxattr('', this.X.volumeId, want);
    if (!claimed) this.st.setxattr('', brickIdKey, Buffer.from(id, 'utf8'));
    const g = this.st.getxattr('', this.X.gfid);
    if (!g) this.st.setxattr('', this.X.gfid, gfidToBytes(ROOT_GFID));
    else if (gfidFromBytes(g) !== ROOT_GFID) throw new Error('brick root has a gfid other than the root gfid');
    this.closeRoot();
    this.ensureDir(HANDLE_DIR, 0o700);
    ensureHandleDir(this, ROOT_GFID);
    try {
      this.st.lstat(handlePath(ROOT_GFID));
    } catch (e) {
      ignoreCodes(e, 'ENOENT');
      this.st.symlink('../../..', handlePath(ROOT_GFID));
    }
  }

  /**
   * The brick's root directory is 0700, so that no local user of the brick's host reaches anything
   * below it (brick folders mirror the volume's modes: a world-writable one would let a local user swap
   * a folder for a symlink under the brick's feet). The volume root's own mode and owner live in an
   * xattr (`rootAttr`) that the brick shows and changes instead; recorded from the directory the first time.
   */
  private closeRoot(): void {
    if (!this.st.getxattr('', this.X.rootAttr)) {
      const st = this.st.lstat('');
      this.writeRootAttr({ mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
    }
    if ((this.st.lstat('').mode & 0o7777) !== 0o700) this.st.chmod('', 0o700);
  }

  openSession(info: { remote: string; client: string; admin?: boolean; notify?: (kind: string, payload: unknown) => void }): Session {
    const s: Session = { id: this.nextSession++, remote: info.remote, client: info.client, fds: new Map(), nextFd: 1, notify: info.notify ?? (() => {}), watching: new Set(), admin: info.admin ?? false };
    this.sessions.set(s.id, s);
    return s;
  }

  closeSession(s: Session): void {
    releaseAll(this, s);
    this.locks.releaseSession(s.id);
    this.mig.sessionClosed(s.id);
    this.watches.drop(s);
    this.sessions.delete(s.id);
    checkFdTable(this);
  }

  /**
   * Serves one request: an unknown operation is ENOSYS; the arguments are decoded completely against the
   * operation's schema (wire/ops.ts), and only then does its handler run.
   */
  handle(s: Session, op: string, args: Record<string, unknown>): unknown {
    if (!isOp(op)) throw new FsError('ENOSYS', `unknown operation '${op.slice(0, 40)}'`);
    try {
      const a = decodeArgs(op, args);
      const fn = HANDLERS[op] as Handler<OpName>;
      // Changes of names that other connections watch: the reply waits for their acknowledgements (watch.ts).
      const r = this.watches.run(s, () => fn(this, s, a));
      return r instanceof Promise ? r.catch((e: unknown) => this.logRefused(s, op, e)) : r;
    } catch (e) {
      return this.logRefused(s, op, e);
    }
  }

  /**
   * Logs a refusal of something no honest client asks (Refused), naming the client; rethrows. A path
   * through a symlink (ELOOP: a folder swapped for a symlink on the brick's disk, or a client's path
   * through a symlink it made) is logged too, once per 10 s.
   */
  private logRefused(s: Session, op: string, e: unknown): never {
    if (e instanceof Refused) this.log('warn', `refused ${op} from ${s.client.slice(0, 64) || '?'} at ${s.remote}: ${e.message.slice(0, 200)}`, { client: s.client.slice(0, 64), remote: s.remote, op, code: e.code });
    else if (codeOf(e) === 'ELOOP') {
      this.eloopLog ??= new LimitLog(this.clock, (msg, extra) => this.log('warn', msg, extra));
      const who = `${s.client.slice(0, 64) || '?'} at ${s.remote}`;
      this.eloopLog.line('eloop', `refused ${op} from ${who}: ${detailOf(e).slice(0, 200)}: a folder on its path is a symlink on the brick's disk`, { client: s.client.slice(0, 64), remote: s.remote, op, code: 'ELOOP' });
    }
    throw e;
  }
  private eloopLog?: LimitLog;
}
