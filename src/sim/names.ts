/**
 * The names workload: one client (the namer) makes, links, renames and removes every kind of name a
 * volume holds (directories, regular files, symlinks, FIFOs, sockets, hard links) under /t, one
 * operation at a time, against an exact model of the tree (NameModel). Migrations, crashes, power
 * losses and injected errors meet them; the namespace checker (checkers/namespace.ts) compares the
 * volume with the model after every operator event.
 *
 * After each operation the namer runs sync(1) (every simulated disk's syncNow): a user who wants names
 * to outlive a power loss must make them durable, and the brick does not fsync directories for names
 * it makes (nor does GlusterFS's). An operation whose outcome the namer could not learn (ENOTCONN,
 * EIO, ...) is settled by looking at its names: either outcome is allowed, anything else is a violation.
 * A power loss on a disk that loses metadata while an operation is in flight makes the model uncertain
 * (part of the operation may be gone from one brick and not another): the checks then stop.
 */
import { codeOf } from '../common/errors.js';
import { S_IFSOCK } from '../storage/storage.js';
import type { Volume } from '../api/volume.js';
import type { Prng } from './world.js';

export type NameKind = 'dir' | 'file' | 'symlink' | 'fifo' | 'sock';

interface Inode {
  kind: NameKind;
  /** Symlink target, or a file's content. */
  body: string;
}

/** The tree under /t: path -> inode number; inode number -> kind and body. */
export class NameModel {
  readonly paths = new Map<string, number>();
  readonly inodes = new Map<number, Inode>();
  private next = 1;
  /** Set when the model may no longer match (a lossy power loss met an operation in flight). */
  uncertain = false;
  /** Operations made and settled, for the report. */
  ops = 0;

  constructor() {
    this.paths.set('/t', this.add({ kind: 'dir', body: '' }));
  }
  private add(n: Inode): number {
    const ino = this.next++;
    this.inodes.set(ino, n);
    return ino;
  }
  kindOf(p: string): NameKind | null {
    const i = this.paths.get(p);
    return i === undefined ? null : this.inodes.get(i)!.kind;
  }
  /** The names of an inode (hard links). */
  linksOf(ino: number): string[] {
    return [...this.paths].filter(([, i]) => i === ino).map(([p]) => p);
  }
  children(dir: string): string[] {
    const pre = `${dir}/`;
    return [...this.paths.keys()].filter((p) => p.startsWith(pre) && !p.slice(pre.length).includes('/'));
  }
  make(p: string, kind: NameKind, body: string): void {
    this.paths.set(p, this.add({ kind, body }));
  }
  link(from: string, to: string): void {
    this.paths.set(to, this.paths.get(from)!);
  }
  remove(p: string): void {
    this.paths.delete(p);
  }
  rename(from: string, to: string): void {
    const moved = [...this.paths].filter(([p]) => p === from || p.startsWith(`${from}/`));
    for (const [p] of moved) this.paths.delete(p);
    for (const [p, i] of moved) this.paths.set(to + p.slice(from.length), i);
  }
  /** A copy, to settle an operation of unknown outcome against. */
  snapshot(): Map<string, number> {
    return new Map(this.paths);
  }
  restore(s: Map<string, number>): void {
    this.paths.clear();
    for (const [p, i] of s) this.paths.set(p, i);
  }
}

type Op = { kind: 'mkdir' | 'file' | 'symlink' | 'fifo' | 'sock'; path: string; body: string } | { kind: 'link' | 'rename'; from: string; to: string } | { kind: 'unlink' | 'rmdir'; path: string };

/** One operation the model allows, drawn from the seed; null when none fits. */
export function drawOp(m: NameModel, rng: Prng, seq: number): Op {
  const all = [...m.paths.keys()];
  const dirs = all.filter((p) => m.kindOf(p) === 'dir');
  const nondirs = all.filter((p) => m.kindOf(p) !== 'dir');
  const fresh = () => `${rng.pick(dirs)}/${rng.pick(['a', 'b', 'c', 'x', 'y'])}${seq}`;
  const r = rng.int(100);
  if (r < 12) return { kind: 'mkdir', path: fresh(), body: '' };
  if (r < 24) return { kind: 'file', path: fresh(), body: `data ${seq}` };
  if (r < 34) return { kind: 'symlink', path: fresh(), body: rng.pick(['../x', 'target', '/abs/path', `t${seq}`]) };
  if (r < 40) return { kind: 'fifo', path: fresh(), body: '' };
  if (r < 45) return { kind: 'sock', path: fresh(), body: '' };
  if (r < 57 && nondirs.length) return { kind: 'link', from: rng.pick(nondirs), to: fresh() };
  if (r < 80) {
    const movable = all.filter((p) => p !== '/t');
    if (movable.length) {
      const from = rng.pick(movable);
      const to = fresh();
      if (!to.startsWith(`${from}/`)) return { kind: 'rename', from, to };
    }
  }
  if (r < 92 && nondirs.length) return { kind: 'unlink', path: rng.pick(nondirs) };
  const empty = dirs.filter((d) => d !== '/t' && m.children(d).length === 0);
  if (empty.length) return { kind: 'rmdir', path: rng.pick(empty) };
  return { kind: 'file', path: fresh(), body: `data ${seq}` };
}

export function describe(op: Op): string {
  return 'path' in op ? `${op.kind} ${op.path}` : `${op.kind} ${op.from} -> ${op.to}`;
}

