import { readFileSync } from 'node:fs';
import path from 'node:path';
import yargs from 'yargs';
import { loadConfig, type Config } from '../pipeline/config.js';
import { errors, isBuildError } from '../model/errors.js';
import { HTTP_LIMIT_DEFAULTS, type HttpLimits } from '../fronts/http/limits.js';
import { parseAuthorizedKey, type PublicKey } from '../fronts/ssh/authorized-key.js';
import { defaultEngineSpec, engineEntries, parseEngineSpecs, type EngineSpec } from '../engines/spec.js';

export interface ServerConfig extends Config {
  listen: { host: string; port: number };
  authorizedKey: PublicKey;
  hostKeyFile: string;
  maxBuilds: number;
  shutdownGraceMs: number;
  /** Connections that have not authenticated yet: at most this many, each for at most authTimeoutMs. */
  maxUnauthenticated: number;
  /** The same per source address, so one flooding address cannot lock everyone else out. */
  maxUnauthenticatedPerAddress: number;
  authTimeoutMs: number;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  /** The HTTP API's listener; undefined with --http-listen none. */
  httpListen?: { host: string; port: number };
  /** Full-access and read-only API tokens (secrets: never logged). */
  apiTokens: string[];
  apiReadTokens: string[];
  /** Finished builds kept per service in the history, and the output kept per build. */
  historyPerService: number;
  logCapBytes: number;
  /** The projects file (--projects), if any, and the address builds are linked at from the forges. */
  projectsFile?: string;
  publicUrl?: string;
  /** What one HTTP client may hold: connections, streams per token and address, an idle reader's time, sign-ins. */
  httpLimits: HttpLimits;
  /** The engines builds run on (--engine, BUILDBOT_ENGINES); without them the one engine `default` of DOCKER_HOST. */
  engines: EngineSpec[];
  /** Whether the engines were named by --engine/BUILDBOT_ENGINES (their names then appear in messages and logs). */
  enginesNamed: boolean;
  /** How long a build waits for its preferred engine when that one is up but full (--affinity-wait). */
  affinityWaitMs: number;
}

type Env = Readonly<Record<string, string | undefined>>;

export const SERVER_DEFAULTS = {
  listen: '127.0.0.1:2222', maxBuilds: 4, shutdownGraceSeconds: 30, loginGraceSeconds: 20, keepaliveIntervalSeconds: 15, keepaliveCount: 3, gitSshPersistSeconds: 60, spareNetworkSeconds: 60,
  httpListen: '127.0.0.1:8080', historyPerService: 50, logCapMb: 10, affinityWaitSeconds: 30,
};
const D = SERVER_DEFAULTS;
const H = HTTP_LIMIT_DEFAULTS;

