import { errors } from '../../model/errors.js';
import { asEngineError, engineMessage } from '../../docker/engine.js';
import { authConfig, type Step } from '../context.js';
import { LOGIN_CHECK_WINDOW_SECONDS, loginCheckedLately, rememberLogin } from '../../docker/login-cache.js';

/** Checks the registry credentials before anything else, so a wrong password costs no clone. */
export const loginStep: Step = {
  name: 'login',
  describe: ({ request: { registry } }) =>
    registry.login ? `checking the login of ${registry.login.username} at ${registry.server}` : `no credentials given; pushing to ${registry.server} without a login`,
  async run(ctx) {
    for (const note of ctx.request.registry.notes) ctx.out.line(note);
    try {
      await ctx.watchdog.engine('checking that the engine answers', () => ctx.docker.ping());
    } catch (err) {
      throw asEngineError(err, ctx.config);
    }
    const auth = authConfig(ctx);
    if (!auth) return;
    const credentials = { registry: ctx.request.registry.server, ...ctx.request.registry.login!, engine: ctx.config.engineName };
    if (loginCheckedLately(credentials)) {
      ctx.out.line(`the registry accepted this login less than ${LOGIN_CHECK_WINDOW_SECONDS} s ago; not asking again`);
      return;
    }
    try {
      // The engine asks the registry: a silent one shows as a silent engine.
      await ctx.watchdog.guard(
        { source: 'the engine', doing: `checking the login at ${ctx.request.registry.server}`, hint: `check that the registry is up and reachable from the engine, and the engine with docker info` },
        () => ctx.docker.checkAuth({ ...auth, abortSignal: ctx.signal }),
      );
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      const message = engineMessage(err);
      if (/unauthori[sz]ed|incorrect username or password|denied|401/i.test(message)) {
        throw errors.registryAuth(ctx.request.registry.server, ctx.request.registry.login!.username, message);
      }
      throw errors.registryUnreachable(ctx.request.registry.server, message);
    }
    rememberLogin(credentials);
  },
};
