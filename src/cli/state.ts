/**
 * Volume state kept by the CLI on this host (the part of glusterd dhtfs needs): volume specs, brick
 * process ids and logs, under DHTFS_HOME (default ~/.dhtfs).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randomBytes, randomUUID } from 'node:crypto';
import { validateSpec, type BrickSpec, type VolumeOptions, type VolumeSpec } from '../dht/spec.js';
import { RpcClient } from '../wire/rpc.js';
import { specNetwork } from '../api/network.js';
import { ensureBrickCert } from './cert.js';
import { lastLogLines } from '../cluster/proc.js';

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const MAIN_JS = path.join(PACKAGE_ROOT, 'dist/src/cli/main.js');

export function home(): string {
  return process.env.DHTFS_HOME ?? path.join(os.homedir(), '.dhtfs');
}

export function volDir(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new Error(`bad volume name '${name}': use letters, digits, '.', '_' and '-'`);
  return path.join(home(), 'volumes', name);
}

/** A brick as this host's state keeps it: its directory, and the id its directory is claimed with. */
export type StoredBrick = BrickSpec & { dir: string; id?: string };

export interface StoredVolume extends VolumeSpec {
  bricks: StoredBrick[];
  state: 'created' | 'started' | 'stopped';
  created: string;
}

export function specPath(name: string): string {
  return path.join(volDir(name), 'spec.json');
}

export function loadVolume(name: string): StoredVolume {
  const p = specPath(name);
  if (!fs.existsSync(p)) throw new Error(`volume ${name} does not exist (no ${p})`);
  const v = validateSpec(JSON.parse(fs.readFileSync(p, 'utf8'))) as StoredVolume;
  // Volumes made before the admin credential get one (their bricks take it up at their next start).
  if (typeof v.adminSecret !== 'string') {
    v.adminSecret = newSecret();
    saveVolume(v);
  }
  return v;
}

function newSecret(): string {
  return randomBytes(24).toString('base64url');
}

export function saveVolume(v: StoredVolume): void {
  fs.mkdirSync(volDir(v.name), { recursive: true, mode: 0o700 });
  const tmp = specPath(v.name) + '.tmp';
  fs.writeFileSync(tmp, JSON.stringify(v, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, specPath(v.name));
}

export function listVolumes(): string[] {
  const d = path.join(home(), 'volumes');
  if (!fs.existsSync(d)) return [];
  return fs.readdirSync(d).filter((n) => fs.existsSync(path.join(d, n, 'spec.json')));
}

/**
 * Parses HOST:PORT:/DIR, or HOST:/DIR (port 0: the brick binds one of the brick port range when it first
 * starts, and the spec keeps it). DIR may contain ':'; HOST may be [v6].
 */
export function parseBrickArg(arg: string): { host: string; port: number; dir: string } {
  const m = /^(\[[^\]]+\]|[^:/]+):(?:(\d+):)?(\/.*)$/.exec(arg);
  if (!m) throw new Error(`bad brick '${arg}': expected HOST:/ABSOLUTE/DIR or HOST:PORT:/ABSOLUTE/DIR`);
  const port = m[2] === undefined ? 0 : Number(m[2]);
  if (m[2] !== undefined && (port < 1 || port > 65535)) throw new Error(`bad port in '${arg}'`);
  const host = m[1].replace(/^\[|\]$/g, '');
  if (port === 0 && !isLocalHost(host)) throw new Error(`brick '${arg}' is on another host: give its port (HOST:PORT:/DIR), the one its brick serve listens on`);
  return { host, port, dir: path.resolve(m[3]) };
}

/** A directory as its host sees it: symbolic links resolved where it exists here (the longest existing part). */
function realDir(host: string, dir: string): string {
  if (!isLocalHost(host)) return dir;
  let head = dir;
  const tail: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync(head), ...tail.reverse());
    } catch {
      if (head === path.dirname(head)) return dir;
      tail.push(path.basename(head));
      head = path.dirname(head);
    }
  }
}

/**
 * Refuses new bricks whose directories are, on the same host, the directory of a brick of the volume,
 * or inside one, or hold one (one directory serving as two bricks overwrote its own layouts), or whose
 * address is a brick's already.
 */
