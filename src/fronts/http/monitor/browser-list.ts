/**
 * The build list, live (runs in the browser; served as /assets/browser-list.js). The server
 * renders every row, on the page and in the stream alike; this only puts rows where they
 * belong, keeps the filter, and ticks the clocks. No framework: a few DOM calls.
 */
import { formatAgo, formatDuration } from './html.js';

// The browser's globals, untyped: this project's compiler setup has no DOM library.
declare const document: any;
declare const window: any;
declare const EventSource: any;
declare const DOMParser: any;

type Group = 'running' | 'queued' | 'recent';
interface BuildEvent { id: string; status: string; service_id: string; created_at: string; group: Group; html: string }
interface EngineState { name: string; state: 'up' | 'down'; draining: boolean; slots: number; running: number }

const groupsEl = document.getElementById('groups');
const liveState = document.getElementById('live-state');
const filterService: string = groupsEl?.dataset.filterService ?? '';
const filterStatus: string = groupsEl?.dataset.filterStatus ?? '';

export function tick(): void {
  const now = Date.now();
  for (const el of document.querySelectorAll('[data-elapsed-since]')) {
    el.textContent = formatDuration((now - Date.parse(el.dataset.elapsedSince)) / 1000);
  }
  for (const el of document.querySelectorAll('time[data-ago]')) el.textContent = formatAgo(el.getAttribute('datetime'), now);
}

function matches(event: BuildEvent): boolean {
  return (!filterService || event.service_id === filterService) && (!filterStatus || event.status === filterStatus);
}

function refreshGroups(): void {
  let running = 0;
  for (const group of ['running', 'queued', 'recent'] as Group[]) {
    const section = document.getElementById(`group-${group}`);
    if (!section) continue;
    const rows = section.querySelectorAll('tbody tr').length;
    if (group === 'running') running = rows;
    section.querySelector('.count').textContent = String(rows);
    if (group === 'recent') section.querySelector('.none').hidden = rows > 0;
    else section.hidden = rows === 0;
  }
  document.title = `${running ? `(${running} running) ` : ''}Builds · buildbot`;
}

function place(event: BuildEvent): void {
  document.getElementById(`b-${event.id}`)?.remove();
  if (!matches(event)) return refreshGroups();
  const tbody = document.querySelector(`#group-${event.group} tbody`);
  if (!tbody) return;
  const template = document.createElement('template');
  template.innerHTML = event.html.trim();
  const row = template.content.firstElementChild;
  // Newest first within a group.
  let before = null;
  for (const other of tbody.children) {
    if (other.dataset.created < event.created_at) {
      before = other;
      break;
    }
  }
  tbody.insertBefore(row, before);
  document.getElementById('empty')?.remove();
  groupsEl.hidden = false;
  row.classList.add('flash');
  refreshGroups();
}

/** The engine strip as the server's engines event says (the cards and their forms are the page's own). */
function engines(list: EngineState[]): void {
  for (const e of list) {
    const card = document.getElementById(`engine-${e.name}`);
    if (!card) continue;
    card.classList.toggle('e-up', e.state === 'up');
    card.classList.toggle('e-down', e.state !== 'up');
    card.classList.toggle('e-draining', e.draining);
    card.querySelector('.e-state').textContent = `${e.state === 'up' ? 'up' : 'down'}${e.draining ? ', draining' : ''}`;
    card.querySelector('.e-running').textContent = String(e.running);
    card.querySelector('.e-slots').textContent = String(e.slots);
    const drain = card.querySelector('.e-drain');
    const resume = card.querySelector('.e-resume');
    if (drain) drain.hidden = e.draining;
    if (resume) resume.hidden = !e.draining;
  }
}

/** After a dropped connection the list may have missed changes: fetch the page once and take its rows. */
async function resync(): Promise<void> {
  try {
    const res = await fetch(window.location.href, { headers: { Accept: 'text/html' }, credentials: 'same-origin' });
    if (!res.ok || res.redirected) return;
    const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
    const strip = doc.getElementById('engines');
    if (strip) document.getElementById('engines')?.replaceWith(document.importNode(strip, true));
    const fresh = doc.getElementById('groups');
    if (fresh) {
      groupsEl.innerHTML = fresh.innerHTML;
      refreshGroups();
      tick();
    }
  } catch {
    // the next reconnect tries again
  }
}

function connect(): void {
  let opened = false;
  const source = new EventSource('/events');
  source.addEventListener('open', () => {
    liveState.textContent = 'live';
    liveState.className = 'live-state on';
    if (opened) void resync();
    opened = true;
  });
  source.addEventListener('error', () => {
    liveState.textContent = 'reconnecting…';
    liveState.className = 'live-state off';
  });
  source.addEventListener('build', (e: { data: string }) => place(JSON.parse(e.data) as BuildEvent));
  source.addEventListener('engines', (e: { data: string }) => engines(JSON.parse(e.data) as EngineState[]));
}

// The filter applies as soon as it changes (the button stays for keyboards without JS).
for (const select of document.querySelectorAll('#filters select')) select.addEventListener('change', () => select.form.submit());
if (groupsEl) {
  refreshGroups();
  connect();
  tick();
  window.setInterval(tick, 1000);
}
