/**
 * Turns a build's records (issue 11's contract: output, step, cut, exit) into the lines and
 * sections the build page shows. Pure: no DOM, no I/O, so the same file runs in the browser
 * (served as an ES module, `ansi_up` mapped by the page's import map) and in the unit tests.
 *
 * - ANSI colours are rendered by ansi_up (a well-kept library that escapes HTML itself; we do
 *   not parse SGR codes by hand). Each line is rendered on its own, prefixed with the colour
 *   codes still in force from earlier lines of its stream, so an open line can be rendered
 *   again as it grows without ansi_up's state drifting.
 * - A carriage return rewrites the line as a terminal shows it: a progress line that redraws
 *   itself with `\r` ends up as its last version (its colour codes are kept).
 * - stdout and stderr are separate terminals: each has its own open line and colour state.
 * - Lines are numbered from `firstLine` across the whole log, for `#L123` links.
 * - Every read is capped: a line longer than MAX_LINE_CHARS shows its start and says how much
 *   was left out (the raw download has it all).
 */
import { AnsiUp } from 'ansi_up';

export type Stream = 'stdout' | 'stderr';

/** The records this view understands (a subset of the API's record types, structurally). */
export type LogRecord =
  | { seq: number; type: 'output'; stream: Stream; data: string }
  | { seq: number; type: 'step'; name: string; phase: 'start' | 'end'; duration?: number; ok?: boolean }
  | { seq: number; type: 'cut'; bytes: number; records: number }
  | { seq: number; type: 'exit'; code: number | null; status: string }
  | { seq: number; type: string };

export interface LogLine {
  /** 1-based number across the whole log. */
  n: number;
  stream: Stream;
  /** Rendered HTML of the text (escaped, colours as spans). */
  html: string;
  /** Still being written (no newline yet). */
  open: boolean;
  /** Index of the section it belongs to. */
  section: number;
}

export interface LogSection {
  index: number;
  /** The step's name; '' for output before the first step. */
  name: string;
  state: 'running' | 'ok' | 'failed';
  /** Seconds, once the step ended. */
  duration?: number;
}

export type LogChange =
  | { kind: 'section'; section: LogSection }
  | { kind: 'section-end'; section: LogSection }
  | { kind: 'line'; line: LogLine }
  | { kind: 'line-update'; line: LogLine }
  /** A step's header line (printed just before its step record) moves into the step's own section. */
  | { kind: 'line-move'; n: number; from: number; to: number }
  | { kind: 'cut'; bytes: number; records: number; section: number }
  | { kind: 'exit'; code: number | null; status: string };

export const MAX_LINE_CHARS = 16 * 1024;
/** Colour codes carried from line to line per stream (older ones are dropped past this). */
const MAX_CARRIED_CODES = 16;

