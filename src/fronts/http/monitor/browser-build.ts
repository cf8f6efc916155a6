/**
 * One build's page, live (runs in the browser; served as /assets/browser-build.js). It follows
 * the build's records over EventSource (the browser resumes with Last-Event-ID after a drop),
 * turns them into lines with LogModel, and keeps the page in step: sections fold when a step
 * succeeds, follow mode keeps the newest line in view until the reader scrolls up, #L links
 * jump to their line once it has arrived.
 */
import { formatAgo, formatDuration } from './html.js';
import { LogModel, slug, type LogChange, type LogRecord, type LogSection } from './log-model.js';

// The browser's globals, untyped: this project's compiler setup has no DOM library.
declare const document: any;
declare const window: any;
declare const EventSource: any;
declare const requestAnimationFrame: (fn: () => void) => number;

const logEl = document.getElementById('log');
const liveState = document.getElementById('live-state');
const followButton = document.getElementById('follow');
const buildId: string = logEl.dataset.build;
const startAfter = Number(logEl.dataset.after);
const firstLine = Number(logEl.dataset.firstLine);
const preSections: LogSection[] = JSON.parse(logEl.dataset.sections);
const model = new LogModel({ firstLine, sections: preSections });
model.lastSeq = startAfter;

interface SectionView { details: any; body: any; summary: any; userToggled: boolean; lines: number }
const sections = new Map<number, SectionView>();
const openLines = new Map<number, any>();
const usedIds = new Set<string>();
let ended = false;
let wroteOutput = false;

// Cancelling cannot be undone (containers go, no tag is pushed after it): one click must not do it.
// On the document: the header, form included, is drawn again as the build moves on.
document.addEventListener('submit', (event: any) => {
  if (event.target?.id === 'cancel-form' && !window.confirm(`Cancel build ${buildId}? Its containers are removed and no further tag is pushed.`)) event.preventDefault();
});

// ---- sections and lines ----

const STATE_WORD: Record<string, [string, string]> = { running: ['●', 'running'], ok: ['✓', 'succeeded'], failed: ['✕', 'failed'] };

function sectionId(name: string): string {
  const base = name ? `step-${slug(name)}` : 'step-start';
  let id = base;
  for (let i = 2; usedIds.has(id); i++) id = `${base}-${i}`;
  usedIds.add(id);
  return id;
}

function renderSummary(view: SectionView, section: LogSection): void {
  const [icon, word] = STATE_WORD[section.state] ?? ['', section.state];
  view.details.className = `step s-${section.state}`;
  view.summary.innerHTML = '';
  const state = el('span', 's-state');
  state.append(el('span', '', icon, true), el('span', 'visually-hidden', ` ${word}`));
  const name = el('span', 's-name', section.name || 'Before the first step');
  const lines = el('span', 's-lines', view.lines ? `${view.lines} line${view.lines === 1 ? '' : 's'}` : '');
  const duration = el('span', 's-dur', section.duration !== undefined ? formatDuration(section.duration) : section.state === 'running' ? 'running…' : '');
  view.summary.append(state, name, lines, duration);
}

function addSection(section: LogSection, skipped: boolean): SectionView {
  const details = document.createElement('details');
  details.id = sectionId(section.name);
  const summary = document.createElement('summary');
  const body = el('div', 's-body');
  details.append(summary, body);
  const view: SectionView = { details, body, summary, userToggled: false, lines: 0 };
  summary.addEventListener('click', () => (view.userToggled = true));
  sections.set(section.index, view);
  renderSummary(view, section);
  details.open = section.state !== 'ok';
  if (skipped) {
    const note = el('div', 'skipped');
    note.append('Output before line ', String(firstLine), ' is not shown here: ');
    const link = el('a', '', 'show the whole log');
    link.href = `/builds/${buildId}?full=1${window.location.hash}`;
    note.append(link, '.');
    body.append(note);
  }
  logEl.append(details);
  return view;
}

function el(tag: string, className: string, text?: string, hidden = false): any {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  if (hidden) node.setAttribute('aria-hidden', 'true');
  return node;
}

