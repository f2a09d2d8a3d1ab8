/**
 * The dependency rules between dhtfs's folders (docs/ARCHITECTURE.md, "Parts and dependencies"),
 * checked by dependency-cruiser in `npm test` (npm run lint). It reads the compiled JavaScript in dist/
 * (dependency-cruiser does not parse TypeScript 7 yet): type-only imports are not checked.
 */
const S = '^dist/src/';
const layer = (name, mayNotUse, comment) => ({
  name: `${name}-layering`,
  comment,
  severity: 'error',
  from: { path: `${S}${name}/` },
  to: { path: `${S}(${mayNotUse.join('|')})(/|\\.js$)` },
});

module.exports = {
  forbidden: [
    layer('wire', ['migration', 'dht', 'brick', 'rebalance', 'api', 'cli', 'fuse', 'cluster', 'sim'], 'the wire is the bottom layer of the client and the brick'),
    layer('storage', ['migration', 'dht', 'brick', 'rebalance', 'api', 'cli', 'fuse', 'cluster', 'sim', 'wire'], 'a disk knows nothing of bricks or clients'),
    layer('brick', ['dht', 'rebalance', 'api', 'cli', 'fuse', 'cluster', 'sim'], 'brick -> storage (and the wire schema), never the client side'),
    layer(
      'migration',
      ['dht', 'brick', 'rebalance', 'api', 'cli', 'fuse', 'cluster', 'sim', 'storage/disk'],
      'the migration protocol (steps, records, the rules at src, the migrator) is shared by the brick, the client and the rebalancer: it imports none of them (the migrator drives the DHT client through its type only)',
    ),
    layer('dht', ['brick', 'rebalance', 'api', 'cli', 'fuse', 'cluster', 'sim', 'storage/disk'], 'the DHT client talks to bricks through the wire only'),
    layer('rebalance', ['brick', 'api', 'cli', 'fuse', 'cluster', 'sim'], 'the migrator drives bricks through the DHT client'),
    layer('api', ['brick', 'cli', 'fuse', 'cluster', 'sim'], 'the library sits on the DHT client'),
    layer('cluster', ['cli', 'fuse', 'sim', 'api'], 'the node daemon and the state store are under the CLI'),
    layer('fuse', ['cli', 'cluster', 'sim', 'brick'], 'the mount sits on the library'),
    layer('common', ['migration', 'wire', 'storage', 'brick', 'dht', 'rebalance', 'api', 'cli', 'fuse', 'cluster', 'sim'], 'shared basics depend on nothing of ours'),
    {
      name: 'no-io-in-protocol-logic',
      comment: 'protocol logic reaches sockets, files and processes through injected interfaces (transport, storage); only the edge files touch them',
      severity: 'error',
      from: {
        path: `${S}(brick|dht|migration|rebalance|wire|api)/`,
        pathNot: `${S}(brick/server|brick/claim|wire/tcp|wire/tls)\\.js$`,
      },
      to: { path: '^(net|fs|fs/promises|dgram|child_process|tls|http|https)$', dependencyTypes: ['core'] },
    },
    {
      name: 'product-never-uses-the-simulator',
      severity: 'error',
      from: { path: S, pathNot: `${S}sim/` },
      to: { path: `${S}sim/` },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
  },
};
