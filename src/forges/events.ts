import type { Forge } from './types.js';

/** One ref a push moved, as the forge described it. */
export interface Push {
  kind: 'branch' | 'tag';
  name: string;
  /** What the checkout is given: the commit, or (Gitea tag) the tag object, peeled there. */
  revision: string;
  /** The commit, when the forge said which one it is. */
  commit?: string;
  deleted: boolean;
  /** The head commit's message, for [skip ci]. */
  message?: string;
  pusher?: string;
}

export type Event =
  | { kind: 'ping' }
  | { kind: 'ignored'; why: string }
  | { kind: 'push'; repository: string; pushes: Push[] };

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const ZERO = /^0+$/;
const SHA = /^[0-9a-f]{40}$/;

/** refs/heads/x or refs/tags/x, as kind and name. */
function splitRef(ref: string | undefined): { kind: 'branch' | 'tag'; name: string } | undefined {
  const match = /^refs\/(heads|tags)\/(.+)$/.exec(ref ?? '');
  return match ? { kind: match[1] === 'heads' ? 'branch' : 'tag', name: match[2] } : undefined;
}

const cut = (text: string | undefined, max: number) => (text === undefined ? undefined : text.slice(0, max));

/**
 * Reads a verified payload in the forge's documented shape (GitHub push/ping, GitLab Push Hook
 * and Tag Push Hook, Gitea/Forgejo push, Bitbucket Cloud repo:push). Other events start
 * nothing: Gitea's `create` comes with a push event for the same ref, which is the one that builds.
 */
export function readEvent(forge: Forge, event: string, body: unknown): Event {
  const payload = obj(body);
  switch (forge) {
    case 'github': {
      if (event === 'ping') return { kind: 'ping' };
      if (event !== 'push') return { kind: 'ignored', why: `the ${shown(event)} event builds nothing; only push events do` };
      const ref = splitRef(str(payload.ref));
      if (!ref) return { kind: 'ignored', why: 'the push names no branch or tag' };
      const after = str(payload.after) ?? '';
      const head = obj(payload.head_commit);
      // On an annotated tag `after` is the tag object; head_commit is the commit it points at.
      const commit = str(head.id);
      return {
        kind: 'push', repository: str(obj(payload.repository).full_name) ?? '',
        pushes: [{ ...ref, revision: commit ?? after, commit: commit && SHA.test(commit) ? commit : undefined, deleted: payload.deleted === true || ZERO.test(after), message: cut(str(head.message), 64 * 1024), pusher: cut(str(obj(payload.pusher).name), 100) }],
      };
    }
    case 'gitlab': {
      const kind = str(payload.object_kind);
      if (kind !== 'push' && kind !== 'tag_push') return { kind: 'ignored', why: `the ${shown(event || kind || 'unnamed')} event builds nothing; only Push Hook and Tag Push Hook events do` };
      const ref = splitRef(str(payload.ref));
      if (!ref) return { kind: 'ignored', why: 'the push names no branch or tag' };
      const checkout = str(payload.checkout_sha);
      const commits = Array.isArray(payload.commits) ? payload.commits.map(obj) : [];
      const head = commits.find((c) => str(c.id) === checkout) ?? commits.at(-1);
      return {
        kind: 'push', repository: str(obj(payload.project).path_with_namespace) ?? '',
        pushes: [{ ...ref, revision: checkout ?? '', commit: checkout && SHA.test(checkout) ? checkout : undefined, deleted: !checkout || ZERO.test(str(payload.after) ?? ''), message: cut(str(head?.message), 64 * 1024), pusher: cut(str(payload.user_username) ?? str(payload.user_name), 100) }],
      };
    }
    case 'gitea': {
      if (event !== 'push') return { kind: 'ignored', why: event === 'create' ? 'a create event comes with a push event for the same ref, which builds it' : `the ${shown(event)} event builds nothing; only push events do` };
      const ref = splitRef(str(payload.ref));
      if (!ref) return { kind: 'ignored', why: 'the push names no branch or tag' };
      const after = str(payload.after) ?? '';
      const pusher = obj(payload.pusher);
      return {
        kind: 'push', repository: str(obj(payload.repository).full_name) ?? '',
        // A tag's `after` may be the tag object: the checkout peels it to its commit.
        pushes: [{ ...ref, revision: after, commit: ref.kind === 'branch' && SHA.test(after) ? after : undefined, deleted: ZERO.test(after) || !after, message: cut(str(obj(payload.head_commit).message), 64 * 1024), pusher: cut(str(pusher.login) ?? str(pusher.username), 100) }],
      };
    }
    case 'bitbucket': {
      if (event !== 'repo:push') return { kind: 'ignored', why: `the ${shown(event)} event builds nothing; only repo:push events do` };
      const changes = Array.isArray(obj(payload.push).changes) ? (obj(payload.push).changes as unknown[]).map(obj) : [];
      const actor = obj(payload.actor);
      const pushes: Push[] = [];
      for (const change of changes.slice(0, 20)) {
        const next = obj(change.new);
        const old = obj(change.old);
        const type = str(next.type) ?? str(old.type);
        const name = str(next.name) ?? str(old.name);
        if ((type !== 'branch' && type !== 'tag') || !name) continue;
        const target = obj(next.target);
        const hash = str(target.hash);
        pushes.push({ kind: type, name, revision: hash ?? '', commit: hash && SHA.test(hash) ? hash : undefined, deleted: change.new === null || !hash, message: cut(str(target.message), 64 * 1024), pusher: cut(str(actor.nickname) ?? str(actor.display_name), 100) });
      }
      if (!pushes.length) return { kind: 'ignored', why: 'the push names no branch or tag' };
      return { kind: 'push', repository: str(obj(payload.repository).full_name) ?? '', pushes };
    }
  }
}

/** Why a push starts nothing, or undefined when it builds. */
export function ignoreReason(push: Push): string | undefined {
  if (push.deleted) return `${push.kind} ${push.name} was deleted`;
  if (!push.revision || !/^[0-9a-f]{7,64}$/.test(push.revision)) return `the push names no commit for ${push.kind} ${push.name}`;
  // Only a branch push skips: a tag is a release, always built.
  if (push.kind === 'branch' && push.message && /\[(skip ci|ci skip)\]/i.test(push.message)) return 'the head commit asks to skip CI ([skip ci] or [ci skip])';
  return undefined;
}

const shown = (event: string) => (/^[\w :.-]{1,64}$/.test(event) ? `"${event}"` : 'unnamed');