// In the order an operator needs them; each names its variable and its default.
const FLAGS = {
  'authorized-key': { type: 'string', describe: 'the one public key allowed to build over SSH: a key line or @file (env SSH_PUBKEY_IN_INITIATE_BUILDS; required)' },
  listen: { type: 'string', describe: `SSH address, HOST:PORT (env BUILDBOT_LISTEN, default ${D.listen})` },
  'http-listen': { type: 'string', describe: `HTTP API and web monitor address, HOST:PORT, or none (env BUILDBOT_HTTP_LISTEN, default ${D.httpListen})` },
  'api-token': { type: 'string', describe: 'full-access API token or @file; repeatable (env BUILDBOT_API_TOKENS, comma-separated; none: the API refuses every request)' },
  'api-read-token': { type: 'string', describe: 'read-only API token or @file; repeatable (env BUILDBOT_API_READ_TOKENS, comma-separated)' },
  'work-dir': { type: 'string', describe: 'clone caches, history, pinned git host keys and the host key (env BUILDBOT_WORK_DIR, default ./buildbot-work)' },
  'host-key': { type: 'string', describe: 'host key file, generated on first start (env BUILDBOT_HOST_KEY, default <work-dir>/ssh_host_ed25519_key)' },
  'max-builds': { type: 'string', describe: `builds running at once over all engines; more wait in line (env BUILDBOT_MAX_BUILDS, default ${D.maxBuilds})` },
  engine: { type: 'string', describe: 'an engine to build on, NAME=URL[,slots=N][,weight=W][,tls=DIR] with URL unix://, tcp:// or ssh:// as DOCKER_HOST; repeatable (env BUILDBOT_ENGINES, entries separated by spaces; default: one engine, default, from DOCKER_HOST)' },
  'affinity-wait': { type: 'string', describe: `seconds a build waits for a slot on the engine its service prefers (where its caches are) before it takes another (env BUILDBOT_AFFINITY_WAIT, default ${D.affinityWaitSeconds})` },
  'stall-timeout': { type: 'string', describe: 'seconds an engine, git, hg or registry operation may stay silent before its build fails (env BUILDBOT_STALL_TIMEOUT, default 600)' },
  'build-timeout': { type: 'string', describe: 'seconds a build may run before it is cancelled; a request may lower it with --timeout (env BUILDBOT_BUILD_TIMEOUT, default 3600)' },
  'build-memory': { type: 'string', describe: 'memory of each builder and test container, e.g. 4g, 512m; 0 = no limit (env BUILDBOT_BUILD_MEMORY, default 4g)' },
  'build-pids': { type: 'string', describe: 'processes at once in each builder and test container; 0 = no limit (env BUILDBOT_BUILD_PIDS, default 4096)' },
  'shutdown-grace': { type: 'string', describe: `seconds running builds get to finish on SIGTERM (env BUILDBOT_SHUTDOWN_GRACE, default ${D.shutdownGraceSeconds})` },
  'login-grace-time': { type: 'string', describe: `seconds an SSH connection has to authenticate (env BUILDBOT_LOGIN_GRACE_TIME, default ${D.loginGraceSeconds})` },
  'keepalive-interval': { type: 'string', describe: `seconds between keepalive probes of a silent SSH client (env BUILDBOT_KEEPALIVE_INTERVAL, default ${D.keepaliveIntervalSeconds})` },
  'keepalive-count': { type: 'string', describe: `unanswered probes after which the client counts as gone and its build is cancelled (env BUILDBOT_KEEPALIVE_COUNT, default ${D.keepaliveCount})` },
  'git-ssh-persist': { type: 'string', describe: `seconds an idle SSH connection to a git host is kept for the next build with the same key; 0: off (env BUILDBOT_GIT_SSH_PERSIST, default ${D.gitSshPersistSeconds})` },
  'spare-network': { type: 'string', describe: `seconds a network namespace made after a service's build is kept for its next build; 0: off (env BUILDBOT_SPARE_NETWORK, default ${D.spareNetworkSeconds})` },
  'build-cache-max-mb': { type: 'string', describe: 'a service\'s #build_cache caches together over this many MB are dropped after its build (env BUILDBOT_BUILD_CACHE_MAX_MB, default 4096)' },
  'build-cache-days': { type: 'string', describe: 'caches no build used for this many days are removed (env BUILDBOT_BUILD_CACHE_DAYS, default 14)' },
  'history-per-service': { type: 'string', describe: `finished builds kept per service in the history (env BUILDBOT_HISTORY_PER_SERVICE, default ${D.historyPerService})` },
  projects: { type: 'string', describe: 'the projects file (YAML): builds by project name, forge webhooks and commit statuses (env BUILDBOT_PROJECTS; none by default)' },
  'check-projects': { type: 'string', describe: 'check a projects file and exit: 0 when it is valid, 2 naming the key and line at fault' },
  'public-url': { type: 'string', describe: 'the address users reach the monitor at, for links in commit statuses (env BUILDBOT_PUBLIC_URL, default http://<--http-listen>)' },
  'log-cap-mb': { type: 'string', describe: `output kept per build in the history, in MB: the head and the tail (env BUILDBOT_LOG_CAP_MB, default ${D.logCapMb})` },
  'http-max-connections': { type: 'string', describe: `HTTP connections open at once; past it a new one is answered 503 (env BUILDBOT_HTTP_MAX_CONNECTIONS, default ${H.maxConnections})` },
  'http-connections-per-address': { type: 'string', describe: `HTTP connections open at once per client address (IPv6 by /64); past it 429; 0: no limit, e.g. behind a proxy (env BUILDBOT_HTTP_CONNECTIONS_PER_ADDRESS, default ${H.connectionsPerAddress})` },
  'http-streams-per-token': { type: 'string', describe: `event and log streams open at once per API token (a monitor sign-in counts for its token); past it 429; 0: no limit (env BUILDBOT_HTTP_STREAMS_PER_TOKEN, default ${H.streamsPerToken})` },
  'http-streams-per-address': { type: 'string', describe: `the same per client address (IPv6 by /64); 0: no limit, e.g. behind a proxy (env BUILDBOT_HTTP_STREAMS_PER_ADDRESS, default ${H.streamsPerAddress})` },
  'http-idle-reader': { type: 'string', describe: `seconds a stream's reader may take nothing of what waits for it before it is closed (it can resume) (env BUILDBOT_HTTP_IDLE_READER, default ${H.idleReaderMs / 1000})` },
  'http-signins-per-minute': { type: 'string', describe: `monitor sign-ins per client address per minute (env BUILDBOT_HTTP_SIGNINS_PER_MINUTE, default ${H.signInsPerMinute})` },
} as const;

