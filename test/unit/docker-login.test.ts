import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loginSecretsFromArgv, parseDockerLoginCmd, parseLoginCache } from '../../src/request/docker-login.js';
import { parseBuildCommand } from '../../src/request/parse.js';
import type { BuildRequest } from '../../src/request/types.js';

const b64 = (text: string) => Buffer.from(text).toString('base64');
const ECR = 'ecr.us-east-1.amazonaws.com';
const ECR_TOKEN = `eyJwYXlsb2FkIjoi${'QUJDRGVmZ2hpams0NTY3'.repeat(80)}`;

describe('docker login command', () => {
  it('reads every flag form the docker CLI (pflag) accepts', () => {
    const forms = [
      'docker login -u bob -p s3cret r.io',
      'docker login -u=bob -p=s3cret r.io',
      'docker login -ubob -ps3cret r.io',
      'docker login --username bob --password s3cret r.io',
      'docker login --username=bob --password=s3cret r.io',
      'docker login r.io -u bob -p s3cret',
      'docker login -u bob -p s3cret -- r.io',
      'docker login -u bob -p s3cret https://r.io/',
      'docker login -u bob -p s3cret http://R.IO/v2/',
      'docker login -u bob -p s3cret r.io/v1/',
    ];
    for (const form of forms) {
      const parsed = parseDockerLoginCmd(form);
      assert.deepEqual([parsed.username, parsed.password, parsed.server], ['bob', 's3cret', 'r.io'], form);
    }
    assert.equal(parseDockerLoginCmd('docker login -u bob -p -starts-with-dash r.io').password, '-starts-with-dash');
    assert.equal(parseDockerLoginCmd("docker login -u bob -p 'two words' r.io").password, 'two words');
    assert.equal(parseDockerLoginCmd('docker login -u bob -p x').server, undefined);
  });

  it('reads ECR\'s exact get-login output, ignoring -e with a note', () => {
    const parsed = parseDockerLoginCmd(`docker login -u AWS -p ${ECR_TOKEN} -e none https://123.dkr.${ECR}`);
    assert.deepEqual([parsed.username, parsed.password, parsed.server], ['AWS', ECR_TOKEN, `123.dkr.${ECR}`]);
    assert.match(parsed.notes.join('\n'), /-e\/--email is ignored/);
    assert.equal(parseDockerLoginCmd('docker login -u a -p b --email=x@y r.io').notes.length, 1);
  });

  it('refuses --password-stdin showing the form that works', () => {
    assert.throws(() => parseDockerLoginCmd('docker login -u AWS --password-stdin r.io'), /--password-stdin cannot be used.*-p \$\(aws ecr get-login-password\)/);
  });

  it('never quotes a word of the command in an error', () => {
    const cases: Array<[string, RegExp]> = [
      ['docker login -u bob -p r.io hunter-two', /look swapped/],
      ['docker login -u bob -p r.io Pa55+word/x=', /look swapped/],
      ['docker login -u bob -phunter-two -x r.io', /an option that docker login does not have/],
      ['docker login -u bob --hunter-two r.io', /an option that docker login does not have/],
      ['docker login -u bob hunter-two r.io', /more than one word where the registry goes/],
      ['docker login -u bob r.io/hunter-two -p x', /has a path/],
    ];
    for (const [line, message] of cases) {
      assert.throws(() => parseDockerLoginCmd(line), (err: Error) => {
        assert.match(err.message, message, line);
        assert.ok(!err.message.includes('hunter') && !err.message.includes('Pa55'), `${line}: ${err.message}`);
        return true;
      });
    }
  });

  it('finds every secret of a login command in raw argv, whatever its form', () => {
    const argv = ['--image', 'r.io/x', '--docker_login_cmd', 'docker login -u bob -phunter-two -p=second --password=third --password fourth r.io stray-word'];
    const secrets = loginSecretsFromArgv(argv);
    for (const s of ['hunter-two', 'second', 'third', 'fourth', 'stray-word']) assert.ok(secrets.includes(s), s);
    for (const s of ['bob', 'r.io', 'docker', 'login']) assert.ok(!secrets.includes(s), s);
    assert.ok(loginSecretsFromArgv(['--docker_login_cmd=docker login -u b -p "unclosed hunter']).some((s) => s.includes('hunter')));
    assert.ok(loginSecretsFromArgv(['--docker_login_cache', `${b64('bob:hunter-two')}\n`]).includes('hunter-two'));
  });
});

