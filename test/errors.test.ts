/** The named error helpers (src/common/errors.ts): what they let pass, log and rethrow. */
import test from 'node:test';
import assert from 'node:assert/strict';
import { FsError, bestEffort, ignoreCodes, nullOnFailure, rethrowBug } from '../src/common/errors.js';

test('ignoreCodes lets the named codes pass and rethrows the rest, a bug included', () => {
  assert.doesNotThrow(() => ignoreCodes(new FsError('ENOENT'), 'ENOENT'));
  assert.doesNotThrow(() => ignoreCodes(Object.assign(new Error('x'), { code: 'ENODATA' }), 'ENOENT', 'ENODATA'));
  assert.throws(() => ignoreCodes(new FsError('EIO'), 'ENOENT'), { code: 'EIO' });
  assert.throws(() => ignoreCodes(new TypeError('x is not a function'), 'ENOENT'), TypeError);
});

test('bestEffort is quiet on a race, logs another failure, and rethrows a bug', () => {
  const logged: string[] = [];
  const h = bestEffort('unlink', (_level, msg) => logged.push(msg));
  h(new FsError('ENOENT', 'gone'));
  h(new FsError('ENOTCONN', 'brick down'));
  assert.deepEqual(logged, []);
  h(new FsError('EACCES', 'no'));
  assert.equal(logged.length, 1);
  assert.match(logged[0], /^unlink: EACCES/);
  assert.throws(() => h(new TypeError('cannot read properties of undefined')), TypeError);
  assert.throws(
    () => h('a string'),
    (e) => e === 'a string',
  );
  assert.equal(nullOnFailure('lookup')(new FsError('ENOENT')), null);
  assert.throws(() => nullOnFailure('lookup')(new RangeError('x')), RangeError);
});

test('rethrowBug lets any errno outcome pass and throws anything else', () => {
  assert.doesNotThrow(() => rethrowBug(new FsError('EIO')));
  assert.doesNotThrow(() => rethrowBug(Object.assign(new Error('x'), { code: 'ENOENT' })));
  assert.throws(() => rethrowBug(new TypeError('x')), TypeError);
  assert.throws(() => rethrowBug(Object.assign(new Error('x'), { code: 'ERR_INVALID_ARG_TYPE' })), { code: 'ERR_INVALID_ARG_TYPE' });
});