export type ServerArgs = { kind: 'help'; text: string } | { kind: 'check-projects'; file: string } | { kind: 'serve'; config: ServerConfig };

/** Defaults, then environment, then flags; then validation with errors that say what to do. */
export async function parseServerArgs(argv: readonly string[], env: Env): Promise<ServerArgs> {
  let helpText: string | undefined;
  let args: Record<string, unknown>;
  try {
    args = await yargs()
      .scriptName('buildbot-server')
      .usage('Usage: buildbot-server --authorized-key "ssh-ed25519 AAAA…" [options]\n\nServes buildbot.sh over SSH to the holder of one key, and the same builds over an HTTP API with a web monitor for holders of an API token.')
      .options(FLAGS)
      .parserConfiguration({ 'camel-case-expansion': false, 'parse-numbers': false })
      .strict()
      .help('help')
      .version(false)
      .wrap(100)
      .exitProcess(false)
      .fail((message, err) => {
        throw err ?? errors.usage(message.replace(/^Unknown arguments?: (.+)$/, (_, names: string) => `unknown flag --${names.split(', ').join(', --')}`));
      })
      .parseAsync([...argv], {}, (_err, _argv, output) => {
        if (output) helpText = output;
      });
  } catch (err) {
    throw isBuildError(err) ? err : errors.usage((err as Error).message);
  }
  if (helpText !== undefined) return { kind: 'help', text: helpText };
  if (args['check-projects'] !== undefined) return { kind: 'check-projects', file: path.resolve(String(args['check-projects'])) };

  const pick = (flag: keyof typeof FLAGS, variable: string): string | undefined => {
    const value = args[flag];
    if (Array.isArray(value)) throw errors.usage(`--${flag} was given more than once`);
    return (value as string | undefined) ?? (env[variable] || undefined);
  };
  const limitSetting = (flag: 'build-memory' | 'build-pids', variable: string) => {
    const value = pick(flag, variable);
    return value === undefined ? undefined : { value, setting: args[flag] !== undefined ? `--${flag}` : variable };
  };
  const base = loadConfig(env, {
    workDir: pick('work-dir', 'BUILDBOT_WORK_DIR'),
    buildMemory: limitSetting('build-memory', 'BUILDBOT_BUILD_MEMORY'),
    buildPids: limitSetting('build-pids', 'BUILDBOT_BUILD_PIDS'),
    // Flags only: loadConfig reads the environment itself, and names the variable in its errors.
    stallTimeout: pick('stall-timeout', ''),
    buildTimeout: pick('build-timeout', ''),
    buildCacheMaxMb: pick('build-cache-max-mb', ''),
    buildCacheDays: pick('build-cache-days', ''),
  });

  const keyValue = pick('authorized-key', 'SSH_PUBKEY_IN_INITIATE_BUILDS');
  if (!keyValue) {
    throw errors.usage(
      'no authorized key: the server never starts open. Give the public key of the CI job that may build, e.g.\n' +
        '  buildbot-server --authorized-key "$(cat ~/.ssh/id_ed25519.pub)"\n' +
        '  buildbot-server --authorized-key @/path/to/key.pub\n' +
        '  SSH_PUBKEY_IN_INITIATE_BUILDS="ssh-ed25519 AAAA…" buildbot-server',
    );
  }
  const source = args['authorized-key'] ? '--authorized-key' : 'SSH_PUBKEY_IN_INITIATE_BUILDS';
  const maxBuilds = positiveInteger(pick('max-builds', 'BUILDBOT_MAX_BUILDS') ?? String(SERVER_DEFAULTS.maxBuilds), '--max-builds');
  const engineFlags = args.engine === undefined ? undefined : ([] as unknown[]).concat(args.engine).map(String);
  const entries = engineEntries(engineFlags, env);
  return {
    kind: 'serve',
    config: {
      ...base,
      listen: parseListen(pick('listen', 'BUILDBOT_LISTEN') ?? SERVER_DEFAULTS.listen),
      authorizedKey: parseAuthorizedKey(keyValue, source),
      hostKeyFile: path.resolve(pick('host-key', 'BUILDBOT_HOST_KEY') ?? path.join(base.workDir, 'ssh_host_ed25519_key')),
      maxBuilds,
      engines: entries.length ? parseEngineSpecs(entries, { maxBuilds, env }) : [defaultEngineSpec(env, maxBuilds)],
      enginesNamed: entries.length > 0,
      affinityWaitMs: 1000 * positiveInteger(pick('affinity-wait', 'BUILDBOT_AFFINITY_WAIT') ?? String(SERVER_DEFAULTS.affinityWaitSeconds), '--affinity-wait', true),
      shutdownGraceMs: 1000 * positiveInteger(pick('shutdown-grace', 'BUILDBOT_SHUTDOWN_GRACE') ?? String(SERVER_DEFAULTS.shutdownGraceSeconds), '--shutdown-grace', true),
      // A CI runner starting 20 builds at once does so from one address: the per-address limit
      // stays above that, and stops one flooding address from taking every slot.
      maxUnauthenticated: 128,
      maxUnauthenticatedPerAddress: 32,
      authTimeoutMs: 1000 * positiveInteger(pick('login-grace-time', 'BUILDBOT_LOGIN_GRACE_TIME') ?? String(SERVER_DEFAULTS.loginGraceSeconds), '--login-grace-time'),
      // A client that vanished without a FIN (a killed CI VM, a cut network) is noticed after
      // interval x count seconds; its build is then cancelled (see server.ts).
      keepaliveIntervalMs: 1000 * positiveInteger(pick('keepalive-interval', 'BUILDBOT_KEEPALIVE_INTERVAL') ?? String(SERVER_DEFAULTS.keepaliveIntervalSeconds), '--keepalive-interval'),
      gitSshPersistSeconds: positiveInteger(pick('git-ssh-persist', 'BUILDBOT_GIT_SSH_PERSIST') ?? String(SERVER_DEFAULTS.gitSshPersistSeconds), '--git-ssh-persist', true),
      spareNetworkSeconds: positiveInteger(pick('spare-network', 'BUILDBOT_SPARE_NETWORK') ?? String(SERVER_DEFAULTS.spareNetworkSeconds), '--spare-network', true),
      keepaliveCountMax: positiveInteger(pick('keepalive-count', 'BUILDBOT_KEEPALIVE_COUNT') ?? String(SERVER_DEFAULTS.keepaliveCount), '--keepalive-count'),
      ...httpSettings(args, env, pick),
    },
  };
}

