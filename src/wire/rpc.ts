/**
 * Request/response over one connection: request ids, many requests in flight, the handshake.
 * Client side (RpcClient) and server side (serveConnection). No `net` here: a Conn comes from a Network.
 */
import assert from 'node:assert';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { FsError, codeOf, detailOf, infoOf } from '../common/errors.js';
import type { Clock, Random } from '../common/env.js';
import { LIMIT_DEFAULTS, clip, type BrickLimits, type LimitLog } from './limits.js';
import type { Conn, Network } from './transport.js';
import { ioBuffers } from './pool.js';
import type { ArgsOf, OpName, Reply } from './ops.js';
import { DEFAULT_MAX_FRAME, EVENT, MAX_IO_SIZE, FrameDecoder, PROTOCOL_VERSION, REPLY, REQ, encodeFrame, type Message, type WireError } from './frame.js';

export interface AuthInfo {
  volumeId: string;
  secret: string;
  clientName?: string;
  /** The volume's administrative secret: with it the session may change the volume (topology, commit hash). */
  adminSecret?: string;
  /** The brick's name as the spec has it: the brick must prove the secret for this name. */
  brickName?: string;
  /** The client's nonce (tests); 32 random bytes by default. */
  clientNonce?: Uint8Array;
}

/** The client's proof: HMAC-SHA256(secret, brick's nonce ‖ volume id). */
export function authMac(secret: string, nonce: Uint8Array, volumeId: string): Buffer {
  return createHmac('sha256', secret).update(nonce).update(volumeId).digest();
}

/** The client's proof of the admin role: HMAC-SHA256(admin secret, 'dhtfs-admin' ‖ brick's nonce ‖ volume id). */
export function adminMac(adminSecret: string, nonce: Uint8Array, volumeId: string): Buffer {
  return createHmac('sha256', adminSecret).update('dhtfs-admin\0').update(nonce).update(volumeId).digest();
}

/**
 * The brick's proof to the client (mutual authentication): HMAC-SHA256(secret, 'dhtfs-brick' ‖ client's
 * nonce ‖ brick's nonce ‖ volume id ‖ brick name). The label keeps it from being any client's proof.
 */
export function brickProof(secret: string, clientNonce: Uint8Array, nonce: Uint8Array, volumeId: string, brick: string): Buffer {
  return createHmac('sha256', secret).update('dhtfs-brick\0').update(clientNonce).update(nonce).update(volumeId).update('\0').update(brick).digest();
}

const macOk = (m: unknown, want: Buffer) => m instanceof Uint8Array && m.length === want.length && timingSafeEqual(m, want);

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  /** Where the reply's data goes (a reader's buffer), if the caller gave one. */
  into?: Uint8Array;
}

export class RpcClient {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private closeFns: ((reason?: string) => void)[] = [];
  private eventFns: ((kind: string, payload: unknown) => void)[] = [];
  closed = false;
  closeReason: string | undefined;
  /** The brick's clock less the caller's (from the challenge); null when the brick did not say. */
  brickClockOffset: number | null = null;

