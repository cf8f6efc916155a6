import yargs from 'yargs';
import { errors, EXIT_OK, isBuildError } from '../model/errors.js';
import type { BuildIO } from '../io/output.js';
import { createRedactor } from '../io/redact.js';
import { BUILD_FLAGS, readBuildOptions } from './build-options.js';
import { loginCacheSecrets, loginCmdSecrets, parseDockerLoginCmd, parseLoginCache, swapped } from './docker-login.js';
import { checkRequestSize } from './limits.js';
import { secretsInRawArguments } from './raw-secrets.js';
import { SECRET_ENV } from './secret-env.js';
import { isRegistryLike, normalizeLoginServer, splitImageName } from './registry.js';
import type { BuildRequest, RegistryLogin } from './types.js';
import {
  decodePrivateKey, validateImage, validateRepoUrl,
  validateRevision, validateServiceId, validateTags,
} from './validate.js';

export { SECRET_ENV };

export type ParsedCommand = { kind: 'help'; text: string } | { kind: 'build'; request: BuildRequest };

const FLAGS = {
  service_id: { type: 'string', describe: 'names the clone cache of this service (letters, digits, . _ -)' },
  repo: { type: 'string', describe: 'repository to build: ssh://…, user@host:path or https://…' },
  vcs: { type: 'string', describe: 'git or hg (default: hg for ssh://hg@… URLs, git otherwise)' },
  repo_auth_key: { type: 'string', describe: `base64 of the deploy key's private key file (env ${SECRET_ENV.repoAuthKey})` },
  revision: { type: 'string', describe: 'commit SHA (full or short), branch or tag' },
  image: { type: 'string', describe: 'image repository to push, e.g. registry.example.com/api' },
  tag: { type: 'string', describe: 'tag to push; repeat it or give a comma-separated list' },
  docker_login_cmd: { type: 'string', describe: `"docker login -u USER -p PASSWORD REGISTRY"; parsed, never run (env ${SECRET_ENV.loginCmd})` },
  docker_login_cache: { type: 'string', describe: `the "auth" value of ~/.docker/config.json (base64 of "user:password"), or base64 of a whole config.json (env ${SECRET_ENV.loginCache})` },
  timeout: { type: 'string', describe: "seconds this build may run; may only lower the server's limit (--build-timeout)" },
  'stall-timeout': { type: 'string', describe: 'local runs only: seconds an engine, git or registry operation may stay silent (env BUILDBOT_STALL_TIMEOUT, default 600)' },
  'build-timeout': { type: 'string', describe: 'local runs only: the time limit of a build in seconds (env BUILDBOT_BUILD_TIMEOUT, default 3600)' },
  ...BUILD_FLAGS,
} as const;

/** Flags only the local command takes: over SSH and HTTP the server's own settings hold. */
export const LOCAL_ONLY = ['stall-timeout', 'build-timeout'] as const;

export const isBuildFlag = (name: string) => Object.hasOwn(FLAGS, name);

export const localOnlyMessage = (name: string) => `--${name} is a setting of the server (buildbot-server --${name}), not of a request; --timeout SECONDS lowers this build's time limit`;

const REQUIRED = ['service_id', 'repo', 'revision', 'image', 'tag'] as const;

const EXIT_CODES = 'Exit codes: 0 pushed; 1 the build failed; 2 the request is wrong (usage, an invalid value, a login or key refused, a repository or revision not found); N build.sh or the in-image test exited with N; 124 past its time limit; 130 cancelled.';

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Parses the arguments of one buildbot.sh call. `env` holds the secret variables a local
 * run may use; the SSH front passes none, so a client can never reach the server's own.
 */
