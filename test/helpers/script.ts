/**
 * Data-driven script tests for the brick (issue 18, item 5; after etcd raft's datadriven tests): a text
 * file of commands, each followed by `----` and the output it must give, played against Bricks over
 * simulated storage (src/sim/storage.ts) in a deterministic world. `UPDATE_GOLDEN=1` rewrites the
 * expected outputs in the script files from what the code gives (review the diff, then commit it).
 *
 * Commands (one per block; a block ends at a blank line after its output):
 *   BRICK OP key=value ... [=> name:field ...]   a request to brick BRICK (b0, b1, ...; made on first use)
 *                                               through Brick.handle; `=> tok:token` keeps a reply field
 *   tree BRICK                                  the brick's disk: every name, its type, mode, size, links
 *                                               and xattrs (gfids as @names)
 *   crash BRICK                                 power loss (what the simulated disk drops, it drops) and a
 *                                               new brick process on the disk
 *   restart BRICK                               the brick's process restarts; the disk keeps everything
 *   advance MS                                  virtual time passes (leases expire)
 * Values: 0644 (octal), 12, true, false, null, "json string", b"bytes as text", @name (a gfid: the same
 * name is the same gfid in the whole script; an unknown gfid in an output gets the next free @gN),
 * $name (a value kept with =>), and JSON arrays or maps (strings in them may be @names, $names or
 * "b:text" for bytes).
 */
import fs from 'node:fs';
import { Brick } from '../../src/brick/brick.js';
import type { Session } from '../../src/brick/core.js';
import { codeOf } from '../../src/common/errors.js';
import { SimStorage } from '../../src/sim/storage.js';
import { World } from '../../src/sim/world.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../src/storage/storage.js';

interface AttrLike {
  gfid: string;
  mode: number;
  size: number;
  nlink: number;
  uid: number;
  gid: number;
  layout?: unknown;
  rdev?: number;
}
/** Attribute fields the short form shows (or leaves out: times and inode numbers); any other is shown as key=value. */
const ATTR_SHOWN = new Set(['gfid', 'mode', 'size', 'nlink', 'uid', 'gid', 'layout', 'rdev', 'atime', 'mtime', 'ctime', 'ino', 'blocks']);
const TYPES: Record<number, string> = { [S_IFDIR]: 'dir', [S_IFREG]: 'file', [S_IFLNK]: 'symlink', 0o010000: 'fifo', 0o140000: 'socket', 0o020000: 'chardev', 0o060000: 'blockdev' };

export const SCRIPT_VOLUME_ID = '5f0e8a4c-1d2b-4c3a-9e8f-0a1b2c3d4e5f';
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

interface Block {
  command: string;
  expected: string;
  /** Line numbers (0-based) of the block's first line and of the line after its output. */
  start: number;
  end: number;
}

/** Splits a script into blocks: comment lines (#) and blank lines between blocks are kept as they are. */
export function parseScript(text: string): { lines: string[]; blocks: Block[] } {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const l = lines[i];
    if (l.trim() === '' || l.startsWith('#')) {
      i++;
      continue;
    }
    const start = i;
    const command = l;
    i++;
    if (lines[i] !== '----') throw new Error(`line ${i + 1}: '----' expected after: ${command}`);
    i++;
    const out: string[] = [];
    while (i < lines.length && lines[i] !== '') out.push(lines[i++]);
    blocks.push({ command, expected: out.join('\n'), start, end: i });
  }
  return { lines, blocks };
}

/** Splits `a=1 b="x y" c=[1, 2]` into its words, keeping quoted strings and brackets whole. */
function words(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let depth = 0;
  let quote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      cur += c;
      if (c === '\\') cur += s[++i];
      else if (c === '"') quote = false;
    } else if (c === '"') {
      quote = true;
      cur += c;
    } else if (c === '[' || c === '{') {
      depth++;
      cur += c;
    } else if (c === ']' || c === '}') {
      depth--;
      cur += c;
    } else if (c === ' ' && depth === 0) {
      if (cur) out.push(cur);
      cur = '';
    } else cur += c;
  }
  if (cur) out.push(cur);
  return out;
}

export class ScriptRunner {
  readonly world: World;
  private readonly storages = new Map<string, SimStorage>();
  private readonly bricks = new Map<string, { brick: Brick; session: Session }>();
  /** @name -> gfid, and back. */
  private readonly gfids = new Map<string, string>();
  private readonly names = new Map<string, string>();
  private readonly kept = new Map<string, unknown>();

  constructor(seed = 1) {
    this.world = new World(seed);
    this.names.set('00000000-0000-0000-0000-000000000001', '@root');
    this.gfids.set('@root', '00000000-0000-0000-0000-000000000001');
    this.names.set(SCRIPT_VOLUME_ID, '@volume');
    this.gfids.set('@volume', SCRIPT_VOLUME_ID);
  }

