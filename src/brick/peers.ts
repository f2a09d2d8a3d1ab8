/**
 * Connections from this brick to other bricks of its volume, for migrations between hosts: dst reads the
 * file under migration from src over the brick path (migFetch -> src's migRead), so that its bytes cross
 * the network once, from src's host to dst's, and not through the migrator's process (issue 19 item 6).
 *
 * The brick is a client of its peers as any client is: the volume's secret (HMAC handshake), and on a TLS
 * volume its own certificate (the injected Network). Only bricks of the topology stored on this brick are
 * reached (a client names a brick, never an address), so a client cannot make a brick connect elsewhere.
 * Bounded: at most MAX_PEER_CONNECTIONS held (the oldest goes), each connect within PEER_CONNECT_MS, each
 * call within the volume's ping-timeout (network.ping-timeout, the brick's `pingTimeoutMs`): a peer that
 * accepted and then says nothing is answered ENOTCONN (the migrator relays the bytes instead) and its
 * connection is closed (the next call connects anew); the limit and every failure are logged.
 */
import assert from 'node:assert/strict';
import { FsError } from '../common/errors.js';
import type { Clock } from '../common/env.js';
import { RpcClient, type AuthInfo } from '../wire/rpc.js';
import type { Network } from '../wire/transport.js';

/** Peer bricks held open at once (a migration keeps one src; a rebalance of many sources needs few). */
export const MAX_PEER_CONNECTIONS = 16;
/** How long a connect to a peer brick may take before the copy goes through the migrator instead. */
export const PEER_CONNECT_MS = 10_000;

/** A peer call's deadline when the volume sets none: GlusterFS's network.ping-timeout default (seconds). */
export const PEER_CALL_DEFAULT_S = 42;

/** What the brick's migFetch needs: a call to a peer brick (by its address in the topology). */
export interface PeerBricks {
  /** migRead at `peer`; past `timeoutMs` (0: none) without an answer, ENOTCONN and the connection closed. */
  read(peer: { name: string; host: string; port: number }, args: { gfid: string; token: string; offset: number; length: number }, timeoutMs: number): Promise<Buffer>;
  close(): void;
}

export function peerBricks(network: Network, auth: Omit<AuthInfo, 'brickName' | 'clientName'> & { self: string }, clock: Clock, log: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void): PeerBricks {
  /** By peer: the connection, or its connect in progress. Insertion order is age (the oldest first). */
  const held = new Map<string, Promise<RpcClient>>();
  const key = (p: { name: string; host: string; port: number }) => `${p.name}@${p.host}:${p.port}`;
  const connect = (p: { name: string; host: string; port: number }): Promise<RpcClient> => {
    const k = key(p);
    const have = held.get(k);
    if (have) return have;
    if (held.size >= MAX_PEER_CONNECTIONS) {
      const [oldest, c] = held.entries().next().value as [string, Promise<RpcClient>];
      held.delete(oldest);
      c.then(
        (r) => r.close('peer connections at their limit'),
        () => {},
      );
      log('warn', `limit hit: peer connections (${MAX_PEER_CONNECTIONS}): closed the one to ${oldest}`, { limit: 'peer-connections', max: MAX_PEER_CONNECTIONS });
    }
    const made = new Promise<RpcClient>((resolve, reject) => {
      let late = false;
      const t = clock.setTimer(PEER_CONNECT_MS, () => {
        late = true;
        reject(new FsError('ENOTCONN', `peer brick ${k}: no connection after ${PEER_CONNECT_MS} ms`));
      });
      RpcClient.connect(network, p.host, p.port, { ...auth, brickName: p.name, clientName: `brick ${auth.self}` }).then(
        (r) => {
          t.cancel();
          if (late) r.close('connected too late');
          else resolve(r);
        },
        (e: unknown) => {
          t.cancel();
          reject(e);
        },
      );
    });
    held.set(k, made);
    made.then(
      (r) => {
        log('info', `connected to peer brick ${k}`, { peer: p.name });
        r.onClose(() => {
          if (held.get(k) === made) held.delete(k);
        });
      },
      (e: unknown) => {
        if (held.get(k) === made) held.delete(k);
        log('warn', `peer brick ${k} unreachable: ${String((e as Error).message ?? e).slice(0, 200)}`, { peer: p.name });
      },
    );
    return made;
  };
  return {
    async read(p, args, timeoutMs) {
      const r = await connect(p);
      let fail!: (e: Error) => void;
      const late = new Promise<never>((_, reject) => (fail = reject));
      const t =
        timeoutMs > 0
          ? clock.setTimer(timeoutMs, () => {
              log('warn', `peer brick ${key(p)} did not answer within ${timeoutMs / 1000} s (ping-timeout): connection closed`, { peer: p.name });
              r.close('no answer within the ping-timeout');
              fail(new FsError('ENOTCONN', `peer brick ${key(p)} did not answer within ${timeoutMs / 1000} s (ping-timeout)`));
            })
          : null;
      let data: Uint8Array;
      try {
        data = (await Promise.race([r.call('migRead', args), late])).data;
      } finally {
        t?.cancel();
      }
      assert.ok(data.length <= args.length, 'a peer answered more than was asked');
      return Buffer.from(data);
    },
    close() {
      for (const c of held.values())
        c.then(
          (r) => r.close('brick closing'),
          () => {},
        );
      held.clear();
    },
  };
}