export async function parseBuildCommand(argv: readonly string[], env: Env, commandName = 'buildbot.sh', local = false): Promise<ParsedCommand> {
  checkRequestSize(argv);
  const parser = yargs()
    .scriptName(commandName)
    .usage(`Usage: ${commandName} --service_id ID --repo URL --revision REV --image NAME --tag TAG [options]\n\nBuilds REV of the repository into an image and pushes every tag.`)
    .options(local ? FLAGS : { ...FLAGS, ...Object.fromEntries(LOCAL_ONLY.map((name) => [name, { ...FLAGS[name], hidden: true }])) })
    .epilog(`${local ? 'With --server URL the build runs on that server over its HTTP API, the token read from BUILDBOT_TOKEN.\n\n' : ''}${EXIT_CODES}`)
    .parserConfiguration({ 'camel-case-expansion': false, 'boolean-negation': false, 'short-option-groups': false, 'dot-notation': false, 'parse-numbers': false, 'parse-positional-numbers': false })
    .strict()
    .help('help')
    .alias('help', 'h')
    .version(false)
    .wrap(100)
    .exitProcess(false)
    .fail((message, err) => {
      throw err ?? errors.usage(rewordYargsMessage(message, argv));
    });

  // Before yargs, which would name the second line of the key as an unexpected argument.
  const wrappedKey = wrappedKeyWords(argv);
  if (wrappedKey && !argv.includes('--help') && !argv.includes('-h')) {
    throw errors.usage(`--repo_auth_key is followed by ${wrappedKey} more word${wrappedKey === 1 ? '' : 's'} of base64: the key was wrapped into lines (base64 without -w0) or not quoted; give it as one word: --repo_auth_key "$(base64 -w0 deploy_key)"`);
  }

  let helpText: string | undefined;
  let args: Record<string, unknown>;
  try {
    args = await parser.parseAsync(attachValues(argv), {}, (_err, _argv, output) => {
      if (output) helpText = output;
    });
  } catch (err) {
    if (isBuildError(err)) throw err;
    throw errors.usage(rewordYargsMessage((err as Error).message, argv));
  }
  if (helpText !== undefined) return { kind: 'help', text: helpText };

  const positional = (args._ as unknown[]).map(String);
  if (positional.length) throw errors.usage(strayWordMessage(positional[0], argv));

  const str = (name: keyof typeof FLAGS): string | undefined => {
    const value = args[name];
    if (Array.isArray(value)) {
      if (name !== 'tag') throw errors.usage(`--${name} was given more than once`);
      return undefined;
    }
    return value === undefined ? undefined : String(value);
  };
  const missing = REQUIRED.filter((name) => args[name] === undefined || args[name] === '').map((name) => `--${name}`);
  if (missing.length) throw errors.usage(`missing ${missing.length === 1 ? missing[0] : `${missing.slice(0, -1).join(', ')} and ${missing.at(-1)}`}`);
  for (const name of LOCAL_ONLY) {
    if (!local && args[name] !== undefined) throw errors.usage(localOnlyMessage(name));
  }
  const timeout = str('timeout');
  if (timeout !== undefined && (!/^\d{1,7}$/.test(timeout) || Number(timeout) === 0)) throw errors.usage(`--timeout "${timeout}" is not a positive whole number of seconds`);

  const secrets: string[] = [];
  const repo = validateRepoUrl(str('repo')!, str('vcs'));
  secrets.push(...repo.embeddedSecrets);

  const keyRaw = str('repo_auth_key') ?? env[SECRET_ENV.repoAuthKey];
  let repoAuthKey: string | undefined;
  if (keyRaw) {
    const source = str('repo_auth_key') ? '--repo_auth_key' : SECRET_ENV.repoAuthKey;
    const decoded = decodePrivateKey(keyRaw, source);
    repoAuthKey = decoded.key;
    secrets.push(...decoded.secrets);
  }

  const { name: image, registry: server } = splitImageName(validateImage(str('image')!), '--image');
  const tagValue = args.tag;
  const tags = validateTags((Array.isArray(tagValue) ? tagValue : [tagValue]).map(String));
  const notes: string[] = [];
  const login = readLogin(str('docker_login_cmd') ?? env[SECRET_ENV.loginCmd], str('docker_login_cache') ?? env[SECRET_ENV.loginCache], env, server, secrets, notes);
  const build = readBuildOptions(args, secrets);

  return {
    kind: 'build',
    request: {
      serviceId: validateServiceId(str('service_id')!),
      repo: { url: repo.url, vcs: repo.vcs, displayUrl: repo.displayUrl, basicAuth: repo.basicAuth },
      repoAuthKey,
      revision: validateRevision(str('revision')!),
      image,
      tags,
      registry: { server, login, notes },
      timeoutSeconds: timeout === undefined ? undefined : Number(timeout),
      local: local ? { stallTimeout: str('stall-timeout'), buildTimeout: str('build-timeout') } : undefined,
      build,
      secrets,
    },
  };
}

/**
 * Parses for a front (the local command, the SSH server): the request to build, or the exit
 * code once --help was printed on stdout, or a usage error as the usage and the exact problem on stderr.
 */
export async function requestOrExit(argv: readonly string[], env: Env, io: BuildIO, local = false): Promise<BuildRequest | number> {
  let rawSecrets: string[] = [];
  try {
    // Its message quotes no value, so it may come before the secrets are known.
    checkRequestSize(argv);
    // Taken before parsing, so that an error about any argument, however malformed, is redacted.
    rawSecrets = secretsInRawArguments(argv, env);
    const parsed = await parseBuildCommand(argv, env, 'buildbot.sh', local);
    if (parsed.kind === 'build') {
      parsed.request.secrets.push(...rawSecrets);
      return parsed.request;
    }
    io.stdout.write(`${parsed.text}\n`);
    return EXIT_OK;
  } catch (err) {
    if (!isBuildError(err)) throw err;
    const help = (await parseBuildCommand(['--help'], {}, 'buildbot.sh', local)) as { text: string };
    // The usage text is fixed: only the message about these arguments can hold one of their secrets.
    io.stderr.write(`${help.text}\n\nerror: ${createRedactor(rawSecrets).redact(err.message)}\n`);
    return err.exitCode;
  }
}