export function checkNewBricks(v: { name: string; bricks: StoredBrick[] }, added: { host: string; port: number; dir: string }[]): void {
  const all = [...v.bricks.map((b) => ({ ...b, what: `brick ${b.name} (${b.host}:${b.port}:${b.dir})` }))];
  for (const p of added) {
    if (isLocalHost(p.host) && fs.existsSync(p.dir) && !fs.statSync(p.dir).isDirectory()) throw new Error(`${p.dir} is not a directory`);
    const here = realDir(p.host, p.dir);
    for (const b of all) {
      const same = isLocalHost(p.host) ? isLocalHost(b.host) : p.host === b.host;
      if (p.port !== 0 && b.port === p.port && (p.host === b.host || same)) throw new Error(`${p.host}:${p.port} is already the address of ${b.what} of volume ${v.name}`);
      if (!same) continue;
      const there = realDir(b.host, b.dir);
      const rel = here === there ? 'is' : here.startsWith(there + '/') ? 'is inside' : there.startsWith(here + '/') ? 'holds' : null;
      if (rel) throw new Error(`${p.host}:${p.dir} ${rel} the directory of ${b.what} of volume ${v.name}; a directory serves one brick`);
    }
    all.push({ name: '(new)', host: p.host, port: p.port, dir: p.dir, what: `${p.host}:${p.dir}, given twice` });
  }
}

export function isLocalHost(host: string): boolean {
  if (host === 'localhost' || host === os.hostname() || host.startsWith('127.') || host === '::1') return true;
  return Object.values(os.networkInterfaces()).some((l) => l?.some((i) => i.address === host));
}

export function createVolume(name: string, bricks: string[], options: VolumeOptions = {}): StoredVolume {
  if (fs.existsSync(specPath(name))) throw new Error(`volume ${name} already exists`);
  if (bricks.length === 0) throw new Error('a volume needs at least one brick');
  const parsed = bricks.map(parseBrickArg);
  checkNewBricks({ name, bricks: [] }, parsed);
  const v: StoredVolume = {
    name,
    volumeId: randomUUID(),
    secret: newSecret(),
    adminSecret: newSecret(),
    bricks: parsed.map((b, i) => ({ name: `${name}-client-${i}`, host: b.host, port: b.port, dir: b.dir, id: randomUUID() })),
    options,
    state: 'created',
    created: new Date().toISOString(),
  };
  for (const b of v.bricks) if (isLocalHost(b.host)) fs.mkdirSync(b.dir, { recursive: true });
  saveVolume(v);
  return v;
}

export function pidFile(v: StoredVolume, brick: string): string {
  return path.join(volDir(v.name), 'run', `${brick}.pid`);
}

export function logFile(v: StoredVolume, brick: string): string {
  return path.join(volDir(v.name), 'logs', `${brick}.log`);
}