function apply(change: LogChange): void {
  switch (change.kind) {
    case 'section':
      addSection(change.section, false);
      break;
    case 'section-end': {
      const view = sections.get(change.section.index);
      if (!view) break;
      renderSummary(view, change.section);
      // A section the reader opened or closed, or that holds the line they jumped to, stays as they left it.
      if (!view.userToggled && !view.details.dataset.pinned) view.details.open = change.section.state !== 'ok';
      break;
    }
    case 'line': {
      const { line } = change;
      const view = sections.get(line.section) ?? addSection({ index: line.section, name: '', state: 'running' }, false);
      const row = el('div', line.stream === 'stderr' ? 'line err' : 'line');
      row.id = `L${line.n}`;
      const number = el('a', 'ln', String(line.n));
      number.href = `#L${line.n}`;
      if (line.stream === 'stderr') number.title = 'stderr';
      const text = el('span', 'txt');
      text.innerHTML = line.html; // rendered by ansi_up, which escapes the log's text
      row.append(number, text);
      view.body.append(row);
      view.lines++;
      wroteOutput = true;
      if (line.open) openLines.set(line.n, text);
      if (pendingTarget === line.n) jumpToLine(line.n);
      break;
    }
    case 'line-update': {
      const text = openLines.get(change.line.n) ?? document.getElementById(`L${change.line.n}`)?.querySelector('.txt');
      if (text) text.innerHTML = change.line.html;
      if (!change.line.open) openLines.delete(change.line.n);
      break;
    }
    case 'line-move': {
      const row = document.getElementById(`L${change.n}`);
      const from = sections.get(change.from);
      const to = sections.get(change.to);
      if (!row || !from || !to) break;
      to.body.prepend(row);
      from.lines--;
      to.lines++;
      renderLines(to);
      renderLines(from);
      // A section left empty by the move (the output before the first step was only the header) goes.
      if (!from.body.querySelector('.line, .skipped, .cut-line')) {
        from.details.remove();
        sections.delete(change.from);
      }
      break;
    }
    case 'cut': {
      const view = sections.get(change.section);
      view?.body.append(el('div', 'cut-line', `✂ ${change.bytes.toLocaleString()} bytes of output (${change.records} records) were cut here: the stored log keeps its head and tail. The raw download has the same cut.`));
      break;
    }
    case 'exit': {
      ended = true;
      const ok = change.status === 'succeeded';
      if (!wroteOutput && !logEl.querySelector('.skipped')) logEl.append(el('div', 'placeholder', 'This build wrote no output.'));
      logEl.append(el('div', `exit-line ${ok ? 'ok' : 'bad'}`, `${ok ? '✓' : '✕'} ${change.status} · ${change.code === null ? 'no exit code (its server stopped while it ran)' : `exit code ${change.code}`}`));
      for (const view of sections.values()) view.summary.querySelector('.s-lines') && renderLines(view);
      break;
    }
  }
}

function renderLines(view: SectionView): void {
  const lines = view.summary.querySelector('.s-lines');
  lines.textContent = view.lines ? `${view.lines} line${view.lines === 1 ? '' : 's'}` : '';
}

// ---- records, in frames ----

const queue: LogRecord[] = [];
let scheduled = false;

function receive(record: LogRecord): void {
  queue.push(record);
  if (record.type === 'step' || record.type === 'exit') refreshHeaderSoon();
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(drain);
  }
}

/** Applies queued records for up to ~12 ms a frame, so a long replay never freezes the page. */
function drain(): void {
  scheduled = false;
  const started = performance.now();
  const touched = new Set<SectionView>();
  while (queue.length && performance.now() - started < 12) {
    for (const change of model.push(queue.shift()!)) {
      apply(change);
      if (change.kind === 'line') touched.add(sections.get(change.line.section)!);
    }
  }
  for (const view of touched) if (view) renderLines(view);
  if (queue.length) {
    scheduled = true;
    requestAnimationFrame(drain);
  } else {
    logEl.setAttribute('aria-busy', 'false');
  }
  if (follow) scrollToEnd();
}

// ---- follow mode ----

let follow = false;
let expectedY = -1;

function setFollow(on: boolean): void {
  follow = on;
  followButton.setAttribute('aria-pressed', String(on));
  followButton.textContent = on ? 'Following' : 'Follow';
}

function atBottom(): boolean {
  return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 48;
}

function scrollToEnd(): void {
  const y = Math.max(0, document.documentElement.scrollHeight - window.innerHeight);
  if (Math.abs(window.scrollY - y) < 2) return;
  expectedY = y;
  window.scrollTo(0, y);
}

window.addEventListener('scroll', () => {
  if (expectedY >= 0 && Math.abs(window.scrollY - expectedY) < 2) {
    expectedY = -1;
    return;
  }
  expectedY = -1;
  // Scrolling up leaves follow mode; coming back to the bottom of a live log resumes it.
  if (atBottom()) {
    if (!follow && !ended) setFollow(true);
  } else if (follow) setFollow(false);
}, { passive: true });