  private gfidOf(name: string): string {
    let g = this.gfids.get(name);
    if (!g) {
      g = `00000000-0000-4000-8000-${String(this.gfids.size + 1).padStart(12, '0')}`;
      this.gfids.set(name, g);
      this.names.set(g, name);
    }
    return g;
  }

  private nameOf(gfid: string): string {
    let n = this.names.get(gfid);
    if (!n) {
      n = `@g${this.names.size + 1}`;
      this.names.set(gfid, n);
      this.gfids.set(n, gfid);
    }
    return n;
  }

  private brick(name: string): { brick: Brick; session: Session } {
    let b = this.bricks.get(name);
    if (!b) {
      let st = this.storages.get(name);
      if (!st) {
        st = new SimStorage(this.world);
        this.storages.set(name, st);
      }
      const brick = new Brick(st, { name: `sv-client-${name.slice(1)}`, volumeId: SCRIPT_VOLUME_ID, xattrPrefix: 'trusted.' }, this.world.clock, this.world.random);
      brick.init();
      b = { brick, session: brick.openSession({ remote: 'script', client: 'script', admin: true }) };
      this.bricks.set(name, b);
    }
    return b;
  }

  private value(w: string): unknown {
    if (w.startsWith('@')) return this.gfidOf(w);
    if (w.startsWith('$')) {
      if (!this.kept.has(w.slice(1))) throw new Error(`nothing kept as ${w}`);
      return this.kept.get(w.slice(1));
    }
    if (w.startsWith('b"')) return Buffer.from(JSON.parse(w.slice(1)) as string);
    if (w.startsWith('"')) return JSON.parse(w);
    if (w.startsWith('[') || w.startsWith('{')) return this.resolve(JSON.parse(w));
    if (w === 'true' || w === 'false' || w === 'null') return JSON.parse(w);
    if (/^0[0-7]+$/.test(w)) return parseInt(w, 8);
    if (/^-?\d+$/.test(w)) return Number(w);
    return w;
  }