// Linear patterns only (negated classes, no nested quantifiers): log bytes are hostile input.
const SGR = /\x1b\[[0-9;]*m/g;
const RESET = /^\x1b\[0*m$/;
/** OSC 8 hyperlink markers: dropped so the link's text shows as plain text (no link a build chose). */
const OSC8 = /\x1b\]8;[^\x07\x1b]*(?:\x07|\x1b\\)?/g;

interface OpenLine {
  line: LogLine;
  /** What the line shows so far (after carriage returns were applied). */
  text: string;
  /** Characters left out past MAX_LINE_CHARS. */
  dropped: number;
}

export class LogModel {
  private nextLine: number;
  private readonly sections: LogSection[] = [];
  private current: LogSection | undefined;
  private readonly open: Record<Stream, OpenLine | undefined> = { stdout: undefined, stderr: undefined };
  /** Colour codes in force at the start of the next line, per stream. */
  private readonly carried: Record<Stream, string[]> = { stdout: [], stderr: [] };
  private readonly ansi = new AnsiUp();
  /** The last line that was finished (a step's header, when a step record follows it). */
  private lastDone: { n: number; section: number; text: string } | undefined;
  lastSeq = 0;

  constructor(options: { firstLine?: number; sections?: LogSection[] } = {}) {
    this.nextLine = options.firstLine ?? 1;
    this.ansi.use_classes = true;
    // Links a build printed are shown as text only (OSC8 above drops the markers too).
    this.ansi.url_allowlist = {};
    for (const section of options.sections ?? []) this.sections.push({ ...section });
    this.current = this.sections.at(-1);
  }

  /** Applies one record; returns what changed, in order. Records at or below lastSeq are ignored (a replay overlap). */
  push(record: LogRecord): LogChange[] {
    if (record.seq <= this.lastSeq) return [];
    this.lastSeq = record.seq;
    const changes: LogChange[] = [];
    switch (record.type) {
      case 'output': {
        const r = record as Extract<LogRecord, { type: 'output' }>;
        if (r.stream === 'stdout' || r.stream === 'stderr') this.output(r.stream, String(r.data ?? ''), changes);
        break;
      }
      case 'step': {
        const r = record as Extract<LogRecord, { type: 'step' }>;
        if (r.phase === 'start') {
          this.closeOpenLines(changes);
          const previous = this.current;
          // The output before the first step ends where the first step begins.
          if (previous && previous.name === '' && previous.state === 'running') {
            previous.state = 'ok';
            changes.push({ kind: 'section-end', section: { ...previous } });
          }
          this.current = { index: this.sections.length, name: String(r.name), state: 'running' };
          this.sections.push(this.current);
          changes.push({ kind: 'section', section: { ...this.current } });
          const header = this.lastDone;
          if (previous && header && header.section === previous.index && isStepHeader(header.text, this.current.name)) {
            changes.push({ kind: 'line-move', n: header.n, from: previous.index, to: this.current.index });
          }
        } else {
          this.closeOpenLines(changes);
          const section = [...this.sections].reverse().find((s) => s.name === r.name && s.state === 'running');
          if (section) {
            section.state = r.ok === false ? 'failed' : 'ok';
            if (typeof r.duration === 'number') section.duration = r.duration;
            changes.push({ kind: 'section-end', section: { ...section } });
          }
        }
        break;
      }
      case 'cut': {
        const r = record as Extract<LogRecord, { type: 'cut' }>;
        this.closeOpenLines(changes);
        changes.push({ kind: 'cut', bytes: r.bytes, records: r.records, section: this.ensureSection(changes).index });
        break;
      }
      case 'exit': {
        const r = record as Extract<LogRecord, { type: 'exit' }>;
        this.closeOpenLines(changes);
        // A step still marked running when the build ended was cut short.
        for (const section of this.sections) {
          if (section.state !== 'running' || section.name === '') continue;
          section.state = r.status === 'succeeded' ? 'ok' : 'failed';
          changes.push({ kind: 'section-end', section: { ...section } });
        }
        const prelude = this.sections.find((s) => s.name === '' && s.state === 'running');
        if (prelude) {
          prelude.state = r.status === 'succeeded' ? 'ok' : 'failed';
          changes.push({ kind: 'section-end', section: { ...prelude } });
        }
        changes.push({ kind: 'exit', code: r.code, status: r.status });
        break;
      }
      default:
        break; // queued and any later record type: not part of the log view
    }
    return changes;
  }

  /** The section output goes to: the current step, or one for output before any step. */
  private ensureSection(changes: LogChange[]): LogSection {
    if (!this.current) {
      this.current = { index: this.sections.length, name: '', state: 'running' };
      this.sections.push(this.current);
      changes.push({ kind: 'section', section: { ...this.current } });
    }
    return this.current;
  }

  private output(stream: Stream, data: string, changes: LogChange[]): void {
    const pieces = data.split('\n');
    pieces.forEach((piece, i) => {
      const last = i === pieces.length - 1;
      if (last && piece === '') return;
      let open = this.open[stream];
      const isNew = !open;
      if (!open) {
        const section = this.ensureSection(changes);
        open = { line: { n: this.nextLine++, stream, html: '', open: true, section: section.index }, text: '', dropped: 0 };
        this.open[stream] = open;
      }
      this.append(open, piece);
      open.line.open = last;
      open.line.html = this.render(stream, open);
      changes.push({ kind: isNew ? 'line' : 'line-update', line: { ...open.line } });
      if (!last) this.finish(stream);
    });
  }

  /**
   * Adds text to a line as a terminal shows it: after a carriage return the line starts over
   * (keeping the colour codes the hidden text set). A trailing \r (of \r\n, or a progress line
   * waiting for its next version) hides nothing until new text comes.
   */
  private append(open: OpenLine, piece: string): void {
    const text = open.text + piece;
    let end = text.length;
    while (end > 0 && text.charCodeAt(end - 1) === 13) end--;
    const body = text.slice(0, end);
    const cr = body.lastIndexOf('\r');
    if (cr < 0) {
      open.text = this.capped(open, text);
      return;
    }
    open.dropped = 0;
    open.text = this.capped(open, carriedCodes(body.slice(0, cr)) + body.slice(cr + 1) + (end < text.length ? '\r' : ''));
  }

  private capped(open: OpenLine, text: string): string {
    if (text.length <= MAX_LINE_CHARS) return text;
    open.dropped += text.length - MAX_LINE_CHARS;
    return text.slice(0, MAX_LINE_CHARS);
  }

  private render(stream: Stream, open: OpenLine): string {
    let text = open.text;
    if (text.endsWith('\r')) text = text.slice(0, -1);
    const prefix = this.carried[stream].join('');
    // ansi_up keeps an incomplete sequence for its next call; each line is rendered on its own.
    (this.ansi as unknown as { _buffer: string })._buffer = '';
    let html = this.ansi.ansi_to_html(`\x1b[0m${prefix}${text.replace(OSC8, '')}\x1b[0m`);
    (this.ansi as unknown as { _buffer: string })._buffer = '';
    if (open.dropped) html += `<span class="cut-note"> … ${open.dropped} more characters (the raw log has them)</span>`;
    return html;
  }

  /** Ends a stream's open line; its colour codes carry over to the next line of the stream. */
  private finish(stream: Stream): void {
    const open = this.open[stream];
    if (!open) return;
    this.open[stream] = undefined;
    this.lastDone = stream === 'stdout' ? { n: open.line.n, section: open.line.section, text: open.text } : undefined;
    const codes = [...this.carried[stream], ...(open.text.match(SGR) ?? [])];
    const lastReset = lastResetIndex(codes);
    this.carried[stream] = codes.slice(lastReset + 1).slice(-MAX_CARRIED_CODES);
  }

  /** A step boundary or the end: lines still open stay as they are, closed. */
  private closeOpenLines(changes: LogChange[]): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      const open = this.open[stream];
      if (!open) continue;
      open.line.open = false;
      changes.push({ kind: 'line-update', line: { ...open.line } });
      this.finish(stream);
    }
  }
}