type Pick = (flag: keyof typeof FLAGS, variable: string) => string | undefined;

function httpSettings(args: Record<string, unknown>, env: Env, pick: Pick) {
  const listen = pick('http-listen', 'BUILDBOT_HTTP_LISTEN') ?? SERVER_DEFAULTS.httpListen;
  const logCapMb = positiveInteger(pick('log-cap-mb', 'BUILDBOT_LOG_CAP_MB') ?? String(SERVER_DEFAULTS.logCapMb), '--log-cap-mb');
  return {
    httpListen: listen === 'none' ? undefined : parseListen(listen, '--http-listen', '127.0.0.1:8080'),
    apiTokens: tokens(args['api-token'], env.BUILDBOT_API_TOKENS, '--api-token', 'BUILDBOT_API_TOKENS'),
    apiReadTokens: tokens(args['api-read-token'], env.BUILDBOT_API_READ_TOKENS, '--api-read-token', 'BUILDBOT_API_READ_TOKENS'),
    historyPerService: positiveInteger(pick('history-per-service', 'BUILDBOT_HISTORY_PER_SERVICE') ?? String(SERVER_DEFAULTS.historyPerService), '--history-per-service'),
    logCapBytes: Math.min(logCapMb, 1024) * 1024 * 1024,
    ...projectSettings(pick),
    httpLimits: {
      ...H,
      maxConnections: positiveInteger(pick('http-max-connections', 'BUILDBOT_HTTP_MAX_CONNECTIONS') ?? String(H.maxConnections), '--http-max-connections'),
      connectionsPerAddress: positiveInteger(pick('http-connections-per-address', 'BUILDBOT_HTTP_CONNECTIONS_PER_ADDRESS') ?? String(H.connectionsPerAddress), '--http-connections-per-address', true),
      streamsPerToken: positiveInteger(pick('http-streams-per-token', 'BUILDBOT_HTTP_STREAMS_PER_TOKEN') ?? String(H.streamsPerToken), '--http-streams-per-token', true),
      streamsPerAddress: positiveInteger(pick('http-streams-per-address', 'BUILDBOT_HTTP_STREAMS_PER_ADDRESS') ?? String(H.streamsPerAddress), '--http-streams-per-address', true),
      idleReaderMs: 1000 * positiveInteger(pick('http-idle-reader', 'BUILDBOT_HTTP_IDLE_READER') ?? String(H.idleReaderMs / 1000), '--http-idle-reader'),
      signInsPerMinute: positiveInteger(pick('http-signins-per-minute', 'BUILDBOT_HTTP_SIGNINS_PER_MINUTE') ?? String(H.signInsPerMinute), '--http-signins-per-minute'),
    },
  };
}

