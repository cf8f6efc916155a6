import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BuildError, EXIT_USAGE } from '../../src/model/errors.js';
import { describeError } from '../../src/store/postgres/pool.js';
import { databaseSettings, parseDatabaseUrl, redactDatabaseUrl } from '../../src/store/postgres/url.js';

const SECRET = 'Sup3r:s3cret@/pw#?';
const encoded = encodeURIComponent(SECRET);

/** The usage error a call throws, checked for exit code 2 and for never holding the password. */
function usageError(call: () => unknown, secrets: string[] = [SECRET, encoded]): BuildError {
  let thrown: unknown;
  try {
    call();
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown instanceof BuildError, `expected a BuildError, got ${String(thrown)}`);
  assert.equal(thrown.exitCode, EXIT_USAGE);
  assert.equal(thrown.code, 'EUSAGE');
  for (const secret of secrets) assert.ok(!thrown.message.includes(secret), `"${thrown.message}" holds a secret`);
  return thrown;
}

describe('database URL (issue 20)', () => {
  it('is not set: the file store', () => {
    assert.equal(databaseSettings(undefined, {}), undefined);
    assert.equal(databaseSettings(undefined, { BUILDBOT_DATABASE_URL: '' }), undefined);
  });

  it('reads user, host, port, database and a percent-encoded password; shows it redacted', () => {
    const s = databaseSettings(`postgres://bb:${encoded}@db.example:6543/builds`, {})!;
    assert.deepEqual([s.user, s.host, s.port, s.database, s.config.password], ['bb', 'db.example', 6543, 'builds', SECRET]);
    assert.equal(s.shown, 'postgres://bb:*****@db.example:6543/builds');
    assert.equal(s.redact(`auth failed for ${SECRET} (${encoded})`), 'auth failed for ***** (*****)');
    // Every wait is bounded.
    assert.ok(Number(s.config.connectionTimeoutMillis) > 0 && Number(s.config.statement_timeout) > 0 && Number(s.config.query_timeout) > 0);
    assert.equal(s.config.keepAlive, true);
  });

  it('takes the password from PGPASSWORD when the URL has none, and the URL from a file with @', () => {
    const s = databaseSettings(undefined, { BUILDBOT_DATABASE_URL: 'postgresql://bb@127.0.0.1/b', PGPASSWORD: SECRET })!;
    assert.equal(s.config.password, SECRET);
    assert.equal(s.port, 5432);
    assert.equal(s.shown, 'postgresql://bb@127.0.0.1/b');
    assert.equal(s.redact(`x ${SECRET} y`), 'x ***** y');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'db-url-'));
    writeFileSync(path.join(dir, 'url'), `postgres://bb:${encoded}@[::1]:5433/b?sslmode=require\n`);
    const f = databaseSettings(`@${path.join(dir, 'url')}`, { PGPASSWORD: 'other' })!;
    assert.equal(f.config.password, SECRET, 'the URL\'s password wins over PGPASSWORD');
    assert.equal(f.host, '::1');
    assert.deepEqual(f.config.ssl, { rejectUnauthorized: false });
    const missing = usageError(() => databaseSettings(`@${path.join(dir, 'nope')}`, {}));
    assert.match(missing.message, /^--database-url: cannot read the file .*nope \(ENOENT\)/);
  });

  it('refuses what it cannot use with a message naming the flag or variable and never the password', () => {
    const cases: Array<[string, RegExp]> = [
      [`mysql://bb:${encoded}@h/db`, /--database-url is not a postgres:\/\/ URL/],
      [`host=db password=${SECRET}`, /is not a postgres:\/\/ URL/],
      [`postgres://bb:${SECRET}@h/db`, /cannot be read as a URL .*percent-encoded/],
      [`postgres://bb:${encoded}@h:5432/`, /"postgres:\/\/bb:\*\*\*\*\*@h:5432\/" names no database/],
      [`postgres://:${encoded}@h/db`, /names no user/],
      [`postgres://bb:${encoded}@h/db?sslmode=prefer`, /sslmode=prefer, which buildbot does not know/],
      [`postgres://bb:${encoded}@h/db?password=${encoded}`, /the option "password", which buildbot does not know/],
      [`postgres://bb:${encoded}@h/db?sslmod=require`, /the option "sslmod"/],
    ];
    for (const [url, message] of cases) {
      const err = usageError(() => databaseSettings(url, {}));
      assert.match(err.message, message);
      assert.equal(err.field, 'database_url');
    }
    const fromEnv = usageError(() => databaseSettings(undefined, { BUILDBOT_DATABASE_URL: 'http://x/y' }));
    assert.match(fromEnv.message, /^BUILDBOT_DATABASE_URL is not/);
    // Only PGUSER can stand in for a missing user.
    assert.equal(parseDatabaseUrl('postgres://h/db', 'x', { PGUSER: 'bb' }).user, 'bb');
  });

  it('redacts passwords in any URL-like text, valid or not', () => {
    assert.equal(redactDatabaseUrl('postgres://u:p@ss/w@h:1/db'), 'postgres://u:*****@h:1/db');
    assert.equal(redactDatabaseUrl('postgres://u:pw@h/db'), 'postgres://u:*****@h/db');
    assert.equal(redactDatabaseUrl('postgres://u@h/db'), 'postgres://u@h/db');
    assert.equal(redactDatabaseUrl('postgres://h/db'), 'postgres://h/db');
    const s = parseDatabaseUrl(`postgres://bb:${encoded}@h/db`, 'x');
    assert.equal(describeError(Object.assign(new Error(`bad ${SECRET}`), { code: '28P01' }), s), 'bad ***** (SQLSTATE 28P01)');
  });
});