  private constructor(
    private readonly conn: Conn,
    maxFrame: number,
  ) {
    const dec = new FrameDecoder(maxFrame, (m, len) => {
      if (m[0] !== REPLY || m[2] !== null) return null;
      const into = this.pending.get(m[1])?.into;
      return into && into.length >= len ? into : null;
    });
    // A reply's data bigger than a read goes straight from the socket into its reader's buffer.
    conn.landing?.(() => dec.landingZone());
    conn.onData((chunk) => {
      let msgs: Message[];
      try {
        msgs = dec.push(chunk);
      } catch (e) {
        conn.close(`bad frame from server: ${(e as Error).message}`);
        return;
      }
      for (const m of msgs) this.dispatch(m);
    });
    conn.onClose((reason) => {
      this.closed = true;
      this.closeReason = reason;
      const err = new FsError('ENOTCONN', `connection to ${conn.remote} closed${reason ? `: ${reason}` : ''}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      for (const f of this.closeFns) f(reason);
    });
  }

  /**
   * Connects and authenticates both ways: waits for the brick's challenge, answers with an HMAC of the
   * secret (and of the admin secret, if given) and its own nonce, and checks the brick's proof of the
   * secret over that nonce before anything else is sent: a brick that cannot prove it is refused (EACCES).
   */
  static async connect(net: Network, host: string, port: number, auth: AuthInfo, maxFrame = DEFAULT_MAX_FRAME, clock?: Clock): Promise<RpcClient> {
    const conn = await net.connect(host, port);
    const c = new RpcClient(conn, maxFrame);
    const challenge = await new Promise<{ proto: number; nonce: Uint8Array; brick?: unknown }>((resolve, reject) => {
      c.onClose((r) => reject(new FsError('ENOTCONN', `closed during handshake${r ? `: ${r}` : ''}`)));
      c.eventFns.push((kind, payload) => {
        if (kind === 'challenge') resolve(payload as { proto: number; nonce: Uint8Array });
      });
    });
    if (challenge.proto !== PROTOCOL_VERSION) {
      c.close();
      throw new FsError('EPROTO', `brick speaks protocol ${challenge.proto}, this client ${PROTOCOL_VERSION}`);
    }
    c.eventFns.length = 0;
    const nonce = challenge.nonce instanceof Uint8Array ? challenge.nonce : new Uint8Array(0);
    // The brick's clock less ours, as seen when the challenge came: a little behind the truth (by the
    // challenge's trip), so deadlines stamped with it fall a little early in the brick's clock, never late.
    const bnow = (challenge as { now?: unknown }).now;
    if (clock && typeof bnow === 'number' && Number.isFinite(bnow)) c.brickClockOffset = bnow - clock.now();
    const cnonce = auth.clientNonce ?? randomBytes(32);
    const r = await c.request<{ proof?: unknown; brick?: unknown; admin?: unknown }>('hello', {
      proto: PROTOCOL_VERSION,
      volumeId: auth.volumeId,
      mac: authMac(auth.secret, nonce, auth.volumeId),
      client: auth.clientName ?? '',
      cnonce,
      ...(auth.adminSecret ? { admin: adminMac(auth.adminSecret, nonce, auth.volumeId) } : {}),
    });
    const brick = auth.brickName ?? (typeof r?.brick === 'string' ? r.brick : '');
    if (!r || !macOk(r.proof, brickProof(auth.secret, cnonce, nonce, auth.volumeId, brick))) {
      c.close('the brick did not prove the volume secret');
      throw new FsError('EACCES', `${host}:${port} is not a brick of this volume${auth.brickName ? ` named ${auth.brickName}` : ''}: it did not prove it knows the volume's secret (mutual authentication failed)`);
    }
    if (auth.adminSecret && r.admin !== true) {
      c.close('admin role refused');
      throw new FsError('EACCES', `brick ${brick} at ${host}:${port} did not grant the admin role`);
    }
    return c;
  }

  private dispatch(m: Message): void {
    if (m[0] === REPLY) {
      const p = this.pending.get(m[1]);
      if (!p) return;
      this.pending.delete(m[1]);
      if (m[2]) p.reject(FsError.quiet(m[2].code, m[2].message, m[2].info && typeof m[2].info === 'object' ? m[2].info : undefined));
      else p.resolve(m[3]);
    } else if (m[0] === EVENT) {
      for (const f of this.eventFns) f(m[1], m[2]);
    }
  }

  /**
   * Sends a request and waits for its reply. With `into`, a reply's data (a read's bytes) is received
   * straight into that buffer, and the result's `data` is a view of it.
   */
  call<N extends OpName>(op: N, args: ArgsOf<N>, into?: Uint8Array, deadline?: number): Promise<Reply<N>> {
    return this.request<Reply<N>>(op, args, into, deadline);
  }

  /** A request of any name (the handshake's `hello`; tests' hostile frames): no compile-time check. */
  request<T = unknown>(op: string, args: Record<string, unknown> = {}, into?: Uint8Array, deadline?: number): Promise<T> {
    if (this.closed) return Promise.reject(new FsError('ENOTCONN', `connection to ${this.conn.remote} is closed`));
    // `deadline` (the caller's clock): after it the brick must not apply the request (see serveConnection).
    if (deadline !== undefined && this.brickClockOffset !== null) args = { ...args, dl: Math.floor(deadline + this.brickClockOffset) };
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, into });
      this.conn.write(encodeFrame([REQ, id, op, args]));
    });
  }

  onEvent(fn: (kind: string, payload: unknown) => void): void {
    this.eventFns.push(fn);
  }

  onClose(fn: (reason?: string) => void): void {
    if (this.closed) fn(this.closeReason);
    else this.closeFns.push(fn);
  }

  close(reason = 'client closed'): void {
    this.conn.close(reason);
  }
}