  private resolve(v: unknown): unknown {
    if (typeof v === 'string' && (v.startsWith('@') || v.startsWith('$'))) return this.value(v);
    if (typeof v === 'string' && v.startsWith('b:')) return Buffer.from(v.slice(2));
    if (Array.isArray(v)) return v.map((x) => this.resolve(x));
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.resolve(x)]));
    return v;
  }

  /** A value as the golden output shows it: keys sorted, gfids as @names, bytes as b"text" or hex. */
  render(v: unknown): string {
    if (v === undefined) return 'undefined';
    if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
      const b = Buffer.from(v);
      if (b.length === 16 && !/^[\x20-\x7e]*$/.test(b.toString('latin1'))) {
        const hex = b.toString('hex');
        return this.nameOf(`${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`);
      }
      // Text, or text with the NUL that ends GlusterFS's linkto names, is shown as text.
      const nul = b.length > 0 && b[b.length - 1] === 0;
      const s = b.subarray(0, nul ? -1 : undefined).toString('utf8');
      if (!/^[\x20-\x7e]*$/.test(s)) return `hex:${b.toString('hex')}`;
      const text = JSON.stringify(s.replace(UUID, (g) => this.nameOf(g)));
      return `b${nul ? `${text.slice(0, -1)}\\0"` : text}`;
    }
    if (typeof v === 'string') return /^[0-9a-f-]{36}$/.test(v) && v.match(UUID)?.[0] === v ? this.nameOf(v) : JSON.stringify(v.replace(UUID, (g) => this.nameOf(g)));
    if (Array.isArray(v)) return `[${v.map((x) => this.render(x)).join(', ')}]`;
    if (v && typeof v === 'object' && 'gfid' in v && 'mode' in v && 'ino' in v) return this.attr(v as unknown as AttrLike);
    if (v && typeof v === 'object') {
      const keys = Object.keys(v).sort();
      return `{${keys.map((k) => `${k}: ${this.render((v as Record<string, unknown>)[k])}`).join(', ')}}`;
    }
    return String(v);
  }

  /** A file's attributes, short: type and mode, gfid, size, links, owner when not root, layout of a directory. */
  private attr(a: AttrLike): string {
    const type = TYPES[a.mode & S_IFMT] ?? `type ${(a.mode & S_IFMT).toString(8)}`;
    let out = `${type} ${(a.mode & 0o7777).toString(8).padStart(4, '0')} ${this.render(a.gfid)}`;
    if (type === 'file') out += ` size=${a.size}`;
    if (a.nlink !== 1 && type !== 'dir') out += ` nlink=${a.nlink}`;
    if (a.uid || a.gid) out += ` owner=${a.uid}:${a.gid}`;
    if (a.layout) out += ` layout=${this.render(a.layout)}`;
    if (a.rdev) out += ` rdev=${a.rdev}`;
    for (const k of Object.keys(a).sort()) if (!ATTR_SHOWN.has(k)) out += ` ${k}=${this.render((a as unknown as Record<string, unknown>)[k])}`;
    return `<${out}>`;
  }

  /** Runs one command and returns its output. */
  async run(command: string): Promise<string> {
    const [head, ...rest] = words(command);
    switch (head) {
      case 'tree':
        return this.tree(rest[0]);
      case 'crash':
      case 'restart': {
        const st = this.storages.get(rest[0]);
        if (!st) throw new Error(`no brick ${rest[0]}`);
        if (head === 'crash') st.crash();
        else st.brickExited();
        this.bricks.delete(rest[0]);
        this.brick(rest[0]);
        return 'ok';
      }
      case 'advance': {
        const until = this.world.now + Number(rest[0]);
        this.world.at(Number(rest[0]), () => {});
        await this.world.run(() => this.world.now >= until, until + 1);
        return `now ${this.world.now}`;
      }
    }
    if (!/^b\d+$/.test(head)) throw new Error(`unknown command: ${command}`);
    const op = rest[0];
    const args: Record<string, unknown> = {};
    const keep: [string, string][] = [];
    let keeping = false;
    for (const w of rest.slice(1)) {
      if (w === '=>') keeping = true;
      else if (keeping) keep.push(w.split(':') as [string, string]);
      else {
        const eq = w.indexOf('=');
        if (eq < 0) throw new Error(`key=value expected: ${w}`);
        args[w.slice(0, eq)] = this.value(w.slice(eq + 1));
      }
    }
    const { brick, session } = this.brick(head);
    const result: { settled: boolean; ok: boolean; v?: unknown; e?: unknown } = { settled: false, ok: false };
    Promise.resolve()
      .then(() => brick.handle(session, op, args))
      .then(
        (v) => Object.assign(result, { settled: true, ok: true, v }),
        (e) => Object.assign(result, { settled: true, ok: false, e }),
      );
    await this.world.run(() => result.settled, this.world.now + 3_600_000);
    if (!result.settled) return 'pending';
    if (!result.ok) {
      // An FsError is an answer; anything else (a TypeError) is a bug the script shows by failing.
      const c = (result.e as { code?: unknown })?.code;
      if (typeof c !== 'string') throw result.e;
      return `error ${codeOf(result.e)}`;
    }
    for (const [name, field] of keep) this.kept.set(name, (result.v as Record<string, unknown>)[field]);
    return `ok ${this.render(result.v)}`;
  }

  private tree(name: string): string {
    const st = this.storages.get(name);
    if (!st) throw new Error(`no brick ${name}`);
    const out: string[] = [];
    const walk = (p: string) => {
      const s = st.lstat(p);
      const type = (s.mode & S_IFMT) === S_IFDIR ? 'dir' : (s.mode & S_IFMT) === S_IFREG ? 'file' : (s.mode & S_IFMT) === S_IFLNK ? 'symlink' : 'other';
      const shown = ('/' + p).replace(UUID, (g) => this.nameOf(g));
      // .glusterfs's two levels of fan-out folders say nothing a handle's name does not.
      const fanout = /^\.glusterfs\/[0-9a-f]{2}(\/[0-9a-f]{2})?$/.test(p);
      if (!fanout) {
        let line = `${shown} ${type} ${(s.mode & 0o7777).toString(8).padStart(4, '0')}`;
        if (type === 'file') line += ` size=${s.size}`;
        if (type === 'symlink') line += ` -> ${this.render(st.readlink(p))}`;
        if (type === 'file' && s.nlink > 1) line += ` nlink=${s.nlink}`;
        out.push(line);
        for (const x of st.listxattr(p).sort()) out.push(`  ${x}=${this.render(st.getxattr(p, x))}`);
      }
      if (type === 'dir')
        for (const e of st
          .readdir(p)
          .map((d) => d.name)
          .sort())
          walk(p ? `${p}/${e}` : e);
    };
    walk('');
    return out.join('\n');
  }
}

/** Plays a script file; returns the blocks whose output differs (and rewrites the file with `update`). */
export async function playScript(file: string, update: boolean): Promise<{ command: string; expected: string; got: string }[]> {
  const text = fs.readFileSync(file, 'utf8');
  const { lines, blocks } = parseScript(text);
  const r = new ScriptRunner();
  const wrong: { command: string; expected: string; got: string }[] = [];
  const outputs: string[] = [];
  for (const b of blocks) {
    const got = await r.run(b.command);
    outputs.push(got);
    if (got !== b.expected) wrong.push({ command: b.command, expected: b.expected, got });
  }
  if (update && wrong.length) {
    const out: string[] = [];
    let at = 0;
    blocks.forEach((b, i) => {
      out.push(...lines.slice(at, b.start + 2));
      out.push(...(outputs[i] === '' ? [] : outputs[i].split('\n')));
      at = b.end;
    });
    out.push(...lines.slice(at));
    fs.writeFileSync(file, out.join('\n'));
  }
  return wrong;
}