export function brickPid(v: StoredVolume, brick: string): number | null {
  try {
    const pid = Number(fs.readFileSync(pidFile(v, brick), 'utf8'));
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

/** Handshakes with a brick; true when it answers as a brick of this volume. */
export async function probeBrick(v: VolumeSpec, b: BrickSpec): Promise<boolean> {
  try {
    const c = await RpcClient.connect(specNetwork(v), b.host, b.port, { volumeId: v.volumeId, secret: v.secret, brickName: b.name, clientName: 'probe' });
    c.close();
    return true;
  } catch {
    return false;
  }
}

/** A brick process being started: its pid, and where its output begins in its log. */
export interface Spawned {
  brick: StoredBrick;
  pid: number;
  child: ChildProcess;
  log: string;
  from: number;
}

/**
 * Starts one brick process (detached; output appended to its log) serving `b` as `specFile` describes
 * it (the volume's spec, or one with a brick not in it yet: add-brick, replace-brick).
 */
export function spawnBrick(v: StoredVolume, b: StoredBrick, specFile = specPath(v.name)): Spawned {
  // A brick of a TLS volume serves with its certificate (issued now for a brick added since TLS was on).
  if (v.options?.tls) ensureBrickCert(v, b);
  fs.mkdirSync(path.join(volDir(v.name), 'run'), { recursive: true });
  fs.mkdirSync(path.join(volDir(v.name), 'logs'), { recursive: true });
  const log = logFile(v, b.name);
  const fd = fs.openSync(log, 'a');
  const from = fs.fstatSync(fd).size;
  const child = spawn(process.execPath, [MAIN_JS, 'brick', 'serve', '--spec', specFile, '--brick', b.name], { detached: true, stdio: ['ignore', fd, fd] });
  child.unref();
  fs.closeSync(fd);
  child.once('exit', () => {}); // reaped, so that an ended brick is seen ended
  fs.writeFileSync(pidFile(v, b.name), String(child.pid));
  return { brick: b, pid: child.pid!, child, log, from };
}

/**
 * Waits until a brick process started by spawnBrick is bound (its listening line names its port, which
 * is written into `s.brick`) and answers a handshake; fails with its log's last lines if it ends first.
 */
export async function awaitBrick(v: StoredVolume, s: Spawned, deadline: number): Promise<void> {
  const tail = () => lastLogLines(fs.readFileSync(s.log, 'utf8').slice(s.from), 3).join('; ');
  const ended = () => s.child.exitCode !== null || s.child.signalCode !== null;
  let bound = false;
  for (;;) {
    if (!bound) {
      for (const l of fs.readFileSync(s.log, 'utf8').slice(s.from).split('\n')) {
        if (!l.includes('"listening"')) continue;
        try {
          const ev = JSON.parse(l) as { event?: string; port?: number; pid?: number };
          if (ev.event === 'listening' && ev.pid === s.pid && typeof ev.port === 'number') {
            s.brick.port = ev.port;
            bound = true;
          }
        } catch {
          /* not that line */
        }
      }
    }
    if (bound && (await probeBrick(v, s.brick))) return;
    if (ended()) {
      fs.rmSync(pidFile(v, s.brick.name), { force: true });
      throw new Error(`brick ${s.brick.name} (${s.brick.host}:${s.brick.dir}) did not start: ${tail() || 'it exited'} (log: ${s.log})`);
    }
    if (Date.now() > deadline) throw new Error(`brick ${s.brick.name} did not answer in time; see ${s.log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts this host's brick processes (detached), and waits until each is bound and answers. A brick
 * with no port yet (HOST:/DIR) takes one of the brick port range, written into `v` (save it after).
 */
export async function startBricks(v: StoredVolume, timeoutMs = 15000): Promise<{ brick: string; pid: number; started: boolean }[]> {
  const out: { brick: string; pid: number; started: boolean }[] = [];
  const spawned: Spawned[] = [];
  for (const b of v.bricks) {
    if (!isLocalHost(b.host)) continue;
    const running = brickPid(v, b.name);
    if (running) {
      out.push({ brick: b.name, pid: running, started: false });
      continue;
    }
    fs.mkdirSync(b.dir, { recursive: true });
    const s = spawnBrick(v, b);
    spawned.push(s);
    out.push({ brick: b.name, pid: s.pid, started: true });
  }
  const deadline = Date.now() + timeoutMs;
  const unassigned = spawned.filter((s) => s.brick.port === 0);
  try {
    for (const s of spawned) await awaitBrick(v, s, deadline);
  } finally {
    // Ports the bricks took are the volume's from now on, also when another brick failed.
    if (unassigned.some((s) => s.brick.port !== 0)) saveVolume(v);
  }
  for (const b of v.bricks.filter((x) => isLocalHost(x.host) && !spawned.some((s) => s.brick === x))) {
    for (;;) {
      if (await probeBrick(v, b)) break;
      if (!brickPid(v, b.name)) throw new Error(`brick ${b.name} exited; see ${logFile(v, b.name)}`);
      if (Date.now() > deadline) throw new Error(`brick ${b.name} did not answer within ${timeoutMs} ms; see ${logFile(v, b.name)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return out;
}

export async function stopBricks(v: StoredVolume): Promise<{ brick: string; pid: number }[]> {
  const out: { brick: string; pid: number }[] = [];
  for (const b of v.bricks) {
    const pid = brickPid(v, b.name);
    if (!pid) continue;
    process.kill(pid, 'SIGTERM');
    out.push({ brick: b.name, pid });
  }
  const deadline = Date.now() + 10000;
  for (const o of out) {
    while (Date.now() < deadline) {
      try {
        process.kill(o.pid, 0);
        await new Promise((r) => setTimeout(r, 50));
      } catch {
        break;
      }
    }
    try {
      process.kill(o.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    fs.rmSync(pidFile(v, o.brick), { force: true });
  }
  return out;
}

/** A TCP port that is free on the loopback interface now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}