/** What the server needs from the brick: a per-connection context and a request handler. */
export interface RequestHandler<Ctx> {
  /** `notify` sends the connection an event (an EVENT message) at any time while it is open. */
  openSession(info: { remote: string; client: string; admin: boolean; notify: (kind: string, payload: unknown) => void }): Ctx;
  handle(ctx: Ctx, op: string, args: Record<string, unknown>): Promise<unknown> | unknown;
  closeSession(ctx: Ctx): void;
}

export interface ServeOptions {
  volumeId: string;
  secret: string;
  /** The volume's administrative secret; without one no session is an admin's. */
  adminSecret?: string;
  /** This brick's name, which its proof to clients covers. */
  brickName?: string;
  maxFrame?: number;
  random: Random;
  log: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void;
  /** Deadlines (the handshake's); without one, a connection may take any time to authenticate. */
  clock?: Clock;
  /** Bounds on this connection (limits.ts); the defaults without. */
  limits?: BrickLimits;
  /** Where limits hit are logged, once per limit per interval (shared by the brick's connections). */
  limitLog?: LimitLog;
  /** The brick's reply bytes owed by all its connections (shared by them), bounded by `maxUnsentBytesTotal`. */
  budget?: { owed: number };
  /** The brick's count of connections (ConnectionGate.admit), told of this one's authentication and end. */
  gate?: { authenticated(): void; closed(): void };
  /**
   * Checked once the secret (and the admin credential, `admin`) is proven: a reason to refuse the session
   * anyway (the brick's auth.ssl-allow against the connection's certificate), or null.
   */
  admit?: (admin: boolean) => string | null;
}

/** A request's pooled data (a write's bytes) goes back to the pool once its handler has finished. */
function giveBack(args: Record<string, unknown>): void {
  ioBuffers.give(args.data as Uint8Array | undefined);
}

/** Bytes a reply to `args` is expected to take: a read's length, else a small reply. */
function expectedReply(args: Record<string, unknown>): number {
  const n = args.length;
  return 512 + (typeof n === 'number' && n > 0 ? Math.min(n, MAX_IO_SIZE) : 0);
}

/**
 * Serves one connection: challenge, authentication, then requests to the handler. A malformed,
 * oversized or unauthenticated frame closes this connection only, with a logged reason.
 *
 * Memory: until `hello` succeeds, frames may be `preAuthMaxFrame` bytes at most and the connection
 * lives `handshakeMs` at most. After, the connection may owe at most `maxUnsentBytes` of replies (those
 * the socket has not taken yet, and the expected size of the requests being served): past that, its
 * requests wait (decoded, in order) and the socket is not read until it owes half as much. A closed
 * connection's waiting requests are dropped at once, and its unsent replies go with its socket.
 */