describe('login cache', () => {
  const config = (auths: object, extra: object = {}) => b64(JSON.stringify({ auths, ...extra }, null, 2));

  it('reads the auth value, trimming a trailing newline inside or outside the base64', () => {
    assert.deepEqual(parseLoginCache(`${b64('bob:pw:x')}\n`, 'r.io').login, { username: 'bob', password: 'pw:x' });
    assert.deepEqual(parseLoginCache(b64('bob:pw\n'), 'r.io').login, { username: 'bob', password: 'pw' });
  });

  it('reads a whole config.json, finding the image\'s registry under any key form', () => {
    for (const key of ['r.io:5000', 'https://r.io:5000', 'http://R.io:5000/v1/', 'r.io:5000/v2/']) {
      const value = config({ 'other.io': { auth: b64('x:y') }, [key]: { auth: b64('bob:pw') } });
      assert.deepEqual(parseLoginCache(value, 'r.io:5000').login, { username: 'bob', password: 'pw' }, key);
    }
    assert.deepEqual(parseLoginCache(config({ 'https://index.docker.io/v1/': { auth: b64('hub:pw') } }), 'docker.io').login, { username: 'hub', password: 'pw' });
    // base64 without -w0 wraps at 76 columns
    const wrapped = config({ 'r.io': { auth: b64('bob:pw') }, 'padding.example.com': { auth: b64('x'.repeat(100)) } }).replace(/(.{76})/g, '$1\n');
    assert.deepEqual(parseLoginCache(wrapped, 'r.io').login, { username: 'bob', password: 'pw' });
  });

  it('says clearly what a config.json lacks', () => {
    assert.throws(() => parseLoginCache(config({ 'other.io': { auth: b64('x:y') } }), 'r.io'), /no "auths" entry for r.io.*entries for: other.io/);
    assert.throws(() => parseLoginCache(config({ 'r.io': { identitytoken: 'tok' } }), 'r.io'), /identity token .* cannot use/);
    assert.throws(() => parseLoginCache(config({ 'r.io': {} }, { credsStore: 'desktop' }), 'r.io'), /holds no credentials/);
    assert.throws(() => parseLoginCache(config({}, { credsStore: 'desktop' }), 'r.io'), /credential helper/);
  });

  it('refuses, naming the flag, a value that is neither', () => {
    const whole = config({ 'r.io': { auth: b64('bob:pw') } });
    for (const bad of ['bm90LWEtcGFpcg==', 'not base64!', whole.slice(0, 40), whole.slice(8, 60), b64('\x00\x01:x'), '']) {
      assert.throws(() => parseLoginCache(bad, 'r.io'), /--docker_login_cache/, bad);
    }
  });
});

describe('login flags of buildbot.sh', () => {
  const base = ['--service_id', 'api', '--repo', 'git@github.com:org/api.git', '--revision', 'abc1234', '--tag', '1'];
  const request = async (args: string[]) => ((await parseBuildCommand(args, {})) as { request: BuildRequest }).request;

  it('checks the login against the image\'s registry by one rule', async () => {
    const hub = await request([...base, '--image', 'index.docker.io/org/app', '--docker_login_cmd', 'docker login -u u -p p']);
    assert.equal(hub.registry.server, 'docker.io');
    assert.equal(hub.image, 'org/app');
    const ecr = await request([...base, '--image', `123.dkr.${ECR}/api`, '--docker_login_cmd', `docker login -u AWS -p ${ECR_TOKEN} -e none https://123.dkr.${ECR}`]);
    assert.equal(ecr.registry.login?.password, ECR_TOKEN);
    assert.equal(ecr.registry.notes.length, 1);
    const mixed = await request([...base, '--image', 'Registry.Example.com/api', '--docker_login_cmd', 'docker login -u u -p p https://registry.example.com/v2/']);
    assert.equal(mixed.image, 'registry.example.com/api');
    await assert.rejects(request([...base, '--image', 'Regsvc/api', '--docker_login_cmd', 'docker login -u u -p p']), /capital letters/);
    await assert.rejects(request([...base, '--image', 'r.io/api', '--docker_login_cmd', 'docker login -u u -p r.io hunter.two']), (err: Error) => /look swapped/.test(err.message) && !err.message.includes('hunter'));
    const cached = await request([...base, '--image', 'r.io/api', '--docker_login_cache', b64(JSON.stringify({ auths: { 'https://r.io': { auth: b64('c:pw') } } }))]);
    assert.deepEqual(cached.registry.login, { username: 'c', password: 'pw' });
    assert.ok(cached.secrets.includes('pw'));
  });
});
