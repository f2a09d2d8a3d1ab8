/**
 * The brick: serves one exported directory to DHT clients. A state machine over Storage, Clock and
 * Random; no sockets, no `fs`. Each request is validated completely before it touches storage, and its
 * metadata section runs without interleaving with other requests (Storage metadata calls are synchronous).
 *
 * This file is the dispatch: the brick's lifecycle (init), sessions, and the table from each operation's
 * name to its handler in ops/. The on-disk format is in format.ts, the shared state in core.ts.
 */
import { FsError } from '../common/errors.js';
import type { Clock, Random } from '../common/env.js';
import { ROOT_GFID, gfidFromBytes, gfidToBytes } from '../common/gfid.js';
import type { RequestHandler } from '../wire/rpc.js';
import type { Storage } from '../storage/storage.js';
import { HANDLE_DIR, handlePath, isDir } from './format.js';
import { type Args, Refused, int } from './args.js';
import { BrickCore, type BrickConfig, type LogFn, type Session } from './core.js';
import { release } from './fds.js';
import { ensureHandleDir } from './handles.js';
import { getxattr, listxattr, removexattr, setattr, setxattr } from './ops/attrs.js';
import { closeFd, fdLocal, fstat, fsync, ftruncate, open, read, seek, write } from './ops/data.js';
import { create, link, lookup, lookupGfid, mkdir, mklinkto, mknod, readdir, readlink, rename, renameSettled, rmdir, symlink, unlink } from './ops/entry.js';
import { entrylk, inodelk } from './ops/locks.js';
import { migDropSpecial, migFinalize, migInstall, migPrepare, migPull, migSpecial } from './ops/mig-dst.js';
import { legacySetLinkto, migAbort, migCleanup, migCommit, migDirty, migFreeze, migLease, migRenew, migSegments, migSource, migSweep } from './ops/mig-src.js';
import { getTopology, rootInfo, setCommitHash, setLayout, setTopology, statfs } from './ops/volume.js';

export class Brick extends BrickCore implements RequestHandler<Session> {
  private readonly ops: Record<string, (s: Session, a: Args) => unknown>;

  constructor(st: Storage, cfg: BrickConfig, clock: Clock, random: Random, log: LogFn = () => {}) {
    super(st, cfg, clock, random, log);
    this.ops = {
      migLease: (s, a) => migLease(this, s, a),
      migSource: (_s, a) => migSource(this, a),
      migPull: (s, a) => migPull(this, s, a),
      migRenew: (_s, a) => migRenew(this, a),
      migDirty: (_s, a) => migDirty(this, a),
      migSegments: (_s, a) => migSegments(this, a),
      migFreeze: (_s, a) => migFreeze(this, a),
      migCommit: (_s, a) => migCommit(this, a),
      migAbort: (_s, a) => migAbort(this, a),
      migCleanup: (_s, a) => migCleanup(this, a),
      migPrepare: (s, a) => migPrepare(this, s, a),
      migFinalize: (s, a) => migFinalize(this, s, a),
      migInstall: (_s, a) => migInstall(this, a),
      migSpecial: (_s, a) => migSpecial(this, a),
      migDropSpecial: (_s, a) => migDropSpecial(this, a),
      lookup: (_s, a) => lookup(this, a),
      lookupGfid: (_s, a) => lookupGfid(this, a),
      rootInfo: () => rootInfo(this),
      getTopology: () => getTopology(this),
      setTopology: (s, a) => setTopology(this, a, s),
      statfs: () => statfs(this),
      mkdir: (s, a) => mkdir(this, a, s),
      watchAck: (_s, a) => this.watches.ack(int(a, 'id', 0, Number.MAX_SAFE_INTEGER)),
      setLayout: (_s, a) => setLayout(this, a),
      setCommitHash: (s, a) => setCommitHash(this, a, s),
      create: (s, a) => create(this, s, a),
      mklinkto: (_s, a) => mklinkto(this, a),
      open: (s, a) => open(this, s, a),
      read: (s, a) => read(this, s, a),
      write: (s, a) => write(this, s, a),
      fsync: (s, a) => fsync(this, s, a),
      ftruncate: (s, a) => ftruncate(this, s, a),
      fstat: (s, a) => fstat(this, s, a),
      fdLocal: (s, a) => fdLocal(this, s, a),
      seek: (s, a) => seek(this, s, a),
      migSweep: (_s, a) => migSweep(this, a),
      legacySetLinkto: (_s, a) => legacySetLinkto(this, a),
      close: (s, a) => closeFd(this, s, a),
      setattr: (s, a) => setattr(this, s, a),
      unlink: (_s, a) => unlink(this, a),
      rmdir: (_s, a) => rmdir(this, a),
      rename: (_s, a) => rename(this, a),
      link: (_s, a) => link(this, a),
      renameSettled: (_s, a) => renameSettled(this, a),
      symlink: (_s, a) => symlink(this, a),
      mknod: (_s, a) => mknod(this, a),
      // A client's watchdog (ping-timeout) asks whether this brick is alive; answered at once.
      ping: () => ({}),
      readlink: (_s, a) => readlink(this, a),
      readdir: (_s, a) => readdir(this, a),
      getxattr: (_s, a) => getxattr(this, a),
      setxattr: (_s, a) => setxattr(this, a),
      listxattr: (_s, a) => listxattr(this, a),
      removexattr: (_s, a) => removexattr(this, a),
      inodelk: (s, a) => inodelk(this, s, a),
      entrylk: (s, a) => entrylk(this, s, a),
    };
  }

  /** Prepares the brick directory: volume id, root gfid, handle directory. Refuses a foreign brick. */
  init(): void {
    const root = this.st.lstat('');
    if (!isDir(root)) throw new Error('brick root is not a directory');
    const want = gfidToBytes(this.cfg.volumeId);
    const have = this.st.getxattr('', this.X.volumeId);
    if (have && !Buffer.from(have).equals(want)) {
      throw new Error(`brick directory belongs to volume ${gfidFromBytes(have)}, not ${this.cfg.volumeId}`);
    }
    const brickIdKey = `${this.cfg.xattrPrefix}dhtfs.brick-id`;
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
    } catch {
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
    for (const f of s.fds.values()) release(this, f);
    s.fds.clear();
    this.locks.releaseSession(s.id);
    this.mig.sessionClosed(s.id);
    this.watches.drop(s);
    this.sessions.delete(s.id);
  }

  handle(s: Session, op: string, args: Args): unknown {
    const fn = Object.hasOwn(this.ops, op) ? this.ops[op] : undefined;
    if (!fn) throw new FsError('ENOSYS', `unknown operation '${op.slice(0, 40)}'`);
    // Changes of names that other connections watch: the reply waits for their acknowledgements (watch.ts).
    try {
      const r = this.watches.run(s, () => fn(s, args));
      return r instanceof Promise ? r.catch((e: unknown) => this.logRefused(s, op, e)) : r;
    } catch (e) {
      return this.logRefused(s, op, e);
    }
  }

  /** Logs a refusal of something no honest client asks (Refused), naming the client; rethrows. */
  private logRefused(s: Session, op: string, e: unknown): never {
    if (e instanceof Refused) this.log('warn', `refused ${op} from ${s.client.slice(0, 64) || '?'} at ${s.remote}: ${e.message.slice(0, 200)}`, { client: s.client.slice(0, 64), remote: s.remote, op, code: e.code });
    throw e;
  }

}
