/** One brick as the DHT client sees it: its connection, made again on demand, and the ping-timeout's watch of it. */
import assert from 'node:assert';
import type { ArgsOf, OpName, Reply } from '../wire/ops.js';
import { FsError, codeOf, bestEffort } from '../common/errors.js';
import type { Timer } from '../common/env.js';
import { RpcClient } from '../wire/rpc.js';
import { type StatFsReply } from '../wire/types.js';
import type { DhtClient } from './client.js';

/** How long a connection that failed waits before it is dialled again. */
export const RECONNECT_MS = 1000;

/** One brick as the client sees it: a connection, re-dialled on demand after it drops. */
export class Subvol {
  rpc: RpcClient | null = null;
  /** Counts connections made: an fd opened under an older one is gone from the brick. */
  generation = 0;
  /** When the brick last answered: every event it sent before that answer has been taken in. */
  heard = -Infinity;
  /** Calls in flight, and the watchdog that runs while there are any (see watch). */
  private inFlight = 0;
  private alive = -Infinity;
  private watchdog: Timer | null = null;
  private pinging = false;
  private dialing: Promise<RpcClient> | null = null;
  private lastFail = -Infinity;
  statfs: { at: number; v: StatFsReply } | null = null;
  /** Connections the ping-timeout cut off: their calls' outcomes are unknown. */
  private readonly cutOff = new WeakSet<RpcClient>();
  /** The brick left the volume (retire): closed once its calls in flight have their answers. */
  private retiring = false;

  constructor(
    readonly name: string,
    readonly host: string,
    readonly port: number,
    private readonly c: DhtClient,
  ) {}

  async conn(): Promise<RpcClient> {
    if (this.rpc && !this.rpc.closed) return this.rpc;
    if (this.dialing) return this.dialing;
    if (this.c.clock.now() - this.lastFail < RECONNECT_MS && this.lastFail > -Infinity) {
      throw new FsError('ENOTCONN', `brick ${this.name} (${this.host}:${this.port}) is down`);
    }
    this.dialing = this.dial()
      .then((r) => {
        this.rpc = r;
        this.generation++;
        r.onClose(() => this.c.onBrickDown(this.name));
        r.onEvent((kind, payload) => {
          this.alive = this.c.clock.now();
          this.c.onBrickEvent(this, kind, payload);
        });
        return r;
      })
      .catch((e) => {
        this.lastFail = this.c.clock.now();
        throw new FsError(codeOf(e) === 'EACCES' ? 'EACCES' : 'ENOTCONN', `brick ${this.name} (${this.host}:${this.port}): ${(e as Error).message}`);
      })
      .finally(() => {
        this.dialing = null;
      });
    return this.dialing;
  }

  /**
   * Connects and authenticates; a brick that does not finish the handshake within the ping-timeout (a
   * hung process still accepts connections: the kernel does that) is given up, and a connection that
   * comes after all is closed.
   */
  private dial(): Promise<RpcClient> {
    const d = RpcClient.connect(
      this.c.net,
      this.host,
      this.port,
      {
        volumeId: this.c.spec.volumeId,
        secret: this.c.spec.secret,
        adminSecret: this.c.spec.adminSecret,
        brickName: this.name,
        clientName: this.c.clientName,
      },
      undefined,
      this.c.clock,
    );
    const timeout = this.c.pingTimeoutMs;
    if (timeout <= 0) return d;
    let late = false;
    let timer: Timer | undefined;
    const given = new Promise<never>((_, fail) => {
      timer = this.c.clock.setTimer(timeout, () => {
        late = true;
        fail(new FsError('ETIMEDOUT', `no handshake within ${timeout / 1000} s (ping-timeout)`));
      });
    });
    d.then(
      (r) => (late ? r.close('handshake after the ping-timeout') : timer?.cancel()),
      () => timer?.cancel(),
    );
    return Promise.race([d, given]);
  }