/** The colour codes of text that a carriage return hid: they still colour what follows. */
function carriedCodes(hidden: string): string {
  const codes = hidden.match(SGR) ?? [];
  const lastReset = lastResetIndex(codes);
  return codes.slice(lastReset + 1).slice(-MAX_CARRIED_CODES).join('');
}

function lastResetIndex(codes: string[]): number {
  for (let i = codes.length - 1; i >= 0; i--) if (RESET.test(codes[i])) return i;
  return -1;
}

/**
 * Follows the log's shape without rendering it: which line numbers and sections the records up
 * to a point make, exactly as LogModel would. The server uses it to start a huge log at its
 * tail with the same line numbers (#L links) and sections as the whole log.
 */
export class LogShape {
  lines = 0;
  readonly sections: LogSection[] = [];
  private readonly open = { stdout: false, stderr: false };

  push(record: LogRecord): void {
    if (record.type === 'output') {
      const r = record as Extract<LogRecord, { type: 'output' }>;
      if (r.stream !== 'stdout' && r.stream !== 'stderr') return;
      const data = String(r.data ?? '');
      let start = 0;
      for (;;) {
        const nl = data.indexOf('\n', start);
        const last = nl < 0;
        if (last && start === data.length) break;
        if (!this.open[r.stream]) {
          if (!this.sections.length) this.sections.push({ index: 0, name: '', state: 'running' });
          this.lines++;
          this.open[r.stream] = true;
        }
        if (last) break;
        this.open[r.stream] = false;
        start = nl + 1;
      }
      return;
    }
    if (record.type !== 'step' && record.type !== 'cut' && record.type !== 'exit') return;
    this.open.stdout = this.open.stderr = false;
    if (record.type !== 'step') return;
    const r = record as Extract<LogRecord, { type: 'step' }>;
    if (r.phase === 'start') this.sections.push({ index: this.sections.length, name: String(r.name), state: 'running' });
    else {
      const section = [...this.sections].reverse().find((s) => s.name === r.name && s.state === 'running');
      if (section) {
        section.state = r.ok === false ? 'failed' : 'ok';
        if (typeof r.duration === 'number') section.duration = r.duration;
      }
    }
  }

  /** Whether a line of either stream is unfinished (a tail starting here would split it). */
  get midLine(): boolean {
    return this.open.stdout || this.open.stderr;
  }
}

/** An id for a step's section: its name in letters, digits and dashes (the page and its header link by it). */
export function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'step';
}

/** Whether a line is the runner's header of a step: `12.3s | # NAME: …` (src/pipeline/runner.ts). */
function isStepHeader(text: string, name: string): boolean {
  const plain = text.replace(SGR, '');
  const match = /^\d{1,7}\.\d+s \| # /.exec(plain);
  return match !== null && plain.startsWith(`${name}:`, match[0].length);
}
