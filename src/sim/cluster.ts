/**
 * The simulated volume's machinery: three bricks (the real Brick on SimStorage, served over SimNetwork),
 * optionally on one host (migrations then copy disk to disk, and clients read the bricks' files
 * themselves), the volume spec, clients made on demand, and the operator's calls (setTopology to every
 * brick, as the CLI does). No workload and no checks: those are workload.ts and checkers/.
 */
import { Brick } from '../brick/brick.js';
import { DhtClient } from '../dht/client.js';
import type { VolumeSpec } from '../dht/spec.js';
import { Volume } from '../api/volume.js';
import { RpcClient, serveConnection } from '../wire/rpc.js';
import type { Listener } from '../wire/transport.js';
import type { World } from './world.js';
import type { SimNetwork } from './net.js';
import { SimStorage } from './storage.js';
import type { Knobs } from './options.js';

export const VOLUME_ID = '5e5e5e5e-0000-4000-8000-000000000001';
const CREDENTIALS = { volumeId: VOLUME_ID, secret: 's', adminSecret: 'a' };

type Bricks = VolumeSpec['bricks'];

export class SimCluster {
  readonly storages: SimStorage[];
  readonly names: string[];
  /** Each brick's network address (a replacement brick has a new one). */
  readonly addr: string[];
  /** Bricks on one host: migrations copy from disk to disk (migPull); otherwise through the migrator. */
  readonly host: { name: string; storages: Map<string, SimStorage> } | null;
  readonly listeners: (Listener | null)[];
  readonly spec: VolumeSpec;
  /** Processes (clients, migrators) killed: a rebalance run by one of them did not finish. */
  readonly dead = new Set<string>();
  private procSeq = 0;
  private replaced = 0;

  constructor(
    private readonly w: World,
    readonly net: SimNetwork,
    private readonly kn: Knobs,
    protocol: 'safe' | 'legacy',
    readonly nBricks: number,
    /** Bricks in the volume at the start (the others join later). */
    first: number,
  ) {
    this.storages = Array.from({ length: nBricks }, () => new SimStorage(w, kn.disk));
    this.host = kn.sameHost ? { name: 'host0', storages: new Map<string, SimStorage>() } : null;
    this.addr = this.storages.map((_, i) => `b${i}`);
    this.storages.forEach((st, i) => this.onHost(st, i));
    this.listeners = new Array(nBricks).fill(null);
    this.names = this.storages.map((_, i) => `sv-client-${i}`);
    this.spec = {
      name: 'sv',
      ...CREDENTIALS,
      bricks: this.names.slice(0, first).map((_, i) => this.brickSpec(i)),
      options: { migrationProtocol: protocol, minFreeDisk: 0 },
    };
  }

  /** Bricks on one host share it (a peer's disk is reachable by its id). */
  private onHost(st: SimStorage, i: number): void {
    if (!this.host) return;
    st.id = `/bricks/${this.addr[i]}`;
    st.host = this.host;
    this.host.storages.set(st.id, st);
  }

  /** Brick i's place given to a new brick on a new, empty disk at a new address; started. */
  async replace(i: number): Promise<void> {
    this.addr[i] = `b${i}r${++this.replaced}`;
    this.storages[i] = new SimStorage(this.w, this.kn.disk);
    this.onHost(this.storages[i], i);
    await this.start(i);
  }

  /** An operator's (admin) connection to brick i. */
  admin(i: number): Promise<RpcClient> {
    return RpcClient.connect(this.net.as('cli'), this.addr[i], 1000, CREDENTIALS);
  }

  /** Brick i's process starts (again) on its disk. */
  async start(i: number): Promise<void> {
    const w = this.w;
    const name = this.names[i];
    const b = new Brick(this.storages[i], { name, volumeId: VOLUME_ID, xattrPrefix: 'trusted.' }, w.clock, w.random);
    const faulty = this.storages[i].faulty;
    this.storages[i].faulty = false; // a brick that cannot start is not what this simulates
    try {
      b.init();
    } finally {
      this.storages[i].faulty = faulty;
    }
    this.listeners[i] = await this.net.listen(this.addr[i], 1000, (c) => serveConnection(c, b, { ...CREDENTIALS, brickName: name, random: w.random, log: () => {} }));
  }

  /** Brick i's process stops: its connections break. */
  async stop(i: number): Promise<void> {
    await this.listeners[i]?.close();
    this.net.cut(this.addr[i]);
  }

  /** A process name not used before (`mig3`, `check4`, ...). */
  proc(prefix: string): string {
    return `${prefix}${++this.procSeq}`;
  }

  /** A client connected now, with the spec as it is. */
  async connect(who: string, spec: VolumeSpec = this.spec): Promise<Volume> {
    const v = new Volume(new DhtClient(spec, this.net.as(who), this.w.clock, this.w.random, { clientName: who }));
    await v.client.connect();
    return v;
  }

  /** The operator's topology change, given to the bricks `to` (default all; clients learn it from the bricks). */
  async setTopology(version: number, bricks: Bricks, decommissioned: string[], to?: number[]): Promise<void> {
    this.spec.bricks = bricks;
    this.spec.version = version;
    this.spec.decommissioned = decommissioned;
    for (const i of to ?? this.storages.keys()) {
      const r = await this.admin(i);
      await r.call('setTopology', { topology: { version, bricks, decommissioned } });
      r.close();
    }
  }

  /** Every brick's entry in a spec (name, address). */
  brickSpec(i: number): Bricks[number] {
    return { name: this.names[i], host: this.addr[i], port: 1000 };
  }
}
