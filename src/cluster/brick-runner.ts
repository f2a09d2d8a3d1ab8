/**
 * The node daemon's real brick processes (node.ts's BrickRunner) and its announcements to bricks. A brick
 * process is detached, its output appended to a log under the node's state folder: it keeps serving when
 * the daemon stops (the data path needs no daemon), and a daemon that starts again adopts it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { liveOptionsIn } from '../dht/spec.js';
import { RpcClient } from '../wire/rpc.js';
import { tcpNetwork } from '../wire/tcp.js';
import { tlsNetwork, type TlsFiles } from '../wire/tls.js';
import type { Network } from '../wire/transport.js';
import type { BrickRunner, RunningBrick } from './node.js';
import type { BrickStatus, PlacedBrick, VolumeRecord } from './records.js';
import { alive, lastLogLines } from './proc.js';
import { codeOf } from '../common/errors.js';

const MAIN_JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
/** How long a brick may take to listen. */
const START_TIMEOUT_MS = 15_000;
/** How long a stopped brick gets to close its connections before it is killed. */
const STOP_GRACE_MS = 10_000;
/** How often an adopted process (not this process's child: no exit event) is looked at. */
const ADOPTED_POLL_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function stopPid(pid: number, gone: () => boolean): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + STOP_GRACE_MS;
  while (!gone() && Date.now() < deadline) await sleep(50);
  if (!gone()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
    while (!gone()) await sleep(20);
  }
}

export class ProcessBrickRunner implements BrickRunner {
  constructor(
    private readonly stateDir: string,
    /** The address this node's bricks listen on. */
    private readonly address: string,
    private readonly portRange?: string,
    /** This node's certificate folder (cert.pem, key.pem, ca.pem, crl.pem): the bricks of volumes with transport.tls on present it. */
    private readonly tlsDir?: string,
  ) {}

  /** The volume's secrets, in files only this node's user reads (brick serve takes them from files). */
  private secrets(v: VolumeRecord): { secret: string; admin: string } {
    const dir = path.join(this.stateDir, 'volumes', v.name);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const secret = path.join(dir, 'secret');
    const admin = path.join(dir, 'admin-secret');
    fs.writeFileSync(secret, v.secret, { mode: 0o600 });
    fs.writeFileSync(admin, v.adminSecret, { mode: 0o600 });
    return { secret, admin };
  }

  logFile(vol: string, brick: string): string {
    return path.join(this.stateDir, 'logs', vol, `${brick}.log`);
  }

  async start(v: VolumeRecord, b: PlacedBrick, port: number): Promise<RunningBrick> {
    const { secret, admin } = this.secrets(v);
    fs.mkdirSync(b.dir, { recursive: true });
    const log = this.logFile(v.name, b.name);
    fs.mkdirSync(path.dirname(log), { recursive: true });
    const fd = fs.openSync(log, 'a');
    const from = fs.fstatSync(fd).size;
    const args = [MAIN_JS, 'brick', 'serve', '--dir', b.dir, '--host', this.address, '--port', String(port), '--name', b.name, '--volume-id', v.volumeId, '--secret-file', secret, '--admin-secret-file', admin];
    if (this.portRange) args.push('--port-range', this.portRange);
    if (v.options?.tls) {
      if (!this.tlsDir) throw new Error(`volume ${v.name} has transport.tls on, and this node has no certificate folder`);
      args.push('--tls-dir', this.tlsDir);
    }
    const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    child.unref();
    let ended: string | null = null;
    const exited = new Promise<string>((resolve) =>
      child.once('exit', (code, signal) => {
        ended = signal ? `signal ${signal}` : `exit code ${code}`;
        resolve(ended);
      }),
    );
    const pid = child.pid!;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const out = fs.readFileSync(log, 'utf8').slice(from);
      for (const l of out.split('\n')) {
        if (!l.includes('"listening"')) continue;
        try {
          const ev = JSON.parse(l) as { event?: string; port?: number; pid?: number };
          if (ev.event === 'listening' && ev.pid === pid && typeof ev.port === 'number') {
            const p = ev.port;
            return { pid, port: p, exited, stop: () => stopPid(pid, () => ended !== null) };
          }
        } catch {
          /* another line */
        }
      }
      if (ended !== null) {
        const tail = lastLogLines(out, 2);
        throw new Error(`${tail.join('; ') || ended} (log: ${log})`);
      }
      if (Date.now() > deadline) {
        await stopPid(pid, () => ended !== null);
        throw new Error(`it did not listen within ${START_TIMEOUT_MS / 1000} s (log: ${log})`);
      }
      await sleep(50);
    }
  }

  async adopt(v: VolumeRecord, b: PlacedBrick, st: BrickStatus): Promise<RunningBrick | null> {
    if (!st.pid || !st.port || !alive(st.pid)) return null;
    // Only a brick process serving this very folder is taken for it (a pid may have been reused).
    let cmd: string[];
    try {
      cmd = fs.readFileSync(`/proc/${st.pid}/cmdline`, 'utf8').split('\0');
    } catch {
      return null;
    }
    const at = cmd.indexOf('--dir');
    if (!cmd.includes('serve') || at < 0 || cmd[at + 1] !== b.dir || cmd[cmd.indexOf('--name') + 1] !== b.name) return null;
    const pid = st.pid;
    const exited = (async () => {
      while (alive(pid)) await sleep(ADOPTED_POLL_MS);
      return 'exited (an adopted process: no exit code)';
    })();
    void v;
    return { pid, port: st.port, exited, stop: () => stopPid(pid, () => !alive(pid)) };
  }
}

/**
 * Tells each brick of the volume its topology (every brick with its port), as the record has it; and,
 * best effort, `leaving` (bricks taken out of the volume that still run), so that their clients drop them.
 * Over TLS with `tls()`'s certificate for a volume with transport.tls on.
 */
export function announcer(tls: () => TlsFiles | null | Promise<TlsFiles | null>): (v: VolumeRecord, leaving?: PlacedBrick[]) => Promise<void> {
  return async (v, leaving = []) => {
    const topology = {
      version: v.version,
      bricks: v.bricks.map((b) => ({ name: b.name, host: b.host, port: b.port })),
      decommissioned: v.decommissioned,
      options: liveOptionsIn(v.options),
      // auth.ssl-allow: the bricks of a TLS volume serve only these certificates' clients (absent: every one).
      ...(v.sslAllow ? { sslAllow: v.sslAllow } : {}),
    };
    let network: Network = tcpNetwork;
    if (v.options?.tls) {
      const files = await tls();
      if (!files) throw new Error(`volume ${v.name} has transport.tls on, and there is no certificate of the cluster's CA here to reach its bricks with`);
      network = tlsNetwork({ files });
    }
    const errors: string[] = [];
    for (const b of [...v.bricks, ...leaving]) {
      try {
        const c = await RpcClient.connect(network, b.host, b.port, { volumeId: v.volumeId, secret: v.secret, adminSecret: v.adminSecret, brickName: b.name, clientName: 'node' });
        try {
          await c.call('setTopology', { topology });
        } finally {
          c.close();
        }
      } catch (e) {
        // A newer topology got there first: written after ours by compare-and-set on the record, it holds our change too.
        if (codeOf(e) === 'ESTALE') continue;
        if (!leaving.includes(b)) errors.push(`${b.name}: ${(e as Error).message}`);
      }
    }
    if (errors.length) throw new Error(errors.join('; '));
  };
}

/** announcer() without a certificate: volumes without TLS. */
export const announceTopology = announcer(() => null);