followButton.addEventListener('click', () => {
  setFollow(!follow);
  if (follow) scrollToEnd();
});

// ---- line anchors ----

let pendingTarget = 0;

function jumpToLine(n: number): void {
  pendingTarget = 0;
  const row = document.getElementById(`L${n}`);
  if (!row) return;
  for (const old of document.querySelectorAll('.line.target')) old.classList.remove('target');
  row.classList.add('target');
  for (let node = row.parentElement; node; node = node.parentElement) {
    if (node.tagName !== 'DETAILS') continue;
    node.open = true;
    node.dataset.pinned = '1';
  }
  setFollow(false);
  row.scrollIntoView({ block: 'center' });
  expectedY = window.scrollY;
}

function showHash(): void {
  const hash: string = window.location.hash;
  const line = /^#L(\d{1,9})$/.exec(hash);
  if (line) {
    const n = Number(line[1]);
    if (n < firstLine) {
      const note = document.getElementById('tail-note');
      if (note) note.scrollIntoView({ block: 'center' });
      return;
    }
    if (document.getElementById(`L${n}`)) jumpToLine(n);
    else pendingTarget = n;
    return;
  }
  if (/^#step-[a-z0-9-]{1,80}$/.test(hash)) {
    const details = document.getElementById(hash.slice(1));
    if (details) {
      details.open = true;
      details.dataset.pinned = '1';
      setFollow(false);
      details.scrollIntoView({ block: 'start' });
    }
  }
}
window.addEventListener('hashchange', showHash);

// ---- stream filter ----

for (const button of document.querySelectorAll('.seg-b')) {
  button.addEventListener('click', () => {
    for (const other of document.querySelectorAll('.seg-b')) other.setAttribute('aria-pressed', String(other === button));
    logEl.classList.toggle('only-stdout', button.dataset.stream === 'stdout');
    logEl.classList.toggle('only-stderr', button.dataset.stream === 'stderr');
  });
}

// ---- the header: status, steps, digest, as the server renders them ----

let headerTimer = 0;
function refreshHeaderSoon(): void {
  if (headerTimer) return;
  headerTimer = window.setTimeout(async () => {
    headerTimer = 0;
    try {
      const res = await fetch(`/builds/${buildId}?part=header`, { credentials: 'same-origin' });
      if (!res.ok || res.redirected) return;
      const template = document.createElement('template');
      template.innerHTML = (await res.text()).trim();
      const fresh = template.content.firstElementChild;
      if (fresh?.id === 'build-header') {
        document.getElementById('build-header').replaceWith(fresh);
        const word = fresh.querySelector('.status')?.textContent?.replace(/^\W+/, '') ?? '';
        document.title = document.title.replace(/ [a-z]+ · buildbot$/, ` ${word.toLowerCase()} · buildbot`);
        tick();
      }
    } catch {
      // the next step or the end refreshes it again
    }
  }, 250);
}

function tick(): void {
  const now = Date.now();
  if (!ended) {
    for (const node of document.querySelectorAll('[data-elapsed-since]')) node.textContent = formatDuration((now - Date.parse(node.dataset.elapsedSince)) / 1000);
  }
  for (const node of document.querySelectorAll('time[data-ago]')) node.textContent = formatAgo(node.getAttribute('datetime'), now);
}

// ---- start ----

for (const section of preSections) addSection(section, true);
const live = document.getElementById('build-header')?.dataset.live === '1';
setFollow(live && !window.location.hash);
if (!live) followButton.hidden = true;
liveState.textContent = 'loading…';

const source = new EventSource(`/builds/${buildId}/events?after=${startAfter}`);
source.addEventListener('open', () => {
  if (!ended) {
    liveState.textContent = 'live';
    liveState.className = 'live-state on';
  }
});
source.addEventListener('error', () => {
  if (ended) return;
  liveState.textContent = 'reconnecting…';
  liveState.className = 'live-state off';
});
source.addEventListener('message', (e: { data: string }) => {
  const record = JSON.parse(e.data) as LogRecord;
  if (record.type === 'exit') {
    // The stream ends here: without close() the browser would reconnect and ask again.
    source.close();
    liveState.textContent = '';
    liveState.className = 'live-state';
    followButton.hidden = true;
  }
  receive(record);
});

showHash();
window.setInterval(() => {
  tick();
  if (pendingTarget && document.getElementById(`L${pendingTarget}`)) jumpToLine(pendingTarget);
}, 1000);