  /**
   * With `generation` (an fd's connection), the call is refused with ENOTCONN (info `fdGone`) if the
   * connection was made again since: a brick numbers fds per connection, so an old fd's number may
   * name another file on the new one.
   */
  async call<N extends OpName>(op: N, args: ArgsOf<N>, into?: Uint8Array, generation?: number): Promise<Reply<N>> {
    const r = await this.conn();
    if (generation !== undefined && generation !== this.generation) {
      throw new FsError('ENOTCONN', `brick ${this.name}: the connection fd ${String((args as { fd?: unknown }).fd)} was opened on is gone`, { fdGone: true });
    }
    if (this.inFlight++ === 0) this.watch(r);
    // The ping-timeout never gives up on this call before `alive` + timeout (alive only grows): past that
    // the brick must not apply it (a stopped brick that resumes would, long after we reported it failed).
    const timeout = this.c.pingTimeoutMs;
    try {
      return await r.call(op, args, into, timeout > 0 ? this.alive + timeout : undefined);
    } catch (e) {
      if (this.cutOff.has(r) && codeOf(e) === 'ENOTCONN') {
        // Sent, and the brick went silent: it may have applied it before it stopped answering. Said
        // apart from a call that was never sent (or refused as past its deadline: not applied).
        throw new FsError('ENOTCONN', `brick ${this.name} (${this.host}:${this.port}) did not answer within the ping-timeout: '${op}' may or may not have been applied`, { maybeApplied: true });
      }
      throw e;
    } finally {
      this.heard = this.alive = this.c.clock.now();
      assert.ok(this.inFlight > 0, `brick ${this.name}: calls in flight below zero`);
      if (--this.inFlight === 0) {
        this.unwatch();
        if (this.retiring) this.close();
      }
    }
  }

  /**
   * GlusterFS's ping-timeout: while calls are in flight on a connection, a brick that has said nothing
   * (no reply, no event) for a quarter of the timeout is pinged, and one silent for the whole timeout
   * (a hung process, a lost network: no reset ever comes) is cut off, so that its calls fail with
   * ENOTCONN (and are retried on a new connection) rather than wait for ever. A brick answers a ping at
   * once, even while a call of the connection waits (a blocking lock, a migration settling).
   */
  private watch(r: RpcClient): void {
    const timeout = this.c.pingTimeoutMs;
    if (timeout <= 0) return;
    this.alive = Math.max(this.alive, this.c.clock.now());
    const tick = () => {
      this.watchdog = null;
      if (this.inFlight === 0 || r.closed) return;
      const silent = this.c.clock.now() - this.alive;
      if (silent >= timeout) {
        this.c.log('warn', `brick ${this.name} (${this.host}:${this.port}) said nothing for ${Math.round(silent / 1000)} s: disconnecting (ping-timeout)`);
        this.cutOff.add(r);
        r.close(`no answer for ${Math.round(silent / 1000)} s (ping-timeout)`);
        return;
      }
      if (silent >= timeout / 4 && !this.pinging) {
        this.pinging = true;
        r.call('ping', {})
          .catch(bestEffort('ping', this.c.log))
          .finally(() => {
            this.pinging = false;
            if (!r.closed) this.alive = this.c.clock.now();
          });
      }
      this.watchdog = this.c.clock.setTimer(Math.max(50, timeout / 8), tick);
    };
    this.watchdog = this.c.clock.setTimer(Math.max(50, timeout / 8), tick);
  }

  private unwatch(): void {
    this.watchdog?.cancel();
    this.watchdog = null;
  }

  /**
   * The brick left the volume (a remove-brick commit, which stops it only after a grace): the calls in
   * flight on it keep their connection to their answers, then it is closed. Closed at once, they failed
   * with ENOTCONN ('client closed'): a read of a file in the middle of it failed at the commit.
   */
  retire(): void {
    if (this.inFlight === 0) this.close();
    else this.retiring = true;
  }

  close(): void {
    this.unwatch();
    this.rpc?.close();
  }
}