function readLogin(cmd: string | undefined, cache: string | undefined, env: Env, imageRegistry: string, secrets: string[], notes: string[]): RegistryLogin | undefined {
  // Secrets go on the list before anything can fail, so even an error quoting them is redacted.
  if (cmd) secrets.push(...loginCmdSecrets(cmd));
  if (cache) secrets.push(...loginCacheSecrets(cache));
  let login: RegistryLogin | undefined;
  if (cmd) {
    const parsed = parseDockerLoginCmd(cmd);
    const named = parsed.server ?? 'docker.io';
    if (named !== imageRegistry) {
      // "-p REGISTRY PASSWORD": the password would be the registry shown in the message.
      if (isRegistryLike(parsed.password) && normalizeLoginServer(parsed.password, '--docker_login_cmd') === imageRegistry) throw swapped('--docker_login_cmd');
      throw errors.invalidInput(`--docker_login_cmd logs in to ${named}, but --image is pushed to ${imageRegistry}; log in to the registry of the image`);
    }
    login = { username: parsed.username, password: parsed.password };
    notes.push(...parsed.notes);
  } else if (cache) {
    login = parseLoginCache(cache, imageRegistry).login;
  } else if (env[SECRET_ENV.registryPassword]) {
    const username = env[SECRET_ENV.registryUser];
    if (!username) throw errors.usage(`${SECRET_ENV.registryPassword} is set but ${SECRET_ENV.registryUser} is not; set both`);
    login = { username, password: env[SECRET_ENV.registryPassword]! };
  }
  if (login) {
    const pair = `${login.username}:${login.password}`;
    secrets.push(login.password, encodeURIComponent(login.password), pair, Buffer.from(pair).toString('base64'));
  }
  return login;
}

/**
 * Joins each known flag with the word after it ("--repo", "-oProxyCommand=x" becomes
 * "--repo=-oProxyCommand=x"), so a value starting with "-" reaches validation and is refused
 * by name instead of being read as a cluster of short flags. A flag followed by another
 * known flag is left alone and reported as missing its value.
 */
const isFlag = (word: string | undefined): word is string => word !== undefined && /^--?[\w-]+$/.test(word) && word.replace(/^--?/, '') in FLAGS;
// A switch (--pull) takes no value: the word after it is its own.
const isSwitch = (word: string) => (FLAGS as Record<string, { type: string }>)[word.replace(/^--?/, '')]?.type === 'boolean';

function attachValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    if (isFlag(word) && !isSwitch(word) && i + 1 < argv.length && !isFlag(argv[i + 1]) && argv[i + 1] !== '--help' && argv[i + 1] !== '-h') {
      out.push(`${word}=${argv[++i]}`);
    } else {
      out.push(word);
    }
  }
  return out;
}

/**
 * A word no flag takes. Right after a flag's value it is most often the value's second word,
 * unquoted on the way: over ssh the remote side splits the line again, so one quoting is spent
 * by the local shell.
 */
function strayWordMessage(stray: string, argv: readonly string[]): string {
  const at = argv.indexOf(stray);
  const owner = at >= 2 && isFlag(argv[at - 2]) && !isSwitch(argv[at - 2]) ? argv[at - 2] : at >= 1 && /^--?[\w-]+=/.test(argv[at - 1]) ? argv[at - 1].split('=')[0] : undefined;
  if (owner === undefined) return `unexpected argument "${stray}"; every value goes after its flag, e.g. --tag 1.0`;
  const flag = `--${owner.replace(/^--?/, '')}`;
  return `unexpected argument "${stray}" after the value of ${flag}; a value with spaces must be quoted, and over ssh quoted twice: ${flag} "'… …'"`;
}

/** How many base64-looking words follow the value of --repo_auth_key: the lines of a wrapped key. */
function wrappedKeyWords(argv: readonly string[]): number {
  const at = argv.findIndex((w) => /^--?repo_auth_key(=|$)/.test(w));
  if (at < 0) return 0;
  let i = argv[at].includes('=') ? at + 1 : at + 2;
  let count = 0;
  while (i < argv.length && /^[A-Za-z0-9+/]+=*$/.test(argv[i])) [i, count] = [i + 1, count + 1];
  return count;
}

function rewordYargsMessage(message: string, argv: readonly string[]): string {
  const unknown = /^Unknown arguments?: (.+)$/.exec(message);
  if (unknown) {
    const names = unknown[1].split(', ').map((n) => n.trim());
    // yargs names stray words and unknown flags alike.
    const stray = names.filter((name) => argv.includes(name)).sort((a, b) => argv.indexOf(a) - argv.indexOf(b))[0];
    if (stray !== undefined) return strayWordMessage(stray, argv);
    return names.map((name) => {
      const near = closest(name, Object.keys(FLAGS));
      return `unknown flag --${name}${near ? ` (did you mean --${near}?)` : ''}`;
    }).join('; ');
  }
  const missingValue = /^Not enough arguments following: (.+)$/.exec(message);
  if (missingValue) return `--${missingValue[1]} needs a value`;
  return message;
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = editDistance(word.replace(/-/g, '_'), candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}
