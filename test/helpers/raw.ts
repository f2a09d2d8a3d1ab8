/** Raw connections to a brick process for hostile-client tests: the test sends whatever frames it likes. */
import net from 'node:net';
import fs from 'node:fs';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Packr } from 'msgpackr';
import { FrameDecoder, encodeFrame, PROTOCOL_VERSION, type Message } from '../../src/wire/frame.js';
import { authMac } from '../../src/wire/rpc.js';
import type { BrickSpec, VolumeSpec } from '../../src/dht/spec.js';

export const packr = new Packr({ useRecords: false });

export interface Raw {
  sock: net.Socket;
  nonce: Uint8Array;
  closed: Promise<void>;
  isClosed(): boolean;
  /** Replies and events after the challenge, in order. */
  msgs: Message[];
  /** Sends a request and waits for its reply (only while the socket is read). */
  call(op: string, args: Record<string, unknown>): Promise<Message>;
  send(m: Message): void;
}

let ids = 1000;

/** Connects and reads the challenge (with `hello`, authenticates as an ordinary client). */
export async function rawConnect(b: BrickSpec, o: { spec?: VolumeSpec; hello?: boolean; localAddress?: string } = {}): Promise<Raw> {
  const sock = net.connect({ port: b.port, host: b.host, ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
  sock.on('error', () => {});
  await once(sock, 'connect');
  const dec = new FrameDecoder();
  const msgs: Message[] = [];
  const waiters = new Map<number, (m: Message) => void>();
  let nonce: Uint8Array | null = null;
  let gotNonce!: () => void;
  const nonceP = new Promise<void>((r) => (gotNonce = r));
  let closedFlag = false;
  const closed = new Promise<void>((r) =>
    sock.once('close', () => {
      closedFlag = true;
      r();
    }),
  );
  sock.on('data', (d) => {
    for (const m of dec.push(d)) {
      if (m[0] === 2 && m[1] === 'challenge') {
        nonce = (m[2] as { nonce: Uint8Array }).nonce;
        gotNonce();
        continue;
      }
      msgs.push(m);
      if (m[0] === 1) {
        const w = waiters.get(m[1]);
        waiters.delete(m[1]);
        w?.(m);
      }
    }
  });
  await Promise.race([nonceP, closed]);
  const send = (m: Message) => void sock.write(Buffer.concat(encodeFrame(m)));
  const r: Raw = {
    sock,
    nonce: nonce ?? new Uint8Array(32),
    closed,
    isClosed: () => closedFlag,
    msgs,
    send,
    call: (op, args) =>
      new Promise<Message>((resolve, reject) => {
        const id = ids++;
        waiters.set(id, resolve);
        closed.then(() => reject(new Error(`closed before the reply to ${op}`)));
        send([0, id, op, args]);
      }),
  };
  if (o.hello) {
    const spec = o.spec!;
    const rep = await r.call('hello', helloArgs(spec, r.nonce));
    if (rep[2]) throw new Error(`hello refused: ${JSON.stringify(rep[2])}`);
  }
  return r;
}

/** An ordinary client's hello for a challenge's nonce. */
export function helloArgs(spec: VolumeSpec, nonce: Uint8Array, client = 'raw'): Record<string, unknown> {
  return { proto: PROTOCOL_VERSION, volumeId: spec.volumeId, mac: authMac(spec.secret, nonce, spec.volumeId), client, cnonce: randomBytes(32) };
}

/** A frame around an arbitrary msgpack body (no attachment). */
export function frame(body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(body.length + 4, 0);
  h.writeUInt32BE(body.length, 4);
  return Buffer.concat([h, body]);
}

/** Resident memory of a process in bytes (Linux). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

export async function closesWithin(p: Promise<void>, ms = 3000): Promise<boolean> {
  return Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One brick process under a small fd limit (ulimit -n), with extra environment; its log collected. */
export async function startSmallBrick(o: { nofile: number; env?: Record<string, string> }): Promise<{ spec: VolumeSpec; pid: number; log(): string; stop(): Promise<void> }> {
  const { mkdtempSync, writeFileSync, mkdirSync, rmSync } = fs;
  const os = await import('node:os');
  const path = await import('node:path');
  const { spawn } = await import('node:child_process');
  const { createInterface } = await import('node:readline');
  const { MAIN_JS } = await import('../../src/cli/state.js');
  const base = mkdtempSync(path.join(os.tmpdir(), 'dhtfs-small-'));
  const secret = randomBytes(16).toString('hex');
  const volumeId = '3d0c1f4e-5a6b-4c7d-8e9f-a0b1c2d3e4f5';
  writeFileSync(path.join(base, 'secret'), secret);
  const dir = path.join(base, 'b0');
  mkdirSync(dir);
  const args = [MAIN_JS, 'brick', 'serve', '--dir', dir, '--port', '0', '--name', 'sv-client-0', '--volume-id', volumeId, '--secret-file', path.join(base, 'secret'), '--log-level', 'warn'];
  const proc = spawn('sh', ['-c', `ulimit -n ${o.nofile} && exec "$0" "$@"`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
  let log = '';
  proc.stderr!.on('data', (d) => (log += d));
  const rl = createInterface({ input: proc.stdout! });
  const [line] = (await Promise.race([once(rl, 'line'), once(proc, 'exit').then(() => Promise.reject(new Error(`brick exited: ${log}`)))])) as string[];
  const port = JSON.parse(line).port as number;
  const spec: VolumeSpec = { name: 'sv', volumeId, secret, bricks: [{ name: 'sv-client-0', host: '127.0.0.1', port }] };
  return {
    spec,
    pid: proc.pid!,
    log: () => log,
    stop: async () => {
      if (proc.exitCode === null) {
        const done = once(proc, 'exit');
        proc.kill('SIGKILL');
        await done;
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}