function projectSettings(pick: Pick): { projectsFile?: string; publicUrl?: string } {
  const file = pick('projects', 'BUILDBOT_PROJECTS');
  const publicUrl = pick('public-url', 'BUILDBOT_PUBLIC_URL');
  if (publicUrl !== undefined && !/^https?:\/\/[^\s/@]+(\/\S*)?$/.test(publicUrl)) throw errors.usage(`--public-url "${publicUrl.slice(0, 100)}" is not an http(s) URL without credentials, e.g. https://buildbot.example.com`);
  return { projectsFile: file === undefined ? undefined : path.resolve(file), publicUrl };
}

/**
 * API tokens from the repeatable flag, or else the comma-separated variable; `@path` reads one
 * from a file. Errors name the flag or file, never the token.
 */
function tokens(flag: unknown, variable: string | undefined, flagName: string, variableName: string): string[] {
  const given = flag === undefined ? (variable ? variable.split(',') : []) : (Array.isArray(flag) ? flag : [flag]).map(String);
  const source = flag === undefined ? variableName : flagName;
  return given.map((raw) => raw.trim()).filter(Boolean).map((value) => {
    let token = value;
    if (value.startsWith('@')) {
      try {
        token = readFileSync(value.slice(1), 'utf8').trim();
      } catch (err) {
        throw errors.usage(`${source}: cannot read the token file ${value.slice(1)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    }
    if (!/^[\x21-\x7e]{16,512}$/.test(token)) {
      throw errors.usage(`${source}: a token must be 16 to 512 printable characters without spaces; make one with: openssl rand -hex 32`);
    }
    return token;
  });
}

function parseListen(value: string, flag = '--listen', example = '127.0.0.1:2222 or 0.0.0.0:22'): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw errors.usage(`${flag} "${value}" is not HOST:PORT, e.g. ${example}`);
  return { host: match[1] ?? match[2], port };
}

function positiveInteger(value: string, flag: string, zeroAllowed = false): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || (!zeroAllowed && n === 0)) throw errors.usage(`${flag} "${value}" is not a ${zeroAllowed ? 'whole number' : 'positive whole number'}`);
  return n;
}
