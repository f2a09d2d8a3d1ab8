/**
 * Volume state kept by the CLI on this host (the part of glusterd dhtfs needs): volume specs, brick
 * process ids and logs, under DHTFS_HOME (default ~/.dhtfs).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randomBytes, randomUUID } from 'node:crypto';
import { validateSpec, type BrickSpec, type VolumeOptions, type VolumeSpec } from '../dht/spec.js';
import { RpcClient } from '../wire/rpc.js';
import { tcpNetwork } from '../wire/tcp.js';

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const MAIN_JS = path.join(PACKAGE_ROOT, 'dist/src/cli/main.js');

export function home(): string {
  return process.env.DHTFS_HOME ?? path.join(os.homedir(), '.dhtfs');
}

export function volDir(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new Error(`bad volume name '${name}': use letters, digits, '.', '_' and '-'`);
  return path.join(home(), 'volumes', name);
}

export interface StoredVolume extends VolumeSpec {
  bricks: (BrickSpec & { dir: string })[];
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

/** Parses HOST:PORT:DIR (DIR may contain ':'; HOST may be [v6]). */
export function parseBrickArg(arg: string): { host: string; port: number; dir: string } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+):(\/.*)$/.exec(arg);
  if (!m) throw new Error(`bad brick '${arg}': expected HOST:PORT:/ABSOLUTE/DIR`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`bad port in '${arg}'`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port, dir: path.resolve(m[3]) };
}

export function isLocalHost(host: string): boolean {
  if (host === 'localhost' || host === os.hostname() || host.startsWith('127.') || host === '::1') return true;
  return Object.values(os.networkInterfaces()).some((l) => l?.some((i) => i.address === host));
}

export function createVolume(name: string, bricks: string[], options: VolumeOptions = {}): StoredVolume {
  if (fs.existsSync(specPath(name))) throw new Error(`volume ${name} already exists`);
  if (bricks.length === 0) throw new Error('a volume needs at least one brick');
  const parsed = bricks.map(parseBrickArg);
  const seen = new Set<string>();
  for (const b of parsed) {
    const k = `${b.host}:${b.port}`;
    if (seen.has(k)) throw new Error(`brick address ${k} given twice`);
    seen.add(k);
  }
  const v: StoredVolume = {
    name,
    volumeId: randomUUID(),
    secret: newSecret(),
    adminSecret: newSecret(),
    bricks: parsed.map((b, i) => ({ name: `${name}-client-${i}`, host: b.host, port: b.port, dir: b.dir })),
    options,
    state: 'created',
    created: new Date().toISOString(),
  };
  for (const b of v.bricks) if (isLocalHost(b.host)) fs.mkdirSync(b.dir, { recursive: true });
  saveVolume(v);
  return v;
}

function pidFile(v: StoredVolume, brick: string): string {
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
    const c = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: v.volumeId, secret: v.secret, brickName: b.name, clientName: 'probe' });
    c.close();
    return true;
  } catch {
    return false;
  }
}

/** Starts this host's brick processes (detached), and waits until each answers. */
export async function startBricks(v: StoredVolume, timeoutMs = 15000): Promise<{ brick: string; pid: number; started: boolean }[]> {
  fs.mkdirSync(path.join(volDir(v.name), 'run'), { recursive: true });
  fs.mkdirSync(path.join(volDir(v.name), 'logs'), { recursive: true });
  const out: { brick: string; pid: number; started: boolean }[] = [];
  for (const b of v.bricks) {
    if (!isLocalHost(b.host)) continue;
    const running = brickPid(v, b.name);
    if (running) {
      out.push({ brick: b.name, pid: running, started: false });
      continue;
    }
    fs.mkdirSync(b.dir, { recursive: true });
    const log = fs.openSync(logFile(v, b.name), 'a');
    const child = spawn(process.execPath, [MAIN_JS, 'brick', 'serve', '--spec', specPath(v.name), '--brick', b.name], {
      detached: true,
      stdio: ['ignore', log, log],
    });
    child.unref();
    fs.closeSync(log);
    fs.writeFileSync(pidFile(v, b.name), String(child.pid));
    out.push({ brick: b.name, pid: child.pid!, started: true });
  }
  const deadline = Date.now() + timeoutMs;
  for (const b of v.bricks.filter((x) => isLocalHost(x.host))) {
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