export function serveConnection<Ctx>(conn: Conn, handler: RequestHandler<Ctx>, opts: ServeOptions): void {
  const limits = opts.limits ?? LIMIT_DEFAULTS;
  const maxFrame = opts.maxFrame ?? DEFAULT_MAX_FRAME;
  // A request's bulk data lands in a pooled buffer, given back when its handler has finished.
  const dec = new FrameDecoder(Math.min(maxFrame, limits.preAuthMaxFrame), (m, len) => (m[0] === REQ ? ioBuffers.take(len) : null));
  const nonce = opts.random.bytes(32);
  let ctx: Ctx | null = null;
  let clientName = '';
  let open = true;
  /**
   * Reply bytes owed (`owed`): the expected sizes of the requests being served (`serving`), and the
   * replies written that the socket has not taken yet (`unsent`). The brick's budget counts them too.
   */
  let serving = 0;
  let unsent = 0;
  let owed = 0;
  /** Closed: its unsent replies went with the socket, and were counted off the budget then. */
  let writtenOff = false;
  const budget = opts.budget;
  const owe = (s: number, u: number) => {
    serving += s;
    unsent += u;
    owed = serving + unsent;
    if (budget) budget.owed += s + u;
    assert.ok(serving >= 0 && unsent >= 0, 'a connection owes less than nothing');
  };
  /** Decoded requests not yet handed to the handler (only while `owed` is over the limit). */
  let waiting: Message[] = [];
  let next = 0;
  let paused = false;
  const deadline =
    opts.clock && limits.handshakeMs > 0
      ? opts.clock.setTimer(limits.handshakeMs, () => {
          if (ctx !== null || !open) return;
          opts.limitLog?.hit('handshakeMs', { remote: conn.remote }, `no authentication within ${limits.handshakeMs} ms; closed`);
          drop(`no authentication within ${limits.handshakeMs} ms`);
        })
      : null;
  const drop = (reason: string, flush = false) => {
    if (!open) return;
    open = false;
    const msg = `closing connection from ${conn.remote}${clientName ? ` (client '${clip(clientName, 64)}')` : ''}: ${clip(reason)}`;
    // One line per kind of reason per interval: a flood of bad connections cannot fill the log.
    if (opts.limitLog) opts.limitLog.line(`drop:${reason.split(' ', 2).join(' ').slice(0, 40)}`, msg, { remote: conn.remote });
    else opts.log('warn', msg, { remote: conn.remote });
    conn.close(reason, flush);
  };
  const fail = (id: number, e: unknown, expected: number) => {
    const info = infoOf(e);
    reply(id, info ? { code: codeOf(e), message: detailOf(e), info } : { code: codeOf(e), message: detailOf(e) }, null, expected);
  };
  const reply = (id: number, err: WireError | null, result: unknown, expected = 0) => {
    owe(-expected, 0);
    if (!open) return;
    let frame: Buffer[];
    try {
      frame = encodeFrame([REPLY, id, err, err ? null : (result ?? null)]);
    } catch (e) {
      frame = encodeFrame([REPLY, id, { code: 'EIO', message: `unencodable reply: ${(e as Error).message}` }, null]);
    }
    let size = 0;
    for (const b of frame) size += b.length;
    owe(0, size);
    // A reply's pooled data (a read's bytes) goes back to the pool once sent.
    const data = (result as { data?: unknown } | null)?.data;
    const pooled = ioBuffers.owns(data);
    conn.write(frame, () => {
      if (pooled) ioBuffers.give(data);
      if (writtenOff) return;
      owe(0, -size);
      if (paused && owed <= limits.maxUnsentBytes / 2) pump();
    });
  };
  conn.onClose(() => {
    open = false;
    // Its unsent replies go with the socket (requests still being served are counted off as they end).
    owe(0, -unsent);
    writtenOff = true;
    deadline?.cancel();
    waiting = [];
    next = 0;
    opts.gate?.closed();
    if (ctx !== null) handler.closeSession(ctx);
    ctx = null;
  });
  // `now`: the brick's monotonic clock, so that a client can stamp its requests with deadlines in it (see serve).
  conn.write(encodeFrame([EVENT, 'challenge', { proto: PROTOCOL_VERSION, nonce, brick: opts.brickName ?? '', ...(opts.clock ? { now: opts.clock.now() } : {}) }]));
  // A write's bulk data goes straight from the socket into its pooled buffer.
  conn.landing?.(() => dec.landingZone());

  const hello = (id: number, args: Record<string, unknown>): boolean => {
    const cnonce = args.cnonce;
    const why =
      args.proto !== PROTOCOL_VERSION
        ? 'protocol version mismatch'
        : args.volumeId !== opts.volumeId
          ? 'wrong volume id'
          : !macOk(args.mac, authMac(opts.secret, nonce, opts.volumeId))
            ? 'bad secret'
            : !(cnonce instanceof Uint8Array) || cnonce.length < 16 || cnonce.length > 64
              ? 'no client nonce'
              : args.admin !== undefined && !(opts.adminSecret && macOk(args.admin, adminMac(opts.adminSecret, nonce, opts.volumeId)))
                ? 'bad admin credential'
                : (opts.admit?.(args.admin !== undefined) ?? null);
    if (why !== null) {
      reply(id, { code: 'EACCES', message: 'authentication failed' }, null);
      // The refusal reaches the client before the connection ends.
      drop(why, true);
      return false;
    }
    clientName = typeof args.client === 'string' ? args.client : '';
    const admin = args.admin !== undefined;
    deadline?.cancel();
    dec.setMaxFrame(maxFrame);
    opts.gate?.authenticated();
    ctx = handler.openSession({
      remote: conn.remote,
      client: clientName,
      admin,
      notify: (kind, payload) => {
        if (open) conn.write(encodeFrame([EVENT, kind, payload]));
      },
    });
    const brick = opts.brickName ?? '';
    reply(id, null, { ok: true, admin, brick, proof: brickProof(opts.secret, cnonce as Uint8Array, nonce, opts.volumeId, brick) });
    return true;
  };

  /** Hands one request to the handler (or authenticates); false if the connection is done. */
  const serve = (m: Message): boolean => {
    if (m[0] !== REQ) {
      drop('client sent a non-request frame');
      return false;
    }
    const [, id, op, args] = m;
    if (ctx === null) {
      if (op !== 'hello') {
        drop(`unauthenticated request '${op.slice(0, 40)}'`);
        return false;
      }
      return hello(id, args);
    }
    const c = ctx;
    const expected = expectedReply(args);
    owe(expected, 0);
    // A request past its deadline (`dl`, in this brick's clock: the moment its client may have given up
    // on it, see DhtClient's ping-timeout) is not applied: it waited in a stopped process or a queue
    // longer than its client waits, and the client may already have reported it failed.
    if (typeof args.dl === 'number' && opts.clock && opts.clock.now() > args.dl) {
      giveBack(args);
      fail(id, new FsError('ETIMEDOUT', `'${op.slice(0, 40)}' arrived after its deadline and was not applied`), expected);
      return true;
    }
    let res: unknown;
    try {
      res = handler.handle(c, op, args);
    } catch (e) {
      giveBack(args);
      fail(id, e, expected);
      return true;
    }
    if (res instanceof Promise) {
      res.then(
        (v) => {
          giveBack(args);
          reply(id, null, v, expected);
        },
        (e) => {
          giveBack(args);
          fail(id, e, expected);
        },
      );
    } else {
      giveBack(args);
      reply(id, null, res, expected);
    }
    return true;
  };

  /** Serves waiting requests while the connection owes less than its limit; reads again when all are served. */
  const pump = () => {
    while (open && next < waiting.length) {
      // Over its own bound, or the brick's while it owes anything (one that owes nothing always gets
      // one request served: no connection starves, and the brick-wide overshoot is a request each).
      if (owed > limits.maxUnsentBytes || (budget && budget.owed > limits.maxUnsentBytesTotal && owed > 0)) {
        if (!paused) {
          paused = true;
          conn.pause?.();
        }
        return;
      }
      const m = waiting[next];
      (waiting as unknown[])[next++] = undefined;
      if (!serve(m)) return;
    }
    waiting = [];
    next = 0;
    if (paused && open) {
      paused = false;
      conn.resume?.();
    }
  };

  conn.onData((chunk) => {
    if (!open) return;
    let msgs: Message[];
    try {
      msgs = dec.push(chunk);
    } catch (e) {
      drop((e as Error).message);
      return;
    }
    if (msgs.length === 0) return;
    if (next < waiting.length) for (const m of msgs) waiting.push(m);
    else {
      waiting = msgs;
      next = 0;
    }
    pump();
  });
}