async function apply(v: Volume, op: Op): Promise<void> {
  switch (op.kind) {
    case 'mkdir':
      return v.mkdir(op.path);
    case 'file':
      return v.writeFile(op.path, op.body);
    case 'symlink':
      return v.symlink(op.body, op.path);
    case 'fifo':
      return v.mkfifo(op.path);
    case 'sock':
      await v.client.mknod(op.path, S_IFSOCK | 0o644);
      return;
    case 'link':
      return v.link(op.from, op.to);
    case 'rename':
      return v.rename(op.from, op.to);
    case 'unlink':
      return v.unlink(op.path);
    case 'rmdir':
      return v.rmdir(op.path);
  }
}

function applyModel(m: NameModel, op: Op): void {
  switch (op.kind) {
    case 'mkdir':
      return m.make(op.path, 'dir', '');
    case 'file':
    case 'symlink':
    case 'fifo':
    case 'sock':
      return m.make(op.path, op.kind, op.body);
    case 'link':
      return m.link(op.from, op.to);
    case 'rename':
      return m.rename(op.from, op.to);
    case 'unlink':
    case 'rmdir':
      return m.remove(op.path);
  }
}

/** Whether the volume shows `op` as done (true), not done (false), or neither (null). */
async function settle(v: Volume, op: Op, sleep: (ms: number) => Promise<void>): Promise<boolean | null> {
  const has = async (p: string) => {
    for (let i = 0; ; i++) {
      try {
        await v.lstat(p);
        return true;
      } catch (e) {
        const c = codeOf(e);
        if (c === 'ENOENT') return false;
        if (i >= 100) throw e;
        await sleep(10);
      }
    }
  };
  switch (op.kind) {
    case 'link': {
      const [a, b] = [await has(op.from), await has(op.to)];
      return a ? b : null;
    }
    case 'rename': {
      const [a, b] = [await has(op.from), await has(op.to)];
      return a !== b ? b : null;
    }
    case 'unlink':
    case 'rmdir':
      return !(await has(op.path));
    default:
      return has(op.path);
  }
}

export interface NamerEnv {
  rng: Prng;
  log: (m: string) => void;
  violation: (m: string) => void;
  /** sync(1): every disk's changes durable. */
  sync: () => void;
  sleep: (ms: number) => Promise<void>;
  /** How many lossy power losses have happened so far. */
  lossyLosses: () => number;
}

/** Builds the starting tree: some of every kind, hard links among them. */
export async function seedTree(v: Volume, m: NameModel, env: NamerEnv, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const op = drawOp(m, env.rng, i);
    if (op.kind === 'rename' || op.kind === 'unlink' || op.kind === 'rmdir') continue;
    await apply(v, op);
    applyModel(m, op);
  }
}

/** Runs `count` operations, one after another, with pauses of up to `pauseMs`. */
export async function namer(v: Volume, m: NameModel, env: NamerEnv, count: number, pauseMs: number, first: number, settleFailed: boolean): Promise<void> {
  for (let i = 0; i < count; i++) {
    await env.sleep(env.rng.int(pauseMs * 100) / 100);
    const op = drawOp(m, env.rng, first + i);
    const lossesBefore = env.lossyLosses();
    let outcome: 'ok' | 'unknown' = 'ok';
    try {
      await apply(v, op);
    } catch (e) {
      outcome = 'unknown';
      const c = codeOf(e);
      // The model allows the operation: an answer that it cannot be done is a violation (S4: a name the
      // namer made is missing, or one it removed is still there), unless a power loss took part of it.
      if (['ENOENT', 'EEXIST', 'ENOTEMPTY', 'ENOTDIR', 'EISDIR'].includes(c) && !m.uncertain && env.lossyLosses() === lossesBefore) {
        // (Also without settleFailed: the model allows this operation in the state every earlier one left.)
        env.violation(`S4 namer ${describe(op)} failed with ${c}, which its model does not allow: ${(e as Error).message}`);
      }
      env.log(`namer ${describe(op)}: ${(e as Error).message}`);
    }
    if (env.lossyLosses() !== lossesBefore) {
      // Part of the operation may be gone from one brick and not another.
      if (!m.uncertain) env.log('namer: a power loss met an operation in flight; the names are not checked any more');
      m.uncertain = true;
    }
    if (outcome === 'ok') applyModel(m, op);
    else if (!settleFailed) {
      if (!m.uncertain) env.log(`namer: ${describe(op)} failed; the names are not checked any more`);
      m.uncertain = true;
    } else if (!m.uncertain) {
      const done = await settle(v, op, env.sleep).catch((e: unknown) => {
        env.log(`namer: cannot settle ${describe(op)} (${codeOf(e)}); the names are not checked any more`);
        m.uncertain = true;
        return false;
      });
      if (m.uncertain) {
        /* could not tell */
      } else if (done === null) {
        env.violation(`S4 namer ${describe(op)}: after it failed, its names show neither outcome`);
        m.uncertain = true;
      } else if (done) {
        applyModel(m, op);
        // A file made whose bytes may not all have been written: whatever it holds of them.
        if (op.kind === 'file') {
          // (Read again after an error, as `has` looks again: an injected EIO on the read left the model
          // expecting every byte of a file whose write had failed, seed 84 of --names-strict --errors.)
          let got: string | null = null;
          for (let i = 0; i < 100 && got === null; i++) {
            const r = await v.readFile(op.path).then(
              (b) => b.toString(),
              (e: unknown) => e,
            );
            if (typeof r === 'string') got = r;
            else if (codeOf(r) === 'ENOENT') break;
            else await env.sleep(10);
          }
          if (got !== null && op.body.startsWith(got)) m.inodes.get(m.paths.get(op.path)!)!.body = got;
        }
      }
    }
    env.sync();
    m.ops++;
    env.log(`namer ${describe(op)}: ${outcome}`);
  }
}
